// The Replication reconciler, level-based as controller-runtime and Flux shape theirs: every
// reconcile derives from what it observes whether a sync is due (spec generation, the source's
// digest against the one recorded at the last successful sync, the schedule, triggers, a failed
// last attempt), never from in-memory flags that a failure or a restart could lose. A failed
// sync throws, so the work queue retries it with backoff until it succeeds; status is collected
// during the reconcile and patched once at its end (plus a "Syncing" mark before a sync).
//
// The watch predicates live here too: replicationChanged for the Replications themselves, and
// the source watches (source-watches.ts) count only content changes, not status updates.
import { createHash, randomBytes } from 'node:crypto';
import type { KubeClient } from '../adapters/kube/client.ts';
import { KubeApiError, resourcePath } from '../adapters/kube/client.ts';
import type { GitAuth } from '../adapters/git/repo.ts';
import { GitRepo, isAuthFailure, isRemoteUrl, PushConflictError } from '../adapters/git/repo.ts';
import { splitUrl } from '../adapters/git/http.ts';
import { normalizeRepoPath } from '../core/render.ts';
import { canonicalRepoUrl } from '../gitops/repo-url.ts';
import type { RemoteCluster, Replication, ReplicationStatus } from '../api/v1alpha1/index.ts';
import { validateReplication } from '../api/v1alpha1/index.ts';
import { selectorToQuery } from '../core/labels.ts';
import { resolveResourceTypes } from '../core/select.ts';
import { readsType } from '../core/plan.ts';
import type { KubeObject, LabelSelector } from '../core/types.ts';
import type { EventRecorder } from '../runtime/events.ts';
import type { Informer } from '../runtime/informer.ts';
import type { ReconcileResult } from '../runtime/controller.ts';
import { splitKey } from '../runtime/controller.ts';
import { destinationNamespaceOf, readRepoState, readSyncSource, removeReplication, repoUnchangedSince, resolveNamespaces, SyncError } from '../sync/engine.ts';
import { SyncGroups } from '../sync/group.ts';
import { RenderCache } from '../sync/render-cache.ts';
import { commitRole, NothingToFailOver } from '../sync/failover.ts';
import type { RepoWorkload, RoleCommitResult } from '../sync/failover.ts';
import { activeDrWorkloads, RESTORE_BY_HAND, restoreSource, scaledDownSourceWorkloads, scaleSourceDown, SPLIT_BRAIN } from './failover.ts';
import { failbackDataStep, withoutCopyBack } from './pvc-data.ts';
import type { SyncResult, SyncSpec } from '../sync/engine.ts';
import { sopsSealer } from '../sync/secrets.ts';
import type { GitTarget } from '../sync/spec.ts';
import { gitAuthFromSecretData, gitTarget, syncSpecFor } from '../sync/spec.ts';
import type { Logger } from '../util/log.ts';
import type { ClusterClients } from './clusters.ts';
import { ClusterError } from './clusters.ts';
import type { Condition } from './conditions.ts';
import { getCondition, rfc3339, setCondition } from './conditions.ts';
import type { SyncMetrics } from './metrics.ts';
import { nextRun, parseCron, parseDuration, seconds } from './schedule.ts';
import type { SourceWatches, WatchSpec } from './source-watches.ts';

type FailoverStatus = NonNullable<ReplicationStatus['failover']>;

export const FINALIZER = 'dr-syncer.io/cleanup';
/** On Git credentials Secrets a Replication uses: its clean-up still needs them when the
 * namespace is deleted (Secrets go first), like kubernetes.io/pvc-protection. */
export const CREDENTIALS_FINALIZER = 'dr-syncer.io/git-credentials-in-use';
export const SYNC_NOW_ANNOTATION = 'dr-syncer.io/sync-now';
const API = '/apis/dr-syncer.io/v1alpha1';
/** How long watches may take to list before the Replication reports the source as unreachable. */
const WATCH_SYNC_GRACE_MS = 10_000;
const WATCH_REFRESH_MS = 5 * 60_000;

export interface ReplicationControllerDeps {
  client: KubeClient;
  replications: Informer<Replication>;
  remoteClusters: Informer<RemoteCluster>;
  clusters: ClusterClients;
  watches: SourceWatches;
  events: EventRecorder;
  metrics: SyncMetrics;
  /** Where bare caches of DR repositories live. */
  cacheDir: string;
  /** Name recorded for an empty spec.sourceCluster. */
  localClusterName: string;
  log: Logger;
  now?: () => Date;
}

/** A reason a sync cannot run that the user must fix, or that resolves by itself later. */
class NotReady extends Error {
  constructor(
    readonly reason: string,
    message: string,
    readonly retryAfterMs?: number,
  ) {
    super(message);
  }
}

interface Prepared {
  target: GitTarget;
  syncSpec: SyncSpec;
  source: KubeClient;
  sourceName: string;
  repo: GitRepo;
}

/** A Secret as far as it is read here. */
interface SecretObject extends KubeObject {
  metadata: KubeObject['metadata'] & { finalizers?: string[]; deletionTimestamp?: string; resourceVersion?: string };
  data?: Record<string, string>;
}

type GitTargetStatus = NonNullable<ReplicationStatus['gitTargets']>[number];
type SyncHistory = NonNullable<ReplicationStatus['syncHistory']>;
/** A sync's result and when it started reading the source (the state the repository then holds). */
/** `fromCaches`: a periodic resync answered from the watch caches (resyncFromCaches): nothing was read or rendered. */
type TimedSyncResult = SyncResult & { startedAt: Date; fromCaches?: boolean };
const SYNC_HISTORY_LENGTH = 20;

/**
 * The commits this Replication's syncs left the branch at, newest first, each with the newest
 * source time it is known to hold: a no-op sync moves the time of the commit at the top forward.
 */
export function recordHistory(history: SyncHistory | undefined, head: string, sourceTime: Date): SyncHistory {
  const rest = (history ?? []).filter((h) => h.commit !== head);
  return [{ commit: head, sourceTime: rfc3339(sourceTime) }, ...rest].slice(0, SYNC_HISTORY_LENGTH);
}
type ConditionUpdate = Omit<Condition, 'lastTransitionTime' | 'observedGeneration'>;

/** Status fields and conditions collected during one reconcile, patched once at its end. */
interface StatusUpdate {
  fields: Partial<ReplicationStatus>;
  conditions: ConditionUpdate[];
}

// Two spellings of one target must never count as two, or the clean-up of the "old" one would
// remove what was just written: one canonical spelling, kept in src/gitops/repo-url.ts.
export { canonicalRepoUrl };
const sameTarget = (a: Pick<GitTargetStatus, 'url' | 'branch' | 'path'>, b: Pick<GitTargetStatus, 'url' | 'branch' | 'path'>) =>
  canonicalRepoUrl(a.url) === canonicalRepoUrl(b.url) && a.branch === b.branch && normalizeRepoPath(a.path) === normalizeRepoPath(b.path);
const describeTarget = (t: Pick<GitTargetStatus, 'url' | 'branch' | 'path'>) => `${t.url} (branch ${t.branch}, path "${t.path}")`;

/** The predicate of the watch on Replications: what the user changed (spec, annotations such as
 * sync-now, deletion). The controller's own status writes do not trigger a reconcile. */
export function replicationChanged(o: Replication, n: Replication): boolean {
  return (
    o.metadata.generation !== n.metadata.generation ||
    JSON.stringify(o.metadata.annotations ?? {}) !== JSON.stringify(n.metadata.annotations ?? {}) ||
    (n.metadata.deletionTimestamp !== undefined && o.metadata.deletionTimestamp === undefined)
  );
}

export interface Due {
  due: boolean;
  /** Why a sync is due, for logs. */
  why?: string;
  /** The next scheduled sync (Scheduled), or the periodic resync (Continuous). */
  next?: Date;
  /** spec.trigger.manual when it asks for a sync. */
  manual?: string;
  /** The sync-now annotation's value when set. */
  syncNow?: string;
}

/**
 * Marks a recorded status.sourceDigest whose sync was not exact (it had warnings: a failed
 * LIST, files kept for an unserved type...): the source counts as synced, but the periodic
 * resync reads it again instead of answering from the watch caches.
 */
const INEXACT = '~';
export const recordedDigest = (d: string | undefined): { digest?: string; exact: boolean } =>
  d?.endsWith(INEXACT) ? { digest: d.slice(0, -INEXACT.length), exact: false } : { digest: d, exact: d !== undefined };

/**
 * What a Continuous sync reads, as one digest: the watched source objects (watches.digest) and
 * the inputs that are not in the Replication's generation (the Git target may come from the
 * destination RemoteCluster; the source cluster's name is in the files).
 */
const syncInputsDigest = (watched: string, p: Pick<Prepared, 'target' | 'sourceName'>): string =>
  `v2:${createHash('sha256').update(JSON.stringify([watched, canonicalRepoUrl(p.target.url), p.target.branch, normalizeRepoPath(p.target.path), p.sourceName])).digest('base64url')}`;

/**
 * Whether a sync is due, from observed state only. `sourceDigest` is what the source looks
 * like now (Continuous mode), compared with status.sourceDigest from the last successful sync.
 */
export function syncDue(rep: Replication, now: Date, sourceDigest?: string): Due {
  const spec = rep.spec;
  const status = rep.status ?? {};
  const syncNow = rep.metadata.annotations?.[SYNC_NOW_ANNOTATION];
  const manual = spec.trigger?.manual && spec.trigger.manual !== status.lastManualSync ? spec.trigger.manual : undefined;
  const lastSync = status.lastSyncTime ? new Date(status.lastSyncTime) : undefined;
  const mode = spec.mode ?? 'Scheduled';
  let next: Date | undefined;
  const reasons: [boolean, string][] = [[syncNow !== undefined, 'sync-now annotation'], [manual !== undefined, 'spec.trigger.manual']];
  if (mode !== 'Manual') {
    reasons.push(
      [rep.metadata.generation !== status.observedGeneration, 'spec changed'],
      [!lastSync, 'never synced'],
      // Failed (or partly failed): retried until it succeeds; the work queue's backoff paces it.
      [getCondition(status.conditions as Condition[] | undefined, 'Synced')?.status === 'False', 'the last sync failed'],
    );
  }
  if (mode === 'Scheduled') {
    next = nextRun(parseCron(spec.schedule ?? ''), lastSync ?? new Date(rep.metadata.creationTimestamp ?? now.toISOString()));
    // A tick missed while no controller ran runs once now.
    reasons.push([next !== undefined && next <= now, 'scheduled']);
  } else if (mode === 'Continuous') {
    next = new Date((lastSync ?? now).getTime() + parseDuration(spec.continuous?.resyncInterval, 3_600_000));
    reasons.push([next <= now, 'periodic resync'], [sourceDigest !== undefined && sourceDigest !== recordedDigest(status.sourceDigest).digest, 'source changed']);
  }
  const why = reasons.filter(([v]) => v).map(([, w]) => w);
  return { due: why.length > 0, why: why.join(', ') || undefined, next, manual, syncNow };
}

export class ReplicationController {
  /** One GitRepo per repository, branch and credentials. */
  private readonly repos = new Map<string, { repo: GitRepo; auth: string }>();
  private readonly kindsByReplication = new Map<string, string[]>();
  /** What each Replication's watches were derived from: discovery is asked again only when that
   * changes, or after WATCH_REFRESH_MS (a CRD installed since), not on every reconcile. */
  private readonly watchedFor = new Map<string, { client: KubeClient; generation?: number; at: number }>();
  private readonly now: () => Date;
  private readonly groups = new SyncGroups();
  /** Per Replication: the files of objects unchanged since its last sync are not rendered again. */
  private readonly renderCaches = new Map<string, RenderCache>();

  constructor(private readonly d: ReplicationControllerDeps) {
    this.now = d.now ?? (() => new Date());
  }

  reconcile = async (key: string, signal?: AbortSignal): Promise<ReconcileResult | void> => {
    const { namespace, name } = splitKey(key);
    const cached = this.d.replications.get(namespace, name);
    if (!cached) {
      this.d.watches.remove(key);
      this.watchedFor.delete(key);
      this.kindsByReplication.delete(key);
      this.renderCaches.delete(key);
      await this.d.metrics.forget(key);
      return;
    }
    const rep = structuredClone(cached); // the informer's copy is shared and read-only
    if (rep.metadata.deletionTimestamp) return this.finalize(key, rep, signal);
    if (!(rep.metadata.finalizers ?? []).includes(FINALIZER)) {
      // A conflict (another writer, e.g. the readiness reconciler's status, moved the object since
      // the cache saw it) is read again and retried here, not requeued behind every other key.
      let meta: { finalizers?: string[]; resourceVersion?: string } = rep.metadata;
      for (let attempt = 1; ; attempt++) {
        try {
          await this.patch(rep, { metadata: { finalizers: [...(meta.finalizers ?? []), FINALIZER], resourceVersion: meta.resourceVersion } });
          break;
        } catch (err) {
          if (!(err instanceof KubeApiError && err.status === 409)) throw err;
          if (attempt >= 3) return { requeueAfterMs: 250 };
          meta = (await this.d.client.get<Replication>(`${API}/namespaces/${rep.metadata.namespace}/replications/${rep.metadata.name}`)).metadata;
          if (meta.finalizers?.includes(FINALIZER)) break;
        }
      }
    }
    const update: StatusUpdate = { fields: {}, conditions: [] };
    let failed = false;
    try {
      return await this.reconcileLive(key, rep, update, signal);
    } catch (err) {
      failed = true;
      if (!update.conditions.some((c) => c.type === 'Ready') && !signal?.aborted) {
        // Failed before a sync could record why (discovery, a credentials Secret...): say so too.
        const message = err instanceof Error ? err.message : String(err);
        update.fields.lastError = { message, reason: 'ReconcileFailed', time: rfc3339(this.now()) };
        update.conditions.push({ type: 'Ready', status: 'False', reason: 'ReconcileFailed', message: `${message}; retrying with backoff` });
      }
      throw err;
    } finally {
      // Once per reconcile, whatever happened (a patch error must not hide the reconcile's own);
      // not after the lease was lost: only the leader writes.
      if (!signal?.aborted) await this.writeStatus(rep, update.fields, update.conditions).catch((err: unknown) => {
        if (!failed) throw err;
        this.d.log.warn({ err, replication: key }, 'writing status failed');
      });
    }
  };

  private async reconcileLive(key: string, rep: Replication, st: StatusUpdate, signal?: AbortSignal): Promise<ReconcileResult | void> {
    const set = (fields: Partial<ReplicationStatus>, conditions: ConditionUpdate[] = []) => {
      Object.assign(st.fields, fields);
      st.conditions.push(...conditions);
    };
    const valid = validateReplication(rep);
    if (!valid.ok) {
      this.d.watches.remove(key);
      const message = `invalid spec: ${valid.errors.join('; ')}`;
      if (getCondition(rep.status?.conditions as Condition[] | undefined, 'Ready')?.reason !== 'InvalidSpec') this.d.events.event(rep as unknown as KubeObject, 'Warning', 'InvalidSpec', message);
      set({ phase: 'Failed', lastError: { message, reason: 'InvalidSpec', time: rfc3339(this.now()) } }, [{ type: 'Ready', status: 'False', reason: 'InvalidSpec', message }]);
      return; // nothing to retry until the spec changes
    }
    const spec = valid.value.spec;
    if (spec.paused) {
      this.d.watches.remove(key);
      if (rep.status?.phase !== 'Paused') this.d.events.event(rep as unknown as KubeObject, 'Normal', 'Paused', 'spec.paused is true: no syncs run until it is set to false');
      set({ phase: 'Paused', nextSyncTime: undefined }, [{ type: 'Ready', status: 'False', reason: 'Paused', message: 'spec.paused is true' }]);
      return;
    }

    // Failover and failback come before everything a sync needs: the source may be gone.
    const failoverState = rep.status?.failover?.state;
    if (spec.failover?.active || (failoverState && failoverState !== 'Standby')) {
      this.d.watches.remove(key);
      try {
        const r = spec.failover?.active ? await this.failover(key, valid.value, set, signal) : await this.failback(key, valid.value, set, signal);
        if (r !== 'done') return r;
      } catch (err) {
        if (!(err instanceof NotReady)) throw err;
        set({ lastError: { message: err.message, reason: err.reason, time: rfc3339(this.now()) } }, [{ type: 'Ready', status: 'False', reason: err.reason, message: err.message }]);
        return { requeueAfterMs: err.retryAfterMs ?? 30_000 };
      }
    }

    let p: Prepared;
    try {
      p = await this.prepare(valid.value);
    } catch (err) {
      if (!(err instanceof NotReady)) throw err;
      // Watches go; whatever changes meanwhile shows in the source digest once they are back.
      this.d.watches.remove(key);
      set({ phase: 'Failed', lastError: { message: err.message, reason: err.reason, time: rfc3339(this.now()) } }, [
        { type: 'Ready', status: 'False', reason: err.reason, message: err.message },
      ]);
      this.d.metrics.outOfSync.set({ replication: key }, 1);
      return { requeueAfterMs: err.retryAfterMs ?? 30_000 };
    }

    const mode = spec.mode ?? 'Scheduled';
    let sourceDigest: string | undefined;
    if (mode === 'Continuous') {
      await this.ensureWatches(key, valid.value, p.source);
      const watched = this.d.watches.digest(key);
      sourceDigest = watched === undefined ? undefined : syncInputsDigest(watched, p);
      if (sourceDigest === undefined) {
        // The watches call back once they have listed; until then nothing can be compared.
        const waited = this.d.watches.pendingMs(key);
        if (waited >= WATCH_SYNC_GRACE_MS) {
          const message = `the watches on source cluster ${p.sourceName} have not listed for ${Math.round(waited / 1000)}s: is ${p.source.server} reachable?`;
          set({ phase: 'Failed', lastError: { message, reason: 'SourceUnreachable', time: rfc3339(this.now()) } }, [{ type: 'Ready', status: 'False', reason: 'SourceUnreachable', message }]);
          this.d.metrics.outOfSync.set({ replication: key }, 1);
        }
        return { requeueAfterMs: WATCH_SYNC_GRACE_MS };
      }
    } else this.d.watches.remove(key);

    const now = this.now();
    const due = syncDue(valid.value, now, sourceDigest);
    let next = due.next;
    if (due.due) {
      this.d.log.debug({ replication: key, why: due.why }, 'sync due');
      const live = await this.splitBrain(key, valid.value, p);
      if (live.length) {
        const message = `the DR cluster runs workloads while no failover is recorded (${live.slice(0, 5).join(', ')}${live.length > 5 ? ', …' : ''}): ` +
          'syncs are held so that replicas 0 is not committed over a live DR site. Either make it official with `dr-syncer failover ' +
          `${rep.metadata.name}\` (spec.failover.active: true), or scale those workloads in the DR cluster back to 0; syncs resume by themselves`;
        if (getCondition(rep.status?.conditions as Condition[] | undefined, 'Ready')?.reason !== SPLIT_BRAIN) this.d.events.event(rep as unknown as KubeObject, 'Warning', 'SplitBrainDetected', message);
        set({ phase: 'Paused', lastError: { message, reason: SPLIT_BRAIN, time: rfc3339(now) } }, [{ type: 'Ready', status: 'False', reason: SPLIT_BRAIN, message }]);
        this.d.metrics.outOfSync.set({ replication: key }, 1);
        return { requeueAfterMs: 15_000 };
      }
      // The "Syncing" mark is written onto `rep`, the copy the reconcile's final write compares with.
      const fromCaches = mode === 'Continuous' && due.why === 'periodic resync' ? await this.resyncFromCaches(key, valid.value, p) : undefined;
      const result = fromCaches ?? await this.sync(key, valid.value, p, set, (f) => this.writeStatus(rep, f, []), signal);
      const after = this.now();
      if (mode === 'Scheduled') next = nextRun(parseCron(spec.schedule ?? ''), after);
      else if (mode === 'Continuous') next = new Date(after.getTime() + parseDuration(spec.continuous?.resyncInterval, 3_600_000));
      const complete = this.recordSync(rep, result, { manual: due.manual, next, sourceDigest }, set);
      if (!complete) return { requeue: true }; // some objects failed: retried with backoff
      if (due.syncNow !== undefined && !signal?.aborted) await this.clearSyncNow(rep, due.syncNow);
    } else {
      // Nothing to do: the summary follows the last sync's result (a cleared NotReady, a
      // "Syncing" a crash left behind must not linger).
      const synced = getCondition(rep.status?.conditions as Condition[] | undefined, 'Synced');
      set({ nextSyncTime: next ? rfc3339(next) : undefined });
      if (synced?.status === 'True') {
        set({ phase: 'Synced', lastError: undefined }, [{ type: 'Ready', status: 'True', reason: 'Synced', message: synced.message }]);
      } else if (!synced) {
        set({ phase: 'Pending', lastError: undefined }, [{ type: 'Ready', status: 'False', reason: 'NotSynced', message: 'no sync has run yet: annotate dr-syncer.io/sync-now or set spec.trigger.manual' }]);
      }
    }
    await this.cleanupOldTargets(key, valid.value, p.target, st, signal);
    const at = this.now();
    return next ? { requeueAfterMs: Math.max(1000, next.getTime() - at.getTime()) } : undefined;
  }

  /**
   * The split-brain guard: the DR cluster's workloads of this Replication that run although no
   * failover is recorded (someone scaled them up, or activated the site by hand). Not knowable
   * without a DR kubeconfig (no destinationCluster) or while the DR cluster does not answer: then
   * the sync goes on, as it did before the guard existed, and the log says why.
   */
  private async splitBrain(key: string, rep: Replication, p: Prepared): Promise<string[]> {
    const ns = rep.metadata.namespace ?? 'default';
    const destRc = rep.spec.destinationCluster ? this.d.remoteClusters.get(ns, rep.spec.destinationCluster) : undefined;
    const synced = rep.status?.sourceNamespaces ?? [];
    if (!destRc || synced.length === 0) return [];
    try {
      const dr = await this.d.clusters.forRemoteCluster(destRc);
      return await activeDrWorkloads(dr, synced.map((s) => destinationNamespaceOf(p.syncSpec, s)), rep.spec.scaleToZero ?? true);
    } catch (err) {
      this.d.log.warn({ err, replication: key }, 'the split-brain guard could not read the DR cluster; syncing without it');
      return [];
    }
  }

  /** The Git side of a Replication alone (failover needs no source cluster). */
  private async gitFor(rep: Replication): Promise<{ target: GitTarget; repo: GitRepo; author: { name: string; email: string } }> {
    const ns = rep.metadata.namespace ?? 'default';
    const destRc = rep.spec.destinationCluster ? this.d.remoteClusters.get(ns, rep.spec.destinationCluster) : undefined;
    if (rep.spec.destinationCluster && !destRc) throw new NotReady('RemoteClusterNotFound', `spec.destinationCluster: RemoteCluster ${ns}/${rep.spec.destinationCluster} does not exist`);
    let target: GitTarget;
    try {
      target = gitTarget(rep, destRc);
    } catch (err) {
      throw new NotReady('NoRepository', err instanceof Error ? err.message : String(err), 300_000);
    }
    const author = { name: rep.spec.git?.author?.name ?? 'dr-syncer', email: rep.spec.git?.author?.email ?? 'dr-syncer@localhost' };
    return { target, repo: await this.repoFor(ns, target), author };
  }

  /** The source cluster's client, answering: a cutover needs it before anything is committed. */
  private async reachableSource(rep: Replication): Promise<KubeClient> {
    const ns = rep.metadata.namespace ?? 'default';
    const name = rep.spec.sourceCluster;
    const rc = name ? this.d.remoteClusters.get(ns, name) : undefined;
    if (name && !rc) throw new Error(`RemoteCluster ${ns}/${name} does not exist`);
    const client = rc ? await this.d.clusters.forRemoteCluster(rc) : this.d.clusters.local;
    await client.get('/version');
    return client;
  }

  /**
   * spec.failover.active: one commit activates the DR workloads; with cutover the source is
   * scaled down right after it (checked reachable before, so a refused cutover changes nothing,
   * and a rejected push leaves the source running). Level-based: a second pass finds the commit
   * made and the source down, and only records it.
   */
  private async failover(key: string, rep: Replication, set: (f: Partial<ReplicationStatus>, c?: ConditionUpdate[]) => void, signal?: AbortSignal): Promise<ReconcileResult | void> {
    const fo = rep.spec.failover ?? {};
    const st = rep.status?.failover ?? {};
    const now = this.now();
    // What the status says of a failover is this one's only while one is under way: a new one
    // (the first, or one after a failback) starts without the last cycle's commits, times and
    // counts, so that a pass finding the commit already made (its status write lost, or its push
    // reported failed but landed) never reports the last cycle's.
    const earlier: FailoverStatus = st.state === 'FailingOver' || st.state === 'FailedOver' ? st : {};
    const { failoverCommit: _c, failoverTime: _t, workloads: _w, failbackCommit: _bc, failbackTime: _bt, ...withoutLastCycle } = st;
    const base = { ...(earlier === st ? st : withoutLastCycle), state: 'FailingOver' as const, requestedBy: fo.requestedBy };
    let source: KubeClient | undefined;
    const cutover = fo.cutover === true && st.sourceScaledDown !== true;
    const notes: string[] = [];
    if (cutover) {
      try {
        source = await this.reachableSource(rep);
        // Every scale-down checked by the API server before anything is committed: a 403 now
        // refuses the failover instead of leaving it half done after the push.
        const { repo: r0, target: t0 } = await this.gitFor(rep);
        const planned = await r0.exclusive(() => commitRole(
          { role: 'active', replication: key, sourceCluster: '', path: t0.path, author: { name: '', email: '' }, scaleToZero: rep.spec.scaleToZero ?? true },
          { repo: r0, dryRun: true },
        ).catch((e: unknown) => {
          if (e instanceof NothingToFailOver) return { all: [] }; // refused by the commit below
          throw new NotReady('FailoverFailed', `failover: reading the DR repository ${t0.url} failed: ${e instanceof Error ? e.message : String(e)}`);
        }));
        await scaleSourceDown(source, planned.all, { by: key, dryRun: true });
      } catch (err) {
        if (err instanceof NotReady) throw err;
        const why = `source cluster ${rep.spec.sourceCluster ?? this.d.localClusterName} cannot be scaled down (it must answer, and allow the patches): ${err instanceof Error ? err.message : String(err)}`;
        if (!fo.force) {
          const message = `cutover refused: ${why}. Nothing was changed. Set spec.failover.force: true (dr-syncer failover --cutover --force) to fail over without scaling the source down, or retry when it answers`;
          if (rep.status?.failover?.message !== message) this.d.events.event(rep as unknown as KubeObject, 'Warning', 'FailoverRefused', message);
          // Refused: the failover state stays what it was (nothing started).
          set({ phase: 'Failed', failover: { ...st, requestedBy: fo.requestedBy, message } }, [{ type: 'Ready', status: 'False', reason: 'CutoverRefused', message }]);
          return { requeueAfterMs: 30_000 };
        }
        notes.push(`The source was not scaled down (force): ${why}.`);
      }
    }
    const { target, repo, author } = await this.gitFor(rep);
    let r;
    try {
      r = await repo.exclusive(() => commitRole(
        { role: 'active', replication: key, sourceCluster: rep.spec.sourceCluster ?? this.d.localClusterName, path: target.path, author, scaleToZero: rep.spec.scaleToZero ?? true, requestedBy: fo.requestedBy, notes },
        { repo, log: this.d.log.child({ replication: key }), signal },
      ));
    } catch (err) {
      const message = `failover of ${describeTarget(target)} failed: ${err instanceof Error ? err.message : String(err)}`;
      const reason = err instanceof NothingToFailOver ? 'NothingToFailOver' : err instanceof PushConflictError ? 'GitPushRejected' : 'FailoverFailed';
      this.d.events.event(rep as unknown as KubeObject, 'Warning', 'FailoverFailed', message);
      // Nothing to fail over: refused, the failover state stays as it was (nothing started).
      const failover = err instanceof NothingToFailOver ? { ...st, requestedBy: fo.requestedBy, message } : { ...base, message };
      set({ phase: 'Failed', failover, lastError: { message, reason, time: rfc3339(now) } }, [{ type: 'Ready', status: 'False', reason, message }]);
      if (err instanceof NothingToFailOver) return { requeueAfterMs: 300_000 };
      throw err; // retried with backoff; nothing was changed at the source
    }
    const scaled = source ? await scaleSourceDown(source, r.all, { by: key }) : [];
    // No commit now: an earlier pass of this failover made it.
    const commit = r.commit ?? earlier.failoverCommit ?? r.head;
    const at = r.commit ? rfc3339(now) : earlier.failoverTime ?? rfc3339(now);
    if (r.commit) this.d.events.event(rep as unknown as KubeObject, 'Normal', 'FailedOver', `failover committed ${r.commit.slice(0, 12)}: ${r.workloads.length} workload(s) activated${fo.requestedBy ? ` (requested by ${fo.requestedBy})` : ''}`);
    if (scaled.length) this.d.events.event(rep as unknown as KubeObject, 'Normal', 'SourceScaledDown', `cutover: ${scaled.join(', ')}`);
    const sourceScaledDown = st.sourceScaledDown === true || (fo.cutover === true && source !== undefined);
    const message = `failed over at ${at} in commit ${commit?.slice(0, 12) ?? '(none)'}: the DR cluster is the active site${sourceScaledDown ? ', the source was scaled down' : ''}; ` +
      'syncs are paused until spec.failover.active is false (dr-syncer failback)';
    set({
      phase: 'FailedOver', nextSyncTime: undefined, lastError: undefined,
      failover: { ...base, state: 'FailedOver', failoverTime: at, failoverCommit: commit, workloads: r.commit ? r.workloads.length : earlier.workloads ?? r.inRole, sourceScaledDown, message },
    }, [{ type: 'Ready', status: 'True', reason: 'FailedOver', message }]);
    return;
  }

  /**
   * spec.failover.active back to false: one commit puts the DR workloads back to standby; once
   * the DR cluster runs them at 0 (unless force), a source the cutover scaled down is restored,
   * and the sync resumes ('done').
   */
  private async failback(key: string, rep: Replication, set: (f: Partial<ReplicationStatus>, c?: ConditionUpdate[]) => void, signal?: AbortSignal): Promise<ReconcileResult | void | 'done'> {
    const fo = rep.spec.failover ?? {};
    const st = rep.status?.failover ?? {};
    const base = { ...withoutCopyBack(st), state: 'FailingBack' as const, requestedBy: fo.requestedBy ?? st.requestedBy };
    const { target, repo, author } = await this.gitFor(rep);
    const scaleToZero = rep.spec.scaleToZero ?? true;
    let r: RoleCommitResult | undefined;
    // Set when the Replication's folders are gone from the DR repository (removed by hand?).
    let gone: string | undefined;
    try {
      r = await repo.exclusive(() => commitRole(
        { role: 'standby', replication: key, sourceCluster: rep.spec.sourceCluster ?? this.d.localClusterName, path: target.path, author, scaleToZero, requestedBy: fo.requestedBy },
        { repo, log: this.d.log.child({ replication: key }), signal },
      ));
    } catch (err) {
      if (err instanceof NothingToFailOver) gone = err.message;
      else {
        const message = `failback of ${describeTarget(target)} failed: ${err instanceof Error ? err.message : String(err)}`;
        const reason = err instanceof PushConflictError ? 'GitPushRejected' : 'FailbackFailed';
        this.d.events.event(rep as unknown as KubeObject, 'Warning', 'FailbackFailed', message);
        set({ phase: 'Failed', failover: { ...base, message }, lastError: { message, reason, time: rfc3339(this.now()) } }, [{ type: 'Ready', status: 'False', reason, message }]);
        throw err;
      }
    }
    // The workloads failing back: the repository's; with its folders gone, those the cutover
    // scaled down at the source (they carry its mark); without a cutover, none.
    const workloads = r ? r.all : st.sourceScaledDown ? await this.scaledDownAtSource(rep, target) : [];
    // No commit now: an earlier pass of this failback made it (the failback commit in the status
    // is this one's only while one is under way).
    const commit = r ? r.commit ?? (st.state === 'FailingBack' || st.state === 'CopyingDataBack' ? st.failbackCommit : undefined) ?? r.head : undefined;
    if (r?.commit) this.d.events.event(rep as unknown as KubeObject, 'Normal', 'FailbackCommitted', `failback committed ${r.commit.slice(0, 12)}: ${r.workloads.length} workload(s) back to standby`);
    const ns = rep.metadata.namespace ?? 'default';
    const destRc = rep.spec.destinationCluster ? this.d.remoteClusters.get(ns, rep.spec.destinationCluster) : undefined;
    if (!fo.force && destRc) {
      let running: string[];
      try {
        running = await activeDrWorkloads(await this.d.clusters.forRemoteCluster(destRc), workloads.map((w) => w.destinationNamespace), scaleToZero, { countRunning: true });
      } catch (err) {
        running = [`the DR cluster ${destRc.metadata.name} does not answer (${err instanceof Error ? err.message : String(err)})`];
      }
      if (running.length) {
        const what = r ? `commit ${commit?.slice(0, 12)} puts the DR workloads to standby` : `${gone}, so the DR cluster should remove its workloads`;
        const message = `failing back: ${what}; waiting until the DR cluster runs them at 0 before the source is restored and syncs resume (${running.slice(0, 5).join(', ')}${running.length > 5 ? ', …' : ''}). ` +
          'Check that Flux or Argo CD applies the repository; spec.failover.force: true goes on without waiting';
        set({ phase: 'Pending', failover: { ...base, failbackCommit: commit, message } }, [{ type: 'Ready', status: 'False', reason: 'FailingBack', message }]);
        return { requeueAfterMs: 10_000 };
      }
    }
    // With PVC data: what the DR site wrote goes back to the source before it runs again (the PVC data controller copies it).
    const data = failbackDataStep(rep, this.now());
    if (data.wait) {
      set({ phase: 'Pending', failover: { ...base, ...data.failover, state: 'CopyingDataBack', failbackCommit: commit, message: data.wait } }, [{ type: 'Ready', status: 'False', reason: 'CopyingDataBack', message: data.wait }]);
      return { requeueAfterMs: 10_000 };
    }
    if (st.sourceScaledDown) {
      // Also those whose folder alone was removed from the repository (the source still says which).
      const source = await this.sourceToRestore(rep);
      const fromSource = r ? await this.scaledDownAtSource(rep, target, source) : [];
      const id = (w: RepoWorkload) => `${w.kind}/${w.sourceNamespace}/${w.name}`;
      const inRepo = new Set(workloads.map(id));
      const restored = await restoreSource(source, [...workloads, ...fromSource.filter((w) => !inRepo.has(id(w)))], key);
      if (restored.changed.length) this.d.events.event(rep as unknown as KubeObject, 'Normal', 'SourceRestored', `failback: ${restored.changed.join(', ')}`);
      if (restored.othersMarked.length) {
        this.d.events.event(rep as unknown as KubeObject, 'Warning', 'SourceLeftToOthers',
          `failback: left at the source as they are, another Replication's cutover scaled them down and its failback restores them: ${restored.othersMarked.join(', ')}. ` +
          `If that Replication is gone, restore one by hand: ${RESTORE_BY_HAND}`);
      }
    }
    const how = r ? `failed back in commit ${commit?.slice(0, 12) ?? '(none)'}` : `failed back without a commit (${gone})`;
    // (What the status says, not what this pass changed: an earlier pass may have restored them.)
    const message = `${how}: the DR cluster is on standby again${st.sourceScaledDown ? ', the source workloads were restored' : ''}; syncs resumed${data.note ?? ''}`;
    this.d.events.event(rep as unknown as KubeObject, data.failover ? 'Warning' : 'Normal', 'FailedBack', message);
    const failover = { ...base, ...data.failover, state: 'Standby' as const, failbackCommit: commit, failbackTime: rfc3339(this.now()), sourceScaledDown: false, message };
    set({ failover });
    return 'done';
  }

  /** A failback whose folders are gone from the DR repository: this Replication's source workloads that the cutover scaled down. */
  private async scaledDownAtSource(rep: Replication, target: GitTarget, source?: KubeClient): Promise<RepoWorkload[]> {
    source ??= await this.sourceToRestore(rep);
    const spec = syncSpecFor(rep, rep.spec.sourceCluster ?? this.d.localClusterName, target);
    const namespaces = await resolveNamespaces(source, spec).catch((e: unknown) => {
      if (e instanceof SyncError) return []; // its namespace is gone: nothing to restore
      throw e;
    });
    const types = resolveResourceTypes(spec.resourceTypes, spec.excludeResourceTypes, await source.discover()).types;
    return scaledDownSourceWorkloads(source, namespaces, { by: spec.replication, types, labelSelector: spec.plan.labelSelector });
  }

  private async sourceToRestore(rep: Replication): Promise<KubeClient> {
    try {
      return await this.reachableSource(rep);
    } catch (err) {
      throw new NotReady('SourceClusterUnreachable', `failing back: the source cluster cannot be reached to restore the workloads the cutover scaled down: ${err instanceof Error ? err.message : String(err)}; retrying`, 30_000);
    }
  }

  /** Everything a sync needs, or NotReady with a reason the user can act on. */
  private async prepare(rep: Replication): Promise<Prepared> {
    const spec = rep.spec;
    const ns = rep.metadata.namespace ?? 'default';
    const rc = (name: string | undefined, field: string): RemoteCluster | undefined => {
      if (!name) return undefined;
      const found = this.d.remoteClusters.get(ns, name);
      if (!found) throw new NotReady('RemoteClusterNotFound', `${field}: RemoteCluster ${ns}/${name} does not exist`);
      return found;
    };
    const sourceRc = rc(spec.sourceCluster, 'spec.sourceCluster');
    const destRc = rc(spec.destinationCluster, 'spec.destinationCluster');
    let source = this.d.clusters.local;
    if (sourceRc) {
      try {
        source = await this.d.clusters.forRemoteCluster(sourceRc);
      } catch (err) {
        if (err instanceof ClusterError) throw new NotReady('SourceClusterNotReady', `source cluster ${sourceRc.metadata.name}: ${err.message}`);
        throw err;
      }
      // Its controller probes it: while it does not answer, syncs would only hold workers until they time out.
      const reachable = getCondition(sourceRc.status?.conditions as Condition[] | undefined, 'Reachable');
      if (sourceRc.status?.observedGeneration === sourceRc.metadata.generation && reachable?.status === 'False') {
        throw new NotReady('SourceClusterUnreachable', `source cluster ${sourceRc.metadata.name}: ${reachable.message}`, 10_000);
      }
    }
    let target: GitTarget;
    try {
      target = gitTarget(rep, destRc);
    } catch (err) {
      throw new NotReady('NoRepository', err instanceof Error ? err.message : String(err), 300_000);
    }
    const repo = await this.repoFor(ns, target);
    const syncSpec = syncSpecFor(rep, spec.sourceCluster ?? this.d.localClusterName, target);
    return { target, syncSpec, source, sourceName: spec.sourceCluster ?? this.d.localClusterName, repo };
  }

  /** Credentials Secrets as read a moment ago (path → read): Replications sharing one read it once. */
  private readonly secrets = new Map<string, { at: number; read: Promise<SecretObject> }>();
  private readSecret(p: string, fresh = false): Promise<SecretObject> {
    const hit = this.secrets.get(p);
    if (!fresh && hit && performance.now() - hit.at < 5_000) return hit.read;
    const read = this.d.client.get<SecretObject>(p);
    this.secrets.set(p, { at: performance.now(), read });
    read.catch(() => { if (this.secrets.get(p)?.read === read) this.secrets.delete(p); });
    return read;
  }

  /** The Git credentials in Secret `secretName`; the Secret is kept (a finalizer) while any Replication needs it. */
  private async gitAuth(namespace: string, secretName: string): Promise<GitAuth> {
    const p = `/api/v1/namespaces/${encodeURIComponent(namespace)}/secrets/${encodeURIComponent(secretName)}`;
    let secret: SecretObject;
    try {
      secret = await this.readSecret(p);
    } catch (err) {
      if (err instanceof KubeApiError && err.status === 404) {
        throw new NotReady('GitCredentialsNotFound', `Secret ${namespace}/${secretName} (git credentialsSecretRef) does not exist; it needs the keys username and password, or token`);
      }
      throw err;
    }
    const auth = gitAuthFromSecretData(secret.data);
    if (!auth) throw new NotReady('GitCredentialsInvalid', `Secret ${namespace}/${secretName} needs the keys username and password, or token`);
    return auth;
  }

  /**
   * Keeps a credentials Secret (a finalizer) while a Replication has written with it, so that a
   * namespace deletion, which removes Secrets first, still lets the clean-up reach the repository.
   */
  private async holdCredentials(namespace: string, secretName: string): Promise<void> {
    const p = `/api/v1/namespaces/${encodeURIComponent(namespace)}/secrets/${encodeURIComponent(secretName)}`;
    // Replications sharing the Secret add the finalizer at the same time: a conflict is read again
    // (the other one has usually added it), not a failed sync.
    for (let attempt = 1; ; attempt++) {
      const secret = await this.readSecret(p, attempt > 1);
      const finalizers = secret.metadata.finalizers ?? [];
      if (secret.metadata.deletionTimestamp || finalizers.includes(CREDENTIALS_FINALIZER)) return;
      try {
        this.secrets.delete(p);
        await this.d.client.request('PATCH', p, { metadata: { finalizers: [...finalizers, CREDENTIALS_FINALIZER], resourceVersion: secret.metadata.resourceVersion } }, 'application/merge-patch+json');
        return;
      } catch (err) {
        if (!(err instanceof KubeApiError && err.status === 409) || attempt >= 5) throw err;
      }
    }
  }

  /** Drops our finalizer from a credentials Secret no Replication refers to any more. */
  private async releaseCredentials(namespace: string, secretName: string, except: { key: string; keep: GitTargetStatus[] }): Promise<void> {
    if (except.keep.some((t) => t.credentialsSecret === secretName)) return;
    for (const r of this.d.replications.list()) {
      if (r.metadata.namespace !== namespace || `${namespace}/${r.metadata.name}` === except.key) continue;
      const own = r.spec.git?.url ? r.spec.git.credentialsSecretRef?.name : undefined;
      const dest = !r.spec.git?.url && r.spec.destinationCluster ? this.d.remoteClusters.get(namespace, r.spec.destinationCluster)?.spec.git?.credentialsSecretRef?.name : undefined;
      const recorded = (r.status?.gitTargets ?? []).map((t) => t.credentialsSecret);
      if ([own, dest, r.spec.git?.credentialsSecretRef?.name, ...recorded].includes(secretName)) return;
    }
    const p = `/api/v1/namespaces/${encodeURIComponent(namespace)}/secrets/${encodeURIComponent(secretName)}`;
    try {
      const secret = await this.d.client.get<SecretObject>(p);
      const finalizers = secret.metadata.finalizers ?? [];
      if (!finalizers.includes(CREDENTIALS_FINALIZER)) return;
      this.secrets.delete(p);
      await this.d.client.request('PATCH', p, {
        metadata: { finalizers: finalizers.filter((f) => f !== CREDENTIALS_FINALIZER), resourceVersion: secret.metadata.resourceVersion },
      }, 'application/merge-patch+json');
    } catch (err) {
      if (!(err instanceof KubeApiError && err.status === 404)) throw err;
    }
  }

  private async repoFor(namespace: string, target: Pick<GitTargetStatus, 'url' | 'branch' | 'credentialsSecret'>): Promise<GitRepo> {
    const auth = target.credentialsSecret ? await this.gitAuth(namespace, target.credentialsSecret) : undefined;
    const k = `${target.url}#${target.branch}`;
    const authKey = JSON.stringify(auth ?? null);
    const hit = this.repos.get(k);
    if (hit && hit.auth === authKey) return hit.repo;
    const repo = new GitRepo({ url: target.url, branch: target.branch, auth, cacheDir: this.d.cacheDir, log: this.d.log });
    this.repos.set(k, { repo, auth: authKey });
    return repo;
  }

  /** One sync. Throws on failure (after recording it), so the work queue retries with backoff. */
  private async sync(key: string, rep: Replication, p: Prepared, set: (f: Partial<ReplicationStatus>, c?: ConditionUpdate[]) => void, mark: (f: Partial<ReplicationStatus>) => Promise<void>, signal?: AbortSignal): Promise<TimedSyncResult> {
    const t0 = performance.now();
    // Recorded before anything is written there: clean-up finds it even after a crash.
    // The URL without credentials (status is readable by more people than Secrets are).
    const here: GitTargetStatus = { url: isRemoteUrl(p.target.url) ? splitUrl(p.target.url).url : p.target.url, branch: p.target.branch, path: p.target.path, credentialsSecret: p.target.credentialsSecret };
    const recorded = rep.status?.gitTargets ?? [];
    const targets = [...recorded.filter((t) => !sameTarget(t, here)), here];
    await mark({ phase: 'Syncing', gitTargets: targets });
    const ns = rep.metadata.namespace ?? 'default';
    if (here.credentialsSecret) await this.holdCredentials(ns, here.credentialsSecret);
    // The same target with another credentials Secret: the old one is no longer needed by us.
    for (const t of recorded) {
      if (sameTarget(t, here) && t.credentialsSecret && t.credentialsSecret !== here.credentialsSecret) {
        await this.releaseCredentials(ns, t.credentialsSecret, { key, keep: targets });
      }
    }
    const joined = this.groups.reading(p.repo);
    try {
      const sealSecrets = p.syncSpec.plan.secretsMode === 'SOPS' ? sopsSealer(rep.spec.secrets?.sops?.ageRecipients ?? [], await this.digestKey(rep)) : undefined;
      const log = this.d.log.child({ replication: key });
      // The source is read outside the repository lock: a slow source cluster delays only its own Replications.
      const startedAt = this.now();
      const read = await readSyncSource(p.syncSpec, { source: p.source, log });
      signal?.throwIfAborted();
      // Syncs into the same repository that wait meanwhile go in one push (sync/group.ts).
      let renderCache = this.renderCaches.get(key);
      if (!renderCache) this.renderCaches.set(key, (renderCache = new RenderCache()));
      const grouped = this.groups.sync(p.repo, { spec: p.syncSpec, deps: { source: p.source, repo: p.repo, sealSecrets, log, read, signal, renderCache } });
      joined();
      const result = await grouped;
      this.d.metrics.syncDuration.observe({ replication: key, result: 'success' }, (performance.now() - t0) / 1000);
      if (result.attempts > 1) this.d.metrics.pushFailures.inc({ replication: key }, result.attempts - 1);
      // The whole sync, its read of the source included (runSync's own time starts after it).
      return { ...result, durationMs: Math.round(performance.now() - t0), startedAt };
    } catch (err) {
      joined();
      this.d.metrics.syncDuration.observe({ replication: key, result: 'error' }, (performance.now() - t0) / 1000);
      this.d.metrics.outOfSync.set({ replication: key }, 1);
      const reason = signal?.aborted
        ? 'Interrupted'
        : err instanceof SyncError ? err.reason
          : err instanceof PushConflictError ? 'GitPushRejected'
            : err instanceof KubeApiError ? 'SourceUnreachable'
              : isAuthFailure(err) ? 'GitAuthFailed'
                : /push|fetch/i.test(String(err)) ? 'GitFailed' : 'SyncFailed';
      if (reason.startsWith('Git')) this.d.metrics.pushFailures.inc({ replication: key });
      // Refused credentials: say which Secret they came from (rotated passwords go there).
      const unset = rep.spec.git?.url ? 'spec.git.credentialsSecretRef' : 'spec.git.credentialsSecretRef, or that of the destination RemoteCluster';
      const secret = reason === 'GitAuthFailed' ? (here.credentialsSecret ? `; the credentials are those of Secret ${ns}/${here.credentialsSecret}` : `; no credentials Secret is set (${unset})`) : '';
      const message = signal?.aborted ? `the sync was stopped before it pushed: ${String(signal.reason instanceof Error ? signal.reason.message : signal.reason)}` : `${err instanceof Error ? err.message : String(err)}${secret}`;
      if (!signal?.aborted) this.d.events.event(rep as unknown as KubeObject, 'Warning', 'SyncFailed', message);
      const failure: ConditionUpdate = { type: 'Synced', status: 'False', reason, message };
      set({ phase: 'Failed', lastError: { message, reason, time: rfc3339(this.now()) } }, [failure, { ...failure, type: 'Ready' }]);
      throw err;
    }
  }

  /**
   * The periodic resync of a Continuous Replication, answered from its watch caches: their
   * digest equals the one the last sync recorded (else a sync would be due for "source
   * changed"), so the source is as that sync read it; if the repository still holds what that
   * sync left (its folders, and the base kustomization.yaml), a sync would write nothing, and no
   * LIST is needed. Undefined when a full sync must run (the repository changed, or the last
   * sync's commit is not in the cache).
   */
  private async resyncFromCaches(key: string, rep: Replication, p: Prepared): Promise<TimedSyncResult | undefined> {
    const status = rep.status ?? {};
    const last = status.lastCommit;
    // Only after an exact sync, into this target alone (a move to another target is a real
    // sync), and while every watch follows the source.
    const targets = status.gitTargets ?? [];
    const here = { url: p.target.url, branch: p.target.branch, path: p.target.path };
    if (!last || !recordedDigest(status.sourceDigest).exact || targets.length !== 1 || !sameTarget(targets[0]!, here) || !this.d.watches.healthy(key)) return undefined;
    const startedAt = this.now();
    const t0 = performance.now();
    const parent = normalizeRepoPath(p.syncSpec.git.path);
    let head: string | undefined;
    try {
      const memo = this.renderCaches.get(key);
      head = await p.repo.exclusive(async () => {
        const now = await readRepoState(p.repo, parent, key, undefined, memo);
        const at = await p.repo.snapshotAt(last);
        if (!at) return undefined;
        return repoUnchangedSince(await readRepoState(p.repo, parent, key, at, memo), now) ? now.snapshot.commit : undefined;
      });
    } catch (err) {
      // A full sync reports what is wrong with the repository, with its reason and Event.
      this.d.log.debug({ err, replication: key }, 'periodic resync: reading the repository failed; running a full sync');
      return undefined;
    }
    if (head === undefined) return undefined;
    const ms = Math.round(performance.now() - t0);
    this.d.log.debug({ replication: key, ms }, 'periodic resync: the watch caches and the repository are as the last sync left them');
    return {
      head, startedAt, fromCaches: true, exact: true, durationMs: ms, attempts: 1, phases: { read: 0, fetch: ms, render: 0, write: 0, push: 0 },
      diff: { added: [], changed: [], removed: [] }, counts: {}, skipped: [], errors: [], warnings: [], notOwned: [], namespaces: [], reused: 0,
    };
  }

  /** Records a finished sync in `set`; false when some objects failed (to be retried). */
  private recordSync(rep: Replication, r: TimedSyncResult, o: { manual?: string; next?: Date; sourceDigest?: string }, set: (f: Partial<ReplicationStatus>, c?: ConditionUpdate[]) => void): boolean {
    const key = `${rep.metadata.namespace}/${rep.metadata.name}`;
    const now = this.now();
    if (!r.fromCaches) {
      const kinds = Object.keys(r.counts);
      for (const kind of this.kindsByReplication.get(key) ?? []) if (!kinds.includes(kind)) this.d.metrics.objectsSynced.remove({ replication: key, kind });
      for (const [kind, n] of Object.entries(r.counts)) this.d.metrics.objectsSynced.set({ replication: key, kind }, n);
      this.kindsByReplication.set(key, kinds);
    }
    const partial = r.errors.length > 0;
    this.d.metrics.outOfSync.set({ replication: key }, partial ? 1 : 0);
    if (!partial) this.d.metrics.lastSuccess.set({ replication: key }, now.getTime() / 1000);
    const { added, changed, removed } = r.diff;
    const summary = `${added.length} added, ${changed.length} changed, ${removed.length} removed`;
    if (r.commit) {
      this.d.metrics.commits.inc({ replication: key });
      this.d.events.event(rep as unknown as KubeObject, 'Normal', 'Committed', `committed ${r.commit.slice(0, 12)} (${summary})`);
    }
    if (partial) this.d.events.event(rep as unknown as KubeObject, 'Warning', 'ObjectsFailed', r.errors.map((e) => e.message).join('; '));
    const skipped = new Map<string, { group: string; kind: string; reason: string; count: number }>();
    for (const s of r.skipped) {
      const k = `${s.kind}|${s.reason}`;
      const e = skipped.get(k) ?? { group: '', kind: s.kind, reason: s.reason, count: 0 };
      e.count++;
      skipped.set(k, e);
    }
    const message = r.commit ? `committed ${r.commit.slice(0, 12)}: ${summary}` : 'no changes: the DR repository is up to date';
    const errorText = r.errors.map((e) => e.message).join('; ');
    const failReason = r.notOwned.length ? 'FolderNotOwned' : 'TransformFailed';
    const warn = r.warnings.length ? ` (warnings: ${r.warnings.join('; ')})` : '';
    set({
      phase: partial ? 'Failed' : 'Synced',
      observedGeneration: rep.metadata.generation,
      lastSyncTime: rfc3339(now),
      lastSyncDuration: seconds(r.durationMs),
      nextSyncTime: o.next ? rfc3339(o.next) : undefined,
      // Its own commit (in a group commit the branch tip is another Replication's), else the tip.
      lastCommit: r.commit ?? r.head ?? rep.status?.lastCommit,
      // A resync from the caches read nothing: what the last sync counted still holds.
      ...(r.fromCaches ? {} : {
        resources: Object.entries(r.counts).map(([gk, count]) => {
          const [kind, ...g] = gk.split('.');
          return { group: g.join('.'), kind: kind!, count };
        }),
        skipped: [...skipped.values()].sort((a, b) => `${a.kind}${a.reason}`.localeCompare(`${b.kind}${b.reason}`)),
        sourceNamespaces: r.namespaces.map((n) => n.source),
      }),
      lastError: partial ? { message: errorText, reason: failReason, time: rfc3339(now) } : undefined,
      // Only a complete sync covers the source as it was: a partial one is retried.
      ...(partial ? {} : {
        sourceDigest: o.sourceDigest === undefined ? undefined : `${o.sourceDigest}${r.exact ? '' : INEXACT}`,
        ...(o.manual !== undefined ? { lastManualSync: o.manual } : {}),
        lastSyncStartTime: rfc3339(r.startedAt),
        syncHistory: (r.commit ?? r.head) ? recordHistory(rep.status?.syncHistory, (r.commit ?? r.head)!, r.startedAt) : rep.status?.syncHistory,
      }),
    }, [
      partial ? { type: 'Synced', status: 'False', reason: failReason, message: errorText } : { type: 'Synced', status: 'True', reason: r.commit ? 'Committed' : 'UpToDate', message: message + warn },
      partial ? { type: 'Ready', status: 'False', reason: failReason, message: errorText } : { type: 'Ready', status: 'True', reason: 'Synced', message },
    ]);
    return !partial;
  }

  /** Folders this Replication wrote under an earlier spec.git (URL, branch or path) are removed. */
  private async cleanupOldTargets(key: string, rep: Replication, current: GitTarget, st: StatusUpdate, signal?: AbortSignal): Promise<void> {
    const recorded = st.fields.gitTargets ?? rep.status?.gitTargets ?? [];
    const old = recorded.filter((t) => !sameTarget(t, current));
    if (old.length === 0 || !recorded.some((t) => sameTarget(t, current))) return; // the new target first
    const left = [...recorded];
    try {
      for (const t of old) {
        await this.removeFrom(key, rep, t, signal);
        left.splice(left.indexOf(t), 1);
      }
    } finally {
      if (left.length !== recorded.length) {
        st.fields.gitTargets = left;
        const ns = rep.metadata.namespace ?? 'default';
        for (const t of old) if (t.credentialsSecret && !left.includes(t)) await this.releaseCredentials(ns, t.credentialsSecret, { key, keep: left });
      }
    }
  }

  /** Removes the Replication's folders from one repository; needs only Git. */
  private async removeFrom(key: string, rep: Replication, t: GitTargetStatus, signal?: AbortSignal): Promise<void> {
    const ns = rep.metadata.namespace ?? 'default';
    const repo = await this.repoFor(ns, t);
    const author = { name: rep.spec.git?.author?.name ?? 'dr-syncer', email: rep.spec.git?.author?.email ?? 'dr-syncer@localhost' };
    const commit = await repo.exclusive(() =>
      removeReplication({ replication: key, sourceCluster: rep.spec.sourceCluster ?? this.d.localClusterName, path: t.path, author }, { repo, log: this.d.log, signal }),
    );
    if (commit) this.d.events.event(rep as unknown as KubeObject, 'Normal', 'Removed', `removed its folders from ${describeTarget(t)} in ${commit.slice(0, 12)}`);
  }

  private async ensureWatches(key: string, rep: Replication, source: KubeClient): Promise<void> {
    const spec = rep.spec;
    const w = this.watchedFor.get(key);
    if (w && w.client === source && w.generation === rep.metadata.generation && Date.now() - w.at < WATCH_REFRESH_MS && this.d.watches.has(key)) return;
    const discovered = await source.discover();
    const types = resolveResourceTypes(spec.resourceTypes, spec.excludeResourceTypes, discovered).types.filter((t) => readsType(spec.secrets?.mode ?? 'Omit', t));
    const watches: WatchSpec[] = [];
    if (spec.sourceNamespace) {
      watches.push({ path: '/api/v1/namespaces', fieldSelector: `metadata.name=${spec.sourceNamespace}`, selectsNamespaces: true });
      for (const t of types) watches.push({ path: resourcePath(t, spec.sourceNamespace) });
    } else {
      const q = selectorToQuery(spec.namespaceSelector?.labelSelector as LabelSelector | undefined);
      watches.push({ path: '/api/v1/namespaces', labelSelector: q || undefined, selectsNamespaces: true });
      for (const t of types) watches.push({ path: resourcePath(t), inSelectedNamespaces: true });
    }
    this.d.watches.set(key, source, watches, parseDuration(spec.continuous?.debounce, 500));
    this.watchedFor.set(key, { client: source, generation: rep.metadata.generation, at: Date.now() });
  }

  /**
   * The finalizer: removes the Replication's folders from every repository it wrote (recorded in
   * status.gitTargets), with Git alone: no source cluster, no kubeconfig. Until that worked the
   * finalizer stays and the clean-up is retried with backoff.
   */
  private async finalize(key: string, rep: Replication, signal?: AbortSignal): Promise<ReconcileResult | void> {
    this.d.watches.remove(key);
    if (!(rep.metadata.finalizers ?? []).includes(FINALIZER)) return;
    const ns = rep.metadata.namespace ?? 'default';
    let targets = rep.status?.gitTargets;
    if (!targets && rep.status?.lastSyncTime) {
      // Synced by an older version that did not record its targets: the spec's target.
      try {
        const destRc = rep.spec.destinationCluster ? this.d.remoteClusters.get(ns, rep.spec.destinationCluster) : undefined;
        const t = gitTarget(rep, destRc);
        targets = [{ url: t.url, branch: t.branch, path: t.path, credentialsSecret: t.credentialsSecret }];
      } catch {
        targets = [];
      }
    }
    targets ??= []; // never synced: nothing was written
    for (const t of targets) {
      try {
        await this.removeFrom(key, rep, t, signal);
      } catch (err) {
        const message = `the folders in ${describeTarget(t)} were not removed: ${err instanceof Error ? err.message : String(err)}; ` +
          `retrying. To leave them, remove the finalizer ${FINALIZER} by hand`;
        this.d.events.event(rep as unknown as KubeObject, 'Warning', 'CleanupFailed', message);
        if (err instanceof NotReady) return { requeueAfterMs: 30_000 };
        throw err;
      }
    }
    const finalizers = (rep.metadata.finalizers ?? []).filter((f) => f !== FINALIZER);
    await this.patch(rep, { metadata: { finalizers, resourceVersion: rep.metadata.resourceVersion } });
    // Also the Secret the spec names now (held by an earlier version even before any sync).
    const current = rep.spec.git?.credentialsSecretRef?.name;
    for (const s of new Set([...targets.map((t) => t.credentialsSecret), current])) if (s) await this.releaseCredentials(ns, s, { key, keep: [] });
  }

  /** The key of the keyed digest that lets unchanged SOPS Secrets keep their files (see sync/secrets.ts). */
  private async digestKey(rep: Replication): Promise<Uint8Array> {
    const ns = rep.metadata.namespace ?? 'default';
    const name = `${rep.metadata.name}-sops-digest`.slice(0, 253);
    const p = `/api/v1/namespaces/${encodeURIComponent(ns)}/secrets`;
    let existing: { data?: { key?: string } } | undefined;
    try {
      existing = await this.d.client.get<{ data?: { key?: string } }>(`${p}/${encodeURIComponent(name)}`);
    } catch (err) {
      if (!(err instanceof KubeApiError && err.status === 404)) throw err;
    }
    if (existing?.data?.key) return Buffer.from(existing.data.key, 'base64');
    if (existing) {
      throw new SyncError('DigestKeyInvalid', `Secret ${ns}/${name} holds the SOPS digest key but has no key "key"; delete it and dr-syncer creates a new one (SOPS Secrets are then encrypted afresh once)`);
    }
    const key = randomBytes(32);
    const owner = { apiVersion: 'dr-syncer.io/v1alpha1', kind: 'Replication', name: rep.metadata.name, uid: rep.metadata.uid, controller: true };
    try {
      await this.d.client.request('POST', p, {
        apiVersion: 'v1', kind: 'Secret', type: 'Opaque',
        metadata: { name, labels: { 'app.kubernetes.io/managed-by': 'dr-syncer' }, ownerReferences: [owner] },
        data: { key: key.toString('base64') },
      });
      return key;
    } catch (err) {
      if (err instanceof KubeApiError && err.status === 409) return this.digestKey(rep); // created meanwhile
      throw err;
    }
  }

  private async clearSyncNow(rep: Replication, handled: string): Promise<void> {
    // Only if nobody asked again meanwhile: `test` fails when the value changed.
    const ptr = `/metadata/annotations/${SYNC_NOW_ANNOTATION.replace(/~/g, '~0').replace(/\//g, '~1')}`;
    try {
      await this.d.client.request('PATCH', `${API}/namespaces/${rep.metadata.namespace}/replications/${rep.metadata.name}`, [
        { op: 'test', path: ptr, value: handled },
        { op: 'remove', path: ptr },
      ], 'application/json-patch+json');
    } catch (err) {
      if (!(err instanceof KubeApiError && (err.status === 422 || err.status === 404))) throw err;
    }
  }

  private patch(rep: Replication, body: unknown): Promise<unknown> {
    return this.d.client.request('PATCH', `${API}/namespaces/${rep.metadata.namespace}/replications/${rep.metadata.name}`, body, 'application/merge-patch+json');
  }

  /**
   * Merges `fields` and `conditions` into the status and writes it when it changed. The
   * conditions record the generation they were computed for.
   */
  private async writeStatus(rep: Replication, fields: Partial<ReplicationStatus>, conditions: ConditionUpdate[]): Promise<void> {
    const now = this.now();
    const old = rep.status ?? {};
    let conds = (old.conditions ?? []) as Condition[];
    for (const c of conditions) conds = setCondition(conds, { ...c, observedGeneration: rep.metadata.generation }, now);
    const next: Record<string, unknown> = { ...old, ...fields, conditions: conds };
    for (const k of Object.keys(next)) if (next[k] === undefined) delete next[k];
    if (JSON.stringify(next) === JSON.stringify(old)) return;
    // Only what changed: other writers own other fields (the PVC data controller's pvcs and
    // dataSync), and this copy of them may be stale. A null removes what we dropped (lastError).
    const body: Record<string, unknown> = {};
    const before = old as Record<string, unknown>;
    for (const [k, v] of Object.entries(next)) if (JSON.stringify(v) !== JSON.stringify(before[k])) body[k] = v;
    for (const k of Object.keys(old)) if (!(k in next)) body[k] = null;
    try {
      await this.d.client.request('PATCH', `${API}/namespaces/${rep.metadata.namespace}/replications/${rep.metadata.name}/status`, { status: body }, 'application/merge-patch+json');
      rep.status = next as ReplicationStatus; // later writes in this reconcile start from here
    } catch (err) {
      if (err instanceof KubeApiError && err.status === 404) return; // deleted meanwhile
      throw err;
    }
  }
}
