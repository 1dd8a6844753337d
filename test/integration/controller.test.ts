// The operator end to end, in-process: the manager runs against a real controller cluster, reads a
// real source cluster through a RemoteCluster, and commits to a real Git server. Modes
// (Continuous, Scheduled, Manual, paused), status, Events, metrics, finalizer, namespace
// selection, and the upstream cases 16-18 and 23.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { parse } from 'yaml';
import type { RunningManager } from '../../src/manager.ts';
import { startManager } from '../../src/manager.ts';
import { createLogger } from '../../src/util/log.ts';
import type { TestCluster } from '../env/cluster.ts';
import { kubectl, startClusters } from '../env/cluster.ts';
import type { GitServer } from '../env/git-server.ts';
import { startGitServer } from '../env/git-server.ts';
import { untilWith } from '../env/wait.ts';

let ctl: TestCluster;
let src: TestCluster;
let git: GitServer;
let repoUrl: string;
let mgr: RunningManager;
const cacheDir = fs.mkdtempSync(path.join(os.tmpdir(), 'drs-ctl-cache-'));

type Status = {
  phase?: string; lastSyncTime?: string; nextSyncTime?: string; lastCommit?: string; lastManualSync?: string; observedGeneration?: number;
  conditions?: { type: string; status: string; reason: string; message: string; observedGeneration?: number }[];
  resources?: { kind: string; count: number }[];
};
type Obj = { metadata: { generation?: number; resourceVersion: string; annotations?: Record<string, string>; finalizers?: string[] }; status?: Status };

const ctlApply = (yaml: string) => kubectl(ctl.kubeconfigPath, ['apply', '-f', '-'], { input: yaml });
const srcApply = (yaml: string) => kubectl(src.kubeconfigPath, ['apply', '-f', '-'], { input: yaml });
const getRep = async (name: string): Promise<Obj> => JSON.parse((await kubectl(ctl.kubeconfigPath, ['get', 'replication', name, '-n', 'dr-syncer', '-o', 'json'])).stdout) as Obj;
const head = async () => (await git.git(['ls-remote', `${git.base}/dr.git`, 'refs/heads/main'])).split('\t')[0] ?? '';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const until = untilWith({ timeoutMs: 30_000, intervalMs: 250 });

async function repoFiles(dir: string): Promise<string[]> {
  const clone = await git.clone('dr');
  const p = path.join(clone, dir);
  return fs.existsSync(p) ? (await fs.promises.readdir(p)).sort() : [];
}

function replication(name: string, spec: Record<string, unknown>): string {
  return JSON.stringify({
    apiVersion: 'dr-syncer.io/v1alpha1', kind: 'Replication', metadata: { name, namespace: 'dr-syncer' },
    spec: { sourceCluster: 'prod', resourceTypes: ['configmaps', 'deployments'], git: { url: repoUrl, path: `ctl/${name}`, credentialsSecretRef: { name: 'git-creds' } }, ...spec },
  });
}

before(async () => {
  const [clusters, server] = await Promise.all([startClusters(2), startGitServer()]);
  [ctl, src, git] = [clusters[0]!, clusters[1]!, server];
  repoUrl = await git.createRepo('dr');
  await kubectl(ctl.kubeconfigPath, ['apply', '--server-side', '-f', path.resolve('crds')]);
  await kubectl(ctl.kubeconfigPath, ['wait', '--for=condition=Established', 'crd/replications.dr-syncer.io', 'crd/remoteclusters.dr-syncer.io']);
  await kubectl(ctl.kubeconfigPath, ['create', 'namespace', 'dr-syncer']);
  await kubectl(ctl.kubeconfigPath, ['-n', 'dr-syncer', 'create', 'secret', 'generic', 'prod-kubeconfig', `--from-file=kubeconfig=${src.kubeconfigPath}`]);
  await kubectl(ctl.kubeconfigPath, ['-n', 'dr-syncer', 'create', 'secret', 'generic', 'git-creds', `--from-literal=username=${git.user}`, `--from-literal=password=${git.password}`]);
  await ctlApply(JSON.stringify({ apiVersion: 'dr-syncer.io/v1alpha1', kind: 'RemoteCluster', metadata: { name: 'prod', namespace: 'dr-syncer' }, spec: { kubeconfigSecretRef: { name: 'prod-kubeconfig' } } }));
  mgr = await startManager({
    kubeconfig: ctl.kubeconfigPath, metricsAddress: '127.0.0.1:0', probeAddress: '127.0.0.1:0', leaderElect: false,
    leaderElectionNamespace: 'dr-syncer', leaderElectionId: 'dr-syncer.io', workers: 4, cacheDir, clusterName: 'ctl',
    log: createLogger({ level: process.env.TEST_LOG_LEVEL ?? 'silent', pretty: false }),
  });
});

after(async () => {
  await mgr?.stop();
  await Promise.all([ctl?.stop(), src?.stop(), git?.stop()]);
  await fs.promises.rm(cacheDir, { recursive: true, force: true });
});

/** LIST requests the source API server has answered for `resource` (its apiserver_request_total). */
async function sourceLists(resource: string): Promise<number> {
  const text = (await kubectl(src.kubeconfigPath, ['get', '--raw', '/metrics'])).stdout;
  return [...text.matchAll(/^apiserver_request_total\{([^}]*)\} (\d+)/gm)]
    .filter(([, labels]) => labels!.includes('verb="LIST"') && labels!.includes(`resource="${resource}"`))
    .reduce((a, [, , n]) => a + Number(n), 0);
}

describe('the operator', () => {
  it('RemoteCluster: reachable through its kubeconfig Secret; a broken one says why in its conditions', async () => {
    const rc = await until('prod Ready', async () => {
      const o = JSON.parse((await kubectl(ctl.kubeconfigPath, ['get', 'remotecluster', 'prod', '-n', 'dr-syncer', '-o', 'json'])).stdout) as { status?: Status & { health?: string; serverVersion?: string } };
      return o.status?.health === 'Healthy' && o.status;
    });
    assert.equal(rc.serverVersion, 'v1.33.13');
    assert.equal(rc.conditions?.find((c) => c.type === 'Ready')?.status, 'True');

    await kubectl(ctl.kubeconfigPath, ['-n', 'dr-syncer', 'create', 'secret', 'generic', 'bad-kubeconfig', '--from-literal=kubeconfig=this is not a kubeconfig']);
    await ctlApply(JSON.stringify({ apiVersion: 'dr-syncer.io/v1alpha1', kind: 'RemoteCluster', metadata: { name: 'broken', namespace: 'dr-syncer' }, spec: { kubeconfigSecretRef: { name: 'bad-kubeconfig' } } }));
    await ctlApply(JSON.stringify({ apiVersion: 'dr-syncer.io/v1alpha1', kind: 'RemoteCluster', metadata: { name: 'missing', namespace: 'dr-syncer' }, spec: { kubeconfigSecretRef: { name: 'no-such-secret' } } }));
    for (const [name, reason] of [['broken', 'InvalidKubeconfig'], ['missing', 'KubeconfigSecretNotFound']] as const) {
      const st = await until(`${name} conditions`, async () => {
        const o = JSON.parse((await kubectl(ctl.kubeconfigPath, ['get', 'remotecluster', name, '-n', 'dr-syncer', '-o', 'json'])).stdout) as { status?: Status & { health?: string } };
        return o.status?.conditions && o.status;
      });
      assert.equal(st.health, 'Unhealthy');
      const c = st.conditions!.find((x) => x.type === 'KubeconfigAvailable')!;
      assert.equal(c.status, 'False');
      assert.equal(c.reason, reason);
      assert.ok(c.message.length > 20, c.message);
    }
    // Fixing the Secret (and the key it names) is picked up: the client is rebuilt from it.
    await kubectl(ctl.kubeconfigPath, ['-n', 'dr-syncer', 'create', 'secret', 'generic', 'bad-kubeconfig', `--from-file=config=${src.kubeconfigPath}`, '--dry-run=client', '-o', 'yaml'])
      .then((r) => kubectl(ctl.kubeconfigPath, ['apply', '-f', '-'], { input: r.stdout }));
    await kubectl(ctl.kubeconfigPath, ['-n', 'dr-syncer', 'patch', 'remotecluster', 'broken', '--type=merge', '-p', '{"spec":{"kubeconfigSecretRef":{"key":"config"}}}']);
    await until('broken becomes Healthy', async () => {
      const o = JSON.parse((await kubectl(ctl.kubeconfigPath, ['get', 'remotecluster', 'broken', '-n', 'dr-syncer', '-o', 'json'])).stdout) as { status?: { health?: string } };
      return o.status?.health === 'Healthy';
    });
    await until('a Reachable event on the RemoteCluster', async () =>
      (await kubectl(ctl.kubeconfigPath, ['-n', 'dr-syncer', 'get', 'events', '--field-selector', 'involvedObject.kind=RemoteCluster,involvedObject.name=broken,reason=Reachable', '-o', 'name'])).stdout.trim().length > 0);
  });

  it('Continuous: creates, edits and deletes at the source appear as commits within seconds; a burst is one commit', async () => {
    await srcApply('{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"cont"}}');
    await srcApply('{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"a","namespace":"cont"},"data":{"v":"1"}}');
    await ctlApply(replication('cont', { sourceNamespace: 'cont', mode: 'Continuous', continuous: { debounce: '500ms', resyncInterval: '1h' } }));
    const first = await until('first commit', async () => {
      const s = (await getRep('cont')).status;
      return s?.phase === 'Synced' && s.lastCommit ? s : undefined;
    });
    assert.equal(first.lastCommit, await head());
    assert.equal(first.conditions?.find((c) => c.type === 'Ready')?.status, 'True');
    assert.ok((await repoFiles('ctl/cont/cont')).includes('configmap-a.yaml'));

    const t0 = Date.now();
    await srcApply('{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"b","namespace":"cont"},"data":{"v":"1"}}');
    await until('create committed', async () => (await repoFiles('ctl/cont/cont')).includes('configmap-b.yaml'));
    const createLatency = Date.now() - t0;
    await kubectl(src.kubeconfigPath, ['-n', 'cont', 'patch', 'configmap', 'a', '--type=merge', '-p', '{"data":{"v":"2"}}']);
    await until('edit committed', async () => {
      const clone = await git.clone('dr');
      return (parse(await fs.promises.readFile(path.join(clone, 'ctl/cont/cont/configmap-a.yaml'), 'utf8')) as { data: { v: string } }).data.v === '2';
    });
    await kubectl(src.kubeconfigPath, ['-n', 'cont', 'delete', 'configmap', 'b']);
    await until('delete committed', async () => !(await repoFiles('ctl/cont/cont')).includes('configmap-b.yaml'));
    assert.ok(createLatency < 10_000, `create took ${createLatency} ms`);

    // Sustained edits while syncs run: every change must still arrive (a debounce timer pending
    // across a reconcile once stalled the watches for good).
    for (let i = 1; i <= 30; i++) {
      await kubectl(src.kubeconfigPath, ['-n', 'cont', 'patch', 'configmap', 'a', '--type=merge', '-p', JSON.stringify({ data: { v: `s${i}` } })]);
      await sleep(60);
    }
    await until('the last sustained edit committed', async () => {
      const clone = await git.clone('dr');
      return (parse(await fs.promises.readFile(path.join(clone, 'ctl/cont/cont/configmap-a.yaml'), 'utf8')) as { data: { v: string } }).data.v === 's30';
    });

    const before = await head();
    const burst = Array.from({ length: 15 }, (_, i) => `{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"burst-${i}","namespace":"cont"},"data":{"v":"1"}}`).join('\n');
    await srcApply(burst);
    await until('burst committed', async () => (await repoFiles('ctl/cont/cont')).filter((f) => f.startsWith('configmap-burst-')).length === 15);
    const clone = await git.clone('dr');
    const commits = (await git.git(['rev-list', `${before}..HEAD`], clone)).trim().split('\n').filter(Boolean);
    assert.ok(commits.length <= 2, `a burst of 15 changes made ${commits.length} commits`);
  });

  it('Continuous: the periodic resync is answered from the watch caches (no LIST) while the repository is as the last sync left it; a repository edited behind its back is repaired', async () => {
    // LimitRanges: no other Replication here reads them, so the API server's LIST count is this one's.
    const lists = () => sourceLists('limitranges');
    await srcApply('{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"resync"}}');
    await srcApply('{"apiVersion":"v1","kind":"LimitRange","metadata":{"name":"lr","namespace":"resync"},"spec":{"limits":[{"type":"Container","max":{"cpu":"2"}}]}}');
    await ctlApply(replication('resync', { sourceNamespace: 'resync', resourceTypes: ['limitranges'], mode: 'Continuous', continuous: { debounce: '200ms', resyncInterval: '2s' } }));
    const first = await until('first sync', async () => {
      const s = (await getRep('resync')).status;
      return s?.phase === 'Synced' && s.lastCommit ? s : undefined;
    });
    const listsBefore = await lists();
    const resynced = await until('two periodic resyncs', async () => {
      const s = (await getRep('resync')).status;
      return s?.lastSyncTime && Date.parse(s.lastSyncTime) >= Date.parse(first.lastSyncTime!) + 4000 ? s : undefined;
    }, 20_000);
    assert.equal(await lists(), listsBefore, 'no LIST of the source during the resyncs');
    assert.equal(resynced.phase, 'Synced');
    assert.deepEqual(resynced.resources?.map((r) => [r.kind, r.count]), [['LimitRange', 1]], 'the counts of the last full sync are kept');
    assert.equal(resynced.conditions?.find((c) => c.type === 'Synced')?.reason, 'UpToDate');

    // Someone deletes the file in the DR repository: the next periodic resync reads the source and restores it.
    const clone = await git.clone('dr');
    await fs.promises.rm(path.join(clone, 'ctl/resync/resync/limitrange-lr.yaml'));
    await git.git(['-c', 'user.name=t', '-c', 'user.email=t@x', 'commit', '-qam', 'someone edits the DR repository by hand'], clone);
    await git.git(['push', '-q', 'origin', 'HEAD:main'], clone);
    await until('the file restored by a periodic resync', async () => (await repoFiles('ctl/resync/resync')).includes('limitrange-lr.yaml'), 20_000);
    assert.ok(await lists() > listsBefore, 'that resync read the source');
    await kubectl(ctl.kubeconfigPath, ['-n', 'dr-syncer', 'patch', 'replication', 'resync', '--type=merge', '-p', '{"spec":{"paused":true}}']);
  });

  it('Continuous: after a sync with a warning, every periodic resync reads the source (the caches alone cannot vouch for it)', async () => {
    // ResourceQuotas: no other Replication here reads them. Naming secrets with secrets.mode Omit
    // is a warning on every sync, so no sync is exact.
    const lists = () => sourceLists('resourcequotas');
    await srcApply('{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"inexact"}}');
    await srcApply('{"apiVersion":"v1","kind":"ResourceQuota","metadata":{"name":"rq","namespace":"inexact"},"spec":{"hard":{"pods":"10"}}}');
    await ctlApply(replication('inexact', { sourceNamespace: 'inexact', resourceTypes: ['resourcequotas', 'secrets'], mode: 'Continuous', continuous: { debounce: '200ms', resyncInterval: '2s' } }));
    const first = await until('first sync', async () => {
      const s = (await getRep('inexact')).status;
      return s?.phase === 'Synced' && s.lastCommit ? s : undefined;
    });
    const synced = first.conditions?.find((c) => c.type === 'Synced')?.message ?? '';
    assert.match(synced, /secrets\.mode is Omit/, 'the sync warns');
    const listsBefore = await lists();
    await until('two periodic resyncs', async () => {
      const s = (await getRep('inexact')).status;
      return s?.lastSyncTime && Date.parse(s.lastSyncTime) >= Date.parse(first.lastSyncTime!) + 4000 ? s : undefined;
    }, 20_000);
    assert.ok(await lists() >= listsBefore + 2, `each periodic resync listed the source (${await lists()} LISTs, ${listsBefore} before)`);
    await kubectl(ctl.kubeconfigPath, ['-n', 'dr-syncer', 'patch', 'replication', 'inexact', '--type=merge', '-p', '{"spec":{"paused":true}}']);
  });

  it('Scheduled: syncs at creation, not before its tick, and shows nextSyncTime', async () => {
    await srcApply('{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"sched"}}');
    await srcApply('{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"a","namespace":"sched"},"data":{"v":"1"}}');
    await ctlApply(replication('sched', { sourceNamespace: 'sched', mode: 'Scheduled', schedule: '0 0 1 1 *' }));
    const s = await until('initial scheduled sync', async () => {
      const st = (await getRep('sched')).status;
      return st?.phase === 'Synced' && st.nextSyncTime ? st : undefined;
    });
    assert.ok(new Date(s.nextSyncTime!) > new Date(), 'nextSyncTime is in the future');
    assert.equal(new Date(s.nextSyncTime!).toISOString().slice(5, 16), '01-01T00:00');
    await srcApply('{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"b","namespace":"sched"},"data":{"v":"1"}}');
    await sleep(3000);
    assert.ok(!(await repoFiles('ctl/sched/sched')).includes('configmap-b.yaml'), 'a change between ticks is not synced');
    assert.equal((await getRep('sched')).status?.lastSyncTime, s.lastSyncTime);

    // A tick missed while no controller ran (the last sync is older than the last tick) runs
    // once, at the next reconcile, and no more.
    await ctlApply(replication('missed', { sourceNamespace: 'sched', mode: 'Scheduled', schedule: '@hourly' }));
    const m = await until('initial sync', async () => {
      const st = (await getRep('missed')).status;
      return st?.phase === 'Synced' ? st : undefined;
    });
    const twoHoursAgo = new Date(Date.now() - 2 * 3600_000).toISOString().replace(/\.\d{3}Z$/, 'Z');
    await kubectl(ctl.kubeconfigPath, ['-n', 'dr-syncer', 'patch', 'replication', 'missed', '--subresource=status', '--type=merge', '-p', JSON.stringify({ status: { lastSyncTime: twoHoursAgo } })]);
    await kubectl(ctl.kubeconfigPath, ['-n', 'dr-syncer', 'annotate', 'replication', 'missed', 'poke=1']);
    const caught = await until('the missed tick ran', async () => {
      const st = (await getRep('missed')).status;
      return st?.lastSyncTime && st.lastSyncTime !== twoHoursAgo && st.lastSyncTime >= m.lastSyncTime! ? st : undefined;
    });
    assert.ok(new Date(caught.nextSyncTime!).getTime() - Date.now() <= 3600_000, 'the next tick is within the hour');
    await kubectl(ctl.kubeconfigPath, ['-n', 'dr-syncer', 'annotate', 'replication', 'missed', 'poke=2', '--overwrite']);
    await sleep(2000);
    assert.equal((await getRep('missed')).status?.lastSyncTime, caught.lastSyncTime, 'it ran once, not again');
  });

  it('Manual: nothing before the trigger; the sync-now annotation (cleared after) and spec.trigger.manual run one sync each', async () => {
    await srcApply('{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"man"}}');
    await srcApply('{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"a","namespace":"man"},"data":{"v":"1"}}');
    await ctlApply(replication('man', { sourceNamespace: 'man', mode: 'Manual' }));
    await until('Pending', async () => (await getRep('man')).status?.phase === 'Pending');
    await sleep(1500);
    assert.deepEqual(await repoFiles('ctl/man/man'), []);
    assert.equal((await getRep('man')).metadata.finalizers?.includes('dr-syncer.io/cleanup'), true);

    await kubectl(ctl.kubeconfigPath, ['-n', 'dr-syncer', 'annotate', 'replication', 'man', 'dr-syncer.io/sync-now=true']);
    await until('annotation sync', async () => (await repoFiles('ctl/man/man')).includes('configmap-a.yaml'));
    await until('annotation cleared', async () => (await getRep('man')).metadata.annotations?.['dr-syncer.io/sync-now'] === undefined);

    await srcApply('{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"b","namespace":"man"},"data":{"v":"1"}}');
    await sleep(1500);
    assert.ok(!(await repoFiles('ctl/man/man')).includes('configmap-b.yaml'));
    await kubectl(ctl.kubeconfigPath, ['-n', 'dr-syncer', 'patch', 'replication', 'man', '--type=merge', '-p', '{"spec":{"trigger":{"manual":"run-1"}}}']);
    await until('trigger sync', async () => (await getRep('man')).status?.lastManualSync === 'run-1');
    assert.ok((await repoFiles('ctl/man/man')).includes('configmap-b.yaml'));
    // The third sync ends Synced too, not at the "Syncing" mark each sync writes first: nothing
    // reconciles a Manual Replication afterwards to mend it (it once stayed Syncing from the
    // second sync on, the final write comparing with a copy that had not seen the mark).
    await sleep(1000);
    const after = (await getRep('man')).status;
    assert.equal(after?.phase, 'Synced', JSON.stringify(after));
    assert.equal(after?.lastCommit, await head());
  });

  it('paused does nothing; unpausing resumes', async () => {
    await kubectl(ctl.kubeconfigPath, ['-n', 'dr-syncer', 'patch', 'replication', 'cont', '--type=merge', '-p', '{"spec":{"paused":true}}']);
    await until('Paused', async () => (await getRep('cont')).status?.phase === 'Paused');
    const h = await head();
    await srcApply('{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"while-paused","namespace":"cont"},"data":{"v":"1"}}');
    await kubectl(ctl.kubeconfigPath, ['-n', 'dr-syncer', 'annotate', 'replication', 'cont', 'dr-syncer.io/sync-now=1']);
    await sleep(2500);
    assert.ok(!(await repoFiles('ctl/cont/cont')).includes('configmap-while-paused.yaml'));
    assert.equal((await getRep('cont')).status?.conditions?.find((c) => c.type === 'Ready')?.reason, 'Paused');
    await kubectl(ctl.kubeconfigPath, ['-n', 'dr-syncer', 'patch', 'replication', 'cont', '--type=merge', '-p', '{"spec":{"paused":false}}']);
    await until('resumed', async () => (await repoFiles('ctl/cont/cont')).includes('configmap-while-paused.yaml'));
    assert.notEqual(await head(), h);
  });

  it('status: conditions carry observedGeneration; counts per kind; no reconcile loop (upstream 23)', async () => {
    const rep = await getRep('sched');
    const gen = rep.metadata.generation;
    for (const c of rep.status?.conditions ?? []) assert.equal(c.observedGeneration, gen, c.type);
    assert.deepEqual(rep.status?.resources, [{ group: '', kind: 'ConfigMap', count: 1 }]);
    const rv0 = rep.metadata.resourceVersion;
    await kubectl(ctl.kubeconfigPath, ['-n', 'dr-syncer', 'annotate', 'replication', 'sched', `dr-syncer.io/status-check=${Date.now()}`]);
    await sleep(5000);
    const rep2 = await getRep('sched');
    assert.equal(rep2.status?.lastSyncTime, rep.status?.lastSyncTime, 'an annotation is not a sync');
    assert.ok(Number(rep2.metadata.resourceVersion) - Number(rv0) < 50, 'the object is not rewritten in a loop');
    const events = (await kubectl(ctl.kubeconfigPath, ['-n', 'dr-syncer', 'get', 'events', '--field-selector', 'involvedObject.name=cont', '-o', 'json'])).stdout;
    assert.match(events, /"reason": "Committed"/);
    // The Paused Event on a Replication with few Events: 'cont' committed many times above, and
    // the per-object spam filter (25, as client-go's) may have used its tokens, as it should.
    await ctlApply(replication('pause-event', { sourceNamespace: 'sched', mode: 'Manual', paused: true }));
    await until('pause-event Paused', async () => (await getRep('pause-event')).status?.phase === 'Paused');
    await until('a Paused Event', async () => /"reason": "Paused"/.test((await kubectl(ctl.kubeconfigPath, ['-n', 'dr-syncer', 'get', 'events', '--field-selector', 'involvedObject.name=pause-event', '-o', 'json'])).stdout));
    await kubectl(ctl.kubeconfigPath, ['-n', 'dr-syncer', 'delete', 'replication', 'pause-event', '--wait=true']);
  });

  it('a broken Replication reports why and does not block the others', async () => {
    await ctlApply(replication('broken', { sourceNamespace: 'does-not-exist', mode: 'Continuous' }));
    await ctlApply(replication('norc', { sourceCluster: 'nope', sourceNamespace: 'cont', mode: 'Continuous' }));
    const st = await until('broken fails', async () => {
      const s = (await getRep('broken')).status;
      return s?.phase === 'Failed' && s;
    });
    assert.match(st.conditions!.find((c) => c.type === 'Ready')!.message, /source namespace "does-not-exist" does not exist/);
    const st2 = await until('norc fails', async () => (await getRep('norc')).status?.conditions?.find((c) => c.reason === 'RemoteClusterNotFound'));
    assert.match(st2.message, /RemoteCluster dr-syncer\/nope does not exist/);
    // A misspelled type is a condition that names it, and nothing is written for that Replication.
    await ctlApply(replication('typo', { sourceNamespace: 'cont', mode: 'Continuous', resourceTypes: ['configmaps', 'servcies'] }));
    const typo = await until('typo refused', async () => (await getRep('typo')).status?.conditions?.find((c) => c.type === 'Ready' && c.reason === 'UnknownResourceTypes'));
    assert.equal(typo.status, 'False');
    assert.match(typo.message, /"servcies" \(did you mean "services"\?\) is not served by the source cluster prod/);
    assert.deepEqual(await repoFiles('ctl/typo'), []);
    // Many watches on one source cluster (every namespaced type) must not starve its other requests.
    await ctlApply(replication('wide', { sourceNamespace: 'cont', mode: 'Continuous', resourceTypes: ['*'] }));
    await until('wide synced', async () => (await getRep('wide')).status?.phase === 'Synced');
    await srcApply('{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"still-works","namespace":"cont"},"data":{"v":"1"}}');
    await until('wide follows', async () => (await repoFiles('ctl/wide/cont')).includes('configmap-still-works.yaml'));
    await until('others still sync', async () => (await repoFiles('ctl/cont/cont')).includes('configmap-still-works.yaml'));
  });

  it('namespaceSelector: labelled namespaces map with the suffix; losing the label removes the folder', async () => {
    await srcApply('{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"shop","labels":{"dr":"yes"}}}\n{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"s","namespace":"shop"},"data":{"v":"1"}}');
    await ctlApply(replication('sel', { namespaceSelector: { labelSelector: { matchLabels: { dr: 'yes' } }, destinationSuffix: '-dr' }, mode: 'Continuous', continuous: { debounce: '500ms' } }));
    await until('shop-dr folder', async () => (await repoFiles('ctl/sel/shop-dr')).includes('configmap-s.yaml'));
    await srcApply('{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"blog","labels":{"dr":"yes"}}}\n{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"b","namespace":"blog"},"data":{"v":"1"}}');
    await until('new labelled namespace picked up', async () => (await repoFiles('ctl/sel/blog-dr')).includes('configmap-b.yaml'));
    await kubectl(src.kubeconfigPath, ['label', 'namespace', 'shop', 'dr-']);
    await until('unlabelled namespace folder removed', async () => (await repoFiles('ctl/sel/shop-dr')).length === 0);
    assert.deepEqual(await repoFiles('ctl/sel'), ['blog-dr', 'kustomization.yaml']);
  });

  it('metrics are exposed and parse; the finalizer removes only the Replication\'s folders', async () => {
    const text = await (await fetch(`http://127.0.0.1:${mgr.metricsPort}/metrics`)).text();
    const samples = new Map<string, number>();
    for (const line of text.split('\n')) {
      const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*(?:\{[^}]*\})?) (\S+)$/.exec(line);
      if (m) samples.set(m[1]!, Number(m[2]));
    }
    assert.ok((samples.get('dr_syncer_commits_total{replication="dr-syncer/cont"}') ?? 0) >= 4);
    assert.equal(samples.get('dr_syncer_objects_synced{replication="dr-syncer/sched",kind="ConfigMap"}'), 1);
    assert.ok((samples.get('dr_syncer_last_successful_sync_timestamp_seconds{replication="dr-syncer/man"}') ?? 0) > 1e9);
    assert.ok([...samples.keys()].some((k) => k.startsWith('controller_runtime_reconcile_total{controller="replication"')));
    assert.ok([...samples.keys()].some((k) => k.startsWith('workqueue_depth{name="replication"}')));
    assert.ok([...samples.keys()].some((k) => k.startsWith('dr_syncer_sync_duration_seconds_bucket')));
    assert.equal((await fetch(`http://127.0.0.1:${mgr.probePort}/readyz`)).status, 200);

    const before = await head();
    await kubectl(ctl.kubeconfigPath, ['-n', 'dr-syncer', 'delete', 'replication', 'man', '--wait=true', '--timeout=60s']);
    assert.deepEqual(await repoFiles('ctl/man'), []);
    assert.ok((await repoFiles('ctl/sched/sched')).includes('configmap-a.yaml'), 'other Replications keep their folders');
    const clone = await git.clone('dr');
    const log = (await git.git(['log', '--format=%s', `${before}..HEAD`], clone)).trim().split('\n');
    assert.ok(log.includes('dr-syncer: sync dr-syncer/man (2 removed)') || log.some((l) => /sync dr-syncer\/man \(\d+ removed\)/.test(l)), log.join('\n'));
    // The deleted Replication's metric series go with it.
    await until('metrics of the deleted Replication dropped', async () =>
      !(await (await fetch(`http://127.0.0.1:${mgr.metricsPort}/metrics`)).text()).includes('replication="dr-syncer/man"'));
  });
});
