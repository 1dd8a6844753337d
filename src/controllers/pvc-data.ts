// The PVC data reconciler: for a Replication with spec.pvc.syncData, copies each selected PVC's
// data from the source cluster to the DR cluster (src/pvc/transfer.ts) when a data sync is due.
// Its own queue and workers: a transfer may take an hour and must not hold up resource syncs.
// Level-based like the Replication reconciler: whether a data sync is due is derived from
// status.dataSync and the spec (schedule, trigger), what a crash left behind is swept before
// each run, and one PVC is never copied twice at once (a Lease next to it).
//
// It writes only status.pvcs and status.dataSync (merge patch of those two fields), so it never
// races the Replication reconciler, which writes the rest.
import type { KubeClient } from '../adapters/kube/client.ts';
import { KubeApiError } from '../adapters/kube/client.ts';
import type { KeyPair } from '../agent/keys.ts';
import type { RemoteCluster, Replication, ReplicationStatus } from '../api/v1alpha1/index.ts';
import { validateReplication } from '../api/v1alpha1/index.ts';
import { selectorToQuery } from '../core/labels.ts';
import { IGNORE_LABEL } from '../core/select.ts';
import type { KubeObject, LabelSelector } from '../core/types.ts';
import type { AgentDefaults } from '../pvc/agent.ts';
import { agentKeySecrets, agentSettingsFor, DEFAULT_KEY_ROTATION } from '../pvc/agent.ts';
import { ensureKey } from '../pvc/key-secrets.ts';
import type { TransferPlan } from '../pvc/manifests.ts';
import type { PvcPhase, TransferDeps, TransferOutcome } from '../pvc/transfer.ts';
import { newOperationId, sweep, transferPvc } from '../pvc/transfer.ts';
import type { EventRecorder } from '../runtime/events.ts';
import type { Informer } from '../runtime/informer.ts';
import type { ReconcileResult } from '../runtime/controller.ts';
import { splitKey } from '../runtime/controller.ts';
import { resolveNamespaces } from '../sync/engine.ts';
import type { Logger } from '../util/log.ts';
import type { ClusterClients } from './clusters.ts';
import { rfc3339 } from './conditions.ts';
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
  /** Transfers at once across all Replications (each Replication also has its own limit). */
  maxConcurrentTransfers?: number;
  now?: () => Date;
  /** How long an endpoint pod may take to be ready (ms); default 3 minutes. */
  podReadyTimeoutMs?: number;
}

type DataSyncStatus = NonNullable<ReplicationStatus['dataSync']>;
type PvcStatus = NonNullable<ReplicationStatus['pvcs']>[number];

/** Retry delay after a data sync that did not complete (something failed or is still missing). */
const RETRY_MS = { Failed: 60_000, Pending: 15_000 } as const;

export interface DataDue {
  due: boolean;
  why?: string;
  next?: Date;
  /** The trigger.manual value this run handles. */
  manual?: string;
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
  if (ds.phase === 'Failed' || ds.phase === 'Pending') {
    const retry = new Date(ended.getTime() + RETRY_MS[ds.phase]);
    if (!next || retry < next) next = retry;
  }
  if (ds.phase === 'Syncing') return { due: true, why: 'the last PVC data sync was interrupted' };
  if (next && next.getTime() <= now.getTime()) return { due: true, why: 'scheduled', next };
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

class NotReady extends Error {
  constructor(
    readonly reason: string,
    message: string,
  ) {
    super(message);
  }
}

export class PvcDataController {
  private readonly now: () => Date;
  private readonly slots: Slots;
  /** The status fields this controller last wrote, per Replication (see reconcile). */
  private readonly written = new Map<string, { uid: string; generation?: number; status: Pick<ReplicationStatus, 'pvcs' | 'dataSync'> }>();

  constructor(private readonly d: PvcDataControllerDeps) {
    this.now = d.now ?? (() => new Date());
    this.slots = new Slots(d.maxConcurrentTransfers ?? 4);
  }

  reconcile = async (key: string, signal?: AbortSignal): Promise<ReconcileResult | void> => {
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
    if (!valid.ok || !rep.spec.pvc?.syncData || rep.spec.paused) return;
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
    let plans: TransferPlan[];
    let outcomes: TransferOutcome[];
    try {
      await sweep(deps, rep.metadata.uid ?? '', signal);
      plans = await this.plans(rep, deps, image);
      outcomes = await this.runAll(rep, deps, plans, signal);
      signal?.throwIfAborted();
    } catch (err) {
      if (signal?.aborted) throw err;
      // Not left at "Syncing": say what stopped it; the queue retries with backoff.
      const message = `PVC data sync stopped: ${err instanceof Error ? err.message : String(err)}`;
      await this.writeStatus(rep, { dataSync: { ...started, phase: 'Failed', message, lastCompletionTime: rfc3339(this.now()) } }, key);
      this.d.events.event(rep as unknown as KubeObject, 'Warning', 'DataSyncFailed', message);
      throw err;
    }

    const previous = new Map((rep.status?.pvcs ?? []).map((p) => [`${p.namespace}/${p.name}`, p]));
    const pvcs: PvcStatus[] = plans.map((p, i) => pvcStatus(p, outcomes[i]!, previous.get(`${p.source.namespace}/${p.source.pvc}`)));
    const failed = pvcs.filter((p) => p.phase === 'Failed');
    const pending = pvcs.filter((p) => p.phase === 'Pending');
    const skipped = pvcs.filter((p) => p.phase === 'Skipped');
    const phase: DataSyncStatus['phase'] = failed.length > 0 ? 'Failed' : pending.length > 0 ? 'Pending' : 'Synced';
    const synced = pvcs.filter((p) => p.phase === 'Synced').length;
    const message = plans.length === 0
      ? 'no PVCs selected'
      : `${synced} of ${plans.length} PVCs copied` + (failed.length ? `; failed: ${failed.map((p) => `${p.namespace}/${p.name}`).join(', ')}` : '') + (pending.length ? `; waiting: ${pending.map((p) => `${p.namespace}/${p.name}`).join(', ')}` : '') +
        (skipped.length ? `; not copied: ${skipped.map((p) => `${p.namespace}/${p.name}`).join(', ')}` : '');
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
  };

  /** Clients, keys and agent settings for this Replication's transfers, or why not yet. */
  private async transferDeps(rep: Replication): Promise<{ deps: TransferDeps; image: Pick<TransferPlan, 'image' | 'imagePullPolicy'> }> {
    const ns = rep.metadata.namespace ?? 'default';
    const srcName = rep.spec.sourceCluster;
    const dstName = rep.spec.destinationCluster;
    if (!srcName) throw new NotReady('NoSourceAgents', 'PVC data is read through the agents of a source RemoteCluster: set spec.sourceCluster to a RemoteCluster with spec.pvcSync.enabled');
    if (!dstName) throw new NotReady('NoDestination', 'spec.destinationCluster is required for PVC data');
    const src = this.d.remoteClusters.get(ns, srcName);
    const dst = this.d.remoteClusters.get(ns, dstName);
    if (!src) throw new NotReady('RemoteClusterNotFound', `spec.sourceCluster: RemoteCluster ${ns}/${srcName} does not exist`);
    if (!dst) throw new NotReady('RemoteClusterNotFound', `spec.destinationCluster: RemoteCluster ${ns}/${dstName} does not exist`);
    const p = src.spec.pvcSync;
    if (!p?.enabled) throw new NotReady('AgentsDisabled', `source cluster ${srcName} has no PVC-sync agents: set spec.pvcSync.enabled on RemoteCluster ${ns}/${srcName}`);
    const agents = src.status?.agents;
    if (!agents?.hostKeyFingerprint || !agents.clientKeyFingerprint) throw new NotReady('AgentsNotReady', `the agents of source cluster ${srcName} are not deployed yet (RemoteCluster ${ns}/${srcName} status.agents)`);
    const names = agentKeySecrets(srcName);
    // Read, never rotate, here: the RemoteCluster reconciler rotates and tells the agents.
    const host = await ensureKey(this.d.client, ns, names.host, `dr-syncer-agent-host ${srcName}`, undefined, this.now());
    const client = await ensureKey(this.d.client, ns, names.client, `dr-syncer-dr-to-agent ${srcName}`, undefined, this.now());
    if (client.key.fingerprint !== agents.clientKeyFingerprint || host.key.fingerprint !== agents.hostKeyFingerprint) {
      throw new NotReady('AgentsNotReady', `the agents of source cluster ${srcName} do not have the current keys yet (rotation in progress)`);
    }
    const rotateMs = parseDuration(p.keyRotationInterval ?? DEFAULT_KEY_ROTATION, parseDuration(DEFAULT_KEY_ROTATION, 0));
    // Owned by the Replication: deleting it removes its key.
    const owner = rep.metadata.uid ? { apiVersion: rep.apiVersion, kind: rep.kind, name: rep.metadata.name, uid: rep.metadata.uid } : undefined;
    const repKey = await ensureKey(this.d.client, ns, `${rep.metadata.name}-pvc-ssh-key`, `dr-syncer-replication ${ns}/${rep.metadata.name}`, rotateMs, this.now(), owner);
    const settings = agentSettingsFor(p, this.d.agentDefaults);
    let source: KubeClient;
    let destination: KubeClient;
    try {
      source = await this.d.clusters.forRemoteCluster(src);
      destination = await this.d.clusters.forRemoteCluster(dst);
    } catch (err) {
      throw new NotReady('ClusterNotReady', err instanceof Error ? err.message : String(err));
    }
    const deps: TransferDeps = {
      source, destination, sourceName: srcName, destinationName: dstName,
      agent: {
        namespace: settings.namespace, port: settings.sshPort, addressType: settings.addressType, hostPublicKey: host.key.publicKey, clientPrivateKey: client.key.privateKey,
        nodes: agents.nodes ?? [],
      },
      replicationKey: repKey.key as KeyPair, holder: this.d.identity, log: this.d.log.child({ replication: `${ns}/${rep.metadata.name}` }),
      ...(this.d.podReadyTimeoutMs !== undefined ? { podReadyTimeoutMs: this.d.podReadyTimeoutMs } : {}),
    };
    return { deps, image: { image: settings.image, ...(settings.imagePullPolicy ? { imagePullPolicy: settings.imagePullPolicy } : {}) } };
  }

  /** One plan per selected PVC, in a stable order. */
  private async plans(rep: Replication, deps: TransferDeps, image: Pick<TransferPlan, 'image' | 'imagePullPolicy'>): Promise<TransferPlan[]> {
    const s = rep.spec;
    const namespaces = await resolveNamespaces(deps.source, {
      sourceNamespace: s.sourceNamespace, destinationNamespace: s.destinationNamespace,
      namespaceSelector: s.namespaceSelector ? { labelSelector: s.namespaceSelector.labelSelector as LabelSelector | undefined, destinationSuffix: s.namespaceSelector.destinationSuffix } : undefined,
    });
    const q = selectorToQuery(s.labelSelector as LabelSelector | undefined);
    const ds = s.pvc?.dataSync ?? {};
    const plans: TransferPlan[] = [];
    for (const ns of namespaces) {
      if (ns.terminating) continue;
      const { items } = await deps.source.list(`/api/v1/namespaces/${encodeURIComponent(ns.source)}/persistentvolumeclaims`, q ? { labelSelector: q } : {});
      for (const pvc of items.sort((a, b) => a.metadata.name.localeCompare(b.metadata.name))) {
        if (pvc.metadata.labels?.[IGNORE_LABEL] === 'true') continue;
        plans.push({
          opId: newOperationId(),
          replication: { namespace: rep.metadata.namespace ?? 'default', name: rep.metadata.name, uid: rep.metadata.uid ?? '' },
          ...image,
          source: { namespace: ns.source, pvc: pvc.metadata.name },
          destination: { namespace: ns.destination, pvc: pvc.metadata.name },
          rsync: {
            ...(ds.bandwidthLimit ? { bandwidthLimit: ds.bandwidthLimit } : {}),
            ...(ds.excludePaths ? { excludePaths: ds.excludePaths } : {}),
            ...(ds.rsyncOptions ? { rsyncOptions: ds.rsyncOptions } : {}),
          },
          timeoutSeconds: Math.round(parseDuration(ds.timeout, 30 * 60_000) / 1000),
        });
      }
    }
    return plans;
  }

  /** Runs the transfers, at most spec concurrency of this Replication and the controller-wide limit at once. */
  private async runAll(rep: Replication, deps: TransferDeps, plans: TransferPlan[], signal?: AbortSignal): Promise<TransferOutcome[]> {
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
}

function pvcStatus(p: TransferPlan, o: TransferOutcome, prev: PvcStatus | undefined): PvcStatus {
  const phase: PvcPhase = o.phase;
  const base: PvcStatus = { name: p.source.pvc, namespace: p.source.namespace, phase, message: o.message, lastAttemptTime: rfc3339(o.startedAt) };
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
