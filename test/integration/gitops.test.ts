// Resource replication end to end: a real source API server, a real Git smart-HTTP server, the
// sync engine, and `kubectl apply --server-side -k` of the pushed repository into a real DR API
// server. Cases follow the original's e2e contract (upstream.md §6, 00-15) plus what it got
// wrong: StatefulSets, pruning, token Secrets, headless Services.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { parse } from 'yaml';
import { validateReplication } from '../../src/api/v1alpha1/index.ts';
import { GitRepo } from '../../src/adapters/git/repo.ts';
import { KubeClient } from '../../src/adapters/kube/client.ts';
import { runSync } from '../../src/sync/engine.ts';
import type { SyncResult } from '../../src/sync/engine.ts';
import { gitTarget, syncSpecFor } from '../../src/sync/spec.ts';
import type { TestCluster } from '../env/cluster.ts';
import { kubectl, startClusters } from '../env/cluster.ts';
import type { GitServer } from '../env/git-server.ts';
import { startGitServer } from '../env/git-server.ts';

let src: TestCluster;
let dr: TestCluster;
let gitServer: GitServer;
let repoUrl: string;
let source: KubeClient;
const cacheDir = fs.mkdtempSync(path.join(os.tmpdir(), 'drs-cache-'));

type Obj = { metadata: { name: string; annotations?: Record<string, string>; labels?: Record<string, string> }; spec: Record<string, unknown>; data?: Record<string, string> };

async function applySource(yaml: string): Promise<void> {
  await kubectl(src.kubeconfigPath, ['apply', '-f', '-'], { input: yaml });
}

function replication(name: string, spec: Record<string, unknown>) {
  const v = validateReplication({ apiVersion: 'dr-syncer.io/v1alpha1', kind: 'Replication', metadata: { name, namespace: 'dr-syncer' }, spec: { mode: 'Manual', git: { url: repoUrl, path: `cases/${name}` }, ...spec } });
  if (!v.ok) throw new Error(v.errors.join('\n'));
  return v.value;
}

async function sync(name: string, spec: Record<string, unknown>, repo?: GitRepo): Promise<SyncResult> {
  const rep = replication(name, spec);
  const target = gitTarget(rep);
  const r = repo ?? new GitRepo({ url: target.url, branch: target.branch, auth: { username: gitServer.user, password: gitServer.password }, cacheDir });
  return runSync(syncSpecFor(rep, 'prod', target), { source, repo: r });
}

/** Clones the repository and applies one case folder to the DR cluster, as a GitOps tool would. */
async function applyToDr(name: string): Promise<string> {
  const dir = await gitServer.clone('dr');
  await kubectl(dr.kubeconfigPath, ['apply', '--server-side', '--field-manager=gitops', '-k', path.join(dir, 'cases', name)]);
  return dir;
}

async function drGet(kind: string, ns: string, name: string): Promise<Obj | undefined> {
  const r = await kubectl(dr.kubeconfigPath, ['get', kind, name, '-n', ns, '-o', 'json'], { check: false });
  return r.code === 0 ? (JSON.parse(r.stdout) as Obj) : undefined;
}
async function srcGet(kind: string, ns: string, name: string): Promise<Obj> {
  return JSON.parse((await kubectl(src.kubeconfigPath, ['get', kind, name, '-n', ns, '-o', 'json'])).stdout) as Obj;
}
const head = async () => (await gitServer.git(['ls-remote', `${gitServer.base}/dr.git`, 'refs/heads/main'])).split('\t')[0];

const standardObjects = (ns: string, extra = '') => `
apiVersion: v1
kind: Namespace
metadata: {name: ${ns}, labels: {environment: production}, annotations: {description: "namespace ${ns}"}}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: test-configmap, namespace: ${ns}}
data: {key1: value1, key2: "on"}
---
apiVersion: v1
kind: Secret
metadata: {name: test-secret, namespace: ${ns}}
stringData: {username: admin, password: s3cr3t}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: test-deployment, namespace: ${ns}, labels: {app: web}}
spec:
  replicas: 3
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: nginx, image: "nginx:1.27", ports: [{containerPort: 80}]}]}
---
apiVersion: v1
kind: Service
metadata: {name: test-service, namespace: ${ns}}
spec: {selector: {app: web}, ports: [{name: http, port: 80, targetPort: 80}]}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: test-ingress, namespace: ${ns}}
spec:
  rules:
  - host: ${ns}.example.com
    http: {paths: [{path: /, pathType: Prefix, backend: {service: {name: test-service, port: {number: 80}}}}]}
${extra}`;

before(async () => {
  const [clusters, server] = await Promise.all([startClusters(2), startGitServer()]);
  [src, dr, gitServer] = [clusters[0]!, clusters[1]!, server];
  repoUrl = await gitServer.createRepo('dr');
  source = await KubeClient.fromFile(src.kubeconfigPath);
});

after(async () => {
  await Promise.all([src?.stop(), dr?.stop(), gitServer?.stop()]);
  await fs.promises.rm(cacheDir, { recursive: true, force: true });
});

describe('resource replication into a DR Git repository', () => {
  it('00 standard resources: all five types land in DR, deployment scaled to 0, new clusterIP', async () => {
    await applySource(standardObjects('case00'));
    const r = await sync('case00', { sourceNamespace: 'case00', resourceTypes: ['ConfigMaps', 'Secrets', 'Deployments', 'Services', 'Ingresses'], secrets: { mode: 'Plaintext' } });
    assert.equal(r.errors.length, 0, JSON.stringify(r.errors));
    assert.ok(r.commit);
    assert.deepEqual(r.counts, { ConfigMap: 1, 'Deployment.apps': 1, 'Ingress.networking.k8s.io': 1, Secret: 1, Service: 1 });
    await applyToDr('case00');
    const dep = await drGet('deployment', 'case00', 'test-deployment');
    assert.equal(dep?.spec.replicas, 0);
    assert.equal(dep?.metadata.annotations?.['dr-syncer.io/original-replicas'], '3');
    const srcDep = await srcGet('deployment', 'case00', 'test-deployment');
    assert.deepEqual((dep?.spec.template as object), srcDep.spec.template);
    assert.deepEqual((await drGet('configmap', 'case00', 'test-configmap'))?.data, { key1: 'value1', key2: 'on' });
    assert.deepEqual((await drGet('secret', 'case00', 'test-secret'))?.data, (await srcGet('secret', 'case00', 'test-secret')).data);
    const svc = await drGet('service', 'case00', 'test-service');
    const srcSvc = await srcGet('service', 'case00', 'test-service');
    assert.ok(svc?.spec.clusterIP);
    assert.notEqual(svc?.spec.clusterIP, srcSvc.spec.clusterIP, 'the DR cluster allocates its own clusterIP');
    assert.deepEqual(svc?.spec.ports, srcSvc.spec.ports);
    assert.deepEqual((await drGet('ingress', 'case00', 'test-ingress'))?.spec, (await srcGet('ingress', 'case00', 'test-ingress')).spec);
  });

  it('a second sync without a source change makes no commit', async () => {
    const before = await head();
    const r = await sync('case00', { sourceNamespace: 'case00', resourceTypes: ['ConfigMaps', 'Secrets', 'Deployments', 'Services', 'Ingresses'], secrets: { mode: 'Plaintext' } });
    assert.equal(r.commit, undefined);
    assert.equal(await head(), before);
  });

  it('01 wildcard: every namespaced type, but never pods, replica sets, endpoints, tokens or defaults', async () => {
    await applySource(standardObjects('case01', `---
apiVersion: v1
kind: Secret
metadata: {name: sa-token, namespace: case01, annotations: {kubernetes.io/service-account.name: default}}
type: kubernetes.io/service-account-token
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: app, namespace: case01}
`));
    // The controller manager creates the ReplicaSet, the default ServiceAccount and kube-root-ca.crt.
    for (let i = 0; i < 60; i++) {
      const rs = await kubectl(src.kubeconfigPath, ['get', 'rs,sa,cm', '-n', 'case01', '-o', 'name']);
      if (rs.stdout.includes('replicaset') && rs.stdout.includes('serviceaccount/default') && rs.stdout.includes('kube-root-ca.crt')) break;
      await new Promise((res) => setTimeout(res, 500));
    }
    const r = await sync('case01', { sourceNamespace: 'case01', resourceTypes: ['*'], secrets: { mode: 'Plaintext' } });
    const dir = await applyToDr('case01');
    const files = (await fs.promises.readdir(path.join(dir, 'cases/case01/case01'))).sort();
    assert.deepEqual(files, [
      'configmap-test-configmap.yaml', 'deployment.apps-test-deployment.yaml', 'ingress.networking.k8s.io-test-ingress.yaml', 'kustomization.yaml',
      'namespace.yaml', 'secret-test-secret.yaml', 'service-test-service.yaml', 'serviceaccount-app.yaml',
    ]);
    const reasons = r.skipped.map((s) => `${s.kind}/${s.name}`).sort();
    for (const s of ['ConfigMap/kube-root-ca.crt', 'Secret/sa-token', 'ServiceAccount/default']) assert.ok(reasons.includes(s), `${s} skipped: ${reasons}`);
    assert.ok(r.skipped.some((s) => s.kind === 'Pod' || s.kind === 'ReplicaSet') === false, 'pods and replica sets are not even listed');
    assert.equal((await drGet('deployment', 'case01', 'test-deployment'))?.spec.replicas, 0);
  });

  it('02-04 ignore label, scale-down and scale-override', async () => {
    await applySource(`
apiVersion: v1
kind: Namespace
metadata: {name: case02}
---
${['d1', 'd2', 'd3', 'd4'].map((n) => `apiVersion: apps/v1
kind: Deployment
metadata: {name: ${n}, namespace: case02, labels: {${n === 'd2' ? 'dr-syncer.io/ignore: "true"' : n === 'd3' ? 'dr-syncer.io/scale-override: "true"' : n === 'd4' ? 'dr-syncer.io/scale-override: "2"' : 'app: d1'}}}
spec: {replicas: 3, selector: {matchLabels: {app: ${n}}}, template: {metadata: {labels: {app: ${n}}}, spec: {containers: [{name: c, image: "busybox:1.36"}]}}}`).join('\n---\n')}
`);
    await sync('case02', { sourceNamespace: 'case02', resourceTypes: ['deployments'] });
    await applyToDr('case02');
    assert.equal((await drGet('deployment', 'case02', 'd1'))?.spec.replicas, 0);
    assert.equal(await drGet('deployment', 'case02', 'd2'), undefined, 'ignored deployment is absent');
    assert.equal((await drGet('deployment', 'case02', 'd3'))?.spec.replicas, 3);
    assert.equal((await drGet('deployment', 'case02', 'd4'))?.spec.replicas, 2);
    assert.equal((await srcGet('deployment', 'case02', 'd1')).spec.replicas, 3, 'the source is untouched');
  });

  it('05 resource filtering: only the listed types', async () => {
    await applySource(standardObjects('case05'));
    const r = await sync('case05', { sourceNamespace: 'case05', resourceTypes: ['configmaps', 'secrets'], secrets: { mode: 'Plaintext' } });
    assert.deepEqual(Object.keys(r.counts), ['ConfigMap', 'Secret']);
    await applyToDr('case05');
    assert.ok(await drGet('configmap', 'case05', 'test-configmap'));
    assert.ok(await drGet('secret', 'case05', 'test-secret'));
    for (const k of ['deployment', 'service', 'ingress']) assert.equal(await drGet(k, 'case05', `test-${k}`), undefined, k);
  });

  it('06 services: new clusterIPs, NodePorts kept, headless stays headless', async () => {
    await applySource(`
apiVersion: v1
kind: Namespace
metadata: {name: case06}
---
apiVersion: v1
kind: Service
metadata: {name: multi, namespace: case06, annotations: {team: web}}
spec: {selector: {app: web}, ports: [{name: a, port: 80}, {name: b, port: 443}, {name: c, port: 8080}]}
---
apiVersion: v1
kind: Service
metadata: {name: np, namespace: case06}
spec: {type: NodePort, selector: {app: web}, ports: [{name: http, port: 80, nodePort: 30080}, {name: https, port: 443, nodePort: 30443}]}
---
apiVersion: v1
kind: Service
metadata: {name: headless, namespace: case06}
spec: {clusterIP: None, publishNotReadyAddresses: true, selector: {app: db}, ports: [{port: 5432}]}
---
apiVersion: v1
kind: Service
metadata: {name: lb, namespace: case06}
spec: {type: LoadBalancer, externalTrafficPolicy: Local, selector: {app: web}, ports: [{port: 80}]}
`);
    await sync('case06', { sourceNamespace: 'case06', resourceTypes: ['services'] });
    await applyToDr('case06');
    const multi = await drGet('service', 'case06', 'multi');
    assert.notEqual(multi?.spec.clusterIP, (await srcGet('service', 'case06', 'multi')).spec.clusterIP);
    assert.equal(multi?.metadata.annotations?.team, 'web');
    assert.deepEqual((await drGet('service', 'case06', 'np'))?.spec.ports, (await srcGet('service', 'case06', 'np')).spec.ports);
    const hl = await drGet('service', 'case06', 'headless');
    assert.equal(hl?.spec.clusterIP, 'None');
    assert.equal(hl?.spec.publishNotReadyAddresses, true);
    const lb = await drGet('service', 'case06', 'lb');
    assert.equal(lb?.spec.type, 'LoadBalancer');
    assert.notEqual(lb?.spec.healthCheckNodePort, (await srcGet('service', 'case06', 'lb')).spec.healthCheckNodePort);
  });

  it('07 ingresses are copied exactly', async () => {
    await applySource(`
apiVersion: v1
kind: Namespace
metadata: {name: case07}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: complex
  namespace: case07
  annotations: {kubernetes.io/ingress.class: nginx, nginx.ingress.kubernetes.io/rewrite-target: /$2, nginx.ingress.kubernetes.io/use-regex: "true"}
spec:
  tls: [{hosts: [complex1.example.com, complex2.example.com], secretName: test-tls-secret}]
  defaultBackend: {service: {name: test-service-2, port: {number: 80}}}
  rules:
  - host: complex1.example.com
    http: {paths: [{path: /api(/|$)(.*), pathType: ImplementationSpecific, backend: {service: {name: api, port: {number: 8080}}}}]}
`);
    await sync('case07', { sourceNamespace: 'case07', resourceTypes: ['ingresses'] });
    await applyToDr('case07');
    const a = await drGet('ingress', 'case07', 'complex');
    const b = await srcGet('ingress', 'case07', 'complex');
    assert.deepEqual(a?.spec, b.spec);
    assert.equal(a?.metadata.annotations?.['nginx.ingress.kubernetes.io/rewrite-target'], '/$2');
  });

  it('08 namespace mapping: destination namespace keeps labels and annotations, references follow', async () => {
    await applySource(`
apiVersion: v1
kind: Namespace
metadata: {name: namespace-prod, labels: {environment: production}, annotations: {description: the shop}}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: settings, namespace: namespace-prod}
data: {a: "1"}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: reader, namespace: namespace-prod}
rules: [{apiGroups: [""], resources: [configmaps], verbs: [get]}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: reader, namespace: namespace-prod}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: reader}
subjects: [{kind: ServiceAccount, name: app, namespace: namespace-prod}]
`);
    await sync('case08', { sourceNamespace: 'namespace-prod', destinationNamespace: 'namespace-dr', resourceTypes: ['configmaps', 'roles', 'rolebindings'] });
    await applyToDr('case08');
    const ns = JSON.parse((await kubectl(dr.kubeconfigPath, ['get', 'ns', 'namespace-dr', '-o', 'json'])).stdout) as Obj;
    assert.equal(ns.metadata.labels?.environment, 'production');
    assert.equal(ns.metadata.labels?.['dr-syncer.io/source-namespace'], 'namespace-prod');
    assert.equal(ns.metadata.labels?.['dr-syncer.io/managed-by'], 'dr-syncer');
    assert.equal(ns.metadata.annotations?.description, 'the shop');
    assert.ok(await drGet('configmap', 'namespace-dr', 'settings'));
    const rb = (await drGet('rolebinding', 'namespace-dr', 'reader')) as unknown as { subjects: { namespace: string }[] };
    assert.equal(rb.subjects[0]!.namespace, 'namespace-dr');
  });

  it('10-15 PVCs: binding cleared, storage class and access modes mapped, attributes preserved on request', async () => {
    await applySource(`
apiVersion: v1
kind: Namespace
metadata: {name: case10}
---
${[
  ['std', 'standard', 'ReadWriteOnce', ''],
  ['premium', 'premium', 'ReadWriteOncePod', ''],
  ['rom', 'standard', 'ReadOnlyMany', ''],
  ['override', 'standard', 'ReadWriteOnce', 'labels: {dr-syncer.io/storage-class: gold}'],
  ['block', 'standard', 'ReadWriteOnce', '', 'Block'],
].map(([n, sc, am, extra, mode]) => `apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: ${n}, namespace: case10, ${extra}}
spec: {storageClassName: ${sc}, accessModes: [${am}], volumeMode: ${mode ?? 'Filesystem'}, resources: {requests: {storage: 1Gi}}, selector: {matchLabels: {disk: ssd}}}`).join('\n---\n')}
`);
    await sync('case10', {
      sourceNamespace: 'case10', resourceTypes: ['pvc'],
      pvc: { storageClassMappings: [{ from: 'standard', to: 'standard-dr' }], accessModeMappings: [{ from: 'ReadWriteOncePod', to: 'ReadWriteOnce' }, { from: 'ReadOnlyMany', to: 'ReadWriteMany' }] },
    });
    await applyToDr('case10');
    const get = async (n: string) => (await drGet('pvc', 'case10', n))!.spec;
    assert.equal((await get('std')).storageClassName, 'standard-dr');
    assert.equal((await get('std')).selector, undefined);
    assert.equal((await get('premium')).storageClassName, 'premium');
    assert.deepEqual((await get('premium')).accessModes, ['ReadWriteOnce']);
    assert.deepEqual((await get('rom')).accessModes, ['ReadWriteMany']);
    assert.equal((await get('override')).storageClassName, 'gold');
    assert.equal((await get('block')).volumeMode, 'Block');

    await sync('case13', { sourceNamespace: 'case10', destinationNamespace: 'case13', resourceTypes: ['pvc'], pvc: { preserveVolumeAttributes: true } });
    await applyToDr('case13');
    assert.deepEqual((await drGet('pvc', 'case13', 'std'))!.spec.selector, { matchLabels: { disk: 'ssd' } });
  });

  it('StatefulSets are scaled to 0 (the original ignored them)', async () => {
    await applySource(`
apiVersion: v1
kind: Namespace
metadata: {name: case16}
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: db, namespace: case16}
spec:
  replicas: 2
  serviceName: db
  selector: {matchLabels: {app: db}}
  template: {metadata: {labels: {app: db}}, spec: {containers: [{name: db, image: "postgres:17"}]}}
  volumeClaimTemplates: [{metadata: {name: data}, spec: {accessModes: [ReadWriteOnce], resources: {requests: {storage: 1Gi}}}}]
`);
    await sync('case16', { sourceNamespace: 'case16', resourceTypes: ['statefulsets'] });
    await applyToDr('case16');
    const sts = await drGet('statefulset', 'case16', 'db');
    assert.equal(sts?.spec.replicas, 0);
    assert.equal(sts?.metadata.annotations?.['dr-syncer.io/original-replicas'], '2');
  });

  it('custom resources by resource.group, at the preferred version, even for a CRD installed a moment ago', async () => {
    const crd = JSON.stringify({
      apiVersion: 'apiextensions.k8s.io/v1', kind: 'CustomResourceDefinition', metadata: { name: 'widgets.example.com' },
      spec: {
        group: 'example.com', scope: 'Namespaced', names: { plural: 'widgets', singular: 'widget', kind: 'Widget' },
        versions: [
          { name: 'v1beta1', served: true, storage: false, schema: { openAPIV3Schema: { type: 'object', 'x-kubernetes-preserve-unknown-fields': true } } },
          { name: 'v1', served: true, storage: true, schema: { openAPIV3Schema: { type: 'object', 'x-kubernetes-preserve-unknown-fields': true } } },
        ],
      },
    });
    // The engine's client has cached discovery from earlier syncs: this CRD is not in it yet.
    for (const c of [src, dr]) {
      await kubectl(c.kubeconfigPath, ['apply', '-f', '-'], { input: crd });
      await kubectl(c.kubeconfigPath, ['wait', '--for=condition=Established', 'crd/widgets.example.com']);
    }
    await applySource(`
apiVersion: v1
kind: Namespace
metadata: {name: crs}
---
apiVersion: example.com/v1
kind: Widget
metadata: {name: gear, namespace: crs}
spec: {teeth: 12}
`);
    const r = await sync('crs', { sourceNamespace: 'crs', resourceTypes: ['widgets.example.com'] });
    assert.deepEqual(r.counts, { 'Widget.example.com': 1 });
    const dir = await applyToDr('crs');
    assert.ok(fs.existsSync(path.join(dir, 'cases/crs/crs/widget.example.com-gear.yaml')));
    assert.deepEqual((await drGet('widget.example.com', 'crs', 'gear'))?.spec, { teeth: 12 });
  });

  it('Secrets are omitted by default; objects deleted at the source are pruned in one commit', async () => {
    await applySource(standardObjects('prune'));
    const first = await sync('prune', { sourceNamespace: 'prune', resourceTypes: ['configmaps', 'secrets', 'services'] });
    // Not even read in mode Omit; naming the type explicitly gets a warning that says what to set.
    assert.ok(!first.skipped.some((s) => s.kind === 'Secret'));
    assert.ok(first.warnings.some((w) => /secrets is named, but secrets\.mode is Omit/.test(w)), first.warnings.join('\n'));
    let dir = await applyToDr('prune');
    assert.ok(!fs.existsSync(path.join(dir, 'cases/prune/prune/secret-test-secret.yaml')));
    assert.equal(await drGet('secret', 'prune', 'test-secret'), undefined);

    await kubectl(src.kubeconfigPath, ['delete', 'configmap', 'test-configmap', '-n', 'prune']);
    const r = await sync('prune', { sourceNamespace: 'prune', resourceTypes: ['configmaps', 'secrets', 'services'] });
    assert.deepEqual(r.diff, { added: [], changed: ['cases/prune/prune/kustomization.yaml'], removed: ['cases/prune/prune/configmap-test-configmap.yaml'] });
    dir = await applyToDr('prune');
    const log = await gitServer.git(['log', '-1', '--format=%B'], dir);
    assert.match(log, /^dr-syncer: sync dr-syncer\/prune \(1 changed, 1 removed\)/);
    assert.match(log, /Removed:\n {2}cases\/prune\/prune\/configmap-test-configmap.yaml/);
    assert.match(log, /Dr-Syncer-Replication: dr-syncer\/prune\nDr-Syncer-Source-Cluster: prod/);
    assert.ok(!fs.existsSync(path.join(dir, 'cases/prune/prune/configmap-test-configmap.yaml')));

    // prune: false keeps the files of deleted objects.
    await kubectl(src.kubeconfigPath, ['delete', 'service', 'test-service', '-n', 'prune']);
    const kept = await sync('prune', { sourceNamespace: 'prune', resourceTypes: ['configmaps', 'secrets', 'services'], git: { url: repoUrl, path: 'cases/prune', prune: false } });
    assert.equal(kept.commit, undefined);
  });

  it('with prune off, a folder no longer selected is kept and not reported as removed when another folder changes', async () => {
    await applySource(`
apiVersion: v1
kind: Namespace
metadata: {name: keep-a, labels: {keep-case: "yes"}}
---
apiVersion: v1
kind: Namespace
metadata: {name: keep-b, labels: {keep-case: "yes"}}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: c, namespace: keep-a}
data: {v: "1"}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: c, namespace: keep-b}
data: {v: "1"}
`);
    const spec = { namespaceSelector: { labelSelector: { matchLabels: { 'keep-case': 'yes' } } }, resourceTypes: ['configmaps'], git: { url: repoUrl, path: 'cases/keep', prune: false } };
    assert.ok((await sync('keep', spec)).commit);
    await kubectl(src.kubeconfigPath, ['label', 'namespace', 'keep-b', 'keep-case-']);
    await kubectl(src.kubeconfigPath, ['-n', 'keep-a', 'patch', 'configmap', 'c', '--type=merge', '-p', '{"data":{"v":"2"}}']);
    const r = await sync('keep', spec);
    assert.ok(r.commit);
    assert.deepEqual(r.diff, { added: [], changed: ['cases/keep/keep-a/configmap-c.yaml'], removed: [] });
    const dir = await gitServer.clone('dr');
    const log = await gitServer.git(['log', '-1', '--format=%B'], dir);
    assert.doesNotMatch(log, /Removed:/);
    assert.ok(fs.existsSync(path.join(dir, 'cases/keep/keep-b/configmap-c.yaml')), 'the unselected folder is kept');
  });

  it('a concurrent pusher does not lose anyone\'s commit', async () => {
    await applySource(`
apiVersion: v1
kind: Namespace
metadata: {name: race}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: race, namespace: race}
data: {a: "1"}
`);
    // Someone else pushes between our fetch and our push, once.
    class RacingRepo extends GitRepo {
      raced = false;
      override async push(commit: string, expected: string | undefined): Promise<void> {
        if (!this.raced) {
          this.raced = true;
          const other = await gitServer.clone('dr');
          await fs.promises.writeFile(path.join(other, 'README.md'), 'written by a person\n');
          await gitServer.git(['add', 'README.md'], other);
          await gitServer.git(['commit', '-qm', 'docs: readme'], other);
          await gitServer.git(['push', '-q', 'origin', 'HEAD:main'], other);
        }
        return super.push(commit, expected);
      }
    }
    const repo = new RacingRepo({ url: repoUrl, branch: 'main', auth: { username: gitServer.user, password: gitServer.password }, cacheDir });
    const r = await sync('race', { sourceNamespace: 'race', resourceTypes: ['configmaps'] }, repo);
    assert.equal(r.attempts, 2);
    const dir = await gitServer.clone('dr');
    const subjects = (await gitServer.git(['log', '-2', '--format=%s'], dir)).trim().split('\n');
    assert.match(subjects[0]!, /^dr-syncer: sync dr-syncer\/race/);
    assert.equal(subjects[1], 'docs: readme');
    assert.ok(fs.existsSync(path.join(dir, 'README.md')));
    assert.ok(fs.existsSync(path.join(dir, 'cases/race/race/configmap-race.yaml')));
  });

  it('the root kustomization lists the namespace folders and parses', async () => {
    const dir = await gitServer.clone('dr');
    const k = parse(await fs.promises.readFile(path.join(dir, 'cases/case13/kustomization.yaml'), 'utf8')) as { resources: string[] };
    assert.deepEqual(k.resources, ['case13']);
  });
});
