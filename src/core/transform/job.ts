// Jobs: the API server generates a selector and controller-uid labels from the Job's UID. Left
// in place they name a UID that does not exist in DR and the Job is rejected.
import type { KubeObject } from '../types.ts';
import { isRecord } from '../types.ts';

const UID_LABELS = ['controller-uid', 'batch.kubernetes.io/controller-uid'];

function withoutUidLabels(labels: unknown): Record<string, string> | undefined {
  if (!isRecord(labels)) return undefined;
  const out = { ...(labels as Record<string, string>) };
  for (const l of UID_LABELS) delete out[l];
  return Object.keys(out).length ? out : undefined;
}

export function prepareJob(obj: KubeObject): KubeObject {
  if (obj.kind !== 'Job' || !obj.apiVersion.startsWith('batch/') || !isRecord(obj.spec)) return obj;
  const spec = { ...obj.spec };
  if (spec.manualSelector !== true) delete spec.selector;
  const metadata = { ...obj.metadata };
  const l = withoutUidLabels(metadata.labels);
  if (l) metadata.labels = l;
  else delete metadata.labels;
  if (isRecord(spec.template) && isRecord(spec.template.metadata)) {
    const tmd = { ...spec.template.metadata };
    const tl = withoutUidLabels(tmd.labels);
    if (tl) tmd.labels = tl;
    else delete tmd.labels;
    spec.template = { ...spec.template, metadata: tmd };
  }
  return { ...obj, metadata, spec };
}

/** ServiceAccounts: token Secret references are issued per cluster. */
export function prepareServiceAccount(obj: KubeObject): KubeObject {
  if (obj.apiVersion !== 'v1' || obj.kind !== 'ServiceAccount') return obj;
  const { secrets: _secrets, ...rest } = obj;
  return rest as KubeObject;
}
