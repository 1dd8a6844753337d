// The measured recovery point, end to end with real parts: a source and a DR API server, the
// loopback Git server, the real Flux controllers applying the DR repository to the DR cluster
// (set up as `dr-syncer bootstrap flux` makes it), the controller running in this process and
// the dr-syncer CLI as users run it. The test keeps its own clock around each sync: the recovery
// point reported (status, `dr-syncer status --json`, the metric) must be the sync's start as the
// test saw it, and it must follow what Flux has applied, not what was committed.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, it } from 'node:test';
import type { RemoteCluster, Replication } from '../../src/api/v1alpha1/index.ts';
import { validateReplication } from '../../src/api/v1alpha1/index.ts';
import { buildBootstrap, drTargets } from '../../src/gitops/bootstrap.ts';
import { loadBootstrapTemplates } from '../../src/gitops/templates.ts';
import type { StatusRow } from '../../src/cli/status.ts';
import type { RunningManager } from '../../src/manager.ts';
import { startManager } from '../../src/manager.ts';
import { createLogger } from '../../src/util/log.ts';
import type { TestCluster } from '../env/cluster.ts';
import { kubectl, startClusters } from '../env/cluster.ts';
import type { Flux } from '../env/flux.ts';
import { freePort, startFlux } from '../env/flux.ts';
import type { GitServer } from '../env/git-server.ts';
import { startGitServer } from '../env/git-server.ts';
import { untilWith } from '../env/wait.ts';

const run = promisify(execFile);
const CLI = path.resolve('src/cli/main.ts');
const NS = 'dr-syncer';

let src: TestCluster;
let dr: TestCluster;
let git: GitServer;
let flux: Flux;
let mgr: RunningManager;
let repoUrl: string;
const cacheDir = fs.mkdtempSync(path.join(os.tmpdir(), 'drs-rp-'));

type RecoveryPoint = NonNullable<NonNullable<Replication['status']>['recoveryPoint']>;
type Obj = { metadata: { name: string }; spec?: Record<string, unknown>; status?: Replication['status'] & { lastAppliedRevision?: string } };

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const k = (args: string[], input?: string) => kubectl(dr.kubeconfigPath, args, input === undefined ? {} : { input });

async function get(kind: string, ns: string, name: string): Promise<Obj | undefined> {
  const r = await kubectl(dr.kubeconfigPath, ['get', kind, name, '-n', ns, '-o', 'json'], { check: false });
  if (r.code === 0) return JSON.parse(r.stdout) as Obj;
  if (/NotFound|not found/.test(r.stderr)) return undefined;
  throw new Error(`kubectl get ${kind} ${ns}/${name}: ${r.stderr.trim()}`);
}
const status = async (name: string) => (await get('replication', NS, name))?.status;

const until = untilWith({ intervalMs: 250, context: async () => `shop: ${JSON.stringify((await status('shop'))?.recoveryPoint)}` });

async function cli(args: string[]): Promise<{ code: number; stdout: string; stderr: string; ms: number }> {
  const t0 = Date.now();
  try {
    const r = await run(process.execPath, ['--import', 'tsx', CLI, ...args, '--kubeconfig', dr.kubeconfigPath, '-n', NS], { env: { ...process.env, HOME: cacheDir } });
    return { code: 0, stdout: r.stdout, stderr: r.stderr, ms: Date.now() - t0 };
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string };
    return { code: e.code ?? -1, stdout: e.stdout ?? '', stderr: e.stderr ?? '', ms: Date.now() - t0 };
  }
}

/** One manual sync of `name`, timed by the test: [before it was asked for, once its result was seen]. */
async function timedSync(name: string, trigger: string): Promise<{ commit: string; from: number; to: number }> {
  const from = Date.now();
  await k(['-n', NS, 'patch', 'replication', name, '--type=merge', '-p', JSON.stringify({ spec: { trigger: { manual: trigger } } })]);
  const st = await until(`sync ${trigger} of ${name}`, async () => {
    const s = await status(name);
    // Not status.phase: it can stay "Syncing" after a successful sync (reported to the main session).
    const synced = s?.conditions?.find((c) => c.type === 'Synced');
    return s?.lastManualSync === trigger && synced?.status === 'True' && s.lastCommit ? s : undefined;
  }).catch(async (err: unknown) => {
    throw new Error(`${String(err)}\n${name}: ${JSON.stringify(await status(name))}`);
  });
  return { commit: st.lastCommit!, from, to: Date.now() };
}

/** Flux applies `commit` to the DR cluster (asked to, then checked). */
async function fluxApplies(commit: string): Promise<void> {
  await flux.reconcile('GitRepository', 'flux-system', 'dr');
  await until(`Flux applies ${commit.slice(0, 12)}`, async () => {
    const ks = await get('kustomizations.kustomize.toolkit.fluxcd.io', 'flux-system', 'dr');
    if (ks?.status?.lastAppliedRevision?.endsWith(commit)) return true;
    await flux.reconcile('Kustomization', 'flux-system', 'dr');
    return false;
  }, 90_000);
}

/** The recovery point once the controller reports `commit` as applied. */
const reported = (name: string, commit: string, verdict = 'Ready') => until(`${name}: ${commit.slice(0, 12)} applied, ${verdict}`, async () => {
  const rp = (await status(name))?.recoveryPoint;
  return rp?.appliedCommit === commit && rp.verdict === verdict ? rp : undefined;
});

/** A time the controller reported lies within what the test observed around the sync, ±1 s (status times are whole seconds). */
function within(time: string | undefined, w: { from: number; to: number }, what: string): void {
  assert.ok(time, `${what}: no time`);
  const t = new Date(time).getTime();
  assert.ok(t >= w.from - 1000 && t <= w.to + 1000, `${what}: ${time} is not within [${new Date(w.from).toISOString()}, ${new Date(w.to).toISOString()}] ±1s`);
}

async function metrics(): Promise<string> {
  return new Promise((resolve, reject) => {
    http.get(`http://127.0.0.1:${mgr.metricsPort}/metrics`, (res) => {
      let body = '';
      res.on('data', (c: Buffer) => (body += c.toString('utf8')));
      res.on('end', () => resolve(body));
    }).on('error', reject);
  });
}
const metricValue = (text: string, replication: string, kind: string): number | undefined => {
  const m = new RegExp(`^dr_syncer_recovery_point_seconds\\{replication="${replication}",kind="${kind}"\\} (\\S+)$`, 'm').exec(text);
  return m ? Number(m[1]) : undefined;
};

function replication(name: string, namespace: string, extra: Record<string, unknown> = {}) {
  return {
    apiVersion: 'dr-syncer.io/v1alpha1', kind: 'Replication', metadata: { name, namespace: NS },
    spec: {
      sourceCluster: 'prod', destinationCluster: 'dr', sourceNamespace: namespace, mode: 'Manual', resourceTypes: ['configmaps'],
      git: { url: repoUrl, path: 'clusters/dr', credentialsSecretRef: { name: 'git-creds' } }, ...extra,
    },
  };
}

before(async () => {
  const [clusters, server] = await Promise.all([startClusters(2), startGitServer()]);
  [src, dr, git] = [clusters[0]!, clusters[1]!, server];
  flux = await startFlux(dr);
  repoUrl = await git.createRepo('dr');
  await k(['apply', '--server-side', '-f', path.resolve('crds')]);
  await k(['wait', '--for=condition=Established', 'crd/replications.dr-syncer.io', 'crd/remoteclusters.dr-syncer.io']);
  await k(['create', 'namespace', NS]);
  // A DR cluster that does not answer: dr's kubeconfig pointed at a closed loopback port.
  const closed = (await fs.promises.readFile(dr.kubeconfigPath, 'utf8')).replace(/server: https:\/\/127\.0\.0\.1:\d+/, `server: https://127.0.0.1:${await freePort()}`);
  const closedPath = path.join(cacheDir, 'gone.kubeconfig');
  await fs.promises.writeFile(closedPath, closed, { mode: 0o600 });
  for (const [name, file] of [['prod-kubeconfig', src.kubeconfigPath], ['dr-kubeconfig', dr.kubeconfigPath], ['gone-kubeconfig', closedPath]] as const) {
    await k(['-n', NS, 'create', 'secret', 'generic', name, `--from-file=kubeconfig=${file}`]);
  }
  await k(['-n', NS, 'create', 'secret', 'generic', 'git-creds', `--from-literal=username=${git.user}`, `--from-literal=password=${git.password}`]);
  const remoteClusters = [['prod', 'prod-kubeconfig'], ['dr', 'dr-kubeconfig'], ['gone', 'gone-kubeconfig']].map(([name, secret]) => ({
    apiVersion: 'dr-syncer.io/v1alpha1', kind: 'RemoteCluster', metadata: { name, namespace: NS }, spec: { kubeconfigSecretRef: { name: secret } },
  }));
  await k(['apply', '-f', '-'], JSON.stringify({ apiVersion: 'v1', kind: 'List', items: remoteClusters }));
  await kubectl(src.kubeconfigPath, ['apply', '-f', '-'], { input: `
apiVersion: v1
kind: Namespace
metadata: {name: shop}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: app-config, namespace: shop}
data: {LOG_LEVEL: info}
---
apiVersion: v1
kind: Namespace
metadata: {name: billing}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: rates, namespace: billing}
data: {VAT: "20"}
` });
  const reps = [replication('shop', 'shop'), replication('billing', 'billing'), { ...replication('lost', 'shop'), spec: { ...replication('lost', 'shop').spec, destinationCluster: 'gone', git: { url: repoUrl, path: 'clusters/gone', credentialsSecretRef: { name: 'git-creds' } } } }];
  await k(['apply', '-f', '-'], JSON.stringify({ apiVersion: 'v1', kind: 'List', items: reps }));
  mgr = await startManager({
    kubeconfig: dr.kubeconfigPath, metricsAddress: '127.0.0.1:0', probeAddress: '127.0.0.1:0', leaderElect: false,
    leaderElectionNamespace: NS, leaderElectionId: 'dr-syncer.io', workers: 2, cacheDir, clusterName: 'dr', readinessIntervalMs: 1000,
    log: createLogger({ level: process.env.TEST_LOG_LEVEL ?? 'silent', pretty: false }),
  });
});

after(async () => {
  await mgr?.stop();
  await flux?.stop();
  await Promise.all([src?.stop(), dr?.stop(), git?.stop()]);
  await fs.promises.rm(cacheDir, { recursive: true, force: true });
});

describe('the measured recovery point', () => {
  let first: { commit: string; from: number; to: number };
  let second: { commit: string; from: number; to: number };

  it('synced but nothing follows the folder in the DR cluster: Unknown, saying so', async () => {
    first = await timedSync('shop', '1');
    const rp = await until('shop Unknown', async () => {
      const r = (await status('shop'))?.recoveryPoint;
      return r?.verdict === 'Unknown' ? r : undefined;
    });
    assert.match(rp.reason!, /no Flux Kustomization or Argo CD Application in the DR cluster follows .*dr\.git \(branch main, path "clusters\/dr"\)/);
    assert.equal(rp.appliedCommit, undefined);
    assert.ok(rp.checkedTime);
  });

  it('Flux set up as bootstrap makes it, not yet applied (suspended): NotReady, naming the Kustomization', async () => {
    const v = validateReplication(replication('shop', 'shop'));
    if (!v.ok) throw new Error(v.errors.join('; '));
    const rc = { apiVersion: 'dr-syncer.io/v1alpha1', kind: 'RemoteCluster', metadata: { name: 'dr', namespace: NS }, spec: { kubeconfigSecretRef: { name: 'dr-kubeconfig' } } } as RemoteCluster;
    const boot = buildBootstrap(drTargets(rc, [v.value]), {
      tool: 'flux', remoteCluster: `${NS}/dr`, name: 'dr', interval: '1h', // only the test decides when Flux applies
      credentials: new Map([['git-creds', { username: git.user, password: git.password }]]),
    }, await loadBootstrapTemplates());
    const objects = boot.objects.map((o) => (o.kind === 'Kustomization' ? { ...o, spec: { ...(o as unknown as { spec: object }).spec, suspend: true } } : o));
    await k(['apply', '--server-side', '-f', '-'], JSON.stringify({ apiVersion: 'v1', kind: 'List', items: objects }));
    const rp = await until('shop NotReady', async () => {
      const r = (await status('shop'))?.recoveryPoint;
      return r?.verdict === 'NotReady' ? r : undefined;
    });
    assert.equal(rp.appliedBy, 'Kustomization flux-system/dr');
    assert.match(rp.reason!, /Kustomization flux-system\/dr in the DR cluster has not applied any commit yet/);
    assert.equal(rp.objectsTime, undefined);
  });

  it('once Flux applies the commit: Ready, objectsTime is when the sync started by the test\'s clock; the CLI and the metric agree', async () => {
    await k(['-n', 'flux-system', 'patch', 'kustomizations.kustomize.toolkit.fluxcd.io', 'dr', '--type=merge', '-p', '{"spec":{"suspend":false}}']);
    await fluxApplies(first.commit);
    const rp = await reported('shop', first.commit);
    within(rp.objectsTime, first, 'status.recoveryPoint.objectsTime');
    assert.equal(rp.appliedBy, 'Kustomization flux-system/dr');
    assert.equal(rp.dataTime, undefined);

    const r = await cli(['status', 'shop', '--json']);
    assert.equal(r.code, 0, r.stderr);
    const [row] = (JSON.parse(r.stdout) as { replications: StatusRow[] }).replications;
    assert.equal(row?.source, 'live', 'read from the DR cluster itself');
    assert.equal(row?.appliedCommit, first.commit);
    assert.equal(row?.objectsTime, rp.objectsTime, 'the CLI measures the same time as the controller');
    assert.equal(row?.verdict, 'Ready');
    assert.equal(row?.objective, '1h');
    assert.ok(Math.abs(row!.objectsAgeSeconds! - (Date.now() - new Date(rp.objectsTime!).getTime()) / 1000) < 5 + r.ms / 1000, `age ${row?.objectsAgeSeconds}`);
    console.log(`# dr-syncer status --json answered in ${r.ms} ms (tsx included)`);

    const text = await metrics();
    const age = metricValue(text, `${NS}/shop`, 'objects');
    const expected = (Date.now() - new Date(rp.objectsTime!).getTime()) / 1000;
    assert.ok(age !== undefined && Math.abs(age - expected) < 2, `dr_syncer_recovery_point_seconds objects ${age}, expected ~${expected}`);
    assert.equal(metricValue(text, `${NS}/shop`, 'data'), undefined, 'no data series without pvc.syncData');
  });

  it('a newer commit Flux has not applied does not move the recovery point; applying it does', async () => {
    await sleep(2500); // the two syncs' windows apart, so the test can tell them
    await kubectl(src.kubeconfigPath, ['-n', 'shop', 'patch', 'configmap', 'app-config', '--type=merge', '-p', '{"data":{"LOG_LEVEL":"debug"}}']);
    second = await timedSync('shop', '2');
    assert.notEqual(second.commit, first.commit);
    await sleep(3000); // a few readiness rounds (every 1 s here)
    const still = (await status('shop'))?.recoveryPoint;
    assert.equal(still?.appliedCommit, first.commit);
    within(still?.objectsTime, first, 'objectsTime while the DR cluster runs the first commit');
    const live = JSON.parse((await cli(['status', 'shop', '--json'])).stdout) as { replications: StatusRow[] };
    assert.equal(live.replications[0]?.objectsTime, still?.objectsTime, 'the CLI too');

    await fluxApplies(second.commit);
    const rp = await reported('shop', second.commit);
    within(rp.objectsTime, second, 'objectsTime after Flux applied the second commit');
  });

  it('a repository other Replications write: their commit on top still holds ours (Git ancestry)', async () => {
    const billing = await timedSync('billing', '1');
    await fluxApplies(billing.commit);
    const rp = await reported('shop', billing.commit);
    within(rp.objectsTime, second, 'shop\'s objectsTime through a commit of billing');
    const b = await reported('billing', billing.commit);
    within(b.objectsTime, billing, 'billing\'s objectsTime');
    const r = await cli(['status', '--json', 'shop', 'billing']);
    const rows = (JSON.parse(r.stdout) as { replications: StatusRow[] }).replications;
    assert.deepEqual(rows.map((x) => [x.name, x.appliedCommit, x.objectsTime, x.verdict]), [['billing', billing.commit, b.objectsTime, 'Ready'], ['shop', billing.commit, rp.objectsTime, 'Ready']]);
  });

  it('an unreachable DR cluster makes only its own Replication Unknown; the CLI falls back to status and says so', async () => {
    const lost = await until('lost measured', async () => {
      const r = (await status('lost'))?.recoveryPoint;
      return r?.verdict ? r : undefined;
    });
    // Never synced, so NotReady whatever the DR cluster says; the unreachable cluster is named too.
    assert.equal(lost.verdict, 'NotReady');
    assert.match(lost.reason!, /no successful sync yet/);
    assert.equal((await status('shop'))?.recoveryPoint?.verdict, 'Ready');
    const r = await cli(['status']);
    assert.equal(r.code, 1, `not all Ready: exit 1; ${r.stderr}`);
    assert.match(r.stdout, /^NAME +MODE +LAST SYNC +LAST COMMIT +APPLIED +OBJECTS RP +DATA RP +VERDICT$/m);
    assert.match(r.stdout, /^shop +Manual +\d+[smh]\S* +[0-9a-f]{12} +[0-9a-f]{12} +\d+[smh]\S* +- +Ready$/m);
    assert.match(r.stdout, /^lost +Manual +never +- +unknown\* +- +- +NotReady$/m);
    assert.match(r.stdout, /^\* lost: from status\.recoveryPoint .*, not read live: DR cluster gone: .*127\.0\.0\.1:\d+/m);
    console.log(`# dr-syncer status (3 Replications, one DR cluster down) answered in ${r.ms} ms`);

    // Synced, the controller says Unknown with the connection error; shop is unaffected.
    await timedSync('lost', '1');
    const u = await until('lost Unknown', async () => {
      const x = (await status('lost'))?.recoveryPoint;
      return x?.verdict === 'Unknown' ? x : undefined;
    });
    assert.match(u.reason!, /127\.0\.0\.1:\d+/);
    assert.equal((await status('shop'))?.recoveryPoint?.verdict, 'Ready');
  });

  it('NotReady once the age exceeds the objective; --max-age judges with another; bad input exits 2', async () => {
    await k(['-n', NS, 'patch', 'replication', 'shop', '--type=merge', '-p', '{"spec":{"recoveryPointObjective":"8s"}}']);
    const rp: RecoveryPoint = await until('shop NotReady by age', async () => {
      const r = (await status('shop'))?.recoveryPoint;
      return r?.verdict === 'NotReady' ? r : undefined;
    });
    assert.match(rp.reason!, /objects: the DR cluster runs the source as of .* older than the objective 8s/);
    const strict = await cli(['status', 'shop']);
    assert.equal(strict.code, 1);
    assert.match(strict.stdout, /shop \(NotReady, objective 8s\): objects: /);
    const lenient = await cli(['status', 'shop', '--max-age', '1h']);
    assert.equal(lenient.code, 0, lenient.stdout);
    assert.match(lenient.stdout, / Ready$/m);
    const bad = await cli(['status', '--max-age', 'soon']);
    assert.equal(bad.code, 2);
    const unknown = await cli(['status', 'nosuch']);
    assert.equal(unknown.code, 2);
    assert.match(unknown.stderr, /Replication dr-syncer\/nosuch does not exist/);
  });

  it('the metric goes with its Replication', async () => {
    assert.notEqual(metricValue(await metrics(), `${NS}/billing`, 'objects'), undefined);
    await k(['-n', NS, 'delete', 'replication', 'billing', '--wait=true']);
    await until('billing\'s series gone', async () => metricValue(await metrics(), `${NS}/billing`, 'objects') === undefined);
  });
});
