// Failover and failback as changes to the DR repository's files (pure: no I/O). A failover
// activates the workloads the sync wrote idle: replicas from dr-syncer.io/original-replicas,
// CronJobs that were active at the source un-suspended. A failback writes them idle again, by
// the sync's own rules (transform/workloads.ts), so the sync that resumes afterwards finds
// nothing to change in them. Only workload files are read and rewritten: Secrets (SOPS) and
// everything else stay byte for byte.
import { parse as parseYaml } from 'yaml';
import { ORIGINAL_REPLICAS, ORIGINAL_SUSPEND, scaleWorkload, suspendBatch } from './transform/workloads.ts';
import type { KubeObject } from './types.ts';
import { isRecord } from './types.ts';
import { toYaml } from './yaml.ts';

export type Role = 'active' | 'standby';

/** The files a role change may touch: what scaleWorkload and suspendBatch change. */
const WORKLOAD_FILE = /^(deployment\.apps|statefulset\.apps|cronjob\.batch)-.+\.yaml$/;
export const isWorkloadFile = (file: string): boolean => WORKLOAD_FILE.test(file);

export interface WorkloadChange {
  kind: string;
  namespace: string;
  name: string;
  /** "replicas 0", "suspended", ... */
  from: string;
  to: string;
}

const describe = (o: KubeObject): string => {
  if (!isRecord(o.spec)) return '';
  if (o.kind === 'CronJob') return o.spec.suspend === true ? 'suspended' : 'active';
  return `replicas ${typeof o.spec.replicas === 'number' ? o.spec.replicas : 1}`;
};

/** The object as the active site runs it: the source's replicas, its active CronJobs resumed. */
export function activateWorkload(obj: KubeObject): KubeObject {
  if (!isRecord(obj.spec)) return obj;
  const annotations = obj.metadata.annotations ?? {};
  if (obj.kind === 'CronJob') {
    return annotations[ORIGINAL_SUSPEND] === 'false' ? { ...obj, spec: { ...obj.spec, suspend: false } } : obj;
  }
  const original = annotations[ORIGINAL_REPLICAS];
  if (original === undefined || !/^\d+$/.test(original)) return obj;
  return { ...obj, spec: { ...obj.spec, replicas: Number(original) } };
}

/** The object as the sync writes it for an idle DR site (scaleToZero), from its active form. */
export function standbyWorkload(obj: KubeObject, scaleToZero: boolean): KubeObject {
  // From the active form, so the count the sync remembers is the source's, never a DR override.
  return suspendBatch(scaleWorkload(activateWorkload(obj), scaleToZero), scaleToZero);
}

export interface RoleChange {
  /** path → new content, for the files that change. */
  files: Map<string, string>;
  workloads: WorkloadChange[];
}

/**
 * The files of one Replication's folders for `role`. `files` maps a repository path to its
 * content; only workload files are considered. An object already in that role is unchanged, so
 * a second failover (or failback) changes nothing.
 */
export function changeRole(files: ReadonlyMap<string, string>, role: Role, scaleToZero: boolean): RoleChange {
  const out = new Map<string, string>();
  const workloads: WorkloadChange[] = [];
  for (const [p, content] of [...files].sort(([a], [b]) => a.localeCompare(b))) {
    if (!isWorkloadFile(p.slice(p.lastIndexOf('/') + 1))) continue;
    const obj = parseYaml(content) as KubeObject | null;
    if (!obj || !isRecord(obj) || !isRecord(obj.metadata)) continue;
    const next = role === 'active' ? activateWorkload(obj) : standbyWorkload(obj, scaleToZero);
    const rendered = toYaml(next);
    if (rendered === content) continue;
    out.set(p, rendered);
    const [from, to] = [describe(obj), describe(next)];
    if (from !== to) workloads.push({ kind: obj.kind, namespace: obj.metadata.namespace ?? '', name: obj.metadata.name, from, to });
  }
  return { files: out, workloads };
}

export interface RoleCommitInfo {
  role: Role;
  replication: string;
  sourceCluster: string;
  workloads: WorkloadChange[];
  requestedBy?: string;
  /** What happened to the source (a cutover), for the body. */
  notes?: string[];
}

/** The commit message: what a reviewer needs, with the sync's trailers plus the action. */
export function roleCommitMessage(info: RoleCommitInfo): string {
  const action = info.role === 'active' ? 'failover' : 'failback';
  const n = info.workloads.length;
  const what = info.role === 'active' ? 'activated' : 'back to standby';
  const lines = [`dr-syncer: ${action} ${info.replication} (${n} workload${n === 1 ? '' : 's'} ${what})`, ''];
  lines.push(
    info.role === 'active'
      ? 'The DR cluster becomes the active site: workloads run with the replicas the source had, and the CronJobs that were active there resume. The sync from the source is paused.'
      : 'The DR cluster goes back to standby: workloads at 0 replicas, CronJobs suspended. The sync from the source resumes.',
    '',
  );
  for (const w of info.workloads) lines.push(`  ${w.kind} ${w.namespace}/${w.name}: ${w.from} -> ${w.to}`);
  if (n) lines.push('');
  for (const note of info.notes ?? []) lines.push(note);
  if (info.notes?.length) lines.push('');
  if (info.requestedBy) lines.push(`Requested-By: ${info.requestedBy}`);
  lines.push(`Dr-Syncer-Replication: ${info.replication}`, `Dr-Syncer-Source-Cluster: ${info.sourceCluster}`, `Dr-Syncer-Action: ${action}`);
  return lines.join('\n') + '\n';
}
