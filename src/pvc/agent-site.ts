// A source cluster's agents as one unit, whichever cluster that is: a RemoteCluster with
// spec.pvcSync.enabled, or the controller's own cluster (--local-pvc-sync, the Helm chart's
// pvcSync values). Keys live in Secrets of the controller's cluster; the agents' objects in the
// source cluster. keepAgents() is the one place that rotates keys and applies the agents;
// agentAccess() is what a transfer needs from them, refused (NotReady) until the agents run
// with the current keys.
import type { KubeClient } from '../adapters/kube/client.ts';
import { KubeApiError } from '../adapters/kube/client.ts';
import { AGENT_CONFIGMAP, AUTHORIZED_KEYS_KEY } from '../agent/registry.ts';
import { NotReady } from '../util/errors.ts';
import type { AddressType, AgentDefaults, AgentNode, PvcSyncFields } from './agent.ts';
import { agentSettingsFor, agentState, DEFAULT_KEY_ROTATION, reconcileAgent } from './agent.ts';
import { ensureKey } from './key-secrets.ts';
import type { AgentSettings } from './manifests.ts';
import type { RemoteCluster } from '../api/v1alpha1/index.ts';
import { rfc3339 } from '../controllers/conditions.ts';
import { parseDuration } from '../controllers/schedule.ts';

export interface AgentSite {
  /** Names the key Secrets and the messages: the RemoteCluster's name, or the controller's --cluster-name. */
  name: string;
  /** Says where the settings come from, in messages: "RemoteCluster ns/name" or "the controller's --local-pvc-sync". */
  describe: string;
  /** Namespace of the controller's cluster that holds the key Secrets. */
  keyNamespace: string;
  spec: PvcSyncFields & { keyRotationInterval?: string };
  /** Who runs these agents, recorded on them (one runner per source cluster): "<description> <id>". */
  owner: string;
}

export interface AgentsStatus {
  ready: number;
  total: number;
  hostKeyFingerprint: string;
  clientKeyFingerprint: string;
  keyCreationTime: string;
  nodes: AgentNode[];
}

/** Names of the controller-side Secrets that hold a source cluster's agent keys. */
export const agentKeySecrets = (site: string) => ({ host: `${site}-pvc-agent-host-key`, client: `${site}-pvc-agent-client-key` });

/** The agents a RemoteCluster with spec.pvcSync.enabled runs in its cluster; keys next to the RemoteCluster. */
export function remoteClusterSite(rc: RemoteCluster): AgentSite {
  const ns = rc.metadata.namespace ?? 'default';
  return {
    name: rc.metadata.name, describe: `RemoteCluster ${ns}/${rc.metadata.name}`, keyNamespace: ns, spec: rc.spec.pvcSync ?? {},
    owner: `RemoteCluster ${ns}/${rc.metadata.name} ${rc.metadata.uid ?? ''}`,
  };
}

/** The agents of the controller's own cluster (--local-pvc-sync); keys in the controller's namespace. */
export function localSite(clusterName: string, controllerNamespace: string, spec: AgentSite['spec']): AgentSite {
  return {
    name: clusterName, describe: `the controller's own cluster (--local-pvc-sync, namespace ${controllerNamespace})`,
    keyNamespace: controllerNamespace, spec, owner: `the dr-syncer controller of namespace ${controllerNamespace} (--local-pvc-sync) ${clusterName}`,
  };
}

/** The site's two agent keys; the client key is replaced when older than rotateAfterMs (host keys never are). */
function siteKeys(controller: KubeClient, site: AgentSite, now: Date, rotateAfterMs?: number) {
  const names = agentKeySecrets(site.name);
  return Promise.all([
    ensureKey(controller, site.keyNamespace, names.host, `dr-syncer-agent-host ${site.name}`, undefined, now),
    ensureKey(controller, site.keyNamespace, names.client, `dr-syncer-dr-to-agent ${site.name}`, rotateAfterMs, now),
  ]);
}

export const rotationMs = (spec: AgentSite['spec']) => parseDuration(spec.keyRotationInterval ?? DEFAULT_KEY_ROTATION, parseDuration(DEFAULT_KEY_ROTATION, 0));

/**
 * Keys first (host key kept, client key rotated on keyRotationInterval), then the agents'
 * objects with the current client key as the only authorized key: a rotated-out key stops
 * working as soon as the agents see the change (they watch their registry ConfigMap).
 */
export async function keepAgents(
  controller: KubeClient, source: KubeClient, site: AgentSite, defaults: AgentDefaults, now: Date, signal?: AbortSignal,
): Promise<{ agents: AgentsStatus; rotated: boolean; requeueMs: number }> {
  const rotateMs = rotationMs(site.spec);
  const [host, dr] = await siteKeys(controller, site, now, rotateMs);
  const state = await reconcileAgent(source, agentSettingsFor(site.spec, defaults, site.name), host.key.privateKey, dr.key.publicKey, site.owner, signal);
  const agents: AgentsStatus = {
    ready: state.ready, total: state.total, hostKeyFingerprint: host.key.fingerprint, clientKeyFingerprint: dr.key.fingerprint,
    keyCreationTime: rfc3339(dr.createdAt), nodes: state.nodes,
  };
  const untilRotation = Math.max(1000, dr.createdAt.getTime() + rotateMs - now.getTime());
  // While agents start, look again soon; then at the next rotation.
  return { agents, rotated: dr.generated, requeueMs: state.total > 0 && state.ready === state.total ? untilRotation : Math.min(5000, untilRotation) };
}

export interface AgentAccess {
  settings: AgentSettings & { addressType: AddressType };
  hostPublicKey: string;
  clientPrivateKey: string;
  nodes: AgentNode[];
}

/**
 * The keys and agents a transfer from this site uses. Read, never rotated, here: keepAgents()
 * rotates and tells the agents. `published` is what the site's status last reported (a
 * RemoteCluster's status.agents); without it (the controller's own cluster) the agents are
 * asked directly: their pods, and the key their registry authorizes.
 */
export async function agentAccess(
  controller: KubeClient, source: KubeClient, site: AgentSite, defaults: AgentDefaults, now: Date,
  published?: { hostKeyFingerprint?: string; clientKeyFingerprint?: string; nodes?: AgentNode[] }, signal?: AbortSignal,
): Promise<AgentAccess> {
  const settings = agentSettingsFor(site.spec, defaults);
  const [host, client] = await siteKeys(controller, site, now);
  if (published) {
    if (!published.hostKeyFingerprint || !published.clientKeyFingerprint) throw new NotReady('AgentsNotReady', `the agents of source cluster ${site.name} are not deployed yet (${site.describe}: status.agents)`);
    if (client.key.fingerprint !== published.clientKeyFingerprint || host.key.fingerprint !== published.hostKeyFingerprint) {
      throw new NotReady('AgentsNotReady', `the agents of source cluster ${site.name} do not have the current keys yet (rotation in progress)`);
    }
    return { settings, hostPublicKey: host.key.publicKey, clientPrivateKey: client.key.privateKey, nodes: published.nodes ?? [] };
  }
  let authorized: string | undefined;
  try {
    const cm = await source.get<{ data?: Record<string, string> }>(`/api/v1/namespaces/${encodeURIComponent(settings.namespace)}/configmaps/${AGENT_CONFIGMAP}`, signal);
    authorized = cm.data?.[AUTHORIZED_KEYS_KEY];
  } catch (err) {
    if (!(err instanceof KubeApiError && err.status === 404)) throw err;
  }
  if (authorized?.trim() !== client.key.publicKey.trim()) {
    throw new NotReady('AgentsNotReady', `the agents of source cluster ${site.name} are not deployed with the current keys yet (${site.describe})`);
  }
  let nodes: AgentNode[];
  try {
    nodes = (await agentState(source, settings.namespace, settings.addressType, signal)).nodes;
  } catch (err) {
    if (err instanceof KubeApiError && err.status === 404) throw new NotReady('AgentsNotReady', `the agents of source cluster ${site.name} are not deployed yet (${site.describe})`);
    throw err;
  }
  return { settings, hostPublicKey: host.key.publicKey, clientPrivateKey: client.key.privateKey, nodes };
}
