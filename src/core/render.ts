// Render: transformed objects become files of the DR repository. Layout, for spec.git.path P:
//   P/kustomization.yaml                      lists every namespace folder under P
//   P/<ns>/kustomization.yaml                 lists the files of the folder
//   P/<ns>/namespace.yaml                     the Namespace, marked with its owner
//   P/<ns>/<kind>[.<group>]-<name>.yaml       one file per object
// so an Argo CD Application or a Flux Kustomization can point at P.
import type { KubeObject } from './types.ts';
import { apiGroupOf } from './types.ts';
import { toYaml } from './yaml.ts';
import { LAST_APPLIED } from './transform/metadata.ts';

export const MANAGED_BY_LABEL = 'dr-syncer.io/managed-by';
export const SOURCE_NAMESPACE_LABEL = 'dr-syncer.io/source-namespace';
export const REPLICATION_ANNOTATION = 'dr-syncer.io/replication';
export const SOURCE_CLUSTER_ANNOTATION = 'dr-syncer.io/source-cluster';
/**
 * Deleting a namespace or a claim in the source must never delete the DR copy of its data. Argo CD
 * counts a kept object that left Git as "requires pruning" and shows the whole Application
 * OutOfSync for it, for good: IgnoreExtraneous leaves it out of the comparison (only when it is
 * extraneous; while it is in Git it is compared as usual).
 */
const PRUNE_PROTECTION = {
  'kustomize.toolkit.fluxcd.io/prune': 'disabled',
  'argocd.argoproj.io/sync-options': 'Prune=false',
  'argocd.argoproj.io/compare-options': 'IgnoreExtraneous',
};
const PROTECTED_KINDS = new Set(['Namespace', 'PersistentVolumeClaim']);
/**
 * A StatefulSet's volumeClaimTemplates cannot change in place, so a new storage-class mapping
 * would fail the apply: Flux recreates the object instead (in DR it runs at 0 replicas; claims
 * stay). Argo CD users set Replace/Force themselves (it would recreate on every sync).
 */
const RECREATE_ON_IMMUTABLE = { 'kustomize.toolkit.fluxcd.io/force': 'enabled' };

export const KUSTOMIZATION = 'kustomization.yaml';
export const NAMESPACE_FILE = 'namespace.yaml';

/** Labels the API server sets on every namespace; they follow the DR name instead. */
const NAMESPACE_SERVER_LABELS = ['kubernetes.io/metadata.name'];

export interface Owner {
  /** "<namespace>/<name>" of the Replication. */
  replication: string;
  sourceCluster: string;
}

export interface NamespaceInput {
  sourceNamespace: string;
  destinationNamespace: string;
  /** The source Namespace object, for its labels and annotations (absent if it could not be read). */
  source?: KubeObject;
  /** Already transformed objects, all in destinationNamespace. */
  objects: KubeObject[];
  /** Files written before and kept as they are, by blob id: file → oid (core/plan.ts ReusedFile). */
  reused?: ReadonlyMap<string, string>;
}

export function normalizeRepoPath(p: string | undefined): string {
  return (p ?? '').split('/').filter((s) => s !== '' && s !== '.').join('/');
}

export const joinPath = (...parts: string[]): string => parts.filter((p) => p !== '').join('/');

export function objectFileName(obj: { apiVersion: string; kind: string; metadata: { name: string } }): string {
  const g = apiGroupOf(obj.apiVersion);
  return `${obj.kind.toLowerCase()}${g ? `.${g}` : ''}-${obj.metadata.name}.yaml`;
}

export function namespaceObject(ns: NamespaceInput, owner: Owner): KubeObject {
  const labels: Record<string, string> = { ...(ns.source?.metadata.labels ?? {}) };
  for (const l of NAMESPACE_SERVER_LABELS) delete labels[l];
  labels[MANAGED_BY_LABEL] = 'dr-syncer';
  labels[SOURCE_NAMESPACE_LABEL] = ns.sourceNamespace;
  const annotations: Record<string, string> = { ...(ns.source?.metadata.annotations ?? {}) };
  delete annotations[LAST_APPLIED];
  Object.assign(annotations, PRUNE_PROTECTION, {
    [REPLICATION_ANNOTATION]: owner.replication,
    [SOURCE_CLUSTER_ANNOTATION]: owner.sourceCluster,
  });
  return { apiVersion: 'v1', kind: 'Namespace', metadata: { name: ns.destinationNamespace, labels, annotations } };
}

export function kustomization(resources: string[]): string {
  return toYaml({ apiVersion: 'kustomize.config.k8s.io/v1beta1', kind: 'Kustomization', resources: [...resources].sort() });
}

/** Annotations for the GitOps tools: prune protection, recreation of StatefulSets. */
function gitopsAnnotations(obj: KubeObject): KubeObject {
  const group = apiGroupOf(obj.apiVersion);
  const extra = PROTECTED_KINDS.has(obj.kind) && group === '' ? PRUNE_PROTECTION : obj.kind === 'StatefulSet' && group === 'apps' ? RECREATE_ON_IMMUTABLE : undefined;
  if (!extra) return obj;
  return { ...obj, metadata: { ...obj.metadata, annotations: { ...(obj.metadata.annotations ?? {}), ...extra } } };
}

export interface RenderedFolder {
  /** Folder path inside the repository, e.g. "clusters/dr/shop". */
  folder: string;
  /** File name → content. */
  files: Map<string, string>;
  /** File name → blob id, for files taken as they are rather than rendered (NamespaceInput.reused;
   * a sync adds the previous files it keeps). */
  unchanged: Map<string, string>;
}

export class RenderError extends Error {}

/** Renders one destination namespace folder. Throws RenderError on two objects mapping to one file. */
export function renderNamespace(basePath: string, ns: NamespaceInput, owner: Owner): RenderedFolder {
  const files = new Map<string, string>();
  const unchanged = new Map(ns.reused);
  files.set(NAMESPACE_FILE, toYaml(namespaceObject(ns, owner)));
  // In file name order (the order of the duplicate check), each name computed once.
  const named = ns.objects.map((obj) => ({ name: objectFileName(obj), obj })).sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  for (const { name, obj } of named) {
    if (files.has(name) || unchanged.has(name)) throw new RenderError(`two objects render to ${ns.destinationNamespace}/${name}; rename one or exclude its type`);
    files.set(name, toYaml(gitopsAnnotations(obj)));
  }
  files.set(KUSTOMIZATION, kustomization([...files.keys(), ...unchanged.keys()]));
  return { folder: joinPath(basePath, ns.destinationNamespace), files, unchanged };
}

/** The kustomization at the base path lists every namespace folder that has one. */
export function renderRootKustomization(namespaceFolders: string[]): string {
  return kustomization(namespaceFolders.map((f) => `${f}`));
}
