// One sync of one Replication: read the source (kube adapter), run the pure core, write the DR
// repository (git adapter). The CLI's `sync` command and the controller both call runSync.
import { createHash } from 'node:crypto';
import { setMaxListeners } from 'node:events';
import { parse as parseYaml } from 'yaml';
import type { Author, FolderChanges, GitRepo, Snapshot, TreeEntry } from '../adapters/git/repo.ts';
import { blobOid, isPrepared, PushConflictError } from '../adapters/git/repo.ts';
import type { KubeClient } from '../adapters/kube/client.ts';
import type { Discovery } from '../adapters/kube/client.ts';
import { KubeApiError, resourcePath } from '../adapters/kube/client.ts';
import type { ListPage } from '../adapters/kube/client.ts';
import { commitMessage, diffFiles } from '../core/commit.ts';
import type { FileDiff } from '../core/commit.ts';
import type { FileChange } from '../core/patch.ts';
import { selectorToQuery } from '../core/labels.ts';
import type { NamespacePlan, ObjectError, PlanOptions, ReusedFile } from '../core/plan.ts';
import { isSecret, planNamespace, readsType } from '../core/plan.ts';
import { readsLastRendering } from '../core/transform/index.ts';
import type { Owner } from '../core/render.ts';
import {
  joinPath, KUSTOMIZATION, kustomization, NAMESPACE_FILE, normalizeRepoPath, objectFileName, REPLICATION_ANNOTATION, renderNamespace,
} from '../core/render.ts';
import type { ResolvedTypes } from '../core/select.ts';
import { resolveResourceTypes, suggestType, typeKey } from '../core/select.ts';
import type { PruneContext } from '../core/prune.ts';
import { fileObjectType, previousFileFate, typeKeyOf } from '../core/prune.ts';
import type { KubeObject, LabelSelector, ResourceType, Skipped } from '../core/types.ts';
import { groupKind, isRecord } from '../core/types.ts';
import type { Logger } from '../util/log.ts';
import { silentLogger } from '../util/log.ts';
import { isNetworkError } from '../util/errors.ts';
import { RenderCache } from './render-cache.ts';
import type { FolderSummary } from './render-cache.ts';

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
  /** Files of objects unchanged since the last sync, not rendered again (render-cache.ts). */
  renderCache?: RenderCache;
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
  /** Where the time went, in ms: fetch (discovery, the namespaces, and the Git fetch alongside;
   * again on retries), read (waiting for LISTs: the part of them the rendering did not hide),
   * render (transform, render and hash each namespace, as it arrives), write (the trees and the
   * objects), push. */
  phases: Record<'read' | 'fetch' | 'render' | 'write' | 'push', number>;
  /** No warning and no error: nothing was kept as it was for want of a read (a failed LIST, a
   * group that did not answer discovery, files of an unserved type, a folder not owned), so
   * the repository holds exactly the source as read. */
  exact: boolean;
  /** Files of objects unchanged since the last sync taken as it wrote them, not rendered again (SyncDeps.renderCache). */
  reused: number;
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
  /** What went wrong listing this namespace, in the order of the types. */
  warnings: string[];
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
  /** The source API server's version: after an upgrade, unchanged objects may read differently (render cache scope). */
  serverVersion: string;
}

/** A read in progress: the namespaces come out in order, each once all its types are listed. */
interface SourceStream extends Omit<SourceRead, 'namespaces'> {
  namespaces: AsyncIterable<SourceNamespace>;
  /** Stops the LISTs still in flight (the sync stopped early); nothing else. */
  cancel(): void;
}

/** Namespaces whose LISTs are in flight at once. */
const LIST_AHEAD = 4;
/**
 * Objects read but not rendered yet that the reader may hold, beyond LIST_AHEAD namespaces:
 * while the sync waits for the repository (a Git round trip, often longer than discovery),
 * the reader goes on. Bounded so that memory stays per namespace, not per cluster.
 */
const READ_AHEAD_OBJECTS = 5000;
/** Objects per LIST page (client-go's informers use the same). */
const LIST_PAGE = 500;

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

/** What a read of the source will list: its types and namespaces, and what it knows already. */
interface ReadPlan extends Omit<SourceRead, 'namespaces'> {
  types: ResourceType[];
  targets: ResolvedNamespace[];
  stop: AbortController;
}

async function planRead(client: KubeClient, spec: SyncSpec): Promise<ReadPlan> {
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
  const types = resolved.types.filter((rt) => readsType(spec.plan.secretsMode, rt));
  const stop = new AbortController();
  // Every LIST in flight listens on it (LIST_AHEAD namespaces x the types): more than Node's
  // default of 10 is expected, each removed when its request ends.
  setMaxListeners(0, stop.signal);
  const served = new Set(discovery.types.filter((t) => t.namespaced && !t.resource.includes('/')).map((t) => typeKeyOf(t)));
  return { types, targets, frozen, served, warnings, serverVersion: discovery.serverVersion, stop };
}

/** Lists `types` in namespace `t`: one list per type, in the types' order ([] for a type whose LIST failed). */
async function listInNamespace(client: KubeClient, t: ResolvedNamespace, types: readonly ResourceType[], signal: AbortSignal, log: Logger): Promise<Omit<SourceNamespace, 'listed'> & { lists: KubeObject[][] }> {
  const failedTypes: ResourceType[] = [];
  const nsWarnings: (string | undefined)[] = [];
  const lists = await Promise.all(types.map(async (rt, i) => {
    try {
      return (await client.list(resourcePath(rt, t.source), {}, undefined, signal)).items;
    } catch (err) {
      failedTypes.push(rt);
      const msg = err instanceof Error ? err.message : String(err);
      nsWarnings[i] = `listing ${typeKey(rt)} in ${t.source} failed; its DR files are kept as they are: ${msg}`;
      log.warn({ err, namespace: t.source, resource: rt.resource }, 'list failed');
      return [];
    }
  }));
  return { ...t, lists, failedTypes, warnings: nsWarnings.filter((w) => w !== undefined) };
}

async function openSource(client: KubeClient, spec: SyncSpec, log: Logger): Promise<SourceStream> {
  const { types, targets, stop, ...plan } = await planRead(client, spec);
  const listNamespace = async (t: ResolvedNamespace): Promise<SourceNamespace> => {
    const { lists, ...ns } = await listInNamespace(client, t, types, stop.signal, log);
    return { ...ns, listed: lists.flat() };
  };
  const namespaces = listAhead(targets, listNamespace, LIST_AHEAD, (ns) => ns.listed.length, READ_AHEAD_OBJECTS);
  return { ...plan, namespaces, cancel: () => stop.abort() };
}

/**
 * Groups whose types kube-apiserver serves itself. Only their types are listed cluster-wide: an
 * aggregated API server (metrics.k8s.io, or any CRD-like group behind a proxy of its own) may
 * answer a cluster-wide LIST with fewer objects than its namespaced LISTs would (filtering what
 * it will not show instead of refusing), and a namespace missing from the answer would have
 * its files pruned. A refused namespaced LIST fails its type instead, and keeps them.
 */
const SERVED_BY_KUBE_APISERVER = new Set(['', 'apps', 'batch', 'autoscaling', 'policy', 'networking.k8s.io', 'rbac.authorization.k8s.io', 'discovery.k8s.io', 'coordination.k8s.io', 'storage.k8s.io', 'events.k8s.io', 'resource.k8s.io']);

/** Secrets are never listed cluster-wide: not even one of another namespace is read. */
const mayListClusterWide = (rt: ResourceType): boolean => SERVED_BY_KUBE_APISERVER.has(rt.group) && !(rt.group === '' && rt.resource === 'secrets');

/**
 * Per client and type, how many requests a cluster-wide LIST took when it was not chosen
 * (Infinity: refused), and until when that is believed: a sync of a few namespaces in a large
 * cluster does not pay a first page per type every time, nor a reader with namespaced RBAC a
 * refusal. (Counts change slowly; a stale one only costs requests.)
 */
const perNamespaceChoices = new WeakMap<object, Map<string, { pages: number; until: number }>>();
const CHOICE_MEMORY_MS = 10 * 60_000;

/**
 * Lists `rt` across the whole cluster in pages when that takes fewer requests than one LIST per
 * namespace in `selected` (the first page, of one object, tells how many there are); keeps the
 * objects of the selected namespaces only, by namespace. Undefined: list it per namespace (as
 * many objects elsewhere, the server does not say how many, a type not served by kube-apiserver
 * itself or Secrets, a reader that may not list cluster-wide (namespaced RBAC is enough for a
 * sync), or a later page that failed: its partial answer is dropped). A choice made from the
 * first page (too many, not counted, refused) is remembered for the client (perNamespaceChoices).
 * Why: a controller's client waits for its rate limit (20 requests/s by default) before each
 * request, so a selector matching 600 namespaces spent 30 s per type on LISTs alone, on every
 * sync; the same 60,000 objects in pages of 500 are ~120 requests. Only whole lists are used
 * (the read collects every namespace before rendering), so nothing depends on the order the
 * server returns objects in.
 */
export async function listClusterWide(client: Pick<KubeClient, 'listPage'>, rt: ResourceType, selected: ReadonlySet<string>, signal: AbortSignal, log: Logger = silentLogger, pageSize = LIST_PAGE): Promise<Map<string, KubeObject[]> | undefined> {
  if (selected.size < 2 || !mayListClusterWide(rt)) return undefined;
  let choices = perNamespaceChoices.get(client);
  if (!choices) perNamespaceChoices.set(client, (choices = new Map()));
  const key = typeKey(rt);
  const known = choices.get(key);
  if (known && known.until > Date.now() && known.pages >= selected.size) return undefined;
  const perNamespace = (pages: number) => {
    choices.set(key, { pages, until: Date.now() + CHOICE_MEMORY_MS });
    return undefined;
  };
  const path = resourcePath(rt);
  let page: ListPage;
  try {
    page = await client.listPage(path, {}, 1, undefined, signal);
  } catch (err) {
    if (signal.aborted) throw err;
    log.debug({ resource: key, err: err instanceof Error ? err.message : String(err) }, 'listing across the cluster refused; listing per namespace');
    return perNamespace(Infinity);
  }
  const pages = page.continue === undefined ? 1 : page.remainingItemCount === undefined ? Infinity : 1 + Math.ceil(page.remainingItemCount / pageSize);
  if (pages >= selected.size) return perNamespace(pages);
  const byNamespace = new Map<string, KubeObject[]>();
  for (;;) {
    for (const o of page.items) {
      const ns = o.metadata.namespace;
      if (ns === undefined || !selected.has(ns)) continue;
      let list = byNamespace.get(ns);
      if (!list) byNamespace.set(ns, (list = []));
      list.push(o);
    }
    if (page.continue === undefined) return byNamespace;
    try {
      page = await client.listPage(path, {}, pageSize, page.continue, signal);
    } catch (err) {
      if (signal.aborted) throw err;
      // (A continue token expires after ~5 minutes, and one object another namespace cannot
      // decode fails the whole answer: per namespace, the selected ones may still be read.)
      log.info({ resource: key, err: err instanceof Error ? err.message : String(err) }, 'listing across the cluster failed after its first pages; listing per namespace');
      return undefined;
    }
  }
}

/**
 * The whole read at once (the controller reads before it takes its repository lock). Types
 * with fewer objects than pages of one-per-namespace LISTs are listed cluster-wide
 * (listClusterWide); the rest per namespace, as the stream does. Same namespaces, same objects,
 * in the same order as openSource.
 */
async function readSource(client: KubeClient, spec: SyncSpec, log: Logger): Promise<SourceRead> {
  const { types, targets, stop, ...plan } = await planRead(client, spec);
  try {
    const selected = new Set(targets.map((t) => t.source));
    const wide = await Promise.all(types.map((rt) => listClusterWide(client, rt, selected, stop.signal, log)));
    const perNamespace = types.filter((_, i) => wide[i] === undefined);
    const namespaces: SourceNamespace[] = [];
    for await (const { lists, ...ns } of listAhead(targets, (t) => listInNamespace(client, t, perNamespace, stop.signal, log), LIST_AHEAD, () => 0, 0)) {
      let next = 0;
      // In the types' order, as openSource lists them.
      const listed = types.flatMap((_, i) => {
        const w = wide[i];
        return w ? (w.get(ns.source) ?? []) : lists[next++]!;
      });
      namespaces.push({ ...ns, listed });
    }
    return { ...plan, namespaces };
  } finally {
    // A read that failed stops the LISTs still in flight.
    stop.abort();
  }
}

/**
 * `read(item)` for each item, `ahead` at a time, yielded in the items' order. The first reads
 * start at once, not at the first `next()`: the caller fetches the repository meanwhile. Reads
 * go on ahead of the consumer while the results it has not taken yet hold fewer than
 * `maxBuffered` (by `size`); after a failed read, only the consumer starts new ones.
 */
function listAhead<T, R>(items: readonly T[], read: (item: T) => Promise<R>, ahead: number, size: (r: R) => number, maxBuffered: number): AsyncIterable<R> {
  const started: Promise<R>[] = [];
  let consumed = 0;
  let running = 0;
  let buffered = 0;
  const pump = () => {
    while (started.length < items.length && running < ahead && (started.length - consumed < ahead || buffered < maxBuffered)) {
      const p = read(items[started.length]!);
      running++;
      p.then((r) => {
        running--;
        buffered += size(r);
        pump();
      }, () => running--);
      p.catch(() => {}); // observed by the consumer; a consumer that stops early must not leave it unhandled
      started.push(p);
    }
  };
  pump();
  return {
    async *[Symbol.asyncIterator]() {
      while (consumed < items.length) {
        const done = await started[consumed]!;
        consumed++;
        buffered -= size(done);
        pump();
        yield done;
      }
    },
  };
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

/** The same read, as a stream: a namespace can be rendered while the next ones are listed. */
function openSyncSource(spec: SyncSpec, deps: Pick<SyncDeps, 'source' | 'log'>): Promise<SourceStream> {
  return openSource(deps.source, spec, deps.log ?? silentLogger).catch((err: unknown) => {
    throw sourceError(err, spec, deps.source);
  });
}

/** Every object a sync of `spec` reads, in its order, with nothing else done: the baseline of bench/sync.bench.ts. */
export async function listOnly(spec: SyncSpec, deps: Pick<SyncDeps, 'source' | 'log'>): Promise<number> {
  let n = 0;
  for await (const ns of (await openSyncSource(spec, deps)).namespaces) n += ns.listed.length;
  return n;
}

export interface RepoState {
  snapshot: Snapshot;
  parent: string;
  /** Destination folder name → its tree, for the folders this Replication owns. */
  ownedTrees: Map<string, string>;
  /**
   * The blob entries (file → oid) of a folder in `ownedTrees`, read on first use: a folder the
   * render cache leaves as it was is never read.
   */
  filesOf(destination: string): Promise<Map<string, string>>;
  /** Destination folder name → owning Replication ('' when dr-syncer did not write it), for folders that are not ours. */
  foreign: Map<string, string>;
  /** Destination folders that have a kustomization.yaml. */
  kustomized: Set<string>;
  /** The base path's kustomization.yaml lists exactly the folders that have one (as buildRepoTree writes it). */
  kustomizationCurrent: boolean;
  /** Folders known only from the render cache file's claims (readRepoState's trustClaims): check them (verifyClaims) before writing. */
  claims: Map<string, { tree: string; summary: FolderSummary }>;
}

/**
 * The repository as fetched now, or at `at` (a commit this process holds: no fetch). Which
 * folders are whose is remembered by tree id, for the whole process and in `memo`: a no-op
 * resync of 100 namespaces spent ~45 ms of its one thread reading their trees. With
 * `trustClaims`, what a loaded render cache file says of a tree is taken too, unread; the
 * caller must then verifyClaims before it writes anything.
 */
export async function readRepoState(repo: GitRepo, parent: string, replication: string, at?: Snapshot, memo?: RenderCache, trustClaims = false): Promise<RepoState> {
  const snapshot = at ?? await repo.fetch();
  const ownedTrees = new Map<string, string>();
  const foreign = new Map<string, string>();
  const kustomized = new Set<string>();
  const claims: RepoState['claims'] = new Map();
  const top = (await repo.readDir(snapshot.tree, parent)) ?? [];
  for (const e of top) {
    if (e.type !== 'tree') continue;
    const { summary, verified } = await folderSummary(repo, e.oid, memo, trustClaims);
    if (!verified) claims.set(e.path, { tree: e.oid, summary });
    if (summary.kustomization) kustomized.add(e.path);
    // A folder without our namespace.yaml was written by someone else: never ours to replace.
    if (summary.owner !== '' && summary.owner === replication) ownedTrees.set(e.path, e.oid);
    else foreign.set(e.path, summary.owner);
  }
  const listed = top.find((e) => e.path === KUSTOMIZATION && e.type === 'blob')?.oid;
  const kustomizationCurrent = kustomized.size ? listed === blobOid(kustomization([...kustomized])) : listed === undefined;
  const files = new Map<string, Promise<Map<string, string>>>();
  const filesOf = (dest: string): Promise<Map<string, string>> => {
    const tree = ownedTrees.get(dest);
    if (tree === undefined) return Promise.reject(new Error(`${joinPath(parent, dest)} is not a folder of Replication ${replication}`));
    let read = files.get(dest);
    if (!read) {
      read = repo.readDir(tree, '').then((entries) => new Map((entries ?? []).filter((x) => x.type === 'blob').map((x) => [x.path, x.oid])));
      files.set(dest, read);
    }
    return read;
  };
  return { snapshot, parent, ownedTrees, filesOf, foreign, kustomized, kustomizationCurrent, claims };
}

/**
 * Whether every claim `state` took from the render cache file is what the folder's tree says
 * (reading each). When one is not, the file's claims are dropped (the caller reads the
 * repository again) and false is returned.
 */
export async function verifyClaims(repo: GitRepo, state: RepoState, memo: RenderCache | undefined): Promise<boolean> {
  let right = true;
  for (const { tree, summary } of state.claims.values()) {
    const { summary: read } = await folderSummary(repo, tree, undefined, false);
    memo?.rememberTree(tree, read);
    if (read.owner !== summary.owner || read.kustomization !== summary.kustomization) right = false;
  }
  if (!right) memo?.dropClaims();
  state.claims.clear();
  return right;
}

/** Folder tree id → summary, read or written by this process (for all its Replications): a tree's content never changes. */
const sharedTrees = new Map<string, FolderSummary>();
/** What a folder's tree says: the Replication its namespace.yaml names, and whether it has a kustomization.yaml. */
async function folderSummary(repo: GitRepo, tree: string, memo: RenderCache | undefined, trustClaims: boolean): Promise<{ summary: FolderSummary; verified: boolean }> {
  const shared = sharedTrees.get(tree);
  const known = shared ? { summary: shared, verified: true } : memo?.treeSummary(tree);
  if (known && (known.verified || trustClaims)) {
    if (known.verified) rememberTree(tree, known.summary, memo);
    return known;
  }
  const entries = (await repo.readDir(tree, '')) ?? [];
  const nsFile = entries.find((x) => x.path === NAMESPACE_FILE && x.type === 'blob');
  const ns = nsFile ? parseYaml(await repo.readBlob(nsFile.oid)) as KubeObject | null : undefined;
  const owner = ns?.metadata?.annotations?.[REPLICATION_ANNOTATION];
  const summary = { owner: typeof owner === 'string' ? owner : '', kustomization: entries.some((x) => x.path === KUSTOMIZATION) };
  rememberTree(tree, summary, memo);
  return { summary, verified: true };
}

/** A summary this process read or wrote itself. */
function rememberTree(tree: string, summary: FolderSummary, memo: RenderCache | undefined): void {
  memo?.rememberTree(tree, summary);
  // Least recently used out first: the trees in use now stay.
  sharedTrees.delete(tree);
  if (sharedTrees.size >= 100_000) sharedTrees.delete(sharedTrees.keys().next().value!);
  sharedTrees.set(tree, summary);
}

/**
 * Whether a sync onto `now` would write nothing, given that the source is as it was when the
 * sync that left `then` read it: the Replication's folders are the same trees, and the base
 * path's kustomization.yaml is as buildRepoTree writes it. Other folders may have changed.
 */
export function repoUnchangedSince(then: RepoState, now: RepoState): boolean {
  if (!now.kustomizationCurrent || then.ownedTrees.size !== now.ownedTrees.size) return false;
  for (const [dest, tree] of then.ownedTrees) if (now.ownedTrees.get(dest) !== tree) return false;
  return true;
}

/** The new root tree; the kustomization at the base path lists every folder that has one. */
export function buildRepoTree(repo: GitRepo, state: RepoState, folders: FolderChanges, fileOids?: Map<string, string>): Promise<string> {
  const { parent } = state;
  return repo.buildTree(state.snapshot.tree, parent, folders, async (entries) => {
    const withKustomization: string[] = [];
    for (const e of entries) {
      if (e.type !== 'tree') continue;
      const files = folders.get(joinPath(parent, e.path));
      const has = files !== undefined
        ? files !== null && (isPrepared(files) ? files.entries.some((f) => f.path === KUSTOMIZATION) : files.has(KUSTOMIZATION))
        : state.kustomized.has(e.path); // a folder left as it was
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

async function* toAsync<T>(items: Iterable<T>): AsyncGenerator<T> {
  yield* items;
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
    if (state.ownedTrees.size === 0) return undefined;
    const folders = new Map<string, Map<string, string> | null>([...state.ownedTrees.keys()].map((d) => [joinPath(parent, d), null]));
    const tree = await buildRepoTree(deps.repo, state, folders);
    const removed: string[] = [];
    for (const d of state.ownedTrees.keys()) for (const f of (await state.filesOf(d)).keys()) removed.push(`${joinPath(parent, d)}/${f}`);
    removed.sort();
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
 * Whether an object's transform reads the file last written for it: a workload the source has
 * at 0 replicas (its remembered count) and, in mode SOPS, a Secret (its unchanged ciphertext).
 */
function readsPrevious(o: KubeObject, secretsMode: string): boolean {
  return readsLastRendering(o) || (isSecret(o) && secretsMode === 'SOPS');
}

/** The previously written files of one namespace that the transforms need (readsPrevious), parsed, by file name. */
async function loadPrevious(repo: GitRepo, ns: SourceNamespace, prevFiles: Map<string, string> | undefined, secretsMode: string): Promise<Map<string, KubeObject>> {
  const out = new Map<string, KubeObject>();
  if (!prevFiles) return out;
  for (const o of ns.listed) {
    if (!readsPrevious(o, secretsMode)) continue;
    const file = objectFileName(o);
    const oid = prevFiles.get(file);
    if (oid === undefined) continue;
    const obj = parseYaml(await repo.readBlob(oid)) as KubeObject | null;
    if (obj && isRecord(obj)) out.set(file, obj);
  }
  return out;
}

interface Rendered {
  skipped: Skipped[];
  errors: ObjectError[];
  warnings: string[];
  /** Objects written, by kind (the objects themselves are not kept: memory stays per namespace;
   * the render cache keeps ~150 bytes per object). */
  counts: Record<string, number>;
  reused: number;
  notOwned: SyncResult['notOwned'];
  /** The folder to write (hashed already), or undefined when it is not ours to write. */
  folder?: { path: string; files: Awaited<ReturnType<GitRepo['prepareFolder']>> };
}

/**
 * What a namespace's folder is rendered from besides the render cache's scope: each object as
 * read (its cache key, in list order), the source Namespace, and `rules` (what the prune rules
 * see). Undefined when an object cannot be keyed.
 */
function folderInputs(ns: SourceNamespace, rules: string): string | undefined {
  const md = ns.object?.metadata;
  if (md && !(md.uid && md.resourceVersion)) return undefined;
  // One string, hashed once: a hash update per object cost more than the hashing itself.
  const keys = [rules, ns.destination, md ? `${md.uid}\0${md.resourceVersion}` : '-'];
  for (const o of ns.listed) {
    const key = RenderCache.keyOf(o);
    if (key === undefined) return undefined;
    keys.push(key);
  }
  return createHash('sha1').update(keys.join('\n')).digest('hex');
}

/** One namespace: its objects transformed and rendered, merged with what its folder keeps, and hashed. */
async function renderSourceNamespace(ns: SourceNamespace, spec: SyncSpec, src: Pick<SourceRead, 'served'>, state: RepoState, deps: SyncDeps, rules: string): Promise<Rendered> {
  const parent = state.parent;
  const out: Rendered = { skipped: [], errors: [], warnings: [...ns.warnings], counts: {}, reused: 0, notOwned: [] };
  const foreignOwner = state.foreign.get(ns.destination);
  if (foreignOwner !== undefined) {
    const folder = joinPath(parent, ns.destination);
    out.notOwned.push({ folder, owner: foreignOwner || undefined });
    out.errors.push({
      ref: `Namespace ${ns.destination}`, file: NAMESPACE_FILE,
      message: foreignOwner
        ? `the DR repository folder ${folder} belongs to Replication ${foreignOwner}; choose another destination namespace or git path`
        : `the DR repository folder ${folder} was not written by dr-syncer (it has no namespace.yaml naming a Replication), so it is left as it is; choose another destination namespace or git path, or remove the folder`,
    });
    return out;
  }
  const cache = deps.renderCache;
  // (SOPS: the ciphertext also depends on the digest key, which is not an input here.)
  const inputs = cache && spec.plan.secretsMode !== 'SOPS' && ns.warnings.length === 0 && ns.failedTypes.length === 0 ? folderInputs(ns, rules) : undefined;
  const memo = inputs === undefined ? undefined : cache!.getFolder(ns.destination);
  if (memo && memo.inputs === inputs && memo.tree === state.ownedTrees.get(ns.destination)) {
    // Nothing the folder is rendered from changed, and it is as that sync left it: left as it is.
    cache!.keepFolder(ns.destination, memo, true);
    out.counts = memo.counts;
    out.skipped.push(...memo.skipped);
    out.reused = Object.values(memo.counts).reduce((a, b) => a + b, 0);
    return out;
  }
  const prevFiles = state.ownedTrees.has(ns.destination) ? await state.filesOf(ns.destination) : undefined;
  const previous = await loadPrevious(deps.repo, ns, prevFiles, spec.plan.secretsMode);
  const prevOf = (o: KubeObject) => previous.get(objectFileName(o));
  // Objects whose transform reads their last file are rendered every time.
  const cacheKey = (o: KubeObject) => (cache && !readsPrevious(o, spec.plan.secretsMode) ? RenderCache.keyOf(o) : undefined);
  // An unchanged object keeps its file when the folder still holds exactly that blob.
  const reusedFiles = new Set<string>();
  const reuse = (o: KubeObject): ReusedFile | undefined => {
    const key = cacheKey(o);
    const hit = key === undefined ? undefined : cache!.get(ns.destination, key);
    // Only the object's own file, once: an entry (of a broken cache file) naming another
    // object's file would leave this object's file unrendered, and pruned.
    if (!hit || hit.file !== objectFileName(o) || reusedFiles.has(hit.file) || prevFiles?.get(hit.file) !== hit.oid) return undefined;
    reusedFiles.add(hit.file);
    cache!.keep(ns.destination, key!, hit);
    return hit;
  };
  const plan: NamespacePlan = planNamespace(ns.listed, ns.source, ns.destination, spec.plan, previous.size ? prevOf : undefined, reuse);
  out.skipped.push(...plan.skipped);
  out.errors.push(...plan.errors);
  let objects = plan.objects;
  if (plan.secrets.length) {
    if (!deps.sealSecrets) throw new SyncError('SecretsModeUnsupported', 'secrets.mode SOPS needs a sealer');
    objects = [...objects, ...(await deps.sealSecrets(plan.secrets, prevOf))];
  }
  out.counts = plan.counts;
  out.reused = plan.reused.size;
  const owner: Owner = { replication: spec.replication, sourceCluster: spec.sourceCluster };
  const folder = renderNamespace(parent, { sourceNamespace: ns.source, destinationNamespace: ns.destination, source: ns.object, objects, reused: plan.reused }, owner);
  if (prevFiles) {
    // Files not rendered this time: pruned only when this sync knows their objects are gone (core/prune.ts).
    const ctx: PruneContext = { prune: spec.git.prune, served: src.served, failed: new Set(ns.failedTypes.map((t) => typeKeyOf(t))) };
    const failedFiles = new Set(plan.errors.map((e) => e.file));
    const unserved: string[] = [];
    for (const [file, oid] of prevFiles) {
      if (folder.files.has(file) || folder.unchanged.has(file) || file === KUSTOMIZATION) continue;
      const fate = previousFileFate(fileObjectType(await deps.repo.readBlob(oid)), failedFiles.has(file), ctx);
      if (fate === 'prune') continue;
      folder.unchanged.set(file, oid);
      if (fate === 'keep-unserved') unserved.push(file);
    }
    if (unserved.length) out.warnings.push(`${joinPath(parent, ns.destination)}: kept ${unserved.length} file(s) of types the source cluster does not serve now: ${unserved.slice(0, 5).join(', ')}${unserved.length > 5 ? ', …' : ''}`);
    folder.files.set(KUSTOMIZATION, kustomization([...folder.files.keys(), ...folder.unchanged.keys()].filter((f) => f !== KUSTOMIZATION)));
  }
  const prepared = await deps.repo.prepareFolder(folder.files, state.ownedTrees.get(ns.destination), folder.unchanged);
  // renderNamespace writes our namespace.yaml (naming this Replication) into every folder.
  rememberTree(prepared.tree, { owner: spec.replication, kustomization: prepared.entries.some((e) => e.path === KUSTOMIZATION) }, cache);
  if (cache) {
    // What was rendered now is what the next sync can reuse while its object stays the same.
    const oids = new Map(prepared.entries.map((e) => [e.path, e.oid]));
    for (const obj of plan.objects) {
      const source = plan.sourceOf.get(obj);
      const key = source && cacheKey(source);
      const file = objectFileName(obj);
      const oid = oids.get(file);
      if (key !== undefined && oid !== undefined) cache.keep(ns.destination, key, { file, oid, kind: groupKind(obj) });
    }
    if (inputs !== undefined && out.errors.length === 0 && out.warnings.length === 0) {
      cache.keepFolder(ns.destination, { inputs, tree: prepared.tree, counts: out.counts, skipped: out.skipped });
    }
  }
  out.folder = { path: folder.folder, files: prepared };
  return out;
}

type Phases = SyncResult['phases'];

/** A sync rendered onto one state of the repository: the new tree and what the result reports. */
interface RenderedSync {
  tree: string;
  base: Omit<SyncResult, 'commit' | 'head' | 'durationMs' | 'changes'>;
}

/** Reads the namespaces as they stream in, renders each onto `state`, and builds the new root tree. */
async function renderSync(spec: SyncSpec, deps: SyncDeps, src: SourceStream, state: RepoState, phases: Phases, attempt: number): Promise<RenderedSync> {
  const parent = state.parent;
  let mark = performance.now();
  const errors: ObjectError[] = [];
  const skipped: Skipped[] = [];
  const warnings = [...src.warnings];
  const folders: FolderChanges = new Map();
  const written: Record<string, number> = {};
  let reused = 0;
  const notOwned: SyncResult['notOwned'] = [];
  const namespaces: SyncResult['namespaces'] = [];

  let renderMs = 0;
  deps.renderCache?.begin({ plan: spec.plan, replication: spec.replication, sourceCluster: spec.sourceCluster, serverVersion: src.serverVersion });
  // What decides the fate of a folder's files that are not rendered (core/prune.ts), for folderInputs.
  const rules = JSON.stringify([spec.git.prune, [...src.served].sort()]);
  for await (const ns of src.namespaces) {
    const t = performance.now();
    namespaces.push({ source: ns.source, destination: ns.destination });
    const r = await renderSourceNamespace(ns, spec, src, state, deps, rules);
    skipped.push(...r.skipped);
    errors.push(...r.errors);
    warnings.push(...r.warnings);
    for (const [kind, n] of Object.entries(r.counts)) written[kind] = (written[kind] ?? 0) + n;
    reused += r.reused;
    notOwned.push(...r.notOwned);
    if (r.folder) folders.set(r.folder.path, r.folder.files);
    renderMs += performance.now() - t;
  }
  deps.renderCache?.end();
  // Reading and rendering overlap: `read` is the wall time of both less the time spent rendering.
  phases.read += Math.round(performance.now() - mark - renderMs);
  phases.render += Math.round(renderMs);
  mark = performance.now();
  // Folders this Replication wrote before but no longer selects (a namespace lost its label or
  // is gone) go with prune on; folders of namespaces being deleted are left as they are.
  const selected = new Set([...namespaces.map((n) => n.destination), ...src.frozen]);
  for (const dest of state.ownedTrees.keys()) {
    if (selected.has(dest)) continue;
    if (spec.git.prune) folders.set(joinPath(parent, dest), null);
    else warnings.push(`${joinPath(parent, dest)}: its namespace is no longer selected; kept because git.prune is false`);
  }

  const after = new Map<string, string>();
  const tree = await buildRepoTree(deps.repo, state, folders, after);

  const before = new Map<string, string>();
  // Only folders this sync rewrote or removed: a folder left as it was (frozen, or kept with
  // prune off) is not in `after`, and must not be reported as removed.
  for (const dest of state.ownedTrees.keys()) {
    if (!folders.has(joinPath(parent, dest))) continue;
    for (const [f, oid] of await state.filesOf(dest)) before.set(`${joinPath(parent, dest)}/${f}`, oid);
  }
  const diff = tree === state.snapshot.tree ? { added: [], changed: [], removed: [] } : diffFiles(before, after);
  const counts = Object.fromEntries(Object.entries(written).sort(([a], [b]) => a.localeCompare(b)));
  phases.write += Math.round(performance.now() - mark);
  return { tree, base: { diff, counts, skipped, errors, warnings, attempts: attempt, phases, notOwned, namespaces, reused, exact: warnings.length === 0 && errors.length === 0 } };
}

const streamOf = (read: SourceRead): SourceStream => ({ ...read, namespaces: toAsync(read.namespaces), cancel: () => {} });

export async function runSync(spec: SyncSpec, deps: SyncDeps): Promise<SyncResult> {
  const started = Date.now();
  const log = deps.log ?? silentLogger;
  const now = deps.now ?? (() => new Date());
  const parent = normalizeRepoPath(spec.git.path);

  const phases: Phases = { read: 0, fetch: 0, render: 0, write: 0, push: 0 };
  const timed = async <T>(phase: keyof Phases, p: Promise<T>): Promise<T> => {
    const t = performance.now();
    try {
      return await p;
    } finally {
      phases[phase] += Math.round(performance.now() - t);
    }
  };
  // The source and the repository are read at the same time: neither needs the other. The
  // namespaces stream in: each is rendered and hashed while the next ones are listed.
  const openSrc = () => openSyncSource(spec, { source: deps.source, log });
  const readBoth = async (read?: SourceRead): Promise<[SourceStream, RepoState]> => {
    const opening = read ? Promise.resolve(streamOf(read)) : openSrc();
    try {
      // The render cache file's word on which folders are whose is taken here, and checked below before anything is written.
      return await timed('fetch', Promise.all([opening, readRepoState(deps.repo, parent, spec.replication, undefined, deps.renderCache, true)]));
    } catch (err) {
      // The repository could not be read: the LISTs already started stop.
      void opening.then((s) => s.cancel(), () => {});
      throw err;
    }
  };
  let [src, state] = await readBoth(deps.read);
  const maxAttempts = deps.maxAttempts ?? 5;
  for (let attempt = 1; ; attempt++) {
    // The branch moved: someone may have written a newer read of the same source there, so
    // read the source again too; re-rendering the old read could roll that back.
    if (attempt > 1) [src, state] = await readBoth();
    let rendered: RenderedSync;
    try {
      rendered = await renderSync(spec, deps, src, state, phases, attempt);
    } finally {
      src.cancel();
    }
    const { tree, base } = rendered;

    // About to write, or to report a folder as not ours, on the render cache file's word: the
    // trees it spoke for are read first. Wrong (a broken or foreign file): everything is read
    // again, without it. A sync that writes nothing and reports nothing needs no check.
    if ((tree !== state.snapshot.tree || base.notOwned.length > 0) && state.claims.size > 0 && !(await verifyClaims(deps.repo, state, deps.renderCache))) {
      log.warn({ replication: spec.replication }, 'the render cache file was wrong about a folder of the DR repository (its owner or its kustomization.yaml); reading the repository again without it');
      continue;
    }
    if (tree === state.snapshot.tree) {
      return { ...base, head: state.snapshot.commit, durationMs: Date.now() - started, ...(deps.dryRun ? { changes: [] } : {}) };
    }
    if (deps.dryRun) {
      // Read from the two trees, so the changes are exactly the commit's: every folder, the base
      // path's kustomization.yaml and anything else buildRepoTree touched.
      const changes = await treeChanges(deps.repo, state.snapshot.tree, tree);
      return { ...base, head: state.snapshot.commit, changes, durationMs: Date.now() - started };
    }
    const commit = await commitSync(spec, deps, base, tree, state.snapshot.commit, now());
    deps.signal?.throwIfAborted();
    try {
      await timed('push', deps.repo.push(commit, state.snapshot.commit));
      log.info({ commit, added: base.diff.added.length, changed: base.diff.changed.length, removed: base.diff.removed.length }, 'committed');
      return { ...base, commit, head: commit, durationMs: Date.now() - started };
    } catch (err) {
      if (!(err instanceof PushConflictError) || attempt >= maxAttempts) throw err;
      log.info({ attempt, err: err.message }, 'branch moved; re-rendering onto the new head');
      await backoff(attempt);
    }
  }
}

function commitSync(spec: SyncSpec, deps: SyncDeps, r: RenderedSync['base'], tree: string, parent: string | undefined, at: Date): Promise<string> {
  const message = commitMessage({ replication: spec.replication, sourceCluster: spec.sourceCluster, diff: r.diff, counts: r.counts, notes: r.warnings });
  return deps.repo.commit(tree, parent, message, spec.git.author, at);
}

/** One Replication's sync in a group: its source read already (outside the repository lock). */
export interface GroupSync {
  spec: SyncSpec;
  deps: SyncDeps & { read: SourceRead };
}

/**
 * Group commit: the syncs of several Replications writing to one repository branch (the same
 * GitRepo), each rendered onto the one before, each its own commit, and one push for all of
 * them. Every sync stays exactly what it would be alone, one after the other: each sees the
 * folders the ones before it wrote. One push instead of one per Replication is what makes 50
 * Replications sharing a repository cost little more than one. When the push is rejected
 * because the branch moved, every sync of the group runs again on its own (runSync, with its
 * fresh read and retries), so nothing is lost to the compare-and-swap. Results in `jobs` order.
 */
export async function runSyncGroup(jobs: readonly GroupSync[], repo: GitRepo): Promise<PromiseSettledResult<SyncResult>[]> {
  if (jobs.length === 1) return Promise.allSettled([runSync(jobs[0]!.spec, jobs[0]!.deps)]);
  const started = Date.now();
  const out: (PromiseSettledResult<SyncResult> | undefined)[] = [];
  let start: Snapshot;
  try {
    start = await repo.fetch();
  } catch (err) {
    return jobs.map(() => ({ status: 'rejected', reason: err }));
  }
  let tip = start;
  const committed: number[] = [];
  for (const [i, job] of jobs.entries()) {
    const phases: Phases = { read: 0, fetch: 0, render: 0, write: 0, push: 0 };
    try {
      const deps = { ...job.deps, repo };
      const state = await readRepoState(repo, normalizeRepoPath(job.spec.git.path), job.spec.replication, tip, job.deps.renderCache);
      const { tree, base } = await renderSync(job.spec, deps, streamOf(job.deps.read), state, phases, 1);
      if (tree === tip.tree) {
        out[i] = { status: 'fulfilled', value: { ...base, head: tip.commit, durationMs: Date.now() - started } };
        continue;
      }
      const commit = await commitSync(job.spec, deps, base, tree, tip.commit, (job.deps.now ?? (() => new Date()))());
      tip = { commit, tree };
      committed.push(i);
      out[i] = { status: 'fulfilled', value: { ...base, commit, head: commit, durationMs: 0 } };
    } catch (err) {
      out[i] = { status: 'rejected', reason: err };
    }
  }
  if (committed.length) {
    try {
      for (const i of committed) jobs[i]!.deps.signal?.throwIfAborted();
      const t = performance.now();
      await repo.push(tip.commit!, start.commit);
      const pushMs = Math.round(performance.now() - t);
      for (const r of out) {
        if (r?.status !== 'fulfilled') continue;
        // Every sync of the group left the branch at the pushed tip.
        r.value.head = tip.commit;
        if (!r.value.commit) continue;
        r.value.phases.push = pushMs;
        r.value.durationMs = Date.now() - started;
        jobs[out.indexOf(r)]!.deps.log?.info({ commit: r.value.commit, group: committed.length }, 'committed');
      }
    } catch (err) {
      // Every sync from the first commit on was judged on top of commits that did not land
      // (a sync with nothing to change too: its head would name one).
      const affected = out.map((r, i) => (r?.status === 'fulfilled' && i >= committed[0]! ? i : -1)).filter((i) => i >= 0);
      if (!(err instanceof PushConflictError)) {
        for (const i of affected) out[i] = { status: 'rejected', reason: err };
      } else {
        // The branch moved under the group: each sync on its own, as if there were no group.
        for (const i of affected) {
          const { read: _stale, ...deps } = jobs[i]!.deps;
          out[i] = await runSync(jobs[i]!.spec, { ...deps, repo }).then(
            (value) => ({ status: 'fulfilled' as const, value: { ...value, attempts: value.attempts + 1 } }),
            (reason: unknown) => ({ status: 'rejected' as const, reason }),
          );
        }
      }
    }
  }
  return out.map((r) => r!);
}
