// The agent in a source cluster, as the controller keeps it: the objects of manifests.ts applied
// server-side (dr-syncer owns exactly those fields), the registry ConfigMap's authorized keys
// set, and what the agents' pods say about their readiness, per node.
import type { KubeClient } from '../adapters/kube/client.ts';
import { KubeApiError } from '../adapters/kube/client.ts';
import { AGENT_CONFIGMAP, AUTHORIZED_KEYS_KEY, TARGET_KEY_PREFIX, targetEntry, targetKey } from '../agent/registry.ts';
import type { KubeObject } from '../core/types.ts';
import type { AgentSettings } from './manifests.ts';
import { AGENT_HOST_KEY_SECRET, AGENT_NAME, agentObjects } from './manifests.ts';

const FIELD_MANAGER = 'dr-syncer';

const PLURAL: Record<string, string> = {
  Namespace: 'namespaces', ServiceAccount: 'serviceaccounts', Secret: 'secrets', ConfigMap: 'configmaps',
  Role: 'roles', RoleBinding: 'rolebindings', DaemonSet: 'daemonsets', Job: 'jobs',
};

export function objectPath(o: Pick<KubeObject, 'apiVersion' | 'kind' | 'metadata'>): string {
  const base = o.apiVersion.includes('/') ? `/apis/${o.apiVersion}` : `/api/${o.apiVersion}`;
  const plural = PLURAL[o.kind];
  if (!plural) throw new Error(`no resource path for kind ${o.kind}`);
  const ns = o.metadata.namespace ? `/namespaces/${encodeURIComponent(o.metadata.namespace)}` : '';
  return `${base}${ns}/${plural}/${encodeURIComponent(o.metadata.name)}`;
}

/** Server-side apply: creates or updates exactly the fields given, owned by dr-syncer. */
export async function apply(client: KubeClient, o: KubeObject, signal?: AbortSignal): Promise<KubeObject> {
  return client.request<KubeObject>('PATCH', `${objectPath(o)}?fieldManager=${FIELD_MANAGER}&force=true`, o, 'application/apply-patch+yaml', signal);
}

export async function deleteIfExists(client: KubeClient, path: string, signal?: AbortSignal): Promise<void> {
  try {
    // Background: the Job's pods and the Secret it owns go too (a Job's default is to orphan them).
    await client.request('DELETE', `${path}${path.includes('?') ? '&' : '?'}propagationPolicy=Background`, undefined, 'application/json', signal);
  } catch (err) {
    if (!(err instanceof KubeApiError && err.status === 404)) throw err;
  }
}

export interface AgentNode {
  node: string;
  ready: boolean;
  /** The node's address that DR-side Jobs connect to (spec.pvcSync.agentAddress). */
  address?: string;
}

export interface AgentState {
  ready: number;
  total: number;
  nodes: AgentNode[];
}

export type AddressType = 'InternalIP' | 'ExternalIP' | 'Hostname';

/** Applies the agent's objects and its authorized keys; returns the agents' readiness. */
export const OWNER_ANNOTATION = 'dr-syncer.io/owner';

export async function reconcileAgent(
  client: KubeClient,
  s: AgentSettings & { addressType: AddressType },
  hostPrivateKey: string,
  authorizedKeys: string,
  /** Who runs these agents: "<description> <id>", e.g. "RemoteCluster <namespace>/<name> <uid>". */
  owner: string,
  signal?: AbortSignal,
): Promise<AgentState> {
  // One RemoteCluster per source cluster runs its agents: a second one (another namespace, another
  // controller) would replace the host key and the authorized key of the first, on every reconcile.
  try {
    const existing = await client.get<KubeObject>(`/api/v1/namespaces/${encodeURIComponent(s.namespace)}/secrets/${AGENT_HOST_KEY_SECRET}`, signal);
    const holder = existing.metadata.annotations?.[OWNER_ANNOTATION];
    if (holder && holder !== owner) {
      throw new Error(`the agents in namespace ${s.namespace} of this cluster belong to ${holder.slice(0, holder.lastIndexOf(' '))}: run the agents of a source cluster from one place only (one RemoteCluster with spec.pvcSync.enabled, or the controller's own --local-pvc-sync), or give this one another pvcSync namespace and sshPort`);
    }
  } catch (err) {
    if (!(err instanceof KubeApiError && err.status === 404)) throw err;
  }
  for (const o of agentObjects(s, hostPrivateKey)) {
    if (o.kind === 'Secret') o.metadata.annotations = { ...o.metadata.annotations, [OWNER_ANNOTATION]: owner };
    await apply(client, o, signal);
  }
  // Only the keys: the targets in the same ConfigMap belong to the running transfers.
  await apply(client, { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: AGENT_CONFIGMAP, namespace: s.namespace }, data: { [AUTHORIZED_KEYS_KEY]: authorizedKeys } } as KubeObject, signal);
  return agentState(client, s.namespace, s.addressType, signal);
}

interface PodLike {
  spec?: { nodeName?: string };
  status?: { conditions?: { type: string; status: string }[] };
}
interface NodeLike {
  metadata: { name: string };
  status?: { addresses?: { type: string; address: string }[] };
}

/** A pod's Ready condition is True. */
export const podReady = (p: { status?: { conditions?: { type: string; status: string }[] } }): boolean =>
  p.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') ?? false;

export function nodeAddress(n: NodeLike, type: AddressType): string | undefined {
  return n.status?.addresses?.find((a) => a.type === type)?.address;
}

export async function agentState(client: KubeClient, namespace: string, addressType: AddressType, signal?: AbortSignal): Promise<AgentState> {
  const ds = await client.get<{ status?: { desiredNumberScheduled?: number; numberReady?: number } }>(`/apis/apps/v1/namespaces/${encodeURIComponent(namespace)}/daemonsets/${AGENT_NAME}`, signal);
  const pods = await client.list(`/api/v1/namespaces/${encodeURIComponent(namespace)}/pods`, { labelSelector: `app.kubernetes.io/name=${AGENT_NAME}` }, 500, signal);
  const nodes = new Map<string, NodeLike>();
  for (const n of (await client.list('/api/v1/nodes', {}, 500, signal)).items as unknown as NodeLike[]) nodes.set(n.metadata.name, n);
  const out: AgentNode[] = [];
  for (const p of pods.items as unknown as PodLike[]) {
    const node = p.spec?.nodeName;
    if (!node) continue;
    const ready = podReady(p);
    const n = nodes.get(node);
    const address = n && nodeAddress(n, addressType);
    out.push({ node, ready, ...(address ? { address } : {}) });
  }
  out.sort((a, b) => a.node.localeCompare(b.node));
  return { ready: ds.status?.numberReady ?? 0, total: ds.status?.desiredNumberScheduled ?? 0, nodes: out };
}

const configMapPath = (ns: string) => `/api/v1/namespaces/${encodeURIComponent(ns)}/configmaps/${AGENT_CONFIGMAP}`;

/** Lets the agent on `node` forward to address (host:port) for operation opId. */
export async function registerTarget(client: KubeClient, namespace: string, opId: string, node: string, address: string, signal?: AbortSignal): Promise<void> {
  // A merge patch of one key: concurrent transfers never overwrite each other's entries.
  await client.request('PATCH', `${configMapPath(namespace)}?fieldManager=dr-syncer-transfer`, { data: { [targetKey(opId)]: targetEntry(node, address) } }, 'application/merge-patch+json', signal);
}

export async function unregisterTargets(client: KubeClient, namespace: string, opIds: string[], signal?: AbortSignal): Promise<void> {
  if (opIds.length === 0) return;
  const data: Record<string, null> = {};
  for (const id of opIds) data[targetKey(id)] = null;
  try {
    await client.request('PATCH', `${configMapPath(namespace)}?fieldManager=dr-syncer-transfer`, { data }, 'application/merge-patch+json', signal);
  } catch (err) {
    if (!(err instanceof KubeApiError && err.status === 404)) throw err;
  }
}

/** Operation ids that have a target registered. */
export async function registeredTargets(client: KubeClient, namespace: string, signal?: AbortSignal): Promise<string[]> {
  try {
    const cm = await client.get<{ data?: Record<string, string> }>(configMapPath(namespace), signal);
    return Object.keys(cm.data ?? {}).filter((k) => k.startsWith(TARGET_KEY_PREFIX)).map((k) => k.slice(TARGET_KEY_PREFIX.length));
  } catch (err) {
    if (err instanceof KubeApiError && err.status === 404) return [];
    throw err;
  }
}

export const DEFAULT_AGENT_NAMESPACE = 'dr-syncer-agent';
/** The agent image released with this version of the controller. */
export const DEFAULT_AGENT_IMAGE = 'ghcr.io/dr-syncer/dr-syncer-agent:latest';
export const DEFAULT_AGENT_PORT = 2222;
export const DEFAULT_KEY_ROTATION = '720h';

/** What the controller knows about the agent image and pods, from its flags. */
export interface AgentDefaults {
  image: string;
  imagePullPolicy?: string;
  podEnv?: AgentSettings['podEnv'];
  /**
   * Per cluster (the site's name: RemoteCluster or --cluster-name), instead of podEnv: for test
   * clusters that run agents in more than one cluster, each with its own API server address.
   */
  podEnvFor?: (site: string) => AgentSettings['podEnv'] | undefined;
}

export interface PvcSyncFields {
  namespace?: string;
  image?: string;
  imagePullPolicy?: string;
  sshPort?: number;
  agentAddress?: AddressType;
  nodeSelector?: Record<string, string>;
  tolerations?: object[];
  resources?: object;
}

/** The agent settings of a source cluster: its RemoteCluster's spec.pvcSync over the controller's defaults. */
export function agentSettingsFor(p: PvcSyncFields, defaults: AgentDefaults, site?: string): AgentSettings & { addressType: AddressType } {
  const pullPolicy = p.imagePullPolicy ?? defaults.imagePullPolicy;
  const podEnv = (site !== undefined ? defaults.podEnvFor?.(site) : undefined) ?? defaults.podEnv;
  return {
    namespace: p.namespace ?? DEFAULT_AGENT_NAMESPACE,
    image: p.image ?? defaults.image,
    ...(pullPolicy ? { imagePullPolicy: pullPolicy } : {}),
    sshPort: p.sshPort ?? DEFAULT_AGENT_PORT,
    addressType: p.agentAddress ?? 'InternalIP',
    ...(p.nodeSelector ? { nodeSelector: p.nodeSelector } : {}),
    ...(p.tolerations ? { tolerations: p.tolerations as Record<string, unknown>[] } : {}),
    ...(p.resources ? { resources: p.resources as Record<string, unknown> } : {}),
    ...(podEnv ? { podEnv } : {}),
  };
}
