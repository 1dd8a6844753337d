// The Git cache against a real smart-HTTP server: bounded (a cache that grew past its bound is
// fetched afresh into one pack, and keeps working), and one lock per cache directory, shared by
// every GitRepo on it (two branches of one URL share a cache).
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import type { CacheBound } from '../../src/adapters/git/repo.ts';
import { GitRepo } from '../../src/adapters/git/repo.ts';
import type { GitServer } from '../env/git-server.ts';
import { startGitServer } from '../env/git-server.ts';

const execFileAsync = promisify(execFile);
let server: GitServer;
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'drs-gitcache-'));
const author = { name: 'dr-syncer', email: 'dr@example.com' };
let n = 0;

before(async () => {
  server = await startGitServer();
});
after(async () => {
  await server?.stop();
  await fs.promises.rm(tmp, { recursive: true, force: true });
});

const open = (url: string, cacheDir: string, branch = 'main', cacheBound?: Partial<CacheBound>) =>
  new GitRepo({ url, branch, auth: { username: server.user, password: server.password }, cacheDir, cacheBound });

async function commitFile(repo: GitRepo, file: string, content: string): Promise<string> {
  const snap = await repo.fetch();
  const folders: Map<string, Map<string, string> | null> = new Map([['dr/ns', new Map([[file, content], ['namespace.yaml', 'kind: Namespace\n']])]]);
  const tree = await repo.buildTree(snap.tree, 'dr', folders, async () => new Map());
  const commit = await repo.commit(tree, snap.commit, `${file}=${content}`, author, new Date(1_700_000_000_000 + ++n * 1000));
  await repo.push(commit, snap.commit);
  return commit;
}

function objectFiles(gitdirParent: string): { packs: number; loose: number } {
  const [gitdir] = fs.readdirSync(gitdirParent).filter((d) => d.endsWith('.git'));
  const objects = path.join(gitdirParent, gitdir!, 'objects');
  let loose = 0;
  for (const d of fs.readdirSync(objects)) if (/^[0-9a-f]{2}$/.test(d)) loose += fs.readdirSync(path.join(objects, d)).length;
  const packDir = path.join(objects, 'pack');
  return { packs: fs.existsSync(packDir) ? fs.readdirSync(packDir).filter((f) => f.endsWith('.pack')).length : 0, loose };
}

describe('Git cache', () => {
  it('grows past its bound: fetched afresh into one pack, and goes on working', async () => {
    const url = await server.createRepo('bounded');
    const cache = path.join(tmp, 'bounded');
    const writer = open(url, cache);
    for (let i = 0; i < 4; i++) await commitFile(writer, 'a.yaml', `v: ${i}\n`);
    // The same cache, looked at on every fetch: more than 6 loose objects trip the bound.
    const repo = open(url, cache, 'main', { minBytes: 0, growth: 1000, maxLoose: 6, checkEveryMs: 0 });
    const grown = objectFiles(cache);
    assert.ok(grown.loose > 6, `loose objects before: ${grown.loose}`);
    const head = (await server.git(['ls-remote', `${server.base}/bounded.git`, 'refs/heads/main'])).split('\t')[0];
    const snap = await repo.fetch();
    assert.equal(snap.commit, head);
    assert.deepEqual(objectFiles(cache), { packs: 1, loose: 0 }, 'one pack, as the server packed it');
    // Reads and pushes work on the new cache.
    const entries = await repo.readDir(snap.tree, 'dr/ns');
    assert.equal(await repo.readBlob(entries!.find((e) => e.path === 'a.yaml')!.oid), 'v: 3\n');
    await commitFile(repo, 'a.yaml', 'v: after\n');
    const clone = await server.clone('bounded');
    assert.equal(fs.readFileSync(path.join(clone, 'dr/ns/a.yaml'), 'utf8'), 'v: after\n');
    await server.git(['fsck', '--strict'], clone);
  });

  it('a new process learns from the cache directory when the bound was last checked: no walk of the objects within checkEveryMs', async () => {
    const url = await server.createRepo('marked');
    const cache = path.join(tmp, 'marked');
    const child = (checkEveryMs: number, commits: number) =>
      execFileAsync(process.execPath, ['--import', 'tsx', path.resolve('test/fixtures/git-cache-child.ts'), url, cache, server.user, server.password, String(checkEveryMs), String(commits)]);
    await child(60_000, 4); // a new cache: nothing to check yet; 4 commits leave > 6 loose objects
    assert.ok(objectFiles(cache).loose > 6);
    await child(60_000, 4); // never checked: checked now (fetched afresh), then 4 more commits
    const before = objectFiles(cache);
    assert.ok(before.loose > 6, `loose objects: ${before.loose}`);
    await child(60_000, 0); // checked a moment ago by another process: not again
    assert.deepEqual(objectFiles(cache), before, 'the cache is left as it was');
    await child(0, 0); // checked on every start: fetched afresh
    assert.deepEqual(objectFiles(cache), { packs: 1, loose: 0 });
  });

  it('one lock per cache directory: two branches of one URL never run at the same time', async () => {
    const url = await server.createRepo('locked');
    const cache = path.join(tmp, 'locked');
    const a = open(url, cache, 'main');
    const b = open(url, cache, 'other');
    let running = 0;
    let overlap = false;
    const op = (repo: GitRepo, i: number) =>
      repo.exclusive(async () => {
        running++;
        if (running > 1) overlap = true;
        await commitFile(repo, `f${i}.yaml`, String(i));
        running--;
      });
    await Promise.all([0, 1, 2, 3].map((i) => op(i % 2 ? b : a, i)));
    assert.equal(overlap, false);
    const heads = await server.git(['ls-remote', `${server.base}/locked.git`]);
    assert.match(heads, /refs\/heads\/main/);
    assert.match(heads, /refs\/heads\/other/);
  });
});
