// Workloads must exist in DR but not run: Deployments and StatefulSets are scaled to zero,
// CronJobs and Jobs suspended. The source state is kept in annotations so a failover commit can
// restore it without reading the (possibly lost) source cluster.
import type { KubeObject } from '../types.ts';
import { apiGroupOf, isRecord } from '../types.ts';
import { setAnnotation } from './metadata.ts';

export const ORIGINAL_REPLICAS = 'dr-syncer.io/original-replicas';
export const SCALE_OVERRIDE = 'dr-syncer.io/scale-override';
export const ORIGINAL_SUSPEND = 'dr-syncer.io/original-suspend';


function nonZeroCount(v: string | undefined): number | undefined {
  if (v === undefined || !/^\d+$/.test(v)) return undefined;
  const n = Number(v);
  return n > 0 ? n : undefined;
}

// (The kind first: this runs several times for every object synced.)
const isScalable = (obj: KubeObject): boolean => (obj.kind === 'Deployment' || obj.kind === 'StatefulSet') && apiGroupOf(obj.apiVersion) === 'apps' && isRecord(obj.spec);

/** Whether scaleWorkload reads the object's last DR rendering: a workload the source has at 0. */
export const readsLastRendering = (obj: KubeObject): boolean => isScalable(obj) && (obj.spec as Record<string, unknown>).replicas === 0;

/**
 * Replicas in DR. The source count (missing means 1) is remembered in ORIGINAL_REPLICAS; when the
 * source is at 0 (for example scaled down during a failover) a non-zero count remembered before,
 * on the source object or in the last DR rendering, is kept rather than overwritten with 0.
 */
export function scaleWorkload(obj: KubeObject, scaleToZero: boolean, previous?: KubeObject): KubeObject {
  if (!isScalable(obj)) return obj;
  const spec = { ...(obj.spec as Record<string, unknown>) };
  const out: KubeObject = { ...obj, metadata: { ...obj.metadata }, spec };
  const sourceReplicas = typeof spec.replicas === 'number' ? spec.replicas : 1;
  const remembered = !readsLastRendering(obj)
    ? sourceReplicas
    : (nonZeroCount(obj.metadata.annotations?.[ORIGINAL_REPLICAS]) ??
        nonZeroCount(previous?.metadata.annotations?.[ORIGINAL_REPLICAS]) ??
        0);
  setAnnotation(out, ORIGINAL_REPLICAS, String(remembered));

  const override = obj.metadata.labels?.[SCALE_OVERRIDE];
  if (override !== undefined) {
    // An integer sets the DR count; any other value keeps the source count.
    spec.replicas = /^\d+$/.test(override) ? Number(override) : sourceReplicas;
  } else {
    spec.replicas = scaleToZero ? 0 : sourceReplicas;
  }
  return out;
}

/** CronJobs and standalone Jobs must not fire in the DR cluster until failover. */
export function suspendBatch(obj: KubeObject, scaleToZero: boolean): KubeObject {
  if (!scaleToZero || !obj.apiVersion.startsWith('batch/') || !isRecord(obj.spec)) return obj;
  if (obj.kind !== 'CronJob' && obj.kind !== 'Job') return obj;
  const out: KubeObject = { ...obj, metadata: { ...obj.metadata }, spec: { ...obj.spec, suspend: true } };
  // Like replicas: a source that is suspended now but remembers being active (a failover's
  // cutover suspended it) keeps the remembered state; so does a second pass over our own output.
  const remembered = obj.metadata.annotations?.[ORIGINAL_SUSPEND];
  const original = obj.spec.suspend !== true ? 'false' : remembered === 'false' ? 'false' : 'true';
  setAnnotation(out, ORIGINAL_SUSPEND, original);
  return out;
}
