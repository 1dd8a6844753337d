// Render cache: an object the source has not changed since the last sync renders to the same
// file, so its blob id is taken from the last sync instead of transforming, emitting and hashing
// it again. Why: a no-op resync of 10,000 objects spent ~0.45 s of its one thread rendering
// files that were already in the repository (CPU profile in docs/benchmarks.md, issue 12).
//
// What a rendering depends on, and so what must be equal for an entry to be used:
// - the object as read: its type as listed (apiVersion, kind), uid and resourceVersion, and the
//   destination namespace (the key);
// - the options, the Replication, the source server's version (an upgrade can change what an
//   unchanged object reads as) and the rendering code itself (src/core, hashed) (the scope).
// An entry is only used when the folder's last tree still holds that file with that blob (the
// caller checks), so a file changed or deleted in the repository by hand is rendered again, and
// a tree never names a blob the local store lacks. Objects whose transform reads their last file
// (a workload at 0 replicas, a SOPS Secret) are never cached.
// Trust: a file kept between processes can at worst make a sync find nothing to write (a stale
// entry keeps an old file). It never makes one delete: an entry is used only for its object's
// own file, and what it says of whose folders are whose is a claim, read from the trees before
// anything is written (engine.ts, verifyClaims).
import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ReusedFile } from '../core/plan.ts';
import type { KubeObject, Skipped } from '../core/types.ts';
import { errorMessage } from '../util/errors.ts';
import type { Logger } from '../util/log.ts';
import { VERSION } from '../version.ts';

/**
 * A whole destination folder as the last sync left it: when its inputs (every object's key in
 * list order, the Namespace, what the prune rules see) are the same and the folder still is
 * `tree`, nothing in it is rendered at all. What the sync reports for it is kept with it.
 */
export interface FolderMemo {
  inputs: string;
  tree: string;
  counts: Record<string, number>;
  skipped: Skipped[];
}

/** One folder's entries, object key → file; persisted as one JSON string, parsed on first use. */
class FolderEntries {
  private map?: Map<string, ReusedFile>;
  constructor(private raw?: string) {
    if (raw === undefined) this.map = new Map();
  }

  /** The entries; a persisted string of another shape gives none (it is only a cache). */
  get entries(): Map<string, ReusedFile> {
    if (!this.map) {
      this.map = new Map();
      try {
        const list: unknown = JSON.parse(this.raw!);
        if (Array.isArray(list) && list.every(isEntry)) for (const [key, file, oid, kind] of list) this.map.set(key, { file, oid, kind });
      } catch {
        // an empty folder cache
      }
      this.raw = undefined;
    }
    return this.map;
  }

  serialize(): string {
    return this.raw ?? JSON.stringify([...this.map!].map(([key, e]) => [key, e.file, e.oid, e.kind]));
  }
}

/** What a destination folder's tree says about the folder (readRepoState): content-addressed. */
export interface FolderSummary {
  /** The Replication its namespace.yaml names ('' when none does). */
  owner: string;
  /** Whether it has a kustomization.yaml. */
  kustomization: boolean;
}

interface Persisted {
  scope: string;
  /** The build that wrote `trees` (VERSION and the rendering code): another build's claims are not used. */
  build: string;
  trees: [tree: string, owner: string, kustomization: boolean][];
  /** Per destination folder: its memo (or null) and its entries (FolderEntries, serialized). */
  folders: [destination: string, memo: FolderMemo | null, entries: string][];
}

let codeDigest: string | undefined;
/**
 * A digest of the rendering code as this process runs it (src/core, .ts or compiled .js): a
 * cache kept by another build of dr-syncer is not used. (VERSION alone does not change with
 * every build.) When the code cannot be read, a value of this process alone: nothing kept
 * by another process is used.
 */
function renderCodeDigest(): string {
  if (codeDigest) return codeDigest;
  const h = createHash('sha256');
  const walk = (dir: string) => {
    for (const e of fs.readdirSync(dir, { withFileTypes: true }).sort((a, b) => (a.name < b.name ? -1 : 1))) {
      const p = path.join(dir, e.name);
      if (e.isDirectory()) walk(p);
      // (Source maps do not change what the code does: half the bytes, not read.)
      else if (!e.name.endsWith('.map')) h.update(`${e.name}\0`).update(fs.readFileSync(p));
    }
  };
  try {
    walk(fileURLToPath(new URL('../core/', import.meta.url)));
  } catch {
    h.update(randomBytes(16));
  }
  return (codeDigest = h.digest('hex'));
}

const thisBuild = (): string => `${VERSION} ${renderCodeDigest()}`;

const OID = /^[0-9a-f]{40}$/;
const isEntry = (e: unknown): e is [string, string, string, string] =>
  Array.isArray(e) && e.length === 4 && e.every((x) => typeof x === 'string') && OID.test(e[2] as string) && (e[1] as string).endsWith('.yaml');
const isTree = (e: unknown): e is Persisted['trees'][number] =>
  Array.isArray(e) && e.length === 3 && typeof e[0] === 'string' && OID.test(e[0]) && typeof e[1] === 'string' && typeof e[2] === 'boolean';
const isRecordOf = (v: unknown, item: (x: unknown) => boolean): boolean =>
  typeof v === 'object' && v !== null && !Array.isArray(v) && Object.values(v).every(item);
const isSkipped = (s: unknown): boolean => isRecordOf(s, (x) => typeof x === 'string') && ['kind', 'namespace', 'name', 'reason'].every((k) => k in (s as object));
const isMemo = (v: unknown): v is FolderMemo => {
  const m = v as Partial<FolderMemo> | null;
  return typeof m === 'object' && m !== null && typeof m.inputs === 'string' && typeof m.tree === 'string' && OID.test(m.tree) &&
    isRecordOf(m.counts, (n) => Number.isInteger(n)) && Array.isArray(m.skipped) && m.skipped.every(isSkipped);
};
const isFolder = (e: unknown): e is Persisted['folders'][number] =>
  Array.isArray(e) && e.length === 3 && typeof e[0] === 'string' && (e[1] === null || isMemo(e[1])) && typeof e[2] === 'string';

/** At most this many folder summaries are remembered: they are content-addressed, so old ones just fall out. */
const MAX_TREES = 10_000;

export class RenderCache {
  private scope = '';
  /** Per destination folder. */
  private entries = new Map<string, FolderEntries>();
  /** Entries used or added by the sync under way: what the next one can use (see begin()). */
  private next = new Map<string, FolderEntries>();
  private folders = new Map<string, FolderMemo>();
  private nextFolders = new Map<string, FolderMemo>();
  /** Changes since the cache was loaded, and how many of them its file holds (save()). */
  private changes = 0;
  private saved = 0;
  /** The write under way: one at a time, in order, so an earlier write never replaces a later one. */
  private saving: Promise<void> = Promise.resolve();
  /** Called at the end of each end(): withKeptRenderCache writes the file there. */
  onEnd?: () => void;
  /** A destination folder's tree id → what it says about the folder, as this process read or wrote it. */
  private readonly trees = new Map<string, FolderSummary>();
  /**
   * The same, as the file this cache was loaded from says: claims, good enough to find that
   * nothing needs writing, but checked against the trees before anything is written
   * (engine.ts, verifyClaims): a broken or foreign file must never make a sync delete a folder.
   */
  private readonly claimed = new Map<string, FolderSummary>();
  /** Trees looked up or remembered since this cache was loaded: what save() keeps. */
  private readonly usedTrees = new Set<string>();

  /** The cache key of an object within its destination folder, or undefined when it cannot be cached. */
  static keyOf(obj: KubeObject): string | undefined {
    const { uid, resourceVersion } = obj.metadata;
    // The type too: one object can be listed through two types (ingresses.extensions and
    // ingresses.networking.k8s.io), or read at another version once the server prefers it.
    return uid && resourceVersion ? `${obj.apiVersion}\0${obj.kind}\0${uid}\0${resourceVersion}` : undefined;
  }

  /**
   * Starts a sync rendered with `options` (everything besides the object that decides its file).
   * Entries of other options or another dr-syncer version are dropped; entries the sync does not
   * use are dropped at its end(), so the cache holds what the source holds, no more.
   */
  begin(options: unknown): void {
    const scope = createHash('sha256').update(JSON.stringify([VERSION, renderCodeDigest(), options])).digest('hex');
    if (scope !== this.scope) {
      this.scope = scope;
      this.entries = new Map();
      this.folders = new Map();
      this.changes++;
    }
    this.next = new Map();
    this.nextFolders = new Map();
  }

  get(destination: string, key: string): ReusedFile | undefined {
    return this.entries.get(destination)?.entries.get(key);
  }

  /** Keeps an entry for the next sync (one that was used, or a file just rendered). */
  keep(destination: string, key: string, entry: ReusedFile): void {
    const old = this.get(destination, key);
    if (old?.file !== entry.file || old.oid !== entry.oid || old.kind !== entry.kind) this.changes++;
    let next = this.next.get(destination);
    if (!next || next === this.entries.get(destination)) {
      const carried = next?.entries;
      this.next.set(destination, (next = new FolderEntries()));
      for (const [k, e] of carried ?? []) next.entries.set(k, e);
    }
    next.entries.set(key, entry);
  }

  getFolder(destination: string): FolderMemo | undefined {
    return this.folders.get(destination);
  }

  /** Keeps a folder's memo for the next sync; `unchanged`: its entries too, all of them, as they are. */
  keepFolder(destination: string, memo: FolderMemo, unchanged = false): void {
    const old = this.folders.get(destination);
    if (old?.inputs !== memo.inputs || old.tree !== memo.tree) this.changes++;
    this.nextFolders.set(destination, memo);
    const entries = this.entries.get(destination);
    if (unchanged && entries) this.next.set(destination, entries);
  }

  /** The sync rendered every namespace: the next one starts from what this one kept. */
  end(): void {
    if (this.next.size !== this.entries.size || this.nextFolders.size !== this.folders.size) this.changes++;
    for (const [dest, next] of this.next) {
      const old = this.entries.get(dest);
      if (next !== old && next.entries.size !== old?.entries.size) this.changes++;
    }
    this.entries = this.next;
    this.folders = this.nextFolders;
    this.next = new Map();
    this.nextFolders = new Map();
    this.onEnd?.();
  }

  /** What this process knows of a folder tree (`verified`), or else what the loaded file claims. */
  treeSummary(tree: string): { summary: FolderSummary; verified: boolean } | undefined {
    const known = this.trees.get(tree);
    const summary = known ?? this.claimed.get(tree);
    if (!summary) return undefined;
    this.usedTrees.add(tree);
    return { summary, verified: known !== undefined };
  }

  /** A folder tree's summary, read or written by this process. */
  rememberTree(tree: string, summary: FolderSummary): void {
    const before = this.trees.get(tree) ?? this.claimed.get(tree);
    this.claimed.delete(tree);
    this.usedTrees.add(tree);
    // Least recently used out first: the trees in use now stay.
    this.trees.delete(tree);
    if (this.trees.size >= MAX_TREES) {
      const oldest = this.trees.keys().next().value!;
      this.trees.delete(oldest);
      this.usedTrees.delete(oldest);
    }
    this.trees.set(tree, summary);
    if (before?.owner !== summary.owner || before.kustomization !== summary.kustomization) this.changes++;
  }

  /** Forgets what the loaded file claimed: it named a wrong owner (verifyClaims). */
  dropClaims(): void {
    if (this.claimed.size) this.changes++;
    for (const tree of this.claimed.keys()) this.usedTrees.delete(tree);
    this.claimed.clear();
  }

  /** Trees known or claimed (for tests). */
  get treeCount(): number {
    return this.trees.size + this.claimed.size;
  }

  /** Entries in all folders (parses them all: for tests and logs). */
  get size(): number {
    let n = 0;
    for (const f of this.entries.values()) n += f.entries.size;
    return n;
  }

  /** Where a one-shot process keeps the cache of a Replication's syncs into `repo` (undefined: not kept). */
  static fileFor(repo: { cacheFile(name: string): string | undefined }, replication: string, sourceCluster: string): string | undefined {
    const id = createHash('sha256').update(JSON.stringify([replication, sourceCluster])).digest('hex').slice(0, 16);
    return repo.cacheFile(`render-${id}.json`);
  }

  /** A cache saved by save(); an empty one when the file is missing, unreadable or not of this shape (it is only a cache). */
  static async load(file: string | undefined): Promise<RenderCache> {
    const cache = new RenderCache();
    if (file === undefined) return cache;
    try {
      const p = JSON.parse(await fs.promises.readFile(file, 'utf8')) as Partial<Persisted>;
      if (typeof p.scope !== 'string' || typeof p.build !== 'string' || !Array.isArray(p.trees) || !Array.isArray(p.folders)) return cache;
      if (!p.trees.every(isTree) || !p.folders.every(isFolder)) return cache;
      cache.scope = p.scope;
      if (p.build === thisBuild()) for (const [tree, owner, kustomization] of p.trees.slice(-MAX_TREES)) cache.claimed.set(tree, { owner, kustomization });
      for (const [dest, memo, entries] of p.folders) {
        if (memo) cache.folders.set(dest, memo);
        cache.entries.set(dest, new FolderEntries(entries));
      }
      return cache;
    } catch {
      return new RenderCache();
    }
  }

  /** Writes the cache when it changed; by rename, so no reader (another process) sees half a file. */
  save(file: string | undefined): Promise<void> {
    const write = this.saving.then(() => this.write(file));
    this.saving = write.catch(() => {});
    return write;
  }

  /** Settles when no write is under way. */
  idle(): Promise<void> {
    return this.saving;
  }

  private async write(file: string | undefined): Promise<void> {
    if (this.changes === this.saved || file === undefined) return;
    const changes = this.changes;
    const dests = new Set([...this.entries.keys(), ...this.folders.keys()]);
    const p: Persisted = {
      scope: this.scope,
      build: thisBuild(),
      // Only the trees this process used: the folders of the repository now, and those it wrote.
      trees: [...this.usedTrees].flatMap((tree) => {
        const t = this.trees.get(tree) ?? this.claimed.get(tree);
        return t ? [[tree, t.owner, t.kustomization] as Persisted['trees'][number]] : [];
      }),
      folders: [...dests].map((d) => [d, this.folders.get(d) ?? null, this.entries.get(d)?.serialize() ?? '[]']),
    };
    await fs.promises.mkdir(path.dirname(file), { recursive: true });
    const tmp = `${file}.${randomBytes(6).toString('hex')}.tmp`;
    try {
      await fs.promises.writeFile(tmp, JSON.stringify(p), { flag: 'wx' });
      await fs.promises.rename(tmp, file);
    } catch (err) {
      await fs.promises.rm(tmp, { force: true });
      throw err;
    }
    this.saved = changes;
  }
}

/**
 * Runs a one-shot process's sync with the render cache kept in the repository's cache folder
 * between runs (`dr-syncer sync`): a resync renders only the objects that changed.
 */
export async function withKeptRenderCache<T>(
  repo: { cacheFile(name: string): string | undefined },
  spec: { replication: string; sourceCluster: string },
  log: Pick<Logger, 'warn'>,
  run: (cache: RenderCache) => Promise<T>,
): Promise<T> {
  const file = RenderCache.fileFor(repo, spec.replication, spec.sourceCluster);
  const cache = await RenderCache.load(file);
  // Written as soon as the sync has rendered, while it commits and pushes (a push mostly waits
  // for the Git server: ~40 ms of the full sync of 10,000 objects were this write after it); once
  // more at the end only if something changed since (a retry). What a failed write leaves
  // unsaved, the last save reports. The file may so describe a render whose push then failed:
  // harmless, as nothing in it is used unchecked (entries against the folder's blobs, folder
  // memos against its tree, claims read before anything is written).
  cache.onEnd = () => void cache.save(file).catch(() => {});
  let out: T;
  try {
    out = await run(cache);
  } finally {
    cache.onEnd = undefined;
    await cache.idle();
  }
  await cache.save(file).catch((err: unknown) => log.warn({ file, err: errorMessage(err) }, 'could not save the render cache; the next sync renders every object again'));
  return out;
}
