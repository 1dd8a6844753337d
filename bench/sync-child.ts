// Runs one sync (or one LIST pass) in its own process, so its peak RSS is its own; prints JSON.
// Used by bench/sync.bench.ts and bench/continuous.bench.ts (which passes its own namespace
// label and types); not meant to be run by hand.
import os from 'node:os';
import { GitRepo } from '../src/adapters/git/repo.ts';
import { KubeClient, ONE_SHOT_KUBE_API, resourcePath } from '../src/adapters/kube/client.ts';
import { resolveResourceTypes } from '../src/core/select.ts';
import { listOnly, resolveNamespaces, runSync } from '../src/sync/engine.ts';
import type { SyncSpec } from '../src/sync/engine.ts';
import { withKeptRenderCache } from '../src/sync/render-cache.ts';
import { busyShare, machineJiffies } from './machine.ts';

const [mode, kubeconfig, url, user, password, cacheDir, label = 'bench=true', types = 'configmaps,services,deployments'] = process.argv.slice(2) as [string, string, string, string, string, string, string?, string?];
const [labelKey, labelValue] = label.split('=') as [string, string];
const source = await KubeClient.fromFile(kubeconfig, undefined, ONE_SHOT_KUBE_API); // as `dr-syncer sync`
const spec: SyncSpec = {
  replication: 'bench/bench', sourceCluster: 'bench',
  namespaceSelector: { labelSelector: { matchLabels: { [labelKey]: labelValue } } },
  resourceTypes: types.split(','),
  plan: { scaleToZero: true, pvc: {}, secretsMode: 'Omit' },
  git: { path: 'clusters/dr', author: { name: 'bench', email: 'b@x' }, prune: true },
};
const machine0 = machineJiffies();
const t0 = performance.now();
const cpu0 = process.cpuUsage();
let extra: Record<string, unknown>;
if (mode === 'list') {
  // The baseline: the sync's own reader (the same discovery and LIST calls, as many at once),
  // and nothing else.
  extra = { objects: await listOnly(spec, { source }) };
} else if (mode === 'list-serial') {
  // The reader before issue 12: a namespace's types at once, one namespace after another.
  const types = resolveResourceTypes(spec.resourceTypes, [], await source.discover()).types;
  let n = 0;
  for (const ns of await resolveNamespaces(source, spec)) {
    const lists = await Promise.all(types.map((t) => source.list(resourcePath(t, ns.source))));
    n += lists.reduce((a, l) => a + l.items.length, 0);
  }
  extra = { objects: n };
} else {
  const repo = new GitRepo({ url, branch: 'main', auth: { username: user, password }, cacheDir });
  // As `dr-syncer sync` runs it: the render cache kept in the repository's cache folder.
  const r = await withKeptRenderCache(repo, spec, console, (renderCache) => runSync(spec, { source, repo, renderCache }));
  extra = { phases: r.phases, commit: r.commit ?? null, files: r.diff.added.length + r.diff.changed.length, objects: Object.values(r.counts).reduce((a, b) => a + b, 0), reused: r.reused, objectsRead: repo.objectsRead };
}
const ms = performance.now() - t0;
const cpu = process.cpuUsage(cpu0);
// Whole-machine use in the timed window only (not the process's start): how many of the cores
// the API server, the Git server and this process kept busy together.
const machineCores = os.cpus().length * busyShare(machine0, machineJiffies());
console.log(JSON.stringify({ mode, ms, cpuMs: (cpu.user + cpu.system) / 1000, requests: source.sent.requests, lists: source.sent.lists, maxRssMB: process.resourceUsage().maxRSS / 1024, cpus: os.cpus().length, machineCores, ...extra }));
process.exit(0);
