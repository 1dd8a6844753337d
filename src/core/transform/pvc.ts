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

export function preparePvc(obj: KubeObject, opts: PvcOptions): KubeObject {
  if (obj.apiVersion !== 'v1' || obj.kind !== 'PersistentVolumeClaim' || !isRecord(obj.spec)) return obj;
  const spec = { ...obj.spec };
  delete spec.volumeName;
  if (!opts.preserveVolumeAttributes) {
    delete spec.selector;
    delete spec.dataSource;
    delete spec.dataSourceRef;
  }
  const override = obj.metadata.labels?.[STORAGE_CLASS_LABEL];
  if (override) {
    spec.storageClassName = override;
  } else if (typeof spec.storageClassName === 'string') {
    const m = opts.storageClassMappings?.find((x) => x.from === spec.storageClassName);
    if (m) spec.storageClassName = m.to;
  }
  if (Array.isArray(spec.accessModes) && opts.accessModeMappings?.length) {
    const mapped = spec.accessModes.map((mode: unknown) => opts.accessModeMappings!.find((x) => x.from === mode)?.to ?? mode);
    spec.accessModes = [...new Set(mapped)];
  }
  return { ...obj, spec };
}
