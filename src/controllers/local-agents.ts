// The PVC-sync agents of the controller's own cluster, for Replications without
// spec.sourceCluster: the same keys, objects and rotation as a RemoteCluster's agents
// (src/pvc/agent-site.ts), with settings from the controller's --local-pvc-sync file (the Helm
// chart's pvcSync values) instead of a RemoteCluster's spec. There is no object to write a
// status on: readiness goes to the log and to dr_syncer_agents_ready/_desired, and each PVC data
// sync asks the agents directly before it starts (agentAccess), so nothing here is state that
// a restart could lose.
import type { KubeClient } from '../adapters/kube/client.ts';
import type { AgentDefaults } from '../pvc/agent.ts';
import type { AgentSite } from '../pvc/agent-site.ts';
import { keepAgents } from '../pvc/agent-site.ts';
import type { ReconcileResult } from '../runtime/controller.ts';
import type { Logger } from '../util/log.ts';
import type { SyncMetrics } from './metrics.ts';

export const LOCAL_AGENTS_KEY = 'local-agents';

export interface LocalAgentsDeps {
  client: KubeClient;
  site: AgentSite;
  agentDefaults: AgentDefaults;
  metrics: SyncMetrics;
  log: Logger;
  now?: () => Date;
  /** Called when the agents' readiness or keys changed: PVC data syncs waiting for them go on. */
  onChange?: () => void;
}

export class LocalAgentsController {
  private last = '';
  constructor(private readonly d: LocalAgentsDeps) {}

  reconcile = async (_key: string, signal?: AbortSignal): Promise<ReconcileResult | void> => {
    const now = (this.d.now ?? (() => new Date()))();
    const r = await keepAgents(this.d.client, this.d.client, this.d.site, this.d.agentDefaults, now, signal);
    const a = r.agents;
    this.d.metrics.agentsReady.set({ source: this.d.site.name }, a.ready);
    this.d.metrics.agentsDesired.set({ source: this.d.site.name }, a.total);
    const seen = JSON.stringify(a);
    if (seen !== this.last) {
      const notReady = a.nodes.filter((n) => !n.ready).map((n) => n.node);
      this.d.log.info({ source: this.d.site.name, ready: a.ready, total: a.total, notReady, hostKey: a.hostKeyFingerprint, clientKey: a.clientKeyFingerprint, rotated: r.rotated },
        `PVC-sync agents of the controller's own cluster: ${a.ready} of ${a.total} ready`);
      this.last = seen;
      this.d.onChange?.();
    }
    return { requeueAfterMs: r.requeueMs };
  };
}
