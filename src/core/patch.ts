// Unified diffs of DR repository files, as `git diff` shows them (a/ and b/ prefixes, /dev/null
// for added and removed files), for `dr-syncer diff` and `failover --dry-run`. The hunks come
// from jsdiff (the `diff` package): a well-kept implementation of Myers' algorithm.
import { createTwoFilesPatch } from 'diff';

export interface FileChange {
  path: string;
  /** Content before; undefined for an added file. */
  before?: string;
  /** Content after; undefined for a removed file. */
  after?: string;
}

/** One unified diff of every change, sorted by path; empty when nothing changed. */
export function unifiedDiff(changes: readonly FileChange[]): string {
  return [...changes]
    .filter((c) => c.before !== c.after)
    .sort((a, b) => a.path.localeCompare(b.path))
    .map((c) => {
      const patch = createTwoFilesPatch(
        c.before === undefined ? '/dev/null' : `a/${c.path}`,
        c.after === undefined ? '/dev/null' : `b/${c.path}`,
        c.before ?? '',
        c.after ?? '',
        undefined,
        undefined,
        { context: 3 },
      );
      // jsdiff starts with a "====" rule; git starts with a "diff --git" line and the file names.
      const mode = c.before === undefined ? 'new file mode 100644\n' : c.after === undefined ? 'deleted file mode 100644\n' : '';
      return `diff --git a/${c.path} b/${c.path}\n${mode}${patch.slice(patch.indexOf('\n') + 1)}`;
    })
    .join('');
}
