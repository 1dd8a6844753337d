// The demo (`bash scripts/demo/run`): the install path and the DR loop, end to end, with real
// parts on loopback. Source and DR clusters (kube-apiserver, etcd, kube-controller-manager, one
// real node each: kubelet + containerd), a Git server, Flux's controllers in the DR cluster. The
// Helm chart is rendered and applied to the source cluster; the compiled CLI runs the controller
// with the chart's own arguments and exactly its RBAC (a kubeconfig that impersonates the chart's
// ServiceAccount); a Continuous Replication writes the DR repository; `dr-syncer bootstrap flux`
// makes the DR cluster's Flux apply it; the data of a StatefulSet's volumes is copied through the
// PVC agent; a live change goes the whole way; `dr-syncer status` reads what DR runs. A summary at
// the end, then everything is stopped (--keep leaves it running).
import { execFile } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { parse, parseAllDocuments, stringify } from 'yaml';
import type { TestCluster } from '../../test/env/cluster.ts';
import { kubectl, startClusters } from '../../test/env/cluster.ts';
import type { Flux } from '../../test/env/flux.ts';
import { exited, killAndWait, logTail, spawnOwned, startFlux } from '../../test/env/flux.ts';
import { startGitServer } from '../../test/env/git-server.ts';
import { helmPath } from '../../test/env/helm.ts';
import { buildImage } from '../../test/env/images.ts';

const HELP = `usage: bash scripts/demo/run [--keep]

The install path and the DR loop, on this machine (loopback only):
  1. builds the CLI (npm run build) and the PVC agent image; starts a source and a DR cluster
     (one real node each), a Git server, and Flux's controllers in the DR cluster
  2. renders the Helm chart (helm template --include-crds) and applies it to the source cluster
  3. deploys the demo application (scripts/demo/shop.yaml) in the source cluster
  4. runs the controller (node dist/src/cli/main.js controller) with the chart Deployment's
     arguments, as the chart's ServiceAccount (its RBAC, nothing more); applies the RemoteCluster
     and the Continuous Replication of scripts/demo/dr-syncer.yaml; the first commit
  5. dr-syncer bootstrap flux dr --apply: Flux in the DR cluster applies the DR repository
  6. PVC data: the StatefulSet's volumes copied through the agent, per-PVC figures, the files in DR
  7. a live change (web scaled to 5) from the source cluster to the DR cluster through Git and Flux
  8. dr-syncer status: the recovery point, read from the DR cluster's Flux
then a summary, and stops everything.

  --keep   leave the clusters, Git server, Flux and the controller running (Ctrl-C stops them)`;

const run = promisify(execFile);
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const demoDir = path.join(root, 'scripts/demo');
const cliMain = path.join(root, 'dist/src/cli/main.js');
const NS = 'dr-syncer';
const SA = `system:serviceaccount:${NS}:dr-syncer`;
const TOTAL = 8;

if (process.argv.includes('--help') || process.argv.includes('-h')) {
  console.log(HELP);
  process.exit(0);
}
const unknown = process.argv.slice(2).filter((a) => a !== '--keep');
if (unknown.length) {
  console.error(`unknown option ${unknown.join(' ')}\n\n${HELP}`);
  process.exit(2);
}
const keep = process.argv.includes('--keep');

// ---------------------------------------------------------------------------------------------
// Progress: a numbered line before each step, with the time since the start; a line when each
// part of a parallel step is done; a line every 20 s while something is still being waited for.

const t0 = Date.now();
const secs = (ms: number) => `${(ms / 1000).toFixed(1)} s`;
const since = (t: number) => secs(Date.now() - t);
const bold = (s: string) => (process.stdout.isTTY ? `\x1b[1m${s}\x1b[0m` : s);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
interface Step { n: number; title: string; start: number; ms?: number }
const steps: Step[] = [];

function step(title: string): void {
  const last = steps.at(-1);
  if (last && last.ms === undefined) last.ms = Date.now() - last.start;
  const s: Step = { n: steps.length + 1, title, start: Date.now() };
  steps.push(s);
  console.log(`\n${bold(`[${s.n}/${TOTAL}] ${title}`)}   (t+${since(t0)})`);
}

const pending = new Map<string, number>();
const heartbeat = setInterval(() => {
  if (pending.size) console.log(`      ... still working on: ${[...pending.keys()].join('; ')}   (t+${since(t0)})`);
}, 20_000);
heartbeat.unref();

/** Runs `p` as one part of a step: reported when done, listed by the heartbeat until then. */
function part<T>(label: string, p: Promise<T>): Promise<T> {
  const start = Date.now();
  pending.set(label, start);
  return p.then(
    (v) => {
      pending.delete(label);
      console.log(`  done: ${label} (${since(start)})`);
      return v;
    },
    (err: unknown) => {
      pending.delete(label);
      throw err;
    },
  );
}

/** Every promise settled (so nothing is left starting behind a failure), then the values or the first error. */
async function all<T extends readonly unknown[] | []>(ps: T): Promise<{ -readonly [K in keyof T]: Awaited<T[K]> }> {
  const results = await Promise.allSettled(ps);
  const settled = results as readonly PromiseSettledResult<unknown>[];
  for (const r of settled) if (r.status === 'rejected') throw r.reason;
  return settled.map((r) => (r as PromiseFulfilledResult<unknown>).value) as { -readonly [K in keyof T]: Awaited<T[K]> };
}

/** An error that ends an until() at once. */
class Fatal extends Error {}

/** Polls fn until it returns a value; says every 20 s what it is waiting for and what it last saw. */
async function until<T>(what: string, fn: () => Promise<T | undefined>, timeoutMs: number, seen?: () => string): Promise<T> {
  const start = Date.now();
  let lastSaid = start;
  let lastErr: unknown;
  while (Date.now() - start < timeoutMs) {
    try {
      const v = await fn();
      if (v !== undefined) return v;
    } catch (err) {
      if (err instanceof Fatal) throw err;
      lastErr = err;
    }
    if (Date.now() - lastSaid >= 20_000) {
      lastSaid = Date.now();
      console.log(`      ... waiting for ${what} (${since(start)})${seen ? `: ${seen()}` : ''}`);
    }
    await sleep(1000);
  }
  throw new Error(`timed out after ${secs(timeoutMs)} waiting for ${what}${seen ? `: ${seen()}` : ''}${lastErr ? ` (${String(lastErr)})` : ''}`);
}

// ---------------------------------------------------------------------------------------------

interface K8sObject { apiVersion: string; kind: string; metadata: { name: string; namespace?: string; annotations?: Record<string, string> }; [k: string]: unknown }
interface Condition { type: string; status: string; reason?: string; message?: string }
interface PvcRow { namespace: string; name: string; phase?: string; bytesTransferred?: number; filesTransferred?: number; lastSyncDuration?: string; lastExitCode?: number; message?: string }
interface RepStatus {
  phase?: string; lastCommit?: string; lastError?: string; conditions?: Condition[]; pvcs?: PvcRow[];
  dataSync?: { phase?: string; message?: string; lastStartTime?: string; lastCompletionTime?: string };
}
interface Kustomization { metadata: { name: string }; status?: { lastAppliedRevision?: string; conditions?: Condition[] } }

const cleanups: (() => Promise<unknown>)[] = [];
const work = fs.mkdtempSync(path.join(os.tmpdir(), 'dr-syncer-demo-'));
const logs = { controller: path.join(work, 'controller.log') };
let flux: Flux | undefined;
let controller: ChildProcess | undefined;
/** After a failure: what the clusters show (set once they run). */
let diagnose: (() => Promise<void>) | undefined;
const facts: Record<string, string> = {};

try {
  await main();
} catch (err) {
  console.error(`\n${bold('the demo failed:')} ${err instanceof Error ? err.stack ?? err.message : String(err)}`);
  if (fs.existsSync(logs.controller)) console.error(`\n--- controller log (tail), ${logs.controller}\n${await logTail(logs.controller, 25)}`);
  if (flux) console.error(`\n--- kustomize-controller log (tail)\n${await logTail(flux.logs.kustomizeController, 10)}`);
  if (diagnose) await diagnose().catch(() => undefined);
  process.exitCode = 1;
} finally {
  clearInterval(heartbeat);
  const stopping = Date.now();
  console.log('\nstopping the controller, Flux, the clusters and the Git server (by PID) ...');
  for (const c of cleanups.reverse()) await c().catch((e: unknown) => console.error(`while stopping: ${String(e)}`));
  fs.rmSync(work, { recursive: true, force: true });
  console.log(`stopped (${since(stopping)}); the demo took ${since(t0)} in all`);
}

async function main(): Promise<void> {
  // 1 ------------------------------------------------------------------------------------------
  step('Build the CLI and the agent image; start two clusters (real nodes), Git and Flux');
  const [, image, [src, dr], git] = await all([
    part('CLI compiled (npm run build -> dist/)', buildCli()),
    part('PVC agent image built (agent/Dockerfile)', buildImage('agent', 'agent/Dockerfile')),
    part('source and DR clusters started (kube-apiserver, etcd, kube-controller-manager, kubelet, containerd)', startClusters(2, { nodes: 1, pvsPerNode: 3 }).then((cs) => {
      cleanups.push(() => Promise.all(cs.map((c) => c.stop())));
      return cs as [TestCluster, TestCluster];
    })),
    part('Git server started', startGitServer().then((g) => {
      cleanups.push(() => g.stop());
      return g;
    })),
  ]);
  [flux] = await all([
    part('Flux (source-controller, kustomize-controller) started in the DR cluster', startFlux(dr).then((f) => {
      cleanups.push(async () => {
        // The controller first: it talks to both clusters.
        if (controller) await killAndWait([controller]);
        await f.stop();
      });
      return f;
    })),
    part('agent image loaded into both nodes\' containerd', Promise.all([src.loadImage(image), dr.loadImage(image)])),
  ]);
  const repoUrl = await git.createRepo('dr-cluster');
  const sk = src.kubeconfigPath;
  const dk = dr.kubeconfigPath;
  diagnose = async () => {
    for (const [name, kc] of [['source', sk], ['DR', dk]] as const) {
      const r = await kubectl(kc, ['get', 'pods,pvc,jobs', '-A', '-o', 'wide'], { check: false });
      const ev = await kubectl(kc, ['get', 'events', '-A', '--field-selector', 'type=Warning'], { check: false });
      console.error(`\n--- ${name} cluster: pods, PVCs, Jobs\n${r.stdout}${r.stderr}\n--- ${name} cluster: Warning events (tail)\n${ev.stdout.trimEnd().split('\n').slice(-15).join('\n')}`);
    }
  };
  console.log(`source cluster  ${src.server}  (node ${src.nodes[0]!.name})`);
  console.log(`DR cluster      ${dr.server}  (node ${dr.nodes[0]!.name})`);
  console.log(`Git repository  ${repoUrl}`);

  // 2 ------------------------------------------------------------------------------------------
  step('Install: the Helm chart rendered and applied to the source cluster');
  const helmVersion = (await run(helmPath(), ['version', '--short'])).stdout.trim();
  const podEnvArgs = src.podApiEnv.map((e) => `--agent-pod-env=${e.name}=${e.value}`);
  const values: [string, string][] = [
    // The demo's node cannot pull ghcr.io/dr-syncer/dr-syncer (no registry): the controller runs
    // from dist/ below, with this Deployment's arguments and ServiceAccount.
    ['--set', 'replicaCount=0'],
    ['--set', 'controller.clusterName=prod'],
    ['--set', 'pvcSync.enabled=true'],
    ['--set-string', `agent.image=${image.ref}`],
    ['--set', 'agent.imagePullPolicy=Never'],
    // No kube-proxy on the demo's nodes: the agent pods get the API server's loopback address.
    ['--set-json', `controller.extraArgs=${JSON.stringify(podEnvArgs)}`],
  ];
  const helmArgs = ['template', 'dr-syncer', 'charts/dr-syncer', '--namespace', NS, '--include-crds', ...values.flat()];
  console.log(`$ helm template dr-syncer charts/dr-syncer --namespace ${NS} --include-crds \\\n    ${values.map(([f, v]) => `${f} ${f === '--set-json' ? `'${v}'` : v}`).join(' \\\n    ')} \\\n  | kubectl apply --server-side -f -     (${helmVersion})`);
  const rendered = (await run(helmPath(), helmArgs, { cwd: root, maxBuffer: 64 << 20 })).stdout;
  fs.writeFileSync(path.join(work, 'chart.yaml'), rendered);
  const objs = parseAllDocuments(rendered).map((d) => d.toJS() as K8sObject | null).filter((o): o is K8sObject => o !== null);
  await kubectl(sk, ['create', 'namespace', NS]);
  await kubectl(sk, ['apply', '--server-side', '--field-manager=helm', '-f', '-'], { input: rendered });
  await kubectl(sk, ['wait', '--for=condition=Established', 'crd/replications.dr-syncer.io', 'crd/remoteclusters.dr-syncer.io']);
  console.log(`applied ${objs.length} objects:`);
  for (const o of objs) console.log(`  ${o.kind.padEnd(25)} ${o.metadata.namespace ? `${o.metadata.namespace}/` : ''}${o.metadata.name}`);
  const deployment = objs.find((o) => o.kind === 'Deployment')!;
  console.log(`Deployment ${NS}/${deployment.metadata.name} at 0 replicas: the demo's node has no registry to pull ${(deployment.spec as { template: { spec: { containers: { image: string }[] } } }).template.spec.containers[0]!.image}`);
  console.log('from; the controller runs in step 4 from dist/, with this Deployment\'s arguments, as its ServiceAccount.');
  const container = (deployment.spec as { template: { spec: { containers: { args: string[] }[] } } }).template.spec.containers[0]!;
  const pvcSyncFile = path.join(work, 'pvc-sync.yaml');
  const cm = objs.find((o) => o.kind === 'ConfigMap' && o.metadata.name === 'dr-syncer-pvc-sync') as { data: Record<string, string> } | undefined;
  if (!cm) throw new Error('the chart rendered no pvc-sync ConfigMap with pvcSync.enabled=true');
  fs.writeFileSync(pvcSyncFile, cm.data['pvc-sync.yaml']!);
  console.log(`the controller's PVC-sync settings (ConfigMap dr-syncer-pvc-sync, --local-pvc-sync): ${JSON.stringify(parse(cm.data['pvc-sync.yaml']!))}`);
  facts.chart = `dr-syncer ${(parse(fs.readFileSync(path.join(root, 'charts/dr-syncer/Chart.yaml'), 'utf8')) as { version: string }).version}, rendered by helm ${helmVersion}: ${objs.length} objects applied server-side`;

  // 3 ------------------------------------------------------------------------------------------
  step('The application in the source cluster (scripts/demo/shop.yaml)');
  await kubectl(sk, ['apply', '-f', '-'], { input: fs.readFileSync(path.join(demoDir, 'shop.yaml'), 'utf8').replaceAll('AGENT_IMAGE', image.ref) });
  await kubectl(sk, ['-n', 'shop', 'rollout', 'status', 'statefulset/notes', '--timeout=180s']);
  console.log((await kubectl(sk, ['get', 'deploy,sts,svc,cm,secret,pvc,cronjob', '-n', 'shop'])).stdout);
  console.log('notes writes notes.txt into its claim data-notes-0 and 2 MiB of photo.bin into the PVC uploads; the other images');
  console.log('are not pulled here (no registry): only their manifests matter for DR.');

  // 4 ------------------------------------------------------------------------------------------
  step('The controller with exactly the chart\'s RBAC; the RemoteCluster and the Replication');
  await kubectl(sk, ['-n', NS, 'create', 'secret', 'generic', 'dr-cluster-kubeconfig', `--from-file=kubeconfig=${dr.kubeconfigPath}`]);
  await kubectl(sk, ['-n', NS, 'create', 'secret', 'generic', 'dr-repo-credentials', `--from-literal=username=${git.user}`, `--from-literal=password=${git.password}`]);
  console.log(`$ kubectl auth can-i --as ${SA} ...`);
  for (const a of [['list', 'persistentvolumeclaims', '-A'], ['create', 'jobs.batch', '-n', 'shop'], ['get', 'secrets', '-n', 'shop'], ['delete', 'deployments.apps', '-n', 'shop'], ['patch', 'daemonsets.apps/dr-syncer-agent', '-n', 'dr-syncer-agent']]) {
    console.log(`  ${a.join(' ').padEnd(62)} ${(await kubectl(sk, ['auth', 'can-i', '--as', SA, ...a], { check: false })).stdout.trim()}`);
  }
  const asSa = impersonatingKubeconfig(src, SA, path.join(work, 'kubeconfig-as-serviceaccount'));
  const args = container.args.map((a) =>
    a.startsWith('--metrics-bind-address=') ? '--metrics-bind-address=127.0.0.1:0'
      : a.startsWith('--health-probe-bind-address=') ? '--health-probe-bind-address=127.0.0.1:0'
        : a.startsWith('--cache-dir=') ? `--cache-dir=${path.join(work, 'cache')}`
          : a.startsWith('--local-pvc-sync=') ? `--local-pvc-sync=${pvcSyncFile}` : a);
  console.log(`$ node dist/src/cli/main.js ${args.join(' ')} \\\n    --kubeconfig=<the admin kubeconfig with user.as: ${SA}>`);
  console.log('  (the chart Deployment\'s arguments; the bind addresses, cache folder and --local-pvc-sync file are local)');
  controller = await spawnOwned(process.execPath, [cliMain, ...args, `--kubeconfig=${asSa}`], {
    cwd: root, log: logs.controller,
    env: { ...process.env, POD_NAMESPACE: NS, POD_NAME: 'dr-syncer-demo', LOG_FORMAT: 'json', LOG_LEVEL: 'info' },
  });
  const started = await until('the controller to start', async () => {
    if (exited(controller!)) throw new Fatal(`the controller exited (${controller!.exitCode ?? controller!.signalCode}):\n${await logTail(logs.controller)}`);
    const line = fs.readFileSync(logs.controller, 'utf8').split('\n').find((l) => l.includes('dr-syncer controller started'));
    return line ? (JSON.parse(line) as { metricsPort: number; probePort: number }) : undefined;
  }, 120_000);
  await until('/readyz', async () => ((await fetch(`http://127.0.0.1:${started.probePort}/readyz`)).status === 200 ? true : undefined), 60_000);
  const holder = await until('the leader Lease', async () => {
    const l = await json<{ spec: { holderIdentity?: string } }>(sk, ['-n', NS, 'get', 'lease', 'dr-syncer.io']);
    return l.spec.holderIdentity?.startsWith('dr-syncer-demo') ? l.spec.holderIdentity : undefined;
  }, 60_000);
  console.log(`controller pid ${controller.pid}: ready (/readyz 200 on 127.0.0.1:${started.probePort}), leader (Lease ${NS}/dr-syncer.io held by ${holder})`);
  facts.controller = `pid ${controller.pid}, node dist/src/cli/main.js controller, as ${SA}`;

  console.log('\n$ kubectl apply -f scripts/demo/dr-syncer.yaml    (RemoteCluster dr, Replication shop: Continuous, pvc.syncData)');
  await kubectl(sk, ['apply', '-f', '-'], { input: fs.readFileSync(path.join(demoDir, 'dr-syncer.yaml'), 'utf8').replaceAll('GIT_URL', repoUrl) });
  let rep: RepStatus = {};
  const repStatus = async () => (rep = (await json<{ status?: RepStatus }>(sk, ['-n', NS, 'get', 'replication', 'shop'])).status ?? {});
  const seenRep = () => `phase ${rep.phase ?? '-'}${rep.lastError ? `, ${rep.lastError}` : ''}`;
  const first = await until('the first sync of Replication shop', async () => {
    const s = await repStatus();
    return s.phase === 'Synced' && s.lastCommit ? s.lastCommit : undefined;
  }, 120_000, seenRep);
  facts.firstCommit = first;
  console.log((await kubectl(sk, ['get', 'remoteclusters,replications', '-n', NS])).stdout);
  const clone = await git.clone('dr-cluster');
  cleanups.push(() => fs.promises.rm(clone, { recursive: true, force: true }));
  console.log((await git.git(['log', '-1', '--stat=100', '--format=commit %H%n%s'], clone)).replace(/\n\n+/g, '\n').trimEnd());

  // 5 ------------------------------------------------------------------------------------------
  step('GitOps: dr-syncer bootstrap flux, and Flux in the DR cluster applies the repository');
  const t5 = Date.now();
  const boot = await cli(['bootstrap', 'flux', 'dr', '-n', NS, '--apply', '--with-credentials', '--interval', '10s', '--kubeconfig', sk]);
  console.log(`$ dr-syncer bootstrap flux dr -n ${NS} --apply --with-credentials --interval 10s\n${boot.stdout.trimEnd()}${boot.stderr.trim() ? `\n${boot.stderr.trimEnd()}` : ''}`);
  let ks: Kustomization | undefined;
  const kustomization = async () => (ks = (await json<{ items: Kustomization[] }>(dk, ['-n', 'flux-system', 'get', 'kustomizations.kustomize.toolkit.fluxcd.io', '-l', 'app.kubernetes.io/managed-by=dr-syncer'])).items[0]);
  const seenKs = () => {
    const r = ks?.status?.conditions?.find((c) => c.type === 'Ready');
    return `Kustomization ${ks?.metadata.name ?? '(none yet)'} Ready=${r?.status ?? '-'} ${r?.message ?? ''}`.trim();
  };
  const appliedNow = async () => {
    const k = await kustomization();
    const s = await repStatus();
    const ready = k?.status?.conditions?.find((c) => c.type === 'Ready')?.status === 'True';
    return ready && s.lastCommit && k?.status?.lastAppliedRevision?.endsWith(s.lastCommit) ? { revision: k.status.lastAppliedRevision, commit: s.lastCommit } : undefined;
  };
  const applied = await until('Flux to apply the Replication\'s last commit', appliedNow, 180_000, seenKs);
  console.log(`\nFlux applied ${applied.revision} ${since(t5)} after the bootstrap:`);
  console.log((await kubectl(dk, ['-n', 'flux-system', 'get', 'gitrepositories.source.toolkit.fluxcd.io,kustomizations.kustomize.toolkit.fluxcd.io'])).stdout);
  console.log('$ kubectl get deploy,sts,svc,cm,pvc,cronjob -n shop      (DR cluster)');
  console.log((await kubectl(dk, ['get', 'deploy,sts,svc,cm,pvc,cronjob', '-n', 'shop'])).stdout);
  console.log('Deployments and StatefulSets wait at 0 replicas (the source count in dr-syncer.io/original-replicas), the CronJob is');
  console.log('suspended, the Secret stayed out of Git (secrets.mode Omit), and the PVCs came through Flux: the data sync copies into them.');

  // 6 ------------------------------------------------------------------------------------------
  step('PVC data: the StatefulSet\'s volumes copied through the agent on the source node');
  console.log('The controller started the data sync when the Replication appeared: the agent DaemonSet in dr-syncer-agent (the chart\'s');
  console.log('pvcSync), then per PVC an endpoint Job next to it and an rsync Job in the DR cluster; until Flux had created the DR PVCs');
  console.log('the run waited (Pending) and was retried.');
  const synced = await until('the PVC data sync', async () => {
    const s = await repStatus();
    return s.dataSync?.phase === 'Synced' ? s : undefined;
  }, 300_000, () => `${rep.dataSync?.phase ?? '-'}: ${rep.dataSync?.message ?? ''}${(rep.pvcs ?? []).filter((p) => p.phase !== 'Synced').map((p) => `; ${p.name} ${p.phase}: ${p.message ?? ''}`).join('')}`);
  const ds = synced.dataSync!;
  console.log(`data sync ${ds.phase}: ${ds.message ?? ''} (run ${ds.lastStartTime} -> ${ds.lastCompletionTime})`);
  const table = pvcTable(synced.pvcs ?? []);
  console.log(table);
  facts.pvcs = table;
  const files: string[] = [];
  for (const p of synced.pvcs ?? []) {
    const [from, to] = await Promise.all([volumeDir(src, 'shop', p.name), volumeDir(dr, 'shop', p.name)]);
    for (const f of fs.readdirSync(to).sort()) {
      const got = fs.readFileSync(path.join(to, f));
      const same = fs.existsSync(path.join(from, f)) && sha256(fs.readFileSync(path.join(from, f))) === sha256(got);
      files.push(f.endsWith('.txt')
        ? `DR ${p.name}/${f}: ${JSON.stringify(got.toString('utf8').trim())}${same ? ' (identical to the source)' : ' (DIFFERS from the source)'}`
        : `DR ${p.name}/${f}: ${got.length} bytes, sha256 ${sha256(got).slice(0, 16)}…${same ? ' (identical to the source)' : ' (DIFFERS from the source)'}`);
    }
  }
  console.log(files.join('\n'));
  facts.files = files.join('\n');
  const metrics = await (await fetch(`http://127.0.0.1:${started.metricsPort}/metrics`)).text();
  const gauge = (name: string) => new RegExp(`^${name}\\{source="prod"\\} (\\S+)`, 'm').exec(metrics)?.[1] ?? '?';
  const agentDs = await json<{ status: { numberReady?: number; desiredNumberScheduled?: number } }>(sk, ['-n', 'dr-syncer-agent', 'get', 'daemonset', 'dr-syncer-agent']);
  console.log(`agents: DaemonSet dr-syncer-agent/dr-syncer-agent ${agentDs.status.numberReady ?? 0}/${agentDs.status.desiredNumberScheduled ?? 0} ready; metrics dr_syncer_agents_ready{source="prod"} ${gauge('dr_syncer_agents_ready')}, dr_syncer_agents_desired ${gauge('dr_syncer_agents_desired')}`);
  const leftover = (await kubectl(dk, ['get', 'jobs', '-A', '-l', 'dr-syncer.io/operation', '--no-headers'], { check: false })).stdout.trim();
  console.log(`transfer Jobs left in the DR cluster: ${leftover ? leftover : 'none'}`);

  // 7 ------------------------------------------------------------------------------------------
  step('A live change: web scaled to 5 in the source, through Git and Flux into DR');
  const before = (await repStatus()).lastCommit;
  await kubectl(sk, ['-n', 'shop', 'scale', 'deployment', 'web', '--replicas=5']);
  const t7 = Date.now();
  const second = await until('the commit of the change', async () => {
    const s = await repStatus();
    return s.lastCommit && s.lastCommit !== before ? s.lastCommit : undefined;
  }, 60_000, seenRep);
  const committedAfter = since(t7);
  const live = await until('Flux to apply it', async () => {
    const a = await appliedNow();
    if (!a) return undefined;
    const dep = await json<{ spec: { replicas: number }; metadata: { annotations?: Record<string, string> } }>(dk, ['-n', 'shop', 'get', 'deployment', 'web']);
    return dep.metadata.annotations?.['dr-syncer.io/original-replicas'] === '5' ? { ...a, replicas: dep.spec.replicas } : undefined;
  }, 120_000, seenKs);
  console.log(`committed ${second.slice(0, 12)} ${committedAfter} after the scale; Flux applied ${live.revision} ${since(t7)} after the scale`);
  console.log(`DR deployment web: replicas ${live.replicas}, dr-syncer.io/original-replicas=5`);
  facts.liveChange = `web scaled to 5: committed ${live.commit.slice(0, 12)} (first commit after ${committedAfter}), applied by Flux in DR after ${since(t7)}`;
  facts.applied = `${live.revision} (Kustomization flux-system/${ks?.metadata.name ?? '?'}: Ready)`;

  // 8 ------------------------------------------------------------------------------------------
  step('dr-syncer status: what the DR cluster runs, and how old it is');
  const status = await cli(['status', '-n', NS, '--kubeconfig', sk], false);
  console.log(`$ dr-syncer status -n ${NS}\n${status.stdout.trimEnd()}${status.stderr.trim() ? `\n${status.stderr.trimEnd()}` : ''}\n(exit ${status.code})`);
  facts.status = `${status.stdout.trimEnd()}\n(exit ${status.code})`;
  facts.replication = (await kubectl(sk, ['get', 'replication', 'shop', '-n', NS])).stdout.trimEnd();
  const forbidden = fs.readFileSync(logs.controller, 'utf8').split('\n').filter((l) => /forbidden/i.test(l)).length;
  facts.controller += `; ${forbidden} "forbidden" lines in its log`;

  // Summary ------------------------------------------------------------------------------------
  const last = steps.at(-1)!;
  last.ms = Date.now() - last.start;
  console.log(`\n${bold(`Summary (total ${since(t0)})`)}`);
  console.log(` #  ${'STEP'.padEnd(86)}      TIME`);
  for (const s of steps) console.log(`${String(s.n).padStart(2)}  ${s.title.padEnd(86)}  ${secs(s.ms ?? 0).padStart(8)}`);
  console.log('');
  const row = (k: string, v: string) => console.log(`${k.padEnd(16)}${v.split('\n').join(`\n${' '.repeat(16)}`)}`);
  row('chart', facts.chart!);
  row('controller', facts.controller!);
  row('first commit', `${facts.firstCommit!.slice(0, 12)} (the Replication's first sync)`);
  row('live change', facts.liveChange!);
  row('Flux applied', facts.applied!);
  row('PVC data', facts.pvcs!);
  row('DR volumes', facts.files!);
  row('Replication', facts.replication!);
  row('status', facts.status!);

  if (keep) {
    console.log(`\nkept running: source kubeconfig ${src.kubeconfigPath}\n              DR kubeconfig     ${dr.kubeconfigPath}`);
    console.log(`              controller log    ${logs.controller} (as the ServiceAccount: ${asSa})\n              Git               ${repoUrl} (user ${git.user}, password ${git.password})\nCtrl-C stops everything.`);
    await new Promise((resolve) => process.once('SIGINT', resolve));
  }
}

// ---------------------------------------------------------------------------------------------

/** npm run build: the CLI as the README shows it, compiled JavaScript in dist/. */
async function buildCli(): Promise<void> {
  try {
    await run('npm', ['run', '--silent', 'build'], { cwd: root, maxBuffer: 64 << 20 });
  } catch (err) {
    const e = err as { stdout?: string; stderr?: string; message: string };
    throw new Error(`npm run build failed:\n${`${e.stdout ?? ''}${e.stderr ?? ''}`.trim() || e.message}`, { cause: err });
  }
}

/** The compiled CLI; check: false returns a non-zero exit instead of throwing. */
async function cli(args: string[], check = true): Promise<{ stdout: string; stderr: string; code: number }> {
  try {
    const r = await run(process.execPath, [cliMain, ...args], { cwd: root, maxBuffer: 16 << 20 });
    return { ...r, code: 0 };
  } catch (err) {
    const e = err as { stdout?: string; stderr?: string; code?: number; message: string };
    if (check || typeof e.code !== 'number') throw new Error(`dr-syncer ${args.join(' ')}: ${e.stderr?.trim() || e.message}`, { cause: err });
    return { stdout: e.stdout ?? '', stderr: e.stderr ?? '', code: e.code };
  }
}

async function json<T>(c: TestCluster | string, args: string[]): Promise<T> {
  return JSON.parse((await kubectl(typeof c === 'string' ? c : c.kubeconfigPath, [...args, '-o', 'json'])).stdout) as T;
}

/** The admin kubeconfig, impersonating `as` (users[].user.as): every request is authorized as that identity. */
function impersonatingKubeconfig(cluster: TestCluster, as: string, file: string): string {
  const kc = parse(fs.readFileSync(cluster.kubeconfigPath, 'utf8')) as { users: { user: Record<string, unknown> }[] };
  for (const u of kc.users) u.user.as = as;
  fs.writeFileSync(file, stringify(kc), { mode: 0o600 });
  return file;
}

/** The host folder of a bound PVC's local PV on the cluster's node. */
async function volumeDir(c: TestCluster, ns: string, pvc: string): Promise<string> {
  const v = (await json<{ spec: { volumeName?: string } }>(c, ['-n', ns, 'get', 'pvc', pvc])).spec.volumeName;
  const dir = v ? c.nodes.map((n) => n.pvs.get(v)).find((d) => d !== undefined) : undefined;
  if (!dir) throw new Error(`PVC ${ns}/${pvc} in ${c.name} is not bound to one of the node's local PVs`);
  return dir;
}

function sha256(b: Buffer): string {
  return createHash('sha256').update(b).digest('hex');
}

function pvcTable(pvcs: PvcRow[]): string {
  const lines = ['PVC                  PHASE    BYTES      FILES  DURATION  EXIT'];
  for (const p of pvcs) {
    lines.push(`${`${p.namespace}/${p.name}`.padEnd(20)} ${String(p.phase).padEnd(8)} ${String(p.bytesTransferred ?? '').padEnd(10)} ${String(p.filesTransferred ?? '').padEnd(6)} ${String(p.lastSyncDuration ?? '').padEnd(9)} ${p.lastExitCode ?? ''}${p.phase === 'Synced' ? '' : `  ${p.message ?? ''}`}`);
  }
  return lines.join('\n');
}
