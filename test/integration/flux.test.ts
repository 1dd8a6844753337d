// The full GitOps loop with real parts: a source API server, the sync engine, a real Git
// smart-HTTP server, and a DR API server on which Flux's source-controller and
// kustomize-controller (built from their Go modules by test/env/build-flux.sh) apply the DR
// repository, decrypting our SOPS Secrets with an age key, and prune what the source deleted.
// Flux is set up with what `dr-syncer bootstrap flux` makes.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { generateX25519Identity, identityToRecipient } from 'age-encryption';
import { validateReplication } from '../../src/api/v1alpha1/index.ts';
import type { RemoteCluster, Replication } from '../../src/api/v1alpha1/index.ts';
import { GitRepo } from '../../src/adapters/git/repo.ts';
import { buildBootstrap, drTargets } from '../../src/gitops/bootstrap.ts';
import { loadBootstrapTemplates } from '../../src/gitops/templates.ts';
import { KubeClient } from '../../src/adapters/kube/client.ts';
import { runSync } from '../../src/sync/engine.ts';
import type { SyncResult } from '../../src/sync/engine.ts';
import { sopsSealer } from '../../src/sync/secrets.ts';
import { gitTarget, syncSpecFor } from '../../src/sync/spec.ts';
import type { TestCluster } from '../env/cluster.ts';
import { kubectl, startClusters } from '../env/cluster.ts';
import type { Flux } from '../env/flux.ts';
import { logTail, startFlux } from '../env/flux.ts';
import type { GitServer } from '../env/git-server.ts';
import { startGitServer } from '../env/git-server.ts';

const TIMEOUT_MS = 120_000;
const NS = 'shop';

let src: TestCluster;
let dr: TestCluster;
let gitServer: GitServer;
let flux: Flux;
let repoUrl: string;
let source: KubeClient;
let repo: GitRepo;
let recipient: string;
let replication: Replication;
const digestKey = randomBytes(32);
const cacheDir = fs.mkdtempSync(path.join(os.tmpdir(), 'drs-cache-'));

interface Obj {
  metadata: { name: string; annotations?: Record<string, string>; deletionTimestamp?: string };
  spec?: Record<string, unknown>;
  data?: Record<string, string>;
  status?: { conditions?: { type: string; status: string; reason?: string; message?: string }[]; artifact?: { revision?: string } };
}

async function get(cluster: TestCluster, kind: string, ns: string, name: string): Promise<Obj | undefined> {
  const r = await kubectl(cluster.kubeconfigPath, ['get', kind, name, ...(ns ? ['-n', ns] : []), '-o', 'json'], { check: false });
  if (r.code === 0) return JSON.parse(r.stdout) as Obj;
  if (/NotFound|not found/.test(r.stderr)) return undefined;
  throw new Error(`kubectl get ${kind} ${ns}/${name}: ${r.stderr.trim()}`);
}

async function apply(cluster: TestCluster, yaml: string): Promise<void> {
  await kubectl(cluster.kubeconfigPath, ['apply', '--server-side', '--field-manager=test', '-f', '-'], { input: yaml });
}

async function sync(): Promise<SyncResult> {
  const v = validateReplication({
    apiVersion: 'dr-syncer.io/v1alpha1',
    kind: 'Replication',
    metadata: { name: 'shop', namespace: 'dr-syncer' },
    spec: {
      mode: 'Manual',
      sourceNamespace: NS,
      resourceTypes: ['ConfigMaps', 'Secrets', 'Deployments', 'Services'],
      destinationCluster: 'dr',
      secrets: { mode: 'SOPS', sops: { ageRecipients: [recipient] } },
      git: { url: repoUrl, path: 'clusters/dr', credentialsSecretRef: { name: 'git-auth' } },
    },
  });
  if (!v.ok) throw new Error(v.errors.join('\n'));
  replication = v.value;
  const target = gitTarget(v.value);
  repo ??= new GitRepo({ url: target.url, branch: target.branch, auth: { username: gitServer.user, password: gitServer.password }, cacheDir });
  const r = await runSync(syncSpecFor(v.value, 'prod', target), { source, repo, sealSecrets: sopsSealer([recipient], digestKey) });
  assert.deepEqual(r.errors, []);
  return r;
}

/** Flux's view, for failure messages: conditions of both objects and the controllers' log tails. */
async function fluxState(): Promise<string> {
  const conds = async (kind: string): Promise<string> => {
    const o = await get(dr, kind, 'flux-system', 'dr').catch((e: unknown) => ({ error: String(e) }));
    return `${kind}: ${JSON.stringify(o && 'status' in o ? o.status : o, null, 1)}`;
  };
  return [
    await conds('gitrepositories.source.toolkit.fluxcd.io'),
    await conds('kustomizations.kustomize.toolkit.fluxcd.io'),
    `--- ${flux.logs.sourceController}\n${await logTail(flux.logs.sourceController, 15)}`,
    `--- ${flux.logs.kustomizeController}\n${await logTail(flux.logs.kustomizeController, 25)}`,
  ].join('\n');
}

/** Polls `check` (which throws while the state is not reached) until it passes or time runs out. */
async function eventually(what: string, check: () => Promise<void>, timeoutMs = TIMEOUT_MS): Promise<number> {
  const t0 = Date.now();
  let last: unknown;
  while (Date.now() - t0 < timeoutMs) {
    try {
      await check();
      return Date.now() - t0;
    } catch (err) {
      last = err;
    }
    await new Promise((r) => setTimeout(r, 1_000));
  }
  throw new Error(`${what}: not reached within ${timeoutMs / 1000}s: ${last instanceof Error ? last.message : String(last)}\n${await fluxState()}`);
}

const sourceObjects = `
apiVersion: v1
kind: Namespace
metadata: {name: ${NS}, labels: {team: shop}}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: app-config, namespace: ${NS}}
data: {LOG_LEVEL: info, FEATURE_X: "on"}
---
apiVersion: v1
kind: Secret
metadata: {name: db-credentials, namespace: ${NS}, labels: {app: db}}
type: Opaque
stringData: {username: shop, password: "s3cr3t: with colon", "config.yaml": "host: db\\nport: 5432\\n"}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: ${NS}, labels: {app: web}}
spec:
  replicas: 3
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: web, image: "nginx:1.27", ports: [{containerPort: 80}]}]}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: ${NS}}
spec: {selector: {app: web}, ports: [{name: http, port: 80, targetPort: 80}]}
`;

before(async () => {
  const t0 = Date.now();
  // Flux is built (or checked) after the clusters, so that on a cold machine two Go builds never
  // share the cores; warm, the check takes milliseconds.
  const [clusters, server] = await Promise.all([startClusters(2), startGitServer()]);
  [src, dr, gitServer] = [clusters[0]!, clusters[1]!, server];
  flux = await startFlux(dr);
  repoUrl = await gitServer.createRepo('dr');
  source = await KubeClient.fromFile(src.kubeconfigPath);
  console.log(`# clusters, git server and Flux ready in ${((Date.now() - t0) / 1000).toFixed(1)}s`);
});

after(async () => {
  await flux?.stop();
  await Promise.all([src?.stop(), dr?.stop(), gitServer?.stop()]);
  await fs.promises.rm(cacheDir, { recursive: true, force: true });
});

void describe('Flux applies the DR repository', () => {
  void it('applies namespace, ConfigMap, scaled-down Deployment, Service and the SOPS Secret, decrypted', async () => {
    const identity = await generateX25519Identity();
    recipient = await identityToRecipient(identity);
    await apply(src, sourceObjects);
    const r = await sync();
    assert.ok(r.commit, 'the first sync commits');
    // So that "decrypted" below means something: Git holds only ciphertext.
    const clone = await gitServer.clone('dr');
    const file = await fs.promises.readFile(path.join(clone, 'clusters/dr', NS, 'secret-db-credentials.yaml'), 'utf8');
    await fs.promises.rm(clone, { recursive: true, force: true });
    assert.match(file, /ENC\[AES256_GCM,/);
    assert.match(file, /^sops:/m);
    assert.doesNotMatch(file, /s3cr3t|czNjcjN0/);

    // What `dr-syncer bootstrap flux` makes (the builder behind it): the credentials Secret,
    // GitRepository and Kustomization (prune, SOPS decryption). The age key is the user's part.
    const rc = { apiVersion: 'dr-syncer.io/v1alpha1', kind: 'RemoteCluster', metadata: { name: 'dr', namespace: 'dr-syncer' }, spec: { kubeconfigSecretRef: { name: 'dr-kubeconfig' } } } as RemoteCluster;
    const boot = buildBootstrap(drTargets(rc, [replication]), {
      tool: 'flux', remoteCluster: 'dr-syncer/dr', name: 'dr', interval: '10s',
      credentials: new Map([['git-auth', { username: gitServer.user, password: gitServer.password }]]),
    }, await loadBootstrapTemplates());
    assert.deepEqual(boot.objects.map((o) => o.kind), ['Secret', 'GitRepository', 'Kustomization']);
    assert.match(boot.notes.join('\n'), /create secret generic sops-age --from-file=age.agekey=/);
    await apply(dr, `
apiVersion: v1
kind: Secret
metadata: {name: sops-age, namespace: flux-system}
stringData:
  age.agekey: ${JSON.stringify(identity)}
`);
    await apply(dr, boot.yaml);

    const srcSecret = await get(src, 'secret', NS, 'db-credentials');
    assert.ok(srcSecret?.data);
    const ms = await eventually('the DR cluster has the replicated namespace', async () => {
      assert.ok(await get(dr, 'namespace', '', NS), 'namespace shop');
      assert.deepEqual((await get(dr, 'configmap', NS, 'app-config'))?.data, { LOG_LEVEL: 'info', FEATURE_X: 'on' });
      const dep = await get(dr, 'deployment', NS, 'web');
      assert.equal(dep?.spec?.replicas, 0, 'deployment web at 0 replicas');
      assert.equal(dep?.metadata.annotations?.['dr-syncer.io/original-replicas'], '3');
      assert.ok(await get(dr, 'service', NS, 'web'), 'service web');
      const secret = await get(dr, 'secret', NS, 'db-credentials');
      assert.ok(secret, 'secret db-credentials');
      assert.deepEqual(secret.data, srcSecret.data, 'the Secret is decrypted to the source data');
    });
    console.log(`# Flux applied the repository ${(ms / 1000).toFixed(1)}s after the Kustomization was created`);
    const ks = await get(dr, 'kustomizations.kustomize.toolkit.fluxcd.io', 'flux-system', 'dr');
    const ready = ks?.status?.conditions?.find((c) => c.type === 'Ready');
    assert.equal(ready?.status, 'True', `Kustomization Ready: ${JSON.stringify(ready)}`);
  });

  void it('prunes what the source deleted, but never the namespace', async () => {
    await kubectl(src.kubeconfigPath, ['delete', 'configmap', 'app-config', '-n', NS]);
    const r = await sync();
    assert.ok(r.commit, 'deleting the ConfigMap commits');
    const t0 = Date.now();
    await flux.reconcile('GitRepository', 'flux-system', 'dr');
    await eventually('the GitRepository has the new commit', async () => {
      const gr = await get(dr, 'gitrepositories.source.toolkit.fluxcd.io', 'flux-system', 'dr');
      assert.ok(gr?.status?.artifact?.revision?.includes(r.commit!), `artifact ${gr?.status?.artifact?.revision}`);
    });
    await flux.reconcile('Kustomization', 'flux-system', 'dr');
    await eventually('Flux prunes the ConfigMap', async () => {
      assert.equal(await get(dr, 'configmap', NS, 'app-config'), undefined, 'configmap app-config is pruned');
    });
    console.log(`# pruned ${((Date.now() - t0) / 1000).toFixed(1)}s after the sync`);
    const ns = await get(dr, 'namespace', '', NS);
    assert.ok(ns, 'the namespace is not pruned');
    assert.equal(ns.metadata.deletionTimestamp, undefined, 'the namespace is not being deleted');
    assert.equal(ns.metadata.annotations?.['kustomize.toolkit.fluxcd.io/prune'], 'disabled');
    for (const [kind, name] of [['deployment', 'web'], ['service', 'web'], ['secret', 'db-credentials']] as const) {
      assert.ok(await get(dr, kind, NS, name), `${kind} ${name} stays`);
    }
  });
});
