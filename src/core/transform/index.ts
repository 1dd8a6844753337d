// The transform pipeline: one pure function per concern, applied in a fixed order. User patches
// run last so they can override anything dr-syncer decided.
import type { KubeObject } from '../types.ts';
import { prepareJob, prepareServiceAccount } from './job.ts';
import { stripServerFields } from './metadata.ts';
import { mapNamespace } from './namespace.ts';
import type { UserTransform } from './patches.ts';
import { applyUserTransforms } from './patches.ts';
import type { PvcOptions } from './pvc.ts';
import { prepareClaimTemplates, preparePvc } from './pvc.ts';
import { prepareService } from './service.ts';
import { scaleWorkload, suspendBatch } from './workloads.ts';

export interface TransformOptions {
  sourceNamespace: string;
  destinationNamespace: string;
  scaleToZero: boolean;
  pvc: PvcOptions;
  transforms?: UserTransform[];
}

export type TransformResult = { ok: true; object: KubeObject } | { ok: false; error: string };

/** `previous` is the same object as last written to the DR repository, if any. */
export function transformObject(obj: KubeObject, opts: TransformOptions, previous?: KubeObject): TransformResult {
  let o = stripServerFields(obj);
  o = mapNamespace(o, opts.sourceNamespace, opts.destinationNamespace);
  o = scaleWorkload(o, opts.scaleToZero, previous);
  o = suspendBatch(o, opts.scaleToZero);
  o = prepareService(o, obj.metadata.managedFields);
  o = preparePvc(o, opts.pvc);
  o = prepareClaimTemplates(o, opts.pvc);
  o = prepareJob(o);
  o = prepareServiceAccount(o);
  return applyUserTransforms(o, opts.transforms);
}

export { stripServerFields } from './metadata.ts';
export type { UserTransform, PatchOp } from './patches.ts';
export type { PvcOptions, Mapping } from './pvc.ts';
export { ORIGINAL_REPLICAS, SCALE_OVERRIDE, ORIGINAL_SUSPEND, readsLastRendering } from './workloads.ts';
export { STORAGE_CLASS_LABEL } from './pvc.ts';
