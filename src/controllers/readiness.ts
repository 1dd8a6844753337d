// The readiness reconciler: the measured recovery point of each Replication. It asks the DR
// cluster (the destinationCluster RemoteCluster's kubeconfig) which commit its GitOps tool has
// applied to the Replication's folder (src/gitops/applied.ts), works out from status.syncHistory
// (and Git ancestry, for a repository other Replications write too) the source time that commit
// holds, takes the PVC copies' times, and judges both against spec.recoveryPointObjective
// (src/core/recovery.ts).
//
// Its own queue ('readiness'): a DR cluster that does not answer holds one worker for at most
// DR_TIMEOUT_MS and never the syncs. It writes only status.recoveryPoint (a merge patch of that
// one field; the Replication and PVC data reconcilers own the rest), and only when something
// other than checkedTime changed or checkedTime is getting old. The ages are exported as
// dr_syncer_recovery_point_seconds, computed at scrape time.
//
// measure() is shared with `dr-syncer status`, which computes the same figures live.
import type { KubeClient } from '../adapters/kube/client.ts';
import { KubeApiError } from '../adapters/kube/client.ts';
import type { GitAuth, GitRepo } from '../adapters/git/repo.ts';
import type { RemoteCluster, Replication, ReplicationStatus } from '../api/v1alpha1/index.ts';
import type { AppliedState, RecoveryPoint } from '../core/recovery.ts';
import { ancestryCandidates, computeRecoveryPoint } from '../core/recovery.ts';
import type { DrFolder, GitOpsObjects } from '../gitops/applied.ts';
import { appliedFor, notFoundReason, readGitOpsObjects } from '../gitops/applied.ts';
import type { ReconcileResult } from '../runtime/controller.ts';
import type { Informer } from '../runtime/informer.ts';
import type { GitTarget } from '../sync/spec.ts';
import { gitAuthFromSecretData, gitTarget } from '../sync/spec.ts';
import type { Logger } from '../util/log.ts';
import type { ClusterClients } from './clusters.ts';
import { rfc3339 } from './conditions.ts';
import type { SyncMetrics } from './metrics.ts';
import { parseDuration } from './schedule.ts';
import { errorMessage as message } from '../util/errors.ts';

export const DEFAULT_OBJECTIVE_MS = 3_600_000;
const DEFAULT_INTERVAL_MS = 30_000;
const DR_TIMEOUT_MS = 10_000;
/** An unchanged recovery point is written again (checkedTime) this often, no more. */
const REFRESH_CHECKED_MS = 5 * 60_000;
/** How far back from the applied commit Git ancestry is looked for. */
const MAX_WALK = 2000;
const API = '/apis/dr-syncer.io/v1alpha1';

type RecoveryPointStatus = NonNullable<ReplicationStatus['recoveryPoint']>;

/** spec.recoveryPointObjective in ms (default 1h). */
export const objectiveOf = (rep: Replication): number => parseDuration(rep.spec.recoveryPointObjective, DEFAULT_OBJECTIVE_MS);

/** The DR repository folder a Replication writes, or why it has none. */
export function folderOf(rep: Replication, destination: RemoteCluster | undefined): GitTarget | Error {
  try {
    return gitTarget(rep, destination);
  } catch (err) {
    return err instanceof Error ? err : new Error(String(err));
  }
}

/** What the DR cluster's objects say about the folder, as the core's AppliedState. */
export function appliedState(objects: GitOpsObjects, folder: DrFolder): AppliedState {
  const a = appliedFor(objects, folder);
  if (!a) return { kind: 'unknown', reason: notFoundReason(objects, folder) };
  return a.commit ? { kind: 'applied', commit: a.commit, by: a.by } : { kind: 'nothing-applied', by: a.by };
}

/** Reads the DR cluster's GitOps objects within `timeoutMs`; a failure is a reason, never an exception. */
export async function readDr(dr: KubeClient, timeoutMs: number, signal?: AbortSignal): Promise<GitOpsObjects | { error: string }> {
  const timeout = AbortSignal.timeout(timeoutMs);
  try {
    return await readGitOpsObjects(dr, signal ? AbortSignal.any([signal, timeout]) : timeout);
  } catch (err) {
    if (signal?.aborted) throw err;
    if (timeout.aborted) return { error: `the DR cluster (${dr.server}) did not answer within ${timeoutMs / 1000}s` };
    if (err instanceof KubeApiError && err.status === 403) {
      return { error: `the DR cluster's kubeconfig may not list Flux Kustomizations/GitRepositories or Argo CD Applications (${err.message}): grant get/list on them` };
    }
    return { error: `reading the DR cluster (${dr.server}) failed: ${message(err)}` };
  }
}

export interface Measured extends RecoveryPoint {
  appliedCommit?: string;
  appliedBy?: string;
}

/**
 * The recovery point of `rep` now, from what the DR cluster applied. `ancestry` answers which
 * of the candidates are the applied commit or its ancestors (it may throw: the commit is then
 * not measurable, and the reason says why).
 */
export async function measure(o: {
  rep: Replication;
  applied: AppliedState;
  ancestry: (applied: string, candidates: string[]) => Promise<Set<string>>;
  now: Date;
  objectiveMs: number;
}): Promise<Measured> {
  let contained: Set<string> | undefined;
  let ancestryError: string | undefined;
  if (o.applied.kind === 'applied') {
    const candidates = ancestryCandidates(o.rep.status, o.applied.commit);
    if (candidates.length > 0) {
      try {
        contained = await o.ancestry(o.applied.commit, candidates);
      } catch (err) {
        ancestryError = message(err);
      }
    }
  }
  const rp = computeRecoveryPoint({
    status: o.rep.status, syncData: o.rep.spec.pvc?.syncData === true, applied: o.applied, containedInApplied: contained, ancestryError,
    failoverActive: o.rep.spec.failover?.active === true, now: o.now, objectiveMs: o.objectiveMs,
  });
  return {
    ...rp,
    ...(o.applied.kind === 'applied' ? { appliedCommit: o.applied.commit } : {}),
    ...(o.applied.kind !== 'unknown' ? { appliedBy: o.applied.by } : {}),
  };
}

/** The status form of a measurement (every field present: null removes it in the merge patch). */
export function recoveryPointStatus(m: Measured, checked: Date): Record<keyof RecoveryPointStatus, string | null> {
  return {
    verdict: m.verdict,
    reason: m.reason ?? null,
    objectsTime: m.objectsTime ? rfc3339(m.objectsTime) : null,
    dataTime: m.dataTime ? rfc3339(m.dataTime) : null,
    appliedCommit: m.appliedCommit ?? null,
    appliedBy: m.appliedBy ?? null,
    checkedTime: rfc3339(checked),
  };
}

/** The fields that matter for a rewrite: everything but checkedTime, absent and null alike. */
const essence = (rp: Partial<Record<keyof RecoveryPointStatus, string | null | undefined>> | undefined): string =>
  JSON.stringify(['verdict', 'reason', 'objectsTime', 'dataTime', 'appliedCommit', 'appliedBy'].map((k) => rp?.[k as keyof RecoveryPointStatus] ?? null));

/** Whether a status change is one the recovery point depends on (not our own recoveryPoint write). */
export function readinessInputsChanged(o: Replication, n: Replication): boolean {
  const strip = (r: Replication) => {
    const { recoveryPoint: _own, conditions: _c, ...rest } = r.status ?? {};
    return JSON.stringify([r.spec, rest]);
  };
  return o.metadata.generation !== n.metadata.generation || strip(o) !== strip(n);
}

export interface ReadinessControllerDeps {
  client: KubeClient;
  replications: Informer<Replication>;
  remoteClusters: Informer<RemoteCluster>;
  clusters: ClusterClients;
  metrics: SyncMetrics;
  /** Where bare caches of DR repositories live (the Replication reconciler's, shared). */
  cacheDir: string;
  log: Logger;
  /** How often each Replication is measured (default 30 s). */
  intervalMs?: number;
  /** How long the DR cluster may take to answer (default 10 s). */
  drTimeoutMs?: number;
  now?: () => Date;
}

export class ReadinessController {
  private readonly now: () => Date;
  private readonly intervalMs: number;
  private readonly drTimeoutMs: number;
  /** What was last written per Replication (its essence) and when. */
  private readonly written = new Map<string, { essence: string; at: number }>();
  /** The last ancestry answer per Replication: the same question is not asked of Git again. */
  private readonly ancestryCache = new Map<string, { question: string; found: Set<string> }>();
  /** One read of a DR cluster's GitOps objects serves every Replication measured meanwhile. */
  private readonly drReads = new Map<KubeClient, { at: number; result: Promise<GitOpsObjects | { error: string }> }>();
  private readonly repos = new Map<string, GitRepo>();

  constructor(private readonly d: ReadinessControllerDeps) {
    this.now = d.now ?? (() => new Date());
    this.intervalMs = d.intervalMs ?? DEFAULT_INTERVAL_MS;
    this.drTimeoutMs = d.drTimeoutMs ?? DR_TIMEOUT_MS;
  }

  reconcile = async (key: string, signal?: AbortSignal): Promise<ReconcileResult | void> => {
    const slash = key.indexOf('/'); // "namespace/name" (runtime/controller.ts's splitKey, which would load the logger into the CLI)
    const rep = this.d.replications.get(key.slice(0, slash), key.slice(slash + 1));
    if (!rep || rep.metadata.deletionTimestamp) {
      this.d.metrics.recoveryPoints.delete(key);
      this.written.delete(key);
      this.ancestryCache.delete(key);
      return;
    }
    const ns = rep.metadata.namespace ?? 'default';
    const destination = rep.spec.destinationCluster ? this.d.remoteClusters.get(ns, rep.spec.destinationCluster) : undefined;
    const folder = folderOf(rep, destination);
    const applied = folder instanceof Error ? { kind: 'unknown' as const, reason: folder.message } : await this.applied(rep, destination, folder, signal);
    const now = this.now();
    const m = await measure({
      rep, applied, now, objectiveMs: objectiveOf(rep),
      ancestry: (commit, candidates) => this.ancestry(key, ns, folder as GitTarget, commit, candidates),
    });
    this.d.metrics.recoveryPoints.set(key, { objects: m.objectsTime?.getTime(), data: m.dataTime?.getTime() });
    signal?.throwIfAborted(); // only the leader writes
    await this.write(key, rep, m, now);
    const untilFlip = m.flipsAt ? m.flipsAt.getTime() - now.getTime() : Infinity;
    return { requeueAfterMs: Math.max(1000, Math.min(this.intervalMs, untilFlip)) };
  };

  /** What the DR cluster runs of the folder, or why that is not known. */
  private async applied(rep: Replication, destination: RemoteCluster | undefined, folder: GitTarget, signal?: AbortSignal): Promise<AppliedState> {
    const ns = rep.metadata.namespace ?? 'default';
    if (!rep.spec.destinationCluster) {
      return { kind: 'unknown', reason: 'no spec.destinationCluster: dr-syncer has no kubeconfig for the DR cluster, so what it has applied is not known' };
    }
    if (!destination) return { kind: 'unknown', reason: `spec.destinationCluster: RemoteCluster ${ns}/${rep.spec.destinationCluster} does not exist` };
    let dr: KubeClient;
    try {
      dr = await this.d.clusters.forRemoteCluster(destination);
    } catch (err) {
      return { kind: 'unknown', reason: `the DR cluster (RemoteCluster ${ns}/${destination.metadata.name}) cannot be reached: ${message(err)}` };
    }
    const objects = await this.readDrShared(dr, signal);
    if ('error' in objects) return { kind: 'unknown', reason: objects.error };
    return appliedState(objects, folder);
  }

  private readDrShared(dr: KubeClient, signal?: AbortSignal): Promise<GitOpsObjects | { error: string }> {
    const maxAge = Math.min(5_000, this.intervalMs / 2);
    const hit = this.drReads.get(dr);
    if (hit && Date.now() - hit.at < maxAge) return hit.result;
    for (const [c, r] of this.drReads) if (Date.now() - r.at >= maxAge) this.drReads.delete(c);
    const result = readDr(dr, this.drTimeoutMs, signal);
    this.drReads.set(dr, { at: Date.now(), result });
    return result;
  }

  /** Which candidates the applied commit holds: from the shared bare cache, fetched only when it lacks the commit. */
  private async ancestry(key: string, ns: string, target: GitTarget, applied: string, candidates: string[]): Promise<Set<string>> {
    const question = `${applied} ${candidates.join(',')}`;
    const hit = this.ancestryCache.get(key);
    if (hit?.question === question) return hit.found;
    const repo = await this.repoFor(ns, target);
    const found = await repo.exclusive(async () => {
      if (!(await repo.hasCommit(applied))) await repo.fetch();
      return repo.reachable(applied, candidates, MAX_WALK);
    });
    this.ancestryCache.set(key, { question, found });
    return found;
  }

  private async repoFor(ns: string, target: GitTarget): Promise<GitRepo> {
    let auth: GitAuth | undefined;
    if (target.credentialsSecret) {
      const secret = await this.d.client.get<{ data?: Record<string, string> }>(`/api/v1/namespaces/${encodeURIComponent(ns)}/secrets/${encodeURIComponent(target.credentialsSecret)}`);
      auth = gitAuthFromSecretData(secret.data);
    }
    const cacheKey = JSON.stringify([target.url, target.branch, auth ?? null]);
    let repo = this.repos.get(cacheKey);
    if (!repo) {
      const { GitRepo } = await import('../adapters/git/repo.ts');
      repo = new GitRepo({ url: target.url, branch: target.branch, cacheDir: this.d.cacheDir, auth, log: this.d.log });
      this.repos.set(cacheKey, repo);
    }
    return repo;
  }

  /** Patches status.recoveryPoint alone, when it changed or its checkedTime is getting old. */
  private async write(key: string, rep: Replication, m: Measured, now: Date): Promise<void> {
    const next = recoveryPointStatus(m, now);
    const e = essence(next);
    const current = rep.status?.recoveryPoint;
    const checkedAt = current?.checkedTime ? new Date(current.checkedTime).getTime() : 0;
    const mine = this.written.get(key);
    const fresh = (e === essence(current) && now.getTime() - checkedAt < REFRESH_CHECKED_MS) || (mine?.essence === e && now.getTime() - mine.at < REFRESH_CHECKED_MS);
    if (fresh) return;
    try {
      await this.d.client.request('PATCH', `${API}/namespaces/${encodeURIComponent(rep.metadata.namespace ?? 'default')}/replications/${encodeURIComponent(rep.metadata.name)}/status`,
        { status: { recoveryPoint: next } }, 'application/merge-patch+json');
      this.written.set(key, { essence: e, at: now.getTime() });
      if (essence(current) !== e) this.d.log.info({ replication: key, verdict: m.verdict, reason: m.reason, appliedCommit: m.appliedCommit }, 'recovery point changed');
    } catch (err) {
      if (err instanceof KubeApiError && err.status === 404) return; // deleted meanwhile
      throw err;
    }
  }
}
