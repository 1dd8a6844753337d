// The Helm chart: helm lint, helm template with default and other values, the rendered chart
// applied server-side to a real API server, `helm package`, and the controller run with exactly
// the chart's RBAC. For that, the real CLI runs with the rendered Deployment's arguments and a
// kubeconfig that impersonates the chart's ServiceAccount; its requests pass through a TLS proxy
// here that records every answer, so a 403 anywhere (even one the controller only logs) fails the
// test. helm is the pinned upstream v3.18.0 (test/env/helm.ts).
import assert from 'node:assert/strict';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import https from 'node:https';
import type net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { KubeConfig } from '@kubernetes/client-node';
import { parse, parseAllDocuments, stringify } from 'yaml';
import { KubeClient } from '../../src/adapters/kube/client.ts';
import { PvcSyncSpec } from '../../src/api/v1alpha1/remotecluster.ts';
import { Value } from '@sinclair/typebox/value';
import { agentSettingsFor, registeredTargets, registerTarget, reconcileAgent, unregisterTargets } from '../../src/pvc/agent.ts';
import { ensureKey } from '../../src/pvc/key-secrets.ts';
import { pvcLease, sweep } from '../../src/pvc/transfer.ts';
import { silentLogger } from '../../src/util/log.ts';
import type { TestCluster } from '../env/cluster.ts';
import { kubectl, startCluster } from '../env/cluster.ts';
import type { GitServer } from '../env/git-server.ts';
import { startGitServer } from '../env/git-server.ts';
import { helmPath } from '../env/helm.ts';
import { untilWith } from '../env/wait.ts';

const execFileAsync = promisify(execFile);
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const chartDir = path.join(root, 'charts', 'dr-syncer');
const NS = 'dr-syncer';
const SA = `system:serviceaccount:${NS}:dr-syncer`;

interface K8sObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string>; annotations?: Record<string, string> };
  [k: string]: unknown;
}
interface Rule { apiGroups?: string[]; resources?: string[]; resourceNames?: string[]; nonResourceURLs?: string[]; verbs: string[] }
interface Container {
  name: string; image: string; args: string[];
  env: { name: string; valueFrom?: { fieldRef?: { fieldPath: string } } }[];
  ports: { name: string; containerPort: number }[];
  livenessProbe: { httpGet: { path: string; port: string } }; readinessProbe: { httpGet: { path: string; port: string } };
  resources: { requests?: Record<string, string>; limits?: Record<string, string> };
  securityContext: { readOnlyRootFilesystem: boolean; allowPrivilegeEscalation: boolean; capabilities: { drop: string[] } };
  volumeMounts: { name: string; mountPath: string }[];
}
interface DeploymentSpec {
  replicas: number;
  selector: { matchLabels: Record<string, string> };
  template: {
    metadata: { labels: Record<string, string> };
    spec: {
      serviceAccountName: string;
      securityContext: { runAsNonRoot: boolean; runAsUser: number; seccompProfile: { type: string } };
      containers: Container[];
      volumes: { name: string; emptyDir?: object; configMap?: { name: string } }[];
    };
  };
}

async function helm(args: string[]): Promise<string> {
  try {
    return (await execFileAsync(helmPath(), args, { maxBuffer: 64 << 20 })).stdout;
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    throw new Error(`helm ${args.join(' ')}: ${e.stderr ?? e.message}`, { cause: err });
  }
}

/** `helm template` into objects; `set` are --set-json pairs. */
async function render(set: Record<string, unknown> = {}, extra: string[] = []): Promise<K8sObject[]> {
  const args = ['template', 'dr-syncer', chartDir, '--namespace', NS, ...extra];
  for (const [k, v] of Object.entries(set)) args.push('--set-json', `${k}=${JSON.stringify(v)}`);
  return parseAllDocuments(await helm(args)).map((d) => d.toJS() as K8sObject | null).filter((o): o is K8sObject => o !== null);
}

const find = (objs: K8sObject[], kind: string, name?: string) => objs.filter((o) => o.kind === kind && (name === undefined || o.metadata.name === name));
const one = (objs: K8sObject[], kind: string, name?: string): K8sObject => {
  const f = find(objs, kind, name);
  assert.equal(f.length, 1, `one ${kind}${name ? ` ${name}` : ''}, got ${f.length}`);
  return f[0]!;
};
const deploymentSpec = (objs: K8sObject[]) => one(objs, 'Deployment').spec as DeploymentSpec;
const container = (objs: K8sObject[]) => deploymentSpec(objs).template.spec.containers[0]!;
const rulesOf = (objs: K8sObject[]) => objs.filter((o) => o.kind === 'Role' || o.kind === 'ClusterRole').map((o) => ({ o, rules: (o.rules ?? []) as Rule[] }));
const grants = (rules: Rule[], resource: string, verb: string) =>
  rules.some((r) => (r.resources ?? []).includes(resource) && r.verbs.includes(verb) && !r.resourceNames);
const toStream = (objs: K8sObject[]) => objs.map((o) => stringify(o)).join('---\n');

/** Every Role and ClusterRole: no wildcard at all (the strongest form of "no wildcard verbs on wildcard resources"). */
function assertNoWildcards(objs: K8sObject[]): void {
  for (const { o, rules } of rulesOf(objs)) {
    for (const r of rules) {
      for (const f of [r.verbs, r.resources ?? [], r.apiGroups ?? []]) assert.ok(!f.includes('*'), `${o.kind} ${o.metadata.name}: wildcard in ${JSON.stringify(r)}`);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// A TLS proxy in front of the API server that records the status of every answer, and the
// identity each request asked to be (Impersonate-User). It serves the API server's own
// certificate (valid for 127.0.0.1), so the kubeconfig's CA still verifies it; it forwards with
// the admin client certificate, which may impersonate.

interface Answer { method: string; path: string; status: number; as: string | undefined }
interface Recorder { port: number; answers: Answer[]; close(): Promise<void> }

async function startRecorder(cluster: TestCluster): Promise<Recorder> {
  const pki = path.join(cluster.dir, 'pki');
  const read = (f: string) => fs.readFileSync(path.join(pki, f));
  const upstream = new URL(cluster.server);
  const agent = new https.Agent({ ca: read('ca.crt'), cert: read('admin.crt'), key: read('admin.key'), keepAlive: true });
  const answers: Answer[] = [];
  const sockets = new Set<net.Socket>();
  const server = https.createServer({ cert: read('apiserver.crt'), key: read('apiserver.key') }, (req, res) => {
    const as = req.headers['impersonate-user'];
    const headers = { ...req.headers, host: upstream.host };
    delete headers.connection;
    const up = https.request({ hostname: upstream.hostname, port: upstream.port, method: req.method, path: req.url, headers, agent }, (ur) => {
      answers.push({ method: req.method ?? '', path: req.url ?? '', status: ur.statusCode ?? 0, as: Array.isArray(as) ? as.join(',') : as });
      const h = { ...ur.headers };
      delete h.connection;
      res.writeHead(ur.statusCode ?? 502, h);
      ur.pipe(res);
    });
    up.on('error', () => res.destroy());
    // A watch the client closes: close the upstream one too.
    res.on('close', () => up.destroy());
    req.pipe(up);
  });
  server.on('connection', (s: net.Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as net.AddressInfo).port,
    answers,
    close: () => new Promise<void>((r) => {
      for (const s of sockets) s.destroy();
      agent.destroy();
      server.close(() => r());
    }),
  };
}

/** The admin kubeconfig, pointed at the recorder, impersonating `as`. */
function impersonatingKubeconfig(cluster: TestCluster, port: number, as: string, dir: string): string {
  const kc = parse(fs.readFileSync(cluster.kubeconfigPath, 'utf8')) as { clusters: { cluster: { server: string } }[]; users: { user: Record<string, unknown> }[] };
  for (const c of kc.clusters) c.cluster.server = `https://127.0.0.1:${port}`;
  for (const u of kc.users) u.user.as = as;
  const file = path.join(dir, 'kubeconfig-as-sa');
  fs.writeFileSync(file, stringify(kc), { mode: 0o600 });
  return file;
}

const forbidden = (answers: Answer[]) => answers.filter((a) => a.status === 403).map((a) => `${a.method} ${a.path}`);

// ---------------------------------------------------------------------------------------------

let cluster: TestCluster;
let git: GitServer;
let recorder: Recorder;
let controller: ChildProcess | undefined;
let controllerLog = '';
const work = fs.mkdtempSync(path.join(os.tmpdir(), 'drs-chart-'));
const admin = (args: string[], input?: string) => kubectl(cluster.kubeconfigPath, args, input === undefined ? {} : { input });

const until = untilWith({ context: () => `controller log (tail):\n${controllerLog.split('\n').slice(-30).join('\n')}` });

before(async () => {
  helmPath();
  [cluster, git] = await Promise.all([startCluster({ name: 'chart' }), startGitServer()]);
  recorder = await startRecorder(cluster);
});

/** Stops the controller (by its PID), if it runs. */
async function stopController(): Promise<void> {
  if (controller?.pid !== undefined && controller.exitCode === null && controller.signalCode === null) {
    const exited = new Promise((r) => controller!.once('exit', r));
    process.kill(controller.pid, 'SIGTERM');
    const t = setTimeout(() => controller?.pid !== undefined && process.kill(controller.pid, 'SIGKILL'), 10_000);
    await exited;
    clearTimeout(t);
  }
}

after(async () => {
  await stopController();
  await recorder?.close();
  await Promise.all([cluster?.stop(), git?.stop()]);
  fs.rmSync(work, { recursive: true, force: true });
});

describe('Helm chart', () => {
  it('helm lint passes with the default values and with every option on', async () => {
    await helm(['lint', '--strict', chartDir]);
    await helm(['lint', '--strict', chartDir, '--namespace', NS, '--set', 'replicaCount=2,pvcSync.enabled=true,metrics.serviceMonitor.enabled=true,rbac.sourceSecrets=true,rbac.sourceCutover=true,controller.watchAllNamespaces=true',
      '--set-json', 'rbac.extraSecretNamespaces=["team-a"]']);
  });

  it('helm template, defaults: a non-root, read-only controller with leader election, probes and least-privilege RBAC', async () => {
    const objs = await render();
    assert.deepEqual([...new Set(objs.map((o) => o.kind))].sort(), ['ClusterRole', 'ClusterRoleBinding', 'Deployment', 'Role', 'RoleBinding', 'Service', 'ServiceAccount']);
    const dep = one(objs, 'Deployment');
    const spec = deploymentSpec(objs);
    // `dr-syncer controller --local` finds the Deployment by exactly these labels.
    for (const labels of [dep.metadata.labels!, spec.template.metadata.labels, spec.selector.matchLabels]) {
      assert.equal(labels['app.kubernetes.io/name'], 'dr-syncer');
      assert.equal(labels['app.kubernetes.io/component'], 'controller');
    }
    assert.equal(spec.replicas, 1);
    assert.equal(spec.template.spec.serviceAccountName, one(objs, 'ServiceAccount').metadata.name);
    const pod = spec.template.spec;
    assert.equal(pod.securityContext.runAsNonRoot, true);
    assert.ok(pod.securityContext.runAsUser > 0);
    assert.equal(pod.securityContext.seccompProfile.type, 'RuntimeDefault');
    const c = container(objs);
    assert.equal(c.image, 'ghcr.io/dr-syncer/dr-syncer:0.1.0'.replace('0.1.0', (parse(fs.readFileSync(path.join(chartDir, 'Chart.yaml'), 'utf8')) as { appVersion: string }).appVersion));
    assert.equal(c.args[0], 'controller');
    for (const a of ['--leader-elect', '--cache-dir=/var/cache/dr-syncer', `--namespace=${NS}`, '--metrics-bind-address=:8080', '--health-probe-bind-address=:8081']) assert.ok(c.args.includes(a), `${a} in ${c.args.join(' ')}`);
    assert.ok(!c.args.some((a) => a.startsWith('--local-pvc-sync') || a.startsWith('--agent-image')));
    assert.deepEqual(c.env.find((e) => e.name === 'POD_NAMESPACE')?.valueFrom?.fieldRef?.fieldPath, 'metadata.namespace');
    assert.equal(c.livenessProbe.httpGet.path, '/healthz');
    assert.equal(c.readinessProbe.httpGet.path, '/readyz');
    assert.equal(c.ports.find((p) => p.name === c.readinessProbe.httpGet.port)?.containerPort, 8081);
    assert.ok(c.resources.requests?.cpu && c.resources.requests.memory && c.resources.limits?.memory);
    assert.equal(c.securityContext.readOnlyRootFilesystem, true);
    assert.equal(c.securityContext.allowPrivilegeEscalation, false);
    assert.deepEqual(c.securityContext.capabilities.drop, ['ALL']);
    // The writable places: the Git caches and /tmp, both emptyDirs.
    for (const mount of ['/var/cache/dr-syncer', '/tmp']) {
      const m = c.volumeMounts.find((v) => v.mountPath === mount);
      assert.ok(m && pod.volumes.find((v) => v.name === m.name)?.emptyDir, `emptyDir at ${mount}`);
    }
    const svc = one(objs, 'Service');
    assert.deepEqual((svc.spec as { selector: object }).selector, spec.selector.matchLabels);
    assert.equal((svc.spec as { ports: { targetPort: string }[] }).ports[0]!.targetPort, 'metrics');

    assertNoWildcards(objs);
    // Secrets: only in the release namespace's Role; nothing cluster-wide.
    for (const { o, rules } of rulesOf(objs)) {
      const secrets = rules.filter((r) => r.resources?.includes('secrets'));
      if (o.kind === 'ClusterRole') assert.deepEqual(secrets, [], `${o.metadata.name} grants Secrets`);
      else assert.equal(o.metadata.namespace, NS);
    }
    const role = one(objs, 'Role').rules as Rule[];
    assert.ok(grants(role, 'secrets', 'get') && grants(role, 'events', 'create') && grants(role, 'replications/status', 'patch'));
    assert.ok(role.some((r) => r.resources?.includes('leases') && r.resourceNames?.includes('dr-syncer.io') && r.verbs.includes('update')));
    const source = one(objs, 'ClusterRole', 'dr-syncer-source').rules as Rule[];
    for (const r of source.filter((x) => x.resources)) assert.deepEqual(r.verbs, ['get', 'list', 'watch'], 'the source is only read');
    assert.ok(source.some((r) => r.nonResourceURLs?.includes('/apis/*')), 'discovery');
  });

  it('helm template, other values: 2 replicas, pvcSync for this cluster, ServiceMonitor, source Secrets, all namespaces', async () => {
    const pvcSync = { enabled: true, namespace: 'drs-agents', agentAddress: 'ExternalIP', sshPort: 2022, keyRotationInterval: '24h', image: 'registry.example/agent:1', imagePullPolicy: 'Always',
      nodeSelector: { storage: 'yes' }, tolerations: [{ key: 'storage', operator: 'Exists', effect: 'NoSchedule' }], resources: { requests: { cpu: '10m' } } };
    const objs = await render({ replicaCount: 2, pvcSync, 'metrics.serviceMonitor.enabled': true, 'rbac.sourceSecrets': true, 'rbac.sourceCutover': true, 'controller.watchAllNamespaces': true,
      'rbac.extraSecretNamespaces': ['team-a'], 'agent.image': 'registry.example/agent:2', 'agent.imagePullPolicy': 'IfNotPresent' });
    const spec = deploymentSpec(objs);
    assert.equal(spec.replicas, 2);
    const c = container(objs);
    assert.ok(c.args.includes('--leader-elect'), 'two replicas elect a leader');
    assert.ok(!c.args.some((a) => a.startsWith('--namespace')), 'all namespaces');
    assert.ok(c.args.includes('--agent-image=registry.example/agent:2') && c.args.includes('--agent-image-pull-policy=IfNotPresent'));

    // pvcSync: the spec object in a ConfigMap, mounted, and its path passed to --local-pvc-sync.
    const cm = one(objs, 'ConfigMap', 'dr-syncer-pvc-sync');
    const file = (cm as unknown as { data: Record<string, string> }).data['pvc-sync.yaml']!;
    const rendered = parse(file) as unknown;
    assert.deepEqual(rendered, pvcSync);
    assert.ok(Value.Check(PvcSyncSpec, rendered), 'a valid RemoteCluster spec.pvcSync');
    const arg = c.args.find((a) => a.startsWith('--local-pvc-sync='))!;
    const mountPath = path.dirname(arg.slice('--local-pvc-sync='.length));
    assert.equal(path.basename(arg), 'pvc-sync.yaml');
    const mount = c.volumeMounts.find((m) => m.mountPath === mountPath)!;
    assert.equal(spec.template.spec.volumes.find((v) => v.name === mount.name)?.configMap?.name, cm.metadata.name);
    // The agents' namespace and the controller's rights in it.
    one(objs, 'Namespace', 'drs-agents');
    const agentRole = one(objs, 'Role', 'dr-syncer-pvc-agent');
    assert.equal(agentRole.metadata.namespace, 'drs-agents');
    // Every right there is by name, except create (an apply that creates; RBAC cannot limit it by name) and listing pods.
    for (const r of agentRole.rules as Rule[]) {
      if (r.resources?.[0] === 'pods') assert.deepEqual(r.verbs, ['list']);
      else if (r.verbs?.includes('create')) assert.deepEqual(r.verbs, ['create'], `create only: ${JSON.stringify(r)}`);
      else assert.ok(r.resourceNames?.length, `by name: ${JSON.stringify(r)}`);
    }
    const pvc = one(objs, 'ClusterRole', 'dr-syncer-pvc-sync').rules as Rule[];
    assert.ok(pvc.some((r) => r.resources?.includes('namespaces') && r.resourceNames?.includes('drs-agents')));
    assert.deepEqual(pvc.filter((r) => r.resources?.includes('secrets')).map((r) => r.verbs), [['create']], 'endpoint Secrets are created, never read');

    const sm = one(objs, 'ServiceMonitor');
    assert.equal(sm.apiVersion, 'monitoring.coreos.com/v1');
    assert.deepEqual((sm.spec as { selector: { matchLabels: object } }).selector.matchLabels, spec.selector.matchLabels);
    // rbac.sourceSecrets: read-only Secrets cluster-wide; watchAllNamespaces: the CRs cluster-wide.
    const source = one(objs, 'ClusterRole', 'dr-syncer-source').rules as Rule[];
    assert.deepEqual(source.filter((r) => r.resources?.includes('secrets')).map((r) => r.verbs), [['get', 'list', 'watch']]);
    // rbac.sourceCutover: patch (only) on the workloads a cutover scales.
    assert.deepEqual(source.filter((r) => r.verbs.includes('patch')).map((r) => [r.apiGroups, r.resources, r.verbs]), [[['apps'], ['deployments', 'statefulsets'], ['patch']], [['batch'], ['cronjobs'], ['patch']]]);
    assert.ok(grants(one(objs, 'ClusterRole', 'dr-syncer-crs').rules as Rule[], 'replications', 'watch'));
    assert.equal(one(objs, 'Role', 'dr-syncer-secrets').metadata.namespace, 'team-a');
    assertNoWildcards(objs);
  });

  it('values.schema.json refuses what the controller would refuse', async () => {
    for (const [set, why] of [
      [['--set', 'pvcSync.sshPort=22'], /sshPort/],
      [['--set', 'pvcSync.agentAddress=PodIP'], /agentAddress/],
      [['--set', 'pvcSync.bogus=1'], /bogus/],
      [['--set', 'controller.logLevel=loud'], /logLevel/],
      [['--set-json', 'rbac.sourceRead.rules=[{"apiGroups":[""],"resources":["secrets"]}]'], /resources/],
    ] as const) {
      await assert.rejects(render({}, [...set]), why, set.join(' '));
    }
  });

  it('helm package writes dr-syncer-<package.json version>.tgz', async () => {
    const version = (JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8')) as { version: string }).version;
    const out = path.join(work, 'pkg');
    fs.mkdirSync(out);
    await helm(['package', chartDir, '--destination', out]);
    assert.deepEqual(fs.readdirSync(out), [`dr-syncer-${version}.tgz`]);
    const shown = parse(await helm(['show', 'chart', path.join(out, `dr-syncer-${version}.tgz`)])) as { version: string; appVersion: string };
    assert.deepEqual([shown.version, shown.appVersion], [version, version]);
    // The package carries the CRDs.
    const crds = await helm(['show', 'crds', path.join(out, `dr-syncer-${version}.tgz`)]);
    assert.match(crds, /name: replications\.dr-syncer\.io/);
    assert.match(crds, /name: remoteclusters\.dr-syncer\.io/);
  });

  it('the rendered chart, CRDs included, applies server-side to a real API server', async () => {
    await admin(['create', 'namespace', NS]);
    const objs = await render({ replicaCount: 2 }, ['--include-crds']);
    await admin(['apply', '--server-side', '--field-manager=helm-test', '-f', '-'], toStream(objs));
    await admin(['wait', '--for=condition=Established', 'crd/replications.dr-syncer.io', 'crd/remoteclusters.dr-syncer.io']);
    const names = (await admin(['get', '-f', '-', '-o', 'name'], toStream(objs))).stdout.trim().split('\n');
    assert.equal(names.length, objs.length, names.join(' '));
    const dep = JSON.parse((await admin(['-n', NS, 'get', 'deployment', '-l', 'app.kubernetes.io/name=dr-syncer,app.kubernetes.io/component=controller', '-o', 'json'])).stdout) as { items: { spec: { replicas: number } }[] };
    assert.equal(dep.items.length, 1, 'found by the labels --local uses');
    assert.equal(dep.items[0]!.spec.replicas, 2);
  });

  it("the controller, with exactly the chart's RBAC (impersonating its ServiceAccount), syncs a Replication of this cluster with no 403", async (t) => {
    // Stopped when this test ends, passed or not, before the next one narrows the RBAC again: its
    // watch of Secrets (rbac.sourceSecrets below) would list them once more and meet a 403 that
    // test would count as its own.
    t.after(stopController);
    // The source: a namespace with the kinds the default types include.
    await admin(['apply', '-f', '-'], toStream([
      { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'shop' } },
      { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'settings', namespace: 'shop' }, data: { color: 'blue' } },
      { apiVersion: 'v1', kind: 'Secret', metadata: { name: 'db', namespace: 'shop' }, stringData: { password: 'hunter2' } },
      { apiVersion: 'v1', kind: 'Service', metadata: { name: 'web', namespace: 'shop' }, spec: { ports: [{ port: 80 }], selector: { app: 'web' } } },
      { apiVersion: 'apps/v1', kind: 'Deployment', metadata: { name: 'web', namespace: 'shop' }, spec: { replicas: 3, selector: { matchLabels: { app: 'web' } }, template: { metadata: { labels: { app: 'web' } }, spec: { containers: [{ name: 'web', image: 'nginx:1' }] } } } },
    ] as unknown as K8sObject[]));
    const repoUrl = await git.createRepo('dr');
    await admin(['-n', NS, 'create', 'secret', 'generic', 'git-creds', `--from-literal=username=${git.user}`, `--from-literal=password=${git.password}`]);
    // A RemoteCluster too (its kubeconfig Secret is read under the chart's RBAC; the cluster it names is this one, as admin).
    await admin(['-n', NS, 'create', 'secret', 'generic', 'self-kubeconfig', `--from-file=kubeconfig=${cluster.kubeconfigPath}`]);
    await admin(['apply', '-f', '-'], JSON.stringify({ apiVersion: 'dr-syncer.io/v1alpha1', kind: 'RemoteCluster', metadata: { name: 'self', namespace: NS }, spec: { kubeconfigSecretRef: { name: 'self-kubeconfig' } } }));

    // The controller exactly as the chart runs it: the rendered Deployment's arguments, local
    // addresses and cache folder instead of the pod's, and the ServiceAccount's identity.
    const objs = await render({ replicaCount: 2 });
    const c = container(objs);
    const kubeconfig = impersonatingKubeconfig(cluster, recorder.port, SA, work);
    const args = c.args.map((a) =>
      a.startsWith('--metrics-bind-address=') ? '--metrics-bind-address=127.0.0.1:0'
        : a.startsWith('--health-probe-bind-address=') ? '--health-probe-bind-address=127.0.0.1:0'
          : a.startsWith('--cache-dir=') ? `--cache-dir=${path.join(work, 'cache')}` : a);
    const logFile = path.join(work, 'controller.log');
    const out = fs.openSync(logFile, 'w');
    controller = spawn(process.execPath, ['--import', 'tsx', path.join(root, 'src', 'cli', 'main.ts'), ...args, `--kubeconfig=${kubeconfig}`], {
      cwd: root, stdio: ['ignore', out, out],
      env: { ...process.env, POD_NAMESPACE: NS, POD_NAME: 'dr-syncer-chart-test', LOG_FORMAT: 'json', LOG_LEVEL: 'info' },
    });
    fs.closeSync(out);
    const readLog = () => (controllerLog = fs.readFileSync(logFile, 'utf8'));
    const started = await until('the controller started', async () => {
      readLog();
      assert.equal(controller!.exitCode, null, `the controller exited:\n${controllerLog}`);
      const line = controllerLog.split('\n').find((l) => l.includes('dr-syncer controller started'));
      return line ? (JSON.parse(line) as { probePort: number; metricsPort: number }) : undefined;
    }, 120_000);
    // The probes the Deployment names answer.
    await until('/readyz ok', async () => (await fetch(`http://127.0.0.1:${started.probePort}/readyz`)).status === 200);
    assert.equal((await fetch(`http://127.0.0.1:${started.probePort}/healthz`)).status, 200);
    assert.equal((await fetch(`http://127.0.0.1:${started.metricsPort}/metrics`)).status, 200);

    // Leader election in the release namespace, as the ServiceAccount.
    await until('the leader Lease', async () => {
      const l = JSON.parse((await admin(['-n', NS, 'get', 'lease', 'dr-syncer.io', '-o', 'json'])).stdout) as { spec: { holderIdentity?: string } };
      return l.spec.holderIdentity?.startsWith('dr-syncer-chart-test');
    });

    const getRep = async (name: string) => (JSON.parse((await admin(['-n', NS, 'get', 'replication', name, '-o', 'json'])).stdout) as { status?: { phase?: string; lastCommit?: string; lastError?: string } }).status;
    const file = async (p: string) => {
      const clone = await git.clone('dr');
      const f = path.join(clone, p);
      const text = fs.existsSync(f) ? fs.readFileSync(f, 'utf8') : undefined;
      fs.rmSync(clone, { recursive: true, force: true });
      return text;
    };

    // Continuous (list and watch of every default type), Secrets left out: the chart reads none by default.
    await admin(['apply', '-f', '-'], JSON.stringify({
      apiVersion: 'dr-syncer.io/v1alpha1', kind: 'Replication', metadata: { name: 'shop', namespace: NS },
      spec: { sourceNamespace: 'shop', mode: 'Continuous', continuous: { debounce: '500ms', resyncInterval: '1h' },
        git: { url: repoUrl, path: 'chart/shop', credentialsSecretRef: { name: 'git-creds' } } },
    }));
    const first = await until('shop synced', async () => {
      const s = await getRep('shop');
      return s?.phase === 'Synced' && s.lastCommit ? s : undefined;
    }, 120_000);
    assert.ok(first.lastCommit);
    assert.match((await file('chart/shop/shop/configmap-settings.yaml')) ?? '', /color: blue/);
    assert.match((await file('chart/shop/shop/deployment.apps-web.yaml')) ?? '', /replicas: 0/);
    assert.ok(await file('chart/shop/shop/service-web.yaml'));
    assert.equal(await file('chart/shop/shop/secret-db.yaml'), undefined);
    // A change at the source arrives through the watch.
    await admin(['-n', 'shop', 'patch', 'configmap', 'settings', '--type=merge', '-p', '{"data":{"color":"green"}}']);
    await until('the change committed', async () => /color: green/.test((await file('chart/shop/shop/configmap-settings.yaml')) ?? ''), 60_000);

    // rbac.sourceSecrets switched on (what `helm upgrade --set rbac.sourceSecrets=true` changes): a
    // Replication with the default types and secrets.mode Plaintext.
    const withSecrets = await render({ replicaCount: 2, 'rbac.sourceSecrets': true });
    await admin(['apply', '--server-side', '--field-manager=helm-test', '-f', '-'], toStream(withSecrets.filter((o) => o.kind === 'ClusterRole')));
    await admin(['apply', '-f', '-'], JSON.stringify({
      apiVersion: 'dr-syncer.io/v1alpha1', kind: 'Replication', metadata: { name: 'shop-secrets', namespace: NS },
      spec: { sourceNamespace: 'shop', mode: 'Continuous', secrets: { mode: 'Plaintext' }, git: { url: repoUrl, path: 'chart/shop-secrets', credentialsSecretRef: { name: 'git-creds' } } },
    }));
    await until('shop-secrets synced', async () => {
      const s = await getRep('shop-secrets');
      return s?.phase === 'Synced' && s.lastCommit;
    }, 120_000);
    assert.match((await file('chart/shop-secrets/shop/secret-db.yaml')) ?? '', /password/);

    await until('RemoteCluster self Healthy', async () => {
      const rc = JSON.parse((await admin(['-n', NS, 'get', 'remotecluster', 'self', '-o', 'json'])).stdout) as { status?: { health?: string } };
      return rc.status?.health === 'Healthy';
    });
    await until('Events recorded by the controller', async () => (await admin(['-n', NS, 'get', 'events', '--field-selector', 'involvedObject.kind=Replication', '-o', 'name'])).stdout.trim());

    readLog();
    assert.ok(recorder.answers.length > 20, `the controller's requests went through the recorder (${recorder.answers.length})`);
    assert.deepEqual(recorder.answers.filter((a) => a.as !== SA).map((a) => `${a.method} ${a.path} as ${a.as ?? 'nobody'}`), [], 'every request as the ServiceAccount');
    assert.deepEqual(forbidden(recorder.answers), [], `403s met by the controller:\n${controllerLog.split('\n').filter((l) => /forbidden|403/i.test(l)).slice(0, 10).join('\n')}`);
    assert.doesNotMatch(controllerLog, /forbidden/i);
  });

  it('pvcSync: the chart grants what the agents and the copies next to the PVCs need, and no more', async () => {
    const objs = await render({ replicaCount: 2, 'pvcSync.enabled': true });
    await admin(['apply', '--server-side', '--field-manager=helm-test', '-f', '-'], toStream(objs.filter((o) => o.kind !== 'Deployment')));
    const can = async (args: string[]) => (await kubectl(cluster.kubeconfigPath, ['auth', 'can-i', '--as', SA, ...args], { check: false })).stdout.trim() === 'yes';
    const yes: string[][] = [
      ['patch', 'namespaces/dr-syncer-agent'], ['patch', 'daemonsets.apps/dr-syncer-agent', '-n', 'dr-syncer-agent'], ['get', 'daemonsets.apps/dr-syncer-agent', '-n', 'dr-syncer-agent'],
      ['patch', 'roles.rbac.authorization.k8s.io/dr-syncer-agent', '-n', 'dr-syncer-agent'], ['patch', 'rolebindings.rbac.authorization.k8s.io/dr-syncer-agent', '-n', 'dr-syncer-agent'],
      ['patch', 'serviceaccounts/dr-syncer-agent', '-n', 'dr-syncer-agent'], ['get', 'secrets/dr-syncer-agent-host-key', '-n', 'dr-syncer-agent'],
      ['patch', 'configmaps/dr-syncer-agent', '-n', 'dr-syncer-agent'], ['list', 'pods', '-n', 'dr-syncer-agent'],
      ['list', 'nodes'], ['get', 'nodes'],
      ['create', 'jobs.batch', '-n', 'shop'], ['delete', 'jobs.batch', '-n', 'shop'], ['list', 'jobs.batch', '-A'],
      ['create', 'secrets', '-n', 'shop'], ['list', 'pods', '-n', 'shop'], ['get', 'persistentvolumeclaims', '-n', 'shop'],
      ['create', 'leases.coordination.k8s.io', '-n', 'shop'], ['update', 'leases.coordination.k8s.io', '-n', 'shop'], ['delete', 'leases.coordination.k8s.io', '-n', 'shop'], ['list', 'leases.coordination.k8s.io', '-A'],
      ['list', 'events', '-n', 'shop'], // why a copy Job has no pod (FailedCreate: Pod Security)
      ['create', 'secrets', '-n', NS], ['update', 'secrets', '-n', NS],
    ];
    const no: string[][] = [
      ['get', 'secrets', '-n', 'shop'], ['list', 'secrets', '-A'], ['delete', 'secrets', '-n', 'shop'],
      ['patch', 'namespaces/kube-system'], ['patch', 'daemonsets.apps', '-n', 'shop'], ['patch', 'configmaps/other', '-n', 'dr-syncer-agent'],
      ['escalate', 'roles.rbac.authorization.k8s.io', '-n', 'dr-syncer-agent'], ['bind', 'roles.rbac.authorization.k8s.io', '-n', 'dr-syncer-agent'],
      ['get', 'pods', '--subresource=log', '-n', 'shop'], ['get', 'pods', '-n', 'shop'], ['create', 'pods', '-n', 'shop'], ['delete', 'nodes'],
    ];
    const wrong: string[] = [];
    for (const a of yes) if (!(await can(a))) wrong.push(`cannot ${a.join(' ')}`);
    for (const a of no) if (await can(a)) wrong.push(`can ${a.join(' ')}`);
    assert.deepEqual(wrong, []);

    // The agent reconcile itself, as the ServiceAccount: keys in the release namespace, the agent's
    // objects (its Role and RoleBinding under RBAC's escalation rules), a registered target, a sweep.
    const kc = new KubeConfig();
    kc.loadFromFile(impersonatingKubeconfig(cluster, recorder.port, SA, work));
    const client = await KubeClient.fromKubeConfig(kc);
    const before = recorder.answers.length;
    const now = new Date();
    const host = await ensureKey(client, NS, 'local-pvc-agent-host-key', 'dr-syncer-agent-host local', undefined, now);
    const dr = await ensureKey(client, NS, 'local-pvc-agent-client-key', 'dr-syncer-dr-to-agent local', 1000, now);
    const rotated = await ensureKey(client, NS, 'local-pvc-agent-client-key', 'dr-syncer-dr-to-agent local', 1000, new Date(now.getTime() + 5000));
    assert.notEqual(rotated.key.fingerprint, dr.key.fingerprint, 'rotation replaces the key');
    const values = parse(fs.readFileSync(path.join(chartDir, 'values.yaml'), 'utf8')) as { pvcSync: { namespace: string } };
    const settings = agentSettingsFor({ namespace: values.pvcSync.namespace }, { image: 'example.invalid/dr-syncer-agent:test' });
    const owner = `the dr-syncer controller of namespace ${NS} (--local-pvc-sync) local`;
    for (let i = 0; i < 2; i++) { // created, then applied again unchanged
      const state = await reconcileAgent(client, settings, host.key.privateKey, rotated.key.publicKey, owner);
      assert.deepEqual(state, { ready: 0, total: 0, nodes: [] }); // no nodes in this cluster
    }
    for (const [kind, name] of [['daemonset', 'dr-syncer-agent'], ['role', 'dr-syncer-agent'], ['rolebinding', 'dr-syncer-agent'], ['serviceaccount', 'dr-syncer-agent'], ['secret', 'dr-syncer-agent-host-key'], ['configmap', 'dr-syncer-agent']]) {
      await admin(['-n', 'dr-syncer-agent', 'get', kind!, name!]);
    }
    await registerTarget(client, settings.namespace, 'op1', 'node-a', '10.0.0.1:2223');
    assert.deepEqual(await registeredTargets(client, settings.namespace), ['op1']);
    await unregisterTargets(client, settings.namespace, ['op1']);
    await registerTarget(client, settings.namespace, 'op2', 'node-a', '10.0.0.1:2223');
    // A sweep finds op2's endpoint Job gone and unregisters it; it lists Jobs and Leases in every namespace.
    const removed = await sweep({ source: client, destination: client, agent: { namespace: settings.namespace } as never, log: silentLogger }, 'no-such-uid');
    assert.equal(removed, 1);
    assert.deepEqual(await registeredTargets(client, settings.namespace), []);
    // A copy's objects next to the PVC: Lease, endpoint Job and its Secret.
    // The Lease through the code that holds it (acquire, renew, release), so this follows its verbs.
    const leasePlan = { opId: 'op3', replication: { namespace: 'dr-syncer', name: 'shop', uid: 'uid-shop' }, image: 'unused', source: { namespace: 'shop', pvc: 'data' }, destination: { namespace: 'shop', pvc: 'data' }, rsync: {}, timeoutSeconds: 60 };
    await pvcLease.acquire({ source: client, holder: 'chart-test' }, leasePlan);
    await pvcLease.renew({ source: client, holder: 'chart-test' }, leasePlan);
    await pvcLease.release({ source: client, holder: 'chart-test' }, leasePlan);
    const job = await client.request<{ metadata: { name: string; uid: string } }>('POST', '/apis/batch/v1/namespaces/shop/jobs', {
      apiVersion: 'batch/v1', kind: 'Job', metadata: { name: 'dr-syncer-rsync-test' },
      spec: { template: { spec: { restartPolicy: 'Never', containers: [{ name: 'rsync', image: 'example.invalid/agent:test' }] } } },
    });
    await client.request('POST', '/api/v1/namespaces/shop/secrets', {
      apiVersion: 'v1', kind: 'Secret', metadata: { name: 'dr-syncer-rsync-test', ownerReferences: [{ apiVersion: 'batch/v1', kind: 'Job', name: job.metadata.name, uid: job.metadata.uid, controller: true }] }, data: {},
    });
    await client.request('DELETE', '/apis/batch/v1/namespaces/shop/jobs/dr-syncer-rsync-test?propagationPolicy=Background');
    await client.get('/api/v1/namespaces/shop/persistentvolumeclaims');
    await client.get('/api/v1/nodes');

    const mine = recorder.answers.slice(before);
    assert.ok(mine.length > 20);
    assert.ok(mine.every((a) => a.as === SA));
    assert.deepEqual(forbidden(mine), []);
  });
});
