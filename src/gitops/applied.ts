// Which DR repository commit the DR cluster runs: what its GitOps tool reports as applied for
// the folder a Replication writes. Flux: the Kustomizations on that folder of a GitRepository with
// the repository's URL and branch (status.lastAppliedRevision). Argo CD: the Applications with a
// source on that repository, branch and folder (the revision of their last successful sync). The
// objects are the ones `dr-syncer bootstrap` makes (templates/flux-bootstrap.yaml,
// templates/argocd-application.yaml), but any object on the same folder counts.
//
// readGitOpsObjects does the I/O (a few LISTs); everything else is pure, for unit tests.
import type { KubeClient } from '../adapters/kube/client.ts';
import { KubeApiError } from '../adapters/kube/client.ts';
import { normalizeRepoPath } from '../core/render.ts';
import { sameRepository } from './repo-url.ts';

export type GitOpsToolName = 'flux' | 'argocd';

export interface DrFolder {
  url: string;
  branch: string;
  path: string;
}

export interface AppliedRevision {
  /** The commit the object reports as applied; undefined when it has not applied anything yet. */
  commit?: string;
  /** "Kustomization ns/name" or "Application ns/name". */
  by: string;
  tool: GitOpsToolName;
}

/** A Kubernetes object as far as it is read here. */
export interface GitOpsObject {
  metadata: { name: string; namespace?: string };
  spec?: Record<string, unknown>;
  status?: Record<string, unknown>;
}

/** The GitOps objects of one DR cluster; a list is undefined when its CRD is not installed. */
export interface GitOpsObjects {
  kustomizations?: GitOpsObject[];
  gitRepositories?: GitOpsObject[];
  applications?: GitOpsObject[];
}

const FLUX_KUSTOMIZATIONS = ['/apis/kustomize.toolkit.fluxcd.io/v1/kustomizations', '/apis/kustomize.toolkit.fluxcd.io/v1beta2/kustomizations'];
const FLUX_GIT_REPOSITORIES = ['/apis/source.toolkit.fluxcd.io/v1/gitrepositories', '/apis/source.toolkit.fluxcd.io/v1beta2/gitrepositories'];
const ARGO_APPLICATIONS = ['/apis/argoproj.io/v1alpha1/applications'];

/** Lists every namespace's objects at the first of `paths` the server serves; undefined when none is (not installed). */
async function listFirst(dr: KubeClient, paths: string[], signal?: AbortSignal): Promise<GitOpsObject[] | undefined> {
  for (const p of paths) {
    try {
      return (await dr.list(p, {}, 500, signal)).items as unknown as GitOpsObject[];
    } catch (err) {
      if (err instanceof KubeApiError && err.status === 404) continue; // CRD (or this version) not installed
      throw err;
    }
  }
  return undefined;
}

/** Flux's and Argo CD's objects in the DR cluster, read in parallel; a missing CRD is "not installed", not an error. */
export async function readGitOpsObjects(dr: KubeClient, signal?: AbortSignal): Promise<GitOpsObjects> {
  const [kustomizations, gitRepositories, applications] = await Promise.all([
    listFirst(dr, FLUX_KUSTOMIZATIONS, signal),
    listFirst(dr, FLUX_GIT_REPOSITORIES, signal),
    listFirst(dr, ARGO_APPLICATIONS, signal),
  ]);
  return { kustomizations, gitRepositories, applications };
}

/**
 * The commit in a Flux revision: "main@sha1:<sha>" (Flux 2.x), "main/<sha>" (before), or a bare
 * "sha1:<sha>" / "<sha>". Undefined for anything else (an OCI digest, a tag without a commit).
 */
export function commitOfRevision(revision: unknown): string | undefined {
  if (typeof revision !== 'string') return undefined;
  const m = /(?:^|[@/:])([0-9a-f]{40}|[0-9a-f]{64})$/.exec(revision.trim());
  return m?.[1];
}

const str = (v: unknown): string | undefined => (typeof v === 'string' ? v : undefined);
const obj = (v: unknown): Record<string, unknown> | undefined => (v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : undefined);
const nameOf = (o: GitOpsObject): string => `${o.metadata.namespace ?? 'default'}/${o.metadata.name}`;
const samePath = (a: unknown, b: string): boolean => typeof a === 'string' && normalizeRepoPath(a) === normalizeRepoPath(b);

/** A GitRepository follows the branch when its ref names it, or names nothing (Flux's default branch). */
function followsBranch(ref: Record<string, unknown> | undefined, branch: string): boolean {
  if (!ref) return true;
  const b = str(ref.branch);
  if (b !== undefined) return b === branch && ref.commit === undefined && ref.tag === undefined && ref.semver === undefined && ref.name === undefined;
  return ref.commit === undefined && ref.tag === undefined && ref.semver === undefined && ref.name === undefined;
}

/** Flux Kustomizations on the folder, with what each has applied. */
export function fluxApplied(objects: GitOpsObjects, folder: DrFolder): AppliedRevision[] {
  const repos = new Map<string, GitOpsObject>();
  for (const r of objects.gitRepositories ?? []) repos.set(nameOf(r), r);
  const out: AppliedRevision[] = [];
  for (const ks of objects.kustomizations ?? []) {
    const spec = ks.spec ?? {};
    const ref = obj(spec.sourceRef);
    if (!ref || (str(ref.kind) ?? 'GitRepository') !== 'GitRepository' || !samePath(spec.path ?? '', folder.path)) continue;
    const repo = repos.get(`${str(ref.namespace) ?? ks.metadata.namespace ?? 'default'}/${str(ref.name) ?? ''}`);
    const url = str(repo?.spec?.url);
    if (!repo || !url || !sameRepository(url, folder.url) || !followsBranch(obj(repo.spec?.ref), folder.branch)) continue;
    out.push({ commit: commitOfRevision(ks.status?.lastAppliedRevision), by: `Kustomization ${nameOf(ks)}`, tool: 'flux' });
  }
  return out;
}

/** Argo CD's revision for a branch: targetRevision the branch, HEAD or empty (the default branch). */
const followsRevision = (targetRevision: unknown, branch: string): boolean => {
  const t = str(targetRevision);
  return t === undefined || t === '' || t === 'HEAD' || t === branch || t === `refs/heads/${branch}`;
};

/**
 * The revisions of an Application's last applied state, per source index: status.sync.revision(s)
 * while it is Synced (the live state is that commit's), otherwise those of the last operation if
 * it Succeeded, otherwise the newest status.history entry (Argo CD records successful syncs only).
 */
function argoRevisions(status: Record<string, unknown> | undefined, multi: boolean): (string | undefined)[] | undefined {
  const pick = (o: Record<string, unknown> | undefined): (string | undefined)[] | undefined => {
    if (!o) return undefined;
    if (multi) {
      const rs = o.revisions;
      return Array.isArray(rs) ? rs.map(str) : undefined;
    }
    const r = str(o.revision);
    return r ? [r] : undefined;
  };
  const sync = obj(status?.sync);
  if (str(sync?.status) === 'Synced') {
    const r = pick(sync);
    if (r) return r;
  }
  const op = obj(status?.operationState);
  if (str(op?.phase) === 'Succeeded') {
    const r = pick(obj(op?.syncResult));
    if (r) return r;
  }
  const history = status?.history;
  if (Array.isArray(history) && history.length > 0) return pick(obj(history[history.length - 1]));
  return undefined;
}

/** Argo CD Applications with a source on the folder, with what each has applied. */
export function argoApplied(objects: GitOpsObjects, folder: DrFolder): AppliedRevision[] {
  const out: AppliedRevision[] = [];
  for (const app of objects.applications ?? []) {
    const spec = app.spec ?? {};
    const multi = Array.isArray(spec.sources) && spec.sources.length > 0;
    const sources = multi ? (spec.sources as unknown[]).map(obj) : [obj(spec.source)];
    const i = sources.findIndex((s) => s && sameRepository(str(s.repoURL) ?? '', folder.url) && samePath(s.path ?? '', folder.path) && followsRevision(s.targetRevision, folder.branch));
    if (i < 0) continue;
    const revision = argoRevisions(app.status, multi)?.[i];
    out.push({ commit: revision && /^[0-9a-f]{40}$|^[0-9a-f]{64}$/.test(revision) ? revision : undefined, by: `Application ${nameOf(app)}`, tool: 'argocd' });
  }
  return out;
}

/** Why no GitOps object was found for the folder, for a reason shown to the user. */
export function notFoundReason(objects: GitOpsObjects, folder: DrFolder): string {
  const where = `${folder.url} (branch ${folder.branch}, path "${normalizeRepoPath(folder.path) || '.'}")`;
  if (objects.kustomizations === undefined && objects.applications === undefined) {
    return `neither Flux (kustomizations.kustomize.toolkit.fluxcd.io) nor Argo CD (applications.argoproj.io) is installed in the DR cluster, so what it runs of ${where} is not known`;
  }
  return `no Flux Kustomization or Argo CD Application in the DR cluster follows ${where}: \`dr-syncer bootstrap flux|argocd <remotecluster>\` makes one`;
}

/**
 * What the DR cluster runs of the folder: of the objects that follow it, the first (Flux before
 * Argo CD, then by name) that has applied a commit, else the first that has not yet; undefined
 * when none follows it.
 */
export function appliedFor(objects: GitOpsObjects, folder: DrFolder): AppliedRevision | undefined {
  const all = [...fluxApplied(objects, folder), ...argoApplied(objects, folder)];
  const order = (a: AppliedRevision, b: AppliedRevision) => (a.tool === b.tool ? a.by.localeCompare(b.by) : a.tool === 'flux' ? -1 : 1);
  all.sort(order);
  return all.find((a) => a.commit !== undefined) ?? all[0];
}

/** appliedFor, reading the DR cluster's objects first. */
export async function appliedRevision(dr: KubeClient, folder: DrFolder, signal?: AbortSignal): Promise<AppliedRevision | undefined> {
  return appliedFor(await readGitOpsObjects(dr, signal), folder);
}
