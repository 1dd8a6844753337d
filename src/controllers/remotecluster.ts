// The RemoteCluster reconciler: can we reach the cluster with the kubeconfig it names? The
// answer goes to conditions (KubeconfigAvailable, Reachable, Ready), health and serverVersion;
// healthy clusters are probed again every 5 minutes, unhealthy ones every 30 seconds.
import type { KubeClient } from '../adapters/kube/client.ts';
import { KubeApiError } from '../adapters/kube/client.ts';
import type { RemoteCluster, RemoteClusterStatus } from '../api/v1alpha1/index.ts';
import type { KubeObject } from '../core/types.ts';
import type { EventRecorder } from '../runtime/events.ts';
import type { Informer } from '../runtime/informer.ts';
import type { ReconcileResult } from '../runtime/controller.ts';
import { splitKey } from '../runtime/controller.ts';
import type { ClusterClients } from './clusters.ts';
import { ClusterError } from './clusters.ts';
import type { Condition } from './conditions.ts';
import { rfc3339, setCondition } from './conditions.ts';
import type { SyncMetrics } from './metrics.ts';

export interface RemoteClusterControllerDeps {
  client: KubeClient;
  remoteClusters: Informer<RemoteCluster>;
  clusters: ClusterClients;
  events: EventRecorder;
  metrics: SyncMetrics;
  now?: () => Date;
  healthyIntervalMs?: number;
  unhealthyIntervalMs?: number;
  /** How long a probe may take before the cluster counts as unreachable. */
  probeTimeoutMs?: number;
}

export class RemoteClusterController {
  constructor(private readonly d: RemoteClusterControllerDeps) {}

  reconcile = async (key: string, signal?: AbortSignal): Promise<ReconcileResult | void> => {
    const { namespace, name } = splitKey(key);
    const cached = this.d.remoteClusters.get(namespace, name);
    if (!cached) {
      this.d.clusters.forget(namespace ?? '', name);
      this.d.metrics.clusterHealthy.remove({ remotecluster: key });
      return;
    }
    const rc = structuredClone(cached);
    const now = (this.d.now ?? (() => new Date()))();
    const gen = rc.metadata.generation;
    let conds = (rc.status?.conditions ?? []) as Condition[];
    const set = (type: string, ok: boolean, reason: string, message: string) => {
      conds = setCondition(conds, { type, status: ok ? 'True' : 'False', reason, message, observedGeneration: gen }, now);
    };
    let client: KubeClient | undefined;
    try {
      client = await this.d.clusters.forRemoteCluster(rc);
      set('KubeconfigAvailable', true, 'KubeconfigLoaded', `kubeconfig read from Secret ${rc.spec.kubeconfigSecretRef.name}`);
    } catch (err) {
      if (!(err instanceof ClusterError)) throw err;
      set('KubeconfigAvailable', false, err.reason, err.message);
      set('Reachable', false, err.reason, 'no usable kubeconfig');
    }
    let serverVersion: string | undefined;
    if (client) {
      try {
        // The probe's requests are aborted at the deadline (a race with a timer would leave them
        // holding sockets), and a lost lease or shutdown ends them too.
        const ms = this.d.probeTimeoutMs ?? 10_000;
        const probe = AbortSignal.any([signal ?? new AbortController().signal, AbortSignal.timeout(ms)]);
        const v = await client.version(probe);
        // Discovery proves more than /version: credentials and RBAC for the API groups.
        await client.get('/api/v1', probe);
        serverVersion = v.gitVersion;
        set('Reachable', true, 'Connected', `API server ${v.gitVersion} at ${client.server}`);
      } catch (err) {
        const reason = err instanceof KubeApiError && (err.status === 401 || err.status === 403) ? 'Unauthorized' : 'ConnectionFailed';
        const timedOut = err instanceof Error && err.name === 'TimeoutError';
        const why = timedOut ? `no answer within ${(this.d.probeTimeoutMs ?? 10_000) / 1000}s` : err instanceof Error ? err.message : String(err);
        set('Reachable', false, reason, `cannot reach ${client.server}: ${why}`);
      }
    }
    const reachable = conds.find((c) => c.type === 'Reachable');
    const healthy = reachable?.status === 'True';
    set('Ready', healthy, healthy ? 'Healthy' : reachable?.reason ?? 'Unknown', healthy ? 'the cluster is reachable' : reachable?.message ?? 'not probed');
    this.d.metrics.clusterHealthy.set({ remotecluster: key }, healthy ? 1 : 0);
    const old = rc.status ?? {};
    if (old.health === 'Healthy' && !healthy) this.d.events.event(rc as unknown as KubeObject, 'Warning', 'Unreachable', reachable?.message ?? '');
    if (old.health !== 'Healthy' && healthy) this.d.events.event(rc as unknown as KubeObject, 'Normal', 'Reachable', reachable?.message ?? '');
    const status: RemoteClusterStatus = {
      ...old, health: healthy ? 'Healthy' : 'Unhealthy', conditions: conds, observedGeneration: gen,
      lastProbeTime: rfc3339(now), ...(serverVersion ? { serverVersion } : {}),
    };
    try {
      await this.d.client.request('PATCH', `/apis/dr-syncer.io/v1alpha1/namespaces/${rc.metadata.namespace}/remoteclusters/${rc.metadata.name}/status`, { status }, 'application/merge-patch+json');
    } catch (err) {
      if (!(err instanceof KubeApiError && err.status === 404)) throw err;
    }
    return { requeueAfterMs: healthy ? (this.d.healthyIntervalMs ?? 300_000) : (this.d.unhealthyIntervalMs ?? 30_000) };
  };
}
