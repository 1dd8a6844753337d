// The level-based decision of the Replication reconciler (syncDue) and its watch predicates:
// whether a sync is due follows from what is observed (spec generation, source digest, schedule,
// triggers, a failed last attempt), so a failure or a restart cannot lose a pending change.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Replication } from '../../src/api/v1alpha1/index.ts';
import { recordedDigest, replicationChanged, syncDue } from '../../src/controllers/replication.ts';
import { contentDigest } from '../../src/controllers/source-watches.ts';

const now = new Date('2026-03-01T12:00:30Z');
function rep(spec: Partial<Replication['spec']>, status: Replication['status'] = {}, meta: Partial<Replication['metadata']> = {}): Replication {
  return {
    apiVersion: 'dr-syncer.io/v1alpha1', kind: 'Replication',
    metadata: { name: 'r', namespace: 'ns', generation: 2, creationTimestamp: '2026-03-01T00:00:00Z', ...meta },
    spec: { sourceNamespace: 'shop', git: { url: 'https://git.example.com/dr.git' }, ...spec } as Replication['spec'],
    status,
  };
}
const synced = { observedGeneration: 2, lastSyncTime: '2026-03-01T12:00:00Z', sourceDigest: 'v1:a', conditions: [{ type: 'Synced', status: 'True' as const, reason: 'UpToDate', message: '', lastTransitionTime: '2026-03-01T12:00:00Z' }] };
const failedSync = { ...synced, conditions: [{ ...synced.conditions[0]!, status: 'False' as const, reason: 'GitFailed' }] };

describe('syncDue', () => {
  it('Continuous: due exactly when the source digest differs from the one recorded at the last successful sync', () => {
    const r = rep({ mode: 'Continuous' }, synced);
    assert.equal(syncDue(r, now, 'v1:a').due, false);
    assert.deepEqual([syncDue(r, now, 'v1:b').due, syncDue(r, now, 'v1:b').why], [true, 'source changed']);
    // A restart: the caches list again and the digest is the same: nothing to do.
    assert.equal(syncDue(structuredClone(r), now, 'v1:a').due, false);
  });

  it('a digest recorded by a sync with warnings (not exact) still counts as synced, but marks the sync not exact', () => {
    const r = rep({ mode: 'Continuous' }, { ...synced, sourceDigest: 'v1:a~' });
    assert.equal(syncDue(r, now, 'v1:a').due, false, 'no sync loop after a sync with warnings');
    assert.equal(syncDue(r, now, 'v1:b').why, 'source changed');
    assert.deepEqual(recordedDigest('v1:a~'), { digest: 'v1:a', exact: false });
    assert.deepEqual(recordedDigest('v1:a'), { digest: 'v1:a', exact: true });
    assert.deepEqual(recordedDigest(undefined), { digest: undefined, exact: false });
  });

  it('a failed last sync stays due until one succeeds (in every mode but Manual, whose trigger stays pending)', () => {
    assert.match(syncDue(rep({ mode: 'Continuous' }, failedSync), now, 'v1:a').why ?? '', /the last sync failed/);
    assert.equal(syncDue(rep({ mode: 'Scheduled', schedule: '0 0 1 1 *' }, failedSync), now).due, true);
    assert.equal(syncDue(rep({ mode: 'Manual' }, failedSync), now).due, false);
    const pending = syncDue(rep({ mode: 'Manual', trigger: { manual: 'run-2' } }, { ...failedSync, lastManualSync: 'run-1' }), now);
    assert.deepEqual([pending.due, pending.manual], [true, 'run-2']);
  });

  it('spec changes, first syncs, missed ticks, the resync and sync-now', () => {
    assert.equal(syncDue(rep({ mode: 'Continuous' }, { ...synced, observedGeneration: 1 }), now, 'v1:a').why, 'spec changed');
    assert.equal(syncDue(rep({ mode: 'Scheduled', schedule: '0 0 1 1 *' }, {}), now).why, 'spec changed, never synced');
    const hourly = syncDue(rep({ mode: 'Scheduled', schedule: '@hourly' }, { ...synced, lastSyncTime: '2026-03-01T10:30:00Z' }), now);
    assert.deepEqual([hourly.due, hourly.why], [true, 'scheduled']);
    assert.equal(syncDue(rep({ mode: 'Scheduled', schedule: '@hourly' }, synced), now).next?.toISOString(), '2026-03-01T13:00:00.000Z');
    const resync = syncDue(rep({ mode: 'Continuous', continuous: { resyncInterval: '10s' } }, synced), now, 'v1:a');
    assert.deepEqual([resync.due, resync.why], [true, 'periodic resync']);
    const now2 = syncDue(rep({ mode: 'Manual' }, synced, { annotations: { 'dr-syncer.io/sync-now': 'x' } }), now);
    assert.deepEqual([now2.due, now2.syncNow], [true, 'x']);
    assert.equal(syncDue(rep({ mode: 'Manual' }, {}), now).due, false);
  });
});

describe('watch predicates', () => {
  it('a Replication: spec, annotations and deletion count; status writes do not', () => {
    const a = rep({}, synced, { resourceVersion: '1' });
    assert.equal(replicationChanged(a, { ...a, metadata: { ...a.metadata, resourceVersion: '2' }, status: { ...synced, phase: 'Synced' } }), false);
    assert.equal(replicationChanged(a, { ...a, metadata: { ...a.metadata, generation: 3 } }), true);
    assert.equal(replicationChanged(a, { ...a, metadata: { ...a.metadata, annotations: { 'dr-syncer.io/sync-now': '1' } } }), true);
    assert.equal(replicationChanged(a, { ...a, metadata: { ...a.metadata, deletionTimestamp: '2026-03-01T12:00:00Z' } }), true);
  });

  it('a source object: status and server-managed metadata do not change its digest; content does', () => {
    const d = { apiVersion: 'apps/v1', kind: 'Deployment', metadata: { name: 'web', namespace: 'shop', resourceVersion: '5', generation: 1, labels: { a: '1' } }, spec: { replicas: 2 }, status: { readyReplicas: 1 } };
    const base = contentDigest(d);
    assert.equal(contentDigest({ ...d, metadata: { ...d.metadata, resourceVersion: '6', managedFields: [{ manager: 'kcm' }] }, status: { readyReplicas: 2 } }), base);
    assert.equal(contentDigest({ ...d, metadata: { ...d.metadata, labels: { b: '1', ...d.metadata.labels } } }), contentDigest({ ...d, metadata: { ...d.metadata, labels: { a: '1', b: '1' } } }), 'key order does not matter');
    assert.notEqual(contentDigest({ ...d, spec: { replicas: 3 } }), base);
    assert.notEqual(contentDigest({ ...d, metadata: { ...d.metadata, labels: { a: '2' } } }), base);
  });
});
