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

export interface NamespacePlan {
  sourceNamespace: string;
  destinationNamespace: string;
  objects: KubeObject[];
  /** Secrets to seal (mode SOPS) before rendering; already transformed. */
  secrets: KubeObject[];
  skipped: Skipped[];
  errors: ObjectError[];
}

export const isSecret = (o: KubeObject): boolean => apiGroupOf(o.apiVersion) === '' && o.kind === 'Secret';

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
  previous: (obj: KubeObject) => KubeObject | undefined = () => undefined,
): NamespacePlan {
  const { selected, skipped } = selectObjects(listed, opts);
  const objects: KubeObject[] = [];
  const secrets: KubeObject[] = [];
  const errors: ObjectError[] = [];
  const tOpts: TransformOptions = { ...opts, sourceNamespace, destinationNamespace };
  for (const obj of selected) {
    if (isSecret(obj) && opts.secretsMode === 'Omit') {
      skipped.push({ kind: 'Secret', namespace: sourceNamespace, name: obj.metadata.name, reason: 'secrets.mode is Omit' });
      continue;
    }
    const dest = { ...obj, metadata: { ...obj.metadata, namespace: destinationNamespace } };
    const res = transformObject(obj, tOpts, previous(dest));
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
    else objects.push(res.object);
  }
  return { sourceNamespace, destinationNamespace, objects, secrets, skipped, errors };
}

/** Objects per kind ("Deployment.apps": 3), sorted, for status and summaries. */
export function countByKind(objects: Iterable<KubeObject>): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const o of objects) counts[groupKind(o)] = (counts[groupKind(o)] ?? 0) + 1;
  return Object.fromEntries(Object.entries(counts).sort(([a], [b]) => a.localeCompare(b)));
}
