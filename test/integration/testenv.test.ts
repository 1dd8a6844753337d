// The test control plane itself: isolation between clusters, kube-controller-manager doing its
// work (namespace deletion, Deployment -> ReplicaSet), and the detached CLI.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { kubectl, startClusters, type TestCluster } from '../env/cluster.ts';
import { eventually } from '../env/wait.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

/** Running (a killed process may linger as a zombie until init reaps it: that counts as gone). */
function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return !/^[ZX]/.test(stat.slice(stat.lastIndexOf(')') + 2));
  } catch {
    if (existsSync('/proc/self/stat')) return false;
  }
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

void describe('two clusters started in parallel', () => {
  let a: TestCluster;
  let b: TestCluster;

  before(async () => {
    const t0 = Date.now();
    [a, b] = (await startClusters(2)) as [TestCluster, TestCluster];
    console.log(`two clusters up in ${((Date.now() - t0) / 1000).toFixed(1)}s`);
  });
  after(async () => {
    await Promise.all([a?.stop(), b?.stop()]);
    for (const c of [a, b]) if (c && process.env.KEEP_TESTENV !== '1') assert.ok(!existsSync(c.dir), `${c.dir} removed`);
  });

  void test('are isolated', async () => {
    assert.notEqual(a.server, b.server);
    assert.match(a.server, /^https:\/\/127\.0\.0\.1:\d+$/);
    await kubectl(a.kubeconfigPath, ['create', 'configmap', 'only-in-a', '-n', 'default', '--from-literal=k=v']);
    const inA = await kubectl(a.kubeconfigPath, ['get', 'configmap', 'only-in-a', '-n', 'default', '-o', 'jsonpath={.data.k}']);
    assert.equal(inA.stdout, 'v');
    const inB = await kubectl(b.kubeconfigPath, ['get', 'configmap', 'only-in-a', '-n', 'default'], { check: false });
    assert.notEqual(inB.code, 0);
    assert.match(inB.stderr, /NotFound|not found/);
  });

  void test('admin kubeconfig is cluster-admin via system:masters', async () => {
    const res = await kubectl(a.kubeconfigPath, ['auth', 'can-i', '*', '*', '--all-namespaces']);
    assert.equal(res.stdout.trim(), 'yes');
  });

  void test('namespace deletion completes (namespace controller)', async () => {
    await kubectl(a.kubeconfigPath, ['create', 'namespace', 'doomed']);
    await kubectl(a.kubeconfigPath, ['create', 'configmap', 'cm', '-n', 'doomed', '--from-literal=a=b']);
    await kubectl(a.kubeconfigPath, ['delete', 'namespace', 'doomed', '--wait=false']);
    await eventually('namespace doomed to disappear', async () => {
      const r = await kubectl(a.kubeconfigPath, ['get', 'namespace', 'doomed'], { check: false });
      return r.code !== 0 && /NotFound|not found/.test(r.stderr) ? true : undefined;
    });
  });

  void test('a Deployment gets a ReplicaSet, which the GC deletes with it', async () => {
    await kubectl(b.kubeconfigPath, ['create', 'deployment', 'web', '-n', 'default', '--image=registry.invalid/web:1']);
    const rs = await eventually('a ReplicaSet owned by deployment web', async () => {
      const r = await kubectl(b.kubeconfigPath, ['get', 'replicasets', '-n', 'default', '-o', 'json']);
      const items = (JSON.parse(r.stdout) as { items: { metadata: { name: string; ownerReferences?: { kind: string; name: string }[] } }[] }).items;
      return items.find((i) => i.metadata.ownerReferences?.some((o) => o.kind === 'Deployment' && o.name === 'web'))?.metadata.name;
    });
    // The ReplicaSet controller creates the Pod (it stays Pending: no scheduler, no kubelet).
    await eventually('a Pod of the ReplicaSet', async () => {
      const r = await kubectl(b.kubeconfigPath, ['get', 'pods', '-n', 'default', '-l', 'app=web', '-o', 'name']);
      return r.stdout.trim() !== '' ? true : undefined;
    });
    await kubectl(b.kubeconfigPath, ['delete', 'deployment', 'web', '-n', 'default', '--wait=false']);
    await eventually(`ReplicaSet ${rs} to be garbage-collected`, async () => {
      const r = await kubectl(b.kubeconfigPath, ['get', 'replicaset', rs, '-n', 'default'], { check: false });
      return r.code !== 0 && /NotFound|not found/.test(r.stderr) ? true : undefined;
    });
  });
});

void describe('testenv CLI', () => {
  let parent: string;
  let dir: string;

  const cli = (args: string[]): Promise<{ code: number; out: string }> =>
    new Promise((resolve, reject) => {
      const child = spawn('npm', ['run', '--silent', 'testenv', '--', ...args], {
        cwd: ROOT,
        env: { ...process.env, INIT_CWD: ROOT },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let out = '';
      child.stdout.on('data', (d: Buffer) => (out += d.toString()));
      child.stderr.on('data', (d: Buffer) => (out += d.toString()));
      child.on('error', reject);
      // 'close' waits for the pipes: proves the detached processes did not inherit them.
      child.on('close', (code) => resolve({ code: code ?? 1, out }));
    });

  before(async () => {
    parent = await mkdtemp(path.join(os.tmpdir(), 'drs-cli-test-'));
    dir = path.join(parent, 'env');
  });
  after(async () => {
    if (existsSync(path.join(dir, 'kube-apiserver.pid'))) await cli(['down', dir]);
    await rm(parent, { recursive: true, force: true });
  });

  void test('--help prints usage; bad input fails clearly', async () => {
    const help = await cli(['--help']);
    assert.equal(help.code, 0);
    assert.match(help.out, /up <dir>/);
    const bad = await cli(['sideways', dir]);
    assert.equal(bad.code, 2);
    assert.match(bad.out, /unknown command "sideways"/);
    const down = await cli(['down', path.join(parent, 'nothing-here')]);
    assert.equal(down.code, 1);
    assert.match(down.out, /does not exist/);
  });

  void test('up, use, down', async () => {
    const t0 = Date.now();
    const up = await cli(['up', dir]);
    assert.equal(up.code, 0, up.out);
    console.log(`CLI up (incl. npm/tsx) in ${((Date.now() - t0) / 1000).toFixed(1)}s`);
    const kubeconfig = path.join(dir, 'kubeconfig');
    assert.ok(up.out.includes(kubeconfig), up.out);

    const pidFiles = readdirSync(dir).filter((f) => f.endsWith('.pid'));
    assert.deepEqual(pidFiles.sort(), ['etcd.pid', 'kube-apiserver.pid', 'kube-controller-manager.pid']);
    const pids = pidFiles.map((f) => Number(readFileSync(path.join(dir, f), 'utf8').trim()));
    for (const pid of pids) assert.ok(alive(pid), `pid ${pid} alive after up returned`);

    const ns = await kubectl(kubeconfig, ['get', 'ns', '-o', 'name']);
    assert.match(ns.stdout, /^namespace\/default$/m);

    const again = await cli(['up', dir]);
    assert.equal(again.code, 1);
    assert.match(again.out, /already running/);

    const down = await cli(['down', dir]);
    assert.equal(down.code, 0, down.out);
    for (const pid of pids) assert.ok(!alive(pid), `pid ${pid} gone after down`);
    assert.ok(!existsSync(dir), 'dir removed');
  });
});

describe('build-bins.sh', () => {
  const script = path.resolve('test/env/build-bins.sh');
  const runScript = (env: Record<string, string>) =>
    new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
      const p = spawn('bash', [script], { env: { ...process.env, ...env } });
      let stdout = '';
      let stderr = '';
      p.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
      p.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      p.on('close', (code) => resolve({ code, stdout: stdout.trim(), stderr }));
    });

  test('uses KUBEBUILDER_ASSETS when it holds the binaries, and builds nothing', async () => {
    const built = (await runScript({})).stdout.split('\n').pop()!;
    const assets = await mkdtemp(path.join(os.tmpdir(), 'drs-assets-'));
    try {
      const { symlink, writeFile, chmod } = await import('node:fs/promises');
      for (const b of ['kube-apiserver', 'etcd']) await symlink(path.join(built, b), path.join(assets, b));
      const r = await runScript({ KUBEBUILDER_ASSETS: assets, PATH: '/usr/bin:/bin' }); // no Go on PATH: nothing can be built
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout, assets);
      const empty = await mkdtemp(path.join(os.tmpdir(), 'drs-assets-empty-'));
      await writeFile(path.join(empty, 'etcd'), '#!/bin/sh\n');
      await chmod(path.join(empty, 'etcd'), 0o755);
      const fallback = await runScript({ KUBEBUILDER_ASSETS: empty });
      assert.equal(fallback.code, 0, fallback.stderr);
      assert.equal(fallback.stdout.split('\n').pop(), built, 'an incomplete folder falls back to our own build');
      assert.match(fallback.stderr, /has no kube-apiserver\/etcd/);
      await rm(empty, { recursive: true, force: true });
    } finally {
      await rm(assets, { recursive: true, force: true });
    }
  });
});
