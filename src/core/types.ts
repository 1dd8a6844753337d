// Plain data shapes shared by the pure core. Objects arrive as JSON from the API server, so
// everything beyond the identifying fields is `unknown` and narrowed where it is used.

export interface ObjectMeta {
  name: string;
  namespace?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  ownerReferences?: { apiVersion: string; kind: string; name: string; uid?: string; controller?: boolean }[];
  [key: string]: unknown;
}

export interface KubeObject {
  apiVersion: string;
  kind: string;
  metadata: ObjectMeta;
  [key: string]: unknown;
}

/** One API resource as discovery reports it (the preferred version of its group). */
export interface ResourceType {
  group: string; // "" for the core group
  version: string;
  resource: string; // plural, e.g. "deployments"
  kind: string;
  singular: string;
  shortNames: string[];
  namespaced: boolean;
  verbs: string[];
}

export interface LabelSelector {
  matchLabels?: Record<string, string>;
  matchExpressions?: { key: string; operator: 'In' | 'NotIn' | 'Exists' | 'DoesNotExist'; values?: string[] }[];
}

/** Why an object was not written to the DR repository. */
export interface Skipped {
  kind: string;
  namespace: string;
  name: string;
  reason: string;
}

export const apiGroupOf = (apiVersion: string): string => (apiVersion.includes('/') ? apiVersion.split('/')[0]! : '');

/** "Deployment.apps" or "ConfigMap": how kinds are named in status, logs and commit messages. */
export const groupKind = (obj: { apiVersion: string; kind: string }): string => {
  const g = apiGroupOf(obj.apiVersion);
  return g === '' ? obj.kind : `${obj.kind}.${g}`;
};

export const objectRef = (obj: KubeObject): string =>
  `${groupKind(obj)} ${obj.metadata.namespace ? `${obj.metadata.namespace}/` : ''}${obj.metadata.name}`;

export function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/**
 * Sets an own property, also for the key "__proto__" (a valid ConfigMap or Secret key), which a
 * plain assignment would turn into a prototype change, silently dropping the data.
 */
export function setOwn(obj: Record<string, unknown>, key: string, value: unknown): void {
  // Only that key needs defineProperty (about 20x slower, and this runs for every key of every object).
  if (key === '__proto__') Object.defineProperty(obj, key, { value, enumerable: true, writable: true, configurable: true });
  else obj[key] = value;
}

/** Deep copy of JSON data. Transforms never mutate their input. */
export function cloneJson<T>(v: T): T {
  return structuredClone(v);
}
