// PVC data when the source is the controller's own cluster (issue 9): no source RemoteCluster;
// the agents' settings come from the controller's --local-pvc-sync (the Helm chart's pvcSync
// values), passed here as startManager's localPvcSync. Real nodes (one kubelet per cluster), the
// agent image built from agent/Dockerfile. Also: without those settings such a Replication waits
// with a reason that says what to set, and a RemoteCluster for the same cluster cannot take the
// controller's agents over.
import assert from 'node:assert/strict';
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
const cacheDir = fs.mkdtempSync(path.join(os.tmpdir(), 'drs-pvc-local-'));

type RepStatus = { pvcs?: { name: string; phase?: string; message?: string; bytesTransferred?: number; lastAttemptTime?: string }[]; dataSync?: { phase?: string; message?: string; lastManualSync?: string } };
const json = async <T>(c: TestCluster, args: string[]): Promise<T> => JSON.parse((await kubectl(c.kubeconfigPath, [...args, '-o', 'json'])).stdout) as T;
const apply = (c: TestCluster, o: unknown) => kubectl(c.kubeconfigPath, ['apply', '-f', '-'], { input: JSON.stringify(o) });
const ctl = (args: string[]) => kubectl(src.kubeconfigPath, args);
const patchRep = (spec: Record<string, unknown>) => ctl(['-n', 'dr-syncer', 'patch', 'replication', 'local-data', '--type=merge', '-p', JSON.stringify({ spec })]);
const repStatus = async () => (await json<{ status?: RepStatus }>(src, ['-n', 'dr-syncer', 'get', 'replication', 'local-data'])).status ?? {};

const start = (localPvcSync?: { enabled: boolean; imagePullPolicy?: 'Never' }) =>
  startManager({
    kubeconfig: src.kubeconfigPath, metricsAddress: '127.0.0.1:0', probeAddress: '127.0.0.1:0', leaderElect: false,
    leaderElectionNamespace: 'dr-syncer', leaderElectionId: 'dr-syncer.io', workers: 2, cacheDir, clusterName: 'home',
    agent: { image: image.ref, imagePullPolicy: 'Never', podEnv: src.podApiEnv },
    remoteClusterProbe: { healthyIntervalMs: 5_000 },
    ...(localPvcSync ? { localPvcSync } : {}),
    log: createLogger({ level: process.env.TEST_LOG_LEVEL ?? 'silent', pretty: false }),
  });

/** A local PV binds when a pod uses the claim (WaitForFirstConsumer): a Job writes a file into it. */
async function writeWith(job: string, claim: string) {
  await apply(src, {
    apiVersion: 'batch/v1', kind: 'Job', metadata: { name: job, namespace: 'app' },
    spec: {
      backoffLimit: 0,
      template: {
        spec: {
          restartPolicy: 'Never',
          containers: [{ name: 'w', image: image.ref, imagePullPolicy: 'Never', command: ['node', '-e', "require('fs').writeFileSync('/v/hello.txt', 'from the controller\\'s own cluster\\n')"], volumeMounts: [{ name: 'v', mountPath: '/v' }] }],
          volumes: [{ name: 'v', persistentVolumeClaim: { claimName: claim } }],
        },
      },
    },
  });
  await ctl(['-n', 'app', 'wait', '--for=condition=Complete', '--timeout=180s', `job/${job}`]);
}

before(async () => {
  let clusters: TestCluster[];
  [clusters, git, image] = await Promise.all([startClusters(2, { nodes: 1, pvsPerNode: 3 }), startGitServer(), buildImage('agent', 'agent/Dockerfile')]);
  [src, dr] = [clusters[0]!, clusters[1]!];
  await Promise.all([src.loadImage(image), dr.loadImage(image)]);
  const repoUrl = await git.createRepo('dr');
  await ctl(['apply', '--server-side', '-f', path.resolve('crds')]);
  await ctl(['wait', '--for=condition=Established', 'crd/replications.dr-syncer.io', 'crd/remoteclusters.dr-syncer.io']);
  await ctl(['create', 'namespace', 'dr-syncer']);
  await ctl(['-n', 'dr-syncer', 'create', 'secret', 'generic', 'dr-kubeconfig', `--from-file=kubeconfig=${dr.kubeconfigPath}`]);
  await ctl(['-n', 'dr-syncer', 'create', 'secret', 'generic', 'home-kubeconfig', `--from-file=kubeconfig=${src.kubeconfigPath}`]);
  await ctl(['-n', 'dr-syncer', 'create', 'secret', 'generic', 'git-creds', `--from-literal=username=${git.user}`, `--from-literal=password=${git.password}`]);
  await apply(src, { apiVersion: 'dr-syncer.io/v1alpha1', kind: 'RemoteCluster', metadata: { name: 'dr', namespace: 'dr-syncer' }, spec: { kubeconfigSecretRef: { name: 'dr-kubeconfig' }, git: { url: repoUrl, credentialsSecretRef: { name: 'git-creds' } } } });
  const claim = { apiVersion: 'v1', kind: 'PersistentVolumeClaim', metadata: { name: 'files', namespace: 'app' }, spec: { accessModes: ['ReadWriteOnce'], storageClassName: 'local', resources: { requests: { storage: '1Gi' } } } };
  for (const c of [src, dr]) {
    await kubectl(c.kubeconfigPath, ['create', 'namespace', 'app']);
    await apply(c, claim);
  }
  await writeWith('writer', 'files');
  await apply(src, {
    apiVersion: 'dr-syncer.io/v1alpha1', kind: 'Replication', metadata: { name: 'local-data', namespace: 'dr-syncer' },
    spec: { destinationCluster: 'dr', sourceNamespace: 'app', mode: 'Manual', resourceTypes: ['configmaps'], git: { path: 'home' }, pvc: { syncData: true }, trigger: { manual: '1' } },
  });
});

after(async () => {
  await mgr?.stop();
  await Promise.all([src?.stop(), dr?.stop(), git?.stop()]);
  await fs.promises.rm(cacheDir, { recursive: true, force: true });
});

void describe('PVC data from the controller\'s own cluster', () => {
  it('without --local-pvc-sync, a Replication without sourceCluster waits and says what to set', async () => {
    mgr = await start();
    const s = await eventually('data sync Pending', async () => {
      const st = await repStatus();
      return st.dataSync?.phase === 'Pending' ? st : undefined;
    }, 60_000);
    assert.match(s.dataSync!.message!, /pvcSync\.enabled=true \(controller flag --local-pvc-sync\)/);
    const agentNs = await kubectl(src.kubeconfigPath, ['get', 'namespace', 'dr-syncer-agent'], { check: false });
    assert.notEqual(agentNs.code, 0, 'no agents were deployed');
    await mgr.stop();
    mgr = undefined;
  });

  it('with it, the controller runs the agents in its own cluster and copies the data', async () => {
    mgr = await start({ enabled: true, imagePullPolicy: 'Never' });
    const s = await eventually('data sync Synced', async () => {
      const st = await repStatus();
      return st.dataSync?.phase === 'Synced' ? st : undefined;
    }, 300_000);
    assert.equal(s.pvcs?.[0]?.name, 'files');
    assert.ok((s.pvcs?.[0]?.bytesTransferred ?? 0) > 0);
    const copied = path.join(await volumeDir(dr, 'app', 'files'), 'hello.txt');
    assert.equal(fs.readFileSync(copied, 'utf8'), 'from the controller\'s own cluster\n');
    // Keys in the controller's namespace, named after --cluster-name; the agents carry that host key.
    const host = await json<{ metadata: { annotations: Record<string, string> } }>(src, ['-n', 'dr-syncer', 'get', 'secret', 'home-pvc-agent-host-key']);
    const ds = await json<{ spec: { template: { metadata: { annotations: Record<string, string> } } } }>(src, ['-n', 'dr-syncer-agent', 'get', 'daemonset', 'dr-syncer-agent']);
    assert.ok(Object.values(ds.spec.template.metadata.annotations).includes(host.metadata.annotations['dr-syncer.io/fingerprint']!), 'the agents run with the controller\'s host key');
    const metrics = await (await fetch(`http://127.0.0.1:${mgr.metricsPort}/metrics`)).text();
    assert.match(metrics, /dr_syncer_agents_ready\{source="home"\} 1/);
    assert.match(metrics, /dr_syncer_agents_desired\{source="home"\} 1/);
  });

  it('a RemoteCluster for the same cluster cannot take over the controller\'s agents', async () => {
    await apply(src, { apiVersion: 'dr-syncer.io/v1alpha1', kind: 'RemoteCluster', metadata: { name: 'home-again', namespace: 'dr-syncer' }, spec: { kubeconfigSecretRef: { name: 'home-kubeconfig' }, pvcSync: { enabled: true, imagePullPolicy: 'Never' } } });
    const cond = await eventually('home-again refused', async () => {
      const o = await json<{ status?: { conditions?: { type: string; status: string; reason: string; message: string }[] } }>(src, ['-n', 'dr-syncer', 'get', 'remotecluster', 'home-again']);
      return o.status?.conditions?.find((c) => c.type === 'AgentsReady');
    }, 60_000);
    assert.equal(cond.status, 'False');
    assert.equal(cond.reason, 'AgentDeployFailed');
    assert.match(cond.message, /belong to the dr-syncer controller of namespace dr-syncer \(--local-pvc-sync\)/);
  });

  it('an owned PVC (a generic ephemeral volume) is listed as not copied, with the reason; a retry copies only what did not complete', async () => {
    // Owned by a ConfigMap standing in for the Pod of a generic ephemeral volume: the owner is what the DR cluster recreates.
    const owner = await json<{ metadata: { uid: string } }>(src, ['-n', 'app', 'create', 'configmap', 'holder']);
    await apply(src, {
      apiVersion: 'v1', kind: 'PersistentVolumeClaim',
      metadata: { name: 'scratch', namespace: 'app', ownerReferences: [{ apiVersion: 'v1', kind: 'ConfigMap', name: 'holder', uid: owner.metadata.uid }] },
      spec: { accessModes: ['ReadWriteOnce'], storageClassName: 'local', resources: { requests: { storage: '1Gi' } } },
    });
    // And a selected PVC whose DR PVC does not exist yet: the run ends Pending.
    await apply(src, { apiVersion: 'v1', kind: 'PersistentVolumeClaim', metadata: { name: 'late', namespace: 'app' }, spec: { accessModes: ['ReadWriteOnce'], storageClassName: 'local', resources: { requests: { storage: '1Gi' } } } });
    await writeWith('late-writer', 'late');
    await patchRep({ trigger: { manual: '2' } });
    const s = await eventually('run 2 done', async () => {
      const st = await repStatus();
      return st.dataSync?.lastManualSync === '2' && st.dataSync.phase !== 'Syncing' ? st : undefined;
    }, 300_000);
    assert.equal(s.dataSync?.phase, 'Pending', JSON.stringify(s.dataSync));
    const by = (st: RepStatus, n: string) => st.pvcs?.find((p) => p.name === n);
    assert.equal(by(s, 'scratch')?.phase, 'Skipped');
    assert.match(by(s, 'scratch')!.message!, /not copied: owned by ConfigMap\/holder/);
    assert.equal(by(s, 'files')?.phase, 'Synced');
    assert.equal(by(s, 'late')?.phase, 'Pending');
    const filesAttempt = by(s, 'files')!.lastAttemptTime;
    // The retry (15 s after a Pending run) copies only 'late', once its DR PVC exists.
    await apply(dr, { apiVersion: 'v1', kind: 'PersistentVolumeClaim', metadata: { name: 'late', namespace: 'app' }, spec: { accessModes: ['ReadWriteOnce'], storageClassName: 'local', resources: { requests: { storage: '1Gi' } } } });
    const r = await eventually('retry done', async () => {
      const st = await repStatus();
      return st.dataSync?.phase === 'Synced' ? st : undefined;
    }, 300_000);
    assert.equal(by(r, 'late')?.phase, 'Synced');
    assert.equal(by(r, 'files')?.lastAttemptTime, filesAttempt, 'the PVC copied by the run before was not copied again');
    assert.equal(by(r, 'scratch')?.phase, 'Skipped');
  });

  it('pausing the Replication stops a running copy: status Stopped, no Job left', async () => {
    const dir = await volumeDir(src, 'app', 'files');
    fs.writeFileSync(path.join(dir, 'big.bin'), Buffer.alloc(8 << 20, 7));
    await patchRep({ pvc: { syncData: true, dataSync: { bandwidthLimit: 100 } }, trigger: { manual: '3' } });
    await eventually('rsync Job running in the DR cluster', async () => {
      const jobs = await json<{ items: unknown[] }>(dr, ['-n', 'app', 'get', 'jobs', '-l', 'app.kubernetes.io/name=dr-syncer-rsync']);
      return jobs.items.length > 0 ? true : undefined;
    }, 120_000);
    await patchRep({ paused: true });
    const s = await eventually('data sync Stopped', async () => {
      const st = await repStatus();
      return st.dataSync?.phase === 'Stopped' ? st : undefined;
    }, 60_000);
    assert.match(s.dataSync!.message!, /the Replication was paused/);
    for (const c of [src, dr]) {
      await eventually(`no transfer Job left in ${c.name}`, async () => {
        const jobs = await json<{ items: unknown[] }>(c, ['get', 'jobs', '-A', '-l', 'dr-syncer.io/operation']);
        return jobs.items.length === 0 ? true : undefined;
      }, 60_000);
    }
    const leases = await json<{ items: unknown[] }>(src, ['get', 'leases', '-n', 'app', '-l', 'dr-syncer.io/operation']);
    assert.equal(leases.items.length, 0, 'no PVC Lease left');
  });

  it('Pod Security: a DR namespace enforcing restricted fails the copy at once, saying why; baseline on both sides copies', async () => {
    fs.rmSync(path.join(await volumeDir(src, 'app', 'files'), 'big.bin'));
    await kubectl(dr.kubeconfigPath, ['label', '--overwrite', 'namespace', 'app', 'pod-security.kubernetes.io/enforce=restricted']);
    await patchRep({ paused: false, pvc: { syncData: true, dataSync: { bandwidthLimit: null } }, trigger: { manual: '4' } });
    const failed = await eventually('run 4 failed', async () => {
      const st = await repStatus();
      return st.dataSync?.lastManualSync === '4' && st.dataSync.phase === 'Failed' ? st : undefined;
    }, 120_000);
    const files = failed.pvcs?.find((p) => p.name === 'files');
    assert.equal(files?.phase, 'Failed');
    // The Job controller's FailedCreate Event, with what to do: not a timeout without a reason.
    assert.match(files!.message!, /rsync Job app\/\S+ in .* cannot create its pod: .*violates PodSecurity "restricted/);
    assert.match(files!.message!, /must be baseline or privileged/);
    for (const c of [src, dr]) {
      await eventually(`no transfer Job left in ${c.name}`, async () => {
        const jobs = await json<{ items: unknown[] }>(c, ['get', 'jobs', '-A', '-l', 'dr-syncer.io/operation']);
        return jobs.items.length === 0 ? true : undefined;
      }, 60_000);
    }

    // baseline on both sides: the endpoint (root, DAC_OVERRIDE) and the rsync Job are admitted.
    for (const c of [src, dr]) await kubectl(c.kubeconfigPath, ['label', '--overwrite', 'namespace', 'app', 'pod-security.kubernetes.io/enforce=baseline']);
    fs.writeFileSync(path.join(await volumeDir(src, 'app', 'files'), 'after-baseline.txt'), 'admitted\n');
    await patchRep({ trigger: { manual: '5' } });
    await eventually('run 5 synced', async () => {
      const st = await repStatus();
      return st.dataSync?.lastManualSync === '5' && st.dataSync.phase === 'Synced' ? st : undefined;
    }, 300_000);
    assert.equal(fs.readFileSync(path.join(await volumeDir(dr, 'app', 'files'), 'after-baseline.txt'), 'utf8'), 'admitted\n');
  });
});
