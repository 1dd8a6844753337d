// Argo CD applies the DR repository: a source API server, the sync engine, the real Git
// smart-HTTP server (basic auth), and a DR API server on which Argo CD's application controller
// and repo server (built from their Go modules by test/env/build-argocd.sh) follow an Application
// made by `dr-syncer bootstrap argocd --apply --with-credentials`, run as a user would. The source
// cluster doubles as the controller's cluster (CRDs, RemoteCluster, Replication, Secrets).
// Secrets go the Argo CD route we support: secrets.mode Omit (no Secret in Git), delivered in the
// DR cluster by other means (External Secrets, Sealed Secrets).
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, it } from 'node:test';
import { validateReplication, validateRemoteCluster } from '../../src/api/v1alpha1/index.ts';
import { GitRepo } from '../../src/adapters/git/repo.ts';
import { KubeClient } from '../../src/adapters/kube/client.ts';
import { runSync } from '../../src/sync/engine.ts';
import type { SyncResult } from '../../src/sync/engine.ts';
import { gitTarget, syncSpecFor } from '../../src/sync/spec.ts';
import type { ArgoCd } from '../env/argocd.ts';
import { ARGOCD_NAMESPACE, startArgoCd } from '../env/argocd.ts';
import type { TestCluster } from '../env/cluster.ts';
import { kubectl, startClusters } from '../env/cluster.ts';
import { logTail } from '../env/flux.ts';
import type { GitServer } from '../env/git-server.ts';
import { startGitServer } from '../env/git-server.ts';
import { eventually as waitFor } from '../env/wait.ts';

const execFileAsync = promisify(execFile);
const TIMEOUT_MS = 120_000;
const CLI = path.resolve('src/cli/main.ts');

let src: TestCluster;
let dr: TestCluster;
let gitServer: GitServer;
let argocd: ArgoCd;
let repoUrl: string;
let source: KubeClient;
let repo: GitRepo;
const cacheDir = fs.mkdtempSync(path.join(os.tmpdir(), 'drs-cache-'));

interface Obj {
  metadata: { name: string; labels?: Record<string, string>; annotations?: Record<string, string>; deletionTimestamp?: string };
  spec?: Record<string, unknown>;
  data?: Record<string, string>;
  status?: {
    sync?: { status?: string; revision?: string };
    health?: { status?: string };
    operationState?: { phase?: string; message?: string };
    conditions?: unknown[];
    resources?: { kind: string; name: string; namespace?: string; status?: string; requiresPruning?: boolean }[];
  };
}

async function get(cluster: TestCluster, kind: string, ns: string, name: string): Promise<Obj | undefined> {
  const r = await kubectl(cluster.kubeconfigPath, ['get', kind, name, ...(ns ? ['-n', ns] : []), '-o', 'json'], { check: false });
  if (r.code === 0) return JSON.parse(r.stdout) as Obj;
  if (/NotFound|not found/.test(r.stderr)) return undefined;
  throw new Error(`kubectl get ${kind} ${ns}/${name}: ${r.stderr.trim()}`);
}

const apply = (cluster: TestCluster, yaml: string) => kubectl(cluster.kubeconfigPath, ['apply', '--server-side', '--field-manager=test', '-f', '-'], { input: yaml });
const app = () => get(dr, 'applications.argoproj.io', ARGOCD_NAMESPACE, 'dr-syncer');

/** The controller-side objects, as a user writes them (the source cluster plays the controller's cluster). */
const REMOTE_CLUSTER = () => ({
  apiVersion: 'dr-syncer.io/v1alpha1',
  kind: 'RemoteCluster',
  metadata: { name: 'dr', namespace: 'dr-syncer' },
  spec: { kubeconfigSecretRef: { name: 'dr-kubeconfig' }, git: { url: repoUrl, path: 'clusters/dr', credentialsSecretRef: { name: 'git-creds' } } },
});
const REPLICATION = {
  apiVersion: 'dr-syncer.io/v1alpha1',
  kind: 'Replication',
  metadata: { name: 'shops', namespace: 'dr-syncer' },
  spec: {
    mode: 'Manual',
    destinationCluster: 'dr',
    namespaceSelector: { labelSelector: { matchLabels: { dr: 'yes' } } },
    resourceTypes: ['ConfigMaps', 'Secrets', 'Deployments', 'Services'],
    secrets: { mode: 'Omit' },
  },
};

async function sync(): Promise<SyncResult> {
  const rep = validateReplication(structuredClone(REPLICATION));
  const rc = validateRemoteCluster(REMOTE_CLUSTER());
  if (!rep.ok) throw new Error(rep.errors.join('\n'));
  if (!rc.ok) throw new Error(rc.errors.join('\n'));
  const target = gitTarget(rep.value, rc.value);
  repo ??= new GitRepo({ url: target.url, branch: target.branch, auth: { username: gitServer.user, password: gitServer.password }, cacheDir });
  const r = await runSync(syncSpecFor(rep.value, 'prod', target), { source, repo });
  assert.deepEqual(r.errors, []);
  return r;
}

async function cli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return execFileAsync(process.execPath, ['--import', 'tsx', CLI, ...args]).then(
    (r) => ({ code: 0, stdout: r.stdout, stderr: r.stderr }),
    (e: { code?: number; stdout?: string; stderr?: string }) => ({ code: e.code ?? -1, stdout: e.stdout ?? '', stderr: e.stderr ?? '' }),
  );
}

/** Argo CD's view, for failure messages. */
async function argoState(): Promise<string> {
  const a = await app().catch((e: unknown) => ({ error: String(e) }));
  return [
    `Application: ${JSON.stringify(a && 'status' in a ? a.status : a, null, 1).slice(0, 6000)}`,
    `--- ${argocd.logs.repoServer}\n${await logTail(argocd.logs.repoServer, 15)}`,
    `--- ${argocd.logs.controller}\n${await logTail(argocd.logs.controller, 25)}`,
  ].join('\n');
}

/** Polls `check` (it throws while the state is not reached); on timeout, shows Argo CD's view. */
async function eventually(what: string, check: () => Promise<void>): Promise<number> {
  const t0 = Date.now();
  try {
    await waitFor(what, async () => (await check(), true), TIMEOUT_MS);
  } catch (err) {
    throw new Error(`${err instanceof Error ? err.message : String(err)}\n${await argoState()}`, { cause: err });
  }
  return Date.now() - t0;
}

const sourceObjects = (ns: string) => `
apiVersion: v1
kind: Namespace
metadata: {name: ${ns}, labels: {dr: "yes"}}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: app-config, namespace: ${ns}}
data: {LOG_LEVEL: info}
---
apiVersion: v1
kind: Secret
metadata: {name: db-credentials, namespace: ${ns}}
type: Opaque
stringData: {password: "s3cr3t-${ns}"}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: ${ns}, labels: {app: web}}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: web, image: "nginx:1.27"}]}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: ${ns}}
spec: {selector: {app: web}, ports: [{name: http, port: 80}]}
`;

before(async () => {
  const t0 = Date.now();
  const [clusters, server] = await Promise.all([startClusters(2), startGitServer()]);
  [src, dr, gitServer] = [clusters[0]!, clusters[1]!, server];
  // Built (or checked) after the clusters, so a cold build does not share the cores with them.
  argocd = await startArgoCd(dr);
  repoUrl = await gitServer.createRepo('dr');
  source = await KubeClient.fromFile(src.kubeconfigPath);
  const kc = src.kubeconfigPath;
  await kubectl(kc, ['apply', '--server-side', '-f', path.resolve('crds')]);
  await kubectl(kc, ['wait', '--for=condition=Established', 'crd/replications.dr-syncer.io', 'crd/remoteclusters.dr-syncer.io']);
  await kubectl(kc, ['create', 'namespace', 'dr-syncer']);
  await kubectl(kc, ['-n', 'dr-syncer', 'create', 'secret', 'generic', 'dr-kubeconfig', `--from-file=kubeconfig=${dr.kubeconfigPath}`]);
  await kubectl(kc, ['-n', 'dr-syncer', 'create', 'secret', 'generic', 'git-creds', `--from-literal=username=${gitServer.user}`, `--from-literal=password=${gitServer.password}`]);
  await apply(src, `${JSON.stringify(REMOTE_CLUSTER())}\n---\n${JSON.stringify(REPLICATION)}`);
  console.log(`# clusters, git server and Argo CD ready in ${((Date.now() - t0) / 1000).toFixed(1)}s`);
});

after(async () => {
  await argocd?.stop();
  await Promise.all([src?.stop(), dr?.stop(), gitServer?.stop()]);
  await fs.promises.rm(cacheDir, { recursive: true, force: true });
});

void describe('Argo CD applies the DR repository', () => {
  void it('dr-syncer bootstrap argocd prints the Application without any secret value unless asked', async () => {
    const r = await cli(['bootstrap', 'argocd', 'dr', '--kubeconfig', src.kubeconfigPath]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /kind: Application\b/);
    assert.ok(r.stdout.includes(`repoURL: ${repoUrl}`));
    assert.match(r.stdout, /path: clusters\/dr\n/);
    assert.doesNotMatch(r.stdout, /kind: Secret/);
    assert.ok(!r.stdout.includes(gitServer.password) && !r.stderr.includes(gitServer.password), 'no token printed by default');
    assert.match(r.stderr, /--with-credentials/, 'says how to get the repository Secret');

    const missing = await cli(['bootstrap', 'argocd', 'nope', '--kubeconfig', src.kubeconfigPath]);
    assert.equal(missing.code, 2);
    assert.match(missing.stderr, /RemoteCluster dr-syncer\/nope not found/);
  });

  void it('the bootstrap Application syncs the repository: Synced, Healthy, objects in the DR cluster; Secrets omitted', async () => {
    await apply(src, sourceObjects('shop') + '---' + sourceObjects('blog'));
    const r = await sync();
    assert.ok(r.commit, 'the first sync commits');
    // The route for Argo CD: no Secret (nor its data) in Git.
    const clone = await gitServer.clone('dr');
    const files = (await fs.promises.readdir(path.join(clone, 'clusters/dr/shop'))).sort();
    const all = (await Promise.all(files.map((f) => fs.promises.readFile(path.join(clone, 'clusters/dr/shop', f), 'utf8')))).join('\n');
    await fs.promises.rm(clone, { recursive: true, force: true });
    assert.ok(!files.some((f) => f.startsWith('secret')), files.join(' '));
    assert.doesNotMatch(all, /s3cr3t|czNjcjN0/);

    const t0 = Date.now();
    const b = await cli(['bootstrap', 'argocd', 'dr', '--kubeconfig', src.kubeconfigPath, '--apply', '--with-credentials']);
    assert.equal(b.code, 0, b.stderr);
    assert.match(b.stdout, /applied Secret argocd\/dr-syncer-repo/);
    assert.match(b.stdout, /applied Application argocd\/dr-syncer/);
    assert.ok(!b.stdout.includes(gitServer.password), '--apply prints no secret value');

    const ms = await eventually('Argo CD synced the repository', async () => {
      for (const ns of ['shop', 'blog']) {
        assert.ok(await get(dr, 'namespace', '', ns), `namespace ${ns}`);
        assert.deepEqual((await get(dr, 'configmap', ns, 'app-config'))?.data, { LOG_LEVEL: 'info' });
        const dep = await get(dr, 'deployment', ns, 'web');
        assert.equal(dep?.spec?.replicas, 0, `deployment ${ns}/web at 0 replicas`);
        assert.equal(dep?.metadata.annotations?.['dr-syncer.io/original-replicas'], '2');
        assert.ok(await get(dr, 'service', ns, 'web'), `service ${ns}/web`);
      }
      const a = await app();
      assert.equal(a?.status?.sync?.status, 'Synced');
      assert.equal(a?.status?.sync?.revision, r.commit);
      assert.equal(a?.status?.health?.status, 'Healthy');
    });
    console.log(`# Argo CD Synced and Healthy ${(ms / 1000).toFixed(1)}s after the bootstrap (${((Date.now() - t0) / 1000).toFixed(1)}s with the CLI)`);
    assert.equal(await get(dr, 'secret', 'shop', 'db-credentials'), undefined, 'Secrets reach the DR cluster by other means');
  });

  void it('prunes what the source deleted, and keeps a prune-protected Namespace whose folder is gone', async () => {
    await kubectl(src.kubeconfigPath, ['delete', 'configmap', 'app-config', '-n', 'shop']);
    // blog stops matching the selector: its folder goes, Namespace file included.
    await kubectl(src.kubeconfigPath, ['label', 'namespace', 'blog', 'dr-']);
    const r = await sync();
    assert.ok(r.commit, 'the deletions commit');
    assert.ok(r.diff.removed.some((f) => f.startsWith('clusters/dr/blog/')), r.diff.removed.join(' '));
    const t0 = Date.now();
    await argocd.refresh('dr-syncer');
    await eventually('Argo CD prunes the deleted objects', async () => {
      assert.equal((await app())?.status?.sync?.revision, r.commit);
      assert.equal(await get(dr, 'configmap', 'shop', 'app-config'), undefined, 'configmap shop/app-config is pruned');
      for (const [kind, name] of [['configmap', 'app-config'], ['deployment', 'web'], ['service', 'web']] as const) {
        assert.equal(await get(dr, kind, 'blog', name), undefined, `${kind} blog/${name} is pruned`);
      }
    });
    console.log(`# pruned ${((Date.now() - t0) / 1000).toFixed(1)}s after the sync`);
    for (const ns of ['shop', 'blog']) {
      const o = await get(dr, 'namespace', '', ns);
      assert.ok(o, `namespace ${ns} is kept`);
      assert.equal(o.metadata.deletionTimestamp, undefined, `namespace ${ns} is not being deleted`);
      assert.equal(o.metadata.annotations?.['argocd.argoproj.io/sync-options'], 'Prune=false');
    }
    for (const [kind, name] of [['deployment', 'web'], ['service', 'web']] as const) {
      assert.ok(await get(dr, kind, 'shop', name), `${kind} shop/${name} stays`);
    }
    const a = await app();
    assert.equal(a?.status?.health?.status, 'Healthy');
    // The kept Namespace left Git: with compare-options IgnoreExtraneous it does not make the
    // Application OutOfSync (without it, it would stay OutOfSync for good).
    assert.equal((await get(dr, 'namespace', '', 'blog'))?.metadata.annotations?.['argocd.argoproj.io/compare-options'], 'IgnoreExtraneous');
    await eventually('the Application is Synced with the kept Namespace', async () => {
      const a = await app();
      assert.equal(a?.status?.sync?.status, 'Synced', JSON.stringify(a?.status?.resources?.filter((x) => x.status !== 'Synced')));
      assert.equal(a?.status?.health?.status, 'Healthy');
    });
  });
});
