// The manager, as in controller-runtime: it owns the client of the cluster it runs in, the shared
// informers, the work queues, leader election, metrics and probes, and starts the reconcilers
// (only while it leads). Followers keep warm caches so a takeover starts at once.
import os from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { KubeConfig } from '@kubernetes/client-node';
import type { KubeClientOptions } from './adapters/kube/client.ts';
import { KubeClient } from './adapters/kube/client.ts';
import type { PvcSync, RemoteCluster, Replication } from './api/v1alpha1/index.ts';
import { ClusterClients } from './controllers/clusters.ts';
import { createSyncMetrics } from './controllers/metrics.ts';
import { RemoteClusterController } from './controllers/remotecluster.ts';
import { LOCAL_AGENTS_KEY, LocalAgentsController } from './controllers/local-agents.ts';
import { localSite } from './pvc/agent-site.ts';
import { PvcDataController } from './controllers/pvc-data.ts';
import { ReadinessController, readinessInputsChanged } from './controllers/readiness.ts';
import { ReplicationController, replicationChanged } from './controllers/replication.ts';
import type { AgentDefaults } from './pvc/agent.ts';
import { DEFAULT_AGENT_IMAGE } from './pvc/agent.ts';
import { SourceWatches } from './controllers/source-watches.ts';
import { keyOf, runController } from './runtime/controller.ts';
import { EventRecorder } from './runtime/events.ts';
import { Informer } from './runtime/informer.ts';
import { LeaderElector } from './runtime/leader.ts';
import { createMetrics } from './runtime/metrics.ts';
import type { ProbeServer } from './runtime/server.ts';
import { startProbeServer } from './runtime/server.ts';
import { WorkQueue } from './runtime/workqueue.ts';
import type { Logger } from './util/log.ts';

export interface ManagerOptions {
  /** kubeconfig file; default: $KUBECONFIG, ~/.kube/config, or the in-cluster service account. */
  kubeconfig?: string;
  metricsAddress: string;
  probeAddress: string;
  leaderElect: boolean;
  leaderElectionNamespace: string;
  leaderElectionId: string;
  identity?: string;
  workers: number;
  /** Only this namespace's Replications and RemoteClusters; default all. */
  namespace?: string;
  cacheDir: string;
  /** Name recorded in commits for Replications without sourceCluster. */
  clusterName: string;
  log: Logger;
  /** Leader election timings (ms), for tests. */
  lease?: { durationMs: number; renewDeadlineMs: number; retryPeriodMs: number };
  /** Source watch stall detection (ms), for tests. */
  watchStallTimeoutMs?: number;
  /** What happens when leadership is lost while running (default: exit the process, so it restarts clean). */
  onLostLeadership?: () => void;
  /** Request mechanics of every Kubernetes client (timeouts, QPS/burst); default CONTROLLER_KUBE_API. */
  kubeClient?: KubeClientOptions;
  /** RemoteCluster probe intervals (ms), for tests. */
  remoteClusterProbe?: { healthyIntervalMs?: number; unhealthyIntervalMs?: number; timeoutMs?: number };
  /** The PVC-sync agent image (and pod settings) for RemoteClusters that do not name one. */
  agent?: AgentDefaults;
  /** PVC data transfers at once, over all Replications (default 4). */
  maxConcurrentTransfers?: number;
  /**
   * PVC-sync agents in the controller's own cluster (the Helm chart's pvcSync values), the
   * source of PVC data for Replications without spec.sourceCluster; keys are kept in
   * leaderElectionNamespace. Same fields as RemoteCluster.spec.pvcSync.
   */
  localPvcSync?: PvcSync;
  /** How long a PVC's rsync endpoint pod may take to be ready (ms), for tests. */
  endpointReadyTimeoutMs?: number;
  /** How often the recovery point of each Replication is measured (ms; default 30 s), for tests. */
  readinessIntervalMs?: number;
}

export { DEFAULT_AGENT_IMAGE } from './pvc/agent.ts';

export interface RunningManager {
  metricsPort: number;
  probePort: number;
  isLeader(): boolean;
  stop(): Promise<void>;
}

/** A kubeconfig file, or the default ($KUBECONFIG, ~/.kube/config, in-cluster). */
export function loadKubeConfig(file?: string): KubeConfig {
  const kc = new KubeConfig();
  if (file) kc.loadFromFile(file);
  else kc.loadFromDefault();
  return kc;
}

/** The controller's request mechanics: kube-controller-manager's --kube-api-qps/--kube-api-burst
 * defaults (client-go's own, 5 and 10, suit one-shot tools better than a controller). */
export const CONTROLLER_KUBE_API: Required<Pick<KubeClientOptions, 'qps' | 'burst' | 'timeoutMs'>> = { qps: 20, burst: 30, timeoutMs: 30_000 };

/** Listens on `address` for `what`, or fails with an error that names both (like controller-runtime's manager). */
async function listen(what: string, address: string, start: () => Promise<ProbeServer>): Promise<ProbeServer> {
  try {
    return await start();
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why = code === 'EADDRINUSE' ? 'the address is already in use' : code === 'EACCES' ? 'permission denied' : err instanceof Error ? err.message : String(err);
    throw new Error(`cannot serve ${what} on ${address}: ${why}; choose another address with --${what === 'metrics' ? 'metrics-bind-address' : 'health-probe-bind-address'}`, { cause: err });
  }
}

export async function startManager(options: ManagerOptions): Promise<RunningManager> {
  const opts = { ...options, kubeClient: { ...CONTROLLER_KUBE_API, ...options.kubeClient } };
  const log = opts.log;
  const kc = loadKubeConfig(opts.kubeconfig);
  // A client (and so a rate limiter) per use, as kube-controller-manager gives each controller
  // its own: reads of the local cluster as a sync's source (as a RemoteCluster source has its
  // own client), Events, and the readiness reconciler do not queue behind the Replication
  // reconciler's writes, nor it behind them.
  const newClient = async () => {
    const c = await KubeClient.fromKubeConfig(kc, opts.kubeClient);
    c.origin = opts.kubeconfig ? `the controller's cluster (kubeconfig ${opts.kubeconfig})` : "the controller's own cluster";
    return c;
  };
  const client = await newClient();
  const [sourceClient, eventsClient, readinessClient] = await Promise.all([newClient(), newClient(), newClient()]);
  const metrics = createMetrics({ defaultMetrics: true });
  // The listeners first: a taken port must stop the process before anything starts.
  const servers: ProbeServer[] = [];
  let elector: LeaderElector | undefined;
  let synced = () => false;
  try {
    servers.push(await listen('metrics', opts.metricsAddress, () => startProbeServer({ address: opts.metricsAddress, registry: metrics.registry, serve: ['metrics'], log })));
    servers.push(await listen('health probes', opts.probeAddress, () => startProbeServer({
      address: opts.probeAddress, log, serve: ['healthz', 'readyz'],
      checks: {
        healthz: { ping: () => true, ...(opts.leaderElect ? { leaderElection: () => elector?.check(2000) ?? true } : {}) },
        readyz: { informers: () => synced() || 'caches are not synced yet' },
      },
    })));
  } catch (err) {
    await Promise.all(servers.map((s) => s.close()));
    throw err;
  }
  const syncMetrics = createSyncMetrics(metrics.registry);
  const identity = opts.identity ?? `${process.env.POD_NAME ?? os.hostname()}_${randomBytes(4).toString('hex')}`;
  const ns = opts.namespace ? `/namespaces/${opts.namespace}` : '';
  const replications = new Informer<Replication>({ client, path: `/apis/dr-syncer.io/v1alpha1${ns}/replications`, log, name: 'replications' });
  const remoteClusters = new Informer<RemoteCluster>({ client, path: `/apis/dr-syncer.io/v1alpha1${ns}/remoteclusters`, log, name: 'remoteclusters' });
  const repQueue = new WorkQueue<string>({ name: 'replication', metrics });
  const rcQueue = new WorkQueue<string>({ name: 'remotecluster', metrics });
  const dataQueue = new WorkQueue<string>({ name: 'pvc-data', metrics });
  const readinessQueue = new WorkQueue<string>({ name: 'readiness', metrics });
  const events = new EventRecorder({ client: eventsClient, component: 'dr-syncer', host: identity, log });
  const clusters = new ClusterClients(sourceClient, opts.kubeClient);

  // The watches call back into the controller only after it exists (events arrive later).
  const watches = new SourceWatches(log, (key) => repQueue.add(key), opts.watchStallTimeoutMs);
  const repController: ReplicationController = new ReplicationController({
    client, replications, remoteClusters, clusters, watches, events, metrics: syncMetrics,
    cacheDir: path.join(opts.cacheDir, 'git'), localClusterName: opts.clusterName, log,
  });
  const agentDefaults = opts.agent ?? { image: DEFAULT_AGENT_IMAGE };
  const site = opts.localPvcSync?.enabled ? localSite(opts.clusterName, opts.leaderElectionNamespace, opts.localPvcSync) : undefined;
  const dataController = new PvcDataController({
    client, replications, remoteClusters, clusters, events, metrics: syncMetrics, log, identity, agentDefaults, ...(site ? { localSite: site } : {}),
    maxConcurrentTransfers: opts.maxConcurrentTransfers, podReadyTimeoutMs: opts.endpointReadyTimeoutMs,
  });
  const readiness = new ReadinessController({
    client: readinessClient, replications, remoteClusters, clusters, metrics: syncMetrics, cacheDir: path.join(opts.cacheDir, 'git'), log, intervalMs: opts.readinessIntervalMs,
  });
  const localQueue = new WorkQueue<string>({ name: 'local-agents', metrics });
  const localAgents = site && new LocalAgentsController({
    client, site, agentDefaults, metrics: syncMetrics, log,
    onChange: () => { for (const r of replications.list()) if (!r.spec.sourceCluster && r.spec.pvc?.syncData) dataQueue.add(keyOf(r)); },
  });
  const rcController = new RemoteClusterController({
    client, remoteClusters, clusters, events, metrics: syncMetrics, agentDefaults,
    healthyIntervalMs: opts.remoteClusterProbe?.healthyIntervalMs, unhealthyIntervalMs: opts.remoteClusterProbe?.unhealthyIntervalMs, probeTimeoutMs: opts.remoteClusterProbe?.timeoutMs,
  });

  replications.addHandler({
    add: (o) => {
      repQueue.add(keyOf(o));
      dataQueue.add(keyOf(o));
      readinessQueue.add(keyOf(o));
    },
    update: (o, n) => {
      if (replicationChanged(o, n)) {
        repQueue.add(keyOf(n));
        dataQueue.add(keyOf(n));
      }
      // A sync or a data copy changes what the recovery point is measured from (not its own write).
      if (readinessInputsChanged(o, n)) readinessQueue.add(keyOf(n));
      // Also on status: a failover in progress or the split-brain guard stops a running copy.
      dataController.stopUnwanted(keyOf(n), n);
    },
    delete: (o) => {
      repQueue.add(keyOf(o));
      readinessQueue.add(keyOf(o));
      dataController.stopUnwanted(keyOf(o), undefined);
    },
  });
  const replicationsOf = (rc: RemoteCluster) =>
    replications.list().filter((r) => r.metadata.namespace === rc.metadata.namespace && (r.spec.sourceCluster === rc.metadata.name || r.spec.destinationCluster === rc.metadata.name));
  remoteClusters.addHandler({
    add: (o) => rcQueue.add(keyOf(o)),
    update: (o, n) => {
      if (o.metadata.generation !== n.metadata.generation) rcQueue.add(keyOf(n));
      // A cluster that became healthy unblocks the Replications waiting for it.
      if (o.status?.health !== n.status?.health) for (const r of replicationsOf(n)) repQueue.add(keyOf(r));
      if (o.metadata.generation !== n.metadata.generation || o.status?.health !== n.status?.health) for (const r of replicationsOf(n)) readinessQueue.add(keyOf(r));
      // Agents deployed, ready or with new keys: PVC data syncs waiting for them can go on.
      if (JSON.stringify(o.status?.agents) !== JSON.stringify(n.status?.agents)) for (const r of replicationsOf(n)) dataQueue.add(keyOf(r));
    },
    delete: (o) => {
      rcQueue.add(keyOf(o));
      for (const r of replicationsOf(o)) repQueue.add(keyOf(r));
    },
  });
  replications.start();
  remoteClusters.start();

  synced = () => replications.hasSynced() && remoteClusters.hasSynced();

  const stopping = new AbortController();
  let workers: Promise<unknown> | undefined;
  let leading = false;
  const lead = async (signal: AbortSignal) => {
    leading = true;
    log.info({ identity }, 'leading: starting controllers');
    await Promise.all([replications.waitForSync(signal), remoteClusters.waitForSync(signal)]).catch(() => undefined);
    if (signal.aborted) return;
    workers = Promise.all([
      runController({ name: 'replication', queue: repQueue, workers: opts.workers, reconcile: repController.reconcile, metrics, log, signal }),
      runController({ name: 'remotecluster', queue: rcQueue, workers: Math.max(1, Math.min(opts.workers, 4)), reconcile: rcController.reconcile, metrics, log, signal }),
      runController({ name: 'pvc-data', queue: dataQueue, workers: Math.max(1, opts.workers), reconcile: dataController.reconcile, metrics, log, signal }),
      runController({ name: 'readiness', queue: readinessQueue, workers: Math.max(1, Math.min(opts.workers, 4)), reconcile: readiness.reconcile, metrics, log, signal }),
      ...(localAgents ? [runController({ name: 'local-agents', queue: localQueue, workers: 1, reconcile: localAgents.reconcile, metrics, log, signal })] : []),
    ]);
    if (localAgents) localQueue.add(LOCAL_AGENTS_KEY);
    await workers;
  };

  let electorRun: Promise<void> | undefined;
  if (opts.leaderElect) {
    // Its own client, as controller-runtime does: renewals never wait behind the controllers' requests in the rate limiter.
    const leaseClient = await KubeClient.fromKubeConfig(loadKubeConfig(opts.kubeconfig), opts.kubeClient);
    elector = new LeaderElector({
      client: leaseClient, namespace: opts.leaderElectionNamespace, name: opts.leaderElectionId, identity, log, registry: metrics.registry,
      leaseDurationMs: opts.lease?.durationMs, renewDeadlineMs: opts.lease?.renewDeadlineMs, retryPeriodMs: opts.lease?.retryPeriodMs,
      onStartedLeading: lead,
      onStoppedLeading: () => {
        leading = false;
        if (stopping.signal.aborted) return;
        log.error({ identity }, 'lost leadership: stopping so that only the leader writes');
        (opts.onLostLeadership ?? (() => process.exit(1)))();
      },
      onNewLeader: (id) => log.info({ leader: id }, 'leader observed'),
    });
    electorRun = elector.run(stopping.signal);
  } else {
    void lead(stopping.signal);
  }

  return {
    metricsPort: servers[0]!.port,
    probePort: servers[1]!.port,
    isLeader: () => (opts.leaderElect ? (elector?.isLeader() ?? false) : leading),
    async stop() {
      stopping.abort();
      await electorRun?.catch(() => undefined);
      await workers?.catch(() => undefined);
      await Promise.all([replications.stop(), remoteClusters.stop(), watches.stop()]);
      await events.flush?.();
      await Promise.all(servers.map((s) => s.close()));
    },
  };
}
