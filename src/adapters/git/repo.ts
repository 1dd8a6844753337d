// The DR repository, without a working tree: we keep a bare cache of the branch, build new
// tree objects for the folders we own, commit on top of the fetched tip and push. The remote
// only ever moves from one complete commit to the next: the push carries the tip we built on
// as the ref's expected old value, which the server checks under its ref lock, so a moved
// branch is a PushConflictError and never overwritten. We never force.
//
// Fetching and reading stored objects go through isomorphic-git; objects are written here
// (node:crypto, node:zlib; one pack file per big batch) and pushed as our own pack of exactly
// the new objects, over smart HTTP (http.ts). A fetch whose remote tip we already have costs
// one ref advertisement round trip.
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import git from 'isomorphic-git';
import http from 'isomorphic-git/http/node';
import type { Logger } from '../../util/log.ts';
import { silentLogger } from '../../util/log.ts';
import { isNetworkError } from '../../util/errors.ts';
import type { Credentials } from './http.ts';
import { advertisement, GitAuthError, receivePack, splitUrl } from './http.ts';
import type { TreeEntry } from './objects.ts';
import { deflateBatch } from './deflate-thread.ts';
import { EMPTY_TREE, encodeCommit, encodePack, encodeTree, hashObject, packObject, reachableCommits, ZERO_OID } from './objects.ts';
import type { NewObject } from './store.ts';
import { ObjectNotFoundError, ObjectStore } from './store.ts';

export type { TreeEntry } from './objects.ts';

export interface GitAuth {
  username?: string;
  password?: string;
  token?: string;
}

export interface RepoOptions {
  url: string;
  branch: string;
  auth?: GitAuth;
  /** Where bare caches of remote repositories live. */
  cacheDir: string;
  /** A local path that is not a repository yet becomes a new bare one (else it is an error). */
  create?: boolean;
  log?: Logger;
  /** When a remote's cache is fetched afresh (see boundCache); the defaults suit production. */
  cacheBound?: Partial<CacheBound>;
}

export interface CacheBound {
  /** Objects may grow to max(minBytes, growth × their size after a full fetch)... */
  minBytes: number;
  growth: number;
  /** ...and to this many loose object files. */
  maxLoose: number;
  /** How often (ms) the size is looked at, at most. */
  checkEveryMs: number;
}

/** A local repository path that cannot be used as it is: the user must fix the path or the repository. */
export class LocalRepositoryError extends Error {}

export interface Author {
  name: string;
  email: string;
}

/** A folder's files hashed (and new blobs deflated) ahead of buildTree: see GitRepo.prepareFolder. */
export interface PreparedFolder {
  readonly prepared: true;
  tree: string;
  entries: TreeEntry[];
  /** The folder's tree and blobs that the store did not hold (`old` had them not). */
  objects: NewObject[];
  /** Settles when the new blobs are deflated (`packed`), on another thread while the sync reads on. */
  deflated: Promise<void>;
}

/** Folder path → file name → content (or the folder prepared already); `null` removes the folder. Folders are flat. */
export type FolderChanges = Map<string, Map<string, string> | PreparedFolder | null>;

export const isPrepared = (f: Map<string, string> | PreparedFolder): f is PreparedFolder => 'prepared' in f;

export interface Snapshot {
  /** Tip of the branch, undefined for a branch (or repository) that does not exist yet. */
  commit?: string;
  tree?: string;
}

export class PushConflictError extends Error {}

export const isRemoteUrl = (url: string): boolean => /^https?:\/\//.test(url);

export function blobOid(content: string | Uint8Array): string {
  return hashObject('blob', typeof content === 'string' ? content : Buffer.from(content.buffer, content.byteOffset, content.byteLength));
}

const AUTH_401 = 'authentication failed: the server refused the credentials (check the credentials Secret: keys username/password or token)';
const auth403 = (status: number) => `authentication failed (HTTP ${status}): check the credentials Secret (keys username/password or token)`;

/** The HTTP status of a refusal of the credentials (401, 403), or undefined. */
function authStatus(err: unknown): number | undefined {
  if (err instanceof GitAuthError) return err.status;
  if (!(err instanceof Error)) return undefined;
  if (err.name === 'UserCanceledError') return 401;
  const status = (err as { data?: { statusCode?: number } }).data?.statusCode;
  return status === 401 || status === 403 ? status : undefined;
}

/** Whether a fetch or push of GitRepo failed because the server refused the credentials. */
export const isAuthFailure = (err: unknown): boolean => err instanceof Error && authStatus(err.cause) !== undefined;

function describeError(err: unknown): string {
  const auth = authStatus(err);
  if (auth !== undefined) return auth === 401 ? AUTH_401 : auth403(auth);
  if (err instanceof Error) {
    if (isNetworkError(err)) {
      return `${err.message}: check the repository URL and that the Git server is reachable from here`;
    }
    return err.message;
  }
  return String(err);
}

/** The git directory of a local repository path: `.git` inside a work tree (a folder, or a file naming it), else the path. */
function gitdirOf(dir: string): string {
  const dotgit = path.join(dir, '.git');
  try {
    if (fs.statSync(dotgit).isFile()) {
      const m = /^gitdir:\s*(.+)$/m.exec(fs.readFileSync(dotgit, 'utf8'));
      if (!m) return dotgit;
      // A linked work tree: its git dir names the repository's common dir (objects and refs).
      const own = path.resolve(dir, m[1]!.trim());
      const common = fs.existsSync(path.join(own, 'commondir')) ? fs.readFileSync(path.join(own, 'commondir'), 'utf8').trim() : '';
      return common ? path.resolve(own, common) : own;
    }
    return dotgit;
  } catch {
    return dir;
  }
}

/** Branches checked out in the work trees of a repository: its own (unless bare) and linked ones. */
async function checkedOutHeads(dir: string, gitdir: string): Promise<{ ref: string; worktree: string }[]> {
  const read = (f: string) => fs.promises.readFile(f, 'utf8').catch(() => '');
  const refOf = (head: string) => /^ref:\s*(\S+)/.exec(head)?.[1];
  const out: { ref: string; worktree: string }[] = [];
  const config = await read(path.join(gitdir, 'config'));
  const bare = /^\s*bare\s*=\s*true\s*$/im.test(config);
  const own = refOf(await read(path.join(gitdir, 'HEAD')));
  if (!bare && own) out.push({ ref: own, worktree: path.basename(gitdir) === '.git' ? path.dirname(gitdir) : dir });
  const linked = await fs.promises.readdir(path.join(gitdir, 'worktrees')).catch(() => [] as string[]);
  for (const w of linked) {
    const ref = refOf(await read(path.join(gitdir, 'worktrees', w, 'HEAD')));
    if (ref) out.push({ ref, worktree: (await read(path.join(gitdir, 'worktrees', w, 'gitdir'))).trim().replace(/\/\.git$/, '') || w });
  }
  return out;
}

/**
 * One per cache directory (gitdir) in this process, shared by every GitRepo on it (branches and
 * credentials of one URL share a cache): the object store and the lock that lets one operation
 * at a time use them.
 */
interface Cache {
  store: ObjectStore;
  lock: Promise<unknown>;
  /** When the cache's size was last looked at (ms), and its objects' size after the last full fetch. */
  checkedAt: number;
  baselineBytes?: number;
}
const caches = new Map<string, Cache>();
const cacheOf = (gitdir: string): Cache => {
  let c = caches.get(gitdir);
  if (!c) caches.set(gitdir, (c = { store: new ObjectStore(gitdir), lock: Promise.resolve(), checkedAt: 0 }));
  return c;
};

const CACHE_BOUND: CacheBound = { minBytes: 64 * 1024 * 1024, growth: 2, maxLoose: 20_000, checkEveryMs: 10 * 60_000 };
const BASELINE_FILE = 'dr-syncer-baseline';
/** Its modification time: when boundCache last looked at the cache's size. */
const CHECKED_SUFFIX = '.checked';

async function objectsSize(gitdir: string): Promise<{ bytes: number; loose: number }> {
  let bytes = 0;
  let loose = 0;
  const walk = async (dir: string, top: boolean): Promise<void> => {
    const entries = await fs.promises.readdir(dir, { withFileTypes: true }).catch(() => []);
    for (const e of entries) {
      const p = path.join(dir, e.name);
      if (e.isDirectory()) await walk(p, false);
      else {
        bytes += (await fs.promises.stat(p).catch(() => ({ size: 0 }))).size;
        if (!top && !dir.endsWith(`${path.sep}pack`)) loose++;
      }
    }
  };
  await walk(path.join(gitdir, 'objects'), true);
  return { bytes, loose };
}

/** Reasons receive-pack gives when the ref was not at the old value we sent. */
const CONFLICT_REASON = /non-fast-forward|fetch first|failed to (lock|update)|stale info|cannot lock|incorrect old value|already exists|but expected/i;

export class GitRepo {
  readonly url: string;
  readonly branch: string;
  private readonly gitdir: string;
  private readonly remote: boolean;
  private readonly auth?: GitAuth;
  private readonly log: Logger;
  private readonly cache: Cache;
  private readonly bound: CacheBound;
  /** The URL without credentials (also for messages), and the credentials for our own requests. */
  private readonly httpUrl: string;
  private readonly credentials?: Credentials;

  constructor(opts: RepoOptions) {
    this.url = opts.url;
    this.branch = opts.branch;
    this.auth = opts.auth;
    this.log = opts.log ?? silentLogger;
    this.remote = isRemoteUrl(opts.url);
    if (this.remote) {
      const key = createHash('sha256').update(opts.url).digest('hex').slice(0, 16);
      this.gitdir = path.join(opts.cacheDir, `${key}.git`);
      const { url, credentials } = splitUrl(opts.url);
      this.httpUrl = url;
      const a = this.auth;
      this.credentials = a ? (a.token ? { username: a.username ?? 'x-access-token', password: a.token } : { username: a.username ?? '', password: a.password ?? '' }) : credentials;
    } else {
      const dir = path.resolve(opts.url);
      this.gitdir = gitdirOf(dir);
      this.httpUrl = '';
    }
    this.create = opts.create ?? false;
    this.cache = cacheOf(this.gitdir);
    this.bound = { ...CACHE_BOUND, ...opts.cacheBound };
  }

  /**
   * A file of ours kept with a remote's cache (removed with it), or undefined for a local
   * repository: its .git folder is the user's.
   */
  cacheFile(name: string): string | undefined {
    return this.remote ? path.join(this.gitdir, 'dr-syncer', name) : undefined;
  }

  private get store(): ObjectStore {
    return this.cache.store;
  }

  /** Objects this process read from the cache's files so far (for benchmarks and tests). */
  get objectsRead(): number {
    return this.store.diskReads;
  }

  /**
   * Runs `fn` when no other operation on the same cache directory runs in this process (every
   * GitRepo on it shares one lock). Callers wrap whole fetch-build-push sequences in it.
   */
  exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.cache.lock.then(fn, fn);
    this.cache.lock = run.catch(() => undefined);
    return run;
  }

  /**
   * Keeps a remote's cache bounded: every fetch adds a pack and every small sync a few loose
   * objects, so a cache that grew well past its size after a full fetch is removed and fetched
   * afresh, which leaves one pack as the server packed it. Only between operations (under
   * exclusive()), as it drops objects written but not pushed.
   */
  private async boundCache(): Promise<void> {
    const c = this.cache;
    const b = this.bound;
    if (!this.remote) return;
    // A new process (a one-shot `dr-syncer sync`) learns when the cache was last looked at from a
    // marker file: walking thousands of loose objects on every start cost ~0.4 s at 1,000 commits.
    // (Beside the cache, not in it: it outlives the cache being fetched afresh.)
    const marker = `${this.gitdir}${CHECKED_SUFFIX}`;
    if (c.checkedAt === 0) c.checkedAt = (await fs.promises.stat(marker).catch(() => undefined))?.mtimeMs ?? 0;
    if (Date.now() - c.checkedAt < b.checkEveryMs) return;
    c.checkedAt = Date.now();
    if (!fs.existsSync(path.join(this.gitdir, 'HEAD'))) return;
    await fs.promises.writeFile(marker, '');
    c.baselineBytes ??= Number(await fs.promises.readFile(path.join(this.gitdir, BASELINE_FILE), 'utf8').catch(() => '0')) || 0;
    const { bytes, loose } = await objectsSize(this.gitdir);
    if (bytes <= Math.max(b.minBytes, b.growth * c.baselineBytes) && loose <= b.maxLoose) return;
    this.log.info({ cache: this.gitdir, bytes, loose, baselineBytes: c.baselineBytes }, 'git cache grew: fetching it afresh');
    await fs.promises.rm(this.gitdir, { recursive: true, force: true });
    c.store = new ObjectStore(this.gitdir);
    c.baselineBytes = undefined;
  }

  private readonly create: boolean;

  /**
   * A local repository must exist (unless `create`), and its branch must not be checked out in a
   * working tree: moving a checked-out branch leaves the work tree showing the reverse of our
   * commit as staged changes, which a `git commit -a` would turn into a revert. We refuse, as
   * git's receive.denyCurrentBranch does.
   */
  private async checkLocal(): Promise<void> {
    if (/^[^/]+:/.test(this.url)) {
      throw new LocalRepositoryError(`${this.url} is neither a local path nor an http(s):// URL: dr-syncer talks to Git servers over HTTP(S); use the repository's https:// URL`);
    }
    const dir = path.resolve(this.url);
    const stat = await fs.promises.stat(dir).catch(() => undefined);
    if (stat && !stat.isDirectory()) throw new LocalRepositoryError(`${dir} is a file, not a Git repository`);
    const isRepo = fs.existsSync(path.join(this.gitdir, 'HEAD')) && fs.existsSync(path.join(this.gitdir, 'objects'));
    if (!isRepo) {
      const empty = !stat || (await fs.promises.readdir(dir)).length === 0;
      if (!this.create) {
        throw new LocalRepositoryError(
          stat ? `${dir} is not a Git repository; give the path of a repository, or pass --init to create a new bare repository in an empty folder`
            : `${dir} does not exist; check the path, or pass --init to create a new bare repository there`,
        );
      }
      if (!empty) throw new LocalRepositoryError(`${dir} is not empty and not a Git repository; --init creates a repository only in a new or empty folder`);
      return; // ensureInit creates it
    }
    for (const head of await checkedOutHeads(dir, this.gitdir)) {
      if (head.ref === `refs/heads/${this.branch}`) {
        throw new LocalRepositoryError(
          `branch ${this.branch} is checked out in the working tree ${head.worktree}; dr-syncer does not move a checked-out branch ` +
            '(like git\'s receive.denyCurrentBranch). Use a bare repository (git clone --bare), another branch (--branch), or push through a Git server URL',
        );
      }
    }
  }

  private get displayUrl(): string {
    return this.remote ? this.httpUrl : this.url;
  }

  private onAuth = () => {
    if (!this.auth) return { cancel: true };
    if (this.auth.token) return { username: this.auth.username ?? 'x-access-token', password: this.auth.token };
    return { username: this.auth.username ?? '', password: this.auth.password ?? '' };
  };

  private get trackingRef(): string {
    return this.remote ? `refs/remotes/origin/${this.branch}` : `refs/heads/${this.branch}`;
  }

  private async ensureInit(): Promise<void> {
    if (!this.remote) await this.checkLocal();
    if (fs.existsSync(path.join(this.gitdir, 'HEAD'))) return;
    await fs.promises.mkdir(this.gitdir, { recursive: true });
    await git.init({ fs, gitdir: this.gitdir, bare: true, defaultBranch: this.branch });
    if (this.remote) await git.addRemote({ fs, gitdir: this.gitdir, remote: 'origin', url: this.url, force: true });
  }

  private resolveLocal(ref: string): Promise<string | undefined> {
    return git.resolveRef({ fs, gitdir: this.gitdir, ref }).catch(() => undefined);
  }

  /** Brings the local view of the branch up to date and returns its tip. */
  async fetch(): Promise<Snapshot> {
    await this.boundCache();
    const fresh = !fs.existsSync(path.join(this.gitdir, 'HEAD'));
    const snapshot = await this.fetchTip();
    if (fresh && this.remote) {
      // What a full fetch weighs: the yardstick of boundCache.
      this.cache.baselineBytes = (await objectsSize(this.gitdir)).bytes;
      await fs.promises.writeFile(path.join(this.gitdir, BASELINE_FILE), String(this.cache.baselineBytes));
    }
    return snapshot;
  }

  private async fetchTip(): Promise<Snapshot> {
    await this.ensureInit();
    if (this.remote) {
      const fail = (err: unknown) => new Error(`fetching the DR repository ${this.displayUrl} (branch ${this.branch}) failed: ${describeError(err)}`, { cause: err });
      let tip: string | undefined;
      try {
        tip = (await advertisement(this.httpUrl, 'git-upload-pack', this.credentials)).refs.get(`refs/heads/${this.branch}`);
      } catch (err) {
        throw fail(err);
      }
      if (!tip) {
        // An empty repository, or one without our branch yet: the first push creates it.
        await git.deleteRef({ fs, gitdir: this.gitdir, ref: this.trackingRef }).catch(() => undefined);
        return {};
      }
      // Everything we hold is complete (fetched packs, or objects we wrote before the commit
      // that names them), so having the tip means having its history: nothing to download.
      // (One read answers both "is it here" and "which tree".)
      let held = await this.store.readCommit(tip).catch((err: unknown) => {
        if (err instanceof ObjectNotFoundError) return undefined;
        throw err;
      });
      if (!held) {
        try {
          const res = await git.fetch({
            fs, http, gitdir: this.gitdir, url: this.url, ref: this.branch, remoteRef: this.branch,
            singleBranch: true, tags: false, onAuth: this.onAuth, onAuthFailure: () => ({ cancel: true }),
          });
          if (!res.fetchHead) return {};
          tip = res.fetchHead;
        } catch (err) {
          if (err instanceof Error && err.name === 'NotFoundError' && err.message === `Could not find ${this.branch}.`) {
            await git.deleteRef({ fs, gitdir: this.gitdir, ref: this.trackingRef }).catch(() => undefined);
            return {};
          }
          throw fail(err);
        }
      }
      held ??= await this.store.readCommit(tip);
      if ((await this.resolveLocal(this.trackingRef)) !== tip) {
        await git.writeRef({ fs, gitdir: this.gitdir, ref: this.trackingRef, value: tip, force: true });
      }
      return { commit: tip, tree: held.tree };
    }
    const commit = await this.resolveLocal(this.trackingRef);
    if (!commit) return {};
    return { commit, tree: (await this.store.readCommit(commit)).tree };
  }

  /** Entries of the folder at `dir` (no leading slash) in `tree`, or undefined if absent. */
  async readDir(tree: string | undefined, dir: string): Promise<TreeEntry[] | undefined> {
    if (!tree) return undefined;
    let oid = tree;
    for (const seg of dir.split('/').filter(Boolean)) {
      const e = (await this.store.readTree(oid)).find((x) => x.path === seg && x.type === 'tree');
      if (!e) return undefined;
      oid = e.oid;
    }
    return [...(await this.store.readTree(oid))];
  }

  async readBlob(oid: string): Promise<string> {
    return this.store.readBlob(oid);
  }

  /** Whether the cache holds the commit (and so, as everything here is complete, its history). */
  async hasCommit(oid: string): Promise<boolean> {
    return /^[0-9a-f]{40}$/.test(oid) && (await this.store.has(oid));
  }

  /** The commit and its tree, when this cache holds it. */
  async snapshotAt(commit: string): Promise<Snapshot | undefined> {
    if (!(await this.hasCommit(commit))) return undefined;
    return { commit, tree: (await this.store.readCommit(commit)).tree };
  }

  /**
   * Which of `candidates` are `tip` or its ancestors, within `maxCommits` commits of it, from the
   * cache alone (fetch() first for a tip that may be newer). One walk for all candidates.
   */
  async reachable(tip: string, candidates: Iterable<string>, maxCommits = 1000): Promise<Set<string>> {
    if (!(await this.hasCommit(tip))) return new Set();
    return reachableCommits(tip, candidates, async (c) => {
      try {
        return (await this.store.readCommit(c)).parents;
      } catch (err) {
        if (err instanceof ObjectNotFoundError) return undefined;
        throw err;
      }
    }, maxCommits);
  }

  /** Whether `ancestor` is `descendant` or one of its ancestors (bounded walk; false when not known). */
  async isAncestor(ancestor: string, descendant: string, maxCommits = 1000): Promise<boolean> {
    return (await this.reachable(descendant, [ancestor], maxCommits)).has(ancestor);
  }

  /**
   * A new root tree: `base` with each changed folder replaced (or removed) and every file in
   * `extraFiles` (name → content, or null to remove it) written in `parent`. All changed folders
   * must share that parent.
   */
  async buildTree(
    base: string | undefined,
    parent: string,
    folders: FolderChanges,
    extraFiles: (entries: TreeEntry[]) => Promise<Map<string, string | null>>,
    /** Filled with "<folder>/<file>" → blob oid of every file in `folders`, so callers need not hash again. */
    fileOids?: Map<string, string>,
  ): Promise<string> {
    const created: NewObject[] = [];
    const store = this.store;
    /** The tree's oid; queued for writing unless it is `old` (then it is stored already). */
    const tree = (entries: TreeEntry[], old: string | undefined): string => {
      const data = encodeTree(entries);
      const oid = hashObject('tree', data);
      if (oid !== old) {
        created.push({ oid, type: 'tree', data });
        store.remember(oid, { entries, size: data.length });
      }
      return oid;
    };

    const parentEntries = new Map((await this.readDir(base, parent) ?? []).map((e) => [e.path, e]));
    const oldParent = await this.dirOid(base, parent);
    for (const [folder, files] of folders) {
      const name = path.posix.relative(parent, folder);
      if (name.includes('/') || name === '' || name.startsWith('..')) throw new Error(`folder ${folder} is not directly under ${parent}`);
      if (files === null) {
        parentEntries.delete(name);
        continue;
      }
      const old = parentEntries.get(name);
      const ready = isPrepared(files) ? files : await this.prepareFolder(files, old?.type === 'tree' ? old.oid : undefined);
      await ready.deflated;
      for (const e of ready.entries) fileOids?.set(`${folder}/${e.path}`, e.oid);
      created.push(...ready.objects);
      parentEntries.set(name, { mode: '040000', path: name, oid: ready.tree, type: 'tree' });
    }
    for (const [name, content] of await extraFiles([...parentEntries.values()])) {
      if (content === null) {
        parentEntries.delete(name);
        continue;
      }
      const old = parentEntries.get(name)?.oid;
      const oid = blobOid(content);
      if (oid !== old) created.push({ oid, type: 'blob', data: Buffer.from(content) });
      parentEntries.set(name, { mode: '100644', path: name, oid, type: 'blob' });
    }
    let oid = parentEntries.size ? tree([...parentEntries.values()], oldParent) : undefined;
    // Walk back up to the root, replacing one entry per level.
    const segs = parent.split('/').filter(Boolean);
    for (let i = segs.length - 1; i >= 0; i--) {
      const dir = segs.slice(0, i).join('/');
      const entries = (await this.readDir(base, dir) ?? []).filter((e) => e.path !== segs[i]);
      if (oid) entries.push({ mode: '040000', path: segs[i]!, oid, type: 'tree' });
      oid = entries.length ? tree(entries, await this.dirOid(base, dir)) : undefined;
    }
    await store.write(created);
    return oid ?? EMPTY_TREE;
  }

  /**
   * Hashes a folder's files into its tree, and deflates the blobs `oldTree` (the folder as it
   * was) does not have, ready for the store and the push pack. A sync calls this for each
   * namespace as soon as it is rendered, so the hashing overlaps the LISTs of the next ones.
   * `reused` are files given by blob id (file → oid), each of which `oldTree` must hold.
   */
  async prepareFolder(files: Map<string, string>, oldTree: string | undefined, reused: ReadonlyMap<string, string> = new Map()): Promise<PreparedFolder> {
    // Files that did not change are in the store already: no deflate, no write.
    const known = new Set(oldTree ? (await this.store.readTree(oldTree)).filter((e) => e.type === 'blob').map((e) => e.oid) : []);
    const objects: NewObject[] = [];
    const entries: TreeEntry[] = [];
    for (const [file, oid] of reused) {
      // A tree must never name a blob the store lacks: the push would send a broken history.
      if (!known.has(oid)) throw new Error(`${file}: blob ${oid} is not in the folder's last tree, so it cannot be reused`);
      entries.push({ mode: '100644', path: file, oid, type: 'blob' });
    }
    const blobs: NewObject[] = [];
    for (const [file, content] of files) {
      const oid = blobOid(content);
      if (!known.has(oid)) blobs.push({ oid, type: 'blob', data: Buffer.from(content) });
      entries.push({ mode: '100644', path: file, oid, type: 'blob' });
    }
    objects.push(...blobs);
    const data = encodeTree(entries);
    const tree = hashObject('tree', data);
    if (tree !== oldTree) {
      objects.push({ oid: tree, type: 'tree', data });
      this.store.remember(tree, { entries, size: data.length });
    }
    // The new blobs and the tree deflated together (the tree too: deflated inline, the folders'
    // trees cost ~25 ms of the write after the last LIST at 10,000 objects). An object whose
    // deflate failed has no `packed`: the store deflates it when it writes it.
    const deflated = deflateBatch(objects.map((o) => o.data)).then((out) => {
      objects.forEach((o, i) => (o.packed = packObject(o.type, o.data, o.oid, out[i])));
    }, () => {});
    return { prepared: true, tree, entries, objects, deflated };
  }

  /** The oid of the tree at `dir` in `tree`. */
  private async dirOid(tree: string | undefined, dir: string): Promise<string | undefined> {
    let oid = tree;
    for (const seg of dir.split('/').filter(Boolean)) {
      if (!oid) return undefined;
      oid = (await this.store.readTree(oid)).find((x) => x.path === seg && x.type === 'tree')?.oid;
    }
    return oid;
  }

  async commit(tree: string, parent: string | undefined, message: string, author: Author, now: Date): Promise<string> {
    const who = { name: author.name, email: author.email, timestamp: Math.floor(now.getTime() / 1000), timezoneOffset: 0 };
    const data = encodeCommit({ tree, parents: parent ? [parent] : [], author: who, committer: who, message });
    const oid = hashObject('commit', data);
    const objects: NewObject[] = [{ oid, type: 'commit', data }];
    if (tree === EMPTY_TREE) objects.push({ oid: EMPTY_TREE, type: 'tree', data: Buffer.alloc(0) });
    await this.store.write(objects);
    return oid;
  }

  /**
   * Moves the branch from `expected` to `commit`. Throws PushConflictError when someone else
   * moved it first; the caller fetches, re-renders and tries again.
   */
  async push(commit: string, expected: string | undefined): Promise<void> {
    const ref = `refs/heads/${this.branch}`;
    if (!this.remote) {
      await this.updateLocalRef(ref, commit, expected);
      return;
    }
    const fail = (err: unknown) => new Error(`push to the DR repository ${this.displayUrl} failed: ${describeError(err)}`, { cause: err });
    let adv;
    try {
      adv = await advertisement(this.httpUrl, 'git-receive-pack', this.credentials);
    } catch (err) {
      throw fail(err);
    }
    const current = adv.refs.get(ref);
    if (current !== expected) throw new PushConflictError(`branch ${this.branch} moved from ${expected ?? '(none)'} to ${current ?? '(none)'}`);
    const oids = await this.newObjects(commit, expected);
    const pack = encodePack(await Promise.all([...oids].map((o) => this.store.packObject(o))), false);
    let report;
    try {
      report = await receivePack(adv, { ref, old: expected ?? ZERO_OID, new: commit }, pack.pack, this.credentials);
    } catch (err) {
      throw fail(err);
    }
    if (report.unpack !== 'ok') throw new Error(`push to ${this.displayUrl} failed: the server could not unpack our pack: ${report.unpack}`);
    if (!report.refs.has(ref)) throw new Error(`push to ${this.displayUrl} failed: no status for ${ref} in the server's report`);
    const reason = report.refs.get(ref);
    if (reason !== undefined) {
      // The server compared the branch with `expected` under its lock. Whatever words it used,
      // a branch that is no longer at `expected` is a conflict to retry, anything else is not.
      const now = await advertisement(this.httpUrl, 'git-receive-pack', this.credentials).then((a) => a.refs.get(ref), () => undefined);
      if (CONFLICT_REASON.test(reason) || now !== expected) throw new PushConflictError(`push to ${this.displayUrl} rejected: ${reason}`);
      throw new Error(`push to ${this.displayUrl} rejected: ${reason}`);
    }
    this.store.clearPending();
    await git.writeRef({ fs, gitdir: this.gitdir, ref: this.trackingRef, value: commit, force: true });
    this.log.debug({ commit, branch: this.branch, objects: oids.size, packBytes: pack.pack.length }, 'pushed');
  }

  /**
   * The objects the remote lacks when it has `expected` (and all it reaches): the commits
   * after it and each one's tree diff against its parent. Refuses what is not a fast-forward.
   */
  private async newObjects(commit: string, expected: string | undefined): Promise<Set<string>> {
    const out = new Set<string>();
    let c: string | undefined = commit;
    for (let depth = 0; c !== expected; depth++) {
      if (!c) throw new PushConflictError(`${commit} is not a descendant of ${expected}: refusing a non-fast-forward push`);
      if (depth > 10_000) throw new Error(`${commit}: more than 10000 commits to push`);
      const { tree, parents } = await this.store.readCommit(c);
      if (parents.length > 1) throw new Error(`${c} is a merge commit: not supported`);
      out.add(c);
      await this.store.treeDiff(tree, parents[0] ? (await this.store.readCommit(parents[0])).tree : undefined, out);
      c = parents[0];
    }
    return out;
  }

  /** Compare-and-swap of a local branch, under git's own lock protocol (`<ref>.lock`). */
  private async updateLocalRef(ref: string, commit: string, expected: string | undefined): Promise<void> {
    const file = path.join(this.gitdir, ref);
    const lock = `${file}.lock`;
    await fs.promises.mkdir(path.dirname(file), { recursive: true });
    let fh;
    try {
      fh = await fs.promises.open(lock, 'wx');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EEXIST') throw new PushConflictError(`branch ${this.branch} is being updated by someone else (${lock} exists)`);
      throw err;
    }
    let locked = true;
    try {
      const current = await this.resolveLocal(ref);
      if (current !== expected) throw new PushConflictError(`branch ${this.branch} moved from ${expected ?? '(none)'} to ${current}`);
      if (expected) await this.newObjects(commit, expected);
      await fh.writeFile(`${commit}\n`);
      await fh.close();
      fh = undefined;
      await fs.promises.rename(lock, file);
      locked = false;
    } finally {
      await fh?.close();
      if (locked) await fs.promises.rm(lock, { force: true });
    }
    this.store.clearPending();
  }
}
