// User transforms: RFC 6902 JSON patches on the objects a target selects. A patch that does not
// apply is reported with the object and the operation; it never throws past this function.
import fastJsonPatch from 'fast-json-patch';
import type { Operation } from 'fast-json-patch';
import { matchesSelector } from '../labels.ts';
import type { KubeObject, LabelSelector } from '../types.ts';
import { cloneJson, objectRef } from '../types.ts';

export interface PatchOp {
  op: 'add' | 'remove' | 'replace' | 'move' | 'copy' | 'test';
  path: string;
  from?: string;
  value?: unknown;
}

export interface UserTransform {
  target?: { kind?: string; name?: string; labelSelector?: LabelSelector };
  patch: PatchOp[];
}

export type PatchResult = { ok: true; object: KubeObject } | { ok: false; error: string };

export function targets(t: UserTransform, obj: KubeObject): boolean {
  const tg = t.target ?? {};
  if (tg.kind && tg.kind !== obj.kind) return false;
  if (tg.name && tg.name !== obj.metadata.name) return false;
  return matchesSelector(obj.metadata.labels, tg.labelSelector);
}

export function applyUserTransforms(obj: KubeObject, transforms: readonly UserTransform[] | undefined): PatchResult {
  let current = obj;
  for (const [ti, t] of (transforms ?? []).entries()) {
    if (!targets(t, current)) continue;
    for (const [oi, op] of t.patch.entries()) {
      try {
        const doc = cloneJson(current);
        // validateOperation=true makes a bad path or a failed `test` throw instead of passing silently.
        const res = fastJsonPatch.applyOperation(doc, op as Operation, true, true, false);
        current = res.newDocument as KubeObject;
      } catch (err) {
        const reason = err instanceof Error ? err.message.split('\n')[0] : String(err);
        return {
          ok: false,
          error: `spec.transforms[${ti}].patch[${oi}] (${op.op} ${op.path}) failed on ${objectRef(obj)}: ${reason}`,
        };
      }
    }
  }
  if (!current || typeof current.kind !== 'string' || typeof current.metadata?.name !== 'string') {
    return { ok: false, error: `spec.transforms left ${objectRef(obj)} without kind or metadata.name` };
  }
  return { ok: true, object: current };
}
