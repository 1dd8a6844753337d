// The measured recovery point of a Replication: how old the source state is that the DR cluster
// actually runs, for objects and for PVC data, judged against spec.recoveryPointObjective.
// Pure (no I/O, no clock): the caller reads the DR cluster's applied commit and the Git ancestry.
//
// Objects: a sync that started reading the source at time T and left the branch at commit C puts
// the source as of T into C (status.lastSyncStartTime with lastCommit; status.syncHistory for the
// earlier tips). The DR cluster running commit A runs the newest T whose C is A or an ancestor of
// A (other Replications writing the same repository commit on top of ours). An A that holds
// none of the recorded commits is not measurable: NotReady, naming A.
// Data: rsync copies a volume as it is during the copy, so a PVC's DR copy holds the source as of
// the start of its last complete copy; the Replication's data time is the oldest PVC's.

/** The parts of Replication.status read here (structurally the API type's). */
export interface RecoveryStatus {
  lastCommit?: string;
  lastSyncStartTime?: string;
  syncHistory?: { commit: string; sourceTime: string }[];
  pvcs?: { name: string; namespace: string; phase?: string; lastSyncTime?: string; lastSyncDuration?: string }[];
  dataSync?: { lastCompletionTime?: string };
  failover?: { state?: string };
}

export type Verdict = 'Ready' | 'NotReady' | 'Unknown';

/** What the DR cluster's GitOps tool reports for the Replication's folder. */
export type AppliedState =
  | { kind: 'applied'; commit: string; by: string }
  /** A GitOps object follows the folder but has not applied anything yet. */
  | { kind: 'nothing-applied'; by: string }
  /** Not known: no DR kubeconfig, the DR cluster did not answer, no GitOps object follows the folder. */
  | { kind: 'unknown'; reason: string };

export interface RecoveryInput {
  status: RecoveryStatus | undefined;
  /** spec.pvc.syncData */
  syncData: boolean;
  applied: AppliedState;
  /**
   * Of lastCommit and the syncHistory commits, those known to be the applied commit or its
   * ancestors (from a bounded Git walk; see ancestryCandidates). Not needed when the applied
   * commit is one of them.
   */
  containedInApplied?: ReadonlySet<string>;
  /** Why the ancestry is not known (the repository could not be read), for the reason. */
  ancestryError?: string;
  /** spec.failover.active */
  failoverActive?: boolean;
  now: Date;
  objectiveMs: number;
}

export interface RecoveryPoint {
  verdict: Verdict;
  /** Why, for NotReady and Unknown. */
  reason?: string;
  /** The newest source state of the objects the DR cluster runs. */
  objectsTime?: Date;
  /** The oldest PVC's last complete copy (its start), with syncData. */
  dataTime?: Date;
  /** When the verdict changes by itself (an age crosses the objective), if it will. */
  flipsAt?: Date;
}

const ts = (d: Date): string => d.toISOString().replace(/\.\d{3}Z$/, 'Z');
const date = (s: string | undefined): Date | undefined => {
  if (!s) return undefined;
  const d = new Date(s);
  return Number.isNaN(d.getTime()) ? undefined : d;
};
const short = (c: string): string => c.slice(0, 12);

/** A duration as status writes it ("42.5s", "1.25s"; also "1m30s", "250ms"), in ms; undefined if unreadable. */
export function statusDurationMs(d: string | undefined): number | undefined {
  if (!d || !/^(\d+(\.\d+)?(ms|s|m|h))+$/.test(d)) return undefined;
  let ms = 0;
  for (const m of d.matchAll(/(\d+(?:\.\d+)?)(ms|s|m|h)/g)) ms += Number(m[1]) * { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[m[2] as 'ms' | 's' | 'm' | 'h'];
  return ms;
}

/** A duration for messages: "45s", "12m", "1h30m", "2d3h". */
export function formatAge(ms: number): string {
  const s = Math.max(0, Math.floor(ms / 1000));
  if (s < 120) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m${s % 60 ? `${s % 60}s` : ''}`;
  const h = Math.floor(m / 60);
  if (h < 48) return `${h}h${m % 60 ? `${m % 60}m` : ''}`;
  const d = Math.floor(h / 24);
  return `${d}d${h % 24 ? `${h % 24}h` : ''}`;
}

/** The commits this Replication's syncs left, each with the newest source state it holds, newest first. */
function recorded(status: RecoveryStatus | undefined): { commit: string; time?: Date }[] {
  const out: { commit: string; time?: Date }[] = [];
  if (status?.lastCommit) out.push({ commit: status.lastCommit, time: date(status.lastSyncStartTime) });
  for (const h of status?.syncHistory ?? []) out.push({ commit: h.commit, time: date(h.sourceTime) });
  return out;
}

/**
 * The commits whose ancestry of `applied` must be known: none when the applied commit is one
 * this Replication's syncs left (the branch only moves forward, so no newer one can be its
 * ancestor), otherwise every recorded one.
 */
export function ancestryCandidates(status: RecoveryStatus | undefined, applied: string): string[] {
  const rec = recorded(status);
  if (rec.some((r) => r.commit === applied)) return [];
  return [...new Set(rec.map((r) => r.commit))];
}

/** The newest source state held by the applied commit, or why it is not known. */
function objectsTimeOf(i: RecoveryInput, applied: string): { time?: Date; problem?: string } {
  const rec = recorded(i.status);
  const held = rec.filter((r) => r.commit === applied || i.containedInApplied?.has(r.commit));
  const times = held.map((r) => r.time).filter((t): t is Date => t !== undefined);
  if (times.length > 0) return { time: new Date(Math.max(...times.map((t) => t.getTime()))) };
  if (held.length > 0) {
    return { problem: `no source time is recorded for commit ${short(applied)} (synced by an older dr-syncer): the next sync records it` };
  }
  const newest = rec[0]?.commit;
  return {
    problem: `the DR cluster runs commit ${short(applied)}, which holds none of the ${new Set(rec.map((r) => r.commit)).size} commit(s) this Replication's syncs left` +
      `${newest ? ` (newest ${short(newest)})` : ''}${i.ancestryError ? ` as far as is known: the repository could not be read: ${i.ancestryError}` : ''}: ` +
      'is the GitOps tool following another branch or repository, or far behind?',
  };
}

/** The oldest PVC's last complete copy (its start), or what is missing. */
function dataTimeOf(status: RecoveryStatus | undefined): { time?: Date; problem?: string } {
  const pvcs = (status?.pvcs ?? []).filter((p) => p.phase !== 'Skipped'); // never copied by design (owned by another object)
  if (pvcs.length === 0) {
    return status?.dataSync?.lastCompletionTime ? {} : { problem: 'PVC data has not been copied yet' };
  }
  let oldest: Date | undefined;
  const never: string[] = [];
  for (const p of pvcs) {
    const end = date(p.lastSyncTime);
    if (!end) {
      never.push(`${p.namespace}/${p.name}`);
      continue;
    }
    const start = new Date(end.getTime() - (statusDurationMs(p.lastSyncDuration) ?? 0));
    if (!oldest || start < oldest) oldest = start;
  }
  if (never.length) return { time: oldest, problem: `PVC ${never.slice(0, 5).join(', ')}${never.length > 5 ? ', …' : ''} ha${never.length === 1 ? 's' : 've'} never been copied completely` };
  return { time: oldest };
}

/** Every failover state but Standby: the DR cluster is (or is still) the active site. */
const FAILED_OVER = new Set(['FailingOver', 'FailedOver', 'FailingBack', 'CopyingDataBack']);

export function computeRecoveryPoint(i: RecoveryInput): RecoveryPoint {
  const notReady: string[] = [];
  const unknown: string[] = [];
  const objective = formatAge(i.objectiveMs);
  let objectsTime: Date | undefined;
  let dataTime: Date | undefined;

  if (!i.status?.lastCommit) {
    notReady.push('no successful sync yet: the DR repository holds nothing of this Replication');
  } else if (i.applied.kind === 'unknown') {
    unknown.push(i.applied.reason);
  } else if (i.applied.kind === 'nothing-applied') {
    notReady.push(`${i.applied.by} in the DR cluster has not applied any commit yet`);
  } else {
    const o = objectsTimeOf(i, i.applied.commit);
    objectsTime = o.time;
    if (o.problem) notReady.push(o.problem);
    else if (objectsTime && i.now.getTime() - objectsTime.getTime() > i.objectiveMs) {
      notReady.push(`objects: the DR cluster runs the source as of ${ts(objectsTime)} (commit ${short(i.applied.commit)}, ${i.applied.by}), older than the objective ${objective}`);
    }
  }

  if (i.syncData) {
    const d = dataTimeOf(i.status);
    dataTime = d.time;
    if (d.problem) notReady.push(d.problem);
    else if (dataTime && i.now.getTime() - dataTime.getTime() > i.objectiveMs) {
      notReady.push(`data: the oldest PVC copy holds the source as of ${ts(dataTime)}, older than the objective ${objective}`);
    }
  }

  const failedOver = i.failoverActive || FAILED_OVER.has(i.status?.failover?.state ?? '');
  // Failed over, the DR cluster is the active site: nothing to recover to, whatever the ages.
  if (failedOver) {
    return {
      verdict: 'Unknown', objectsTime, dataTime,
      reason: `failed over (status.failover.state ${i.status?.failover?.state ?? 'FailingOver'}): the DR cluster is the active site; the recovery point is measured again after failback`,
    };
  }
  const verdict: Verdict = notReady.length ? 'NotReady' : unknown.length ? 'Unknown' : 'Ready';
  // Ages only grow: a time still within the objective makes the verdict NotReady once it is not.
  const crossings = [objectsTime, dataTime]
    .filter((t): t is Date => t !== undefined)
    .map((t) => t.getTime() + i.objectiveMs)
    .filter((t) => t >= i.now.getTime());
  const flipsAt = verdict !== 'NotReady' && crossings.length ? new Date(Math.min(...crossings) + 1) : undefined;
  const reasons = [...notReady, ...unknown];
  return { verdict, ...(reasons.length ? { reason: reasons.join('; ') } : {}), objectsTime, dataTime, flipsAt };
}
