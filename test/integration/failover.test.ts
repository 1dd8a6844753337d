// Failover and failback, end to end with real parts: a source and a DR API server (each with its
// kube-controller-manager), the controller (in this process) with its CRs in the DR cluster, the
// loopback Git server, the real Flux controllers applying the DR repository to the DR cluster,
// and the dr-syncer CLI as users run it. sync -> failover (with cutover) -> the DR cluster runs
// the source's replicas -> failback -> DR back to 0, the source restored, syncs resumed; the
// commits are what a reviewer expects; --dry-run writes nothing; bad input and a repository that
// rejects the push change nothing; the split-brain guard holds syncs while DR runs behind the
// controller's back; a failback after the DR folders were removed by hand still restores the source.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, it } from 'node:test';
import type { RemoteCluster, Replication } from '../../src/api/v1alpha1/index.ts';
import { validateReplication } from '../../src/api/v1alpha1/index.ts';
import { setFailover } from '../../src/cli/failover.ts';
import { CommandError, ControllerCluster } from '../../src/cli/replication-context.ts';
import { buildBootstrap, drTargets } from '../../src/gitops/bootstrap.ts';
import { loadBootstrapTemplates } from '../../src/gitops/templates.ts';
import type { RunningManager } from '../../src/manager.ts';
import { startManager } from '../../src/manager.ts';
import { createLogger } from '../../src/util/log.ts';
import type { TestCluster } from '../env/cluster.ts';
import { kubectl, startClusters } from '../env/cluster.ts';
import type { Flux } from '../env/flux.ts';
import { startFlux } from '../env/flux.ts';
import type { GitServer } from '../env/git-server.ts';
import { startGitServer } from '../env/git-server.ts';
import { untilWith } from '../env/wait.ts';

const run = promisify(execFile);
const CLI = path.resolve('src/cli/main.ts');
const NS = 'shop';
const REP = 'shop';

let src: TestCluster;
let dr: TestCluster;
let git: GitServer;
let flux: Flux;
let mgr: RunningManager;
let repoUrl: string;
const cacheDir = fs.mkdtempSync(path.join(os.tmpdir(), 'drs-failover-'));
const me = `${os.userInfo().username}@${os.hostname()}`;

type Obj = {
  metadata: { name: string; generation?: number; annotations?: Record<string, string> };
  spec?: { replicas?: number; suspend?: boolean; failover?: Record<string, unknown> };
  status?: Replication['status'] & { replicas?: number };
};

async function cli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const r = await run(process.execPath, ['--import', 'tsx', CLI, ...args, '--kubeconfig', dr.kubeconfigPath, '-n', 'dr-syncer'], { maxBuffer: 1 << 24, env: { ...process.env, HOME: cacheDir } });
    return { code: 0, stdout: r.stdout, stderr: r.stderr };
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string };
    return { code: e.code ?? -1, stdout: e.stdout ?? '', stderr: e.stderr ?? '' };
  }
}

async function get(cluster: TestCluster, kind: string, ns: string, name: string): Promise<Obj | undefined> {
  const r = await kubectl(cluster.kubeconfigPath, ['get', kind, name, ...(ns ? ['-n', ns] : []), '-o', 'json'], { check: false });
  if (r.code === 0) return JSON.parse(r.stdout) as Obj;
  if (/NotFound|not found/.test(r.stderr)) return undefined;
  throw new Error(`kubectl get ${kind} ${ns}/${name}: ${r.stderr.trim()}`);
}
const rep = async (): Promise<Obj> => (await get(dr, 'replication', 'dr-syncer', REP))!;
const ready = (o: Obj) => o.status?.conditions?.find((c) => c.type === 'Ready');
const head = async () => (await git.git(['ls-remote', `${git.base}/dr.git`, 'refs/heads/main'])).split('\t')[0] ?? '';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const until = untilWith({ context: async () => `Replication status: ${JSON.stringify((await rep()).status)}` });

/** Flux applies the repository's current head to the DR cluster (asked to, and then checked). */
async function fluxApplies(commit: string): Promise<void> {
  await flux.reconcile('GitRepository', 'flux-system', 'dr');
  await until(`Flux applies ${commit.slice(0, 12)}`, async () => {
    const ks = await get(dr, 'kustomizations.kustomize.toolkit.fluxcd.io', 'flux-system', 'dr') as { status?: { lastAppliedRevision?: string } } | undefined;
    if (ks?.status?.lastAppliedRevision?.endsWith(commit)) return true;
    await flux.reconcile('Kustomization', 'flux-system', 'dr');
    return false;
  }, 90_000);
}

const replicas = async (cluster: TestCluster, kind: string, name: string) => (await get(cluster, kind, NS, name))?.spec?.replicas;

/** Suspends or resumes Flux's Kustomization of the DR repository; suspended, it waits out a reconcile already running. */
async function fluxSuspended(on: boolean): Promise<void> {
  await kubectl(dr.kubeconfigPath, ['-n', 'flux-system', 'patch', 'kustomizations.kustomize.toolkit.fluxcd.io', 'dr', '--type=merge', '-p', JSON.stringify({ spec: { suspend: on } })]);
  if (on) await sleep(2_000);
}

/** After a failback: the source runs what it ran before the cutover, and remembers nothing of it. */
async function sourceRestored(): Promise<void> {
  const web = await get(src, 'deployment', NS, 'web');
  assert.equal(web?.spec?.replicas, 3, 'the source is restored');
  assert.equal(web?.metadata.annotations?.['dr-syncer.io/original-replicas'], undefined);
  assert.equal(web?.metadata.annotations?.['dr-syncer.io/scaled-down-by'], undefined);
  assert.equal(await replicas(src, 'deployment', 'api'), 2);
  assert.equal((await get(src, 'cronjob', NS, 'report'))?.spec?.suspend, false);
}

/** After the resumed sync: the DR repository holds the workload at 0, remembering the source's count. */
async function drFileIdle(): Promise<void> {
  const after = await git.git(['show', 'origin/main:clusters/dr/shop/deployment.apps-web.yaml'], await git.clone('dr'));
  assert.match(after, /^ {2}replicas: 0$/m, 'DR stays at 0 after the resumed sync');
  assert.match(after, /dr-syncer\.io\/original-replicas: "3"/);
}

before(async () => {
  const [clusters, server] = await Promise.all([startClusters(2), startGitServer()]);
  [src, dr, git] = [clusters[0]!, clusters[1]!, server];
  flux = await startFlux(dr);
  repoUrl = await git.createRepo('dr');
  const k = (args: string[], input?: string) => kubectl(dr.kubeconfigPath, args, input === undefined ? {} : { input });
  await k(['apply', '--server-side', '-f', path.resolve('crds')]);
  await k(['wait', '--for=condition=Established', 'crd/replications.dr-syncer.io', 'crd/remoteclusters.dr-syncer.io']);
  await k(['create', 'namespace', 'dr-syncer']);
  await k(['-n', 'dr-syncer', 'create', 'secret', 'generic', 'prod-kubeconfig', `--from-file=kubeconfig=${src.kubeconfigPath}`]);
  await k(['-n', 'dr-syncer', 'create', 'secret', 'generic', 'dr-kubeconfig', `--from-file=kubeconfig=${dr.kubeconfigPath}`]);
  await k(['-n', 'dr-syncer', 'create', 'secret', 'generic', 'git-creds', `--from-literal=username=${git.user}`, `--from-literal=password=${git.password}`]);
  const remoteClusters = [['prod', 'prod-kubeconfig'], ['dr', 'dr-kubeconfig']].map(([name, secret]) => ({ apiVersion: 'dr-syncer.io/v1alpha1', kind: 'RemoteCluster', metadata: { name, namespace: 'dr-syncer' }, spec: { kubeconfigSecretRef: { name: secret } } }));
  await k(['apply', '-f', '-'], JSON.stringify({ apiVersion: 'v1', kind: 'List', items: remoteClusters }));
  await kubectl(src.kubeconfigPath, ['apply', '-f', '-'], { input: `
apiVersion: v1
kind: Namespace
metadata: {name: ${NS}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: ${NS}}
spec: {replicas: 3, selector: {matchLabels: {app: web}}, template: {metadata: {labels: {app: web}}, spec: {containers: [{name: web, image: "nginx:1.27"}]}}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: api, namespace: ${NS}}
spec: {replicas: 2, selector: {matchLabels: {app: api}}, template: {metadata: {labels: {app: api}}, spec: {containers: [{name: api, image: "nginx:1.27"}]}}}
---
apiVersion: batch/v1
kind: CronJob
metadata: {name: report, namespace: ${NS}}
spec: {schedule: "0 3 * * *", jobTemplate: {spec: {template: {spec: {restartPolicy: Never, containers: [{name: r, image: "busybox"}]}}}}}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: app-config, namespace: ${NS}}
data: {LOG_LEVEL: info}
` });
  const spec = {
    sourceCluster: 'prod', destinationCluster: 'dr', sourceNamespace: NS, mode: 'Continuous', continuous: { debounce: '300ms', resyncInterval: '1h' },
    resourceTypes: ['deployments', 'cronjobs', 'configmaps'], git: { url: repoUrl, path: 'clusters/dr', credentialsSecretRef: { name: 'git-creds' } },
  };
  const manifest = { apiVersion: 'dr-syncer.io/v1alpha1', kind: 'Replication', metadata: { name: REP, namespace: 'dr-syncer' }, spec };
  await k(['apply', '-f', '-'], JSON.stringify(manifest));
  // Flux as `dr-syncer bootstrap flux` sets it up; a long interval, so only the test decides when it applies.
  const v = validateReplication(manifest);
  if (!v.ok) throw new Error(v.errors.join('; '));
  const rc = remoteClusters[1] as unknown as RemoteCluster;
  const boot = buildBootstrap(drTargets(rc, [v.value]), {
    tool: 'flux', remoteCluster: 'dr-syncer/dr', name: 'dr', interval: '1h',
    credentials: new Map([['git-creds', { username: git.user, password: git.password }]]),
  }, await loadBootstrapTemplates());
  await k(['apply', '--server-side', '-f', '-'], boot.yaml);
  mgr = await startManager({
    kubeconfig: dr.kubeconfigPath, metricsAddress: '127.0.0.1:0', probeAddress: '127.0.0.1:0', leaderElect: false,
    leaderElectionNamespace: 'dr-syncer', leaderElectionId: 'dr-syncer.io', workers: 2, cacheDir, clusterName: 'dr',
    log: createLogger({ level: process.env.TEST_LOG_LEVEL ?? 'silent', pretty: false }),
  });
});

after(async () => {
  await mgr?.stop();
  await flux?.stop();
  await Promise.all([src?.stop(), dr?.stop(), git?.stop()]);
  await fs.promises.rm(cacheDir, { recursive: true, force: true });
});

describe('failover and failback as commits', () => {
  it('the sync writes the workloads idle and Flux applies them to the DR cluster', async () => {
    const synced = await until('the first sync', async () => {
      const o = await rep();
      return o.status?.phase === 'Synced' && o.status.lastCommit ? o.status.lastCommit : undefined;
    });
    await fluxApplies(synced);
    assert.equal(await replicas(dr, 'deployment', 'web'), 0);
    assert.equal(await replicas(dr, 'deployment', 'api'), 0);
    assert.equal((await get(dr, 'cronjob', NS, 'report'))?.spec?.suspend, true);
  });

  it('bad input is refused with exit 2 and changes nothing', async () => {
    const before = await head();
    const unknown = await cli(['failover', 'nosuch']);
    assert.equal(unknown.code, 2, unknown.stderr);
    assert.match(unknown.stderr, /Replication dr-syncer\/nosuch does not exist/);
    const notFailedOver = await cli(['failback', REP]);
    assert.equal(notFailedOver.code, 2, notFailedOver.stderr);
    assert.match(notFailedOver.stderr, /is not failed over/);
    assert.equal(await head(), before);
    assert.equal((await rep()).spec?.failover, undefined);
  });

  it('failover --dry-run prints the diff and writes nothing', async () => {
    const before = await head();
    const generation = (await rep()).metadata.generation;
    const r = await cli(['failover', REP, '--cutover', '--dry-run']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^diff --git a\/clusters\/dr\/shop\/deployment\.apps-web\.yaml b\/clusters\/dr\/shop\/deployment\.apps-web\.yaml$/m);
    assert.match(r.stdout, /^- {2}replicas: 0$/m);
    assert.match(r.stdout, /^\+ {2}replicas: 3$/m);
    assert.match(r.stdout, /^\+ {2}suspend: false$/m);
    assert.match(r.stderr, /3 workload\(s\) would change/);
    assert.match(r.stderr, /source Deployment shop\/web: replicas 3 -> 0/);
    assert.equal(await head(), before, 'nothing pushed');
    assert.equal((await rep()).metadata.generation, generation, 'the Replication is unchanged');
    assert.equal(await replicas(src, 'deployment', 'web'), 3, 'the source is unchanged');
  });

  it('a repository that rejects the push: the failover fails and says so, the source keeps running; it completes once the push is accepted', async () => {
    const hook = path.join(git.root, 'dr.git', 'hooks', 'pre-receive');
    await fs.promises.writeFile(hook, '#!/bin/sh\necho "branch main is protected" >&2\nexit 1\n', { mode: 0o755 });
    const before = await head();
    const r = await cli(['failover', REP, '--cutover', '--wait', '8s']);
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /not complete after 8s/);
    const o = await rep();
    assert.equal(ready(o)?.reason, 'FailoverFailed', JSON.stringify(ready(o)));
    assert.match(ready(o)!.message, new RegExp(`failover of ${repoUrl.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}.*failed`));
    assert.equal(await head(), before, 'nothing was pushed');
    assert.equal(await replicas(src, 'deployment', 'web'), 3, 'the source was not scaled down');
    assert.equal(await replicas(dr, 'deployment', 'web'), 0);

    await fs.promises.rm(hook);
    // A touch makes the retry immediate instead of waiting out the backoff.
    await kubectl(dr.kubeconfigPath, ['-n', 'dr-syncer', 'annotate', 'replication', REP, `test/retry=${Date.now()}`, '--overwrite']);
    const st = await until('FailedOver', async () => {
      const x = await rep();
      return x.status?.failover?.state === 'FailedOver' ? x.status.failover : undefined;
    });
    assert.equal(st.failoverCommit, await head());
    assert.equal(st.requestedBy, me);
    assert.equal(st.sourceScaledDown, true);
    assert.equal(st.workloads, 3);
  });

  it('failover: one reviewable commit; the DR cluster runs the source replicas; the source is down; the sync is paused', async () => {
    const commit = await head();
    const message = await git.git(['log', '-1', '--format=%B', commit], await git.clone('dr'));
    assert.match(message, /^dr-syncer: failover dr-syncer\/shop \(3 workloads activated\)\n/);
    assert.match(message, /\n {2}Deployment shop\/web: replicas 0 -> replicas 3\n/);
    assert.match(message, /\n {2}CronJob shop\/report: suspended -> active\n/);
    assert.match(message, new RegExp(`\\nRequested-By: ${me}\\n`));
    assert.match(message, /\nDr-Syncer-Action: failover\n/);
    const clone = await git.clone('dr');
    const stat = await git.git(['show', '--numstat', '--format=', commit], clone);
    assert.deepEqual(stat.trim().split('\n').sort(), [
      '1\t1\tclusters/dr/shop/cronjob.batch-report.yaml', '1\t1\tclusters/dr/shop/deployment.apps-api.yaml', '1\t1\tclusters/dr/shop/deployment.apps-web.yaml',
    ], 'one line per workload, nothing else');

    await fluxApplies(commit);
    assert.equal(await replicas(dr, 'deployment', 'web'), 3);
    assert.equal(await replicas(dr, 'deployment', 'api'), 2);
    assert.equal((await get(dr, 'cronjob', NS, 'report'))?.spec?.suspend, false);
    const web = await get(src, 'deployment', NS, 'web');
    assert.equal(web?.spec?.replicas, 0, 'cutover: the source is scaled down');
    assert.equal(web?.metadata.annotations?.['dr-syncer.io/original-replicas'], '3');
    assert.equal(web?.metadata.annotations?.['dr-syncer.io/scaled-down-by'], 'dr-syncer/shop', 'marked as this Replication\'s cutover');
    assert.equal((await get(src, 'cronjob', NS, 'report'))?.spec?.suspend, true);
    const o = await rep();
    assert.equal(o.status?.phase, 'FailedOver');
    assert.equal(ready(o)?.reason, 'FailedOver');

    // The sync is paused: a source change is not committed over the failover.
    await kubectl(src.kubeconfigPath, ['-n', NS, 'create', 'configmap', 'during-failover', '--from-literal=x=1']);
    await sleep(3_000);
    assert.equal(await head(), commit);
    const again = await cli(['failover', REP]);
    assert.equal(again.code, 2, again.stderr);
    assert.match(again.stderr, /already failed over \(since .*, commit [0-9a-f]{12}\)/);
  });

  it('failback: DR back to 0 in one commit, then the source restored and the sync resumed', async () => {
    const failoverCommit = await head();
    // The preview says what the failback would restore at the source, and writes nothing.
    const preview = await cli(['failback', REP, '--dry-run']);
    assert.equal(preview.code, 0, preview.stderr);
    assert.match(preview.stderr, /^ {2}source Deployment shop\/web: replicas 0 -> 3$/m);
    assert.match(preview.stderr, /^ {2}source Deployment shop\/api: replicas 0 -> 2$/m);
    assert.equal(await head(), failoverCommit, 'the preview pushes nothing');
    assert.equal(await replicas(src, 'deployment', 'web'), 0, 'the preview restores nothing');
    // Flux applies whatever the failback commits while the CLI waits for the DR cluster to be at 0.
    let stop = false;
    const applier = (async () => {
      while (!stop) {
        const h = await head();
        if (h !== failoverCommit) await fluxApplies(h).catch(() => undefined);
        await sleep(500);
      }
    })();
    let r;
    try {
      r = await cli(['failback', REP, '--wait', '120s']);
    } finally {
      stop = true;
      await applier;
    }
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^failed back: commit [0-9a-f]{40}/);
    const o = await rep();
    const st = o.status!.failover!;
    assert.equal(st.state, 'Standby');
    const clone = await git.clone('dr');
    const message = await git.git(['log', '-1', '--format=%B', st.failbackCommit!], clone);
    assert.match(message, /^dr-syncer: failback dr-syncer\/shop \(3 workloads back to standby\)\n/);
    assert.equal(await replicas(dr, 'deployment', 'web'), 0);
    assert.equal((await get(dr, 'cronjob', NS, 'report'))?.spec?.suspend, true);
    await sourceRestored();
    // The sync resumed: what changed at the source during the failover arrives.
    await until('the sync resumes', async () => (await git.git(['ls-tree', '-r', '--name-only', 'origin/main'], await git.clone('dr'))).includes('configmap-during-failover.yaml'));
    await drFileIdle();
  });

  it('split-brain guard: DR workloads scaled up behind the controller\'s back hold the sync until they are back at 0', async (t) => {
    const synced = await until('synced', async () => ((await rep()).status?.phase === 'Synced' ? head() : undefined));
    await fluxApplies(synced);
    // Flux would put the DR workload back to 0 at its next reconcile (one may still be queued):
    // it stays off while someone runs the DR site by hand.
    await fluxSuspended(true);
    t.after(() => fluxSuspended(false));
    await kubectl(dr.kubeconfigPath, ['-n', NS, 'scale', 'deployment', 'web', '--replicas=2']);
    await kubectl(src.kubeconfigPath, ['-n', NS, 'create', 'configmap', 'during-split-brain', '--from-literal=x=1']);
    const o = await until('the guard holds the sync', async () => {
      const x = await rep();
      return ready(x)?.reason === 'SplitBrain' ? x : undefined;
    });
    assert.equal(o.status?.phase, 'Paused');
    assert.match(ready(o)!.message, /Deployment shop\/web runs 2 replicas/);
    assert.equal(await head(), synced, 'nothing committed over the live DR site');
    const events = await kubectl(dr.kubeconfigPath, ['-n', 'dr-syncer', 'get', 'events', '--field-selector', `involvedObject.name=${REP},reason=SplitBrainDetected`, '-o', 'name']);
    assert.ok(events.stdout.trim(), 'a SplitBrainDetected Event');

    await kubectl(dr.kubeconfigPath, ['-n', NS, 'scale', 'deployment', 'web', '--replicas=0']);
    await until('the sync resumes once DR is idle again', async () => (await head()) !== synced && (await rep()).status?.phase === 'Synced', 60_000);
    assert.ok((await git.git(['ls-tree', '-r', '--name-only', 'origin/main'], await git.clone('dr'))).includes('configmap-during-split-brain.yaml'));
  });

  it('failback after the DR folders were removed by hand: the source the cutover scaled down is restored once the DR cluster runs nothing', async () => {
    await until('synced', async () => (await rep()).status?.phase === 'Synced');
    const over = await cli(['failover', REP, '--cutover', '--wait', '60s']);
    assert.equal(over.code, 0, over.stderr);
    await fluxApplies(await head());
    assert.equal(await replicas(dr, 'deployment', 'web'), 3, 'the DR site runs');
    assert.equal(await replicas(src, 'deployment', 'web'), 0);
    assert.equal((await get(src, 'cronjob', NS, 'report'))?.spec?.suspend, true);
    // Someone removes the Replication's folder (and its entry in the base kustomization.yaml)
    // from the DR repository while it is failed over.
    const clone = await git.clone('dr');
    await git.git(['rm', '-r', '-q', 'clusters/dr/shop'], clone);
    await fs.promises.writeFile(path.join(clone, 'clusters/dr/kustomization.yaml'), 'apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources: []\n');
    await git.git(['add', '-A', '.'], clone);
    await git.git(['-c', 'user.name=ops', '-c', 'user.email=ops@example.com', 'commit', '-q', '-m', 'remove shop'], clone);
    await git.git(['push', '-q', 'origin', 'HEAD:main'], clone);
    const removal = await head();

    // A workload another Replication's cutover scaled down, in the same namespace: not this
    // failback's to restore.
    await kubectl(src.kubeconfigPath, ['apply', '-f', '-'], { input: `
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: db, namespace: ${NS}, annotations: {dr-syncer.io/original-replicas: "4", dr-syncer.io/scaled-down-by: dr-syncer/db}}
spec: {replicas: 0, serviceName: db, selector: {matchLabels: {app: db}}, template: {metadata: {labels: {app: db}}, spec: {containers: [{name: db, image: "postgres:16"}]}}}
` });

    // The failback waits while the DR cluster still runs the workloads: the source stays down.
    const back = cli(['failback', REP, '--wait', '120s']);
    const waiting = await until('the failback waits for the DR cluster', async () => {
      const c = ready(await rep());
      return c?.reason === 'FailingBack' ? c : undefined;
    });
    assert.match(waiting.message, /holds no folder of Replication .*waiting until the DR cluster runs them at 0 .*Deployment shop\/web runs 3 replicas/);
    assert.equal(await replicas(src, 'deployment', 'web'), 0, 'no split brain: the source stays down while DR runs');
    // Flux applies the removal: the DR workloads are pruned; the failback goes on.
    await fluxApplies(removal);
    const r = await back;
    assert.equal(r.code, 0, r.stderr);
    const st = (await rep()).status!.failover!;
    assert.equal(st.state, 'Standby');
    assert.equal(st.sourceScaledDown, false);
    assert.match(st.message ?? '', /^failed back without a commit \(.*holds no folder of Replication .*\): the DR cluster is on standby again, the source workloads were restored; syncs resumed$/);
    await sourceRestored();
    assert.equal(await replicas(src, 'statefulset', 'db'), 0, 'another Replication\'s cutover is left as it is');
    // The sync resumes and writes the folder again, DR at 0.
    await until('the folder is written again', async () => (await git.git(['ls-tree', '-r', '--name-only', 'origin/main'], await git.clone('dr'))).includes('clusters/dr/shop/deployment.apps-web.yaml'));
    await drFileIdle();
  });

  it('the source is gone: --cutover is refused and changes nothing; --cutover --force fails over without it', async () => {
    await until('synced', async () => (await rep()).status?.phase === 'Synced');
    // The source's API server stops answering (its kubeconfig now points at a closed port).
    const dead = (await fs.promises.readFile(src.kubeconfigPath, 'utf8')).replace(/server: https:\/\/[^\s]+/g, 'server: https://127.0.0.1:1');
    const deadFile = path.join(cacheDir, 'dead.kubeconfig');
    await fs.promises.writeFile(deadFile, dead);
    await kubectl(dr.kubeconfigPath, ['-n', 'dr-syncer', 'create', 'secret', 'generic', 'prod-kubeconfig', `--from-file=kubeconfig=${deadFile}`, '--dry-run=client', '-o', 'yaml'])
      .then((r) => kubectl(dr.kubeconfigPath, ['apply', '-f', '-'], { input: r.stdout }));
    const before = await head();
    const refused = await cli(['failover', REP, '--cutover', '--wait', '60s']);
    assert.equal(refused.code, 1, refused.stderr);
    assert.match(refused.stderr, /refused, nothing was changed, the request is withdrawn: cutover refused: source cluster prod cannot be scaled down/);
    assert.equal(await head(), before);
    assert.equal((await rep()).spec?.failover, undefined, 'the request is withdrawn');
    assert.notEqual((await rep()).status?.failover?.state, 'FailingOver');

    const forced = await cli(['failover', REP, '--cutover', '--force', '--wait', '60s']);
    assert.equal(forced.code, 0, forced.stderr);
    const st = (await rep()).status!.failover!;
    assert.equal(st.state, 'FailedOver');
    assert.equal(st.sourceScaledDown, false);
    const message = await git.git(['log', '-1', '--format=%B', st.failoverCommit!], await git.clone('dr'));
    assert.match(message, /The source was not scaled down \(force\): source cluster prod cannot be scaled down/);
  });

  it('the CLI sets spec.failover over a status write (the controller writes it while it syncs), never over a change of the spec', async () => {
    const cluster = await ControllerCluster.connect({ namespace: 'dr-syncer', kubeconfig: dr.kubeconfigPath });
    const ctx = await cluster.context(REP);
    const read = ctx.rep;
    const requestedBy = read.spec.failover?.requestedBy;
    // Changed since it was read, the spec not: the request goes through.
    await kubectl(dr.kubeconfigPath, ['-n', 'dr-syncer', 'annotate', 'replication', REP, 'test/touched=1']);
    const set = await setFailover(ctx, read, { ...read.spec.failover, requestedBy: 'cli-test' });
    assert.equal(set.spec.failover?.requestedBy, 'cli-test');
    assert.equal(set.metadata.generation, (read.metadata.generation ?? 0) + 1);
    // The spec changed since it was read: refused, nothing overwritten.
    await assert.rejects(setFailover(ctx, read, { ...read.spec.failover, requestedBy }), (err: Error) => err instanceof CommandError && /changed while this command ran; run it again/.test(err.message));
    assert.equal((await rep()).spec?.failover?.requestedBy, 'cli-test');
  });
});
