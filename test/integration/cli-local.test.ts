// `dr-syncer controller --local` against a real API server (with kube-controller-manager, so the
// Deployment's pods exist until the scale-down removes them; none runs, there are no nodes): the
// in-cluster controller is scaled to 0 while the local one runs and gets its replicas back however
// the run ends: Ctrl-C, SIGTERM, a failed start, a signal while waiting; after a kill -9, the
// next --local run or --local-restore restores it.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { TestCluster } from '../env/cluster.ts';
import { kubectl, startCluster } from '../env/cluster.ts';

const NS = 'drs-local';
const ANNOTATION = 'dr-syncer.io/local-run-replicas';
const LABELS = { 'app.kubernetes.io/name': 'dr-syncer', 'app.kubernetes.io/component': 'controller' };
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'drs-local-'));
let cluster: TestCluster;
const procs: ChildProcess[] = [];
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Local {
  proc: ChildProcess;
  /** stderr so far (JSON log lines and messages). */
  err: () => string;
  exited: Promise<number | null>;
}

function local(...extra: string[]): Local {
  const proc = spawn(process.execPath, ['--import', 'tsx', path.resolve('src/cli/main.ts'), 'controller', '--kubeconfig', cluster.kubeconfigPath,
    '--local-namespace', NS, '--leader-elect', '--leader-election-namespace', NS, '--metrics-bind-address', '127.0.0.1:0',
    '--health-probe-bind-address', '127.0.0.1:0', '--cache-dir', path.join(tmp, 'cache'), ...extra], { env: { ...process.env, LOG_FORMAT: 'json' }, stdio: ['ignore', 'ignore', 'pipe'] });
  procs.push(proc);
  let err = '';
  proc.stderr!.on('data', (b: Buffer) => (err += b.toString()));
  const exited = new Promise<number | null>((resolve) => proc.on('exit', (code) => resolve(code)));
  return { proc, err: () => err, exited };
}

async function until(what: string, fn: () => boolean | Promise<boolean>, l?: Local, timeoutMs = 90_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    if (await fn()) return;
    if (l && l.proc.exitCode !== null) throw new Error(`exited (${l.proc.exitCode}) before ${what}:\n${l.err()}`);
    await sleep(200);
  }
  throw new Error(`timed out waiting for ${what}${l ? `:\n${l.err()}` : ''}`);
}

const started = (l: Local) => until('the controller started', () => l.err().includes('dr-syncer controller started'), l);

async function deployment(name = 'dr-syncer-controller'): Promise<{ replicas: number; annotation: string | undefined }> {
  const d = JSON.parse((await kubectl(cluster.kubeconfigPath, ['-n', NS, 'get', 'deployment', name, '-o', 'json'])).stdout) as {
    spec: { replicas: number };
    metadata: { annotations?: Record<string, string> };
  };
  return { replicas: d.spec.replicas, annotation: d.metadata.annotations?.[ANNOTATION] };
}

async function pods(): Promise<string[]> {
  const out = (await kubectl(cluster.kubeconfigPath, ['-n', NS, 'get', 'pods', '-l', 'app.kubernetes.io/component=controller', '-o', 'name'])).stdout;
  return out.split('\n').filter(Boolean);
}

const inCluster = { replicas: 2, annotation: undefined };
const scaledDown = { replicas: 0, annotation: '2' };

before(async () => {
  cluster = await startCluster();
  await kubectl(cluster.kubeconfigPath, ['apply', '--server-side', '-f', path.resolve('crds')]);
  await kubectl(cluster.kubeconfigPath, ['wait', '--for=condition=Established', 'crd/replications.dr-syncer.io', 'crd/remoteclusters.dr-syncer.io']);
  await kubectl(cluster.kubeconfigPath, ['create', 'namespace', NS]);
  const dep = (name: string, labels: Record<string, string>, replicas: number) => ({
    apiVersion: 'apps/v1', kind: 'Deployment', metadata: { name, namespace: NS, labels },
    spec: { replicas, selector: { matchLabels: labels }, template: { metadata: { labels }, spec: { containers: [{ name: 'c', image: 'localhost/none:1' }] } } },
  });
  // The chart's controller, and a Deployment the selector must leave alone.
  await kubectl(cluster.kubeconfigPath, ['apply', '-f', '-'], {
    input: [dep('dr-syncer-controller', LABELS, 2), dep('other', { 'app.kubernetes.io/name': 'dr-syncer', 'app.kubernetes.io/component': 'agent' }, 1)].map((o) => JSON.stringify(o)).join('\n'),
  });
  await until('the Deployment\'s pods', async () => (await pods()).length === 2);
});

after(async () => {
  for (const p of procs) if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
  await cluster?.stop();
  await fs.promises.rm(tmp, { recursive: true, force: true });
});

describe('dr-syncer controller --local', () => {
  it('scales the in-cluster controller to 0 while it runs (its pods gone first) and restores it on Ctrl-C', async () => {
    const l = local('--local');
    await started(l);
    assert.deepEqual(await deployment(), scaledDown);
    assert.deepEqual(await pods(), [], 'no in-cluster controller pod while the local one runs');
    assert.equal((await deployment('other')).replicas, 1, 'a Deployment without the controller labels is left alone');
    l.proc.kill('SIGINT');
    assert.equal(await l.exited, 0, l.err());
    assert.deepEqual(await deployment(), inCluster);
    assert.match(l.err(), /in-cluster controller restored/);
  });

  it('after a kill -9, the next --local run keeps the recorded count and restores it on SIGTERM', async () => {
    const crashed = local('--local');
    await started(crashed);
    crashed.proc.kill('SIGKILL');
    await crashed.exited;
    assert.deepEqual(await deployment(), scaledDown, 'the state stays on the Deployment');

    const next = local('--local');
    await started(next);
    assert.deepEqual(await deployment(), scaledDown, 'the count of before the crash, not 0');
    next.proc.kill('SIGTERM');
    assert.equal(await next.exited, 0, next.err());
    assert.deepEqual(await deployment(), inCluster);
  });

  it('after a kill -9, --local-restore restores it and exits', async () => {
    const crashed = local('--local');
    await started(crashed);
    crashed.proc.kill('SIGKILL');
    await crashed.exited;
    assert.deepEqual(await deployment(), scaledDown);
    const r = local('--local-restore');
    assert.equal(await r.exited, 0, r.err());
    assert.deepEqual(await deployment(), inCluster);
    assert.doesNotMatch(r.err(), /"msg":"dr-syncer controller started"/);
    // Nothing left to restore: still fine, nothing changes.
    const again = local('--local-restore');
    assert.equal(await again.exited, 0, again.err());
    assert.deepEqual(await deployment(), inCluster);
  });

  it('restores it when the local controller fails to start', async () => {
    const busy = net.createServer();
    await new Promise<void>((resolve) => busy.listen(0, '127.0.0.1', resolve));
    const port = (busy.address() as net.AddressInfo).port;
    try {
      const l = local('--local', '--metrics-bind-address', `127.0.0.1:${port}`);
      assert.equal(await l.exited, 1, l.err());
      assert.match(l.err(), /scaled to 0 for the local run/);
      assert.match(l.err(), /EADDRINUSE|in use/);
      assert.deepEqual(await deployment(), inCluster);
    } finally {
      busy.close();
    }
  });

  it('restores it on a signal while it waits for the in-cluster pods to go', async () => {
    // A controller pod that cannot go yet: terminating, held by a finalizer.
    const pod = { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'lingering', namespace: NS, labels: LABELS, finalizers: ['dr-syncer.io/test-hold'] }, spec: { containers: [{ name: 'c', image: 'localhost/none:1' }] } };
    await kubectl(cluster.kubeconfigPath, ['apply', '-f', '-'], { input: JSON.stringify(pod) });
    await kubectl(cluster.kubeconfigPath, ['-n', NS, 'delete', 'pod', 'lingering', '--wait=false']);
    try {
      const l = local('--local');
      await until('it waits for the pods', () => l.err().includes('waiting until the in-cluster controller pods are gone'), l);
      assert.ok(l.err().includes('lingering'), 'names the pod it waits for');
      assert.deepEqual(await deployment(), scaledDown);
      l.proc.kill('SIGINT');
      assert.equal(await l.exited, 0, l.err());
      assert.doesNotMatch(l.err(), /"msg":"dr-syncer controller started"/);
      assert.deepEqual(await deployment(), inCluster);
    } finally {
      await kubectl(cluster.kubeconfigPath, ['-n', NS, 'patch', 'pod', 'lingering', '--type=json', '-p', '[{"op":"remove","path":"/metadata/finalizers"}]'], { check: false });
    }
  });
});
