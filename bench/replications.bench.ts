// Benchmark: 50 Replications × 200 objects, all writing to one repository and all dirty at once,
// against one Replication of the same 10,000 objects, through the controller as its own process
// (`dr-syncer controller`, compiled), a real API server and a real Git server. Measured: the time
// from creating the Replications until every one reports its sync in status, the pushes (the
// branch's reflog on the server) and the commits, and that every status is right.
//
//   npx tsx bench/replications.bench.ts [--replications 50] [--per-replication 200] [--workers 4] [--qps N --burst M]
//
// --qps/--burst set the controller's client-side rate limit (default: the controller's, 20/s burst 30).
import { execFile, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs, promisify } from 'node:util';
import { KubeClient } from '../src/adapters/kube/client.ts';
import { kubectl, startCluster } from '../test/env/cluster.ts';
import { startGitServer } from '../test/env/git-server.ts';
import { benchNamespace, seedObjects } from './seed.ts';

const run = promisify(execFile);
const { values } = parseArgs({
  options: {
    replications: { type: 'string', default: '50' }, 'per-replication': { type: 'string', default: '200' },
    workers: { type: 'string', default: '4' }, qps: { type: 'string' }, burst: { type: 'string' }, help: { type: 'boolean', default: false },
  },
});
if (values.help) {
  console.log('usage: npx tsx bench/replications.bench.ts [--replications N] [--per-replication M] [--workers W] [--qps N --burst M]');
  process.exit(0);
}
const R = Number(values.replications);
const M = Number(values['per-replication']);
const log = (s: string) => console.error(`[bench] ${s}`);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..');

export interface RepStatus { phase?: string; lastCommit?: string; resources?: { total?: number }; conditions?: { type: string; status: string; reason?: string }[] }
interface RepList { items: { metadata: { name: string }; status?: RepStatus }[] }

const [cluster, git] = await Promise.all([startCluster({ controllerManager: false }), startGitServer()]);
const tmp = await fs.promises.mkdtemp(path.join(os.tmpdir(), 'drs-rbench-'));
let ctl: ReturnType<typeof spawn> | undefined;
try {
  const client = await KubeClient.fromFile(cluster.kubeconfigPath, undefined, { qps: 0 });
  await kubectl(cluster.kubeconfigPath, ['apply', '--server-side', '-f', path.join(root, 'crds')]);
  await kubectl(cluster.kubeconfigPath, ['wait', '--for=condition=Established', 'crd/replications.dr-syncer.io']);
  for (const ns of ['one', 'many']) await client.request('POST', '/api/v1/namespaces', { metadata: { name: ns } });
  for (const ns of ['one', 'many']) await client.request('POST', `/api/v1/namespaces/${ns}/secrets`, { metadata: { name: 'git' }, stringData: { username: git.user, password: git.password } });
  log(`creating ${R * M} objects in ${R} namespaces`);
  await seedObjects(client, R, M, log);
  const repos = { one: await git.createRepo('one'), many: await git.createRepo('many') };
  // The server's reflog of the branch: one entry per push that moved it.
  for (const name of ['one', 'many']) await run('git', ['--git-dir', path.join(git.root, `${name}.git`), 'config', 'core.logAllRefUpdates', 'always']);

  log('compiling (tsc -> dist/)');
  await run(process.execPath, [path.join(root, 'node_modules/typescript/bin/tsc'), '-p', path.join(root, 'tsconfig.json')]);
  ctl = spawn(process.execPath, [path.join(root, 'dist/src/cli/main.js'), 'controller', '--kubeconfig', cluster.kubeconfigPath, '--workers', values.workers!,
    ...(values.qps ? ['--kube-api-qps', values.qps] : []), ...(values.burst ? ['--kube-api-burst', values.burst] : []),
    '--metrics-bind-address', '127.0.0.1:0', '--health-probe-bind-address', '127.0.0.1:0', '--cache-dir', tmp, '--log-level', 'warn'], { stdio: ['ignore', 'ignore', 'inherit'] });

  const create = (ns: 'one' | 'many', name: string, select: Record<string, unknown>) => client.request('POST', `/apis/dr-syncer.io/v1alpha1/namespaces/${ns}/replications`, {
    apiVersion: 'dr-syncer.io/v1alpha1', kind: 'Replication', metadata: { name },
    spec: { mode: 'Manual', trigger: { manual: 'bench' }, resourceTypes: ['configmaps', 'services', 'deployments'], git: { url: repos[ns], path: 'dr', credentialsSecretRef: { name: 'git' } }, ...select },
  });
  const statuses = async (ns: string) => (await client.get<RepList>(`/apis/dr-syncer.io/v1alpha1/namespaces/${ns}/replications`)).items;
  const done = (s?: RepStatus) => s?.phase === 'Synced' && !!s.lastCommit;
  const waitAll = async (ns: string, n: number) => {
    const t0 = performance.now();
    for (;;) {
      const items = await statuses(ns);
      if (items.length === n && items.every((i) => done(i.status))) return { ms: performance.now() - t0, items };
      if (performance.now() - t0 > 600_000) throw new Error(`not all synced after 10 min: ${items.filter((i) => !done(i.status)).map((i) => `${i.metadata.name} ${i.status?.phase}`).join(', ')}`);
      await sleep(50);
    }
  };
  // Wait for the controller to start (its first list of Replications), with a throwaway Replication.
  await create('one', 'warmup', { sourceNamespace: benchNamespace(0), git: { url: repos.one, path: 'warmup', credentialsSecretRef: { name: 'git' } } });
  await waitAll('one', 1);
  await client.request('DELETE', '/apis/dr-syncer.io/v1alpha1/namespaces/one/replications/warmup');
  while ((await statuses('one')).length) await sleep(100);

  log(`baseline: one Replication of ${R * M} objects`);
  const reflog = async (name: string) => (await run('git', ['--git-dir', path.join(git.root, `${name}.git`), 'reflog', 'show', '--format=%H', 'refs/heads/main'])).stdout.trim().split('\n').filter(Boolean);
  const pushesBefore = (await reflog('one')).length;
  const t1 = performance.now();
  await create('one', 'all', { namespaceSelector: { labelSelector: { matchLabels: { bench: 'true' } } } });
  await waitAll('one', 1);
  const oneMs = performance.now() - t1;

  log(`${R} Replications of ${M} objects each, created at once`);
  const t2 = performance.now();
  await Promise.all(Array.from({ length: R }, (_, i) => create('many', `rep-${String(i).padStart(3, '0')}`, { sourceNamespace: benchNamespace(i) })));
  const { items } = await waitAll('many', R);
  const manyMs = performance.now() - t2;

  // Every Replication's status is right: its commit is on the branch, touching its folder only, with its objects.
  const gitDir = path.join(git.root, 'many.git');
  const commits = (await run('git', ['--git-dir', gitDir, 'log', '--format=%H', 'main'])).stdout.trim().split('\n');
  const wrong: string[] = [];
  for (const it of items) {
    const i = Number(it.metadata.name.slice(4));
    const s = it.status!;
    if (!commits.includes(s.lastCommit!)) wrong.push(`${it.metadata.name}: status commit ${s.lastCommit} is not on the branch`);
    const files = (await run('git', ['--git-dir', gitDir, 'ls-tree', '--name-only', `${s.lastCommit}:dr/${benchNamespace(i)}`])).stdout.trim().split('\n');
    if (files.length !== M + 2) wrong.push(`${it.metadata.name}: ${files.length - 2} objects in its folder at its commit, not ${M}`);
    const subject = (await run('git', ['--git-dir', gitDir, 'log', '-1', '--format=%s', s.lastCommit!])).stdout;
    if (!subject.includes(`many/${it.metadata.name}`)) wrong.push(`${it.metadata.name}: its commit's subject does not name it: ${subject.trim()}`);
  }
  const finalFiles = (await run('git', ['--git-dir', gitDir, 'ls-tree', '-r', '--name-only', 'main', 'dr/'])).stdout.trim().split('\n').length;
  const pushes = (await reflog('many')).length;
  const rows = [
    ['one Replication, all objects', `${(oneMs / 1000).toFixed(2)} s (${(await reflog('one')).length - pushesBefore} push)`],
    [`${R} Replications at once`, `${(manyMs / 1000).toFixed(2)} s = ${(manyMs / oneMs).toFixed(2)}x one (goal <= 1.5x)`],
    ['commits / pushes', `${commits.length} commits in ${pushes} pushes (workers ${values.workers}, client-side limit ${values.qps ?? 'default'}/s burst ${values.burst ?? 'default'})`],
    ['files on the branch', `${finalFiles} (expected ${R * (M + 2) + 1})`],
    ['statuses', wrong.length ? `WRONG: ${wrong.slice(0, 5).join('; ')}` : `all ${R} Synced, each commit on the branch with its ${M} objects`],
  ];
  console.log(rows.map(([k, v]) => `${k!.padEnd(32)} ${v}`).join('\n'));
  if (wrong.length || finalFiles !== R * (M + 2) + 1) process.exitCode = 1;
} finally {
  ctl?.kill('SIGTERM');
  await Promise.all([cluster.stop(), git.stop()]);
  await fs.promises.rm(tmp, { recursive: true, force: true });
}
