// The RemoteCluster reconciler: can we reach the cluster with the kubeconfig it names? The
// answer goes to conditions (KubeconfigAvailable, Reachable, Ready), health and serverVersion;
// healthy clusters are probed again every 5 minutes, unhealthy ones every 30 seconds.
// With spec.pvcSync.enabled it also keeps the PVC-sync agents running there (src/pvc/agent.ts),
// with keys it generates and rotates, and reports them (AgentsReady, status.agents).
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
import type { AgentDefaults } from '../pvc/agent.ts';
import { DEFAULT_AGENT_IMAGE } from '../pvc/agent.ts';
import { keepAgents, remoteClusterSite } from '../pvc/agent-site.ts';

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
  /** The agent image and pod settings the controller was started with. */
  agentDefaults?: AgentDefaults;
}

export class RemoteClusterController {
  constructor(private readonly d: RemoteClusterControllerDeps) {}

  reconcile = async (key: string, signal?: AbortSignal): Promise<ReconcileResult | void> => {
    const { namespace, name } = splitKey(key);
    const cached = this.d.remoteClusters.get(namespace, name);
    if (!cached) {
      this.d.clusters.forget(namespace ?? '', name);
      this.d.metrics.clusterHealthy.remove({ remotecluster: key });
      this.d.metrics.agentsReady.remove({ source: key });
      this.d.metrics.agentsDesired.remove({ source: key });
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
    let agents: RemoteClusterStatus['agents'];
    let requeueMs: number | undefined;
    if (rc.spec.pvcSync?.enabled && client && healthy) {
      try {
        const r = await this.reconcileAgents(rc, client, now, signal);
        agents = r.agents;
        requeueMs = r.requeueMs;
        this.d.metrics.agentsReady.set({ source: key }, r.agents.ready);
        this.d.metrics.agentsDesired.set({ source: key }, r.agents.total);
        const ok = r.agents.total > 0 && r.agents.ready === r.agents.total;
        const notReady = r.agents.nodes?.filter((n) => !n.ready).map((n) => n.node) ?? [];
        set('AgentsReady', ok, ok ? 'AgentsReady' : 'AgentsNotReady', ok
          ? `${r.agents.ready} of ${r.agents.total} agents ready`
          : r.agents.total === 0 ? 'no node runs an agent yet (spec.pvcSync.nodeSelector, tolerations?)' : `${r.agents.ready} of ${r.agents.total} agents ready; not ready on: ${notReady.join(', ') || 'pods not yet created'}`);
      } catch (err) {
        if (signal?.aborted) throw err;
        set('AgentsReady', false, 'AgentDeployFailed', `cannot deploy the PVC-sync agents to ${client.server}: ${err instanceof Error ? err.message : String(err)}`);
      }
    } else if (!rc.spec.pvcSync?.enabled) {
      conds = conds.filter((c) => c.type !== 'AgentsReady');
      this.d.metrics.agentsReady.remove({ source: key });
      this.d.metrics.agentsDesired.remove({ source: key });
    }
    const agentsCond = conds.find((c) => c.type === 'AgentsReady');
    const ready = healthy && (agentsCond === undefined || agentsCond.status === 'True');
    set('Ready', ready, !healthy ? reachable?.reason ?? 'Unknown' : ready ? 'Healthy' : agentsCond?.reason ?? 'AgentsNotReady',
      !healthy ? reachable?.message ?? 'not probed' : ready ? 'the cluster is reachable' : agentsCond?.message ?? '');
    this.d.metrics.clusterHealthy.set({ remotecluster: key }, healthy ? 1 : 0);
    const old = rc.status ?? {};
    if (old.health === 'Healthy' && !healthy) this.d.events.event(rc as unknown as KubeObject, 'Warning', 'Unreachable', reachable?.message ?? '');
    if (old.health !== 'Healthy' && healthy) this.d.events.event(rc as unknown as KubeObject, 'Normal', 'Reachable', reachable?.message ?? '');
    const status: Record<string, unknown> = {
      ...old, health: healthy ? 'Healthy' : 'Unhealthy', conditions: conds, observedGeneration: gen,
      lastProbeTime: rfc3339(now), ...(serverVersion ? { serverVersion } : {}),
    };
    // Agents: what was observed now; kept while the cluster cannot be asked; gone once disabled.
    if (agents) status.agents = agents;
    else if (!rc.spec.pvcSync?.enabled && old.agents) status.agents = null;
    try {
      await this.d.client.request('PATCH', `/apis/dr-syncer.io/v1alpha1/namespaces/${rc.metadata.namespace}/remoteclusters/${rc.metadata.name}/status`, { status }, 'application/merge-patch+json');
    } catch (err) {
      if (!(err instanceof KubeApiError && err.status === 404)) throw err;
    }
    const interval = healthy ? (this.d.healthyIntervalMs ?? 300_000) : (this.d.unhealthyIntervalMs ?? 30_000);
    return { requeueAfterMs: Math.min(interval, requeueMs ?? interval) };
  };

  private async reconcileAgents(rc: RemoteCluster, client: KubeClient, now: Date, signal?: AbortSignal): Promise<{ agents: NonNullable<RemoteClusterStatus['agents']>; requeueMs: number }> {
    const r = await keepAgents(this.d.client, client, remoteClusterSite(rc), this.d.agentDefaults ?? { image: DEFAULT_AGENT_IMAGE }, now, signal);
    if (r.rotated && rc.status?.agents?.clientKeyFingerprint) {
      this.d.events.event(rc as unknown as KubeObject, 'Normal', 'KeyRotated', `new DR-to-agent key ${r.agents.clientKeyFingerprint}; the previous key no longer opens the agents`);
    }
    return r;
  }
}
