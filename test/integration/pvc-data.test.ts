// PVC data replication end to end, on real nodes (issue 9): two clusters with two kubelets each,
// the agent image built from agent/Dockerfile and run by those kubelets. The controller (in this
// process, against the source cluster, which also holds the CRs) deploys the agent DaemonSet into
// the source cluster; for each PVC it starts the rsync endpoint Job on the PVC's node, registers
// it with that node's agent, and runs the rsync Job in the DR cluster, which goes through the
// agent with pinned host keys. The test compares the volumes' directories byte for byte,
// with owners, modes, symlinks, hard links and mtimes.
//
// Stand-in, said plainly: the DR PVCs are created by the test, where in production Argo CD or
// Flux applies them from the DR repository (test/integration/flux.test.ts shows Flux doing so).
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
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

const run = promisify(execFile);
let src: TestCluster;
let dr: TestCluster;
let git: GitServer;
let image: BuiltImage;
let mgr: RunningManager | undefined;
let child: ChildProcess | undefined;
const cacheDir = fs.mkdtempSync(path.join(os.tmpdir(), 'drs-pvc-cache-'));
const locked: string[] = [];

type PvcStatus = { name: string; namespace: string; phase?: string; bytesTransferred?: number; filesTransferred?: number; lastSyncTime?: string; lastSyncDuration?: string; lastExitCode?: number; lastAttemptTime?: string; message?: string };
type RepStatus = { pvcs?: PvcStatus[]; dataSync?: { phase?: string; message?: string; lastManualSync?: string; lastStartTime?: string; lastCompletionTime?: string } };
type Agents = { ready: number; total: number; hostKeyFingerprint?: string; clientKeyFingerprint?: string; nodes?: { node: string; ready: boolean; address?: string }[] };

const ctl = (args: string[], input?: string) => kubectl(src.kubeconfigPath, args, input === undefined ? {} : { input });
const json = async <T>(c: TestCluster, args: string[]): Promise<T> => JSON.parse((await kubectl(c.kubeconfigPath, [...args, '-o', 'json'])).stdout) as T;
const apply = (c: TestCluster, o: unknown) => kubectl(c.kubeconfigPath, ['apply', '-f', '-'], { input: JSON.stringify(o) });
const repStatus = async () => (await json<{ status?: RepStatus }>(src, ['-n', 'dr-syncer', 'get', 'replication', 'data'])).status ?? {};
const agents = async () => (await json<{ status?: { agents?: Agents } }>(src, ['-n', 'dr-syncer', 'get', 'remotecluster', 'prod'])).status?.agents;

interface Entry { type: string; mode: number; uid: number; gid: number; mtime?: number; size?: number; sha256?: string; target?: string; ino?: number }

/** Everything rsync -rlptgoH promises to keep, per path. Hard links show as equal inode groups. */
function snapshot(root: string): Record<string, Entry> {
  const out: Record<string, Entry> = {};
  const inodes = new Map<number, string>();
  const walk = (rel: string) => {
    const p = path.join(root, rel);
    for (const name of fs.readdirSync(p).sort()) {
      const r = path.join(rel, name);
      const st = fs.lstatSync(path.join(root, r));
      const e: Entry = { type: st.isSymbolicLink() ? 'link' : st.isDirectory() ? 'dir' : 'file', mode: st.mode & 0o7777, uid: st.uid, gid: st.gid };
      if (st.isSymbolicLink()) e.target = fs.readlinkSync(path.join(root, r));
      else if (st.isFile()) {
        e.size = st.size;
        e.mtime = Math.floor(st.mtimeMs / 1000);
        e.sha256 = createHash('sha256').update(fs.readFileSync(path.join(root, r))).digest('hex');
        if (st.nlink > 1) {
          const first = inodes.get(st.ino);
          if (first) e.target = `hardlink:${first}`;
          else inodes.set(st.ino, r);
        }
      }
      if (e.type === 'link') delete (e as Partial<Entry>).mode; // symlink modes are not kept (nor meaningful) on Linux
      out[r] = e;
      if (st.isDirectory()) walk(r);
    }
  };
  walk('');
  return out;
}

function assertSame(a: string, b: string, what: string) {
  const sa = snapshot(a);
  const sb = snapshot(b);
  assert.deepEqual(Object.keys(sb).sort(), Object.keys(sa).sort(), `${what}: the same paths`);
  for (const k of Object.keys(sa)) assert.deepEqual(sb[k], sa[k], `${what}: ${k}`);
}

/** A volume with what a real one has: nesting, odd names, owners, modes, links, an empty file. */
function populate(dir: string) {
  const w = (rel: string, data: string | Buffer, mode = 0o644) => {
    fs.mkdirSync(path.dirname(path.join(dir, rel)), { recursive: true });
    fs.writeFileSync(path.join(dir, rel), data, { mode });
    fs.chmodSync(path.join(dir, rel), mode);
  };
  w('plain.txt', 'hello\n');
  w('dir with space/ünïcödé 名前.txt', 'unicode\n');
  w('a/b/c/deep.bin', randomBytes(300_000));
  w('empty', '');
  w('run.sh', '#!/bin/sh\necho hi\n', 0o755);
  w('secret.key', 'k\n', 0o600);
  w('owned/by-app.txt', 'owned\n', 0o640);
  fs.chownSync(path.join(dir, 'owned/by-app.txt'), 1234, 5678);
  fs.chownSync(path.join(dir, 'owned'), 1234, 5678);
  fs.symlinkSync('plain.txt', path.join(dir, 'link-to-plain'));
  fs.symlinkSync('/nonexistent/target', path.join(dir, 'dangling'));
  fs.linkSync(path.join(dir, 'plain.txt'), path.join(dir, 'hardlink-to-plain'));
  fs.mkdirSync(path.join(dir, 'sticky'), { mode: 0o1777 });
  fs.chmodSync(path.join(dir, 'sticky'), 0o1777);
  for (let i = 0; i < 200; i++) w(`many/f${String(i).padStart(3, '0')}.txt`, `file ${i}\n`);
  // Names a shell would act on: they must arrive as names.
  w('$(touch pwned); `id` & echo.txt', 'not a command\n');
  w('-e ssh', 'an option-like name\n');
}

async function trigger(value: string): Promise<RepStatus> {
  await ctl(['-n', 'dr-syncer', 'patch', 'replication', 'data', '--type=merge', '-p', JSON.stringify({ spec: { trigger: { manual: value } } })]);
  return eventually(`data sync for trigger ${value}`, async () => {
    const s = await repStatus();
    return s.dataSync?.lastManualSync === value && s.dataSync.phase !== 'Syncing' ? s : undefined;
  }, 300_000);
}

const pvc = (s: RepStatus, name: string) => s.pvcs?.find((p) => p.name === name);

/** No Job, Secret, Lease or agent target of a transfer is left in either cluster. */
async function assertNothingLeft() {
  for (const c of [src, dr]) {
    const jobs = await json<{ items: unknown[] }>(c, ['get', 'jobs', '-A', '-l', 'dr-syncer.io/operation']);
    assert.equal(jobs.items.length, 0, `no transfer Jobs left in ${c.name}`);
    const secrets = await eventually('operation Secrets garbage-collected', async () => {
      const s = await json<{ items: unknown[] }>(c, ['get', 'secrets', '-A', '-l', 'dr-syncer.io/operation']);
      return s.items.length === 0 ? s : undefined;
    }, 30_000);
    assert.equal(secrets.items.length, 0);
    const pods = await eventually('operation pods gone', async () => {
      const p = await json<{ items: unknown[] }>(c, ['get', 'pods', '-A', '-l', 'dr-syncer.io/operation']);
      return p.items.length === 0 ? p : undefined;
    }, 60_000);
    assert.equal(pods.items.length, 0);
  }
  const leases = await json<{ items: unknown[] }>(src, ['get', 'leases', '-n', 'app', '-l', 'dr-syncer.io/operation']);
  assert.equal(leases.items.length, 0, 'no PVC Lease left');
  const cm = await json<{ data?: Record<string, string> }>(src, ['-n', 'dr-syncer-agent', 'get', 'configmap', 'dr-syncer-agent']);
  assert.deepEqual(Object.keys(cm.data ?? {}).filter((k) => k.startsWith('target.')), [], 'no agent target left registered');
}

before(async () => {
  const t0 = Date.now();
  let clusters: TestCluster[];
  [clusters, git, image] = await Promise.all([startClusters(2, { nodes: 2, pvsPerNode: 3 }), startGitServer(), buildImage('agent', 'agent/Dockerfile')]);
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
  await apply(src, { apiVersion: 'dr-syncer.io/v1alpha1', kind: 'RemoteCluster', metadata: { name: 'dr', namespace: 'dr-syncer' }, spec: { kubeconfigSecretRef: { name: 'dr-kubeconfig' }, git: { url: repoUrl, credentialsSecretRef: { name: 'git-creds' } } } });

  // Source: data-a is mounted by a running pod on the first node; data-b was written by a Job on
  // the second node that has ended (a volume no pod mounts).
  const [n0, n1] = [src.nodes[0]!.name, src.nodes[1]!.name];
  await ctl(['create', 'namespace', 'app']);
  for (const name of ['data-a', 'data-b']) {
    await apply(src, { apiVersion: 'v1', kind: 'PersistentVolumeClaim', metadata: { name, namespace: 'app' }, spec: { accessModes: ['ReadWriteOnce'], storageClassName: 'local', resources: { requests: { storage: '1Gi' } } } });
  }
  const pod = (name: string, claim: string, node: string, command: string[], restartPolicy: string) => ({
    apiVersion: 'v1', kind: 'Pod', metadata: { name, namespace: 'app' },
    spec: {
      restartPolicy, nodeSelector: { 'kubernetes.io/hostname': node }, terminationGracePeriodSeconds: 1,
      containers: [{ name: 'main', image: image.ref, imagePullPolicy: 'Never', command, volumeMounts: [{ name: 'v', mountPath: '/v' }] }],
      volumes: [{ name: 'v', persistentVolumeClaim: { claimName: claim } }],
    },
  });
  await apply(src, pod('app', 'data-a', n0, ['node', '-e', 'setInterval(() => {}, 1 << 30)'], 'Always'));
  await apply(src, pod('init-b', 'data-b', n1, ['node', '-e', '0'], 'Never'));
  await eventually('init-b done', async () => ((await json<{ status: { phase?: string } }>(src, ['-n', 'app', 'get', 'pod', 'init-b'])).status.phase === 'Succeeded' ? true : undefined), 120_000);
  await ctl(['-n', 'app', 'delete', 'pod', 'init-b']);
  // DR: the PVCs as GitOps would apply them (see the header).
  await kubectl(dr.kubeconfigPath, ['create', 'namespace', 'app']);
  for (const name of ['data-a', 'data-b']) {
    await apply(dr, { apiVersion: 'v1', kind: 'PersistentVolumeClaim', metadata: { name, namespace: 'app' }, spec: { accessModes: ['ReadWriteOnce'], storageClassName: 'local', resources: { requests: { storage: '1Gi' } } } });
  }

  mgr = await startController();
});

const startController = () =>
  startManager({
    kubeconfig: src.kubeconfigPath, metricsAddress: '127.0.0.1:0', probeAddress: '127.0.0.1:0', leaderElect: false,
    leaderElectionNamespace: 'dr-syncer', leaderElectionId: 'dr-syncer.io', workers: 2, cacheDir, clusterName: 'ctl',
    agent: { image: image.ref, imagePullPolicy: 'Never', podEnv: src.podApiEnv },
    remoteClusterProbe: { healthyIntervalMs: 5_000 },
    log: createLogger({ level: process.env.TEST_LOG_LEVEL ?? 'silent', pretty: false }),
  });

/** Sets spec.pvc.dataSync fields (merge). */
const setDataSync = (fields: Record<string, unknown>) =>
  ctl(['-n', 'dr-syncer', 'patch', 'replication', 'data', '--type=merge', '-p', JSON.stringify({ spec: { pvc: { dataSync: fields } } })]);

/** The DR-side rsync pod copying this source PVC, once it runs. */
const runningRsync = (pvcName: string) =>
  eventually(`a running rsync pod for ${pvcName} in the DR cluster`, async () => {
    const jobs = await json<{ items: { metadata: { annotations?: Record<string, string>; labels?: Record<string, string> } }[] }>(dr, ['-n', 'app', 'get', 'jobs', '-l', 'app.kubernetes.io/name=dr-syncer-rsync']);
    const op = jobs.items.find((j) => j.metadata.annotations?.['dr-syncer.io/pvc'] === `app/${pvcName}`)?.metadata.labels?.['dr-syncer.io/operation'];
    if (!op) return undefined;
    const pods = await json<{ items: { metadata: { name: string }; status: { phase?: string } }[] }>(dr, ['-n', 'app', 'get', 'pods', '-l', `dr-syncer.io/operation=${op}`]);
    return pods.items.find((p) => p.status.phase === 'Running');
  }, 120_000);

/** SSH to an agent with a key: the test-connection health command's output, or the failure. */
async function agentSays(address: string, privateKey: string, hostKeyLine: string): Promise<{ ok: boolean; out: string }> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'drs-agent-key-'));
  fs.writeFileSync(path.join(dir, 'id'), privateKey, { mode: 0o600 });
  fs.writeFileSync(path.join(dir, 'known_hosts'), `[${address}]:2222 ${hostKeyLine.trim().split(/\s+/).slice(0, 2).join(' ')}\n`);
  try {
    const r = await run('ssh', ['-F', '/dev/null', '-i', path.join(dir, 'id'), '-o', 'IdentitiesOnly=yes', '-o', 'BatchMode=yes', '-o', 'StrictHostKeyChecking=yes',
      '-o', `UserKnownHostsFile=${path.join(dir, 'known_hosts')}`, '-p', '2222', `dr-syncer@${address}`, 'test-connection']);
    return { ok: true, out: r.stdout };
  } catch (err) {
    return { ok: false, out: String((err as { stderr?: string }).stderr ?? err) };
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

const secretData = async (name: string) => {
  const s = await json<{ data: Record<string, string> }>(src, ['-n', 'dr-syncer', 'get', 'secret', name]);
  return Object.fromEntries(Object.entries(s.data).map(([k, v]) => [k, Buffer.from(v, 'base64').toString()]));
};

after(async () => {
  await mgr?.stop();
  if (child && child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  for (const d of locked) await run('chattr', ['-i', d]).catch(() => undefined);
  await Promise.all([src?.stop(), dr?.stop(), git?.stop()]);
  await fs.promises.rm(cacheDir, { recursive: true, force: true });
});

void describe('PVC data through the agents, on real nodes', () => {
  let srcA: string;
  let srcB: string;

  it('the agents run on every source node, non-root with a read-only root filesystem, and publish their host key', async () => {
    const a = await eventually('2 of 2 agents ready', async () => {
      const s = await agents();
      return s && s.total === 2 && s.ready === 2 && s.nodes?.length === 2 ? s : undefined;
    }, 180_000);
    assert.deepEqual(a.nodes!.map((n) => n.address).sort(), src.nodes.map((n) => n.internalIP).sort());
    const hostKey = await json<{ metadata: { annotations: Record<string, string> } }>(src, ['-n', 'dr-syncer', 'get', 'secret', 'prod-pvc-agent-host-key']);
    assert.equal(a.hostKeyFingerprint, hostKey.metadata.annotations['dr-syncer.io/fingerprint']);
    const ds = await json<{ spec: { template: { spec: { hostNetwork: boolean; securityContext: { runAsNonRoot: boolean }; containers: { securityContext: { readOnlyRootFilesystem: boolean; allowPrivilegeEscalation: boolean } }[]; volumes: { hostPath?: unknown }[] } } } }>(src, ['-n', 'dr-syncer-agent', 'get', 'daemonset', 'dr-syncer-agent']);
    const ps = ds.spec.template.spec;
    assert.equal(ps.securityContext.runAsNonRoot, true);
    assert.equal(ps.containers[0]!.securityContext.readOnlyRootFilesystem, true);
    assert.equal(ps.containers[0]!.securityContext.allowPrivilegeEscalation, false);
    assert.ok(ps.volumes.every((v) => v.hostPath === undefined), 'no host filesystem');
    // The agent's ServiceAccount may read its one ConfigMap and nothing else.
    // kubectl auth can-i exits 0 for yes and 1 for no.
    const can = async (verb: string, what: string) => {
      const r = await kubectl(src.kubeconfigPath, ['auth', 'can-i', verb, what, '-n', 'dr-syncer-agent', '--as', 'system:serviceaccount:dr-syncer-agent:dr-syncer-agent'], { check: false });
      return r.code <= 1 ? r.stdout.trim() : `error: ${r.stderr}`;
    };
    assert.equal(await can('get', 'configmap/dr-syncer-agent'), 'yes');
    assert.equal(await can('get', 'configmap/other'), 'no');
    assert.equal(await can('list', 'secrets'), 'no');
    assert.equal(await can('create', 'pods'), 'no');

    // A second RemoteCluster for the same cluster may not take the agents over (it would replace their keys).
    await apply(src, { apiVersion: 'dr-syncer.io/v1alpha1', kind: 'RemoteCluster', metadata: { name: 'prod-again', namespace: 'dr-syncer' }, spec: { kubeconfigSecretRef: { name: 'prod-kubeconfig' }, pvcSync: { enabled: true, imagePullPolicy: 'Never' } } });
    const cond = await eventually('prod-again refused', async () => {
      const o = await json<{ status?: { conditions?: { type: string; status: string; reason: string; message: string }[] } }>(src, ['-n', 'dr-syncer', 'get', 'remotecluster', 'prod-again']);
      return o.status?.conditions?.find((c) => c.type === 'AgentsReady');
    }, 60_000);
    assert.equal(cond.status, 'False');
    assert.equal(cond.reason, 'AgentDeployFailed');
    assert.match(cond.message, /belong to RemoteCluster dr-syncer\/prod/);
    await ctl(['-n', 'dr-syncer', 'delete', 'remotecluster', 'prod-again']);
    assert.equal((await agents())?.hostKeyFingerprint, a.hostKeyFingerprint, 'the agents kept their host key');
  });

  it('copies two PVCs on two nodes at once: a volume mounted by a running pod and one no pod mounts, with a 1 GB file', async () => {
    [srcA, srcB] = await Promise.all([volumeDir(src, 'app', 'data-a'), volumeDir(src, 'app', 'data-b')]);
    populate(srcA);
    populate(srcB);
    // 1 GiB of incompressible data.
    await run('sh', ['-c', `head -c 1073741824 /dev/urandom > '${path.join(srcA, 'big.bin')}'`]);
    await apply(src, {
      apiVersion: 'dr-syncer.io/v1alpha1', kind: 'Replication', metadata: { name: 'data', namespace: 'dr-syncer' },
      spec: {
        sourceCluster: 'prod', destinationCluster: 'dr', sourceNamespace: 'app', mode: 'Manual', resourceTypes: ['configmaps'],
        git: { path: 'prod' }, pvc: { syncData: true, dataSync: { concurrency: 2 } },
      },
    });
    const s = await trigger('1');
    assert.equal(s.dataSync?.phase, 'Synced', JSON.stringify(s.dataSync));
    const [drA, drB] = await Promise.all([volumeDir(dr, 'app', 'data-a'), volumeDir(dr, 'app', 'data-b')]);
    assertSame(srcA, drA, 'data-a');
    assertSame(srcB, drB, 'data-b');
    const a = pvc(s, 'data-a')!;
    const b = pvc(s, 'data-b')!;
    assert.equal(a.phase, 'Synced');
    assert.equal(a.lastExitCode, 0);
    assert.ok(a.bytesTransferred! > 1_073_741_824, `bytes ${a.bytesTransferred}`);
    assert.ok(a.filesTransferred! >= 200, `files ${a.filesTransferred}`);
    assert.match(a.lastSyncDuration ?? '', /^\d+(\.\d+)?s$/);
    // At once: each started before the other ended.
    const span = (p: PvcStatus) => [Date.parse(p.lastAttemptTime!), Date.parse(p.lastSyncTime!)] as const;
    assert.ok(span(a)[0] < span(b)[1] && span(b)[0] < span(a)[1], `overlapping transfers: ${JSON.stringify([a, b])}`);
    // The source volumes were on two nodes.
    const nodeOf = (dir: string) => src.nodes.find((n) => [...n.pvs.values()].includes(dir))?.name;
    assert.notEqual(nodeOf(srcA), nodeOf(srcB));
    await assertNothingLeft();
    const events = (await ctl(['-n', 'dr-syncer', 'get', 'events', '--field-selector', 'involvedObject.name=data,reason=DataSynced', '-o', 'name'])).stdout;
    assert.ok(events.trim().length > 0, 'a DataSynced event');
    const metrics = await (await fetch(`http://127.0.0.1:${mgr!.metricsPort}/metrics`)).text();
    assert.match(metrics, /dr_syncer_pvc_syncs_total\{replication="dr-syncer\/data",pvc="app\/data-a",result="Synced"\} 1/);
    assert.match(metrics, /dr_syncer_pvc_bytes_transferred_total\{replication="dr-syncer\/data",pvc="app\/data-a"\} \d{10}/);
    assert.match(metrics, /dr_syncer_pvc_last_successful_sync_timestamp_seconds\{replication="dr-syncer\/data",pvc="app\/data-b"\} \d+/);
    assert.ok(!fs.existsSync(path.join(srcA, 'pwned')) && !fs.existsSync(path.join(drA, 'pwned')), 'file names never ran as commands');
  });

  it('copies only what changed, propagates deletions, and an empty volume is a success', async () => {
    fs.writeFileSync(path.join(srcA, 'plain.txt'), 'changed content\n');
    fs.rmSync(path.join(srcA, 'many/f007.txt'));
    fs.rmSync(path.join(srcA, 'dir with space'), { recursive: true });
    fs.writeFileSync(path.join(srcA, 'new file.txt'), 'new\n');
    // data-b emptied entirely.
    for (const e of fs.readdirSync(srcB)) fs.rmSync(path.join(srcB, e), { recursive: true, force: true });
    // excludePaths and rsyncOptions: the cache stays behind; --checksum catches a same-size
    // rewrite within the same second, which rsync's size+mtime quick check would miss.
    fs.mkdirSync(path.join(srcA, 'cache'));
    fs.writeFileSync(path.join(srcA, 'cache', 'big.tmp'), 'scratch\n');
    fs.writeFileSync(path.join(srcA, 'scratch.tmp'), 'scratch\n');
    const same = path.join(srcA, 'many/f001.txt');
    const st = fs.statSync(same);
    fs.writeFileSync(same, 'FILE 1\n'); // same size as "file 1\n"
    fs.utimesSync(same, st.atime, st.mtime);
    await setDataSync({ excludePaths: ['cache/', '*.tmp'], rsyncOptions: ['--checksum'] });
    const s = await trigger('2');
    // Gone from the source again whatever happens next, so later comparisons see no excluded paths.
    fs.rmSync(path.join(srcA, 'cache'), { recursive: true });
    fs.rmSync(path.join(srcA, 'scratch.tmp'));
    assert.equal(s.dataSync?.phase, 'Synced', JSON.stringify(s));
    const drA = await volumeDir(dr, 'app', 'data-a');
    assert.ok(!fs.existsSync(path.join(drA, 'cache')) && !fs.existsSync(path.join(drA, 'scratch.tmp')), 'excluded paths are not copied');
    assert.equal(fs.readFileSync(path.join(drA, 'many/f001.txt'), 'utf8'), 'FILE 1\n');
    assertSame(srcA, drA, 'data-a after changes');
    assert.deepEqual(fs.readdirSync(await volumeDir(dr, 'app', 'data-b')), [], 'data-b emptied');
    const a = pvc(s, 'data-a')!;
    assert.ok(a.bytesTransferred! < 100_000, `only the changes were sent: ${a.bytesTransferred} bytes`);
    assert.equal(pvc(s, 'data-b')!.phase, 'Synced');
    await assertNothingLeft();
  });

  it('a partial transfer (rsync exit 23) is a failure: status and an Event say so, nothing is left, the next run completes', async () => {
    const drB = await volumeDir(dr, 'app', 'data-b');
    fs.mkdirSync(path.join(srcB, 'locked'));
    fs.writeFileSync(path.join(srcB, 'locked', 'new.txt'), 'cannot land\n');
    fs.writeFileSync(path.join(srcB, 'ok.txt'), 'fine\n');
    fs.mkdirSync(path.join(drB, 'locked'));
    await run('chattr', ['+i', path.join(drB, 'locked')]); // the DR side cannot create files in it
    locked.push(path.join(drB, 'locked'));
    const s = await trigger('3');
    assert.equal(s.dataSync?.phase, 'Failed');
    const b = pvc(s, 'data-b')!;
    assert.equal(b.phase, 'Failed');
    assert.equal(b.lastExitCode, 23);
    assert.match(b.message ?? '', /partial transfer/);
    assert.equal(pvc(s, 'data-a')!.phase, 'Synced', 'one failing PVC does not stop the others');
    assert.ok(b.lastSyncTime, 'the last successful copy time is kept');
    await eventually('a PvcSyncFailed event', async () => {
      const ev = (await ctl(['-n', 'dr-syncer', 'get', 'events', '--field-selector', 'involvedObject.name=data,reason=PvcSyncFailed', '-o', 'jsonpath={.items[*].message}'])).stdout;
      return /data-b.*exited 23/.test(ev) ? ev : undefined;
    });
    await assertNothingLeft();
    await run('chattr', ['-i', path.join(drB, 'locked')]);
    locked.pop();
    const again = await trigger('4');
    assert.equal(again.dataSync?.phase, 'Synced', JSON.stringify(again));
    assertSame(srcB, drB, 'data-b after the failure was fixed');
  });

  it('the agent killed mid-transfer: the transfer fails and says so, nothing is left, the next run completes', async () => {
    await run('sh', ['-c', `head -c 209715200 /dev/urandom > '${path.join(srcA, 'slow.bin')}'`]);
    await setDataSync({ bandwidthLimit: 20000 }); // ~10 s for 200 MB
    await ctl(['-n', 'dr-syncer', 'patch', 'replication', 'data', '--type=merge', '-p', '{"spec":{"trigger":{"manual":"5"}}}']);
    await runningRsync('data-a');
    await new Promise((r) => setTimeout(r, 2000));
    const nodeA = src.nodes.find((n) => [...n.pvs.values()].includes(srcA))!.name;
    await ctl(['-n', 'dr-syncer-agent', 'delete', 'pod', '-l', 'app.kubernetes.io/name=dr-syncer-agent', '--field-selector', `spec.nodeName=${nodeA}`, '--grace-period=0', '--force']);
    const s = await eventually('the interrupted data sync recorded', async () => {
      const st = await repStatus();
      return st.dataSync?.lastManualSync === '5' && st.dataSync.phase !== 'Syncing' ? st : undefined;
    }, 180_000);
    const a = pvc(s, 'data-a')!;
    assert.equal(a.phase, 'Failed', JSON.stringify(a));
    assert.notEqual(a.lastExitCode, 0);
    assert.match(a.message ?? '', /rsync exited/);
    await assertNothingLeft();
    await eventually('the agent back on its node', async () => {
      const st = await agents();
      return st?.ready === 2 && st.nodes?.every((n) => n.ready) ? st : undefined;
    }, 120_000);
    await setDataSync({ bandwidthLimit: null });
    const again = await trigger('6');
    assert.equal(again.dataSync?.phase, 'Synced', JSON.stringify(again));
    assertSame(srcA, await volumeDir(dr, 'app', 'data-a'), 'data-a after the agent came back');
  });

  it('the controller killed mid-transfer: the next controller removes what was left and completes the copy', async () => {
    await mgr?.stop();
    mgr = undefined;
    fs.writeFileSync(path.join(srcA, 'slow.bin'), Buffer.alloc(0));
    await run('sh', ['-c', `head -c 209715200 /dev/urandom > '${path.join(srcA, 'slow2.bin')}'`]);
    await setDataSync({ bandwidthLimit: 10000 }); // ~20 s
    const env = src.podApiEnv.flatMap((e) => ['--agent-pod-env', `${e.name}=${e.value}`]);
    child = spawn(process.execPath, ['--import', 'tsx', path.resolve('src/cli/main.ts'), 'controller', '--kubeconfig', src.kubeconfigPath,
      '--metrics-bind-address', '127.0.0.1:0', '--health-probe-bind-address', '127.0.0.1:0', '--cache-dir', cacheDir,
      '--agent-image', image.ref, '--agent-image-pull-policy', 'Never', ...env], { stdio: 'ignore' });
    await ctl(['-n', 'dr-syncer', 'patch', 'replication', 'data', '--type=merge', '-p', '{"spec":{"trigger":{"manual":"7"}}}']);
    await runningRsync('data-a');
    child.kill('SIGKILL');
    await new Promise((r) => child!.once('exit', r));
    // Left behind: the transfer's Jobs, its Lease and its agent target; status says Syncing.
    assert.equal((await repStatus()).dataSync?.phase, 'Syncing');
    assert.ok((await json<{ items: unknown[] }>(src, ['get', 'jobs', '-A', '-l', 'dr-syncer.io/operation'])).items.length > 0, 'an endpoint Job was left');
    assert.ok((await json<{ items: unknown[] }>(src, ['get', 'leases', '-n', 'app', '-l', 'dr-syncer.io/operation'])).items.length > 0, 'a Lease was left');
    await setDataSync({ bandwidthLimit: null });
    mgr = await startController();
    const s = await eventually('the copy completed by the new controller', async () => {
      const st = await repStatus();
      return st.dataSync?.lastManualSync === '7' && st.dataSync.phase === 'Synced' ? st : undefined;
    }, 240_000);
    assert.equal(pvc(s, 'data-a')!.phase, 'Synced');
    assertSame(srcA, await volumeDir(dr, 'app', 'data-a'), 'data-a after the restart');
    await assertNothingLeft();
  });

  it('keys: the agent accepts only the current DR key; a rotated-out key stops working; the host key stays pinned', async () => {
    const a = (await agents())!;
    const address = a.nodes![0]!.address!;
    const host = await secretData('prod-pvc-agent-host-key');
    const old = await secretData('prod-pvc-agent-client-key');
    assert.deepEqual(await agentSays(address, old.private_key!, host.public_key!), { ok: true, out: 'ok\n' });
    // A key the agents never saw.
    const stranger = await run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', path.join(cacheDir, 'stranger')]).then(() => fs.readFileSync(path.join(cacheDir, 'stranger'), 'utf8'));
    assert.equal((await agentSays(address, stranger, host.public_key!)).ok, false);
    // A wrong pinned host key: the client refuses the agent.
    const wrongHost = fs.readFileSync(path.join(cacheDir, 'stranger.pub'), 'utf8');
    const mismatch = await agentSays(address, old.private_key!, wrongHost);
    assert.equal(mismatch.ok, false);
    assert.match(mismatch.out, /host key|HOST IDENTIFICATION/i);

    // Rotate: a short interval makes the RemoteCluster reconciler replace the key.
    await ctl(['-n', 'dr-syncer', 'patch', 'remotecluster', 'prod', '--type=merge', '-p', '{"spec":{"pvcSync":{"keyRotationInterval":"1s"}}}']);
    const rotated = await eventually('a new client key', async () => {
      const st = await agents();
      return st?.clientKeyFingerprint && st.clientKeyFingerprint !== a.clientKeyFingerprint ? st : undefined;
    }, 60_000);
    await ctl(['-n', 'dr-syncer', 'patch', 'remotecluster', 'prod', '--type=merge', '-p', '{"spec":{"pvcSync":{"keyRotationInterval":"720h"}}}']);
    const current = await secretData('prod-pvc-agent-client-key');
    assert.notEqual(current.private_key, old.private_key);
    await eventually('the old key refused, the new one accepted', async () => {
      const [o, n] = await Promise.all([agentSays(address, old.private_key!, host.public_key!), agentSays(address, (await secretData('prod-pvc-agent-client-key')).private_key!, host.public_key!)]);
      return !o.ok && n.ok ? true : undefined;
    }, 30_000);
    assert.equal(rotated.hostKeyFingerprint, a.hostKeyFingerprint, 'the host key is not rotated: pins stay valid');
    // Transfers go on with the new key.
    fs.writeFileSync(path.join(srcA, 'after-rotation.txt'), 'rotated\n');
    const s = await trigger('8');
    assert.equal(s.dataSync?.phase, 'Synced', JSON.stringify(s));
    assertSame(srcA, await volumeDir(dr, 'app', 'data-a'), 'data-a after the rotation');
  });
});
