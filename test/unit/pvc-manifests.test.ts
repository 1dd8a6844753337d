// The PVC data path's manifests and rules, as pure functions: what the agent DaemonSet, the
// endpoint and rsync Jobs look like, that user input never reaches the transport, and when a
// data sync is due.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { validatePvcSync, validateReplication } from '../../src/api/v1alpha1/index.ts';
import type { Replication } from '../../src/api/v1alpha1/index.ts';
import { dataSyncDue } from '../../src/controllers/pvc-data.ts';
import { generateKeyPair } from '../../src/agent/keys.ts';
import { agentSettingsFor } from '../../src/pvc/agent.ts';
import { isSafeHost } from '../../src/pvc/transfer.ts';
import type { Route, TransferPlan } from '../../src/pvc/manifests.ts';
import { selectObjects } from '../../src/core/select.ts';
import { configMap } from '../fixtures/objects.ts';
import { agentObjects, endpointJob, knownHosts, rsyncArgs, rsyncJob, sshConfig } from '../../src/pvc/manifests.ts';

type Obj = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

const plan = (over: Partial<TransferPlan> = {}): TransferPlan => ({
  opId: 'abc123', replication: { namespace: 'dr-syncer', name: 'rep', uid: 'uid-1' }, image: 'agent:1',
  source: { namespace: 'app', pvc: 'data' }, destination: { namespace: 'app-dr', pvc: 'data' },
  rsync: {}, timeoutSeconds: 1800, ...over,
});

void describe('PVC data manifests', () => {
  it('the agent DaemonSet: host network on the node address, non-root, read-only, no host paths, settings applied', () => {
    const s = agentSettingsFor({ sshPort: 2022, nodeSelector: { disk: 'ssd' }, tolerations: [{ operator: 'Exists' }], imagePullPolicy: 'Never' }, { image: 'agent:1' });
    const hostKey = generateKeyPair('host');
    const objs = agentObjects(s, hostKey.privateKey) as Obj[];
    assert.deepEqual(objs.map((o) => o.kind), ['Namespace', 'ServiceAccount', 'Role', 'RoleBinding', 'Secret', 'DaemonSet']);
    assert.ok(objs.every((o) => o.kind === 'Namespace' || o.metadata.namespace === 'dr-syncer-agent'));
    const ds = objs[5]!;
    const ps = ds.spec.template.spec;
    const c = ps.containers[0];
    assert.equal(ps.hostNetwork, true);
    assert.equal(ps.securityContext.runAsNonRoot, true);
    assert.equal(c.securityContext.readOnlyRootFilesystem, true);
    assert.deepEqual(c.securityContext.capabilities.drop, ['ALL']);
    assert.ok(!JSON.stringify(ps.volumes).includes('hostPath'));
    assert.equal(c.image, 'agent:1');
    assert.equal(c.imagePullPolicy, 'Never');
    assert.ok(c.args.includes('$(HOST_IP):2022'), c.args.join(' '));
    assert.equal(c.readinessProbe.tcpSocket.port, 2022);
    assert.deepEqual(ps.nodeSelector, { disk: 'ssd' });
    assert.deepEqual(ps.tolerations, [{ operator: 'Exists' }]);
    // The Role: its one ConfigMap, read only.
    assert.deepEqual(objs[2]!.rules, [{ apiGroups: [''], resources: ['configmaps'], resourceNames: ['dr-syncer-agent'], verbs: ['get', 'list', 'watch'] }]);
    assert.equal(Buffer.from(objs[4]!.data.ssh_host_ed25519_key, 'base64').toString(), hostKey.privateKey);
    assert.equal(ds.spec.template.metadata.annotations['dr-syncer.io/fingerprint'], hostKey.fingerprint, 'a new host key rolls the agents');
    assert.equal(objs[0]!.metadata.labels['pod-security.kubernetes.io/enforce'], 'privileged');
    // File modes as numbers: 0440, not the decimal 440 a leading-zero YAML literal would give.
    assert.equal(ps.volumes.find((v: Obj) => v.secret).secret.defaultMode, 0o440);
  });

  it("a copy's Jobs sit next to the application's objects but are never selected for the DR repository", () => {
    const jobs = [endpointJob(plan()), rsyncJob(plan())];
    const { selected, skipped } = selectObjects([...jobs, configMap('kept', { v: '1' })]);
    assert.deepEqual(selected.map((o) => o.metadata.name), ['kept']);
    assert.deepEqual(skipped.map((s) => [s.kind, s.reason]), jobs.map(() => ['Job', "dr-syncer's own PVC copy, there only while it runs"]));
  });

  it('the endpoint Job: the PVC read-only, pinned to the node of a pod that mounts it, ends by itself', () => {
    const job = endpointJob(plan({ source: { namespace: 'app', pvc: 'data', node: 'node-7' } })) as Obj;
    const ps = job.spec.template.spec;
    assert.equal(job.metadata.namespace, 'app');
    assert.equal(job.metadata.labels['dr-syncer.io/operation'], 'abc123');
    assert.equal(job.metadata.labels['dr-syncer.io/replication-uid'], 'uid-1');
    assert.equal(ps.volumes[0].persistentVolumeClaim.claimName, 'data');
    assert.equal(ps.volumes[0].persistentVolumeClaim.readOnly, true);
    assert.equal(ps.containers[0].volumeMounts[0].readOnly, true);
    assert.deepEqual(ps.tolerations, [{ operator: 'Exists' }]);
    assert.deepEqual(ps.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchFields[0].values, ['node-7']);
    assert.ok(job.spec.activeDeadlineSeconds > 1800);
    assert.ok(job.spec.ttlSecondsAfterFinished > 0);
    assert.deepEqual(ps.containers[0].securityContext.capabilities, { drop: ['ALL'], add: ['DAC_OVERRIDE'] });
    assert.equal(ps.volumes[1].secret.defaultMode, 0o400);
    assert.equal(endpointJob(plan()).spec && (endpointJob(plan()) as Obj).spec.template.spec.affinity, undefined, 'no node: the scheduler follows the volume');
  });

  it('rsync arguments: user options and excludes are single argv elements before the fixed transport', () => {
    const args = rsyncArgs(plan({ rsync: { bandwidthLimit: 500, excludePaths: ['cache/', '*.tmp; rm -rf /', "$(id)"], rsyncOptions: ['--checksum'] } }));
    assert.deepEqual(args.slice(-4), ['-e', 'ssh -F /etc/dr-syncer/keys/ssh_config', 'endpoint:/data/', '/data/']);
    assert.ok(args.includes('--bwlimit=500'));
    assert.ok(args.includes('--exclude=*.tmp; rm -rf /'));
    assert.ok(args.includes('--exclude=$(id)'));
    assert.ok(args.includes('--checksum'));
    assert.ok(args.includes('--delete-delay') && args.includes('--delay-updates') && args.includes('--numeric-ids') && args.includes('--stats'));
    const job = rsyncJob(plan()) as Obj;
    assert.equal(job.metadata.namespace, 'app-dr');
    assert.deepEqual(job.spec.template.spec.containers[0].command, ['rsync']);
    assert.equal(job.spec.activeDeadlineSeconds, 1800);
    // ssh refuses a private key that others can read: the keys must be 0400.
    assert.equal(job.spec.template.spec.volumes.find((v: Obj) => v.secret).secret.defaultMode, 0o400);
  });

  it('a node address goes into ssh_config only when it is an IP or a host name', () => {
    for (const ok of ['10.0.0.5', 'fd00::1', 'node-1.example.com', 'ip-10-0-0-5']) assert.equal(isSafeHost(ok), true, ok);
    for (const bad of ['x\n  ProxyCommand sh -c id', 'a b', 'host;id', '', '-oProxyCommand=x', 'a'.repeat(300)]) assert.equal(isSafeHost(bad), false, bad);
  });

  it('the ssh transport pins both host keys and allows nothing interactive', () => {
    const r: Route = { agentHost: '10.0.0.5', agentPort: 2222, agentHostPublicKey: 'ssh-ed25519 AAAAagent comment', endpointIP: '10.1.2.3', endpointHostPublicKey: 'ssh-ed25519 AAAAendpoint x' };
    const cfg = sshConfig(r);
    assert.match(cfg, /StrictHostKeyChecking yes/);
    assert.match(cfg, /BatchMode yes/);
    assert.match(cfg, /HostName 10\.0\.0\.5\n {2}Port 2222/);
    assert.match(cfg, /ProxyCommand ssh -F \/etc\/dr-syncer\/keys\/ssh_config -W %h:%p agent/);
    assert.equal(knownHosts(r), '[10.0.0.5]:2222 ssh-ed25519 AAAAagent\n[10.1.2.3]:2223 ssh-ed25519 AAAAendpoint\n');
  });

  it('rsyncOptions: only the allowed options; ones that change the remote command or the transport are refused by the schema', () => {
    const rep = (opts: string[]) => ({
      apiVersion: 'dr-syncer.io/v1alpha1', kind: 'Replication', metadata: { name: 'r', namespace: 'ns' },
      spec: { sourceNamespace: 'a', destinationCluster: 'dr', mode: 'Manual', pvc: { syncData: true, dataSync: { rsyncOptions: opts } } },
    });
    for (const ok of [['--checksum'], ['-z', '--sparse'], ['--modify-window=-1', '--max-size=10M']]) {
      const v = validateReplication(rep(ok));
      assert.ok(v.ok, `${ok.join(' ')}: ${v.ok ? '' : v.errors.join('; ')}`);
    }
    for (const bad of ['-e', '--rsh=sh', '--rsync-path=evil', '-M--log-file=/x', '--remote-option=--x', '--old-args', '--files-from=/etc/passwd', '--log-file=/tmp/x', '-ze', '--config=/x', '--checksum; id']) {
      assert.equal(validateReplication(rep([bad])).ok, false, `${bad} must be refused`);
    }
  });
});

void describe('dataSyncDue', () => {
  const base = (spec: Partial<Replication['spec']>, status?: Replication['status']): Replication =>
    ({ apiVersion: 'dr-syncer.io/v1alpha1', kind: 'Replication', metadata: { name: 'r', namespace: 'ns' }, spec: { sourceNamespace: 'a', ...spec }, ...(status ? { status } : {}) }) as Replication;
  const now = new Date('2026-12-01T12:00:30Z');

  it('first run, except in Manual mode without a schedule', () => {
    assert.equal(dataSyncDue(base({ mode: 'Scheduled', schedule: '0 * * * *' }), now).due, true);
    assert.equal(dataSyncDue(base({ mode: 'Manual' }), now).due, false);
    assert.equal(dataSyncDue(base({ mode: 'Manual', trigger: { manual: 'x' } }), now).due, true);
  });

  it('on the data schedule, else the Replication\'s; retried sooner after a failure; a crashed run is run again', () => {
    const last = { lastStartTime: '2026-12-01T11:00:10Z', lastCompletionTime: '2026-12-01T11:00:20Z' };
    const sched = base({ mode: 'Scheduled', schedule: '0 * * * *' }, { dataSync: { ...last, phase: 'Synced' } });
    assert.equal(dataSyncDue(sched, now).due, true, 'the 12:00 tick passed');
    assert.equal(dataSyncDue(sched, now).retry, undefined, 'a scheduled run copies every PVC');
    assert.equal(dataSyncDue(sched, new Date('2026-12-01T11:30:00Z')).due, false);
    const own = base({ mode: 'Scheduled', schedule: '0 * * * *', pvc: { dataSync: { schedule: '0 0 * * *' } } }, { dataSync: { ...last, phase: 'Synced' } });
    assert.equal(dataSyncDue(own, now).due, false, 'the data schedule wins: next at midnight');
    assert.equal(dataSyncDue(own, now).next?.toISOString(), '2026-12-02T00:00:00.000Z');
    const failed = base({ mode: 'Manual', trigger: { manual: 'x' } }, { dataSync: { ...last, phase: 'Failed', lastManualSync: 'x' } });
    assert.equal(dataSyncDue(failed, new Date('2026-12-01T11:00:50Z')).due, false);
    assert.equal(dataSyncDue(failed, new Date('2026-12-01T11:01:21Z')).due, true, 'retried a minute after the failure');
    assert.equal(dataSyncDue(failed, new Date('2026-12-01T11:01:21Z')).retry, true, 'a retry copies only what the failed run did not');
    const failedSched = base({ mode: 'Scheduled', schedule: '* * * * *' }, { dataSync: { ...last, phase: 'Failed' } });
    assert.equal(dataSyncDue(failedSched, new Date('2026-12-01T11:01:01Z')).retry, undefined, 'the schedule came first: a full run');
    const crashed = base({ mode: 'Manual', trigger: { manual: 'x' } }, { dataSync: { ...last, phase: 'Syncing', lastManualSync: 'x' } });
    assert.equal(dataSyncDue(crashed, now).due, true);
    const cont = base({ mode: 'Continuous', continuous: { resyncInterval: '30m' } }, { dataSync: { ...last, phase: 'Synced' } });
    assert.equal(dataSyncDue(cont, new Date('2026-12-01T11:20:00Z')).due, false);
    assert.equal(dataSyncDue(cont, new Date('2026-12-01T11:30:11Z')).due, true);
  });
});

void describe('the controller\'s own pvcSync settings (--local-pvc-sync)', () => {
  it('follow RemoteCluster.spec.pvcSync\'s rules and defaults, with errors named as in the file', () => {
    const ok = validatePvcSync({ enabled: true });
    assert.ok(ok.ok);
    assert.deepEqual(ok.value, { enabled: true, namespace: 'dr-syncer-agent', agentAddress: 'InternalIP', sshPort: 2222, keyRotationInterval: '720h' });
    const bad = validatePvcSync({ enabled: true, sshPort: 22, agentAdress: 'ExternalIP' });
    assert.equal(bad.ok, false);
    assert.ok(!bad.ok && bad.errors.some((e) => e.startsWith('sshPort: ') && /at least 1024/.test(e)), JSON.stringify(bad));
    assert.ok(!bad.ok && bad.errors.some((e) => e.startsWith('agentAdress: unknown field')), JSON.stringify(bad));
    assert.ok(validatePvcSync(undefined).ok, 'an empty file: nothing enabled');
  });
});
