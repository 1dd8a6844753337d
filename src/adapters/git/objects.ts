// Git's object, tree, commit, pack and pack-index encodings, byte for byte as git writes them
// (checked against the git CLI in test/unit/git-objects.test.ts). No I/O: the object store
// (store.ts) and the smart-HTTP client (http.ts) use these.
import crypto, { createHash } from 'node:crypto';
import zlib from 'node:zlib';

export type ObjectType = 'commit' | 'tree' | 'blob' | 'tag';

export interface TreeEntry {
  /** As isomorphic-git spells it: '040000' for trees, otherwise git's own mode string. */
  mode: string;
  path: string;
  oid: string;
  type: 'blob' | 'tree' | 'commit';
}

export interface GitObject {
  type: ObjectType;
  data: Buffer;
}

export const EMPTY_TREE = '4b825dc642cb6eb9a060e54bf8d69288fbee4904';
export const ZERO_OID = '0000000000000000000000000000000000000000';

export function hashObject(type: ObjectType, data: Buffer | string): string {
  if (typeof data === 'string') return crypto.hash('sha1', `${type} ${Buffer.byteLength(data)}\0${data}`, 'hex');
  return createHash('sha1').update(`${type} ${data.length}\0`).update(data).digest('hex');
}

/**
 * zlib stream of `data` (the form of a pack entry's payload). Self-contained (it uses only its
 * arguments): deflate-thread.ts runs this function's own source on a second thread.
 */
export function deflateWith(z: typeof zlib, data: Buffer): Buffer {
  if (data.length > 64 * 1024) return z.deflateSync(data, { level: 4 });
  // Small objects dominate (one Kubernetes object per file): a small window and hash table keep
  // zlib's per-stream setup small (any zlib stream is valid to git). One output chunk a little
  // larger than the input (deflate never grows data by more than a few bytes per 16 KiB block),
  // not zlib's default 16 KiB per call: thousands of calls would leave 16 KiB of garbage each.
  // The copy holds just the result (pooled when small).
  return Buffer.from(z.deflateSync(data, { level: 4, windowBits: 12, memLevel: 5, chunkSize: Math.max(64, data.length + 64) }));
}

export const deflate = (data: Buffer): Buffer => deflateWith(zlib, data);

/** A loose object file's content: the zlib stream of `<type> <len>\0<data>`. */
export function encodeLoose(type: ObjectType, data: Buffer): Buffer {
  return deflate(Buffer.concat([Buffer.from(`${type} ${data.length}\0`), data]));
}

export function decodeLoose(file: Buffer): GitObject {
  const raw = zlib.inflateSync(file);
  const sp = raw.indexOf(0x20);
  const nul = raw.indexOf(0, sp);
  if (sp < 0 || nul < 0) throw new Error('corrupt loose object: no header');
  const type = raw.subarray(0, sp).toString('latin1');
  if (!isObjectType(type)) throw new Error(`corrupt loose object: type ${JSON.stringify(type)}`);
  const len = Number(raw.subarray(sp + 1, nul).toString('latin1'));
  const data = raw.subarray(nul + 1);
  if (data.length !== len) throw new Error(`corrupt loose object: length ${data.length}, header says ${len}`);
  return { type, data };
}

export const isObjectType = (t: string): t is ObjectType => t === 'blob' || t === 'tree' || t === 'commit' || t === 'tag';

const typeOfMode = (mode: string): TreeEntry['type'] => (mode === '040000' ? 'tree' : mode === '160000' ? 'commit' : 'blob');

/** Git's tree order: byte order of the names, a tree's name compared as if it ended in "/". */
export function compareTreeEntries(a: { name: Buffer; dir: boolean }, b: { name: Buffer; dir: boolean }): number {
  const n = Math.min(a.name.length, b.name.length);
  const c = a.name.subarray(0, n).compare(b.name.subarray(0, n));
  if (c !== 0) return c;
  const ca = a.name.length > n ? a.name[n]! : a.dir ? 0x2f : 0;
  const cb = b.name.length > n ? b.name[n]! : b.dir ? 0x2f : 0;
  return ca - cb;
}

// Where UTF-16 order and UTF-8 byte order can differ (surrogates vs U+E000..U+FFFF).
const ASTRAL_OR_HIGH = /[\uD800-\uFFFF]/;

export function encodeTree(entries: readonly TreeEntry[]): Buffer {
  let size = 0;
  let bytewise = false;
  const seen = new Set<string>();
  const items = entries.map((e) => {
    if (!e.path || e.path.includes('/') || e.path.includes('\0')) throw new Error(`invalid tree entry name ${JSON.stringify(e.path)}`);
    // (A file and a folder of one name do not sort next to each other.)
    if (seen.has(e.path)) throw new Error(`duplicate tree entry ${JSON.stringify(e.path)}`);
    seen.add(e.path);
    if (!/^[0-7]{5,6}$/.test(e.mode)) throw new Error(`invalid tree entry mode ${JSON.stringify(e.mode)}`);
    const dir = e.mode === '040000';
    const mode = dir ? '40000' : e.mode;
    const nameLen = Buffer.byteLength(e.path);
    size += mode.length + 1 + nameLen + 21;
    if (!bytewise && ASTRAL_OR_HIGH.test(e.path)) bytewise = true;
    return { e, mode, key: dir ? `${e.path}/` : e.path, dir };
  });
  // Git's order is byte order with "/" after a tree's name; for names without the characters
  // above, JavaScript's string order is that byte order.
  if (bytewise) items.sort((a, b) => compareTreeEntries({ name: Buffer.from(a.e.path), dir: a.dir }, { name: Buffer.from(b.e.path), dir: b.dir }));
  else items.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  const buf = Buffer.allocUnsafe(size);
  let pos = 0;
  for (let i = 0; i < items.length; i++) {
    const { e, mode } = items[i]!;
    pos += buf.write(mode, pos, 'latin1');
    buf[pos++] = 0x20;
    pos += buf.write(e.path, pos, 'utf8');
    buf[pos++] = 0;
    if (e.oid.length !== 40 || buf.write(e.oid, pos, 'hex') !== 20) throw new Error(`invalid tree entry oid ${JSON.stringify(e.oid)}`);
    pos += 20;
  }
  return buf;
}

/** Entries in the tree's own (git) order. */
export function parseTree(buf: Buffer): TreeEntry[] {
  const out: TreeEntry[] = [];
  let i = 0;
  while (i < buf.length) {
    const sp = buf.indexOf(0x20, i);
    const nul = sp < 0 ? -1 : buf.indexOf(0, sp);
    if (sp < 0 || nul < 0 || nul + 21 > buf.length) throw new Error(`corrupt tree at byte ${i}`);
    let mode = buf.subarray(i, sp).toString('latin1');
    if (mode === '40000') mode = '040000';
    out.push({ mode, path: buf.subarray(sp + 1, nul).toString('utf8'), oid: buf.subarray(nul + 1, nul + 21).toString('hex'), type: typeOfMode(mode) });
    i = nul + 21;
  }
  return out;
}

export interface Signature {
  name: string;
  email: string;
  /** Seconds since the epoch. */
  timestamp: number;
  /** Minutes east of UTC. */
  timezoneOffset?: number;
}

export interface CommitData {
  tree: string;
  parents: string[];
  author: Signature;
  committer: Signature;
  message: string;
}

function formatSignature(s: Signature): string {
  const off = s.timezoneOffset ?? 0;
  const abs = Math.abs(off);
  const tz = `${off < 0 ? '-' : '+'}${String(Math.floor(abs / 60)).padStart(2, '0')}${String(abs % 60).padStart(2, '0')}`;
  if (/[<>\n]/.test(s.name + s.email)) throw new Error(`invalid author ${JSON.stringify(`${s.name} <${s.email}>`)}`);
  return `${s.name} <${s.email}> ${s.timestamp} ${tz}`;
}

/** As isomorphic-git renders a commit (same oid for the same input): one trailing newline, no CRs. */
export function encodeCommit(c: CommitData): Buffer {
  const message = `${c.message.replace(/\r/g, '').replace(/^\n+/, '').replace(/\n+$/, '')}\n`;
  let head = `tree ${c.tree}\n`;
  for (const p of c.parents) head += `parent ${p}\n`;
  head += `author ${formatSignature(c.author)}\ncommitter ${formatSignature(c.committer)}\n`;
  return Buffer.from(`${head}\n${message}`);
}

export function parseCommit(buf: Buffer): { tree: string; parents: string[] } {
  const end = buf.indexOf('\n\n');
  const head = buf.subarray(0, end < 0 ? buf.length : end).toString('utf8');
  let tree: string | undefined;
  const parents: string[] = [];
  for (const line of head.split('\n')) {
    if (line.startsWith('tree ') && !tree) tree = line.slice(5);
    else if (line.startsWith('parent ')) parents.push(line.slice(7));
    else if (line.startsWith('author ')) break;
  }
  if (!tree) throw new Error('corrupt commit: no tree');
  return { tree, parents };
}

/**
 * Which of `candidates` are `tip` itself or reachable from it through parent links, looking at
 * no more than `maxCommits` commits (breadth first, so the nearest history is seen first). A
 * candidate further back, or behind a commit `parentsOf` does not know (undefined), counts as
 * not reachable: callers treat "not found" as "unknown", never as proof of the opposite.
 */
export async function reachableCommits(
  tip: string,
  candidates: Iterable<string>,
  parentsOf: (commit: string) => Promise<readonly string[] | undefined>,
  maxCommits = 1000,
): Promise<Set<string>> {
  const want = new Set(candidates);
  const found = new Set<string>();
  const seen = new Set<string>([tip]);
  let frontier = [tip];
  let visited = 0;
  while (frontier.length > 0 && found.size < want.size) {
    const next: string[] = [];
    for (const c of frontier) {
      if (visited++ >= maxCommits) return found;
      if (want.has(c)) found.add(c);
      for (const p of (await parentsOf(c)) ?? []) {
        if (seen.has(p)) continue;
        seen.add(p);
        next.push(p);
      }
    }
    frontier = next;
  }
  return found;
}

// ---- packs --------------------------------------------------------------------------------

const PACK_TYPE: Record<ObjectType, number> = { commit: 1, tree: 2, blob: 3, tag: 4 };

/** An object ready for a pack: its payload already deflated (deflate(data)). */
export interface PackObject {
  oid: string;
  type: ObjectType;
  /** Length of the inflated data. */
  size: number;
  deflated: Buffer;
}

/** `deflated`: deflate(data), when it was done already (on the deflate thread). */
export function packObject(type: ObjectType, data: Buffer, oid = hashObject(type, data), deflated = deflate(data)): PackObject {
  return { oid, type, size: data.length, deflated };
}

function entryHeader(type: ObjectType, size: number): Buffer {
  const bytes: number[] = [];
  let b = (PACK_TYPE[type] << 4) | (size & 0x0f);
  let rest = Math.floor(size / 16);
  while (rest > 0) {
    bytes.push(b | 0x80);
    b = rest & 0x7f;
    rest = Math.floor(rest / 128);
  }
  bytes.push(b);
  return Buffer.from(bytes);
}

export interface EncodedPack {
  pack: Buffer;
  /** SHA-1 trailer of the pack, hex: git names the files pack-<checksum>.{pack,idx}. */
  checksum: string;
  /** Where each object's entry starts, and the CRC-32 of the entry (header + payload). */
  entries: { oid: string; offset: number; crc: number }[];
}

/** A version-2 pack without deltas, built in one buffer; `crcs` for an index (a push needs none). */
export function encodePack(objects: readonly PackObject[], crcs = true): EncodedPack {
  const headers = objects.map((o) => entryHeader(o.type, o.size));
  let size = 12 + 20;
  for (let i = 0; i < objects.length; i++) size += headers[i]!.length + objects[i]!.deflated.length;
  const pack = Buffer.allocUnsafe(size);
  pack.write('PACK', 0, 'latin1');
  pack.writeUInt32BE(2, 4);
  pack.writeUInt32BE(objects.length, 8);
  const entries: EncodedPack['entries'] = [];
  let offset = 12;
  for (let i = 0; i < objects.length; i++) {
    const o = objects[i]!;
    const h = headers[i]!;
    const start = offset;
    offset += h.copy(pack, offset);
    offset += o.deflated.copy(pack, offset);
    entries.push({ oid: o.oid, offset: start, crc: crcs ? zlib.crc32(pack.subarray(start, offset)) : 0 });
  }
  createHash('sha1').update(pack.subarray(0, offset)).digest().copy(pack, offset);
  return { pack, checksum: pack.subarray(offset).toString('hex'), entries };
}

/** The version-2 index git's index-pack writes for `pack`. */
export function encodePackIndex(p: EncodedPack): Buffer {
  const sorted = [...p.entries].sort((a, b) => (a.oid < b.oid ? -1 : a.oid > b.oid ? 1 : 0));
  const n = sorted.length;
  const big = sorted.filter((e) => e.offset >= 0x80000000);
  const buf = Buffer.alloc(8 + 256 * 4 + n * 28 + big.length * 8 + 40);
  buf.writeUInt32BE(0xff744f63, 0);
  buf.writeUInt32BE(2, 4);
  const fanout = new Uint32Array(256);
  for (const e of sorted) fanout[parseInt(e.oid.slice(0, 2), 16)]!++;
  let acc = 0;
  for (let i = 0; i < 256; i++) {
    acc += fanout[i]!;
    buf.writeUInt32BE(acc, 8 + i * 4);
  }
  let pos = 8 + 1024;
  for (const e of sorted) pos += buf.write(e.oid, pos, 'hex');
  for (const e of sorted) pos = buf.writeUInt32BE(e.crc >>> 0, pos);
  let bigIndex = 0;
  for (const e of sorted) pos = buf.writeUInt32BE(e.offset >= 0x80000000 ? (0x80000000 | bigIndex++) >>> 0 : e.offset, pos);
  for (const e of big) pos = buf.writeBigUInt64BE(BigInt(e.offset), pos);
  pos += buf.write(p.checksum, pos, 'hex');
  createHash('sha1').update(buf.subarray(0, pos)).digest().copy(buf, pos);
  return buf;
}

// ---- reading packs -------------------------------------------------------------------------

const TYPE_OF_PACK: Record<number, ObjectType> = { 1: 'commit', 2: 'tree', 3: 'blob', 4: 'tag' };
export const OFS_DELTA = 6;
export const REF_DELTA = 7;

export interface PackEntryHeader {
  /** 1-4 (commit, tree, blob, tag), 6 (offset delta) or 7 (ref delta). */
  kind: number;
  /** Inflated size of the payload (for a delta: of the delta). */
  size: number;
  /** For an offset delta: how far back its base starts. */
  baseDistance?: number;
  baseOid?: string;
  /** Where the zlib data starts, relative to the entry. */
  dataStart: number;
}

export function parsePackEntryHeader(buf: Buffer): PackEntryHeader {
  let i = 0;
  let b = buf[i++]!;
  const kind = (b >> 4) & 7;
  let size = b & 0x0f;
  let shift = 4;
  while (b & 0x80) {
    b = buf[i++]!;
    size += (b & 0x7f) * 2 ** shift;
    shift += 7;
  }
  if (kind === OFS_DELTA) {
    b = buf[i++]!;
    let dist = b & 0x7f;
    while (b & 0x80) {
      b = buf[i++]!;
      dist = (dist + 1) * 128 + (b & 0x7f);
    }
    return { kind, size, baseDistance: dist, dataStart: i };
  }
  if (kind === REF_DELTA) return { kind, size, baseOid: buf.subarray(i, i + 20).toString('hex'), dataStart: i + 20 };
  if (!TYPE_OF_PACK[kind]) throw new Error(`bad pack entry type ${kind}`);
  return { kind, size, dataStart: i };
}

export const packTypeName = (kind: number): ObjectType => {
  const t = TYPE_OF_PACK[kind];
  if (!t) throw new Error(`bad pack entry type ${kind}`);
  return t;
};

/** Git's delta format: base size, result size, then copy (from base) and insert instructions. */
export function applyDelta(base: Buffer, delta: Buffer): Buffer {
  let i = 0;
  const varint = () => {
    let v = 0;
    let shift = 0;
    let b;
    do {
      b = delta[i++]!;
      v += (b & 0x7f) * 2 ** shift;
      shift += 7;
    } while (b & 0x80);
    return v;
  };
  const baseSize = varint();
  if (baseSize !== base.length) throw new Error(`delta base size ${baseSize}, base is ${base.length}`);
  const out = Buffer.allocUnsafe(varint());
  let o = 0;
  while (i < delta.length) {
    const op = delta[i++]!;
    if (op & 0x80) {
      let off = 0;
      let len = 0;
      for (let k = 0; k < 4; k++) if (op & (1 << k)) off += delta[i++]! * 2 ** (8 * k);
      for (let k = 0; k < 3; k++) if (op & (0x10 << k)) len += delta[i++]! * 2 ** (8 * k);
      if (len === 0) len = 0x10000;
      if (off + len > base.length || o + len > out.length) throw new Error('delta copy out of range');
      o += base.copy(out, o, off, off + len);
    } else if (op > 0) {
      if (i + op > delta.length || o + op > out.length) throw new Error('delta insert out of range');
      o += delta.copy(out, o, i, i + op);
      i += op;
    } else {
      throw new Error('delta opcode 0');
    }
  }
  if (o !== out.length) throw new Error(`delta result ${o} bytes, expected ${out.length}`);
  return out;
}

/** A version-2 pack index, searched in place. */
export class PackIndex {
  readonly count: number;
  /** Entry offsets in pack order, for the end of each entry. */
  private readonly sortedOffsets: Float64Array;

  constructor(
    readonly idx: Buffer,
    /** Size of the .pack file: the last entry ends 20 bytes before it. */
    readonly packSize: number,
  ) {
    if (idx.readUInt32BE(0) !== 0xff744f63 || idx.readUInt32BE(4) !== 2) throw new Error('not a version-2 pack index');
    this.count = idx.readUInt32BE(8 + 255 * 4);
    if (idx.length < 8 + 1024 + this.count * 28 + 40) throw new Error('truncated pack index');
    this.sortedOffsets = new Float64Array(this.count);
    for (let i = 0; i < this.count; i++) this.sortedOffsets[i] = this.offsetAt(i);
    this.sortedOffsets.sort();
  }

  private offsetAt(i: number): number {
    const base = 8 + 1024 + this.count * 24;
    const v = this.idx.readUInt32BE(base + i * 4);
    if (!(v & 0x80000000)) return v;
    return Number(this.idx.readBigUInt64BE(base + this.count * 4 + (v & 0x7fffffff) * 8));
  }

  /** The entry's offset in the pack, or -1. */
  find(oid: Buffer): number {
    const first = oid[0]!;
    let lo = first === 0 ? 0 : this.idx.readUInt32BE(8 + (first - 1) * 4);
    let hi = this.idx.readUInt32BE(8 + first * 4);
    const names = 8 + 1024;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      const c = oid.compare(this.idx, names + mid * 20, names + mid * 20 + 20);
      if (c === 0) return this.offsetAt(mid);
      if (c < 0) hi = mid;
      else lo = mid + 1;
    }
    return -1;
  }

  /** Where the entry at `offset` ends. */
  end(offset: number): number {
    let lo = 0;
    let hi = this.count;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.sortedOffsets[mid]! <= offset) lo = mid + 1;
      else hi = mid;
    }
    return lo < this.count ? this.sortedOffsets[lo]! : this.packSize - 20;
  }
}

// ---- pkt-line -----------------------------------------------------------------------------

export const FLUSH_PKT = Buffer.from('0000');

export function pktLine(data: string | Buffer): Buffer {
  const b = typeof data === 'string' ? Buffer.from(data) : data;
  if (b.length + 4 > 65520) throw new Error('pkt-line too long');
  return Buffer.concat([Buffer.from((b.length + 4).toString(16).padStart(4, '0')), b]);
}

/** Splits pkt-lines; a flush (or delim) packet is `null`. */
export function parsePktLines(buf: Buffer): (Buffer | null)[] {
  const out: (Buffer | null)[] = [];
  let i = 0;
  while (i + 4 <= buf.length) {
    const len = parseInt(buf.subarray(i, i + 4).toString('latin1'), 16);
    if (Number.isNaN(len)) throw new Error(`bad pkt-line length at byte ${i}`);
    if (len < 4) {
      out.push(null);
      i += 4;
      continue;
    }
    if (i + len > buf.length) throw new Error('truncated pkt-line');
    out.push(buf.subarray(i + 4, i + len));
    i += len;
  }
  return out;
}
