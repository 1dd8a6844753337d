// The Git adapter against a real smart-HTTP server (git http-backend) and the git CLI: our
// objects, packs and ref updates must be what git itself accepts, and a moved branch must be
// a PushConflictError that leaves the remote as it was.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { advertisement, receivePack } from '../../src/adapters/git/http.ts';
import { encodePack } from '../../src/adapters/git/objects.ts';
import { GitRepo, PushConflictError } from '../../src/adapters/git/repo.ts';
import type { GitServer } from '../env/git-server.ts';
import { startGitServer } from '../env/git-server.ts';

let server: GitServer;
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'drs-gitrepo-'));
let n = 0;
const cacheDir = () => fs.mkdtempSync(path.join(tmp, 'cache-'));
const author = { name: 'dr-syncer', email: 'dr@example.com' };

before(async () => {
  server = await startGitServer();
});
after(async () => {
  await server?.stop();
  await fs.promises.rm(tmp, { recursive: true, force: true });
});

const remoteHead = async (name: string, branch = 'main') => (await server.git(['ls-remote', `${server.base}/${name}.git`, `refs/heads/${branch}`])).split('\t')[0] || undefined;

function open(url: string, opts: { cache?: string; password?: string; branch?: string } = {}): GitRepo {
  return new GitRepo({ url, branch: opts.branch ?? 'main', auth: { username: server.user, password: opts.password ?? server.password }, cacheDir: opts.cache ?? cacheDir() });
}

/** `count` files in `folders` namespaces under clusters/dr, with `tag` in every content. */
function changes(folders: number, count: number, tag: string): Map<string, Map<string, string> | null> {
  const out: Map<string, Map<string, string> | null> = new Map();
  for (let f = 0; f < folders; f++) {
    const files = new Map<string, string>();
    for (let i = 0; i < count; i++) files.set(`configmap-obj-${i}.yaml`, `apiVersion: v1\nkind: ConfigMap\nmetadata: {name: obj-${i}, namespace: ns-${f}}\ndata: {tag: "${tag}", i: "${i}"}\n`);
    files.set('namespace.yaml', `apiVersion: v1\nkind: Namespace\nmetadata: {name: ns-${f}}\n`);
    out.set(`clusters/dr/ns-${f}`, files);
  }
  return out;
}

async function syncOnce(repo: GitRepo, folders: Map<string, Map<string, string> | null>, message: string): Promise<string> {
  const snap = await repo.fetch();
  const tree = await repo.buildTree(snap.tree, 'clusters/dr', folders, async (entries) => new Map([['kustomization.yaml', `resources: [${entries.filter((e) => e.type === 'tree').map((e) => e.path).sort().join(', ')}]\n`]]));
  const commit = await repo.commit(tree, snap.commit, message, author, new Date(1_700_000_000_000 + ++n * 1000));
  await repo.push(commit, snap.commit);
  return commit;
}

async function fsckClone(name: string): Promise<string> {
  const dir = await server.clone(name);
  await server.git(['fsck', '--strict', '--no-dangling'], dir);
  await server.git(['fsck', '--strict', '--no-dangling'], path.join(server.root, `${name}.git`));
  return dir;
}

describe('GitRepo over smart HTTP', () => {
  it('the first push creates the branch in an empty repository; git fsck is clean', async () => {
    const url = await server.createRepo('first');
    const repo = open(url);
    assert.deepEqual(await repo.fetch(), {});
    const c1 = await syncOnce(repo, changes(3, 150, 'one'), 'first');
    assert.equal(await remoteHead('first'), c1);
    const dir = await fsckClone('first');
    assert.equal(fs.readFileSync(path.join(dir, 'clusters/dr/ns-2/configmap-obj-149.yaml'), 'utf8'), changes(3, 150, 'one').get('clusters/dr/ns-2')!.get('configmap-obj-149.yaml'));
    assert.equal(fs.readFileSync(path.join(dir, 'clusters/dr/kustomization.yaml'), 'utf8'), 'resources: [ns-0, ns-1, ns-2]\n');
    assert.equal((await server.git(['log', '--format=%s%n%an <%ae>', '-1'], dir)).trim(), 'first\ndr-syncer <dr@example.com>');
  });

  it('a second push fast-forwards with only the new objects; unchanged content makes no new tree', async () => {
    const url = await server.createRepo('second');
    const cache = cacheDir();
    const repo = open(url, { cache });
    const c1 = await syncOnce(repo, changes(2, 120, 'one'), 'one');
    // One changed file: a small batch (loose objects), a small pack on the wire.
    const small = changes(2, 120, 'one');
    small.get('clusters/dr/ns-1')!.set('configmap-obj-7.yaml', 'changed\n');
    const c2 = await syncOnce(repo, small, 'two');
    assert.equal(await remoteHead('second'), c2);
    assert.equal((await server.git(['rev-parse', `${c2}^`], path.join(server.root, 'second.git'))).trim(), c1);
    await fsckClone('second');
    // The same content again: the same root tree.
    const snap = await repo.fetch();
    assert.equal(snap.commit, c2);
    const tree = await repo.buildTree(snap.tree, 'clusters/dr', small, async () => new Map([['kustomization.yaml', 'resources: [ns-0, ns-1]\n']]));
    assert.equal(tree, snap.tree);
    // A fresh cache (isomorphic-git fetches what we pushed) and the warm one read the same.
    const cold = open(url);
    assert.deepEqual(await cold.fetch(), snap);
    assert.equal(await cold.readBlob((await cold.readDir(snap.tree, 'clusters/dr/ns-1'))!.find((e) => e.path === 'configmap-obj-7.yaml')!.oid), 'changed\n');
    const warm = open(url, { cache });
    assert.deepEqual(await warm.fetch(), snap);
    assert.deepEqual(await warm.readDir(snap.tree, 'clusters/dr/ns-0'), await cold.readDir(snap.tree, 'clusters/dr/ns-0'));
  });

  it('a fetch whose tip we already have downloads nothing', async () => {
    const url = await server.createRepo('noop');
    const cache = cacheDir();
    const repo = open(url, { cache });
    await syncOnce(repo, changes(1, 150, 'x'), 'x');
    const packs = () => fs.readdirSync(path.join(cache, fs.readdirSync(cache)[0]!, 'objects', 'pack')).sort();
    const before = packs();
    const snap = await open(url, { cache }).fetch();
    assert.equal(snap.commit, await remoteHead('noop'));
    assert.deepEqual(packs(), before);
  });

  it('a stale push is a PushConflictError and leaves the remote unchanged', async () => {
    const url = await server.createRepo('stale');
    const a = open(url);
    const b = open(url);
    await syncOnce(a, changes(1, 5, 'base'), 'base');
    const snapB = await b.fetch();
    const moved = await syncOnce(a, changes(1, 5, 'a'), 'a moves the branch');
    const tree = await b.buildTree(snapB.tree, 'clusters/dr', changes(1, 5, 'b'), async () => new Map());
    const stale = await b.commit(tree, snapB.commit, 'b is late', author, new Date());
    await assert.rejects(b.push(stale, snapB.commit), PushConflictError);
    assert.equal(await remoteHead('stale'), moved);
    // Creating a branch that exists by now is a conflict too.
    await assert.rejects(b.push(stale, undefined), PushConflictError);
    // After a fetch, b builds on the new tip and wins.
    const c = await syncOnce(b, changes(1, 5, 'b'), 'b again');
    assert.equal(await remoteHead('stale'), c);
    await fsckClone('stale');
  });

  it('the server itself refuses a ref update whose old value is stale (compare-and-swap)', async () => {
    const url = await server.createRepo('cas');
    const repo = open(url);
    const c1 = await syncOnce(repo, changes(1, 2, 'one'), 'one');
    const c2 = await syncOnce(repo, changes(1, 2, 'two'), 'two');
    const creds = { username: server.user, password: server.password };
    const adv = await advertisement(url, 'git-receive-pack', creds);
    // Pretend we still believe the branch is at c2's parent and try to move it back to c1.
    const report = await receivePack(adv, { ref: 'refs/heads/main', old: c1, new: c1 }, encodePack([]).pack, creds);
    assert.equal(report.unpack, 'ok');
    assert.ok(report.refs.get('refs/heads/main'), 'rejected with a reason');
    assert.equal(await remoteHead('cas'), c2);
  });

  it('a push that is not a fast-forward of the expected tip is refused before it is sent', async () => {
    const url = await server.createRepo('nonff');
    const repo = open(url);
    const c1 = await syncOnce(repo, changes(1, 2, 'one'), 'one');
    const snap = await repo.fetch();
    const orphan = await repo.commit(snap.tree!, undefined, 'unrelated history', author, new Date());
    await assert.rejects(repo.push(orphan, c1), PushConflictError);
    assert.equal(await remoteHead('nonff'), c1);
  });

  it('a missing branch is created next to the existing one', async () => {
    const url = await server.createRepo('branches');
    const c1 = await syncOnce(open(url), changes(1, 2, 'main'), 'main');
    const other = open(url, { branch: 'dr' });
    assert.deepEqual(await other.fetch(), {});
    const c2 = await syncOnce(other, changes(1, 2, 'dr'), 'dr');
    assert.equal(await remoteHead('branches', 'dr'), c2);
    assert.equal(await remoteHead('branches'), c1);
    await fsckClone('branches');
  });

  it('wrong credentials give the clear authentication error, for fetch and for push', async () => {
    const url = await server.createRepo('auth');
    const good = open(url);
    const c1 = await syncOnce(good, changes(1, 2, 'one'), 'one');
    const bad = open(url, { password: 'wrong' });
    await assert.rejects(bad.fetch(), /^Error: fetching .* failed: authentication failed: the server refused the credentials/);
    await assert.rejects(bad.push(c1, c1), /^Error: push to .* failed: authentication failed/);
    const none = new GitRepo({ url, branch: 'main', cacheDir: cacheDir() });
    await assert.rejects(none.fetch(), /authentication failed/);
  });

  it('a token authenticates as x-access-token (GitHub/GitLab style) unless a username is given', async () => {
    const tokenServer = await startGitServer({ user: 'x-access-token', password: 'tok3n' });
    try {
      const url = await tokenServer.createRepo('tok');
      const repo = new GitRepo({ url, branch: 'main', auth: { token: 'tok3n' }, cacheDir: cacheDir() });
      const c = await syncOnce(repo, changes(1, 2, 'tok'), 'tok');
      assert.equal((await tokenServer.git(['ls-remote', `${tokenServer.base}/tok.git`, 'refs/heads/main'])).split('\t')[0], c);
      const wrongUser = new GitRepo({ url, branch: 'main', auth: { token: 'tok3n', username: 'someone' }, cacheDir: cacheDir() });
      await assert.rejects(wrongUser.fetch(), /authentication failed/);
    } finally {
      await tokenServer.stop();
    }
  });
});

describe('GitRepo on a local path', () => {
  it('pushes by compare-and-swap of the branch; git fsck is clean', async () => {
    const dir = path.join(tmp, 'local.git');
    await server.git(['init', '-q', '--bare', '-b', 'main', dir]);
    const repo = new GitRepo({ url: dir, branch: 'main', cacheDir: cacheDir() });
    const c1 = await syncOnce(repo, changes(2, 120, 'one'), 'one');
    const c2 = await syncOnce(repo, changes(2, 120, 'two'), 'two');
    assert.equal((await server.git(['rev-parse', 'refs/heads/main'], dir)).trim(), c2);
    await assert.rejects(repo.push(c2, c1), PushConflictError);
    assert.equal((await server.git(['rev-parse', 'refs/heads/main'], dir)).trim(), c2);
    await server.git(['fsck', '--strict', '--no-dangling'], dir);
    assert.ok(!fs.existsSync(path.join(dir, 'refs/heads/main.lock')));
  });
});
