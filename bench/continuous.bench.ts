// Benchmark: Continuous mode, time from a source edit to the pushed commit that contains it, at
// 1 edit/s and at 50 edits/s, with the controller as its own process (`dr-syncer controller`)
// against a real API server and a real Git server; then the controller's RSS with 10,000
// objects in its watch caches.
//
//   npx tsx bench/continuous.bench.ts [--slow-seconds 30] [--fast-seconds 10] [--objects 10000]
//
// Latency is measured against the branch ref in the Git server's own bare repository (polled
// every 10 ms), so it includes the whole path: watch event, debounce, LIST, render, push.
import { execFile, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs, promisify } from 'node:util';
import { KubeClient } from '../src/adapters/kube/client.ts';
import { kubectl, startCluster } from '../test/env/cluster.ts';
import { startGitServer } from '../test/env/git-server.ts';

const run = promisify(execFile);
const { values } = parseArgs({
  options: {
    'slow-seconds': { type: 'string', default: '30' }, 'fast-seconds': { type: 'string', default: '10' },
    objects: { type: 'string', default: '10000' }, debounce: { type: 'string', default: '500ms' }, help: { type: 'boolean', default: false },
  },
});
if (values.help) {
  console.log('usage: npx tsx bench/continuous.bench.ts [--slow-seconds N] [--fast-seconds N] [--objects N] [--debounce 500ms]');
  process.exit(0);
}
const log = (s: string) => console.error(`[bench] ${s}`);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const pct = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] ?? NaN;
};

const [cluster, git] = await Promise.all([startCluster({ controllerManager: false }), startGitServer()]);
const tmp = await fs.promises.mkdtemp(path.join(os.tmpdir(), 'drs-cbench-'));
let ctl: ReturnType<typeof spawn> | undefined;
try {
  const client = await KubeClient.fromFile(cluster.kubeconfigPath, undefined, { qps: 0 }); // loading test data: no client-side limit
  const url = await git.createRepo('dr');
  const refFile = path.join(git.root, 'dr.git', 'refs', 'heads', 'main');
  await kubectl(cluster.kubeconfigPath, ['apply', '--server-side', '-f', path.resolve('crds')]);
  await kubectl(cluster.kubeconfigPath, ['wait', '--for=condition=Established', 'crd/replications.dr-syncer.io']);
  for (const ns of ['dr-syncer', 'edits']) await client.request('POST', '/api/v1/namespaces', { metadata: { name: ns } });
  await client.request('POST', '/api/v1/namespaces/dr-syncer/secrets', { metadata: { name: 'git' }, stringData: { username: git.user, password: git.password } });
  await client.request('POST', '/api/v1/namespaces/edits/configmaps', { metadata: { name: 'hot' }, data: { seq: '0' } });

  // The compiled JavaScript, as the container runs it (tsx's loader alone costs ~100 MB of RSS).
  await run(process.execPath, [path.resolve('node_modules/typescript/bin/tsc'), '-p', path.resolve('tsconfig.json')]);
  ctl = spawn(process.execPath, [path.resolve('dist/src/cli/main.js'), 'controller', '--kubeconfig', cluster.kubeconfigPath,
    '--metrics-bind-address', '127.0.0.1:0', '--health-probe-bind-address', '127.0.0.1:0', '--cache-dir', tmp, '--log-level', 'warn'], { stdio: ['ignore', 'ignore', 'inherit'] });
  const rep = (name: string, spec: Record<string, unknown>) => client.request('POST', '/apis/dr-syncer.io/v1alpha1/namespaces/dr-syncer/replications', {
    apiVersion: 'dr-syncer.io/v1alpha1', kind: 'Replication', metadata: { name },
    spec: { mode: 'Continuous', continuous: { debounce: values.debounce }, resourceTypes: ['configmaps'], git: { url, path: name, credentialsSecretRef: { name: 'git' } }, ...spec },
  });
  await rep('edits', { sourceNamespace: 'edits' });
  const readRef = () => fs.promises.readFile(refFile, 'utf8').then((s) => s.trim(), () => '');
  while (!(await readRef())) await sleep(100);
  log('controller made its first commit');

  // Every new tip of the branch, with the time it appeared and the seq it contains.
  const tips: { at: number; seq: number }[] = [];
  let last = await readRef();
  let polling = true;
  const poller = (async () => {
    while (polling) {
      const ref = await readRef();
      if (ref && ref !== last) {
        const at = performance.now();
        last = ref;
        const { stdout } = await run('git', ['--git-dir', path.join(git.root, 'dr.git'), 'show', `${ref}:edits/edits/configmap-hot.yaml`]);
        const seq = Number(/seq: "(\d+)"/.exec(stdout)?.[1] ?? NaN);
        tips.push({ at, seq });
      }
      await sleep(10);
    }
  })();

  const measure = async (rate: number, seconds: number, from: number) => {
    const sent: number[] = [];
    const n = rate * seconds;
    const t0 = performance.now();
    for (let i = 1; i <= n; i++) {
      const due = t0 + ((i - 1) * 1000) / rate;
      const wait = due - performance.now();
      if (wait > 0) await sleep(wait);
      sent[i] = performance.now();
      await client.request('PATCH', '/api/v1/namespaces/edits/configmaps/hot', { data: { seq: String(from + i) } }, 'application/merge-patch+json');
    }
    const end = Date.now() + 30_000;
    while (!tips.some((t) => t.seq >= from + n) && Date.now() < end) await sleep(50);
    const lat: number[] = [];
    for (let i = 1; i <= n; i++) {
      const tip = tips.find((t) => t.seq >= from + i && t.at >= sent[i]!);
      if (tip) lat.push(tip.at - sent[i]!);
    }
    const commits = tips.filter((t) => t.seq > from && t.seq <= from + n).length;
    // A growing backlog shows as later edits waiting longer than earlier ones.
    const firstHalf = pct(lat.slice(0, Math.floor(lat.length / 2)), 50);
    const secondHalf = pct(lat.slice(Math.floor(lat.length / 2)), 50);
    return { rate, edits: n, delivered: lat.length, commits, p50: pct(lat, 50), p99: pct(lat, 99), firstHalf, secondHalf };
  };
  const slow = await measure(1, Number(values['slow-seconds']), 0);
  const fast = await measure(50, Number(values['fast-seconds']), 100000);
  polling = false;
  await poller;

  // Memory: 10,000 ConfigMaps in 100 namespaces, all in the controller's watch caches.
  const N = Number(values.objects);
  const perNs = 100;
  log(`creating ${N} ConfigMaps in ${N / perNs} labelled namespaces`);
  for (let i = 0; i < N / perNs; i++) {
    const ns = `mem-${i}`;
    await client.request('POST', '/api/v1/namespaces', { metadata: { name: ns, labels: { mem: 'true' } } });
    await Promise.all(Array.from({ length: perNs }, (_, j) => client.request('POST', `/api/v1/namespaces/${ns}/configmaps`, { metadata: { name: `cm-${j}` }, data: { v: 'x'.repeat(200) } })));
  }
  const before = await readRef();
  await rep('mem', { namespaceSelector: { labelSelector: { matchLabels: { mem: 'true' } } } });
  const t0 = Date.now();
  while ((await readRef()) === before && Date.now() - t0 < 300_000) await sleep(50);
  // From the Replication's creation to its commit on the branch (it was counted after the 3 s below).
  const firstSyncS = (Date.now() - t0) / 1000;
  await sleep(3000);
  const status = await fs.promises.readFile(`/proc/${ctl.pid}/status`, 'utf8');
  const kb = (k: string) => Number(new RegExp(`${k}:\\s+(\\d+)`).exec(status)?.[1] ?? NaN) / 1024;

  // The periodic resync of the same Replication, its watch caches warm, nothing changed: how
  // long it takes (status.lastSyncDuration) and how many LISTs it makes (the API server's count),
  // against a bare LIST of the same objects by a process of its own, in the same run.
  const listCount = async () => {
    const text = (await kubectl(cluster.kubeconfigPath, ['get', '--raw', '/metrics'])).stdout;
    return [...text.matchAll(/^apiserver_request_total\{([^}]*)\} (\d+)/gm)]
      .filter(([, l]) => l!.includes('verb="LIST"') && l!.includes('resource="configmaps"')).reduce((a, [, , n]) => a + Number(n), 0);
  };
  type RepStatus = { lastSyncTime?: string; lastSyncDuration?: string; lastCommit?: string; observedGeneration?: number; conditions?: { type: string; reason: string }[] };
  const memStatus = async () => (await client.get<{ status?: RepStatus }>('/apis/dr-syncer.io/v1alpha1/namespaces/dr-syncer/replications/mem')).status ?? {};
  const patched = await client.request<{ metadata: { generation: number } }>('PATCH', '/apis/dr-syncer.io/v1alpha1/namespaces/dr-syncer/replications/mem', { spec: { continuous: { debounce: values.debounce, resyncInterval: '5s' } } }, 'application/merge-patch+json');
  // The sync the spec change asks for first (the status names the new generation): the LISTs
  // are counted from its end, over the resyncs that follow.
  const tg = Date.now();
  let st0 = await memStatus();
  while ((st0.observedGeneration ?? 0) < patched.metadata.generation && Date.now() - tg < 300_000) {
    await sleep(100);
    st0 = await memStatus();
  }
  const lists0 = await listCount();
  const resyncs: { s: number; reason?: string }[] = [];
  let seen = st0.lastSyncTime;
  const tr = Date.now();
  while (resyncs.length < 4 && Date.now() - tr < 120_000) {
    const st = await memStatus();
    if (st.lastSyncTime && st.lastSyncTime !== seen) {
      seen = st.lastSyncTime;
      resyncs.push({ s: parseFloat(st.lastSyncDuration ?? 'NaN'), reason: st.conditions?.find((c) => c.type === 'Synced')?.reason });
    }
    await sleep(100);
  }
  const resyncLists = (await listCount()) - lists0;
  const cacheDir2 = await fs.promises.mkdtemp(path.join(os.tmpdir(), 'drs-cbench-list-'));
  const bareList = async () => JSON.parse((await run(process.execPath, [path.resolve('dist/bench/sync-child.js'), 'list', cluster.kubeconfigPath, url, git.user, git.password, cacheDir2, 'mem=true', 'configmaps'])).stdout.trim().split('\n').pop()!) as { ms: number; objects: number };
  await bareList();
  const lists = [await bareList(), await bareList()];
  const listMs = (lists[0]!.ms + lists[1]!.ms) / 2;
  const resyncMs = resyncs.map((r) => r.s * 1000).sort((a, b) => a - b);
  const resyncMedian = resyncMs[Math.floor(resyncMs.length / 2)] ?? NaN;

  const row = (r: Awaited<ReturnType<typeof measure>>) =>
    `${String(r.rate).padStart(3)} edits/s  ${r.edits} edits -> ${r.commits} commits  p50 ${r.p50.toFixed(0)} ms  p99 ${r.p99.toFixed(0)} ms  (first half p50 ${r.firstHalf.toFixed(0)} ms, second half p50 ${r.secondHalf.toFixed(0)} ms)  delivered ${r.delivered}/${r.edits}`;
  console.log(`debounce ${values.debounce}; goal p50 <= 1000 ms, p99 <= 3000 ms, no growing backlog`);
  console.log(row(slow));
  console.log(row(fast));
  console.log(`controller with ${N} objects cached: RSS ${kb('VmRSS').toFixed(0)} MB, peak ${kb('VmHWM').toFixed(0)} MB; first sync of them took ${firstSyncS.toFixed(1)} s`);
  console.log(`periodic resync, warm caches, nothing changed: median ${resyncMedian.toFixed(0)} ms of ${resyncs.length} (${resyncs.map((r) => `${(r.s * 1000).toFixed(0)} ms ${r.reason}`).join(', ')}) = ${(resyncMedian / listMs).toFixed(2)}x the bare LIST of the same ${lists[0]!.objects} objects (${listMs.toFixed(0)} ms) (goal <= 0.5x); LISTs of ConfigMaps during the resyncs: ${resyncLists}`);
} finally {
  ctl?.kill('SIGTERM');
  await Promise.all([cluster.stop(), git.stop()]);
  await fs.promises.rm(tmp, { recursive: true, force: true });
}
