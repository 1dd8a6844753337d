// Render cache: an object the source has not changed since the last sync (same uid and
// resourceVersion), under the same options and dr-syncer version, renders to the same file, so
// its blob id is taken from the last sync instead of transforming, emitting and hashing it again.
// Why: a no-op resync of 10,000 objects spent ~0.45 s of its one thread rendering files that
// were already in the repository (CPU profile in docs/benchmarks.md, issue 12).
//
// Safety: an entry is only used when the folder's last tree still holds that exact file with
// that exact blob (the caller checks), so a file changed or deleted in the repository by hand is
// rendered again, and a tree never names a blob the local store lacks. Objects whose transform
// reads their previous file (a workload at 0 replicas, a SOPS Secret) are never cached.
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import type { KubeObject } from '../core/types.ts';
import { errorMessage } from '../util/errors.ts';
import type { Logger } from '../util/log.ts';
import { VERSION } from '../version.ts';

export interface CachedFile {
  file: string;
  oid: string;
}

interface Persisted {
  scope: string;
  entries: [key: string, file: string, oid: string][];
  owners: [oid: string, owner: string][];
}

/** At most this many namespace.yaml owners are remembered: they are content-addressed, so old ones just fall out. */
const MAX_OWNERS = 10_000;

export class RenderCache {
  private scope = '';
  private entries = new Map<string, CachedFile>();
  /** Entries used or added by the sync under way: what the next one can use (see begin()). */
  private next = new Map<string, CachedFile>();
  private dirty = false;
  /** namespace.yaml blob id → the Replication its annotation names ('' for none). Always valid: content-addressed. */
  readonly owners = new Map<string, string>();

  /** The cache key of an object in a destination namespace, or undefined when it cannot be cached. */
  static keyOf(obj: KubeObject, destination: string): string | undefined {
    const { uid, resourceVersion } = obj.metadata;
    return uid && resourceVersion ? `${destination}\0${uid}\0${resourceVersion}` : undefined;
  }

  /**
   * Starts a sync rendered with `options` (everything besides the object that decides its file).
   * Entries of other options or another dr-syncer version are dropped; entries the sync does not
   * use are dropped at its end(), so the cache holds what the source holds, no more.
   */
  begin(options: unknown): void {
    const scope = createHash('sha256').update(JSON.stringify([VERSION, options])).digest('hex');
    if (scope !== this.scope) {
      this.scope = scope;
      this.entries = new Map();
      this.dirty = true;
    }
    this.next = new Map();
  }

  get(key: string): CachedFile | undefined {
    return this.entries.get(key);
  }

  /** Keeps an entry for the next sync (one that was used, or a file just rendered). */
  keep(key: string, entry: CachedFile): void {
    const old = this.entries.get(key);
    if (old?.file !== entry.file || old.oid !== entry.oid) this.dirty = true;
    this.next.set(key, entry);
  }

  /** The sync rendered every namespace: the next one starts from what this one kept. */
  end(): void {
    if (this.next.size !== this.entries.size) this.dirty = true;
    this.entries = this.next;
    this.next = new Map();
  }

  rememberOwner(oid: string, owner: string): void {
    if (this.owners.size >= MAX_OWNERS) this.owners.delete(this.owners.keys().next().value!);
    if (!this.owners.has(oid)) this.dirty = true;
    this.owners.set(oid, owner);
  }

  get size(): number {
    return this.entries.size;
  }

  /** Where a one-shot process keeps the cache of a Replication's syncs into `repo` (undefined: not kept). */
  static fileFor(repo: { cacheFile(name: string): string | undefined }, replication: string, sourceCluster: string): string | undefined {
    const id = createHash('sha256').update(JSON.stringify([replication, sourceCluster])).digest('hex').slice(0, 16);
    return repo.cacheFile(`render-${id}.json`);
  }

  /** A cache saved by save(); an empty one when the file is missing or unreadable (it is only a cache). */
  static async load(file: string | undefined): Promise<RenderCache> {
    const cache = new RenderCache();
    if (file === undefined) return cache;
    try {
      const p = JSON.parse(await fs.promises.readFile(file, 'utf8')) as Persisted;
      cache.scope = p.scope;
      for (const [key, f, oid] of p.entries) cache.entries.set(key, { file: f, oid });
      for (const [oid, owner] of p.owners) cache.owners.set(oid, owner);
    } catch {
      return new RenderCache();
    }
    return cache;
  }

  /** Writes the cache when it changed (atomically: a crash leaves the old file or the new one). */
  async save(file: string | undefined): Promise<void> {
    if (!this.dirty || file === undefined) return;
    const p: Persisted = {
      scope: this.scope,
      entries: [...this.entries].map(([key, e]) => [key, e.file, e.oid]),
      owners: [...this.owners],
    };
    await fs.promises.mkdir(path.dirname(file), { recursive: true });
    const tmp = `${file}.${process.pid}.tmp`;
    await fs.promises.writeFile(tmp, JSON.stringify(p));
    await fs.promises.rename(tmp, file);
    this.dirty = false;
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
  const out = await run(cache);
  await cache.save(file).catch((err: unknown) => log.warn({ file, err: errorMessage(err) }, 'could not save the render cache; the next sync renders every object again'));
  return out;
}
