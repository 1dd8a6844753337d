// The operator when things fail, against a real controller cluster, a real source cluster (also
// reached through a TCP proxy that can stop answering) and a real Git server that can answer 503:
// no change is lost (a Git outage, a rejected push, a source cluster without credentials or
// without answers, a restart), one unreachable cluster does not stall the others, deletion and a
// moved git path remove the folders with Git alone, status-only changes are not syncs, folders
// dr-syncer did not write are left alone, a taken metrics port stops the process, and a lost
// lease stops a sync before it pushes.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { generateIdentity, identityToRecipient } from 'age-encryption';
import { parse } from 'yaml';
import type { RunningManager } from '../../src/manager.ts';
import { startManager } from '../../src/manager.ts';
import { microTime } from '../../src/runtime/leader.ts';
import { createLogger } from '../../src/util/log.ts';
import type { TestCluster } from '../env/cluster.ts';
import { kubectl, startClusters } from '../env/cluster.ts';
import type { GitServer } from '../env/git-server.ts';
import { startGitServer } from '../env/git-server.ts';
import type { Proxy } from '../env/proxy.ts';
import { kubeconfigVia, startProxy } from '../env/proxy.ts';
import { untilWith } from '../env/wait.ts';

let ctl: TestCluster;
let src: TestCluster;
let git: GitServer;
let proxy: Proxy;
let repoUrl: string;
let mgr: RunningManager;
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'drs-ctlfail-'));
const log = createLogger({ level: process.env.TEST_LOG_LEVEL ?? 'silent', pretty: false });

type Cond = { type: string; status: string; reason: string; message: string };
type Status = { phase?: string; lastSyncTime?: string; lastSyncDuration?: string; lastCommit?: string; lastError?: { reason?: string; message: string }; conditions?: Cond[]; gitTargets?: unknown[] };
type Obj = { metadata: { annotations?: Record<string, string>; finalizers?: string[] }; status?: Status };

const ctlApply = (yaml: string, ns = 'dr-syncer') => kubectl(ctl.kubeconfigPath, ['-n', ns, 'apply', '-f', '-'], { input: yaml });
const srcApply = (yaml: string) => kubectl(src.kubeconfigPath, ['apply', '-f', '-'], { input: yaml });
const getRep = async (name: string, ns = 'dr-syncer'): Promise<Obj> => JSON.parse((await kubectl(ctl.kubeconfigPath, ['get', 'replication', name, '-n', ns, '-o', 'json'])).stdout) as Obj;
const ready = (s: Status | undefined) => s?.conditions?.find((c) => c.type === 'Ready');
const head = async () => (await git.git(['ls-remote', `${git.base}/dr.git`, 'refs/heads/main'])).split('\t')[0] ?? '';
const until = untilWith({ timeoutMs: 30_000 });

async function repoFiles(dir: string): Promise<string[]> {
  const clone = await git.clone('dr');
  const p = path.join(clone, dir);
  return fs.existsSync(p) ? (await fs.promises.readdir(p)).sort() : [];
}
async function repoValue(file: string): Promise<string | undefined> {
  const clone = await git.clone('dr');
  const p = path.join(clone, file);
  return fs.existsSync(p) ? (parse(await fs.promises.readFile(p, 'utf8')) as { data?: { v?: string } }).data?.v : undefined;
}
/** A commit by a person (the git CLI), retried when the controller pushed in between. */
const commitByHand = (message: string, change: (clone: string) => void) =>
  until(`pushed "${message}"`, async () => {
    const clone = await git.clone('dr');
    change(clone);
    await git.git(['add', '-A', '.'], clone);
    await git.git(['commit', '-qm', message], clone);
    await git.git(['push', '-q', 'origin', 'HEAD:main'], clone);
    return true;
  });
const configMap = (ns: string, name: string, v: string) => JSON.stringify({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name, namespace: ns }, data: { v } });
const namespace = (name: string) => JSON.stringify({ apiVersion: 'v1', kind: 'Namespace', metadata: { name } });

function replication(name: string, spec: Record<string, unknown>, ns = 'dr-syncer'): string {
  return JSON.stringify({
    apiVersion: 'dr-syncer.io/v1alpha1', kind: 'Replication', metadata: { name, namespace: ns },
    spec: {
      sourceCluster: 'prod', mode: 'Continuous', continuous: { debounce: '300ms', resyncInterval: '1h' }, resourceTypes: ['configmaps'],
      git: { url: repoUrl, path: `fail/${name}`, credentialsSecretRef: { name: 'git-creds' } }, ...spec,
    },
  });
}
const remoteCluster = (name: string, secret: string, ns = 'dr-syncer') =>
  JSON.stringify({ apiVersion: 'dr-syncer.io/v1alpha1', kind: 'RemoteCluster', metadata: { name, namespace: ns }, spec: { kubeconfigSecretRef: { name: secret } } });
const secretFromFile = (ns: string, name: string, file: string) => kubectl(ctl.kubeconfigPath, ['-n', ns, 'create', 'secret', 'generic', name, `--from-file=kubeconfig=${file}`]);
const gitCreds = (ns: string) => kubectl(ctl.kubeconfigPath, ['-n', ns, 'create', 'secret', 'generic', 'git-creds', `--from-literal=username=${git.user}`, `--from-literal=password=${git.password}`]);

const managerOptions = {
  metricsAddress: '127.0.0.1:0', probeAddress: '127.0.0.1:0', leaderElectionNamespace: 'dr-syncer', leaderElectionId: 'dr-syncer.io', clusterName: 'ctl', log,
  // Short enough that a test waits seconds, not minutes, for an unreachable cluster to be noticed.
  kubeClient: { timeoutMs: 3_000 },
  remoteClusterProbe: { healthyIntervalMs: 3_000, unhealthyIntervalMs: 1_000, timeoutMs: 1_500 },
};
const start = () => startManager({ ...managerOptions, kubeconfig: ctl.kubeconfigPath, leaderElect: false, workers: 2, cacheDir: path.join(tmp, 'cache') });

async function syncCount(port: number, rep: string, result: 'success' | 'error'): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  const m = new RegExp(`^dr_syncer_sync_duration_seconds_count\\{replication="${rep}",result="${result}"\\} (\\d+)`, 'm').exec(text);
  return m ? Number(m[1]) : 0;
}

before(async () => {
  const [clusters, server] = await Promise.all([startClusters(2), startGitServer()]);
  [ctl, src, git] = [clusters[0]!, clusters[1]!, server];
  repoUrl = await git.createRepo('dr');
  proxy = await startProxy(Number(new URL(src.server).port));
  await kubectl(ctl.kubeconfigPath, ['apply', '--server-side', '-f', path.resolve('crds')]);
  await kubectl(ctl.kubeconfigPath, ['wait', '--for=condition=Established', 'crd/replications.dr-syncer.io', 'crd/remoteclusters.dr-syncer.io']);
  await kubectl(ctl.kubeconfigPath, ['create', 'namespace', 'dr-syncer']);
  await secretFromFile('dr-syncer', 'prod-kubeconfig', src.kubeconfigPath);
  await secretFromFile('dr-syncer', 'prod2-kubeconfig', src.kubeconfigPath);
  await secretFromFile('dr-syncer', 'far-kubeconfig', kubeconfigVia(src.kubeconfigPath, proxy));
  await gitCreds('dr-syncer');
  await ctlApply([remoteCluster('prod', 'prod-kubeconfig'), remoteCluster('prod2', 'prod2-kubeconfig'), remoteCluster('far', 'far-kubeconfig')].join('\n'));
  mgr = await start();
});

after(async () => {
  await mgr?.stop();
  await proxy?.close();
  await Promise.all([ctl?.stop(), src?.stop(), git?.stop()]);
  await fs.promises.rm(tmp, { recursive: true, force: true });
});

describe('the operator when things fail', () => {
  it('an edit during a Git outage, and one whose push is rejected, land after recovery without waiting for the resync', async () => {
    await srcApply(`${namespace('outage')}\n${configMap('outage', 'a', '1')}`);
    await ctlApply(replication('outage', { sourceNamespace: 'outage' }));
    await until('first sync', async () => (await getRep('outage')).status?.phase === 'Synced');

    await git.fault({ status: 503 });
    await kubectl(src.kubeconfigPath, ['-n', 'outage', 'patch', 'configmap', 'a', '--type=merge', '-p', '{"data":{"v":"2"}}']);
    const failed = await until('the sync fails on the outage', async () => {
      const s = (await getRep('outage')).status;
      return s?.phase === 'Failed' && s;
    });
    assert.equal(failed.lastError?.reason, 'GitFailed');
    assert.match(failed.lastError?.message ?? '', /503/);
    await git.fault(undefined);
    await until('the edit lands after the outage', async () => (await repoValue('fail/outage/outage/configmap-a.yaml')) === '2');

    // Only the push fails now: the fetch works, the push is answered 503.
    await git.fault({ status: 503, match: 'git-receive-pack' });
    await kubectl(src.kubeconfigPath, ['-n', 'outage', 'patch', 'configmap', 'a', '--type=merge', '-p', '{"data":{"v":"3"}}']);
    await until('the push fails', async () => (await getRep('outage')).status?.phase === 'Failed');
    await git.fault(undefined);
    await until('the edit lands after the rejected push', async () => (await repoValue('fail/outage/outage/configmap-a.yaml')) === '3');
    const s = (await getRep('outage')).status;
    assert.equal(ready(s)?.status, 'True');
    assert.equal(s?.lastError, undefined);
  });

  it('rotated Git credentials: the sync fails saying the server refused them, and the change lands once the Secret holds the new password', async () => {
    await git.setUser('robot', 'first');
    const creds = (password: string) => kubectl(ctl.kubeconfigPath, ['-n', 'dr-syncer', 'create', 'secret', 'generic', 'robot-creds', '--from-literal=username=robot', `--from-literal=password=${password}`, '--dry-run=client', '-o', 'yaml'])
      .then((r) => ctlApply(r.stdout));
    await creds('first');
    await srcApply(`${namespace('rotate')}\n${configMap('rotate', 'a', '1')}`);
    await ctlApply(replication('rotate', { sourceNamespace: 'rotate', git: { url: repoUrl, path: 'fail/rotate', credentialsSecretRef: { name: 'robot-creds' } } }));
    await until('first sync', async () => (await repoValue('fail/rotate/rotate/configmap-a.yaml')) === '1');

    // The Git server takes only the new password from now on; the Secret still holds the old one.
    await git.setUser('robot', 'second');
    await kubectl(src.kubeconfigPath, ['-n', 'rotate', 'patch', 'configmap', 'a', '--type=merge', '-p', '{"data":{"v":"2"}}']);
    const failed = await until('the sync fails on the old password', async () => {
      const s = (await getRep('rotate')).status;
      return s?.phase === 'Failed' && s;
    });
    assert.equal(failed.lastError?.reason, 'GitAuthFailed');
    assert.match(failed.lastError?.message ?? '', /DR repository http:\/\/127\.0\.0\.1:\d+\/dr\.git .*authentication failed: the server refused the credentials .*; the credentials are those of Secret dr-syncer\/robot-creds$/);
    assert.equal(await repoValue('fail/rotate/rotate/configmap-a.yaml'), '1');

    await creds('second');
    await until('the change lands with the new password', async () => (await repoValue('fail/rotate/rotate/configmap-a.yaml')) === '2');
    // (The status is written after the push.)
    const s = await until('Ready again', async () => {
      const x = (await getRep('rotate')).status;
      return ready(x)?.status === 'True' && x;
    });
    assert.equal(s.lastError, undefined);
  });

  it('a change made while the source cluster has no credentials (watches removed) lands when they are back', async () => {
    await srcApply(`${namespace('creds')}\n${configMap('creds', 'a', '1')}`);
    await ctlApply(replication('creds', { sourceCluster: 'prod2', sourceNamespace: 'creds' }));
    await until('first sync', async () => (await repoValue('fail/creds/creds/configmap-a.yaml')) === '1');
    await kubectl(ctl.kubeconfigPath, ['-n', 'dr-syncer', 'delete', 'secret', 'prod2-kubeconfig']);
    const r = await until('NotReady', async () => {
      const c = ready((await getRep('creds')).status);
      return c?.reason === 'SourceClusterNotReady' && c;
    });
    assert.match(r.message, /Secret dr-syncer\/prod2-kubeconfig .*does not exist/);
    await kubectl(src.kubeconfigPath, ['-n', 'creds', 'patch', 'configmap', 'a', '--type=merge', '-p', '{"data":{"v":"2"}}']);
    await secretFromFile('dr-syncer', 'prod2-kubeconfig', src.kubeconfigPath);
    await until('the change made meanwhile lands', async () => (await repoValue('fail/creds/creds/configmap-a.yaml')) === '2');
  });

  it('a source cluster that stops answering stalls neither a Replication of another cluster on the same repository, nor its own change once it answers again', async () => {
    await srcApply(`${namespace('far')}\n${configMap('far', 'a', '1')}\n${namespace('near')}\n${configMap('near', 'n', '1')}`);
    await ctlApply(`${replication('far', { sourceCluster: 'far', sourceNamespace: 'far' })}\n${replication('near', { sourceNamespace: 'near' })}`);
    await until('both synced', async () => (await repoValue('fail/far/far/configmap-a.yaml')) === '1' && (await repoValue('fail/near/near/configmap-n.yaml')) === '1');

    proxy.blackhole();
    // A sync of the dark cluster starts at once (sync-now); before the fix it read the source
    // holding the repository's lock, without a timeout, and every Replication on it waited.
    await kubectl(ctl.kubeconfigPath, ['-n', 'dr-syncer', 'annotate', 'replication', 'far', 'dr-syncer.io/sync-now=1']);
    await kubectl(src.kubeconfigPath, ['-n', 'far', 'patch', 'configmap', 'a', '--type=merge', '-p', '{"data":{"v":"2"}}']);
    await kubectl(src.kubeconfigPath, ['-n', 'near', 'patch', 'configmap', 'n', '--type=merge', '-p', '{"data":{"v":"2"}}']);
    await until('the other cluster\'s Replication still syncs', async () => (await repoValue('fail/near/near/configmap-n.yaml')) === '2', 20_000);
    const c = await until('the dark one says why', async () => {
      const r = ready((await getRep('far')).status);
      return r?.status === 'False' && /Unreachable/.test(r.reason) && r;
    });
    assert.match(c.message, new RegExp(`far|127\\.0\\.0\\.1:${proxy.port}`));

    proxy.restore();
    await until('the change made while it did not answer lands', async () => (await repoValue('fail/far/far/configmap-a.yaml')) === '2', 60_000);
    await until('sync-now cleared', async () => (await getRep('far')).metadata.annotations?.['dr-syncer.io/sync-now'] === undefined);
  });

  it('status.lastSyncDuration is the whole sync, the read of a slow source included', async (t) => {
    await srcApply(`${namespace('slow')}\n${configMap('slow', 'a', '1')}`);
    await ctlApply(replication('slow', { sourceCluster: 'far', sourceNamespace: 'slow' }));
    await until('synced', async () => (await getRep('slow')).status?.phase === 'Synced' && (await repoValue('fail/slow/slow/configmap-a.yaml')) === '1');
    const before = (await getRep('slow')).status?.lastSyncTime;
    // Every answer of the source comes 0.6 s later: the read (the namespace, then its LIST) takes
    // at least 1.2 s; the rest of the sync (render, Git) does not go near the source.
    proxy.delay(600);
    t.after(() => proxy.delay(0));
    await kubectl(src.kubeconfigPath, ['-n', 'slow', 'patch', 'configmap', 'a', '--type=merge', '-p', '{"data":{"v":"2"}}']);
    const st = await until('the change synced', async () => {
      const s = (await getRep('slow')).status;
      return s?.phase === 'Synced' && s.lastSyncTime !== before && (await repoValue('fail/slow/slow/configmap-a.yaml')) === '2' ? s : undefined;
    }, 60_000);
    assert.ok(Number.parseFloat(st.lastSyncDuration ?? '0') >= 1.2, `lastSyncDuration ${st.lastSyncDuration}: the read of the source is part of the sync`);
  });

  it('status-only changes at the source are not syncs', async () => {
    await srcApply(`${namespace('quiet')}\n${configMap('quiet', 'a', '1')}`);
    await srcApply(JSON.stringify({
      apiVersion: 'apps/v1', kind: 'Deployment', metadata: { name: 'web', namespace: 'quiet' },
      spec: { replicas: 1, selector: { matchLabels: { app: 'web' } }, template: { metadata: { labels: { app: 'web' } }, spec: { containers: [{ name: 'c', image: 'nginx' }] } } },
    }));
    // The deployment controller's own first write (the revision annotation) is content: let it happen first.
    await until('the deployment controller saw it', async () =>
      (await kubectl(src.kubeconfigPath, ['-n', 'quiet', 'get', 'deployment', 'web', '-o', 'jsonpath={.metadata.annotations.deployment\\.kubernetes\\.io/revision}'])).stdout === '1');
    await ctlApply(replication('quiet', { sourceNamespace: 'quiet', resourceTypes: ['configmaps', 'deployments'] }));
    await until('first sync', async () => (await repoFiles('fail/quiet/quiet')).includes('deployment.apps-web.yaml'));
    await until('synced', async () => (await getRep('quiet')).status?.phase === 'Synced');
    const before = await syncCount(mgr.metricsPort, 'dr-syncer/quiet', 'success');
    for (let i = 1; i <= 5; i++) {
      await kubectl(src.kubeconfigPath, ['-n', 'quiet', 'patch', 'deployment', 'web', '--subresource=status', '--type=merge', '-p', JSON.stringify({ status: { collisionCount: i } })]);
    }
    // Longer than the debounce (300 ms) plus a sync: a status update counted as a change has started its sync by now.
    await new Promise((r) => setTimeout(r, 2500));
    await kubectl(src.kubeconfigPath, ['-n', 'quiet', 'patch', 'configmap', 'a', '--type=merge', '-p', '{"data":{"v":"2"}}']);
    await until('the content change lands', async () => (await repoValue('fail/quiet/quiet/configmap-a.yaml')) === '2');
    await until('its sync counted', async () => (await syncCount(mgr.metricsPort, 'dr-syncer/quiet', 'success')) > before);
    assert.equal(await syncCount(mgr.metricsPort, 'dr-syncer/quiet', 'success'), before + 1, 'one sync: the content change, none for the status updates');
  });

  it('a folder dr-syncer did not write is left as it is, with a condition saying so; the sync is retried until it can write', async () => {
    await commitByHand('by hand', (clone) => {
      fs.mkdirSync(path.join(clone, 'fail/foreign/handmade'), { recursive: true });
      fs.writeFileSync(path.join(clone, 'fail/foreign/handmade/deployment.yaml'), 'kind: Deployment # written by hand\n');
    });
    await srcApply(`${namespace('handmade')}\n${configMap('handmade', 'a', '1')}`);
    await ctlApply(replication('foreign', { sourceNamespace: 'handmade' }));
    const c = await until('FolderNotOwned', async () => {
      const r = ready((await getRep('foreign')).status);
      return r?.reason === 'FolderNotOwned' && r;
    });
    assert.match(c.message, /fail\/foreign\/handmade was not written by dr-syncer/);
    assert.deepEqual(await repoFiles('fail/foreign/handmade'), ['deployment.yaml']);
    // The refused sync is retried with backoff by itself: once the folder is moved away, it syncs.
    await commitByHand('move the hand-made folder away', (clone) => fs.rmSync(path.join(clone, 'fail/foreign/handmade'), { recursive: true }));
    await until('synced without a new trigger', async () => (await repoFiles('fail/foreign/handmade')).includes('configmap-a.yaml'), 90_000);
    assert.equal(ready((await getRep('foreign')).status)?.status, 'True');
  });

  it('a SOPS digest key Secret that cannot be used fails the sync with an error naming it (not "Syncing" forever)', async () => {
    const recipient = await identityToRecipient(await generateIdentity());
    await kubectl(ctl.kubeconfigPath, ['-n', 'dr-syncer', 'create', 'secret', 'generic', 'sealed-sops-digest', '--from-literal=other=x']);
    await srcApply(`${namespace('sealed')}\n${configMap('sealed', 'a', '1')}`);
    await ctlApply(replication('sealed', { sourceNamespace: 'sealed', resourceTypes: ['configmaps', 'secrets'], secrets: { mode: 'SOPS', sops: { ageRecipients: [recipient] } } }));
    const s = await until('Failed', async () => {
      const st = (await getRep('sealed')).status;
      return st?.phase === 'Failed' && st;
    });
    assert.equal(s.lastError?.reason, 'DigestKeyInvalid');
    assert.match(s.lastError?.message ?? '', /Secret dr-syncer\/sealed-sops-digest .*delete it/);
    await kubectl(ctl.kubeconfigPath, ['-n', 'dr-syncer', 'delete', 'secret', 'sealed-sops-digest']);
    await until('it syncs once the Secret is gone (retried with backoff)', async () => (await getRep('sealed')).status?.phase === 'Synced', 60_000);
  });

  it('changing spec.git.path removes the old folders', async () => {
    await srcApply(`${namespace('mover')}\n${configMap('mover', 'a', '1')}`);
    await ctlApply(replication('mover', { sourceNamespace: 'mover', git: { url: repoUrl, path: 'fail/move-a', credentialsSecretRef: { name: 'git-creds' } } }));
    await until('written at the first path', async () => (await repoFiles('fail/move-a/mover')).includes('configmap-a.yaml'));
    await kubectl(ctl.kubeconfigPath, ['-n', 'dr-syncer', 'patch', 'replication', 'mover', '--type=merge', '-p', '{"spec":{"git":{"path":"fail/move-b"}}}']);
    await until('written at the new path', async () => (await repoFiles('fail/move-b/mover')).includes('configmap-a.yaml'));
    await until('the old folders removed', async () => (await repoFiles('fail/move-a')).length === 0);
    await until('one target left in status', async () => (await getRep('mover')).status?.gitTargets?.length === 1);
  });

  it('deleting the namespace of a Replication (its kubeconfig Secret and RemoteCluster gone first) still removes its folders', async () => {
    await kubectl(ctl.kubeconfigPath, ['create', 'namespace', 'team']);
    await secretFromFile('team', 'prod-kubeconfig', src.kubeconfigPath);
    await gitCreds('team');
    await ctlApply(remoteCluster('prod', 'prod-kubeconfig', 'team'), 'team');
    await srcApply(`${namespace('teamapp')}\n${configMap('teamapp', 'a', '1')}`);
    await ctlApply(replication('app', { sourceNamespace: 'teamapp', git: { url: repoUrl, path: 'fail/team', credentialsSecretRef: { name: 'git-creds' } } }, 'team'), 'team');
    await until('synced', async () => (await repoFiles('fail/team/teamapp')).includes('configmap-a.yaml'));
    // The namespace goes while no controller runs (an upgrade, a crash): when one is back, the
    // kubeconfig Secret and the RemoteCluster are gone for sure; the Replication waits on its finalizer.
    await mgr.stop();
    await kubectl(ctl.kubeconfigPath, ['delete', 'namespace', 'team', '--wait=false']);
    await until('the kubeconfig Secret and the RemoteCluster are gone', async () =>
      (await kubectl(ctl.kubeconfigPath, ['-n', 'team', 'get', 'secret/prod-kubeconfig'], { check: false })).code !== 0 &&
      (await kubectl(ctl.kubeconfigPath, ['-n', 'team', 'get', 'remotecluster/prod'], { check: false })).code !== 0, 60_000);
    mgr = await start();
    await until('the folders are removed', async () => (await repoFiles('fail/team')).length === 0, 60_000);
    await until('the namespace is gone', async () => (await kubectl(ctl.kubeconfigPath, ['get', 'namespace', 'team'], { check: false })).code !== 0, 60_000);
  });

  it('a restart loses no pending change: an edit made while no controller ran lands when one is back', async () => {
    await srcApply(`${namespace('restart')}\n${configMap('restart', 'a', '1')}`);
    await ctlApply(replication('restart', { sourceNamespace: 'restart' }));
    await until('synced', async () => (await repoValue('fail/restart/restart/configmap-a.yaml')) === '1');
    await mgr.stop();
    await kubectl(src.kubeconfigPath, ['-n', 'restart', 'patch', 'configmap', 'a', '--type=merge', '-p', '{"data":{"v":"2"}}']);
    mgr = await start();
    await until('the edit lands', async () => (await repoValue('fail/restart/restart/configmap-a.yaml')) === '2');
  });

  it('a controller whose metrics port is taken exits non-zero, naming the address', async () => {
    const taken = net.createServer();
    await new Promise<void>((r) => taken.listen(0, '127.0.0.1', r));
    const address = `127.0.0.1:${(taken.address() as net.AddressInfo).port}`;
    try {
      const p = spawn(process.execPath, ['--import', 'tsx', path.resolve('src/cli/main.ts'), 'controller', '--kubeconfig', ctl.kubeconfigPath,
        '--metrics-bind-address', address, '--health-probe-bind-address', '127.0.0.1:0', '--cache-dir', path.join(tmp, 'cli-cache'), '--log-level', 'error'], { stdio: ['ignore', 'pipe', 'pipe'] });
      let stderr = '';
      p.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      const code = await Promise.race([
        new Promise<number | null>((r) => p.on('exit', (c) => r(c))),
        new Promise<'running'>((r) => setTimeout(() => r('running'), 30_000)),
      ]);
      if (code === 'running') p.kill('SIGKILL');
      assert.notEqual(code, 'running', 'the controller kept running');
      assert.equal(code, 1);
      assert.match(stderr, new RegExp(`cannot serve metrics on ${address.replace(/\./g, '\\.')}: the address is already in use`));
    } finally {
      await new Promise((r) => taken.close(r));
    }
  });

  /** A leader of namespace `ns` alone, in the middle of a sync whose fetch takes `fetchMs`. */
  async function leaderInASync(ns: string, fetchMs: number, onLostLeadership: () => void) {
    await kubectl(ctl.kubeconfigPath, ['create', 'namespace', ns]);
    await secretFromFile(ns, 'prod-kubeconfig', src.kubeconfigPath);
    await gitCreds(ns);
    await ctlApply(remoteCluster('prod', 'prod-kubeconfig', ns), ns);
    await srcApply(`${namespace(`${ns}app`)}\n${configMap(`${ns}app`, 'a', '1')}`);
    const leader = await startManager({
      ...managerOptions, kubeconfig: ctl.kubeconfigPath, leaderElect: true, leaderElectionNamespace: ns, namespace: ns, identity: `${ns}-holder`,
      workers: 1, cacheDir: path.join(tmp, `${ns}-cache`), lease: { durationMs: 3000, renewDeadlineMs: 2000, retryPeriodMs: 300 }, onLostLeadership,
    });
    await until('leading', async () => leader.isLeader());
    await ctlApply(replication(ns, { sourceNamespace: `${ns}app`, mode: 'Manual', git: { url: repoUrl, path: `fail/${ns}`, credentialsSecretRef: { name: 'git-creds' } } }, ns), ns);
    await until('Pending', async () => (await getRep(ns, ns)).status?.phase === 'Pending');
    const h0 = await head();
    await git.fault({ delayMs: fetchMs, match: 'git-upload-pack' });
    await kubectl(ctl.kubeconfigPath, ['-n', ns, 'annotate', 'replication', ns, 'dr-syncer.io/sync-now=1']);
    await until('the sync is fetching', async () => (await git.faultHits()) > 0);
    return { leader, h0 };
  }

  it('a lost lease stops a running sync before it pushes', async () => {
    await mgr.stop(); // only the leaders of these tests may sync
    let lost = 0;
    const { leader, h0 } = await leaderInASync('leased', 3000, () => lost++);
    try {
      // The fetch takes 3 s; the lease is taken over meanwhile.
      await kubectl(ctl.kubeconfigPath, ['-n', 'leased', 'patch', 'lease', 'dr-syncer.io', '--type=merge', '-p', JSON.stringify({ spec: { holderIdentity: 'thief', renewTime: microTime(new Date()), leaseDurationSeconds: 600 } })]);
      await until('leadership lost', async () => lost > 0 && !leader.isLeader());
      const ended = async (result: 'success' | 'error') => syncCount(leader.metricsPort, 'leased/leased', result);
      await until('the sync ended', async () => (await ended('error')) + (await ended('success')) > 0, 20_000);
      assert.equal(await head(), h0, 'nothing was pushed after the lease was lost');
      assert.deepEqual(await repoFiles('fail/leased'), []);
    } finally {
      await git.fault(undefined);
      await leader.stop();
    }
  });

  it('a stop (SIGTERM) during a sync: the sync stops before it pushes, and the lease is not handed over while it runs', async () => {
    const { leader, h0 } = await leaderInASync('stopped', 5000, () => {});
    try {
      // The fetch takes 5 s, longer than the lease (3 s): releasing after a lease duration would
      // let a follower start while this sync still runs.
      await leader.stop();
      const holder = (await kubectl(ctl.kubeconfigPath, ['-n', 'stopped', 'get', 'lease', 'dr-syncer.io', '-o', 'jsonpath={.spec.holderIdentity}'])).stdout;
      assert.equal(holder, 'stopped-holder', 'not released while the sync ran: it expires by itself');
      assert.equal(await head(), h0, 'nothing was pushed after the stop');
    } finally {
      await git.fault(undefined);
      await leader.stop();
    }
  });
});
