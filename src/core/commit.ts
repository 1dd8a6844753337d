// What changed between two renderings of the DR repository, and the commit message that tells a
// reviewer: a summary line with counts, the files grouped by change, and trailers that name the
// Replication and the source cluster (machine-readable with `git interpret-trailers`).

export interface FileDiff {
  added: string[];
  changed: string[];
  removed: string[];
}

/** `before` maps path → blob oid; `after` maps path → blob oid. */
export function diffFiles(before: Map<string, string>, after: Map<string, string>): FileDiff {
  const added: string[] = [];
  const changed: string[] = [];
  const removed: string[] = [];
  for (const [p, oid] of after) {
    const old = before.get(p);
    if (old === undefined) added.push(p);
    else if (old !== oid) changed.push(p);
  }
  for (const p of before.keys()) if (!after.has(p)) removed.push(p);
  return { added: added.sort(), changed: changed.sort(), removed: removed.sort() };
}

export interface CommitInfo {
  replication: string;
  sourceCluster: string;
  diff: FileDiff;
  /** Objects written per kind in this sync (not only the changed ones). */
  counts: Record<string, number>;
  /** Free-form notes (warnings) appended to the body. */
  notes?: string[];
}

const MAX_LISTED = 200;

export function commitMessage(info: CommitInfo): string {
  const { added, changed, removed } = info.diff;
  const parts = [added.length && `${added.length} added`, changed.length && `${changed.length} changed`, removed.length && `${removed.length} removed`].filter(Boolean);
  const lines = [`dr-syncer: sync ${info.replication} (${parts.join(', ') || 'no changes'})`, ''];
  let listed = 0;
  for (const [title, files] of [['Added', added], ['Changed', changed], ['Removed', removed]] as const) {
    if (!files.length) continue;
    lines.push(`${title}:`);
    for (const f of files) {
      if (listed++ >= MAX_LISTED) break;
      lines.push(`  ${f}`);
    }
    lines.push('');
  }
  const total = added.length + changed.length + removed.length;
  if (total > MAX_LISTED) lines.push(`(${total - MAX_LISTED} more files not listed)`, '');
  const counts = Object.entries(info.counts).map(([k, n]) => `${k}=${n}`).join(', ');
  if (counts) lines.push(`Objects in DR: ${counts}`, '');
  for (const n of info.notes ?? []) lines.push(n);
  if (info.notes?.length) lines.push('');
  lines.push(`Dr-Syncer-Replication: ${info.replication}`, `Dr-Syncer-Source-Cluster: ${info.sourceCluster}`);
  return lines.join('\n') + '\n';
}
