// Select: which resource types to read, and which of the listed objects belong in the DR
// repository. Pure: discovery results and object lists come in, decisions come out.
import { matchesSelector } from './labels.ts';
import type { KubeObject, LabelSelector, ResourceType, Skipped } from './types.ts';
import { apiGroupOf, isRecord } from './types.ts';
import { SERVER_ANNOTATIONS } from './transform/metadata.ts';

export const IGNORE_LABEL = 'dr-syncer.io/ignore';
/** Labels the objects of one PVC copy (Jobs, their Secrets, Leases) that dr-syncer creates next to a PVC. */
export const OPERATION_LABEL = 'dr-syncer.io/operation';

/** What `resourceTypes` means when the user does not say: the workload, config, network and RBAC kinds. */
export const DEFAULT_RESOURCE_TYPES: readonly string[] = [
  'configmaps', 'secrets', 'deployments', 'statefulsets', 'daemonsets', 'services', 'ingresses',
  'serviceaccounts', 'roles', 'rolebindings', 'persistentvolumeclaims', 'horizontalpodautoscalers',
  'networkpolicies', 'cronjobs', 'jobs', 'poddisruptionbudgets',
];

/**
 * Types that are never copied, whatever the user asks: they are created by controllers or the
 * API server in the DR cluster itself, or describe runtime state that is meaningless there.
 */
const WHITEOUT_TYPES: ReadonlySet<string> = new Set([
  'pods', 'events', 'events.events.k8s.io', 'endpoints', 'endpointslices.discovery.k8s.io',
  'leases.coordination.k8s.io', 'replicasets.apps', 'controllerrevisions.apps',
  'localsubjectaccessreviews.authorization.k8s.io', 'bindings', 'podtemplates',
  'pods.metrics.k8s.io', 'csistoragecapacities.storage.k8s.io',
]);

export const typeKey = (t: Pick<ResourceType, 'resource' | 'group'>): string => (t.group ? `${t.resource}.${t.group}` : t.resource);

export interface ResolvedTypes {
  types: ResourceType[];
  /** Names in resourceTypes (or excludeResourceTypes) that match nothing the API server serves. */
  unknown: string[];
  /** Default types (resourceTypes not set) that this server does not serve: skipped. */
  missingDefaults: string[];
  /** Requested names that are whiteouts, with the reason. */
  refused: { name: string; reason: string }[];
}

function matchesName(t: ResourceType, name: string): boolean {
  const n = name.toLowerCase();
  const dot = n.indexOf('.');
  if (dot > 0) {
    // "resource.group" (or "kind.group"), as kubectl accepts it.
    const res = n.slice(0, dot);
    const group = n.slice(dot + 1);
    return t.group === group && (t.resource === res || t.singular === res || t.kind.toLowerCase() === res);
  }
  return t.resource === n || t.singular === n || t.kind.toLowerCase() === n || t.shortNames.includes(n);
}

/**
 * Turns `resourceTypes`/`excludeResourceTypes` into concrete API resources. Discovery already
 * lists one (preferred) version per group. A bare name prefers the core group and then the
 * groups in the order discovery listed them, as kubectl does.
 */
export function resolveResourceTypes(requested: readonly string[] | undefined, excluded: readonly string[] | undefined, discovered: readonly ResourceType[]): ResolvedTypes {
  const listable = discovered.filter((t) => t.namespaced && t.verbs.includes('list') && !t.resource.includes('/'));
  const defaults = !requested || requested.length === 0;
  const want = defaults ? DEFAULT_RESOURCE_TYPES : requested;
  const out = new Map<string, ResourceType>();
  const unknown: string[] = [];
  const missingDefaults: string[] = [];
  const refused: { name: string; reason: string }[] = [];
  for (const name of want) {
    if (name === '*') {
      for (const t of listable) if (!WHITEOUT_TYPES.has(typeKey(t))) out.set(typeKey(t), t);
      continue;
    }
    const match = listable.find((t) => matchesName(t, name) && t.group === '') ?? listable.find((t) => matchesName(t, name));
    if (!match) {
      const clusterScoped = discovered.find((t) => !t.namespaced && matchesName(t, name));
      if (clusterScoped) refused.push({ name, reason: `${typeKey(clusterScoped)} is cluster-scoped; only namespaced types are replicated` });
      else if (defaults) missingDefaults.push(name);
      else unknown.push(name);
      continue;
    }
    if (WHITEOUT_TYPES.has(typeKey(match))) {
      refused.push({ name, reason: `${typeKey(match)} is created by the DR cluster itself and is never copied` });
      continue;
    }
    out.set(typeKey(match), match);
  }
  for (const name of excluded ?? []) {
    // A misspelled exclusion would silently copy what the user meant to keep out (Secrets, say).
    if (!discovered.some((t) => matchesName(t, name))) unknown.push(name);
    for (const [k, t] of out) if (matchesName(t, name)) out.delete(k);
  }
  const types = [...out.values()].sort((a, b) => typeKey(a).localeCompare(typeKey(b)));
  return { types, unknown, missingDefaults, refused };
}

export interface SelectOptions {
  labelSelector?: LabelSelector;
}

export interface Selection {
  selected: KubeObject[];
  skipped: Skipped[];
}

/** The reason an object is never copied, or undefined when it may be. */
export function whiteoutReason(obj: KubeObject): string | undefined {
  const { metadata: md, kind } = obj;
  const group = apiGroupOf(obj.apiVersion);
  if ((md.ownerReferences?.length ?? 0) > 0) {
    const o = md.ownerReferences![0]!;
    return `owned by ${o.kind}/${o.name}; its owner is copied instead`;
  }
  if (group === '' && kind === 'Secret' && obj.type === 'kubernetes.io/service-account-token') {
    return 'service-account token; the DR cluster issues its own';
  }
  if (group === '' && kind === 'ServiceAccount' && md.name === 'default' && !customizedServiceAccount(obj)) {
    return 'the default ServiceAccount exists in every namespace';
  }
  if (group === '' && kind === 'ConfigMap' && md.name === 'kube-root-ca.crt') return 'published by the DR cluster itself';
  // A copy's rsync Job sits in the application's namespace while it runs: never in Git.
  if (md.labels?.[OPERATION_LABEL] !== undefined) return "dr-syncer's own PVC copy, there only while it runs";
  return undefined;
}

/**
 * Whether a ServiceAccount carries settings a user made (image pull secrets, token mounting,
 * labels, annotations): a customised `default` ServiceAccount is copied, or private images stop
 * pulling in DR.
 */
function customizedServiceAccount(sa: KubeObject): boolean {
  // Platforms add their own: OpenShift annotates every ServiceAccount and gives it a generated
  // "<name>-dockercfg-*" pull secret, which does not exist in the DR cluster.
  const userAnnotations = Object.keys(sa.metadata.annotations ?? {}).filter((a) => !SERVER_ANNOTATIONS.includes(a) && !a.startsWith('openshift.io/'));
  const pullSecrets = Array.isArray(sa.imagePullSecrets)
    ? sa.imagePullSecrets.filter((p: unknown) => !(isRecord(p) && typeof p.name === 'string' && p.name.startsWith(`${sa.metadata.name}-dockercfg-`)))
    : [];
  return pullSecrets.length > 0 ||
    sa.automountServiceAccountToken !== undefined ||
    Object.keys(sa.metadata.labels ?? {}).length > 0 ||
    userAnnotations.length > 0;
}

export function selectObjects(objects: readonly KubeObject[], opts: SelectOptions = {}): Selection {
  const selected: KubeObject[] = [];
  const skipped: Skipped[] = [];
  for (const obj of objects) {
    const skip = (reason: string) =>
      skipped.push({ kind: obj.kind, namespace: obj.metadata.namespace ?? '', name: obj.metadata.name, reason });
    if (obj.metadata.labels?.[IGNORE_LABEL] === 'true') {
      skip(`labelled ${IGNORE_LABEL}=true`);
      continue;
    }
    const why = whiteoutReason(obj);
    if (why) {
      skip(why);
      continue;
    }
    if (!matchesSelector(obj.metadata.labels, opts.labelSelector)) {
      skip('does not match spec.labelSelector');
      continue;
    }
    selected.push(obj);
  }
  return { selected, skipped };
}

function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) cur[j] = Math.min(prev[j]! + 1, cur[j - 1]! + 1, prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    prev = cur;
  }
  return prev[b.length]!;
}

/** The served type a misspelled name most likely meant ("servcies" → "services"), if any is close. */
export function suggestType(name: string, discovered: readonly ResourceType[]): string | undefined {
  const n = name.toLowerCase();
  let best: { key: string; d: number } | undefined;
  for (const t of discovered) {
    if (!t.namespaced) continue;
    for (const candidate of [t.resource, t.kind.toLowerCase(), typeKey(t)]) {
      const d = editDistance(n, candidate);
      if (d <= Math.max(1, Math.floor(candidate.length / 4)) && (!best || d < best.d)) best = { key: typeKey(t), d };
    }
  }
  return best?.key;
}
