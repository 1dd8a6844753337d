// One namespace through the pure pipeline: select → transform, with counts and reasons for
// everything that is not written. Rendering and secret sealing happen after this step.
import type { SelectOptions } from './select.ts';
import { selectObjects } from './select.ts';
import type { TransformOptions } from './transform/index.ts';
import { transformObject } from './transform/index.ts';
import type { KubeObject, Skipped } from './types.ts';
import { apiGroupOf, groupKind, objectRef } from './types.ts';
import { objectFileName } from './render.ts';
import { unreadableByGitOps } from './yaml.ts';

export type SecretsMode = 'Omit' | 'SOPS' | 'Plaintext';

export interface PlanOptions extends SelectOptions, Omit<TransformOptions, 'sourceNamespace' | 'destinationNamespace'> {
  secretsMode: SecretsMode;
}

export interface ObjectError {
  ref: string;
  /** The file this object renders to, so the last good version can be kept. */
  file: string;
  message: string;
}

/** A file kept as the last sync rendered it: its object has not changed since (sync/render-cache.ts). */
export interface ReusedFile {
  file: string;
  oid: string;
  /** The rendered object's group and kind ("Deployment.apps"), for the counts. */
  kind: string;
}

export interface NamespacePlan {
  sourceNamespace: string;
  destinationNamespace: string;
  objects: KubeObject[];
  /** The listed object each of `objects` was transformed from. */
  sourceOf: Map<KubeObject, KubeObject>;
  /** Files of selected objects that `reuse` said are unchanged: file → blob id (not transformed again). */
  reused: Map<string, string>;
  /** Objects to be written per kind, `objects`, `secrets` and `reused` together ("Deployment.apps": 3), sorted. */
  counts: Record<string, number>;
  /** Secrets to seal (mode SOPS) before rendering; already transformed. */
  secrets: KubeObject[];
  skipped: Skipped[];
  errors: ObjectError[];
}

export const isSecret = (o: KubeObject): boolean => o.kind === 'Secret' && apiGroupOf(o.apiVersion) === '';

/**
 * Secrets are never read when none are written (mode Omit): not listed, not watched, not held in
 * memory, and no Secret access is needed (the Helm chart grants none by default).
 */
export const readsType = (mode: SecretsMode, t: { group: string; resource: string }): boolean => !(mode === 'Omit' && t.group === '' && t.resource === 'secrets');

export function planNamespace(
  listed: readonly KubeObject[],
  sourceNamespace: string,
  destinationNamespace: string,
  opts: PlanOptions,
  previous?: (obj: KubeObject) => KubeObject | undefined,
  reuse: (obj: KubeObject) => ReusedFile | undefined = () => undefined,
): NamespacePlan {
  const { selected, skipped } = selectObjects(listed, opts);
  const objects: KubeObject[] = [];
  const sourceOf = new Map<KubeObject, KubeObject>();
  const reused = new Map<string, string>();
  const reusedKinds: string[] = [];
  const secrets: KubeObject[] = [];
  const errors: ObjectError[] = [];
  const tOpts: TransformOptions = { ...opts, sourceNamespace, destinationNamespace };
  for (const obj of selected) {
    if (isSecret(obj) && opts.secretsMode === 'Omit') {
      skipped.push({ kind: 'Secret', namespace: sourceNamespace, name: obj.metadata.name, reason: 'secrets.mode is Omit' });
      continue;
    }
    const kept = reuse(obj);
    if (kept) {
      reused.set(kept.file, kept.oid);
      reusedKinds.push(kept.kind);
      continue;
    }
    const prev = previous?.({ ...obj, metadata: { ...obj.metadata, namespace: destinationNamespace } });
    const res = transformObject(obj, tOpts, prev);
    if (!res.ok) {
      errors.push({ ref: objectRef(obj), file: objectFileName(obj), message: res.error });
      continue;
    }
    const unreadable = unreadableByGitOps(res.object);
    if (unreadable) {
      errors.push({
        ref: objectRef(obj), file: objectFileName(obj),
        message: `${objectRef(obj)}: ${unreadable} holds a DEL or C1 control character, which kustomize (Flux, Argo CD) cannot carry unchanged; the object is not written (its last good file is kept)`,
      });
      continue;
    }
    if (isSecret(res.object) && opts.secretsMode === 'SOPS') secrets.push(res.object);
    else {
      objects.push(res.object);
      sourceOf.set(res.object, obj);
    }
  }
  // Secrets to seal are written too, one file each.
  const counts = countKinds([...objects, ...secrets].map(groupKind).concat(reusedKinds));
  return { sourceNamespace, destinationNamespace, objects, sourceOf, reused, counts, secrets, skipped, errors };
}

/** Objects per kind ("Deployment.apps": 3), sorted, for status and summaries. */
function countKinds(kinds: Iterable<string>): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const k of kinds) counts[k] = (counts[k] ?? 0) + 1;
  return Object.fromEntries(Object.entries(counts).sort(([a], [b]) => a.localeCompare(b)));
}
