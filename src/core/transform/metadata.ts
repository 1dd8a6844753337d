// Removes what the source API server and its controllers own: identity, bookkeeping and status.
// Applying these to another cluster is at best noise and at worst rejected (managedFields with
// server-side apply) or harmful (ownerReferences to UIDs that do not exist there).
import type { KubeObject, ObjectMeta } from '../types.ts';
import { isRecord, setOwn } from '../types.ts';

export const SERVER_METADATA = [
  'uid', 'resourceVersion', 'generation', 'creationTimestamp', 'managedFields', 'selfLink',
  'ownerReferences', 'finalizers', 'deletionTimestamp', 'deletionGracePeriodSeconds',
] as const;

export const LAST_APPLIED = 'kubectl.kubernetes.io/last-applied-configuration';

/**
 * On a source workload a failover's cutover scaled down: the Replication whose cutover did
 * ("namespace/name"). A failback restores only its own; never written to the DR repository.
 */
export const SCALED_DOWN_BY = 'dr-syncer.io/scaled-down-by';

/** Annotations written by kubectl or controllers (dr-syncer's cutover too), never by the application's owner. */
export const SERVER_ANNOTATIONS: readonly string[] = [
  LAST_APPLIED,
  'deployment.kubernetes.io/revision',
  'deployment.kubernetes.io/desired-replicas',
  'deployment.kubernetes.io/max-replicas',
  'pv.kubernetes.io/bind-completed',
  'pv.kubernetes.io/bound-by-controller',
  'pv.kubernetes.io/migrated-to',
  'volume.kubernetes.io/selected-node',
  'volume.beta.kubernetes.io/storage-provisioner',
  'volume.kubernetes.io/storage-provisioner',
  'endpoints.kubernetes.io/last-change-trigger-time',
  'kubernetes.io/service-account.uid',
  SCALED_DOWN_BY,
];

const SERVER_METADATA_SET: ReadonlySet<string> = new Set(SERVER_METADATA);
const SERVER_ANNOTATION_SET: ReadonlySet<string> = new Set(SERVER_ANNOTATIONS);

export function stripServerFields(obj: KubeObject): KubeObject {
  // Copied key by key, not spread and then deleted from: `delete` turns a copy into a slow
  // dictionary object, and every later step (and the YAML emitter) reads it again.
  const out = {} as KubeObject;
  for (const k of Object.keys(obj)) {
    if (k === 'status') continue;
    const v = k === 'metadata' ? serverFreeMetadata(obj.metadata) : k === 'spec' ? withoutNullTimestamps(obj.spec) : obj[k];
    if (v !== undefined) setOwn(out, k, v);
  }
  out.metadata ??= {} as ObjectMeta;
  return out;
}

function serverFreeMetadata(src: ObjectMeta): ObjectMeta {
  const md = {} as ObjectMeta;
  for (const k of Object.keys(src)) {
    if (SERVER_METADATA_SET.has(k)) continue;
    if (k === 'generateName' && src.name) continue;
    if (k === 'labels' && src.labels && isEmpty(src.labels)) continue;
    if (k === 'annotations' && src.annotations) {
      const ann = withoutServerAnnotations(src.annotations);
      if (ann) md.annotations = ann;
      continue;
    }
    setOwn(md, k, src[k]);
  }
  return md;
}

/** The annotations less the server's (the same object when it has none of them); undefined when none are left. */
function withoutServerAnnotations(ann: Record<string, string>): Record<string, string> | undefined {
  const keys = Object.keys(ann);
  if (!keys.some((k) => SERVER_ANNOTATION_SET.has(k))) return keys.length ? ann : undefined;
  const out: Record<string, string> = {};
  for (const k of keys) if (!SERVER_ANNOTATION_SET.has(k)) setOwn(out, k, ann[k]);
  return isEmpty(out) ? undefined : out;
}

function isEmpty(o: Record<string, unknown>): boolean {
  for (const _ in o) return false;
  return true;
}

/**
 * Embedded templates (pod, job and claim templates, and those of custom resources) carry
 * `metadata.creationTimestamp: null` from the API server's Go types: noise in every diff.
 * Copies only the parts that change.
 */
function withoutNullTimestamps(v: unknown): unknown {
  if (Array.isArray(v)) {
    let items: unknown[] | undefined;
    for (let i = 0; i < v.length; i++) {
      const next = withoutNullTimestamps(v[i]);
      if (next !== v[i]) (items ??= [...v])[i] = next;
    }
    return items ?? v;
  }
  if (!isRecord(v)) return v;
  let out: Record<string, unknown> | undefined;
  for (const k of Object.keys(v)) {
    const child = v[k];
    if (typeof child !== 'object' || child === null) continue;
    let next = withoutNullTimestamps(child);
    if (k === 'metadata' && isRecord(next) && next.creationTimestamp === null) {
      const { creationTimestamp: _ts, ...md } = next;
      next = md;
    }
    if (next !== child) setOwn((out ??= { ...v }), k, next);
  }
  return out ?? v;
}

export function setAnnotation(obj: KubeObject, key: string, value: string): void {
  obj.metadata.annotations = { ...(obj.metadata.annotations ?? {}), [key]: value };
}
