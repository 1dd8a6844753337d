// Removes what the source API server and its controllers own: identity, bookkeeping and status.
// Applying these to another cluster is at best noise and at worst rejected (managedFields with
// server-side apply) or harmful (ownerReferences to UIDs that do not exist there).
import type { KubeObject } from '../types.ts';
import { isRecord, setOwn } from '../types.ts';

const SERVER_METADATA = [
  'uid', 'resourceVersion', 'generation', 'creationTimestamp', 'managedFields', 'selfLink',
  'ownerReferences', 'finalizers', 'deletionTimestamp', 'deletionGracePeriodSeconds',
] as const;

export const LAST_APPLIED = 'kubectl.kubernetes.io/last-applied-configuration';

/** Annotations written by kubectl or controllers, never by the application's owner. */
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
];

export function stripServerFields(obj: KubeObject): KubeObject {
  const { status: _status, ...rest } = obj;
  const md = { ...rest.metadata };
  for (const f of SERVER_METADATA) delete md[f];
  if (md.generateName !== undefined && md.name) delete md.generateName;
  if (md.annotations) {
    const ann = { ...md.annotations };
    for (const a of SERVER_ANNOTATIONS) delete ann[a];
    if (Object.keys(ann).length === 0) delete md.annotations;
    else md.annotations = ann;
  }
  if (md.labels && Object.keys(md.labels).length === 0) delete md.labels;
  const out: KubeObject = { ...rest, metadata: md };
  if (rest.spec !== undefined) out.spec = withoutNullTimestamps(rest.spec);
  return out;
}

/**
 * Embedded templates (pod, job and claim templates, and those of custom resources) carry
 * `metadata.creationTimestamp: null` from the API server's Go types: noise in every diff.
 * Copies only the parts that change.
 */
function withoutNullTimestamps(v: unknown): unknown {
  if (Array.isArray(v)) {
    const items = v.map(withoutNullTimestamps);
    return items.some((x, i) => x !== v[i]) ? items : v;
  }
  if (!isRecord(v)) return v;
  let out: Record<string, unknown> | undefined;
  for (const [k, child] of Object.entries(v)) {
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
