// `dr-syncer diff`: the changes a dry-run sync reads from the old and new trees, and how the
// command reports them (file list, summary line, exit codes).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { blobOid } from '../../src/adapters/git/repo.ts';
import type { TreeEntry } from '../../src/adapters/git/repo.ts';
import { LocalRepositoryError } from '../../src/adapters/git/repo.ts';
import { EXIT, exitCodeFor, nameStatus, summaryLine } from '../../src/cli/diff.ts';
import { CommandError } from '../../src/cli/replication-context.ts';
import { SyncError, treeChanges } from '../../src/sync/engine.ts';

/** An in-memory object store with readDir/readBlob as GitRepo answers them; counts what is read. */
class FakeRepo {
  trees = new Map<string, TreeEntry[]>();
  blobs = new Map<string, string>();
  treeReads = new Map<string, number>();
  blobReads = 0;
  private n = 0;

  /** Builds a tree from nested objects (a string is a file); returns its oid. Equal content, equal oid. */
  tree(files: { [name: string]: string | object }): string {
    const entries: TreeEntry[] = Object.entries(files).map(([name, v]) => {
      if (typeof v === 'string') {
        const oid = blobOid(v);
        this.blobs.set(oid, v);
        return { mode: '100644', path: name, oid, type: 'blob' };
      }
      return { mode: '040000', path: name, oid: this.tree(v as { [name: string]: string | object }), type: 'tree' };
    });
    const key = JSON.stringify(entries);
    for (const [oid, e] of this.trees) if (JSON.stringify(e) === key) return oid;
    const oid = `tree${this.n++}`;
    this.trees.set(oid, entries);
    return oid;
  }

  readDir(tree: string | undefined, dir: string): Promise<TreeEntry[] | undefined> {
    assert.equal(dir, '');
    if (!tree) return Promise.resolve(undefined);
    this.treeReads.set(tree, (this.treeReads.get(tree) ?? 0) + 1);
    return Promise.resolve([...this.trees.get(tree)!]);
  }

  readBlob(oid: string): Promise<string> {
    this.blobReads++;
    return Promise.resolve(this.blobs.get(oid)!);
  }
}

const shop = { 'kustomization.yaml': 'resources:\n- namespace.yaml\n', 'namespace.yaml': 'kind: Namespace\n', 'deployment.apps-web.yaml': 'replicas: 0\n' };

void describe('treeChanges: the files a dry-run sync would commit', () => {
  it('added, changed and removed files at any depth, with their contents, sorted by path', async () => {
    const repo = new FakeRepo();
    const unrelated = { 'README.md': 'DR\n', other: { deep: { 'x.yaml': 'x: 1\n' } } };
    const before = repo.tree({ ...unrelated, clusters: { dr: { 'kustomization.yaml': 'resources:\n- shop\n', shop, gone: { 'namespace.yaml': 'g\n' } } } });
    const after = repo.tree({
      ...unrelated,
      clusters: { dr: { 'kustomization.yaml': 'resources:\n- new\n- shop\n', shop: { ...shop, 'deployment.apps-web.yaml': 'replicas: 0\nx: 1\n', 'configmap-a.yaml': 'a\n' }, new: { 'namespace.yaml': 'n\n' } } },
    });
    const changes = await treeChanges(repo, before, after);
    assert.deepEqual(changes, [
      { path: 'clusters/dr/gone/namespace.yaml', before: 'g\n', after: undefined },
      { path: 'clusters/dr/kustomization.yaml', before: 'resources:\n- shop\n', after: 'resources:\n- new\n- shop\n' },
      { path: 'clusters/dr/new/namespace.yaml', before: undefined, after: 'n\n' },
      { path: 'clusters/dr/shop/configmap-a.yaml', before: undefined, after: 'a\n' },
      { path: 'clusters/dr/shop/deployment.apps-web.yaml', before: 'replicas: 0\n', after: 'replicas: 0\nx: 1\n' },
    ]);
    // Unchanged subtrees are not opened; only changed files are read.
    assert.equal(repo.treeReads.get(repo.tree(unrelated.other)), undefined);
    assert.equal(repo.blobReads, 7); // 2 per changed file, 1 per added or removed one
  });

  it('the same tree: nothing, and nothing read', async () => {
    const repo = new FakeRepo();
    const t = repo.tree({ dr: { shop } });
    assert.deepEqual(await treeChanges(repo, t, t), []);
    assert.equal(repo.treeReads.size + repo.blobReads, 0);
  });

  it('an empty branch (no tree yet): every file is added; a folder that becomes a file and back', async () => {
    const repo = new FakeRepo();
    const t = repo.tree({ dr: { 'kustomization.yaml': 'k\n', shop } });
    assert.deepEqual((await treeChanges(repo, undefined, t)).map((c) => [c.path, c.before === undefined]), [
      ['dr/kustomization.yaml', true], ['dr/shop/deployment.apps-web.yaml', true], ['dr/shop/kustomization.yaml', true], ['dr/shop/namespace.yaml', true],
    ]);
    const folder = repo.tree({ x: { 'a.yaml': 'a\n' } });
    const file = repo.tree({ x: 'now a file\n' });
    assert.deepEqual(await treeChanges(repo, folder, file), [{ path: 'x', before: undefined, after: 'now a file\n' }, { path: 'x/a.yaml', before: 'a\n', after: undefined }]);
    assert.deepEqual(await treeChanges(repo, file, folder), [{ path: 'x', before: 'now a file\n', after: undefined }, { path: 'x/a.yaml', before: undefined, after: 'a\n' }]);
  });
});

void describe('dr-syncer diff: reporting', () => {
  it('--stat lists status and path; the summary names the repository without credentials', () => {
    assert.equal(nameStatus([{ path: 'a', after: 'x' }, { path: 'b', before: 'x', after: 'y' }, { path: 'c', before: 'x' }]), 'A\ta\nM\tb\nD\tc\n');
    assert.equal(nameStatus([]), '');
    const target = { url: 'https://bot:s3cret@git.example.com/dr.git', branch: 'main', path: 'clusters/dr' };
    assert.equal(summaryLine(3, target), '3 files would change in https://git.example.com/dr.git (main, clusters/dr)');
    assert.equal(summaryLine(1, { ...target, path: '' }), '1 file would change in https://git.example.com/dr.git (main, repository root)');
    assert.equal(summaryLine(0, target), 'no changes: the DR repository is up to date');
  });

  it('exit codes: bad input 2, a failing cluster or repository 3', () => {
    assert.deepEqual(EXIT, { same: 0, differ: 1, badInput: 2, failed: 3 });
    assert.equal(exitCodeFor(new CommandError('Replication dr-syncer/x does not exist', 2)), 2);
    assert.equal(exitCodeFor(new CommandError('listing Replications failed', 1)), 3);
    assert.equal(exitCodeFor(new LocalRepositoryError('/x does not exist')), 2);
    for (const reason of ['UnknownResourceTypes', 'InvalidSpec', 'SourceNamespaceNotFound']) assert.equal(exitCodeFor(new SyncError(reason, 'm')), 2, reason);
    for (const reason of ['SourceUnreachable', 'SourceForbidden', 'ResourceTypesUnavailable']) assert.equal(exitCodeFor(new SyncError(reason, 'm')), 3, reason);
    assert.equal(exitCodeFor(new Error('fetching the DR repository https://x (branch main) failed: ECONNREFUSED')), 3);
  });
});
