// `dr-syncer diff <replication>` as people run it: a separate process against a real API server
// (the controller's cluster, here also the source) and the loopback Git server. The diff must
// move nothing, and be exactly what the next sync commits: the printed patch, applied with
// `git apply` to a checkout of the branch, gives the tree of the sync that follows.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, it } from 'node:test';
import { GitRepo } from '../../src/adapters/git/repo.ts';
import { KubeClient } from '../../src/adapters/kube/client.ts';
import type { Replication } from '../../src/api/v1alpha1/index.ts';
import { runSync } from '../../src/sync/engine.ts';
import type { SyncResult } from '../../src/sync/engine.ts';
import { gitTarget, syncSpecFor } from '../../src/sync/spec.ts';
import type { TestCluster } from '../env/cluster.ts';
import { kubectl, startCluster } from '../env/cluster.ts';
import type { GitServer } from '../env/git-server.ts';
import { startGitServer } from '../env/git-server.ts';

const run = promisify(execFile);
const CLI = path.resolve('src/cli/main.ts');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'drs-cli-diff-'));
let cluster: TestCluster;
let git: GitServer;
let client: KubeClient;
let repoUrl: string;

interface CliResult { code: number; stdout: string; stderr: string }

async function cli(args: string[]): Promise<CliResult> {
  try {
    const r = await run(process.execPath, ['--import', 'tsx', CLI, ...args], { maxBuffer: 1 << 24 });
    return { code: 0, stdout: r.stdout, stderr: r.stderr };
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string };
    return { code: e.code ?? -1, stdout: e.stdout ?? '', stderr: e.stderr ?? '' };
  }
}

const diff = (name: string, ...extra: string[]) => cli(['diff', name, '--kubeconfig', cluster.kubeconfigPath, '-n', 'dr-syncer', '--cache-dir', path.join(tmp, 'cli-cache'), ...extra]);
const apply = (...docs: object[]) => kubectl(cluster.kubeconfigPath, ['apply', '-f', '-'], { input: docs.map((d) => JSON.stringify(d)).join('\n') });
const tip = async () => (await git.git(['ls-remote', `${git.base}/dr.git`, 'refs/heads/main'])).split('\t')[0] ?? '';
const commitCount = async () => (await git.git(['rev-list', '--count', 'main'], path.join(git.root, 'dr.git'))).trim();

/** The real sync the controller would run next: the Replication as the API server has it, its source cluster named "local" (the controller's default --cluster-name). */
async function sync(): Promise<SyncResult> {
  const rep = await client.get<Replication>('/apis/dr-syncer.io/v1alpha1/namespaces/dr-syncer/replications/shop');
  const target = gitTarget(rep);
  const repo = new GitRepo({ url: target.url, branch: target.branch, cacheDir: path.join(tmp, 'sync-cache'), auth: { username: git.user, password: git.password } });
  return runSync(syncSpecFor(rep, 'local', target), { source: client, repo });
}

/**
 * diff (exit 1, the branch does not move), then the patch applied to a checkout of the branch,
 * then the real sync: its commit, on the same parent, has exactly the patched tree.
 */
async function diffIsNextCommit(): Promise<{ patch: string; stat: string; commit: string; parent: string }> {
  const parent = await tip();
  const count = parent ? await commitCount() : '0';
  const d = await diff('shop');
  assert.equal(d.code, 1, d.stderr);
  assert.match(d.stdout, /^diff --git a\//);
  assert.match(d.stderr, new RegExp(`\\d+ files? would change in ${repoUrl.replace(/[.]/g, '\\.')} \\(main, clusters/dr\\)$`, 'm'));
  const stat = await diff('shop', '--stat');
  assert.equal(stat.code, 1, stat.stderr);
  assert.equal(await tip(), parent, 'diff moved the branch');
  if (parent) assert.equal(await commitCount(), count);

  const work = await git.clone('dr');
  const patchFile = path.join(tmp, `patch-${Date.now()}.diff`);
  fs.writeFileSync(patchFile, d.stdout);
  await git.git(['apply', '--index', patchFile], work);

  const r = await sync();
  assert.ok(r.commit, 'the sync after the diff committed');
  assert.equal((await git.git(['rev-list', '--parents', '-n', '1', r.commit], path.join(git.root, 'dr.git'))).trim(), parent ? `${r.commit} ${parent}` : r.commit);
  await git.git(['fetch', '-q', 'origin'], work);
  assert.equal(await git.git(['diff', '--cached', '--stat', 'origin/main'], work), '', 'the patched checkout and the sync\'s commit differ');
  const committed = parent ? await git.git(['diff', '--name-status', '--no-renames', parent, r.commit], path.join(git.root, 'dr.git')) : '';
  if (parent) assert.equal(stat.stdout, committed, '--stat lists the files the commit changed');
  return { patch: d.stdout, stat: stat.stdout, commit: r.commit, parent };
}

before(async () => {
  [cluster, git] = await Promise.all([startCluster({ controllerManager: false }), startGitServer()]);
  repoUrl = await git.createRepo('dr');
  client = await KubeClient.fromFile(cluster.kubeconfigPath);
  await kubectl(cluster.kubeconfigPath, ['apply', '--server-side', '-f', path.resolve('crds')]);
  await kubectl(cluster.kubeconfigPath, ['wait', '--for=condition=Established', 'crd/replications.dr-syncer.io', 'crd/remoteclusters.dr-syncer.io']);
  await kubectl(cluster.kubeconfigPath, ['create', 'namespace', 'dr-syncer']);
  await kubectl(cluster.kubeconfigPath, ['-n', 'dr-syncer', 'create', 'secret', 'generic', 'git-creds', `--from-literal=username=${git.user}`, `--from-literal=password=${git.password}`]);
  const replication = (name: string, gitSpec: Record<string, unknown>) => ({
    apiVersion: 'dr-syncer.io/v1alpha1', kind: 'Replication', metadata: { name, namespace: 'dr-syncer' },
    spec: { mode: 'Manual', sourceNamespace: 'shop', resourceTypes: ['deployments', 'configmaps'], git: { path: 'clusters/dr', ...gitSpec } },
  });
  await apply(
    { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'shop', labels: { team: 'web' } } },
    replication('shop', { url: repoUrl, credentialsSecretRef: { name: 'git-creds' } }),
    replication('no-creds', { url: repoUrl, credentialsSecretRef: { name: 'no-such-secret' } }),
    replication('dead-repo', { url: 'http://127.0.0.1:1/dr.git' }),
  );
  await apply(
    { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'settings', namespace: 'shop' }, data: { mode: 'fast', 'config.yaml': 'a: 1\nb: 2\nc: 3\nd: 4\n' } },
    { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'old', namespace: 'shop' }, data: { v: '1' } },
    {
      apiVersion: 'apps/v1', kind: 'Deployment', metadata: { name: 'web', namespace: 'shop' },
      spec: { replicas: 2, selector: { matchLabels: { app: 'web' } }, template: { metadata: { labels: { app: 'web' } }, spec: { containers: [{ name: 'web', image: 'nginx:1.27' }] } } },
    },
  );
});

after(async () => {
  await Promise.all([cluster?.stop(), git?.stop()]);
  await fs.promises.rm(tmp, { recursive: true, force: true });
});

describe('dr-syncer diff', () => {
  it('an empty branch: every file would be added, the base path\'s kustomization.yaml too; the first sync commits exactly that', async () => {
    const { patch, parent } = await diffIsNextCommit();
    assert.equal(parent, '');
    for (const f of ['clusters/dr/kustomization.yaml', 'clusters/dr/shop/kustomization.yaml', 'clusters/dr/shop/namespace.yaml', 'clusters/dr/shop/deployment.apps-web.yaml', 'clusters/dr/shop/configmap-old.yaml']) {
      assert.ok(patch.includes(`diff --git a/${f} b/${f}\nnew file mode 100644\n`), f);
    }
  });

  it('up to date: exit 0, nothing on stdout, "no changes" on stderr', async () => {
    const before = await tip();
    for (const extra of [[], ['--stat']]) {
      const r = await diff('shop', ...extra);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout, '');
      assert.match(r.stderr, /^no changes: the DR repository is up to date$/m);
    }
    assert.equal(await tip(), before);
  });

  it('a scaled Deployment, an added, a changed and a deleted ConfigMap: exit 1, the diff is the next commit and moved nothing', async () => {
    await kubectl(cluster.kubeconfigPath, ['-n', 'shop', 'scale', 'deployment', 'web', '--replicas=5']);
    await apply(
      { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'settings', namespace: 'shop' }, data: { mode: 'safe', 'config.yaml': 'a: 1\nb: 2\nc: 30\nd: 4\n' } },
      { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'added', namespace: 'shop' }, data: { hello: 'world' } },
    );
    await kubectl(cluster.kubeconfigPath, ['-n', 'shop', 'delete', 'configmap', 'old']);

    const json = await diff('shop', '--json');
    assert.equal(json.code, 1, json.stderr);
    const out = JSON.parse(json.stdout) as { replication: string; repository: { url: string; branch: string; path: string }; files: { path: string; status: string }[]; patch: string };
    assert.equal(out.replication, 'dr-syncer/shop');
    assert.deepEqual(out.repository, { url: repoUrl, branch: 'main', path: 'clusters/dr' });
    assert.deepEqual(out.files, [
      { path: 'clusters/dr/shop/configmap-added.yaml', status: 'A' },
      { path: 'clusters/dr/shop/configmap-old.yaml', status: 'D' },
      { path: 'clusters/dr/shop/configmap-settings.yaml', status: 'M' },
      { path: 'clusters/dr/shop/deployment.apps-web.yaml', status: 'M' },
      { path: 'clusters/dr/shop/kustomization.yaml', status: 'M' },
    ]);

    const { patch, stat } = await diffIsNextCommit();
    assert.equal(patch, out.patch, '--json carries the same patch');
    assert.equal(stat, out.files.map((f) => `${f.status}\t${f.path}\n`).join(''));
    // The DR copy stays at 0 replicas; the source's count is what changed.
    assert.match(patch, /^-\s+dr-syncer\.io\/original-replicas: "2"$/m);
    assert.match(patch, /^\+\s+dr-syncer\.io\/original-replicas: "5"$/m);
    assert.match(patch, /^\+\s+c: 30$/m);
    assert.match(patch, /^deleted file mode 100644\n--- a\/clusters\/dr\/shop\/configmap-old\.yaml\n\+\+\+ \/dev\/null$/m);

    // And up to date again.
    const again = await diff('shop');
    assert.equal(again.code, 0, again.stderr);
    assert.equal(again.stdout, '');
  });

  it('errors name their subject: unknown Replication or missing Secret exit 2, an unreachable repository 3', async () => {
    const before = await tip();
    const unknown = await diff('nosuch');
    assert.equal(unknown.code, 2, unknown.stderr);
    assert.match(unknown.stderr, /Replication dr-syncer\/nosuch does not exist/);
    assert.equal(unknown.stdout, '');

    const noCreds = await diff('no-creds');
    assert.equal(noCreds.code, 2, noCreds.stderr);
    assert.match(noCreds.stderr, /Secret dr-syncer\/no-such-secret \(the Git credentials of Replication dr-syncer\/no-creds\) does not exist/);

    const dead = await diff('dead-repo');
    assert.equal(dead.code, 3, dead.stderr);
    assert.match(dead.stderr, /Replication dr-syncer\/dead-repo.*DR repository http:\/\/127\.0\.0\.1:1\/dr\.git/);

    const usage = await cli(['diff']);
    assert.equal(usage.code, 2);
    assert.match(usage.stderr, /which Replication\?/);
    assert.equal(await tip(), before);
  });
});
