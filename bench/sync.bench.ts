// Benchmark: a full sync of 10,000 objects in 100 namespaces into a fresh repository, against
// a real API server and a real Git server, compared with merely LISTing the same objects from
// the same server in the same run. Also a no-op resync and the sync's peak RSS.
//
//   npx tsx bench/sync.bench.ts [--namespaces 100] [--per-namespace 100]
import { execFile, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs, promisify } from 'node:util';
import { KubeClient } from '../src/adapters/kube/client.ts';
import { startCluster } from '../test/env/cluster.ts';
import { startGitServer } from '../test/env/git-server.ts';
import { seedObjects } from './seed.ts';

const run = promisify(execFile);
const { values } = parseArgs({ options: { namespaces: { type: 'string', default: '100' }, 'per-namespace': { type: 'string', default: '100' }, profile: { type: 'string' }, help: { type: 'boolean', default: false } } });
if (values.help) {
  console.log('usage: npx tsx bench/sync.bench.ts [--namespaces N] [--per-namespace M] [--profile <dir>]\n\n--profile writes V8 CPU profiles of the sync processes into <dir>.');
  process.exit(0);
}
const N = Number(values.namespaces);
const M = Number(values['per-namespace']);
const here = path.dirname(new URL(import.meta.url).pathname);
const log = (s: string) => console.error(`[bench] ${s}`);

const root = path.resolve(here, '..');
const compiled = path.join(root, 'dist');
log('compiling (tsc -> dist/)');
await run(process.execPath, [path.join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', path.join(root, 'tsconfig.json')]);
const [cluster, git] = await Promise.all([startCluster({ controllerManager: false }), startGitServer()]);
try {
  const client = await KubeClient.fromFile(cluster.kubeconfigPath, undefined, { qps: 0 }); // loading test data: no client-side limit
  log(`creating ${N * M} objects in ${N} namespaces (70% ConfigMaps, 20% headless Services, 10% Deployments)`);
  await seedObjects(client, N, M, log);
  const url = await git.createRepo('bench');
  const cacheDir = await fs.promises.mkdtemp(path.join(os.tmpdir(), 'drs-bench-cache-'));
  let runs = 0;
  /** Busy and total CPU time of the whole machine so far (/proc/stat, in clock ticks). */
  const machineCpu = () => {
    const f = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
    const idle = f[3]! + (f[4] ?? 0);
    const total = f.reduce((a, b) => a + b, 0);
    return { busy: total - idle, total };
  };
  const child = async (mode: string) => {
    const before = machineCpu();
    const prof = values.profile ? ['--cpu-prof', `--cpu-prof-dir=${values.profile}`, `--cpu-prof-name=${String(++runs).padStart(2, '0')}-${mode}.cpuprofile`] : [];
    // The compiled JavaScript, as the container runs it: tsx's loader alone costs ~100 MB of RSS.
    const { stdout } = await run(process.execPath, [...prof, path.join(compiled, 'bench', 'sync-child.js'), mode, cluster.kubeconfigPath, url, git.user, git.password, cacheDir], { maxBuffer: 1 << 26 });
    const after = machineCpu();
    const out = JSON.parse(stdout.trim().split('\n').pop()!) as { ms: number; cpuMs: number; maxRssMB: number; objects: number; requests: number; lists: number; commit?: string | null; phases?: Record<string, number> };
    // Whole-machine use while the child ran (its start and exit included), in cores.
    return { ...out, machineCores: (os.cpus().length * (after.busy - before.busy)) / (after.total - before.total) };
  };
  await child('list'); // warm the API server's caches the same way for both
  const list = await child('list');
  log(`LIST baseline: ${list.objects} objects in ${list.ms.toFixed(0)} ms, ${list.lists} LIST requests`);
  const serial = await child('list-serial');
  log(`LIST one namespace at a time (the reader before issue 12): ${serial.ms.toFixed(0)} ms`);
  const full = await child('sync');
  log(`full sync: ${full.objects} objects in ${full.ms.toFixed(0)} ms, commit ${full.commit}, phases ${JSON.stringify(full.phases)}`);
  const noop = await child('sync');
  log(`no-op resync: ${noop.ms.toFixed(0)} ms, commit ${noop.commit}, phases ${JSON.stringify(noop.phases)}`);
  const list2 = await child('list');
  const baseline = (list.ms + list2.ms) / 2;
  // The floor of a full sync: nothing can be pushed before the last object is read (the commit
  // names every file), so it is at least the LIST plus a push of the same commit. Git's own
  // client pushing that commit, already made and packed, from a clone into a fresh repository on
  // the same server is the fastest such push there is; and a no-op must at least learn the
  // branch tip (one round trip, here in parallel with the LIST).
  const clone = await git.clone('bench');
  const timedGit = async (args: string[]) => {
    const t = performance.now();
    await run('git', args, { cwd: clone, maxBuffer: 1 << 26 });
    return performance.now() - t;
  };
  const pushes: number[] = [];
  for (const i of [1, 2, 3]) {
    await git.createRepo(`floor-${i}`);
    pushes.push(await timedGit(['push', '-q', `${git.base}/floor-${i}.git`, 'HEAD:refs/heads/main']));
  }
  const gitPush = Math.min(...pushes);
  // The floor of the work after the LIST, with the rendering free: git's own client given the
  // rendered files, storing them (hash, compress, pack: git fast-import, its fastest way in) and
  // pushing the commit into a fresh repository. Git is C; ours is that same work plus the
  // rendering, in JavaScript.
  const files = (await run('git', ['ls-files', '-z'], { cwd: clone, maxBuffer: 1 << 26 })).stdout.split('\0').filter(Boolean);
  const stream: Buffer[] = [];
  files.forEach((f, i) => {
    const data = fs.readFileSync(path.join(clone, f));
    stream.push(Buffer.from(`blob\nmark :${i + 1}\ndata ${data.length}\n`), data, Buffer.from('\n'));
  });
  stream.push(Buffer.from(`commit refs/heads/main\ncommitter bench <b@x> 1700000000 +0000\ndata 5\nfloor\n${files.map((f, i) => `M 100644 :${i + 1} ${f}\n`).join('')}\n`));
  const input = Buffer.concat(stream);
  const stores: number[] = [];
  for (const i of [1, 2, 3]) {
    const dir = await fs.promises.mkdtemp(path.join(os.tmpdir(), 'drs-bench-floor-'));
    await run('git', ['init', '-q', '--bare', dir]);
    await git.createRepo(`store-${i}`);
    const t = performance.now();
    await new Promise<void>((resolve, reject) => {
      const p = spawn('git', ['fast-import', '--quiet'], { cwd: dir, stdio: ['pipe', 'ignore', 'inherit'] });
      p.on('error', reject).on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`git fast-import exited ${code}`))));
      p.stdin.end(input);
    });
    await run('git', ['push', '-q', `${git.base}/store-${i}.git`, 'refs/heads/main:refs/heads/main'], { cwd: dir });
    stores.push(performance.now() - t);
    await fs.promises.rm(dir, { recursive: true, force: true });
  }
  const gitStore = Math.min(...stores);
  const lsRemote = Math.min(await timedGit(['ls-remote', `${git.base}/bench.git`, 'main']), await timedGit(['ls-remote', `${git.base}/bench.git`, 'main']));
  const rows = [
    ['objects', `${full.objects} in ${N} namespaces`],
    ['LIST baseline (mean of 2)', `${baseline.toFixed(0)} ms (${list.lists} LIST requests; one namespace at a time: ${serial.ms.toFixed(0)} ms)`],
    ['full sync, fresh repo', `${full.ms.toFixed(0)} ms = ${(full.ms / baseline).toFixed(2)}x LIST (goal <= 1.5x)`],
    ['floor: LIST + git push', `git's own push of the same commit into a fresh repository: ${gitPush.toFixed(0)} ms (best of 3; ours ${full.phases?.push ?? '?'} ms), so a full sync >= ${((baseline + gitPush) / baseline).toFixed(2)}x LIST`],
    ['floor: LIST + git write+push', `git's own client storing the ${files.length} rendered files (git fast-import) and pushing them into a fresh repository: ${gitStore.toFixed(0)} ms (best of 3; ours renders, stores and pushes in ${(full.ms - baseline).toFixed(0)} ms beyond the LIST), so a sync doing that work after its LIST >= ${((baseline + gitStore) / baseline).toFixed(2)}x LIST`],
    ['no-op resync', `${noop.ms.toFixed(0)} ms = ${(noop.ms / baseline).toFixed(2)}x LIST, commit: ${noop.commit ?? 'none'} (goal <= 1.1x, no commit)`],
    ['Git round trip', `git ls-remote of the branch: ${lsRemote.toFixed(0)} ms (best of 2; the no-op makes it alongside the LIST)`],
    ['API requests, no-op resync', `${noop.requests} (${noop.lists} LIST pages for ${N} namespaces x 3 types + the namespaces; the rest discovery)`],
    ['CPU (the process; the machine)', [['LIST', list], ['full sync', full], ['no-op', noop]].map(([k, r]) => `${k as string} ${(r as typeof full).cpuMs.toFixed(0)} ms; ${(r as typeof full).machineCores.toFixed(2)} of ${os.cpus().length} cores busy`).join(', ')],
    ['peak RSS', `full sync ${full.maxRssMB.toFixed(0)} MB, no-op ${noop.maxRssMB.toFixed(0)} MB, LIST-only process ${list.maxRssMB.toFixed(0)} MB (goal <= 1 GB)`],
  ];
  console.log(rows.map(([k, v]) => `${k!.padEnd(28)} ${v}`).join('\n'));
  await fs.promises.rm(cacheDir, { recursive: true, force: true });
} finally {
  await Promise.all([cluster.stop(), git.stop()]);
}
