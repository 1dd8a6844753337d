// The per-PVC Lease against a real API server (no nodes needed): one copy of a PVC at a time;
// a copy whose Lease was taken over (it expired while the controller stalled) stops at its next
// renewal instead of running beside the new one; a copy never deletes another copy's Lease.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { KubeClient } from '../../src/adapters/kube/client.ts';
import type { TransferPlan } from '../../src/pvc/manifests.ts';
import { pvcLease, Stop } from '../../src/pvc/transfer.ts';
import type { TestCluster } from '../env/cluster.ts';
import { kubectl, startCluster } from '../env/cluster.ts';

let cluster: TestCluster;
let source: KubeClient;

const plan = (opId: string): TransferPlan => ({
  opId, replication: { namespace: 'dr-syncer', name: `rep-${opId}`, uid: `uid-${opId}` }, image: 'unused',
  source: { namespace: 'app', pvc: 'data' }, destination: { namespace: 'app', pvc: 'data' }, rsync: {}, timeoutSeconds: 60,
});
const leasePath = `/apis/coordination.k8s.io/v1/namespaces/app/leases/${pvcLease.name('data')}`;
type Lease = { metadata: { resourceVersion: string }; spec: { holderIdentity: string; renewTime: string } };

before(async () => {
  cluster = await startCluster();
  source = await KubeClient.fromFile(cluster.kubeconfigPath);
  await kubectl(cluster.kubeconfigPath, ['create', 'namespace', 'app']);
});
after(async () => {
  await cluster?.stop();
});

void describe('the per-PVC Lease', () => {
  const dep = (holder: string) => ({ source, holder });

  it('one copy at a time; a taken-over Lease stops the old copy at renewal; release never frees another copy\'s Lease', async () => {
    const [pa, pb] = [plan('aaaa'), plan('bbbb')];
    await pvcLease.acquire(dep('ctl-a'), pa);
    await assert.rejects(pvcLease.acquire(dep('ctl-b'), pb), (e: unknown) => e instanceof Stop && e.phase === 'Pending' && /another transfer of PVC app\/data is running/.test(e.message));

    const before = await source.get<Lease>(leasePath);
    await pvcLease.renew(dep('ctl-a'), pa);
    const renewed = await source.get<Lease>(leasePath);
    assert.equal(renewed.spec.holderIdentity, before.spec.holderIdentity);
    assert.notEqual(renewed.metadata.resourceVersion, before.metadata.resourceVersion, 'renewed');

    // The Lease expired and another copy took it (what acquire does with an expired Lease).
    await source.request('PUT', leasePath, { ...renewed, spec: { ...renewed.spec, holderIdentity: 'ctl-b/dr-syncer/rep-bbbb/bbbb' } }, 'application/json');
    await assert.rejects(pvcLease.renew(dep('ctl-a'), pa), (e: unknown) => e instanceof Stop && e.phase === 'Failed' && /lost the Lease of PVC app\/data \(now held by ctl-b/.test(e.message));
    const untouched = await source.get<Lease>(leasePath);
    assert.equal(untouched.spec.holderIdentity, 'ctl-b/dr-syncer/rep-bbbb/bbbb', 'the old copy did not write over the new holder');

    await pvcLease.release(dep('ctl-a'), pa);
    assert.equal((await source.get<Lease>(leasePath)).spec.holderIdentity, 'ctl-b/dr-syncer/rep-bbbb/bbbb', 'the old copy did not delete the new copy\'s Lease');
    await pvcLease.release(dep('ctl-b'), pb);
    await assert.rejects(source.get(leasePath), /404|not found/i, 'its holder released it');
    await pvcLease.release(dep('ctl-b'), pb); // already gone: no error
  });
});
