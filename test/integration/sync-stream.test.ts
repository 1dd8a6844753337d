// The streamed sync (each namespace rendered and hashed while the next ones are listed) writes
// exactly what a sync of the whole read, collected first, writes; it makes one LIST request per
// type and namespace and page, no more; and a resync with nothing changed commits nothing.
// The small version of bench/sync.bench.ts, as a correctness test (nothing here is timed).
// Real API server, real Git server.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, it } from 'node:test';
import { parse as parseYaml, stringify as stringifyYaml } from 'yaml';
import { sharedDeflateThread, usableCpus } from '../../src/adapters/git/deflate-thread.ts';
import { GitRepo } from '../../src/adapters/git/repo.ts';
import { KubeClient, ONE_SHOT_KUBE_API } from '../../src/adapters/kube/client.ts';
import type { SyncSpec } from '../../src/sync/engine.ts';
import { listOnly, readSyncSource, runSync, runSyncGroup } from '../../src/sync/engine.ts';
import { SyncGroups } from '../../src/sync/group.ts';
import { RenderCache, withKeptRenderCache } from '../../src/sync/render-cache.ts';
import type { TestCluster } from '../env/cluster.ts';
import { startCluster } from '../env/cluster.ts';
import type { GitServer } from '../env/git-server.ts';
import { startGitServer } from '../env/git-server.ts';
import { benchNamespace, seedObjects } from '../../bench/seed.ts';

let cluster: TestCluster;
let git: GitServer;
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'drs-stream-'));
const NAMESPACES = 9; // more than the reader keeps in flight at once
const PER_NAMESPACE = 40;
const TYPES = 3;

const spec: SyncSpec = {
  replication: 'bench/bench', sourceCluster: 'bench',
  namespaceSelector: { labelSelector: { matchLabels: { bench: 'true' } } },
  resourceTypes: ['configmaps', 'services', 'deployments'],
  plan: { scaleToZero: true, pvc: {}, secretsMode: 'Omit' },
  git: { path: 'clusters/dr', author: { name: 'bench', email: 'b@x' }, prune: true },
};

before(async () => {
  [cluster, git] = await Promise.all([startCluster({ controllerManager: false }), startGitServer()]);
  const client = await KubeClient.fromFile(cluster.kubeconfigPath, undefined, { qps: 0 });
  await seedObjects(client, NAMESPACES, PER_NAMESPACE);
  // One namespace with more ConfigMaps than a LIST page holds (500): read in two pages.
  await seedObjects(client, 1, 720, undefined, NAMESPACES);
  // Not selected: never read, never written.
  await client.request('POST', '/api/v1/namespaces', { metadata: { name: 'other' } });
  await client.request('POST', '/api/v1/namespaces/other/configmaps', { metadata: { name: 'x' }, data: { a: 'b' } });
});
after(async () => {
  await Promise.all([cluster?.stop(), git?.stop()]);
  await fs.promises.rm(tmp, { recursive: true, force: true });
});

const gitOut = (dir: string, ...args: string[]) => execFileSync('git', ['-C', dir, ...args], { encoding: 'utf8' }).trim();

it('streamed and collect-then-render syncs write the same tree; one LIST per type, namespace and page; a no-op resync commits nothing', async () => {
  const auth = { username: git.user, password: git.password };
  const streamedUrl = await git.createRepo('streamed');
  const collectedUrl = await git.createRepo('collected');
  const streamedRepo = new GitRepo({ url: streamedUrl, branch: 'main', auth, cacheDir: path.join(tmp, 's') });
  const collectedRepo = new GitRepo({ url: collectedUrl, branch: 'main', auth, cacheDir: path.join(tmp, 'c') });

  const source = await KubeClient.fromFile(cluster.kubeconfigPath, undefined, ONE_SHOT_KUBE_API);
  const before = { ...source.sent };
  const batches = sharedDeflateThread?.batches ?? 0;
  const streamed = await runSync(spec, { source, repo: streamedRepo });
  // With a second CPU, the new blobs were compressed on the deflate thread, a batch per namespace.
  assert.equal(sharedDeflateThread !== undefined, usableCpus() >= 2);
  if (sharedDeflateThread) assert.ok(sharedDeflateThread.batches - batches >= NAMESPACES, `deflate thread batches: ${sharedDeflateThread.batches - batches}`);
  const lists = source.sent.lists - before.lists;
  const selected = NAMESPACES + 1;
  // Every type of every selected namespace once, the big namespace's ConfigMaps twice (two pages), and the namespaces themselves once.
  assert.equal(lists, selected * TYPES + 1 + 1, `LIST requests of the sync (${lists})`);
  assert.ok(streamed.commit, 'the first sync commits');

  // The collected read (the controller's) lists each type across the cluster when that takes
  // fewer requests: a first page of one object says how many there are (ConfigMaps: 9 x 28 +
  // 504 + 1 elsewhere = 757, so that page and two of 500; Services 216 and Deployments 108: that
  // page and one more), and the namespaces once: 8 LIST requests instead of 32.
  const b1 = source.sent.lists;
  const read = await readSyncSource(spec, { source });
  assert.equal(source.sent.lists - b1, 8, 'LIST requests of the collected read');
  const collected = await runSync(spec, { source, repo: collectedRepo, read });
  assert.ok(collected.commit);

  const sClone = await git.clone('streamed');
  const cClone = await git.clone('collected');
  assert.equal(gitOut(sClone, 'rev-parse', 'HEAD^{tree}'), gitOut(cClone, 'rev-parse', 'HEAD^{tree}'), 'the same tree either way');
  const files = gitOut(sClone, 'ls-tree', '-r', '--name-only', 'HEAD').split('\n');
  const objects = NAMESPACES * PER_NAMESPACE + 720;
  // Per folder: namespace.yaml and kustomization.yaml; at the base path: kustomization.yaml.
  assert.equal(files.length, objects + 2 * selected + 1, 'one file per object, plus the namespace and kustomization files');
  assert.ok(files.includes(`clusters/dr/${benchNamespace(NAMESPACES)}/configmap-obj-716.yaml`), 'the second page of a LIST is written (ConfigMap 504 of 504)');
  assert.ok(!files.some((f) => f.startsWith('clusters/dr/other/')), 'an unselected namespace is not written');
  assert.deepEqual(streamed.counts, collected.counts);
  assert.equal(Object.values(streamed.counts).reduce((a, b) => a + b, 0), objects);
  assert.deepEqual(streamed.namespaces.map((n) => n.source), Array.from({ length: selected }, (_, i) => benchNamespace(i)), 'namespaces in order');

  // The bare LIST (the benchmark's baseline) reads the same objects with the same requests.
  const b2 = source.sent.lists;
  assert.equal(await listOnly(spec, { source }), objects);
  assert.equal(source.sent.lists - b2, lists);

  // Nothing changed: no commit, the branch where it was, and again one LIST per type, namespace and page.
  const b3 = source.sent.lists;
  const noop = await runSync(spec, { source, repo: streamedRepo });
  assert.equal(noop.commit, undefined);
  assert.equal(noop.head, streamed.commit);
  assert.equal(source.sent.lists - b3, lists);

  // One object changed: a commit with exactly that file.
  await source.request('PATCH', `/api/v1/namespaces/${benchNamespace(3)}/configmaps/obj-0`, { data: { other: 'changed' } }, 'application/merge-patch+json');
  const one = await runSync(spec, { source, repo: streamedRepo });
  assert.ok(one.commit);
  assert.deepEqual(one.diff, { added: [], changed: [`clusters/dr/${benchNamespace(3)}/configmap-obj-0.yaml`], removed: [] });
});

/** A GitRepo that counts its pushes and can run `beforePush` once, right before the next one. */
class CountingRepo extends GitRepo {
  pushes = 0;
  beforePush?: () => Promise<void>;
  override async push(commit: string, expected: string | undefined): Promise<void> {
    const f = this.beforePush;
    this.beforePush = undefined;
    await f?.();
    this.pushes++;
    return super.push(commit, expected);
  }
}

it('group commit: Replications sharing a repository get a commit each and one push; a push lost to the compare-and-swap is redone, nothing lost', async () => {
  const auth = { username: git.user, password: git.password };
  const url = await git.createRepo('group');
  const repo = new CountingRepo({ url, branch: 'main', auth, cacheDir: path.join(tmp, 'g') });
  const source = await KubeClient.fromFile(cluster.kubeconfigPath, undefined, ONE_SHOT_KUBE_API);
  const specFor = (i: number): SyncSpec => ({ ...spec, replication: `dr/rep-${i}`, namespaceSelector: undefined, sourceNamespace: benchNamespace(i) });
  const jobsFor = async (ids: number[]) => Promise.all(ids.map(async (i) => ({ spec: specFor(i), deps: { source, repo, read: await readSyncSource(specFor(i), { source }) } })));
  const groups = new SyncGroups();

  // Four syncs queue at once (the repository's lock is taken a turn later): one group, one push.
  const results = await Promise.all((await jobsFor([0, 1, 2, 3])).map((j) => groups.sync(repo, j)));
  assert.equal(repo.pushes, 1, 'one push for four syncs');
  const clone = await git.clone('group');
  const log = gitOut(clone, 'log', '--format=%H %s').split('\n').reverse();
  assert.equal(log.length, 4, 'one commit per Replication');
  for (const [i, r] of results.entries()) {
    assert.ok(r.commit, `rep-${i} committed`);
    const line = log.find((l) => l.startsWith(r.commit!));
    assert.ok(line?.includes(`dr/rep-${i}`), `rep-${i}'s commit names it: ${line}`);
    const touched = gitOut(clone, 'show', '--name-only', '--format=', r.commit!).split('\n');
    assert.ok(touched.every((f) => f === 'clusters/dr/kustomization.yaml' || f.startsWith(`clusters/dr/${benchNamespace(i)}/`)), `rep-${i}'s commit touches its folder only`);
    assert.equal(r.head, results.at(-1)!.head, 'every result reports the pushed tip');
  }

  // A sync still reading its source is waited for (briefly): it goes in the same push.
  await source.request('PATCH', `/api/v1/namespaces/${benchNamespace(0)}/configmaps/obj-0`, { data: { other: 'r0' } }, 'application/merge-patch+json');
  await source.request('PATCH', `/api/v1/namespaces/${benchNamespace(3)}/configmaps/obj-0`, { data: { other: 'r3' } }, 'application/merge-patch+json');
  const [early, late] = await jobsFor([0, 3]);
  const pushesBefore = repo.pushes;
  const stillReading = groups.reading(repo);
  const earlySync = groups.sync(repo, early!);
  await new Promise((r) => setTimeout(r, 300));
  const lateSync = groups.sync(repo, late!);
  stillReading();
  assert.ok((await earlySync).commit && (await lateSync).commit);
  assert.equal(repo.pushes - pushesBefore, 1, 'one push: the group waited for the sync still reading');
  // ... but not for long: a sync that never comes does not hold the others.
  await source.request('PATCH', `/api/v1/namespaces/${benchNamespace(0)}/configmaps/obj-0`, { data: { other: 'r0b' } }, 'application/merge-patch+json');
  const neverJoins = groups.reading(repo);
  const t0 = performance.now();
  assert.ok((await groups.sync(repo, (await jobsFor([0]))[0]!)).commit);
  const waited = performance.now() - t0;
  assert.ok(waited < 10_000, `the group waited ${waited.toFixed(0)} ms for a sync that never joined`);
  neverJoins();

  // The group's push is rejected (another writer moved the branch): each sync is redone alone, all land.
  await source.request('PATCH', `/api/v1/namespaces/${benchNamespace(1)}/configmaps/obj-0`, { data: { other: 'g1' } }, 'application/merge-patch+json');
  await source.request('PATCH', `/api/v1/namespaces/${benchNamespace(2)}/configmaps/obj-0`, { data: { other: 'g2' } }, 'application/merge-patch+json');
  const other = new GitRepo({ url, branch: 'main', auth, cacheDir: path.join(tmp, 'other') });
  repo.beforePush = async () => {
    await source.request('PATCH', `/api/v1/namespaces/${benchNamespace(4)}/configmaps/obj-0`, { data: { other: 'g4' } }, 'application/merge-patch+json');
    assert.ok((await runSync(specFor(4), { source, repo: other })).commit);
  };
  const before = repo.pushes;
  const second = await runSyncGroup(await jobsFor([1, 2]), repo);
  assert.deepEqual(second.map((r) => r.status), ['fulfilled', 'fulfilled']);
  assert.equal(repo.pushes - before, 3, 'the rejected group push, then one push per sync');
  const clone2 = await git.clone('group');
  for (const [i, v] of [[1, 'g1'], [2, 'g2'], [4, 'g4']] as const) {
    const file = fs.readFileSync(path.join(clone2, `clusters/dr/${benchNamespace(i)}/configmap-obj-0.yaml`), 'utf8');
    assert.match(file, new RegExp(`other: ${v}`), `${benchNamespace(i)} has its change`);
  }

  // The push fails outright (the server answers 503): every sync of the group fails and says
  // which repository, nothing moves, and the next group writes both changes.
  await source.request('PATCH', `/api/v1/namespaces/${benchNamespace(1)}/configmaps/obj-0`, { data: { other: 'h1' } }, 'application/merge-patch+json');
  await source.request('PATCH', `/api/v1/namespaces/${benchNamespace(2)}/configmaps/obj-0`, { data: { other: 'h2' } }, 'application/merge-patch+json');
  const tipBefore = gitOut(await git.clone('group'), 'rev-parse', 'HEAD');
  await git.fault({ status: 503, match: 'git-receive-pack' });
  let failed: PromiseSettledResult<unknown>[];
  try {
    failed = await runSyncGroup(await jobsFor([1, 2]), repo);
  } finally {
    await git.fault(undefined);
  }
  assert.deepEqual(failed.map((r) => r.status), ['rejected', 'rejected']);
  for (const r of failed) assert.match(String((r as PromiseRejectedResult).reason), /push to the DR repository .*group\.git failed/);
  assert.equal(gitOut(await git.clone('group'), 'rev-parse', 'HEAD'), tipBefore, 'nothing pushed');
  const again = await runSyncGroup(await jobsFor([1, 2]), repo);
  assert.deepEqual(again.map((r) => r.status), ['fulfilled', 'fulfilled']);
  const clone3 = await git.clone('group');
  for (const [i, v] of [[1, 'h1'], [2, 'h2']] as const) {
    assert.match(fs.readFileSync(path.join(clone3, `clusters/dr/${benchNamespace(i)}/configmap-obj-0.yaml`), 'utf8'), new RegExp(`other: ${v}`));
  }
});

it('render cache: a resync renders only changed objects and leaves unchanged folders as they are, kept between processes; it writes what a sync without it writes; a file edited by hand or new options render again', async () => {
  const auth = { username: git.user, password: git.password };
  const cachedRepo = new GitRepo({ url: await git.createRepo('cached'), branch: 'main', auth, cacheDir: path.join(tmp, 'rc') });
  const plainRepo = new GitRepo({ url: await git.createRepo('plain'), branch: 'main', auth, cacheDir: path.join(tmp, 'rp') });
  const source = await KubeClient.fromFile(cluster.kubeconfigPath, undefined, ONE_SHOT_KUBE_API);
  const objects = NAMESPACES * PER_NAMESPACE + 720;
  // Each call loads the cache from the repository's cache folder and saves it, as `dr-syncer sync` does.
  const cached = (s: SyncSpec = spec) => withKeptRenderCache(cachedRepo, s, console, (renderCache) => runSync(s, { source, repo: cachedRepo, renderCache }));
  const sameTree = async (s: SyncSpec = spec) => {
    await runSync(s, { source, repo: plainRepo });
    assert.equal(gitOut(await git.clone('cached'), 'rev-parse', 'HEAD^{tree}'), gitOut(await git.clone('plain'), 'rev-parse', 'HEAD^{tree}'), 'the same tree as a sync without the cache');
  };

  const first = await cached();
  assert.ok(first.commit);
  assert.equal(first.reused, 0, 'nothing to reuse in a fresh cache');
  const file = RenderCache.fileFor(cachedRepo, spec.replication, spec.sourceCluster);
  assert.ok(file && fs.existsSync(file), 'the cache is kept in the repository cache folder');

  const noop = await cached();
  assert.equal(noop.commit, undefined, 'no commit');
  assert.equal(noop.reused, objects, 'every object reused by a new process');
  assert.equal(Object.values(noop.counts).reduce((a, b) => a + b, 0), objects, 'reused objects are counted as written');

  // One object changed: only it is rendered, and the commit has only its file.
  await source.request('PATCH', `/api/v1/namespaces/${benchNamespace(5)}/configmaps/obj-0`, { data: { other: 'cache' } }, 'application/merge-patch+json');
  const one = await cached();
  assert.deepEqual(one.diff, { added: [], changed: [`clusters/dr/${benchNamespace(5)}/configmap-obj-0.yaml`], removed: [] });
  assert.equal(one.reused, objects - 1);
  await sameTree();

  // A Deployment scaled to 0 at the source reads its last file (the remembered count): never
  // from the cache, once anything else in its namespace changed.
  await source.request('PATCH', `/apis/apps/v1/namespaces/${benchNamespace(2)}/deployments/obj-9`, { spec: { replicas: 0 } }, 'application/merge-patch+json');
  const scaled = await cached();
  assert.equal(scaled.commit, undefined, 'a source at 0 replicas changes nothing in DR (scale to zero)');
  assert.equal((await cached()).reused, objects, 'nothing changed: the whole folder is left as it is');
  await source.request('PATCH', `/api/v1/namespaces/${benchNamespace(2)}/configmaps/obj-0`, { data: { other: 'cache2' } }, 'application/merge-patch+json');
  const next = await cached();
  assert.deepEqual(next.diff.changed, [`clusters/dr/${benchNamespace(2)}/configmap-obj-0.yaml`]);
  assert.equal(next.reused, objects - 2, 'the changed ConfigMap and the workload at 0 are rendered');
  await sameTree();

  // The source Namespace changed (a label): only its namespace.yaml.
  await source.request('PATCH', `/api/v1/namespaces/${benchNamespace(4)}`, { metadata: { labels: { team: 'web' } } }, 'application/merge-patch+json');
  const relabelled = await cached();
  assert.deepEqual(relabelled.diff, { added: [], changed: [`clusters/dr/${benchNamespace(4)}/namespace.yaml`], removed: [] });
  await sameTree();

  // Files edited and deleted in the repository by hand, objects unchanged: rendered again and restored.
  const clone = await git.clone('cached');
  const folder = path.join(clone, 'clusters/dr', benchNamespace(0));
  fs.writeFileSync(path.join(folder, 'configmap-obj-1.yaml'), fs.readFileSync(path.join(folder, 'configmap-obj-1.yaml'), 'utf8').replace('other: "1"', 'other: "hand"'));
  fs.rmSync(path.join(folder, 'configmap-obj-2.yaml'));
  fs.appendFileSync(path.join(clone, 'clusters/dr', benchNamespace(1), 'kustomization.yaml'), '# by hand\n');
  gitOut(clone, 'commit', '-qam', 'by hand');
  gitOut(clone, 'push', '-q', 'origin', 'HEAD:main');
  const restored = await cached();
  assert.deepEqual(restored.diff, {
    added: [`clusters/dr/${benchNamespace(0)}/configmap-obj-2.yaml`],
    changed: [`clusters/dr/${benchNamespace(0)}/configmap-obj-1.yaml`, `clusters/dr/${benchNamespace(1)}/kustomization.yaml`],
    removed: [],
  });
  assert.equal(restored.reused, objects - 2);
  await sameTree();

  // The push fails outright after the cache recorded the new rendering: nothing is lost, the
  // next sync (a new process) still writes the change.
  await source.request('PATCH', `/api/v1/namespaces/${benchNamespace(6)}/configmaps/obj-0`, { data: { other: 'lost-push' } }, 'application/merge-patch+json');
  await git.fault({ status: 503, match: 'git-receive-pack' });
  try {
    await assert.rejects(cached(), /push to the DR repository/);
  } finally {
    await git.fault(undefined);
  }
  const afterFailedPush = await cached();
  assert.deepEqual(afterFailedPush.diff.changed, [`clusters/dr/${benchNamespace(6)}/configmap-obj-0.yaml`]);
  await sameTree();

  // Other options (scale to zero off): every object is rendered again.
  const unscaled: SyncSpec = { ...spec, plan: { ...spec.plan, scaleToZero: false } };
  const changed = await cached(unscaled);
  assert.equal(changed.reused, 0, 'new options: nothing reused');
  assert.ok(changed.commit);
  await sameTree(unscaled);

  // An unreadable cache file is only a lost cache.
  fs.writeFileSync(file!, '{"scope": tru');
  const afterLoss = await cached(unscaled);
  assert.equal(afterLoss.commit, undefined);
  assert.equal(afterLoss.reused, 0);
  assert.equal((await cached(unscaled)).reused, objects);
});

it('a no-op resync in a new process reads no folder of the repository: which folders are whose is kept by tree id with the render cache', async () => {
  const url = await git.createRepo('child');
  const cacheDir = path.join(tmp, 'child');
  // bench/sync-child.ts: one `dr-syncer sync` of `spec` in its own process, as the benchmark runs it.
  const child = (): { commit: string | null; reused: number; objectsRead: number } => {
    const out = execFileSync(process.execPath, ['--import', 'tsx', path.resolve(import.meta.dirname, '../../bench/sync-child.ts'), 'sync', cluster.kubeconfigPath, url, git.user, git.password, cacheDir], { encoding: 'utf8' });
    return JSON.parse(out.trim().split('\n').pop()!) as { commit: string | null; reused: number; objectsRead: number };
  };
  const objects = NAMESPACES * PER_NAMESPACE + 720;
  assert.ok(child().commit, 'the first sync commits');
  const noop = child();
  assert.deepEqual([noop.commit, noop.reused], [null, objects], 'nothing committed, every object reused');
  // The tip commit, the root tree, clusters/ and clusters/dr/.
  assert.ok(noop.objectsRead <= 4, `objects read from the Git cache: ${noop.objectsRead}`);

  // Without the kept cache the same no-op reads each folder's tree and its namespace.yaml.
  const repo = new GitRepo({ url, branch: 'main', cacheDir });
  fs.rmSync(RenderCache.fileFor(repo, spec.replication, spec.sourceCluster)!);
  const cold = child();
  assert.equal(cold.commit, null);
  assert.ok(cold.objectsRead >= 2 * (NAMESPACES + 1), `objects read without the cache: ${cold.objectsRead}`);
  assert.equal(child().objectsRead, noop.objectsRead, 'and the cache it saved serves the next one');
});

it('a render cache file that names the wrong owner for a folder, or another object\'s file for an object, never makes a sync delete anything', async () => {
  const url = await git.createRepo('forged');
  const cacheDir = path.join(tmp, 'forged');
  const child = (): { commit: string | null } => {
    const out = execFileSync(process.execPath, ['--import', 'tsx', path.resolve(import.meta.dirname, '../../bench/sync-child.ts'), 'sync', cluster.kubeconfigPath, url, git.user, git.password, cacheDir], { encoding: 'utf8' });
    return JSON.parse(out.trim().split('\n').pop()!) as { commit: string | null };
  };
  assert.ok(child().commit);
  // Another Replication's folder beside ours, as a repository shared by two would have.
  const clone = await git.clone('forged');
  fs.mkdirSync(path.join(clone, 'clusters/dr/stranger'));
  fs.writeFileSync(path.join(clone, 'clusters/dr/stranger/namespace.yaml'), 'apiVersion: v1\nkind: Namespace\nmetadata:\n  name: stranger\n  annotations:\n    dr-syncer.io/replication: other/rep\n');
  fs.writeFileSync(path.join(clone, 'clusters/dr/stranger/configmap-keep.yaml'), 'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: keep\n');
  gitOut(clone, 'add', '-A');
  gitOut(clone, 'commit', '-qm', 'another Replication');
  gitOut(clone, 'push', '-q', 'origin', 'HEAD:main');
  assert.equal(child().commit, null, 'the other folder is left alone');

  // The cache file now says that folder is ours: with prune on and its namespace not selected, a
  // sync that believed it would remove it.
  const file = RenderCache.fileFor(new GitRepo({ url, branch: 'main', cacheDir }), spec.replication, spec.sourceCluster)!;
  const saved = JSON.parse(fs.readFileSync(file, 'utf8')) as { trees: [string, string, boolean][] };
  const stranger = gitOut(clone, 'rev-parse', 'HEAD:clusters/dr/stranger');
  assert.ok(saved.trees.some(([t, owner]) => t === stranger && owner === 'other/rep'), 'the cache remembers the folder as another Replication\'s');
  saved.trees = saved.trees.map(([t, owner, k]) => [t, t === stranger ? spec.replication : owner, k]);
  fs.writeFileSync(file, JSON.stringify(saved));
  assert.equal(child().commit, null, 'nothing written');
  const after = await git.clone('forged');
  assert.deepEqual(gitOut(after, 'ls-tree', '--name-only', 'HEAD', 'clusters/dr/stranger/').split('\n'), ['clusters/dr/stranger/configmap-keep.yaml', 'clusters/dr/stranger/namespace.yaml']);

  // An object's entry naming another object's file (and the folder rendered again): the object
  // is rendered, and its file stays.
  const ns0 = benchNamespace(0);
  const cache = JSON.parse(fs.readFileSync(file, 'utf8')) as { folders: [string, unknown, string][] };
  cache.folders = cache.folders.map(([dest, memo, raw]) => {
    if (dest !== ns0) return [dest, memo, raw];
    const entries = JSON.parse(raw) as [string, string, string, string][];
    const other = entries.find((e) => e[1] === 'configmap-obj-2.yaml')!;
    return [dest, null, JSON.stringify(entries.map((e) => (e[1] === 'configmap-obj-1.yaml' ? [e[0], other[1], other[2], e[3]] : e)))];
  });
  fs.writeFileSync(file, JSON.stringify(cache));
  assert.equal(child().commit, null, 'nothing written');
  assert.ok(gitOut(await git.clone('forged'), 'ls-tree', '--name-only', 'HEAD', `clusters/dr/${ns0}/`).split('\n').includes(`clusters/dr/${ns0}/configmap-obj-1.yaml`));
});

it('a reader allowed to list only in the selected namespaces (namespaced RBAC) reads the same objects, one LIST per type and namespace', async () => {
  const admin = await KubeClient.fromFile(cluster.kubeconfigPath, undefined, ONE_SHOT_KUBE_API);
  const selected = Array.from({ length: NAMESPACES + 1 }, (_, i) => benchNamespace(i));
  // Namespaces may be listed everywhere (the selector needs it); the replicated types only in the selected namespaces.
  await admin.request('POST', '/apis/rbac.authorization.k8s.io/v1/clusterroles', { metadata: { name: 'ns-lister' }, rules: [{ apiGroups: [''], resources: ['namespaces'], verbs: ['list', 'get'] }] });
  await admin.request('POST', '/apis/rbac.authorization.k8s.io/v1/clusterrolebindings', { metadata: { name: 'ns-lister' }, roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'ns-lister' }, subjects: [{ kind: 'User', name: 'ns-reader', apiGroup: 'rbac.authorization.k8s.io' }] });
  for (const ns of selected) {
    await admin.request('POST', `/apis/rbac.authorization.k8s.io/v1/namespaces/${ns}/roles`, { metadata: { name: 'reader' }, rules: [{ apiGroups: ['', 'apps'], resources: ['configmaps', 'services', 'deployments'], verbs: ['list'] }] });
    await admin.request('POST', `/apis/rbac.authorization.k8s.io/v1/namespaces/${ns}/rolebindings`, { metadata: { name: 'reader' }, roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: 'reader' }, subjects: [{ kind: 'User', name: 'ns-reader', apiGroup: 'rbac.authorization.k8s.io' }] });
  }
  const kc = parseYaml(fs.readFileSync(cluster.kubeconfigPath, 'utf8')) as { users: { user: Record<string, unknown> }[] };
  for (const u of kc.users) u.user.as = 'ns-reader';
  const limited = await KubeClient.fromString(stringifyYaml(kc), undefined, ONE_SHOT_KUBE_API);

  const names = (r: Awaited<ReturnType<typeof readSyncSource>>) => r.namespaces.map((n) => [n.source, n.failedTypes.length, n.listed.map((o) => `${o.kind}/${o.metadata.namespace}/${o.metadata.name}`)]);
  const wide = await readSyncSource(spec, { source: admin });
  const b = limited.sent.lists;
  const narrow = await readSyncSource(spec, { source: limited });
  assert.deepEqual(narrow.warnings, []);
  assert.deepEqual(names(narrow), names(wide), 'the same namespaces, objects and order, nothing failed');
  // The namespaces, a refused first page per type, then each type in each namespace (the big namespace's ConfigMaps in two pages).
  assert.equal(limited.sent.lists - b, 1 + TYPES + selected.length * TYPES + 1);
});
