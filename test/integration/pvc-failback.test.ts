// Failback copies the PVC data written in the DR cluster during a failover back to the source
// (issue 11), on real nodes: a source and a DR cluster with one kubelet each, the agent image
// built from agent/Dockerfile, the controller in this process (its CRs in the source cluster).
// The forward copy runs through the source cluster's agents; the copy back through agents in
// the DR cluster (its RemoteCluster's spec.pvcSync), into the source PVC while the cutover keeps
// the source workload at 0. The test compares the volumes' directories on this host.
//
// Stand-ins, said plainly: the DR PVC is created by the test (GitOps would apply it), no GitOps
// tool runs in the DR cluster (so no DR workload runs and the failback need not wait for one),
// and the DR workloads' writes are made by the test into the DR volume's directory.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { RunningManager } from '../../src/manager.ts';
import { startManager } from '../../src/manager.ts';
import { createLogger } from '../../src/util/log.ts';
import type { BuiltImage, TestCluster } from '../env/cluster.ts';
import { kubectl, startClusters } from '../env/cluster.ts';
import type { GitServer } from '../env/git-server.ts';
import { startGitServer } from '../env/git-server.ts';
import { buildImage } from '../env/images.ts';
import { volumeDir } from '../env/volumes.ts';
import { eventually } from '../env/wait.ts';

let src: TestCluster;
let dr: TestCluster;
let git: GitServer;
let image: BuiltImage;
let mgr: RunningManager | undefined;
const cacheDir = fs.mkdtempSync(path.join(os.tmpdir(), 'drs-pvc-failback-'));
const DR_NS = 'app-dr';

type PvcStatus = { name: string; namespace: string; phase?: string; message?: string; bytesTransferred?: number; filesTransferred?: number };
type DataCopyBack = { phase?: string; message?: string; requestTime?: string; lastStartTime?: string; copiedTime?: string; pvcs?: PvcStatus[] };
type Failover = { state?: string; message?: string; failbackTime?: string; sourceScaledDown?: boolean; dataCopyBack?: DataCopyBack };
type Rep = {
  spec: Record<string, unknown>;
  status?: { lastCommit?: string; dataSync?: { phase?: string; lastManualSync?: string; lastCompletionTime?: string }; pvcs?: PvcStatus[]; failover?: Failover; conditions?: { type: string; status: string; reason: string; message: string }[] };
};

const ctl = (args: string[]) => kubectl(src.kubeconfigPath, args);
const json = async <T>(c: TestCluster, args: string[]): Promise<T> => JSON.parse((await kubectl(c.kubeconfigPath, [...args, '-o', 'json'])).stdout) as T;
const apply = (c: TestCluster, o: unknown) => kubectl(c.kubeconfigPath, ['apply', '-f', '-'], { input: JSON.stringify(o) });
const rep = () => json<Rep>(src, ['-n', 'dr-syncer', 'get', 'replication', 'shop']);
const patchRep = (spec: Record<string, unknown>) => ctl(['-n', 'dr-syncer', 'patch', 'replication', 'shop', '--type=merge', '-p', JSON.stringify({ spec })]);
const sourceReplicas = async () => (await json<{ spec: { replicas?: number } }>(src, ['-n', 'app', 'get', 'deployment', 'app'])).spec.replicas;

/** Per path: type, mode, owner, size, mtime (s), content hash, link target: what rsync -rlptgo keeps. */
function tree(root: string): Map<string, string> {
  const out = new Map<string, string>();
  const walk = (rel: string) => {
    for (const name of fs.readdirSync(path.join(root, rel)).sort()) {
      const r = path.join(rel, name);
      const p = path.join(root, r);
      const st = fs.lstatSync(p);
      if (st.isSymbolicLink()) out.set(r, `link -> ${fs.readlinkSync(p)} ${st.uid}:${st.gid}`);
      else if (st.isDirectory()) {
        out.set(r, `dir ${(st.mode & 0o7777).toString(8)} ${st.uid}:${st.gid}`);
        walk(r);
      } else {
        const sha = createHash('sha256').update(fs.readFileSync(p)).digest('hex');
        out.set(r, `file ${(st.mode & 0o7777).toString(8)} ${st.uid}:${st.gid} ${st.size} ${Math.floor(st.mtimeMs / 1000)} ${sha}`);
      }
    }
  };
  walk('');
  return out;
}

function assertSameTree(actual: string, expected: string, what: string) {
  const a = tree(actual);
  const e = tree(expected);
  assert.deepEqual([...a.keys()], [...e.keys()], `${what}: the same paths`);
  for (const [k, v] of e) assert.equal(a.get(k), v, `${what}: ${k}`);
}

const write = (dir: string, rel: string, data: string | Buffer, mode = 0o644) => {
  fs.mkdirSync(path.dirname(path.join(dir, rel)), { recursive: true });
  fs.writeFileSync(path.join(dir, rel), data);
  fs.chmodSync(path.join(dir, rel), mode);
};

before(async () => {
  const t0 = Date.now();
  let clusters: TestCluster[];
  [clusters, git, image] = await Promise.all([startClusters(2, { nodes: 1, pvsPerNode: 3 }), startGitServer(), buildImage('agent', 'agent/Dockerfile')]);
  [src, dr] = [clusters[0]!, clusters[1]!];
  await Promise.all([src.loadImage(image), dr.loadImage(image)]);
  console.log(`clusters and agent image ready in ${((Date.now() - t0) / 1000).toFixed(0)}s`);
  const repoUrl = await git.createRepo('dr');
  await ctl(['apply', '--server-side', '-f', path.resolve('crds')]);
  await ctl(['wait', '--for=condition=Established', 'crd/replications.dr-syncer.io', 'crd/remoteclusters.dr-syncer.io']);
  await ctl(['create', 'namespace', 'dr-syncer']);
  await ctl(['-n', 'dr-syncer', 'create', 'secret', 'generic', 'prod-kubeconfig', `--from-file=kubeconfig=${src.kubeconfigPath}`]);
  await ctl(['-n', 'dr-syncer', 'create', 'secret', 'generic', 'dr-kubeconfig', `--from-file=kubeconfig=${dr.kubeconfigPath}`]);
  await ctl(['-n', 'dr-syncer', 'create', 'secret', 'generic', 'git-creds', `--from-literal=username=${git.user}`, `--from-literal=password=${git.password}`]);
  await apply(src, { apiVersion: 'dr-syncer.io/v1alpha1', kind: 'RemoteCluster', metadata: { name: 'prod', namespace: 'dr-syncer' }, spec: { kubeconfigSecretRef: { name: 'prod-kubeconfig' }, pvcSync: { enabled: true, imagePullPolicy: 'Never' } } });
  // The DR cluster's agents are off at first: the failback must wait for them.
  await apply(src, { apiVersion: 'dr-syncer.io/v1alpha1', kind: 'RemoteCluster', metadata: { name: 'dr', namespace: 'dr-syncer' }, spec: { kubeconfigSecretRef: { name: 'dr-kubeconfig' }, git: { url: repoUrl, credentialsSecretRef: { name: 'git-creds' } } } });

  // The DR namespace has another name (spec.destinationNamespace): the copy back maps it back.
  const claim = (namespace: string) => ({ apiVersion: 'v1', kind: 'PersistentVolumeClaim', metadata: { name: 'data', namespace }, spec: { accessModes: ['ReadWriteOnce'], storageClassName: 'local', resources: { requests: { storage: '1Gi' } } } });
  for (const [c, ns] of [[src, 'app'], [dr, DR_NS]] as const) {
    await kubectl(c.kubeconfigPath, ['create', 'namespace', ns]);
    await apply(c, claim(ns));
  }
  // The source application: it mounts the volume (which binds it), and the cutover stops it.
  await apply(src, {
    apiVersion: 'apps/v1', kind: 'Deployment', metadata: { name: 'app', namespace: 'app' },
    spec: {
      replicas: 1, selector: { matchLabels: { app: 'app' } },
      template: {
        metadata: { labels: { app: 'app' } },
        spec: {
          terminationGracePeriodSeconds: 1,
          containers: [{ name: 'main', image: image.ref, imagePullPolicy: 'Never', command: ['node', '-e', 'setInterval(() => {}, 1 << 30)'], volumeMounts: [{ name: 'v', mountPath: '/v' }] }],
          volumes: [{ name: 'v', persistentVolumeClaim: { claimName: 'data' } }],
        },
      },
    },
  });
  await ctl(['-n', 'app', 'rollout', 'status', 'deployment/app', '--timeout=180s']);
  const dir = await volumeDir(src, 'app', 'data');
  write(dir, 'keep.txt', 'unchanged through the failover\n');
  write(dir, 'change.txt', 'before the failover\n');
  write(dir, 'delete-me.txt', 'deleted in DR\n');
  write(dir, 'gone/inside.txt', 'a directory deleted in DR\n');
  write(dir, 'db/table.bin', Buffer.alloc(200_000, 1), 0o600);
  fs.symlinkSync('keep.txt', path.join(dir, 'link'));

  mgr = await startManager({
    kubeconfig: src.kubeconfigPath, metricsAddress: '127.0.0.1:0', probeAddress: '127.0.0.1:0', leaderElect: false,
    leaderElectionNamespace: 'dr-syncer', leaderElectionId: 'dr-syncer.io', workers: 2, cacheDir, clusterName: 'ctl',
    // Each cluster's agents reach their own API server (test clusters have no kube-proxy).
    agent: { image: image.ref, imagePullPolicy: 'Never', podEnv: src.podApiEnv, podEnvFor: (site) => (site === 'dr' ? dr.podApiEnv : undefined) },
    remoteClusterProbe: { healthyIntervalMs: 5_000 },
    log: createLogger({ level: process.env.TEST_LOG_LEVEL ?? 'silent', pretty: false }),
  });
  await apply(src, {
    apiVersion: 'dr-syncer.io/v1alpha1', kind: 'Replication', metadata: { name: 'shop', namespace: 'dr-syncer' },
    spec: {
      sourceCluster: 'prod', destinationCluster: 'dr', sourceNamespace: 'app', destinationNamespace: DR_NS, mode: 'Manual', resourceTypes: ['deployments'],
      git: { path: 'prod' }, pvc: { syncData: true }, trigger: { manual: '1' },
    },
  });
});

after(async () => {
  await mgr?.stop();
  await Promise.all([src?.stop(), dr?.stop(), git?.stop()]);
  await fs.promises.rm(cacheDir, { recursive: true, force: true });
});

void describe('failback copies the PVC data back from the DR cluster', () => {
  let srcDir: string;
  let drDir: string;
  let sourceBefore: Map<string, string>;

  it('the data sync copies the source PVC to DR', async () => {
    // The first run may wait for the agents to start (Pending, retried after 15 s).
    const r = await eventually('the sync and the data sync of trigger 1', async () => {
      const x = await rep();
      return x.status?.lastCommit && x.status.dataSync?.lastManualSync === '1' && x.status.dataSync.phase === 'Synced' ? x : undefined;
    }, 300_000);
    assert.equal(r.status?.pvcs?.[0]?.phase, 'Synced', JSON.stringify(r.status?.pvcs));
    srcDir = await volumeDir(src, 'app', 'data');
    drDir = await volumeDir(dr, DR_NS, 'data');
    assertSameTree(drDir, srcDir, 'DR after the data sync');
  });

  it('failover with cutover: the source application stops; the DR site writes to its volume', async () => {
    await patchRep({ failover: { active: true, cutover: true, requestedBy: 'test' } });
    const fo = await eventually('FailedOver', async () => {
      const x = await rep();
      return x.status?.failover?.state === 'FailedOver' ? x.status.failover : undefined;
    }, 120_000);
    assert.equal(fo.sourceScaledDown, true);
    assert.equal(await sourceReplicas(), 0);
    await eventually('the source pod gone', async () => ((await json<{ items: unknown[] }>(src, ['-n', 'app', 'get', 'pods', '-l', 'app=app'])).items.length === 0 ? true : undefined), 120_000);
    sourceBefore = tree(srcDir);
    // What the DR workloads do while they are the active site.
    write(drDir, 'change.txt', 'written in DR during the failover, longer than before\n');
    fs.utimesSync(path.join(drDir, 'change.txt'), new Date('2030-01-02T03:04:05Z'), new Date('2030-01-02T03:04:05Z'));
    fs.rmSync(path.join(drDir, 'delete-me.txt'));
    fs.rmSync(path.join(drDir, 'gone'), { recursive: true });
    write(drDir, 'new/orders.json', '{"order": 42}\n', 0o640);
    fs.chownSync(path.join(drDir, 'new/orders.json'), 1234, 5678);
    fs.chownSync(path.join(drDir, 'new'), 1234, 5678);
    fs.chmodSync(path.join(drDir, 'db/table.bin'), 0o640);
    fs.appendFileSync(path.join(drDir, 'db/table.bin'), Buffer.alloc(50_000, 2));
    fs.symlinkSync('new/orders.json', path.join(drDir, 'latest'));
    assert.notDeepEqual(tree(drDir), sourceBefore);
  });

  it('failback without agents in the DR cluster waits and says to enable them; the source stays as it was, at 0', async () => {
    await patchRep({ failover: { active: false, cutover: null, requestedBy: 'test' } });
    const x = await eventually('waiting for DR agents', async () => {
      const r = await rep();
      return r.status?.failover?.state === 'CopyingDataBack' && /pvcSync\.enabled/.test(r.status.failover.dataCopyBack?.message ?? '') ? r : undefined;
    }, 120_000);
    const fo = x.status!.failover!;
    assert.equal(fo.dataCopyBack?.phase, 'Pending');
    assert.match(fo.dataCopyBack!.message!, /needs PVC-sync agents in DR cluster dr, which has none: set spec\.pvcSync\.enabled on RemoteCluster dr-syncer\/dr/);
    assert.match(fo.dataCopyBack!.message!, /spec\.failover\.force: true/);
    const ready = x.status?.conditions?.find((c) => c.type === 'Ready');
    assert.equal(ready?.reason, 'CopyingDataBack');
    // The failback relays it (at its next look).
    await eventually('the failback message names the missing agents', async () => ((await rep()).status?.failover?.message?.includes('spec.pvcSync.enabled on RemoteCluster dr-syncer/dr') ? true : undefined), 30_000);
    await new Promise((r) => setTimeout(r, 5_000));
    assert.equal((await rep()).status?.failover?.state, 'CopyingDataBack', 'still waiting');
    assert.equal(await sourceReplicas(), 0, 'the source is not restored before its data is back');
    assert.deepEqual(tree(srcDir), sourceBefore, 'nothing was copied');
  });

  it('with agents in the DR cluster the data comes back byte for byte, then the source is restored and the sync resumes', async () => {
    await ctl(['-n', 'dr-syncer', 'patch', 'remotecluster', 'dr', '--type=merge', '-p', JSON.stringify({ spec: { pvcSync: { enabled: true, imagePullPolicy: 'Never' } } })]);
    const x = await eventually('Standby', async () => {
      const r = await rep();
      return r.status?.failover?.state === 'Standby' ? r : undefined;
    }, 300_000);
    const fo = x.status!.failover!;
    const back = fo.dataCopyBack!;
    assert.equal(back.phase, 'Copied', JSON.stringify(back));
    assert.ok(back.copiedTime && back.lastStartTime && back.requestTime);
    assert.ok(fo.failbackTime! >= back.copiedTime, 'the source was restored after the copy');
    assert.match(back.message!, /^1 of 1 PVCs copied back from DR cluster dr to source cluster prod$/);
    assert.equal(back.pvcs?.length, 1);
    assert.deepEqual({ name: back.pvcs![0]!.name, namespace: back.pvcs![0]!.namespace, phase: back.pvcs![0]!.phase }, { name: 'data', namespace: 'app', phase: 'Synced' });
    assert.ok((back.pvcs![0]!.bytesTransferred ?? 0) > 50_000, 'the changes were sent');
    assert.match(fo.message!, /the PVC data was copied back from the DR cluster at /);
    assertSameTree(srcDir, drDir, 'the source after the failback');
    assert.equal(tree(srcDir).has('delete-me.txt'), false);
    assert.equal(await sourceReplicas(), 1, 'the source application is restored');
    const ready = x.status?.conditions?.find((c) => c.type === 'Ready');
    assert.notEqual(ready?.reason, 'CopyingDataBack');
    // The copy back did not touch the data sync's own status.
    assert.equal(x.status?.pvcs?.[0]?.namespace, 'app');
    // Nothing of the transfers is left: Jobs, Leases, agent registrations in either cluster.
    for (const [c, ns] of [[src, 'app'], [dr, DR_NS]] as const) {
      await eventually(`no transfer Job or pod left in ${c.name}`, async () => {
        const jobs = await json<{ items: unknown[] }>(c, ['get', 'jobs', '-A', '-l', 'dr-syncer.io/operation']);
        const pods = await json<{ items: unknown[] }>(c, ['get', 'pods', '-A', '-l', 'dr-syncer.io/operation']);
        return jobs.items.length + pods.items.length === 0 ? true : undefined;
      }, 60_000);
      const leases = await json<{ items: unknown[] }>(c, ['get', 'leases', '-n', ns, '-l', 'dr-syncer.io/operation']);
      assert.equal(leases.items.length, 0, `no PVC Lease left in ${c.name}`);
    }
    const cm = await json<{ data?: Record<string, string> }>(dr, ['-n', 'dr-syncer-agent', 'get', 'configmap', 'dr-syncer-agent']);
    assert.deepEqual(Object.keys(cm.data ?? {}).filter((k) => k.startsWith('target.')), [], 'no target left registered with the DR agents');
  });
});
