// Benchmark of the Git adapter alone (no API server): a full write of N×M files into a fresh
// repository on a real git http-backend, then a no-op pass and a one-file change, each in its
// own process with a warm cache directory, as the controller's syncs would be.
//
//   npx tsx bench/git.bench.ts [--namespaces 100] [--per-namespace 100] [--commits 1000]
//
// --commits K then makes K more commits of the same size (one file changed in one folder), as
// a controller does with its warm cache (one GitRepo, one process), and compares the last ones
// with the first ones; a one-shot process (as `dr-syncer sync`) is timed before and after too.
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs, promisify } from 'node:util';
import { blobOid, GitRepo } from '../src/adapters/git/repo.ts';
import { startGitServer } from '../test/env/git-server.ts';

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: { namespaces: { type: 'string', default: '100' }, 'per-namespace': { type: 'string', default: '100' }, commits: { type: 'string', default: '0' } },
});
const N = Number(values.namespaces);
const M = Number(values['per-namespace']);
const self = fileURLToPath(import.meta.url);

function folders(tag: string): Map<string, Map<string, string> | null> {
  const out: Map<string, Map<string, string> | null> = new Map();
  for (let i = 0; i < N; i++) {
    const ns = `bench-${String(i).padStart(3, '0')}`;
    const files = new Map<string, string>();
    files.set('namespace.yaml', `apiVersion: v1\nkind: Namespace\nmetadata:\n  name: ${ns}\n  annotations:\n    dr-syncer.io/replication: bench/bench\n`);
    for (let j = 0; j < M; j++) {
      const kind = j % 10 < 7 ? 'configmap' : j % 10 < 9 ? 'service' : 'deployment.apps';
      const extra = tag && i === 0 && j === 0 ? tag : '';
      files.set(`${kind}-obj-${j}.yaml`, `apiVersion: v1\nkind: ${kind}\nmetadata:\n  name: obj-${j}\n  namespace: ${ns}\n  labels:\n    app: obj-${j}\ndata:\n  config.yaml: |\n    key: ${j}${extra}\n    value: ${'x'.repeat(200)}\n  other: "${j}"\n`);
    }
    files.set('kustomization.yaml', `resources:\n${[...files.keys()].sort().map((f) => `- ${f}\n`).join('')}`);
    out.set(`clusters/dr/${ns}`, files);
  }
  return out;
}

async function child(url: string, user: string, password: string, cacheDir: string, tag: string): Promise<void> {
  const repo = new GitRepo({ url, branch: 'main', auth: { username: user, password }, cacheDir });
  const phases: Record<string, number> = {};
  let mark = performance.now();
  const lap = (k: string) => {
    const t = performance.now();
    phases[k] = Math.round(t - mark);
    mark = t;
  };
  const t0 = mark;
  const changes = folders(tag);
  lap('render');
  const snap = await repo.fetch();
  lap('fetch');
  // What the engine reads: every folder, its namespace file, the deployments.
  for (const e of (await repo.readDir(snap.tree, 'clusters/dr')) ?? []) {
    if (e.type !== 'tree') continue;
    for (const f of (await repo.readDir(snap.tree, `clusters/dr/${e.path}`)) ?? []) {
      if (f.path === 'namespace.yaml' || f.path.startsWith('deployment.apps-')) await repo.readBlob(f.oid);
    }
  }
  lap('read');
  const tree = await repo.buildTree(snap.tree, 'clusters/dr', changes, async (entries) => new Map([['kustomization.yaml', entries.filter((e) => e.type === 'tree').map((e) => e.path).sort().join('\n')]]));
  for (const files of changes.values()) for (const c of files?.values() ?? []) blobOid(c);
  lap('write');
  let commit: string | undefined;
  if (tree !== snap.tree) {
    commit = await repo.commit(tree, snap.commit, 'bench', { name: 'b', email: 'b@x' }, new Date());
    await repo.push(commit, snap.commit);
  }
  lap('push');
  console.log(JSON.stringify({ ms: Math.round(performance.now() - t0), phases, commit: commit ?? null, maxRssMB: Math.round(process.resourceUsage().maxRSS / 1024) }));
}

/** K commits of one changed file each, in one process with a warm cache; times each from fetch to push. */
async function manyCommits(url: string, user: string, password: string, cacheDir: string, k: number, step: (name: string, tag: string) => Promise<void>): Promise<void> {
  await step('one-shot', ' before');
  const repo = new GitRepo({ url, branch: 'main', auth: { username: user, password }, cacheDir });
  const base = folders('');
  const folder = 'clusters/dr/bench-000';
  const files = base.get(folder)!;
  const ms: number[] = [];
  for (let i = 1; i <= k; i++) {
    const t0 = performance.now();
    const snap = await repo.fetch();
    const changed = new Map(files);
    changed.set('configmap-obj-0.yaml', `${files.get('configmap-obj-0.yaml')}# commit ${i}\n`);
    const tree = await repo.buildTree(snap.tree, 'clusters/dr', new Map([[folder, changed]]), async (entries) => new Map([['kustomization.yaml', entries.filter((e) => e.type === 'tree').map((e) => e.path).sort().join('\n')]]));
    const commit = await repo.commit(tree, snap.commit, `commit ${i}`, { name: 'b', email: 'b@x' }, new Date());
    await repo.push(commit, snap.commit);
    ms.push(performance.now() - t0);
    if (i % 100 === 0) console.error(`[bench] ${i} commits`);
  }
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  const first = median(ms.slice(0, 20));
  const last = median(ms.slice(-20));
  console.log(`commit #1: ${ms[0]!.toFixed(1)} ms, #${k}: ${ms[k - 1]!.toFixed(1)} ms; median of the first 20 ${first.toFixed(1)} ms, of the last 20 ${last.toFixed(1)} ms = ${(last / first).toFixed(2)}x (goal <= 1.5x)`);
  await step('one-shot', ' after');
}

if (positionals[0] === 'child') {
  const [, url, user, password, cacheDir, tag] = positionals as [string, string, string, string, string, string];
  await child(url, user, password, cacheDir, tag);
  process.exit(0);
} else {
  const run = promisify(execFile);
  const git = await startGitServer();
  const cacheDir = await fs.promises.mkdtemp(path.join(os.tmpdir(), 'drs-gitbench-'));
  try {
    const url = await git.createRepo('bench');
    const step = async (name: string, tag: string) => {
      const { stdout } = await run(process.execPath, ['--import', 'tsx', self, 'child', url, git.user, git.password, cacheDir, tag, '--namespaces', String(N), '--per-namespace', String(M)], { maxBuffer: 1 << 26 });
      console.log(`${name.padEnd(10)} ${stdout.trim().split('\n').pop()}`);
    };
    console.log(`${N * M} files in ${N} folders`);
    await step('full', '');
    await step('no-op', '');
    await step('one-file', ' changed');
    await step('no-op', ' changed');
    const K = Number(values.commits);
    if (K > 0) await manyCommits(url, git.user, git.password, cacheDir, K, step);
  } finally {
    await git.stop();
    await fs.promises.rm(cacheDir, { recursive: true, force: true });
  }
}
