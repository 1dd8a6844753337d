// Lease leader election against a real kube-apiserver, with short timings (lease 3 s, renew
// deadline 2 s, retry 0.5 s): exactly one of two candidates leads and their terms never overlap;
// a graceful stop hands over within about one retry period; a leader killed with SIGKILL (a child
// process) is replaced after the lease duration, with leaseTransitions bumped; a stolen lease and a
// network partition both abort the leader's signal (fencing); expiry is judged by the local clock.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { Registry } from 'prom-client';
import { KubeClient } from '../../src/adapters/kube/client.ts';
import { LeaderElector, microTime, type LeaseSpec } from '../../src/runtime/leader.ts';
import { kubectl, startCluster, type TestCluster } from '../env/cluster.ts';
import { startProxy } from '../env/proxy.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const NS = 'default';
const FAST = { leaseDurationMs: 3_000, renewDeadlineMs: 2_000, retryPeriodMs: 500 };
/** Worst acquire retry: retryPeriod * (1 + 1.2 jitter), plus a request or two. */
const RETRY_SLACK_MS = 500 * 2.2 + 600;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function waitFor(what: string, pred: () => boolean | Promise<boolean>, timeoutMs = 15_000): Promise<number> {
  const t0 = Date.now();
  while (Date.now() - t0 < timeoutMs) {
    if (await pred()) return Date.now() - t0;
    await sleep(25);
  }
  throw new Error(`timed out after ${timeoutMs}ms waiting for ${what}`);
}

/** One candidate plus a record of its terms, for the no-overlap check. */
class Candidate {
  readonly el: LeaderElector;
  readonly stop = new AbortController();
  readonly terms: { start: number; end?: number }[] = [];
  readonly signals: AbortSignal[] = [];
  readonly leaders: string[] = [];
  stopped = 0;
  running: Promise<void> | undefined;

  constructor(client: KubeClient, name: string, readonly identity: string, registry?: Registry) {
    this.el = new LeaderElector({
      client, namespace: NS, name, identity, registry, ...FAST,
      onStartedLeading: (signal) => {
        this.signals.push(signal);
        const term: { start: number; end?: number } = { start: performance.now() };
        this.terms.push(term);
        signal.addEventListener('abort', () => (term.end = performance.now()), { once: true });
      },
      onStoppedLeading: () => void this.stopped++,
      onNewLeader: (id) => void this.leaders.push(id),
    });
  }

  start(): this {
    this.running = this.el.run(this.stop.signal);
    return this;
  }

  async shutdown(): Promise<void> {
    this.stop.abort();
    await this.running;
  }
}

async function lease(kubeconfig: string, name: string): Promise<LeaseSpec> {
  const { stdout } = await kubectl(kubeconfig, ['get', 'lease', name, '-n', NS, '-o', 'json']);
  return (JSON.parse(stdout) as { spec: LeaseSpec }).spec;
}

void describe('leader election', () => {
  let cluster: TestCluster;
  let client: KubeClient;
  const cleanup: (() => Promise<void> | void)[] = [];

  before(async () => {
    cluster = await startCluster({ controllerManager: false });
    // The candidates share one client here, but each stands for a process of its own: no shared client-side rate limit.
    client = await KubeClient.fromFile(cluster.kubeconfigPath, undefined, { qps: 0 });
  });
  after(async () => {
    for (const c of cleanup.reverse()) {
      try {
        await c();
      } catch (err) {
        console.error('cleanup failed:', err);
      }
    }
    await cluster?.stop();
  });

  void test('two candidates: exactly one leads; a graceful stop hands over within a retry period', async () => {
    const a = new Candidate(client, 'race', 'cand-a');
    const b = new Candidate(client, 'race', 'cand-b');
    cleanup.push(() => a.shutdown(), () => b.shutdown());
    a.start();
    b.start();
    await waitFor('a leader', () => a.el.isLeader() || b.el.isLeader());
    // Over several renewals, never two leaders and never a change of leader.
    const first = a.el.isLeader() ? a : b;
    const second = first === a ? b : a;
    for (let i = 0; i < 20; i++) {
      assert.equal(Number(a.el.isLeader()) + Number(b.el.isLeader()), 1, 'exactly one leader');
      await sleep(100);
    }
    assert.equal(first.el.isLeader(), true);
    assert.equal(second.el.leaderIdentity(), first.identity);
    assert.deepEqual(second.leaders, [first.identity], 'follower reported the leader');
    let spec = await lease(cluster.kubeconfigPath, 'race');
    assert.equal(spec.holderIdentity, first.identity);
    assert.equal(spec.leaseDurationSeconds, 3);
    assert.equal(spec.leaseTransitions, 0);
    assert.match(spec.renewTime ?? '', /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/);
    assert.ok(Date.parse(spec.renewTime ?? '') > Date.parse(spec.acquireTime ?? ''), 'renewed since acquired');

    const t0 = performance.now();
    await first.shutdown();
    assert.equal(first.signals[0]?.aborted, true, 'old leader fenced');
    assert.equal(first.stopped, 1, 'onStoppedLeading called');
    assert.equal(first.el.isLeader(), false);
    const took = await waitFor('the follower to take over', () => second.el.isLeader());
    console.log(`# graceful hand-over in ${Math.round(performance.now() - t0)}ms`);
    assert.ok(performance.now() - t0 < RETRY_SLACK_MS + 500, `hand-over took ${Math.round(performance.now() - t0)}ms (${took}ms after release)`);
    // Terms never overlap: the old one ended before the new one began.
    const oldEnd = first.terms[0]?.end ?? Infinity;
    assert.ok(oldEnd <= (second.terms[0]?.start ?? -1), 'terms do not overlap');
    spec = await lease(cluster.kubeconfigPath, 'race');
    assert.equal(spec.holderIdentity, second.identity);
    assert.equal(spec.leaseTransitions, 1);
  });

  void test('a SIGKILLed leader is replaced after the lease duration, leaseTransitions increments', async () => {
    const code = `
      const { KubeClient } = await import(${JSON.stringify(pathToFileURL(path.join(ROOT, 'src/adapters/kube/client.ts')).href)});
      const { LeaderElector } = await import(${JSON.stringify(pathToFileURL(path.join(ROOT, 'src/runtime/leader.ts')).href)});
      const client = await KubeClient.fromFile(${JSON.stringify(cluster.kubeconfigPath)});
      const el = new LeaderElector({ client, namespace: 'default', name: 'crash', identity: 'child', ...${JSON.stringify(FAST)},
        onStartedLeading: () => process.stdout.write('LEADING\\n'), onStoppedLeading: () => {} });
      await el.run(new AbortController().signal);`;
    const child: ChildProcess = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', code], {
      cwd: ROOT, stdio: ['ignore', 'pipe', 'inherit'],
    });
    const pid = child.pid as number;
    const exited = new Promise((r) => child.once('exit', r));
    cleanup.push(async () => {
      if (child.exitCode === null && child.signalCode === null) process.kill(pid, 'SIGKILL');
      await exited;
    });
    let out = '';
    child.stdout?.on('data', (d: Buffer) => (out += d.toString()));
    await waitFor('the child to lead', () => out.includes('LEADING'), 30_000);

    const f = new Candidate(client, 'crash', 'follower');
    cleanup.push(() => f.shutdown());
    f.start();
    await sleep(1_500); // the follower sees the child renewing and does not take over
    assert.equal(f.el.isLeader(), false);
    assert.equal(f.el.leaderIdentity(), 'child');
    const before = await lease(cluster.kubeconfigPath, 'crash');
    assert.equal(before.holderIdentity, 'child');

    process.kill(pid, 'SIGKILL'); // no release: the lease just stops being renewed
    await exited;
    const took = await waitFor('the follower to take over', () => f.el.isLeader());
    console.log(`# follower took over ${took}ms after SIGKILL`);
    // The follower last saw a change up to one retry before the kill; it waits leaseDuration from then.
    assert.ok(took >= 3_000 - RETRY_SLACK_MS, `took over too early: ${took}ms`);
    assert.ok(took <= 3_000 + RETRY_SLACK_MS + 1_000, `took over too late: ${took}ms`);
    const afterSpec = await lease(cluster.kubeconfigPath, 'crash');
    assert.equal(afterSpec.holderIdentity, 'follower');
    assert.equal(afterSpec.leaseTransitions, (before.leaseTransitions ?? 0) + 1);
    assert.deepEqual(f.leaders, ['child', 'follower']);
  });

  void test('a leader whose lease is stolen aborts its signal at the next renewal', async () => {
    const l = new Candidate(client, 'steal', 'victim');
    cleanup.push(() => l.shutdown());
    l.start();
    await waitFor('leadership', () => l.el.isLeader());
    await kubectl(cluster.kubeconfigPath, ['patch', 'lease', 'steal', '-n', NS, '--type=merge', '-p', '{"spec":{"holderIdentity":"thief"}}']);
    const took = await waitFor('the signal to abort', () => l.signals[0]?.aborted === true);
    assert.ok(took < 500 + 600, `fenced after ${took}ms`);
    assert.equal(l.el.isLeader(), false);
    assert.equal(l.stopped, 1);
    assert.equal(l.el.leaderIdentity(), 'thief');
    // The thief never renews: the victim campaigns again and wins once the lease (3 s on our clock) has passed.
    const back = await waitFor('re-election', () => l.el.isLeader());
    assert.ok(back >= 3_000 - 600, `re-acquired a valid lease after only ${back}ms`);
    assert.equal((await lease(cluster.kubeconfigPath, 'steal')).holderIdentity, 'victim');
    assert.equal(l.terms.length, 2);
  });

  void test('a partitioned leader stops leading within the renew deadline; the gauge follows', async () => {
    const url = new URL(cluster.server);
    const proxy = await startProxy(Number(url.port));
    cleanup.push(() => proxy.close());
    const kc = (await KubeClient.fromFile(cluster.kubeconfigPath)).kc;
    const cl = kc.getCurrentCluster();
    assert.ok(cl);
    // Same credentials, through the proxy (the API server certificate is valid for 127.0.0.1).
    kc.clusters = kc.clusters.map((c) => (c.name === cl.name ? { ...c, server: `https://127.0.0.1:${proxy.port}` } : c));
    const viaProxy = await KubeClient.fromKubeConfig(kc);
    const registry = new Registry();
    const l = new Candidate(viaProxy, 'partition', 'islanded', registry);
    cleanup.push(() => l.shutdown());
    l.start();
    await waitFor('leadership', () => l.el.isLeader());
    assert.match(await registry.getSingleMetricAsString('leader_election_master_status'), /\{name="partition"\} 1$/m);

    proxy.blackhole();
    const took = await waitFor('the signal to abort', () => l.signals[0]?.aborted === true);
    console.log(`# partitioned leader fenced ${took}ms after the partition`);
    assert.ok(took <= 2_000 + 400, `fenced after ${took}ms; the renew deadline is 2000ms`);
    assert.equal(l.stopped, 1);
    assert.match(await registry.getSingleMetricAsString('leader_election_master_status'), /\{name="partition"\} 0$/m);
    // The lease still names it: nobody else may take over until it has expired, and by then we stopped.
    assert.equal((await lease(cluster.kubeconfigPath, 'partition')).holderIdentity, 'islanded');
  });

  void test('expiry is judged by the local clock, not by the remote renewTime', async () => {
    for (const [name, renewTime] of [['stale', '2000-01-01T00:00:00.000000Z'], ['future', '2100-01-01T00:00:00.000000Z']] as const) {
      await kubectl(cluster.kubeconfigPath, ['apply', '-f', '-'], {
        input: JSON.stringify({
          apiVersion: 'coordination.k8s.io/v1', kind: 'Lease', metadata: { name, namespace: NS },
          spec: { holderIdentity: 'ghost', leaseDurationSeconds: 3, renewTime, acquireTime: renewTime, leaseTransitions: 4 },
        }),
      });
    }
    const stale = new Candidate(client, 'stale', 'newcomer-1').start();
    const future = new Candidate(client, 'future', 'newcomer-2').start();
    cleanup.push(() => stale.shutdown(), () => future.shutdown());
    const t0 = performance.now();
    // A 25-year-old renewTime does not make the lease free: we have not yet watched it for 3 s.
    await waitFor('both to lead', () => stale.el.isLeader() && future.el.isLeader(), 10_000);
    const took = performance.now() - t0;
    assert.ok(took >= 3_000, `acquired after ${Math.round(took)}ms`);
    assert.ok(took <= 3_000 + RETRY_SLACK_MS, `acquired after ${Math.round(took)}ms`);
    for (const name of ['stale', 'future']) {
      const spec = await lease(cluster.kubeconfigPath, name);
      assert.equal(spec.leaseTransitions, 5);
      assert.ok(Math.abs(Date.parse(spec.acquireTime ?? '') - Date.now()) < 10_000, 'acquireTime is now');
    }
    assert.deepEqual(stale.leaders, ['ghost', 'newcomer-1']);
    assert.match(microTime(new Date(Date.UTC(2006, 0, 2, 15, 4, 5, 7))), /^2006-01-02T15:04:05\.007000Z$/);
  });

  void test('a graceful stop does not release the lease while a writer still runs (it expires by itself instead)', async () => {
    let finished = 0;
    const slow = new LeaderElector({
      client, namespace: NS, name: 'slow-writer', identity: 'slow', ...FAST,
      // A writer that outlives leaseDuration after the abort (e.g. a push already on the wire).
      onStartedLeading: async (signal) => {
        await new Promise<void>((r) => signal.addEventListener('abort', () => r(), { once: true }));
        await sleep(FAST.leaseDurationMs + 1500);
        finished = performance.now();
      },
      onStoppedLeading: () => {},
    });
    const stop = new AbortController();
    const running = slow.run(stop.signal);
    cleanup.push(async () => {
      stop.abort();
      await running;
    });
    await waitFor('leading', () => slow.isLeader());
    stop.abort();
    await running;
    assert.equal(finished, 0, 'run() returned before the writer did');
    assert.equal((await lease(cluster.kubeconfigPath, 'slow-writer')).holderIdentity, 'slow', 'not released: a follower must wait for expiry');
  });
});
