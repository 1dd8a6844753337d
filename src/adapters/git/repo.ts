// The DR repository, through isomorphic-git, without a working tree: we fetch the branch into a
// bare cache, build new tree objects for the folders we own, commit on top of the fetched tip
// and push. The remote only ever moves from one complete commit to the next (git's ref update
// is atomic), so a crash at any moment leaves it at the old or at the new commit. We never force.
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import git from 'isomorphic-git';
import type { TreeEntry } from 'isomorphic-git';
import http from 'isomorphic-git/http/node';
import type { Logger } from '../../util/log.ts';
import { silentLogger } from '../../util/log.ts';

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
  log?: Logger;
}

export interface Author {
  name: string;
  email: string;
}

/** Folder path → file name → content; `null` removes the folder. Folders are flat. */
export type FolderChanges = Map<string, Map<string, string> | null>;

export interface Snapshot {
  /** Tip of the branch, undefined for a branch (or repository) that does not exist yet. */
  commit?: string;
  tree?: string;
}

export class PushConflictError extends Error {}

const EMPTY_TREE = '4b825dc642cb6eb9a060e54bf8d69288fbee4904';

export const isRemoteUrl = (url: string): boolean => /^https?:\/\//.test(url);

export function blobOid(content: string | Uint8Array): string {
  const buf = typeof content === 'string' ? Buffer.from(content) : Buffer.from(content);
  return createHash('sha1').update(`blob ${buf.length}\0`).update(buf).digest('hex');
}

function describeError(err: unknown): string {
  if (err instanceof Error) {
    if (err.name === 'UserCanceledError') {
      return 'authentication failed: the server refused the credentials (check the credentials Secret: keys username/password or token)';
    }
    const data = (err as { data?: { statusCode?: number; statusMessage?: string } }).data;
    if (data?.statusCode === 401 || data?.statusCode === 403) {
      return `authentication failed (HTTP ${data.statusCode}): check the credentials Secret (keys username/password or token)`;
    }
    return err.message;
  }
  return String(err);
}

export class GitRepo {
  readonly url: string;
  readonly branch: string;
  private readonly gitdir: string;
  private readonly remote: boolean;
  private readonly auth?: GitAuth;
  private readonly log: Logger;

  constructor(opts: RepoOptions) {
    this.url = opts.url;
    this.branch = opts.branch;
    this.auth = opts.auth;
    this.log = opts.log ?? silentLogger;
    this.remote = isRemoteUrl(opts.url);
    if (this.remote) {
      const key = createHash('sha256').update(opts.url).digest('hex').slice(0, 16);
      this.gitdir = path.join(opts.cacheDir, `${key}.git`);
    } else {
      const dir = path.resolve(opts.url);
      this.gitdir = fs.existsSync(path.join(dir, '.git')) ? path.join(dir, '.git') : dir;
    }
  }

  private onAuth = () => {
    if (!this.auth) return { cancel: true };
    if (this.auth.token) return { username: this.auth.username ?? 'x-access-token', password: this.auth.token };
    return { username: this.auth.username ?? '', password: this.auth.password ?? '' };
  };

  private get trackingRef(): string {
    return this.remote ? `refs/remotes/origin/${this.branch}` : `refs/heads/${this.branch}`;
  }

  /** Brings the local view of the branch up to date and returns its tip. */
  async fetch(): Promise<Snapshot> {
    if (this.remote) {
      if (!fs.existsSync(path.join(this.gitdir, 'HEAD'))) {
        await fs.promises.mkdir(this.gitdir, { recursive: true });
        await git.init({ fs, gitdir: this.gitdir, bare: true, defaultBranch: this.branch });
        await git.addRemote({ fs, gitdir: this.gitdir, remote: 'origin', url: this.url, force: true });
      }
      try {
        const res = await git.fetch({
          fs, http, gitdir: this.gitdir, url: this.url, ref: this.branch, remoteRef: this.branch,
          singleBranch: true, tags: false, onAuth: this.onAuth, onAuthFailure: () => ({ cancel: true }),
        });
        if (!res.fetchHead) return {};
        await git.writeRef({ fs, gitdir: this.gitdir, ref: this.trackingRef, value: res.fetchHead, force: true });
      } catch (err) {
        // A repository without our branch yet: we create the branch with the first push.
        // (An empty repository answers with no fetchHead, above.)
        if (err instanceof Error && err.name === 'NotFoundError' && err.message === `Could not find ${this.branch}.`) {
          await git.deleteRef({ fs, gitdir: this.gitdir, ref: this.trackingRef }).catch(() => undefined);
          return {};
        }
        throw new Error(`fetching ${this.url} (branch ${this.branch}) failed: ${describeError(err)}`, { cause: err });
      }
    } else if (!fs.existsSync(path.join(this.gitdir, 'HEAD'))) {
      await fs.promises.mkdir(this.gitdir, { recursive: true });
      await git.init({ fs, gitdir: this.gitdir, bare: true, defaultBranch: this.branch });
    }
    const commit = await git.resolveRef({ fs, gitdir: this.gitdir, ref: this.trackingRef }).catch(() => undefined);
    if (!commit) return {};
    const { commit: c } = await git.readCommit({ fs, gitdir: this.gitdir, oid: commit });
    return { commit, tree: c.tree };
  }

  /** Entries of the folder at `dir` (no leading slash) in `tree`, or undefined if absent. */
  async readDir(tree: string | undefined, dir: string): Promise<TreeEntry[] | undefined> {
    if (!tree) return undefined;
    let oid = tree;
    for (const seg of dir.split('/').filter(Boolean)) {
      const { tree: entries } = await git.readTree({ fs, gitdir: this.gitdir, oid });
      const e = entries.find((x) => x.path === seg && x.type === 'tree');
      if (!e) return undefined;
      oid = e.oid;
    }
    const { tree: entries } = await git.readTree({ fs, gitdir: this.gitdir, oid });
    return entries;
  }

  async readBlob(oid: string): Promise<string> {
    const { blob } = await git.readBlob({ fs, gitdir: this.gitdir, oid });
    return Buffer.from(blob).toString('utf8');
  }

  private async writeFlatTree(files: Map<string, string>, existing: TreeEntry[] | undefined): Promise<string> {
    const known = new Map((existing ?? []).filter((e) => e.type === 'blob').map((e) => [e.oid, true]));
    const entries: TreeEntry[] = [];
    for (const [name, content] of files) {
      const buf = Buffer.from(content);
      let oid = blobOid(buf);
      // Unchanged files are already in the object store: skip the deflate and the write.
      if (!known.has(oid)) oid = await git.writeBlob({ fs, gitdir: this.gitdir, blob: buf });
      entries.push({ mode: '100644', path: name, oid, type: 'blob' });
    }
    return git.writeTree({ fs, gitdir: this.gitdir, tree: entries });
  }

  /**
   * A new root tree: `base` with each changed folder replaced (or removed) and every file in
   * `extraFiles` (path → content) written. All changed folders must share one parent.
   */
  async buildTree(base: string | undefined, parent: string, folders: FolderChanges, extraFiles: (entries: TreeEntry[]) => Promise<Map<string, string>>): Promise<string> {
    const parentEntries = new Map((await this.readDir(base, parent) ?? []).map((e) => [e.path, e]));
    for (const [folder, files] of folders) {
      const name = path.posix.relative(parent, folder);
      if (name.includes('/') || name === '' || name.startsWith('..')) throw new Error(`folder ${folder} is not directly under ${parent}`);
      if (files === null) {
        parentEntries.delete(name);
        continue;
      }
      const old = parentEntries.get(name);
      const oldEntries = old?.type === 'tree' ? (await git.readTree({ fs, gitdir: this.gitdir, oid: old.oid })).tree : undefined;
      parentEntries.set(name, { mode: '040000', path: name, oid: await this.writeFlatTree(files, oldEntries), type: 'tree' });
    }
    for (const [name, content] of await extraFiles([...parentEntries.values()])) {
      parentEntries.set(name, { mode: '100644', path: name, oid: await git.writeBlob({ fs, gitdir: this.gitdir, blob: Buffer.from(content) }), type: 'blob' });
    }
    let oid = parentEntries.size ? await git.writeTree({ fs, gitdir: this.gitdir, tree: [...parentEntries.values()] }) : undefined;
    // Walk back up to the root, replacing one entry per level.
    const segs = parent.split('/').filter(Boolean);
    for (let i = segs.length - 1; i >= 0; i--) {
      const dir = segs.slice(0, i).join('/');
      const entries = (await this.readDir(base, dir) ?? []).filter((e) => e.path !== segs[i]);
      if (oid) entries.push({ mode: '040000', path: segs[i]!, oid, type: 'tree' });
      oid = entries.length ? await git.writeTree({ fs, gitdir: this.gitdir, tree: entries }) : undefined;
    }
    return oid ?? EMPTY_TREE;
  }

  async commit(tree: string, parent: string | undefined, message: string, author: Author, now: Date): Promise<string> {
    const who = { name: author.name, email: author.email, timestamp: Math.floor(now.getTime() / 1000), timezoneOffset: 0 };
    if (tree === EMPTY_TREE) await git.writeTree({ fs, gitdir: this.gitdir, tree: [] });
    return git.writeCommit({
      fs, gitdir: this.gitdir,
      commit: { tree, parent: parent ? [parent] : [], author: who, committer: who, message },
    });
  }

  /**
   * Moves the branch from `expected` to `commit`. Throws PushConflictError when someone else
   * moved it first; the caller fetches, re-renders and tries again.
   */
  async push(commit: string, expected: string | undefined): Promise<void> {
    if (!this.remote) {
      // A local repository: compare-and-set the branch ref ourselves.
      const current = await git.resolveRef({ fs, gitdir: this.gitdir, ref: `refs/heads/${this.branch}` }).catch(() => undefined);
      if (current !== expected) throw new PushConflictError(`branch ${this.branch} moved from ${expected ?? '(none)'} to ${current}`);
      await git.writeRef({ fs, gitdir: this.gitdir, ref: `refs/heads/${this.branch}`, value: commit, force: true });
      return;
    }
    const localRef = `refs/heads/dr-syncer-push`;
    await git.writeRef({ fs, gitdir: this.gitdir, ref: localRef, value: commit, force: true });
    try {
      const res = await git.push({
        fs, http, gitdir: this.gitdir, url: this.url, ref: localRef, remoteRef: `refs/heads/${this.branch}`,
        onAuth: this.onAuth, onAuthFailure: () => ({ cancel: true }),
      });
      if (!res.ok) throw new PushConflictError(`push rejected: ${res.error ?? 'unknown reason'}`);
    } catch (err) {
      if (err instanceof PushConflictError) throw err;
      const name = err instanceof Error ? err.name : '';
      if (name === 'PushRejectedError' || name === 'GitPushError') {
        throw new PushConflictError(`push to ${this.url} rejected: ${describeError(err)}`);
      }
      throw new Error(`push to ${this.url} failed: ${describeError(err)}`, { cause: err });
    }
    await git.writeRef({ fs, gitdir: this.gitdir, ref: this.trackingRef, value: commit, force: true });
    this.log.debug({ commit, branch: this.branch }, 'pushed');
  }
}
