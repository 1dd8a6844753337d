// The PVC data reconciler: for a Replication with spec.pvc.syncData, copies each selected PVC's
// data from the source cluster to the DR cluster (src/pvc/transfer.ts) when a data sync is due.
// Its own queue and workers: a transfer may take an hour and must not hold up resource syncs.
// Level-based like the Replication reconciler: whether a data sync is due is derived from
// status.dataSync and the spec (schedule, trigger), what a crash left behind is swept before
// each run, and one PVC is never copied twice at once (a Lease next to it).
//
// During a failback (status.failover.state CopyingDataBack) it runs the same transfers the other
// way: the PVC data written in the DR cluster while it was the active site goes back to the
// source cluster, through agents in the DR cluster (its RemoteCluster's spec.pvcSync), and the
// result goes to status.failover.dataCopyBack; the failback restores the source after it.
//
// It writes only status.pvcs, status.dataSync and status.failover.dataCopyBack (merge patches of
// those fields), so it never races the Replication reconciler, which writes the rest.
import type { KubeClient } from '../adapters/kube/client.ts';
import { KubeApiError } from '../adapters/kube/client.ts';
import type { KeyPair } from '../agent/keys.ts';
import type { RemoteCluster, Replication, ReplicationStatus } from '../api/v1alpha1/index.ts';
import { validateReplication } from '../api/v1alpha1/index.ts';
import { selectorToQuery } from '../core/labels.ts';
import { selectObjects, whiteoutReason } from '../core/select.ts';
import type { KubeObject, LabelSelector } from '../core/types.ts';
import type { AgentDefaults } from '../pvc/agent.ts';
import type { AgentSite } from '../pvc/agent-site.ts';
import { agentAccess, remoteClusterSite, rotationMs } from '../pvc/agent-site.ts';
import { ensureKey } from '../pvc/key-secrets.ts';
import type { TransferPlan } from '../pvc/manifests.ts';
import type { PvcPhase, TransferDeps, TransferOutcome } from '../pvc/transfer.ts';
import { newOperationId, sweep, transferPvc } from '../pvc/transfer.ts';
import type { EventRecorder } from '../runtime/events.ts';
import type { Informer } from '../runtime/informer.ts';
import type { ReconcileResult } from '../runtime/controller.ts';
import { splitKey } from '../runtime/controller.ts';
import { resolveNamespaces } from '../sync/engine.ts';
import { NotReady } from '../util/errors.ts';
import type { Logger } from '../util/log.ts';
import type { ClusterClients } from './clusters.ts';
import type { Condition } from './conditions.ts';
import { getCondition, rfc3339 } from './conditions.ts';
import { SPLIT_BRAIN } from './failover.ts';
import type { SyncMetrics } from './metrics.ts';
import { nextRun, parseCron, parseDuration, seconds } from './schedule.ts';

export interface PvcDataControllerDeps {
  client: KubeClient;
  replications: Informer<Replication>;
  remoteClusters: Informer<RemoteCluster>;
  clusters: ClusterClients;
  events: EventRecorder;
  metrics: SyncMetrics;
  log: Logger;
  /** Controller identity: the holder of the PVC Leases. */
  identity: string;
  agentDefaults: AgentDefaults;
  /** The agents in the controller's own cluster (--local-pvc-sync), the source of Replications without spec.sourceCluster. */
  localSite?: AgentSite;
  /** Transfers at once across all Replications (each Replication also has its own limit). */
  maxConcurrentTransfers?: number;
  now?: () => Date;
  /** How long an endpoint pod may take to be ready (ms); default 3 minutes. */
  podReadyTimeoutMs?: number;
}

type DataSyncStatus = NonNullable<ReplicationStatus['dataSync']>;
type PvcStatus = NonNullable<ReplicationStatus['pvcs']>[number];
type FailoverStatus = NonNullable<ReplicationStatus['failover']>;
export type DataCopyBack = NonNullable<FailoverStatus['dataCopyBack']>;

/**
 * Which way a copy goes: forward, the data sync (source cluster -> DR cluster); back, during a
 * failback (the DR cluster's data -> source cluster). Same PVC names; the namespaces map back.
 */
export type Direction = 'forward' | 'back';

/** Retry delay after a data sync that did not complete (something failed or is still missing). */
const RETRY_MS = { Failed: 60_000, Pending: 15_000 } as const;
/** How often a failback in progress is looked at (it writes only status, which queues nothing here). */
const FAILBACK_POLL_MS = 5_000;

export interface DataDue {
  due: boolean;
  why?: string;
  next?: Date;
  /** The trigger.manual value this run handles. */
  manual?: string;
  /** A retry after a run that did not complete: only the PVCs not copied then are copied now. */
  retry?: boolean;
}

/** Whether a PVC data sync is due now, from the spec and status alone. */
export function dataSyncDue(rep: Replication, now: Date): DataDue {
  const spec = rep.spec;
  const ds: DataSyncStatus = rep.status?.dataSync ?? {};
  const mode = spec.mode ?? 'Scheduled';
  const manual = spec.trigger?.manual;
  if (manual !== undefined && manual !== '' && manual !== ds.lastManualSync) return { due: true, why: 'spec.trigger.manual changed', manual };
  const last = ds.lastStartTime ? new Date(ds.lastStartTime) : undefined;
  const schedule = spec.pvc?.dataSync?.schedule ?? (mode === 'Scheduled' ? spec.schedule : undefined);
  let next: Date | undefined;
  if (!last) {
    if (schedule === undefined && mode === 'Manual') return { due: false };
    return { due: true, why: 'no PVC data sync has run yet' };
  }
  if (schedule !== undefined) next = nextRun(parseCron(schedule), last);
  else if (mode === 'Continuous') next = new Date(last.getTime() + parseDuration(spec.continuous?.resyncInterval, 3_600_000));
  const ended = ds.lastCompletionTime ? new Date(ds.lastCompletionTime) : last;
  let retry = false;
  if (ds.phase === 'Failed' || ds.phase === 'Pending') {
    const at = new Date(ended.getTime() + RETRY_MS[ds.phase]);
    if (!next || at < next) [next, retry] = [at, true];
  }
  if (ds.phase === 'Syncing') return { due: true, why: 'the last PVC data sync was interrupted' };
  if (next && next.getTime() <= now.getTime()) return retry ? { due: true, why: 'retrying the PVCs the last run did not copy', next, retry } : { due: true, why: 'scheduled', next };
  return { due: false, ...(next ? { next } : {}) };
}

/** A counting semaphore: the controller-wide limit on transfers at once. */
class Slots {
  private free: number;
  private readonly waiting: (() => void)[] = [];
  constructor(n: number) {
    this.free = n;
  }
  async take(): Promise<() => void> {
    if (this.free > 0) this.free--;
    else await new Promise<void>((resolve) => this.waiting.push(resolve));
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const next = this.waiting.shift();
      if (next) next();
      else this.free++;
    };
  }
}

/**
 * Why no PVC data may be copied for `rep` now, or undefined: one rule for starting a copy and for
 * stopping a running one. While failed over (or failing back) the DR site's volumes are live, and
 * the split-brain guard says they may be: a copy from the source would overwrite their data.
 */
export function dataSyncHeld(rep: Replication | undefined): string | undefined {
  const gone = noCopies(rep);
  if (gone || !rep) return gone;
  if (rep.spec.failover?.active) return 'the Replication failed over: the DR cluster is the active site';
  const state = rep.status?.failover?.state;
  if (state && state !== 'Standby') return `the failback is not complete (status.failover.state ${state})`;
  if (getCondition(rep.status?.conditions as Condition[] | undefined, 'Ready')?.reason === SPLIT_BRAIN) return 'the DR workloads are running (split-brain guard)';
  return undefined;
}

/** Why no copy in either direction may run: the Replication is gone, paused, or copies no data. */
function noCopies(rep: Replication | undefined): string | undefined {
  if (!rep || rep.metadata.deletionTimestamp) return 'the Replication was deleted';
  if (rep.spec.paused) return 'the Replication was paused';
  if (!rep.spec.pvc?.syncData) return 'spec.pvc.syncData was turned off';
  return undefined;
}

/**
 * Why the copy back (DR -> source) may not run now, or undefined: it runs only while the failback
 * asks for it (status.failover.state CopyingDataBack, which the failback enters once the DR
 * cluster runs the workloads at 0) and stops when that ends (a new failover, force, a pause).
 */
export function copyBackHeld(rep: Replication | undefined): string | undefined {
  const gone = noCopies(rep);
  if (gone || !rep) return gone;
  if (rep.spec.failover?.active) return 'the Replication failed over again: the DR cluster is the active site';
  const state = rep.status?.failover?.state;
  if (state !== 'CopyingDataBack') return `the failback no longer asks for it (status.failover.state ${state ?? 'unset'})`;
  return undefined;
}

/** A failback is under way (it may come to ask for the copy back): look again soon. */
const failingBack = (rep: Replication): boolean =>
  !noCopies(rep) && !rep.spec.failover?.active && rep.status?.failover?.state !== undefined && rep.status.failover.state !== 'Standby';

/** Whether the copy back is due, from status.failover.dataCopyBack alone (its retries are the data sync's). */
export function copyBackDue(rep: Replication, now: Date): { due: boolean; next?: Date } {
  const b: DataCopyBack = rep.status?.failover?.dataCopyBack ?? {};
  if (b.phase === 'Copied' || b.phase === 'NotCopied') return { due: false };
  if ((b.phase === 'Failed' || b.phase === 'Pending') && b.lastCompletionTime) {
    const next = new Date(new Date(b.lastCompletionTime).getTime() + RETRY_MS[b.phase]);
    return next.getTime() <= now.getTime() ? { due: true } : { due: false, next };
  }
  return { due: true }; // asked for, interrupted (Copying) or stopped: now
}

/** What the failback writes into dataCopyBack to start a request or to skip it: the last cycle's fields removed. */
const CLEARED = { lastStartTime: null, lastCompletionTime: null, copiedTime: null, pvcs: null } as unknown as DataCopyBack;

/**
 * The failback's PVC data step (replication.ts calls it once the DR cluster runs the workloads
 * at 0, before restoring the source): wait (with the failover fields to write and a message)
 * while the data is being copied back, or go on, with a note for the final message. Without
 * pvc.syncData there is nothing to copy; spec.failover.force goes on without copying.
 */
export function failbackDataStep(rep: Replication, now: Date): { wait?: string; failover?: Partial<FailoverStatus>; note?: string } {
  if (!rep.spec.pvc?.syncData) return {};
  const st = rep.status?.failover ?? {};
  const b: DataCopyBack = st.dataCopyBack ?? {};
  const asked = st.state === 'CopyingDataBack';
  if (asked && b.phase === 'Copied') return { note: `; the PVC data was copied back from the DR cluster at ${b.copiedTime ?? '(unknown)'}` };
  if (rep.spec.failover?.force) {
    const message = 'PVC data was NOT copied back: spec.failover.force failed back without copying. What the DR workloads wrote during the failover is only in the DR ' +
      'PVCs, and the next PVC data sync overwrites them with the source\'s data: copy it yourself first, or pause the Replication';
    return { failover: { dataCopyBack: { ...CLEARED, phase: 'NotCopied', message } }, note: `; ${message}` };
  }
  if (!asked) {
    return {
      wait: 'failing back: the DR cluster runs the workloads at 0; copying the PVC data written there back to the source before the source workloads are restored',
      failover: { dataCopyBack: { ...CLEARED, phase: 'Pending', message: 'asked for by the failback', requestTime: rfc3339(now) } },
    };
  }
  return {
    wait: `failing back: copying the PVC data written in the DR cluster back to the source before the source workloads are restored: ${b.phase ?? 'Pending'}: ${b.message ?? ''}. ` +
      'spec.failover.force: true fails back without copying it (it is then NOT copied back)',
  };
}

/** status.failover without the fields the PVC data controller writes (the failback must not write them back from a stale copy). */
export function withoutCopyBack(st: FailoverStatus): Omit<FailoverStatus, 'dataCopyBack'> {
  const rest: FailoverStatus = { ...st };
  delete rest.dataCopyBack;
  return rest;
}

/** The two ends of one PVC's copy: forward source -> DR, back DR -> source. */
export function copyEnds(direction: Direction, ns: { source: string; destination: string }, pvc: string): Pick<TransferPlan, 'source' | 'destination'> {
  const atSource = { namespace: ns.source, pvc };
  const inDr = { namespace: ns.destination, pvc };
  return direction === 'forward' ? { source: atSource, destination: inDr } : { source: inDr, destination: atSource };
}

/** A plan's end in the source cluster (what status names): its source forward, its destination back. */
export const sourceClusterEnd = (p: TransferPlan, direction: Direction): { namespace: string; pvc: string } => (direction === 'forward' ? p.source : p.destination);

/** One PVC's transfer: the Replication's rsync settings, the ends for the direction. */
export function transferPlan(rep: Replication, direction: Direction, ns: { source: string; destination: string }, pvc: string, image: Pick<TransferPlan, 'image' | 'imagePullPolicy'>): TransferPlan {
  const ds = rep.spec.pvc?.dataSync ?? {};
  return {
    opId: newOperationId(),
    replication: { namespace: rep.metadata.namespace ?? 'default', name: rep.metadata.name, uid: rep.metadata.uid ?? '' },
    ...image,
    ...copyEnds(direction, ns, pvc),
    rsync: {
      ...(ds.bandwidthLimit ? { bandwidthLimit: ds.bandwidthLimit } : {}),
      ...(ds.excludePaths ? { excludePaths: ds.excludePaths } : {}),
      ...(ds.rsyncOptions ? { rsyncOptions: ds.rsyncOptions } : {}),
    },
    timeoutSeconds: Math.round(parseDuration(ds.timeout, 30 * 60_000) / 1000),
  };
}

export class PvcDataController {
  private readonly now: () => Date;
  private readonly slots: Slots;
  /** The status fields this controller last wrote, per Replication (see reconcile). */
  private readonly written = new Map<string, { uid: string; generation?: number; status: Pick<ReplicationStatus, 'pvcs' | 'dataSync'> }>();
  /** What this controller last wrote into status.failover.dataCopyBack, per Replication and copy-back request. */
  private readonly writtenBack = new Map<string, { uid: string; requestTime?: string; value: DataCopyBack }>();
  /** The copies running now, per Replication, and their direction: stopped when the Replication no longer wants one. */
  private readonly running = new Map<string, { stop: AbortController; direction: Direction }>();

  constructor(private readonly d: PvcDataControllerDeps) {
    this.now = d.now ?? (() => new Date());
    this.slots = new Slots(d.maxConcurrentTransfers ?? 4);
  }

  /**
   * Stops a running data sync of a Replication that was deleted, paused or had syncData turned
   * off (the watch calls this): its Jobs and targets are removed as after any other end.
   */
  stopUnwanted(key: string, rep: Replication | undefined): void {
    const run = this.running.get(key);
    if (!run) return;
    const why = run.direction === 'back' ? copyBackHeld(rep) : dataSyncHeld(rep);
    if (why) run.stop.abort(new Error(why));
  }

  reconcile = async (key: string, signal?: AbortSignal): Promise<ReconcileResult | void> => {
    const run = { stop: new AbortController(), direction: 'forward' as Direction };
    this.running.set(key, run);
    try {
      return await this.syncData(key, run, signal ? AbortSignal.any([signal, run.stop.signal]) : run.stop.signal);
    } finally {
      if (this.running.get(key) === run) this.running.delete(key);
    }
  };

  private async syncData(key: string, run: { stop: AbortController; direction: Direction }, signal: AbortSignal): Promise<ReconcileResult | void> {
    const { stop } = run;
    const { namespace, name } = splitKey(key);
    const cached = this.d.replications.get(namespace, name);
    if (!cached || cached.metadata.deletionTimestamp) {
      this.written.delete(key);
      return;
    }
    const rep = structuredClone(cached);
    // What this controller wrote last is newer than a cache that has not seen it yet (a key
    // queued again during a run must not see "Syncing" and copy everything once more).
    const written = this.written.get(key);
    if (written && written.generation === rep.metadata.generation && rep.metadata.uid === written.uid) rep.status = { ...rep.status, ...written.status };
    const valid = validateReplication(rep);
    if (!valid.ok) return;
    if (!copyBackHeld(rep)) {
      // Set before the first await: stopUnwanted judges a running copy by its direction.
      run.direction = 'back';
      return this.copyBack(key, rep, stop, signal);
    }
    // A failback may come to ask for the copy back, and ends with the data sync due again: no
    // event says so (the Replication reconciler writes only status), so look again.
    if (dataSyncHeld(rep)) return failingBack(rep) ? { requeueAfterMs: FAILBACK_POLL_MS } : undefined;
    const now = this.now();
    const due = dataSyncDue(rep, now);
    if (!due.due) return due.next ? { requeueAfterMs: Math.max(1000, due.next.getTime() - now.getTime()) } : undefined;

    let deps: TransferDeps;
    let image: Pick<TransferPlan, 'image' | 'imagePullPolicy'>;
    try {
      ({ deps, image } = await this.transferDeps(rep));
    } catch (err) {
      if (!(err instanceof NotReady)) throw err;
      await this.writeStatus(rep, { dataSync: { ...rep.status?.dataSync, phase: 'Pending', message: err.message } });
      return { requeueAfterMs: RETRY_MS.Pending };
    }
    this.d.log.info({ replication: key, why: due.why }, 'PVC data sync due');
    const startedAt = this.now();
    const started: DataSyncStatus = { ...rep.status?.dataSync, phase: 'Syncing', message: 'copying PVC data', lastStartTime: rfc3339(startedAt), ...(due.manual !== undefined ? { lastManualSync: due.manual } : {}) };
    // Marked before the run: a crash shows as "Syncing" and the next leader runs it again.
    await this.writeStatus(rep, { dataSync: started }, key);
    rep.status = { ...rep.status, dataSync: started };
    const previous = new Map((rep.status?.pvcs ?? []).map((p) => [`${p.namespace}/${p.name}`, p]));
    const pvcKey = (p: TransferPlan) => `${p.source.namespace}/${p.source.pvc}`;
    let plans: TransferPlan[];
    let notCopied: PvcStatus[];
    let toRun: TransferPlan[];
    let outcomes: TransferOutcome[];
    try {
      await sweep(deps, rep.metadata.uid ?? '', signal);
      ({ plans, notCopied } = await this.plans(rep, deps, image, 'forward'));
      // A retry copies what the last run did not; the next scheduled run copies everything.
      toRun = due.retry ? plans.filter((p) => previous.get(pvcKey(p))?.phase !== 'Synced') : plans;
      outcomes = await this.runAll(rep, deps, toRun, signal, 'forward');
      signal.throwIfAborted();
    } catch (err) {
      if (stop.signal.aborted) {
        // Stopped on purpose: say so; a paused Replication is not retried until it runs again.
        const why = stop.signal.reason instanceof Error ? stop.signal.reason.message : 'stopped';
        const message = `PVC data sync stopped: ${why}; the copies already made are kept, the one in progress is incomplete`;
        await this.writeStatus(rep, { dataSync: { ...started, phase: 'Stopped', message, lastCompletionTime: rfc3339(this.now()) } }, key);
        this.d.events.event(rep as unknown as KubeObject, 'Normal', 'DataSyncStopped', message);
        return;
      }
      if (signal.aborted) throw err;
      // Not left at "Syncing": say what stopped it; the queue retries with backoff.
      const message = `PVC data sync stopped: ${err instanceof Error ? err.message : String(err)}`;
      await this.writeStatus(rep, { dataSync: { ...started, phase: 'Failed', message, lastCompletionTime: rfc3339(this.now()) } }, key);
      this.d.events.event(rep as unknown as KubeObject, 'Warning', 'DataSyncFailed', message);
      throw err;
    }

    const ran = new Map(toRun.map((p, i) => [pvcKey(p), pvcStatus(p, outcomes[i]!, previous.get(pvcKey(p)), 'forward')]));
    const pvcs: PvcStatus[] = [...plans.map((p) => ran.get(pvcKey(p)) ?? previous.get(pvcKey(p))!), ...notCopied];
    const { phase, message, failed, skipped } = summarise(pvcs, plans.length, 'copied');
    const ended = this.now();
    const after: Replication = { ...rep, status: { ...rep.status, dataSync: { ...started, phase, message, lastCompletionTime: rfc3339(ended) } } };
    const next = dataSyncDue(after, ended).next;
    const dataSync: DataSyncStatus = { ...after.status!.dataSync, ...(next ? { nextSyncTime: rfc3339(next) } : {}) };
    if (!next) delete dataSync.nextSyncTime;
    await this.writeStatus(rep, { pvcs, dataSync: { ...dataSync, ...(next ? {} : { nextSyncTime: null as unknown as string }) } }, key);
    const obj = rep as unknown as KubeObject;
    if (phase === 'Synced') this.d.events.event(obj, 'Normal', 'DataSynced', message);
    else if (phase === 'Failed') this.d.events.event(obj, 'Warning', 'DataSyncFailed', message);
    for (const p of failed) this.d.events.event(obj, 'Warning', 'PvcSyncFailed', `PVC ${p.namespace}/${p.name}: ${p.message ?? ''}`);
    for (const p of skipped) this.d.events.event(obj, 'Warning', 'PvcSkipped', `PVC ${p.namespace}/${p.name} was not copied: ${p.message ?? ''}`);
    return next ? { requeueAfterMs: Math.max(1000, next.getTime() - ended.getTime()) } : undefined;
  }

  /**
   * The failback's copy back: every PVC the data sync covers, from the DR cluster (its agents
   * serve the data) into the source cluster's PVC of the same name, by the data sync's own
   * transfers, Leases and sweep. Runs while status.failover.state is CopyingDataBack and the copy
   * is not done; its result goes to status.failover.dataCopyBack, which the failback waits for.
   */
  private async copyBack(key: string, rep: Replication, stop: AbortController, signal: AbortSignal): Promise<ReconcileResult | void> {
    const fo = rep.status?.failover ?? {};
    const w = this.writtenBack.get(key);
    if (w && w.uid === rep.metadata.uid && w.requestTime === fo.dataCopyBack?.requestTime) rep.status = { ...rep.status, failover: { ...fo, dataCopyBack: { ...fo.dataCopyBack, ...w.value } } };
    const now = this.now();
    const due = copyBackDue(rep, now);
    // Done, or not yet: the failback goes on by itself; the data sync is due again after it.
    if (!due.due) return { requeueAfterMs: due.next ? Math.max(1000, due.next.getTime() - now.getTime()) : FAILBACK_POLL_MS };
    let deps: TransferDeps;
    let image: Pick<TransferPlan, 'image' | 'imagePullPolicy'>;
    try {
      ({ deps, image } = await this.transferDeps(rep, 'back'));
    } catch (err) {
      if (!(err instanceof NotReady)) throw err;
      await this.writeBack(rep, key, { phase: 'Pending', message: `cannot copy the PVC data back yet: ${err.message}`, lastCompletionTime: rfc3339(this.now()) });
      return { requeueAfterMs: RETRY_MS.Pending };
    }
    const obj = rep as unknown as KubeObject;
    const route = `from DR cluster ${deps.sourceName} to source cluster ${deps.destinationName}`;
    this.d.log.info({ replication: key }, `copying PVC data back ${route}`);
    await this.writeBack(rep, key, { phase: 'Copying', message: `copying the PVC data back ${route}`, lastStartTime: rfc3339(this.now()) });
    let plans: TransferPlan[];
    let notCopied: PvcStatus[];
    let outcomes: TransferOutcome[];
    try {
      await sweep(deps, rep.metadata.uid ?? '', signal);
      ({ plans, notCopied } = await this.plans(rep, deps, image, 'back'));
      outcomes = await this.runAll(rep, deps, plans, signal, 'back');
      signal.throwIfAborted();
    } catch (err) {
      const ended = rfc3339(this.now());
      if (stop.signal.aborted) {
        const why = stop.signal.reason instanceof Error ? stop.signal.reason.message : 'stopped';
        const message = `copying the PVC data back stopped: ${why}; what was copied stays, the PVC in progress is incomplete`;
        this.d.events.event(obj, 'Normal', 'DataCopyBackStopped', message);
        // Not over what the failback wrote when it moved on (force: NotCopied).
        const latest = this.d.replications.get(rep.metadata.namespace ?? 'default', rep.metadata.name);
        if (latest?.status?.failover?.state === 'CopyingDataBack') await this.writeBack(rep, key, { phase: 'Stopped', message, lastCompletionTime: ended });
        return;
      }
      if (signal.aborted) throw err;
      const message = `copying the PVC data back failed: ${err instanceof Error ? err.message : String(err)}`;
      await this.writeBack(rep, key, { phase: 'Failed', message, lastCompletionTime: ended });
      this.d.events.event(obj, 'Warning', 'DataCopyBackFailed', message);
      throw err;
    }
    const pvcs = [...plans.map((p, i) => pvcStatus(p, outcomes[i]!, undefined, 'back')), ...notCopied];
    const s = summarise(pvcs, plans.length, `copied back ${route}`);
    const ended = rfc3339(this.now());
    const copied = s.phase === 'Synced';
    await this.writeBack(rep, key, { phase: s.phase === 'Synced' ? 'Copied' : s.phase, message: s.message, lastCompletionTime: ended, pvcs, ...(copied ? { copiedTime: ended } : {}) });
    if (copied) this.d.events.event(obj, 'Normal', 'DataCopiedBack', s.message);
    else if (s.phase === 'Failed') this.d.events.event(obj, 'Warning', 'DataCopyBackFailed', s.message);
    for (const p of s.failed) this.d.events.event(obj, 'Warning', 'PvcSyncFailed', `copying PVC ${p.namespace}/${p.name} back: ${p.message ?? ''}`);
    for (const p of s.skipped) this.d.events.event(obj, 'Warning', 'PvcSkipped', `PVC ${p.namespace}/${p.name} was not copied back: ${p.message ?? ''}`);
    return { requeueAfterMs: s.phase === 'Synced' ? FAILBACK_POLL_MS : RETRY_MS[s.phase] };
  }

  /**
   * Clients, keys and agent settings for this Replication's transfers, or why not yet. The agents
   * run where the data is read: forward in the source cluster (a RemoteCluster, or the
   * controller's own), back in the DR cluster (its RemoteCluster needs spec.pvcSync.enabled too).
   */
  private async transferDeps(rep: Replication, direction: Direction = 'forward'): Promise<{ deps: TransferDeps; image: Pick<TransferPlan, 'image' | 'imagePullPolicy'> }> {
    const ns = rep.metadata.namespace ?? 'default';
    const srcName = rep.spec.sourceCluster;
    const dstName = rep.spec.destinationCluster;
    if (!dstName) throw new NotReady('NoDestination', 'spec.destinationCluster is required for PVC data');
    const dst = this.d.remoteClusters.get(ns, dstName);
    if (!dst) throw new NotReady('RemoteClusterNotFound', `spec.destinationCluster: RemoteCluster ${ns}/${dstName} does not exist`);
    const src = srcName ? this.d.remoteClusters.get(ns, srcName) : undefined;
    if (srcName && !src) throw new NotReady('RemoteClusterNotFound', `spec.sourceCluster: RemoteCluster ${ns}/${srcName} does not exist`);
    // The two clusters, the source one a RemoteCluster or the controller's own.
    const sourceEnd = src
      ? { name: src.metadata.name, rc: src, client: () => this.d.clusters.forRemoteCluster(src) }
      : { name: this.d.localSite?.name ?? 'local', rc: undefined, client: () => Promise.resolve(this.d.client) };
    const drEnd = { name: dstName, rc: dst, client: () => this.d.clusters.forRemoteCluster(dst) };
    const [from, to] = direction === 'forward' ? [sourceEnd, drEnd] : [drEnd, sourceEnd];
    let site: AgentSite;
    let published: Parameters<typeof agentAccess>[5];
    if (from.rc) {
      if (!from.rc.spec.pvcSync?.enabled) {
        throw new NotReady('AgentsDisabled', direction === 'forward'
          ? `source cluster ${from.name} has no PVC-sync agents: set spec.pvcSync.enabled on RemoteCluster ${ns}/${from.name}`
          : `copying PVC data back needs PVC-sync agents in DR cluster ${from.name}, which has none: set spec.pvcSync.enabled on RemoteCluster ${ns}/${from.name} ` +
            '(the source cluster\'s pods must reach its nodes on pvcSync.sshPort), or set spec.failover.force: true to fail back without copying the data back');
      }
      site = remoteClusterSite(from.rc);
      published = from.rc.status?.agents ?? {};
    } else {
      if (!this.d.localSite) {
        throw new NotReady('AgentsDisabled', 'the source is the controller\'s own cluster, which runs no PVC-sync agents: install the chart with pvcSync.enabled=true (controller flag --local-pvc-sync), or set spec.sourceCluster to a RemoteCluster with spec.pvcSync.enabled');
      }
      site = this.d.localSite;
    }
    let source: KubeClient;
    let destination: KubeClient;
    try {
      source = await from.client();
      destination = await to.client();
    } catch (err) {
      throw new NotReady('ClusterNotReady', err instanceof Error ? err.message : String(err));
    }
    const access = await agentAccess(this.d.client, source, site, this.d.agentDefaults, this.now(), published);
    // Owned by the Replication: deleting it removes its key.
    const owner = rep.metadata.uid ? { apiVersion: rep.apiVersion, kind: rep.kind, name: rep.metadata.name, uid: rep.metadata.uid } : undefined;
    const repKey = await ensureKey(this.d.client, ns, `${rep.metadata.name}-pvc-ssh-key`, `dr-syncer-replication ${ns}/${rep.metadata.name}`, rotationMs(site.spec), this.now(), owner);
    const { settings } = access;
    const deps: TransferDeps = {
      source, destination, sourceName: site.name, destinationName: to.name, direction,
      agent: {
        namespace: settings.namespace, port: settings.sshPort, addressType: settings.addressType, hostPublicKey: access.hostPublicKey, clientPrivateKey: access.clientPrivateKey,
        nodes: access.nodes,
      },
      replicationKey: repKey.key as KeyPair, holder: this.d.identity, log: this.d.log.child({ replication: `${ns}/${rep.metadata.name}` }),
      ...(this.d.podReadyTimeoutMs !== undefined ? { podReadyTimeoutMs: this.d.podReadyTimeoutMs } : {}),
    };
    return { deps, image: { image: settings.image, ...(settings.imagePullPolicy ? { imagePullPolicy: settings.imagePullPolicy } : {}) } };
  }

  /**
   * One plan per selected PVC, in a stable order, by the resource sync's own selection rules
   * (select.ts), and the PVCs those rules leave out for a reason a user should see: owned ones
   * (generic ephemeral volumes, StatefulSet claims with a retention policy), whose owner makes
   * them anew in the DR cluster, so there is no DR PVC to copy into.
   */
  private async plans(rep: Replication, deps: TransferDeps, image: Pick<TransferPlan, 'image' | 'imagePullPolicy'>, direction: Direction): Promise<{ plans: TransferPlan[]; notCopied: PvcStatus[] }> {
    const s = rep.spec;
    // Selected in the source cluster, whichever way the data goes.
    const sourceCluster = direction === 'forward' ? deps.source : deps.destination;
    const namespaces = await resolveNamespaces(sourceCluster, {
      sourceNamespace: s.sourceNamespace, destinationNamespace: s.destinationNamespace,
      namespaceSelector: s.namespaceSelector ? { labelSelector: s.namespaceSelector.labelSelector as LabelSelector | undefined, destinationSuffix: s.namespaceSelector.destinationSuffix } : undefined,
    });
    const q = selectorToQuery(s.labelSelector as LabelSelector | undefined);
    const plans: TransferPlan[] = [];
    const notCopied: PvcStatus[] = [];
    for (const ns of namespaces) {
      if (ns.terminating) continue;
      const { items } = await sourceCluster.list(`/api/v1/namespaces/${encodeURIComponent(ns.source)}/persistentvolumeclaims`, q ? { labelSelector: q } : {});
      const sorted = items.map((o) => ({ ...o, apiVersion: 'v1', kind: 'PersistentVolumeClaim' })).sort((a, b) => a.metadata.name.localeCompare(b.metadata.name));
      const { selected, skipped } = selectObjects(sorted, { labelSelector: s.labelSelector as LabelSelector | undefined });
      const byName = new Map(sorted.map((o) => [o.metadata.name, o]));
      for (const k of skipped) {
        // Left out for being owned (not for a label or the selector): say so in status.
        const why = whiteoutReason(byName.get(k.name)!);
        if (why !== undefined && why === k.reason) notCopied.push({ name: k.name, namespace: k.namespace, phase: 'Skipped', message: `its data is not copied: ${why}` });
      }
      for (const pvc of selected) plans.push(transferPlan(rep, direction, ns, pvc.metadata.name, image));
    }
    return { plans, notCopied };
  }

  /** Runs the transfers, at most spec concurrency of this Replication and the controller-wide limit at once. */
  private async runAll(rep: Replication, deps: TransferDeps, plans: TransferPlan[], signal: AbortSignal | undefined, direction: Direction): Promise<TransferOutcome[]> {
    const key = `${rep.metadata.namespace ?? 'default'}/${rep.metadata.name}`;
    const outcomes: TransferOutcome[] = new Array<TransferOutcome>(plans.length);
    let nextIndex = 0;
    const worker = async () => {
      for (;;) {
        const i = nextIndex++;
        if (i >= plans.length || signal?.aborted) return;
        const plan = plans[i]!;
        const release = await this.slots.take();
        try {
          outcomes[i] = await transferPvc(deps, plan, signal);
        } catch (err) {
          if (signal?.aborted) throw err;
          outcomes[i] = { phase: 'Failed', message: err instanceof Error ? err.message : String(err), startedAt: this.now(), durationMs: 0 };
        } finally {
          release();
        }
        const o = outcomes[i];
        // The metrics are the data sync's (its recovery point): a copy back is not one.
        if (direction === 'back') continue;
        const pvc = `${plan.source.namespace}/${plan.source.pvc}`;
        this.d.metrics.pvcSyncs.inc({ replication: key, pvc, result: o.phase });
        if (o.figures) this.d.metrics.pvcBytes.inc({ replication: key, pvc }, o.figures.bytesTransferred);
        if (o.phase === 'Synced') {
          this.d.metrics.pvcLastSuccess.set({ replication: key, pvc }, Date.now() / 1000);
          this.d.metrics.pvcDuration.observe({ replication: key }, o.durationMs / 1000);
        }
      }
    };
    const n = Math.min(rep.spec.pvc?.dataSync?.concurrency ?? 2, Math.max(1, plans.length));
    await Promise.all(Array.from({ length: n }, worker));
    return outcomes;
  }

  private async writeStatus(rep: Replication, status: Pick<ReplicationStatus, 'pvcs' | 'dataSync'>, key?: string): Promise<void> {
    try {
      if (key && rep.metadata.uid) {
        const prev = this.written.get(key);
        const keep = prev && prev.uid === rep.metadata.uid && prev.generation === rep.metadata.generation ? prev.status : {};
        this.written.set(key, { uid: rep.metadata.uid, generation: rep.metadata.generation, status: { ...keep, ...status } });
      }
      await this.d.client.request('PATCH', `/apis/dr-syncer.io/v1alpha1/namespaces/${rep.metadata.namespace}/replications/${rep.metadata.name}/status`, { status }, 'application/merge-patch+json');
    } catch (err) {
      if (!(err instanceof KubeApiError && err.status === 404)) throw err;
    }
  }

  /** status.failover.dataCopyBack: only the fields given (a merge patch); the failback owns the rest of status.failover. */
  private async writeBack(rep: Replication, key: string, fields: DataCopyBack): Promise<void> {
    const requestTime = rep.status?.failover?.dataCopyBack?.requestTime;
    const prev = this.writtenBack.get(key);
    const keep = prev && prev.uid === rep.metadata.uid && prev.requestTime === requestTime ? prev.value : {};
    this.writtenBack.set(key, { uid: rep.metadata.uid ?? '', ...(requestTime ? { requestTime } : {}), value: { ...keep, ...fields } });
    try {
      await this.d.client.request('PATCH', `/apis/dr-syncer.io/v1alpha1/namespaces/${rep.metadata.namespace}/replications/${rep.metadata.name}/status`, { status: { failover: { dataCopyBack: fields } } }, 'application/merge-patch+json');
    } catch (err) {
      if (!(err instanceof KubeApiError && err.status === 404)) throw err;
    }
  }
}

/** A run's result from its PVCs' phases: Failed if one failed, Pending if one waits, else Synced; and its message. */
function summarise(pvcs: PvcStatus[], planned: number, verb: string) {
  const failed = pvcs.filter((p) => p.phase === 'Failed');
  const pending = pvcs.filter((p) => p.phase === 'Pending');
  const skipped = pvcs.filter((p) => p.phase === 'Skipped');
  const phase = failed.length > 0 ? 'Failed' as const : pending.length > 0 ? 'Pending' as const : 'Synced' as const;
  const synced = pvcs.filter((p) => p.phase === 'Synced').length;
  const names = (l: PvcStatus[]) => l.map((p) => `${p.namespace}/${p.name}`).join(', ');
  const message = planned === 0
    ? 'no PVCs selected'
    : `${synced} of ${planned} PVCs ${verb}` + (failed.length ? `; failed: ${names(failed)}` : '') + (pending.length ? `; waiting: ${names(pending)}` : '') +
      (skipped.length ? `; not copied: ${names(skipped)}` : '');
  return { phase, message, failed, skipped };
}

function pvcStatus(p: TransferPlan, o: TransferOutcome, prev: PvcStatus | undefined, direction: Direction): PvcStatus {
  const phase: PvcPhase = o.phase;
  const at = sourceClusterEnd(p, direction);
  const base: PvcStatus = { name: at.pvc, namespace: at.namespace, phase, message: o.message, lastAttemptTime: rfc3339(o.startedAt) };
  if (o.exitCode !== undefined) base.lastExitCode = o.exitCode;
  if (phase === 'Synced') {
    return {
      ...base, lastSyncTime: rfc3339(new Date(o.startedAt.getTime() + o.durationMs)), lastSyncDuration: seconds(o.durationMs),
      bytesTransferred: o.figures?.bytesTransferred ?? 0, filesTransferred: o.figures?.filesTransferred ?? 0,
    };
  }
  // Not copied this time: the figures of the last success stay, so the age of the DR copy shows.
  return {
    ...base,
    ...(prev?.lastSyncTime ? { lastSyncTime: prev.lastSyncTime } : {}),
    ...(prev?.lastSyncDuration ? { lastSyncDuration: prev.lastSyncDuration } : {}),
    ...(prev?.bytesTransferred !== undefined ? { bytesTransferred: prev.bytesTransferred } : {}),
    ...(prev?.filesTransferred !== undefined ? { filesTransferred: prev.filesTransferred } : {}),
  };
}
