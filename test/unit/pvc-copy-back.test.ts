// Copying PVC data back (DR -> source) during a failback: the direction's mapping of namespaces
// and roles, the plans and Jobs it makes, when the copy is held or due, the failback's step that
// asks for it (or skips it with force), and the checks a copy back makes before it starts.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { KubeClient } from '../../src/adapters/kube/client.ts';
import { KubeApiError } from '../../src/adapters/kube/client.ts';
import type { Replication } from '../../src/api/v1alpha1/index.ts';
import { validateReplication } from '../../src/api/v1alpha1/index.ts';
import { copyBackDue, copyBackHeld, copyEnds, dataSyncHeld, failbackDataStep, sourceClusterEnd, transferPlan, withoutCopyBack } from '../../src/controllers/pvc-data.ts';
import { agentSettingsFor } from '../../src/pvc/agent.ts';
import { endpointJob, rsyncJob } from '../../src/pvc/manifests.ts';
import type { TransferDeps } from '../../src/pvc/transfer.ts';
import { transferPvc } from '../../src/pvc/transfer.ts';
import { silentLogger } from '../../src/util/log.ts';

type Failover = NonNullable<NonNullable<Replication['status']>['failover']>;

function rep(o: { failover?: Failover; active?: boolean; force?: boolean; syncData?: boolean; paused?: boolean } = {}): Replication {
  return {
    apiVersion: 'dr-syncer.io/v1alpha1', kind: 'Replication',
    metadata: { name: 'shop', namespace: 'dr-syncer', uid: 'u-1', generation: 3 },
    spec: {
      sourceCluster: 'prod', destinationCluster: 'dr', sourceNamespace: 'shop', destinationNamespace: 'shop-dr', mode: 'Manual',
      ...(o.paused ? { paused: true } : {}),
      pvc: { syncData: o.syncData ?? true, dataSync: { bandwidthLimit: 1000, excludePaths: ['cache/'], rsyncOptions: ['--checksum'], timeout: '10m' } },
      failover: { active: o.active ?? false, ...(o.force ? { force: true } : {}) },
    },
    ...(o.failover ? { status: { failover: o.failover } } : {}),
  } as Replication;
}

const image = { image: 'agent:1', imagePullPolicy: 'Never' };
const NOW = new Date('2026-12-01T12:00:00Z');

void describe('copying PVC data back: direction and plans', () => {
  it('forward copies source -> DR, back DR -> source; the PVC keeps its name, the namespaces map back', () => {
    const ns = { source: 'shop', destination: 'shop-dr' };
    assert.deepEqual(copyEnds('forward', ns, 'data'), { source: { namespace: 'shop', pvc: 'data' }, destination: { namespace: 'shop-dr', pvc: 'data' } });
    assert.deepEqual(copyEnds('back', ns, 'data'), { source: { namespace: 'shop-dr', pvc: 'data' }, destination: { namespace: 'shop', pvc: 'data' } });
  });

  it('a plan back carries the Replication\'s rsync settings and timeout; status names the source cluster\'s end', () => {
    const r = rep();
    assert.ok(validateReplication(r).ok, 'the fixture is a valid Replication');
    const ns = { source: 'shop', destination: 'shop-dr' };
    const fwd = transferPlan(r, 'forward', ns, 'data', image);
    const back = transferPlan(r, 'back', ns, 'data', image);
    assert.deepEqual(back.source, { namespace: 'shop-dr', pvc: 'data' });
    assert.deepEqual(back.destination, { namespace: 'shop', pvc: 'data' });
    assert.deepEqual(back.rsync, { bandwidthLimit: 1000, excludePaths: ['cache/'], rsyncOptions: ['--checksum'] });
    assert.equal(back.timeoutSeconds, 600);
    assert.deepEqual(back.replication, { namespace: 'dr-syncer', name: 'shop', uid: 'u-1' });
    assert.equal(back.image, 'agent:1');
    assert.notEqual(back.opId, fwd.opId, 'each transfer has its own operation id');
    // Both directions report the PVC by its source-cluster namespace.
    assert.deepEqual(sourceClusterEnd(fwd, 'forward'), { namespace: 'shop', pvc: 'data' });
    assert.deepEqual(sourceClusterEnd(back, 'back'), { namespace: 'shop', pvc: 'data' });
  });

  it('back: the endpoint reads the DR PVC in the DR namespace, the rsync Job writes the source PVC in the source namespace', () => {
    const back = transferPlan(rep(), 'back', { source: 'shop', destination: 'shop-dr' }, 'data', image);
    const e = endpointJob(back);
    const j = rsyncJob(back);
    const claim = (o: typeof e) => JSON.stringify(o).match(/"claimName":"([^"]+)"/)?.[1];
    assert.equal(e.metadata.namespace, 'shop-dr');
    assert.equal(j.metadata.namespace, 'shop');
    assert.equal(claim(e), 'data');
    assert.equal(claim(j), 'data');
    assert.equal(j.metadata.annotations?.['dr-syncer.io/pvc'], 'shop-dr/data', 'the Jobs name the PVC they read');
  });

  it('agents in a second cluster can get their own pod environment (podEnvFor), others keep podEnv', () => {
    const defaults = { image: 'a', podEnv: [{ name: 'X', value: 'src' }], podEnvFor: (site: string) => (site === 'dr' ? [{ name: 'X', value: 'dr' }] : undefined) };
    assert.deepEqual(agentSettingsFor({}, defaults, 'dr').podEnv, [{ name: 'X', value: 'dr' }]);
    assert.deepEqual(agentSettingsFor({}, defaults, 'prod').podEnv, [{ name: 'X', value: 'src' }]);
    assert.deepEqual(agentSettingsFor({}, defaults).podEnv, [{ name: 'X', value: 'src' }]);
  });
});

void describe('copying PVC data back: when', () => {
  it('runs only while the failback asks for it; the forward copy stays held then', () => {
    const asking = rep({ failover: { state: 'CopyingDataBack' } });
    assert.equal(copyBackHeld(asking), undefined);
    assert.match(dataSyncHeld(asking)!, /failback is not complete \(status.failover.state CopyingDataBack\)/);
    assert.match(copyBackHeld(rep({ failover: { state: 'FailingBack' } }))!, /no longer asks for it \(status.failover.state FailingBack\)/);
    assert.match(copyBackHeld(rep({ failover: { state: 'Standby' } }))!, /no longer asks/);
    assert.match(copyBackHeld(rep({ failover: { state: 'CopyingDataBack' }, active: true }))!, /failed over again/);
    assert.match(copyBackHeld(rep({ failover: { state: 'CopyingDataBack' }, paused: true }))!, /paused/);
    assert.match(copyBackHeld(rep({ failover: { state: 'CopyingDataBack' }, syncData: false }))!, /syncData was turned off/);
    assert.match(copyBackHeld(undefined)!, /deleted/);
    assert.equal(dataSyncHeld(rep({ failover: { state: 'Standby' } })), undefined, 'after the failback the data sync runs again');
  });

  it('is due when asked, interrupted or stopped; retried after a failure or a wait; never again once done', () => {
    const at = (dataCopyBack: Failover['dataCopyBack']) => rep({ failover: { state: 'CopyingDataBack', dataCopyBack } });
    assert.equal(copyBackDue(at({ phase: 'Pending', requestTime: '2026-12-01T11:59:00Z' }), NOW).due, true, 'asked for');
    assert.equal(copyBackDue(at({ phase: 'Copying' }), NOW).due, true, 'interrupted (a controller restart)');
    assert.equal(copyBackDue(at({ phase: 'Stopped' }), NOW).due, true, 'stopped by a pause that ended');
    assert.equal(copyBackDue(at({ phase: 'Copied' }), NOW).due, false);
    assert.equal(copyBackDue(at({ phase: 'NotCopied' }), NOW).due, false);
    const failed = at({ phase: 'Failed', lastCompletionTime: '2026-12-01T11:59:30Z' });
    assert.equal(copyBackDue(failed, NOW).due, false);
    assert.equal(copyBackDue(failed, NOW).next?.toISOString(), '2026-12-01T12:00:30.000Z', 'a minute after the failure');
    const waiting = at({ phase: 'Pending', lastCompletionTime: '2026-12-01T11:59:50Z' });
    assert.equal(copyBackDue(waiting, NOW).due, false);
    assert.equal(copyBackDue(waiting, new Date('2026-12-01T12:00:06Z')).due, true, '15 s after a wait');
  });
});

void describe('the failback\'s PVC data step', () => {
  it('without pvc.syncData: nothing to copy, the failback goes on', () => {
    assert.deepEqual(failbackDataStep(rep({ syncData: false, failover: { state: 'FailingBack' } }), NOW), {});
  });

  it('asks for the copy once (a fresh request: the last one\'s results removed) and waits for it', () => {
    const s = failbackDataStep(rep({ failover: { state: 'FailingBack', dataCopyBack: { phase: 'Copied', copiedTime: '2026-01-01T00:00:00Z' } } }), NOW);
    assert.match(s.wait!, /copying the PVC data written there back to the source/);
    const b = s.failover!.dataCopyBack as Record<string, unknown>;
    assert.equal(b.phase, 'Pending');
    assert.equal(b.requestTime, '2026-12-01T12:00:00Z');
    for (const k of ['copiedTime', 'lastStartTime', 'lastCompletionTime', 'pvcs']) assert.equal(b[k], null, `${k} of the last failback is removed`);
  });

  it('while copying: waits, passing on the copy\'s message (agents missing in DR), and says force skips it', () => {
    const message = 'cannot copy the PVC data back yet: copying PVC data back needs PVC-sync agents in DR cluster dr, which has none: set spec.pvcSync.enabled on RemoteCluster dr-syncer/dr';
    const s = failbackDataStep(rep({ failover: { state: 'CopyingDataBack', dataCopyBack: { phase: 'Pending', message } } }), NOW);
    assert.ok(s.wait?.includes(message), s.wait);
    assert.match(s.wait!, /spec.failover.force: true fails back without copying it/);
    assert.equal(s.failover, undefined, 'the request is not made again');
  });

  it('once copied: goes on, and the final message says when', () => {
    const s = failbackDataStep(rep({ failover: { state: 'CopyingDataBack', dataCopyBack: { phase: 'Copied', copiedTime: '2026-12-01T11:58:00Z' } } }), NOW);
    assert.equal(s.wait, undefined);
    assert.equal(s.failover, undefined);
    assert.match(s.note!, /copied back from the DR cluster at 2026-12-01T11:58:00Z/);
  });

  it('Copied from an earlier failback does not count: a new failback asks again', () => {
    const s = failbackDataStep(rep({ failover: { state: 'FailingBack', dataCopyBack: { phase: 'Copied' } } }), NOW);
    assert.ok(s.wait);
  });

  it('force: goes on without the copy and says plainly that the data was NOT copied back (unless it already was)', () => {
    for (const state of ['FailingBack', 'CopyingDataBack'] as const) {
      const s = failbackDataStep(rep({ force: true, failover: { state, dataCopyBack: { phase: 'Copying' } } }), NOW);
      assert.equal(s.wait, undefined);
      assert.equal(s.failover?.dataCopyBack?.phase, 'NotCopied');
      assert.match(s.failover!.dataCopyBack!.message!, /NOT copied back/);
      assert.match(s.note!, /NOT copied back/);
    }
    const done = failbackDataStep(rep({ force: true, failover: { state: 'CopyingDataBack', dataCopyBack: { phase: 'Copied', copiedTime: 't' } } }), NOW);
    assert.equal(done.failover, undefined);
    assert.match(done.note!, /copied back/);
  });

  it('the failback never writes the copy\'s fields from its own (maybe stale) copy of them', () => {
    const st: Failover = { state: 'CopyingDataBack', message: 'm', dataCopyBack: { phase: 'Copying' } };
    assert.deepEqual(withoutCopyBack(st), { state: 'CopyingDataBack', message: 'm' });
    assert.deepEqual(st.dataCopyBack, { phase: 'Copying' }, 'the input is not changed');
  });
});

/** A cluster that answers GETs and LISTs from a table; anything else is a test failure. */
function fakeCluster(objects: Record<string, unknown>): KubeClient {
  const fake = {
    get: (path: string) => {
      if (path in objects) return Promise.resolve(objects[path]);
      return Promise.reject(new KubeApiError(404, 'NotFound', `${path} not found`));
    },
    list: (path: string) => Promise.resolve({ items: (objects[path] ?? []) as unknown[] }),
    request: (method: string, path: string) => Promise.reject(new Error(`unexpected ${method} ${path}`)),
  };
  return fake as unknown as KubeClient; // only what transferPvc calls before it creates anything
}

void describe('a copy back checks before it starts', () => {
  const pvc = (ns: string, phase: string) => ({ [`/api/v1/namespaces/${ns}/persistentvolumeclaims/data`]: { spec: { accessModes: ['ReadWriteOnce'] }, status: { phase } } });
  const deps = (direction: 'forward' | 'back', source: KubeClient, destination: KubeClient): TransferDeps => ({
    source, destination, sourceName: direction === 'back' ? 'dr' : 'prod', destinationName: direction === 'back' ? 'prod' : 'dr', direction,
    agent: { namespace: 'dr-syncer-agent', port: 2222, addressType: 'InternalIP', hostPublicKey: '', clientPrivateKey: '', nodes: [] },
    replicationKey: { privateKey: '', publicKey: '', fingerprint: '' } as TransferDeps['replicationKey'], holder: 'test', log: silentLogger,
  });
  const plan = transferPlan(rep(), 'back', { source: 'shop', destination: 'shop-dr' }, 'data', image);

  it('a source PVC that a pod still mounts: waits, saying the source workloads must be stopped', async () => {
    const source = fakeCluster({
      ...pvc('shop', 'Bound'),
      '/api/v1/namespaces/shop/pods': [{ metadata: { name: 'web-1' }, spec: { nodeName: 'n1', volumes: [{ persistentVolumeClaim: { claimName: 'data' } }] }, status: { phase: 'Running' } }],
    });
    const o = await transferPvc(deps('back', fakeCluster(pvc('shop-dr', 'Bound')), source), plan);
    assert.equal(o.phase, 'Pending');
    assert.match(o.message, /PVC shop\/data in source cluster prod is mounted by pod web-1: the source workloads must be stopped/);
  });

  it('a DR PVC that was never bound holds no data: skipped', async () => {
    const o = await transferPvc(deps('back', fakeCluster(pvc('shop-dr', 'Pending')), fakeCluster(pvc('shop', 'Bound'))), plan);
    assert.equal(o.phase, 'Skipped');
    assert.match(o.message, /PVC shop-dr\/data in DR cluster dr was never bound/);
  });

  it('a source PVC that is gone: waits, saying to create it or use force; forward keeps its GitOps message', async () => {
    const back = await transferPvc(deps('back', fakeCluster(pvc('shop-dr', 'Bound')), fakeCluster({})), plan);
    assert.equal(back.phase, 'Pending');
    assert.match(back.message, /waiting for PVC shop\/data in source cluster prod: the DR data is copied back into it .*spec.failover.force/);
    const fwdPlan = transferPlan(rep(), 'forward', { source: 'shop', destination: 'shop-dr' }, 'data', image);
    const fwd = await transferPvc(deps('forward', fakeCluster(pvc('shop', 'Bound')), fakeCluster({})), fwdPlan);
    assert.match(fwd.message, /waiting for PVC shop-dr\/data in destination cluster dr \(it is created when the DR repository is applied\)/);
  });
});
