// PersistentVolumeClaims: the claim must bind to a new volume in DR, so binding fields go and
// storage classes / access modes are mapped to what the DR cluster offers.
import type { KubeObject } from '../types.ts';
import { isRecord } from '../types.ts';

export const STORAGE_CLASS_LABEL = 'dr-syncer.io/storage-class';

export interface Mapping {
  from: string;
  to: string;
}

export interface PvcOptions {
  storageClassMappings?: Mapping[];
  accessModeMappings?: Mapping[];
  /** Keep selector, dataSource and dataSourceRef (they name source-cluster objects). */
  preserveVolumeAttributes?: boolean;
}

/**
 * A claim's spec as the DR cluster needs it: no binding to a source volume, storage class and
 * access modes mapped. One rule for standalone claims and StatefulSet volumeClaimTemplates, so a
 * StatefulSet scaled up in DR asks for a class that exists there.
 */
function mapClaimSpec(source: Record<string, unknown>, classOverride: string | undefined, opts: PvcOptions): Record<string, unknown> {
  const spec = { ...source };
  delete spec.volumeName;
  if (!opts.preserveVolumeAttributes) {
    delete spec.selector;
    delete spec.dataSource;
    delete spec.dataSourceRef;
  }
  if (classOverride) {
    spec.storageClassName = classOverride;
  } else if (typeof spec.storageClassName === 'string') {
    const m = opts.storageClassMappings?.find((x) => x.from === spec.storageClassName);
    if (m) spec.storageClassName = m.to;
  }
  if (Array.isArray(spec.accessModes) && opts.accessModeMappings?.length) {
    const mapped = spec.accessModes.map((mode: unknown) => opts.accessModeMappings!.find((x) => x.from === mode)?.to ?? mode);
    spec.accessModes = [...new Set(mapped)];
  }
  return spec;
}

export function preparePvc(obj: KubeObject, opts: PvcOptions): KubeObject {
  if (obj.apiVersion !== 'v1' || obj.kind !== 'PersistentVolumeClaim' || !isRecord(obj.spec)) return obj;
  return { ...obj, spec: mapClaimSpec(obj.spec, obj.metadata.labels?.[STORAGE_CLASS_LABEL], opts) };
}

/** StatefulSet claim templates: mapped like claims; the `status` the API server adds is dropped. */
export function prepareClaimTemplates(obj: KubeObject, opts: PvcOptions): KubeObject {
  if (obj.apiVersion !== 'apps/v1' || obj.kind !== 'StatefulSet' || !isRecord(obj.spec) || !Array.isArray(obj.spec.volumeClaimTemplates)) return obj;
  const volumeClaimTemplates = obj.spec.volumeClaimTemplates.map((t: unknown) => {
    if (!isRecord(t)) return t;
    const { status: _status, ...rest } = t;
    // The label on the claim template, else on the StatefulSet.
    const own = isRecord(t.metadata) && isRecord(t.metadata.labels) ? t.metadata.labels[STORAGE_CLASS_LABEL] : undefined;
    const override = typeof own === 'string' ? own : obj.metadata.labels?.[STORAGE_CLASS_LABEL];
    return isRecord(rest.spec) ? { ...rest, spec: mapClaimSpec(rest.spec, override, opts) } : rest;
  });
  return { ...obj, spec: { ...obj.spec, volumeClaimTemplates } };
}
