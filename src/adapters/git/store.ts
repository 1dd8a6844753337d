// The object store of a gitdir, read and written here: node:crypto, node:zlib, and the pack
// index searched in place. (isomorphic-git read every object through a fresh FileSystem
// wrapper, a failed loose-file read, a readdir of objects/pack and pako: about 1 ms per object,
// the main cost of a no-op sync; it still does the fetches, into packs this store reads.)
// A big batch of new objects becomes one pack instead of thousands of loose files. Objects are
// immutable, so parsed trees and blob contents are cached by oid (bounded) for the life of
// the store.
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import zlib from 'node:zlib';
import type { GitObject, ObjectType, PackObject, TreeEntry } from './objects.ts';
import {
  applyDelta, decodeLoose, EMPTY_TREE, encodeLoose, encodePack, encodePackIndex, hashObject, OFS_DELTA, PackIndex, packObject, packTypeName, parseCommit,
  parsePackEntryHeader, parseTree, REF_DELTA,
} from './objects.ts';

/** Fewer objects than this are written loose, more as one pack (git's own unpackLimit). */
const LOOSE_LIMIT = 100;
/** Bytes of parsed trees, and of blob contents, kept in memory (blobs: only those read). */
const CACHE_BYTES = 16 * 1024 * 1024;
/** Bytes of written-but-not-pushed objects kept ready (deflated) for the next push pack. */
const PENDING_BYTES = 32 * 1024 * 1024;

/** A map that forgets its oldest entries beyond a byte budget. */
class LruCache<V> {
  private readonly map = new Map<string, { v: V; size: number }>();
  private bytes = 0;
  constructor(private readonly budget: number) {}
  get(k: string): V | undefined {
    const e = this.map.get(k);
    if (!e) return undefined;
    this.map.delete(k);
    this.map.set(k, e);
    return e.v;
  }
  set(k: string, v: V, size: number): void {
    if (size > this.budget / 4) return;
    const old = this.map.get(k);
    if (old) {
      this.bytes -= old.size;
      this.map.delete(k);
    }
    this.map.set(k, { v, size });
    this.bytes += size;
    for (const [key, e] of this.map) {
      if (this.bytes <= this.budget) break;
      this.map.delete(key);
      this.bytes -= e.size;
    }
  }
}

export interface NewObject {
  oid: string;
  type: ObjectType;
  data: Buffer;
  /** Deflated already (GitRepo.prepareFolder), so a pack need not deflate it again. */
  packed?: PackObject;
}

/** isomorphic-git's order for tree entries (callers may rely on it): by name. */
const byPath = (a: TreeEntry, b: TreeEntry) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0);

export class ObjectNotFoundError extends Error {
  constructor(readonly oid: string) {
    super(`object ${oid} not found`);
    this.name = 'NotFoundError';
  }
}

interface Pack {
  file: string;
  index: PackIndex;
}

export class ObjectStore {
  /** Pack index file name → pack; indexes stay in memory (28 bytes per object). */
  private readonly packs = new Map<string, Pack>();
  private readonly bases = new LruCache<GitObject>(CACHE_BYTES / 2);
  private readonly trees = new LruCache<readonly TreeEntry[]>(CACHE_BYTES);
  private readonly blobs = new LruCache<string>(CACHE_BYTES);
  /** Written since the last push: for reads and for the next push pack without re-reading. */
  private readonly pending = new Map<string, { obj?: GitObject; packed?: PackObject }>();
  private pendingBytes = 0;
  /** Objects read from disk (a pack or a loose file) so far: what the caches did not answer. */
  diskReads = 0;

  constructor(readonly gitdir: string) {}

  async read(oid: string): Promise<GitObject> {
    return this.readSync(oid);
  }

  private readSync(oid: string): GitObject {
    const p = this.pending.get(oid)?.obj;
    if (p) return p;
    if (oid === EMPTY_TREE) return { type: 'tree', data: Buffer.alloc(0) };
    this.diskReads++;
    const o = this.readStored(oid) ?? (this.scanPacks() ? this.readStored(oid) : undefined);
    if (!o) throw new ObjectNotFoundError(oid);
    if (hashObject(o.type, o.data) !== oid) throw new Error(`object ${oid} is corrupt in ${this.gitdir} (its content hashes to something else)`);
    return o;
  }

  private readStored(oid: string): GitObject | undefined {
    const key = Buffer.from(oid, 'hex');
    for (const pack of this.packs.values()) {
      const offset = pack.index.find(key);
      if (offset >= 0) return this.readPacked(pack, offset, 0);
    }
    let file;
    try {
      file = fs.readFileSync(path.join(this.gitdir, 'objects', oid.slice(0, 2), oid.slice(2)));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw err;
    }
    return decodeLoose(file);
  }

  /** Looks for packs that appeared since the last look (fetched, or written by another store). */
  private scanPacks(): boolean {
    const dir = path.join(this.gitdir, 'objects', 'pack');
    let names: string[];
    try {
      names = fs.readdirSync(dir);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
      throw err;
    }
    let found = false;
    for (const name of names) {
      if (!name.endsWith('.idx') || this.packs.has(name)) continue;
      const file = path.join(dir, name.replace(/\.idx$/, '.pack'));
      let size;
      try {
        size = fs.statSync(file).size;
      } catch {
        continue; // an index whose pack is not there (yet)
      }
      try {
        this.packs.set(name, { file, index: new PackIndex(fs.readFileSync(path.join(dir, name)), size) });
        found = true;
      } catch (err) {
        // Being written right now (by a fetch of another GitRepo), or broken: the next look retries.
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT' && !(err instanceof Error && /pack index/.test(err.message))) throw err;
      }
    }
    return found;
  }

  private readPacked(pack: Pack, offset: number, depth: number): GitObject {
    const key = `${pack.file}:${offset}`;
    const hit = this.bases.get(key);
    if (hit) return hit;
    if (depth > 10_000) throw new Error(`delta chain too long in ${pack.file}`);
    const len = pack.index.end(offset) - offset;
    const buf = Buffer.allocUnsafe(len);
    const fd = fs.openSync(pack.file, 'r');
    try {
      if (fs.readSync(fd, buf, 0, len, offset) !== len) throw new Error(`short read in ${pack.file}`);
    } finally {
      fs.closeSync(fd);
    }
    const h = parsePackEntryHeader(buf);
    // An output chunk of exactly the known size: no 16 KiB chunk behind a small result.
    const payload = zlib.inflateSync(buf.subarray(h.dataStart), { chunkSize: Math.max(64, h.size + 1) });
    if (payload.length !== h.size) throw new Error(`pack entry at ${offset} in ${pack.file}: ${payload.length} bytes, header says ${h.size}`);
    let obj: GitObject;
    if (h.kind === OFS_DELTA) {
      const base = this.readPacked(pack, offset - h.baseDistance!, depth + 1);
      obj = { type: base.type, data: applyDelta(base.data, payload) };
    } else if (h.kind === REF_DELTA) {
      const base = this.readSync(h.baseOid!);
      obj = { type: base.type, data: applyDelta(base.data, payload) };
    } else {
      obj = { type: packTypeName(h.kind), data: payload };
    }
    // Objects that are delta bases get asked for again and again while a chain is resolved.
    if (depth > 0) this.bases.set(key, obj, obj.data.length + 64);
    return obj;
  }

  async has(oid: string): Promise<boolean> {
    try {
      this.readSync(oid);
      return true;
    } catch (err) {
      if (err instanceof ObjectNotFoundError) return false;
      throw err;
    }
  }

  /** Entries sorted by name; shared with the cache, so callers must not modify the array. */
  async readTree(oid: string): Promise<readonly TreeEntry[]> {
    const hit = this.trees.get(oid);
    if (hit) return hit;
    const o = await this.read(oid);
    if (o.type !== 'tree') throw new Error(`${oid} is a ${o.type}, not a tree`);
    const entries = parseTree(o.data).sort(byPath);
    this.trees.set(oid, entries, 64 + o.data.length * 3);
    return entries;
  }

  async readBlob(oid: string): Promise<string> {
    const hit = this.blobs.get(oid);
    if (hit !== undefined) return hit;
    const o = await this.read(oid);
    if (o.type !== 'blob') throw new Error(`${oid} is a ${o.type}, not a blob`);
    const text = o.data.toString('utf8');
    this.blobs.set(oid, text, 64 + text.length * 2);
    return text;
  }

  async readCommit(oid: string): Promise<{ tree: string; parents: string[] }> {
    const o = await this.read(oid);
    if (o.type !== 'commit') throw new Error(`${oid} is a ${o.type}, not a commit`);
    return parseCommit(o.data);
  }

  /** Caches a tree the caller just built (the next readDir and the push's tree diff read it). */
  remember(oid: string, value: { entries: TreeEntry[]; size: number }): void {
    this.trees.set(oid, [...value.entries].sort(byPath), 64 + value.size * 3);
  }

  /**
   * Stores objects (duplicates of stored ones are harmless). A few become loose files; a big
   * batch becomes one pack + index, written under temporary names and renamed into place,
   * pack first: git and isomorphic-git find packs by their index.
   */
  async write(objects: Iterable<NewObject>): Promise<void> {
    const batch = new Map<string, NewObject>();
    for (const o of objects) if (!this.pending.has(o.oid)) batch.set(o.oid, o);
    if (batch.size === 0) return;
    const dir = path.join(this.gitdir, 'objects');
    if (batch.size < LOOSE_LIMIT) {
      await Promise.all([...batch.values()].map(async (o) => {
        const file = path.join(dir, o.oid.slice(0, 2), o.oid.slice(2));
        if (fs.existsSync(file)) return;
        await fs.promises.mkdir(path.dirname(file), { recursive: true });
        // git's own temporary names: `git gc` cleans up what a crash leaves behind.
        const tmp = path.join(path.dirname(file), `tmp_obj_${randomBytes(6).toString('hex')}`);
        await fs.promises.writeFile(tmp, encodeLoose(o.type, o.data));
        await fs.promises.rename(tmp, file);
      }));
      for (const o of batch.values()) this.addPending({ type: o.type, data: o.data }, o.oid, o.packed);
      return;
    }
    const packed = [...batch.values()].map((o) => o.packed ?? packObject(o.type, o.data, o.oid));
    const pack = encodePack(packed);
    const idx = encodePackIndex(pack);
    const packDir = path.join(dir, 'pack');
    await fs.promises.mkdir(packDir, { recursive: true });
    const base = path.join(packDir, `pack-${pack.checksum}`);
    const rand = randomBytes(6).toString('hex');
    const tmpPack = path.join(packDir, `tmp_pack_${rand}`);
    const tmpIdx = path.join(packDir, `tmp_idx_${rand}`);
    await fs.promises.writeFile(tmpPack, pack.pack);
    await fs.promises.writeFile(tmpIdx, idx);
    await fs.promises.rename(tmpPack, `${base}.pack`);
    await fs.promises.rename(tmpIdx, `${base}.idx`);
    this.packs.set(`pack-${pack.checksum}.idx`, { file: `${base}.pack`, index: new PackIndex(idx, pack.pack.length) });
    // Only what the push needs: the stored pack answers reads, the caches hold the parsed trees.
    for (const p of packed) this.addPending(undefined, p.oid, p);
  }

  private addPending(obj: GitObject | undefined, oid: string, packed?: PackObject): void {
    const size = (obj?.data.length ?? 0) + (packed?.deflated.length ?? 0) + 100;
    if (this.pendingBytes + size > PENDING_BYTES) return;
    this.pending.set(oid, { obj, packed });
    this.pendingBytes += size;
  }

  /** The object, deflated for a pack: kept from its write, or read and deflated again. */
  async packObject(oid: string): Promise<PackObject> {
    const p = this.pending.get(oid);
    if (p?.packed) return p.packed;
    const o = p?.obj ?? this.readSync(oid);
    const packed = packObject(o.type, o.data, oid);
    if (p) p.packed = packed;
    return packed;
  }

  /** After a push: what was pending is on the remote now and stays readable from disk. */
  clearPending(): void {
    this.pending.clear();
    this.pendingBytes = 0;
  }

  /** Every object reachable from `tree` that is not reachable from `base` (a tree diff). */
  async treeDiff(tree: string, base: string | undefined, out: Set<string>): Promise<void> {
    if (tree === base || out.has(tree)) return;
    out.add(tree);
    const entries = await this.readTree(tree);
    const old = base ? await this.readTree(base) : [];
    const oldOids = new Set(old.map((e) => e.oid));
    const oldTrees = new Map(old.filter((e) => e.type === 'tree').map((e) => [e.path, e.oid]));
    for (const e of entries) {
      if (oldOids.has(e.oid) || e.type === 'commit') continue;
      if (e.type === 'tree') await this.treeDiff(e.oid, oldTrees.get(e.path), out);
      else out.add(e.oid);
    }
  }
}
