// One sync of one Replication: read the source (kube adapter), run the pure core, write the DR
// repository (git adapter). The CLI's `sync` command and the controller both call runSync.
import { parse as parseYaml } from 'yaml';
import type { Author, GitRepo, Snapshot, TreeEntry } from '../adapters/git/repo.ts';
import { PushConflictError } from '../adapters/git/repo.ts';
import type { KubeClient } from '../adapters/kube/client.ts';
import type { Discovery } from '../adapters/kube/client.ts';
import { KubeApiError, resourcePath } from '../adapters/kube/client.ts';
import { commitMessage, diffFiles } from '../core/commit.ts';
import type { FileDiff } from '../core/commit.ts';
import type { FileChange } from '../core/patch.ts';
import { selectorToQuery } from '../core/labels.ts';
import type { NamespacePlan, ObjectError, PlanOptions } from '../core/plan.ts';
import { countByKind, planNamespace, readsType } from '../core/plan.ts';
import type { Owner } from '../core/render.ts';
import {
  joinPath, KUSTOMIZATION, kustomization, NAMESPACE_FILE, normalizeRepoPath, objectFileName, REPLICATION_ANNOTATION, renderNamespace,
} from '../core/render.ts';
import type { ResolvedTypes } from '../core/select.ts';
import { resolveResourceTypes, suggestType } from '../core/select.ts';
import type { PruneContext } from '../core/prune.ts';
import { fileObjectType, previousFileFate, typeKeyOf } from '../core/prune.ts';
import type { KubeObject, LabelSelector, ResourceType, Skipped } from '../core/types.ts';
import { isRecord } from '../core/types.ts';
import type { Logger } from '../util/log.ts';
import { silentLogger } from '../util/log.ts';
import { isNetworkError } from '../util/errors.ts';

export interface NamespaceSource {
  sourceNamespace?: string;
  destinationNamespace?: string;
  namespaceSelector?: { labelSelector?: LabelSelector; destinationSuffix?: string };
}

/** Everything a sync needs, independent of how the Replication CR spells it. */
export interface SyncSpec extends NamespaceSource {
  /** "<namespace>/<name>" of the Replication. */
  replication: string;
  sourceCluster: string;
  resourceTypes?: string[];
  excludeResourceTypes?: string[];
  plan: PlanOptions;
  git: { path?: string; author: Author; prune: boolean };
}

/** Turns Secrets into what is written for them (mode SOPS); `previous` is the last rendered file content. */
export type SecretSealer = (secrets: KubeObject[], previous: (obj: KubeObject) => KubeObject | undefined) => Promise<KubeObject[]>;

export interface SyncDeps {
  source: KubeClient;
  repo: GitRepo;
  sealSecrets?: SecretSealer;
  now?: () => Date;
  log?: Logger;
  /** Attempts when the push is rejected because the branch moved. */
  maxAttempts?: number;
  /** The source as readSyncSource read it (the controller reads it outside its repository lock). */
  read?: SourceRead;
  /** Aborted when this process may no longer write (lost lease, shutdown): checked before each push. */
  signal?: AbortSignal;
  /** Everything a sync does except commit and push (`dr-syncer diff`): the result's `changes` are
   * the files the commit would change. Only new objects go into the local cache; no ref moves. */
  dryRun?: boolean;
}

export interface SyncResult {
  commit?: string;
  /** The branch tip after the sync (the new commit, or the unchanged tip). */
  head?: string;
  diff: FileDiff;
  counts: Record<string, number>;
  skipped: Skipped[];
  errors: ObjectError[];
  namespaces: { source: string; destination: string }[];
  warnings: string[];
  attempts: number;
  durationMs: number;
  /** Destination folders that exist but are not this Replication's (owner: the Replication that
   * wrote them, or undefined when dr-syncer did not write them): left untouched. */
  notOwned: { folder: string; owner?: string }[];
  /** Where the time went, in ms: read (discovery + LIST, with the Git fetch alongside), fetch
   * (previous files; re-fetches on retries), render, write (objects), push. */
  phases: Record<'read' | 'fetch' | 'render' | 'write' | 'push', number>;
  /** With dryRun: every file the commit would add, change or remove (the base path's
   * kustomization.yaml too), with its content before and after; empty when nothing would change. */
  changes?: FileChange[];
}

export class SyncError extends Error {
  constructor(
    readonly reason: string,
    message: string,
  ) {
    super(message);
  }
}

interface SourceNamespace {
  source: string;
  destination: string;
  object?: KubeObject;
  listed: KubeObject[];
  /** Types whose LIST failed: their files are kept as they are, never pruned. */
  failedTypes: ResourceType[];
}


export interface ResolvedNamespace {
  source: string;
  destination: string;
  object?: KubeObject;
  /** Being deleted at the source: its DR folder is left as it was (never rewritten half-deleted). */
  terminating: boolean;
}

const isTerminating = (ns: KubeObject | undefined): boolean => isRecord(ns?.status) && ns.status.phase === 'Terminating';

/** The DR namespace of source namespace `source`. */
export function destinationNamespaceOf(spec: NamespaceSource, source: string): string {
  if (spec.sourceNamespace) return spec.destinationNamespace || spec.sourceNamespace;
  return `${source}${spec.namespaceSelector?.destinationSuffix ?? ''}`;
}

export async function resolveNamespaces(client: KubeClient, spec: NamespaceSource): Promise<ResolvedNamespace[]> {
  if (spec.sourceNamespace) {
    let object: KubeObject | undefined;
    try {
      object = await client.get<KubeObject>(`/api/v1/namespaces/${encodeURIComponent(spec.sourceNamespace)}`);
    } catch (err) {
      if (err instanceof KubeApiError && err.status === 404) {
        throw new SyncError('SourceNamespaceNotFound', `source namespace "${spec.sourceNamespace}" does not exist in the source cluster; nothing was changed in the DR repository`);
      }
      throw err;
    }
    return [{ source: spec.sourceNamespace, destination: destinationNamespaceOf(spec, spec.sourceNamespace), object, terminating: isTerminating(object) }];
  }
  const sel = spec.namespaceSelector;
  if (!sel) throw new SyncError('InvalidSpec', 'set spec.sourceNamespace or spec.namespaceSelector');
  const q = selectorToQuery(sel.labelSelector);
  const { items } = await client.list('/api/v1/namespaces', q ? { labelSelector: q } : {});
  return items
    .map((ns) => ({ source: ns.metadata.name, destination: destinationNamespaceOf(spec, ns.metadata.name), object: ns, terminating: isTerminating(ns) }))
    .sort((a, b) => a.source.localeCompare(b.source));
}

export interface SourceRead {
  namespaces: SourceNamespace[];
  /** Destination folders of namespaces being deleted at the source: left as they are. */
  frozen: string[];
  /** Type keys of every namespaced type the source serves now: a DR file of another type is never pruned. */
  served: Set<string>;
  warnings: string[];
}

/**
 * Resolves the requested types, or refuses the whole sync: an unknown name (a typo, a CRD being
 * replaced) would otherwise leave its type out, and the files of the type the user meant would
 * be pruned from the DR repository.
 */
async function resolveTypes(client: KubeClient, spec: SyncSpec, sourceCluster: string): Promise<{ resolved: ResolvedTypes; discovery: Discovery }> {
  let discovery = await client.discoverAll();
  let resolved = resolveResourceTypes(spec.resourceTypes, spec.excludeResourceTypes, discovery.types);
  // A type the cached discovery does not know may be a CRD installed a moment ago: ask again.
  if (resolved.unknown.length) {
    discovery = await client.discoverAll(0);
    resolved = resolveResourceTypes(spec.resourceTypes, spec.excludeResourceTypes, discovery.types);
  }
  if (resolved.unknown.length === 0) return { resolved, discovery };
  // A "resource.group" name whose group did not answer discovery may well exist: retry later.
  const down = new Set(discovery.unavailable.map((u) => u.group));
  const inDownGroup = resolved.unknown.filter((n) => n.includes('.') && down.has(n.slice(n.indexOf('.') + 1).toLowerCase()));
  if (inDownGroup.length === resolved.unknown.length) {
    const groups = [...new Set(inDownGroup.map((n) => n.slice(n.indexOf('.') + 1)))].join(', ');
    throw new SyncError('ResourceTypesUnavailable', `resource types ${inDownGroup.map((n) => `"${n}"`).join(', ')}: API group ${groups} of the source cluster ${sourceCluster} did not answer discovery; nothing was changed in the DR repository, and the sync is retried`);
  }
  const names = resolved.unknown.filter((n) => !inDownGroup.includes(n)).map((n) => {
    const hint = suggestType(n, discovery.types);
    return hint ? `"${n}" (did you mean "${hint}"?)` : `"${n}"`;
  });
  const downNote = down.size ? ` (API groups ${[...down].join(', ')} did not answer discovery; a type of theirs must be named as resource.group)` : '';
  throw new SyncError(
    'UnknownResourceTypes',
    `spec.resourceTypes/excludeResourceTypes: ${names.join(', ')} ${names.length > 1 ? 'are' : 'is'} not served by the source cluster ${sourceCluster}${downNote}; ` +
      'nothing was changed in the DR repository. Fix the name (kubectl api-resources lists what the cluster serves)',
  );
}

async function readSource(client: KubeClient, spec: SyncSpec, log: Logger): Promise<SourceRead> {
  const { resolved, discovery } = await resolveTypes(client, spec, spec.sourceCluster);
  const warnings = resolved.refused.map((r) => `resource type "${r.name}" skipped: ${r.reason}`);
  if (resolved.missingDefaults.length) warnings.push(`default resource types not served by the source cluster, skipped: ${resolved.missingDefaults.join(', ')}`);
  if (spec.resourceTypes?.length && resolved.types.some((rt) => !readsType(spec.plan.secretsMode, rt))) {
    warnings.push('resource type secrets is named, but secrets.mode is Omit: Secrets are not read or written; set secrets.mode to SOPS (or Plain) to replicate them');
  }
  for (const u of discovery.unavailable) warnings.push(`API group ${u.group} did not answer discovery; DR files of its types are kept as they are: ${u.message}`);
  const resolvedNamespaces = await resolveNamespaces(client, spec);
  const targets = resolvedNamespaces.filter((t) => !t.terminating);
  const frozen = resolvedNamespaces.filter((t) => t.terminating).map((t) => t.destination);
  for (const t of resolvedNamespaces.filter((x) => x.terminating)) warnings.push(`namespace ${t.source} is being deleted at the source; its DR folder is left as it was`);
  const namespaces: SourceNamespace[] = [];
  // Namespaces one after another, the types of one namespace in parallel: bounded concurrency.
  for (const t of targets) {
    const failedTypes: ResourceType[] = [];
    const lists = await Promise.all(
      resolved.types.filter((rt) => readsType(spec.plan.secretsMode, rt)).map(async (rt) => {
        try {
          return (await client.list(resourcePath(rt, t.source))).items;
        } catch (err) {
          failedTypes.push(rt);
          const msg = err instanceof Error ? err.message : String(err);
          warnings.push(`listing ${rt.resource}${rt.group ? `.${rt.group}` : ''} in ${t.source} failed; its DR files are kept as they are: ${msg}`);
          log.warn({ err, namespace: t.source, resource: rt.resource }, 'list failed');
          return [];
        }
      }),
    );
    namespaces.push({ ...t, listed: lists.flat(), failedTypes });
  }
  const served = new Set(discovery.types.filter((t) => t.namespaced && !t.resource.includes('/')).map((t) => typeKeyOf(t)));
  return { namespaces, frozen, served, warnings };
}

/**
 * Wraps a failure to read the source so that it names the cluster and where its configuration
 * came from, and says what to do.
 */
function sourceError(err: unknown, spec: SyncSpec, client: KubeClient): SyncError {
  if (err instanceof SyncError) return err;
  const msg = err instanceof Error ? err.message : String(err);
  const where = `source cluster ${spec.sourceCluster} (${client.describe()})`;
  if (err instanceof KubeApiError && (err.status === 401 || err.status === 403)) {
    return new SyncError('SourceForbidden', `${where}: ${msg}; the kubeconfig's user needs get/list on the replicated types and namespaces`);
  }
  if (isNetworkError(err)) {
    return new SyncError('SourceUnreachable', `${where} is not reachable: ${msg}; check that the cluster is up and that the kubeconfig points at it`);
  }
  return new SyncError('SourceReadFailed', `reading ${where} failed: ${msg}`);
}

/** Reads what a sync of `spec` needs from the source cluster, for SyncDeps.read; errors name the cluster. */
export function readSyncSource(spec: SyncSpec, deps: Pick<SyncDeps, 'source' | 'log'>): Promise<SourceRead> {
  return readSource(deps.source, spec, deps.log ?? silentLogger).catch((err: unknown) => {
    throw sourceError(err, spec, deps.source);
  });
}

export interface RepoState {
  snapshot: Snapshot;
  parent: string;
  /** Destination folder name → blob entries (file → oid) for folders this Replication owns. */
  owned: Map<string, Map<string, string>>;
  /** Destination folder name → owning Replication ('' when dr-syncer did not write it), for folders that are not ours. */
  foreign: Map<string, string>;
}

export async function readRepoState(repo: GitRepo, parent: string, replication: string): Promise<RepoState> {
  const snapshot = await repo.fetch();
  const owned = new Map<string, Map<string, string>>();
  const foreign = new Map<string, string>();
  for (const e of (await repo.readDir(snapshot.tree, parent)) ?? []) {
    if (e.type !== 'tree') continue;
    const entries = (await repo.readDir(snapshot.tree, joinPath(parent, e.path))) ?? [];
    const nsFile = entries.find((x) => x.path === NAMESPACE_FILE && x.type === 'blob');
    // A folder without our namespace.yaml was written by someone else: never ours to replace.
    const ns = nsFile ? (parseYaml(await repo.readBlob(nsFile.oid)) as KubeObject | null) : undefined;
    const ownerOf = ns?.metadata?.annotations?.[REPLICATION_ANNOTATION];
    if (ownerOf === replication) owned.set(e.path, new Map(entries.filter((x) => x.type === 'blob').map((x) => [x.path, x.oid])));
    else foreign.set(e.path, ownerOf ?? '');
  }
  return { snapshot, parent, owned, foreign };
}

/** The new root tree; the kustomization at the base path lists every folder that has one. */
export function buildRepoTree(repo: GitRepo, state: RepoState, folders: Map<string, Map<string, string> | null>, fileOids?: Map<string, string>): Promise<string> {
  const { parent } = state;
  return repo.buildTree(state.snapshot.tree, parent, folders, async (entries) => {
    const withKustomization: string[] = [];
    for (const e of entries) {
      if (e.type !== 'tree') continue;
      const files = folders.get(joinPath(parent, e.path));
      const has = files !== undefined
        ? files !== null && files.has(KUSTOMIZATION)
        : ((await repo.readDir(state.snapshot.tree, joinPath(parent, e.path))) ?? []).some((x) => x.path === KUSTOMIZATION);
      if (has) withKustomization.push(e.path);
    }
    // No namespace folder left (the last Replication here was deleted): no kustomization either.
    return new Map([[KUSTOMIZATION, withKustomization.length ? kustomization(withKustomization) : null]]);
  }, fileOids);
}

/** Every file that differs between two root trees, with its contents (identical subtrees are skipped unread). */
export async function treeChanges(repo: Pick<GitRepo, 'readDir' | 'readBlob'>, before: string | undefined, after: string | undefined): Promise<FileChange[]> {
  const out: FileChange[] = [];
  const walk = async (oldTree: string | undefined, newTree: string | undefined, prefix: string): Promise<void> => {
    if (oldTree === newTree) return;
    const [olds, news] = await Promise.all([repo.readDir(oldTree, ''), repo.readDir(newTree, '')]);
    const old = new Map((olds ?? []).map((e) => [e.path, e]));
    const neu = new Map((news ?? []).map((e) => [e.path, e]));
    for (const name of new Set([...old.keys(), ...neu.keys()])) {
      const o = old.get(name);
      const n = neu.get(name);
      if (o?.oid === n?.oid && o?.type === n?.type) continue;
      const p = prefix ? `${prefix}/${name}` : name;
      const oidOf = (e: TreeEntry | undefined, type: TreeEntry['type']) => (e?.type === type ? e.oid : undefined);
      // A name may change from folder to file or back: both sides are looked at.
      await walk(oidOf(o, 'tree'), oidOf(n, 'tree'), p);
      const [ob, nb] = [oidOf(o, 'blob'), oidOf(n, 'blob')];
      if (ob !== nb) out.push({ path: p, before: ob === undefined ? undefined : await repo.readBlob(ob), after: nb === undefined ? undefined : await repo.readBlob(nb) });
    }
  };
  await walk(before, after, '');
  return out.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
}

export const backoff = (attempt: number) => new Promise((r) => setTimeout(r, Math.min(2000, 50 * 2 ** attempt) * (0.5 + Math.random())));

/**
 * Removes every folder the Replication owns from the DR repository in one commit (its
 * finalizer). Folders of other Replications are untouched. Returns the commit, or undefined when
 * there was nothing to remove.
 */
export async function removeReplication(
  target: { replication: string; sourceCluster: string; path?: string; author: Author },
  deps: Pick<SyncDeps, 'repo' | 'log' | 'now' | 'maxAttempts' | 'signal'>,
): Promise<string | undefined> {
  const parent = normalizeRepoPath(target.path);
  for (let attempt = 1; ; attempt++) {
    const state = await readRepoState(deps.repo, parent, target.replication);
    if (state.owned.size === 0) return undefined;
    const folders = new Map<string, Map<string, string> | null>([...state.owned.keys()].map((d) => [joinPath(parent, d), null]));
    const tree = await buildRepoTree(deps.repo, state, folders);
    const removed = [...state.owned].flatMap(([d, files]) => [...files.keys()].map((f) => `${joinPath(parent, d)}/${f}`)).sort();
    const message = commitMessage({ replication: target.replication, sourceCluster: target.sourceCluster, diff: { added: [], changed: [], removed }, counts: {}, notes: ['The Replication was deleted; its folders are removed.'] });
    const commit = await deps.repo.commit(tree, state.snapshot.commit, message, target.author, (deps.now ?? (() => new Date()))());
    deps.signal?.throwIfAborted();
    try {
      await deps.repo.push(commit, state.snapshot.commit);
      return commit;
    } catch (err) {
      if (!(err instanceof PushConflictError) || attempt >= (deps.maxAttempts ?? 5)) throw err;
      await backoff(attempt);
    }
  }
}

/**
 * The previously written files the transforms need, parsed: workloads the source has at 0
 * replicas (their remembered count) and, in mode SOPS, Secrets (their unchanged ciphertext).
 */
function neededPrevious(namespaces: SourceNamespace[], secretsMode: string): Set<string> {
  const out = new Set<string>();
  for (const ns of namespaces) {
    for (const o of ns.listed) {
      const scaledToZero = (o.kind === 'Deployment' || o.kind === 'StatefulSet') && isRecord(o.spec) && o.spec.replicas === 0;
      const sealed = o.kind === 'Secret' && o.apiVersion === 'v1' && secretsMode === 'SOPS';
      if (scaledToZero || sealed) out.add(`${ns.destination}/${objectFileName(o)}`);
    }
  }
  return out;
}

async function loadPrevious(repo: GitRepo, state: RepoState, needed: Set<string>): Promise<Map<string, KubeObject>> {
  const out = new Map<string, KubeObject>();
  for (const [folder, files] of state.owned) {
    for (const [file, oid] of files) {
      const key = `${folder}/${file}`;
      if (!needed.has(key)) continue;
      const obj = parseYaml(await repo.readBlob(oid)) as KubeObject | null;
      if (obj && isRecord(obj)) out.set(key, obj);
    }
  }
  return out;
}

export async function runSync(spec: SyncSpec, deps: SyncDeps): Promise<SyncResult> {
  const started = Date.now();
  const log = deps.log ?? silentLogger;
  const now = deps.now ?? (() => new Date());
  const parent = normalizeRepoPath(spec.git.path);
  const owner: Owner = { replication: spec.replication, sourceCluster: spec.sourceCluster };

  const phases = { read: 0, fetch: 0, render: 0, write: 0, push: 0 };
  let mark = performance.now();
  const lap = (phase: keyof typeof phases) => {
    const t = performance.now();
    phases[phase] += Math.round(t - mark);
    mark = t;
  };
  // The source and the repository are read at the same time: neither needs the other.
  const readSrc = () => readSyncSource(spec, { source: deps.source, log });
  let [src, state] = await Promise.all([deps.read ?? readSrc(), readRepoState(deps.repo, parent, spec.replication)]);
  lap('read');
  const maxAttempts = deps.maxAttempts ?? 5;
  for (let attempt = 1; ; attempt++) {
    // The branch moved: someone may have written a newer read of the same source there, so
    // read the source again too; re-rendering the old read could roll that back.
    if (attempt > 1) [src, state] = await Promise.all([readSrc(), readRepoState(deps.repo, parent, spec.replication)]);
    const previous = await loadPrevious(deps.repo, state, neededPrevious(src.namespaces, spec.plan.secretsMode));
    lap('fetch');
    const errors: ObjectError[] = [];
    const skipped: Skipped[] = [];
    const warnings = [...src.warnings];
    const folders = new Map<string, Map<string, string> | null>();
    const written: KubeObject[] = [];
    const notOwned: SyncResult['notOwned'] = [];

    for (const ns of src.namespaces) {
      const foreignOwner = state.foreign.get(ns.destination);
      if (foreignOwner !== undefined) {
        const folder = joinPath(parent, ns.destination);
        notOwned.push({ folder, owner: foreignOwner || undefined });
        errors.push({
          ref: `Namespace ${ns.destination}`, file: NAMESPACE_FILE,
          message: foreignOwner
            ? `the DR repository folder ${folder} belongs to Replication ${foreignOwner}; choose another destination namespace or git path`
            : `the DR repository folder ${folder} was not written by dr-syncer (it has no namespace.yaml naming a Replication), so it is left as it is; choose another destination namespace or git path, or remove the folder`,
        });
        continue;
      }
      const prevOf = (o: KubeObject) => previous.get(`${ns.destination}/${objectFileName(o)}`);
      const plan: NamespacePlan = planNamespace(ns.listed, ns.source, ns.destination, spec.plan, prevOf);
      skipped.push(...plan.skipped);
      errors.push(...plan.errors);
      let objects = plan.objects;
      if (plan.secrets.length) {
        if (!deps.sealSecrets) throw new SyncError('SecretsModeUnsupported', 'secrets.mode SOPS needs a sealer');
        objects = [...objects, ...(await deps.sealSecrets(plan.secrets, prevOf))];
      }
      written.push(...objects);
      const folder = renderNamespace(parent, { sourceNamespace: ns.source, destinationNamespace: ns.destination, source: ns.object, objects }, owner);
      const prevFiles = state.owned.get(ns.destination);
      if (prevFiles) {
        // Files not rendered this time: pruned only when this sync knows their objects are gone (core/prune.ts).
        const ctx: PruneContext = { prune: spec.git.prune, served: src.served, failed: new Set(ns.failedTypes.map((t) => typeKeyOf(t))) };
        const failedFiles = new Set(plan.errors.map((e) => e.file));
        const unserved: string[] = [];
        for (const [file, oid] of prevFiles) {
          if (folder.files.has(file) || file === KUSTOMIZATION) continue;
          const content = await deps.repo.readBlob(oid);
          const fate = previousFileFate(fileObjectType(content), failedFiles.has(file), ctx);
          if (fate === 'prune') continue;
          folder.files.set(file, content);
          if (fate === 'keep-unserved') unserved.push(file);
        }
        if (unserved.length) warnings.push(`${joinPath(parent, ns.destination)}: kept ${unserved.length} file(s) of types the source cluster does not serve now: ${unserved.slice(0, 5).join(', ')}${unserved.length > 5 ? ', …' : ''}`);
        folder.files.set(KUSTOMIZATION, kustomization([...folder.files.keys()].filter((f) => f !== KUSTOMIZATION)));
      }
      folders.set(folder.folder, folder.files);
    }
    // Folders this Replication wrote before but no longer selects (a namespace lost its label or
    // is gone) go with prune on; folders of namespaces being deleted are left as they are.
    const selected = new Set([...src.namespaces.map((n) => n.destination), ...src.frozen]);
    for (const dest of state.owned.keys()) {
      if (selected.has(dest)) continue;
      if (spec.git.prune) folders.set(joinPath(parent, dest), null);
      else warnings.push(`${joinPath(parent, dest)}: its namespace is no longer selected; kept because git.prune is false`);
    }
    lap('render');

    const after = new Map<string, string>();
    const tree = await buildRepoTree(deps.repo, state, folders, after);

    const before = new Map<string, string>();
    // Only folders this sync rewrote or removed: a folder left as it was (frozen, or kept with
    // prune off) is not in `after`, and must not be reported as removed.
    for (const [dest, files] of state.owned) {
      if (!folders.has(joinPath(parent, dest))) continue;
      for (const [f, oid] of files) before.set(`${joinPath(parent, dest)}/${f}`, oid);
    }
    const diff = diffFiles(before, after);
    const counts = countByKind(written);
    lap('write');
    const base = {
      diff, counts, skipped, errors, warnings, attempts: attempt, phases, notOwned,
      namespaces: src.namespaces.map((n) => ({ source: n.source, destination: n.destination })),
    };

    if (tree === state.snapshot.tree) {
      return { ...base, head: state.snapshot.commit, diff: { added: [], changed: [], removed: [] }, durationMs: Date.now() - started, ...(deps.dryRun ? { changes: [] } : {}) };
    }
    if (deps.dryRun) {
      // Read from the two trees, so the changes are exactly the commit's: every folder, the base
      // path's kustomization.yaml and anything else buildRepoTree touched.
      const changes = await treeChanges(deps.repo, state.snapshot.tree, tree);
      return { ...base, head: state.snapshot.commit, changes, durationMs: Date.now() - started };
    }
    const message = commitMessage({ replication: spec.replication, sourceCluster: spec.sourceCluster, diff, counts, notes: warnings });
    const commit = await deps.repo.commit(tree, state.snapshot.commit, message, spec.git.author, now());
    deps.signal?.throwIfAborted();
    try {
      await deps.repo.push(commit, state.snapshot.commit);
      lap('push');
      log.info({ commit, added: diff.added.length, changed: diff.changed.length, removed: diff.removed.length }, 'committed');
      return { ...base, commit, head: commit, durationMs: Date.now() - started };
    } catch (err) {
      lap('push');
      if (!(err instanceof PushConflictError) || attempt >= maxAttempts) throw err;
      log.info({ attempt, err: err.message }, 'branch moved; re-rendering onto the new head');
      await backoff(attempt);
    }
  }
}
