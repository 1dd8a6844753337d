// The measured recovery point's rules (src/core/recovery.ts), one test per rule.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { RecoveryInput, RecoveryStatus } from '../../src/core/recovery.ts';
import { ancestryCandidates, computeRecoveryPoint, formatAge, statusDurationMs } from '../../src/core/recovery.ts';

const H = 3_600_000;
const now = new Date('2025-06-01T12:00:00Z');
const at = (minutesAgo: number): string => new Date(now.getTime() - minutesAgo * 60_000).toISOString().replace(/\.\d{3}Z$/, 'Z');
const sha = (c: string): string => c.repeat(40).slice(0, 40);
const [A, B, C, X] = [sha('a'), sha('b'), sha('c'), sha('9')];

/** Three syncs: C (10 min ago, the last), B (40 min ago), A (90 min ago). */
const status: RecoveryStatus = {
  lastCommit: C,
  lastSyncStartTime: at(10),
  syncHistory: [{ commit: C, sourceTime: at(10) }, { commit: B, sourceTime: at(40) }, { commit: A, sourceTime: at(90) }],
};
const input = (o: Partial<RecoveryInput>): RecoveryInput => ({ status, syncData: false, applied: { kind: 'applied', commit: C, by: 'Kustomization flux-system/dr' }, now, objectiveMs: H, ...o });

describe('recovery point: objects', () => {
  it('the DR cluster runs lastCommit: the source as of lastSyncStartTime; Ready within the objective', () => {
    const rp = computeRecoveryPoint(input({}));
    assert.equal(rp.verdict, 'Ready');
    assert.equal(rp.reason, undefined);
    assert.equal(rp.objectsTime?.toISOString(), new Date(at(10)).toISOString());
    assert.equal(rp.dataTime, undefined);
    // It turns NotReady by itself once 60 min have passed since the source time: 50 min from now.
    assert.equal(rp.flipsAt?.getTime(), new Date(at(10)).getTime() + H + 1);
  });

  it('a no-op sync moves lastSyncStartTime forward on the same commit: the newer time counts', () => {
    const rp = computeRecoveryPoint(input({ status: { ...status, lastSyncStartTime: at(2) } }));
    assert.equal(rp.objectsTime?.toISOString(), new Date(at(2)).toISOString());
  });

  it('the DR cluster runs an older commit of the history: that commit\'s source time', () => {
    const rp = computeRecoveryPoint(input({ applied: { kind: 'applied', commit: B, by: 'Kustomization flux-system/dr' } }));
    assert.equal(rp.verdict, 'Ready');
    assert.equal(rp.objectsTime?.toISOString(), new Date(at(40)).toISOString());
  });

  it('an applied commit older than the objective is NotReady, with the time, the commit and who applied it', () => {
    const rp = computeRecoveryPoint(input({ applied: { kind: 'applied', commit: A, by: 'Application argocd/dr' } }));
    assert.equal(rp.verdict, 'NotReady');
    assert.equal(rp.objectsTime?.toISOString(), new Date(at(90)).toISOString());
    assert.match(rp.reason!, /objects: the DR cluster runs the source as of 2025-06-01T10:30:00Z \(commit aaaaaaaaaaaa, Application argocd\/dr\), older than the objective 1h/);
    assert.equal(rp.flipsAt, undefined, 'ages only grow: a NotReady from age never flips back by itself');
  });

  it('a shared repository: another Replication committed on top of lastCommit; lastCommit is an ancestor of the applied commit', () => {
    assert.deepEqual(ancestryCandidates(status, X), [C, B, A]);
    const rp = computeRecoveryPoint(input({ applied: { kind: 'applied', commit: X, by: 'Kustomization flux-system/dr' }, containedInApplied: new Set([C, B, A]) }));
    assert.equal(rp.verdict, 'Ready');
    assert.equal(rp.objectsTime?.toISOString(), new Date(at(10)).toISOString());
  });

  it('a shared repository, the DR cluster behind: the newest of our commits the applied one holds', () => {
    const rp = computeRecoveryPoint(input({ applied: { kind: 'applied', commit: X, by: 'Kustomization flux-system/dr' }, containedInApplied: new Set([B, A]) }));
    assert.equal(rp.objectsTime?.toISOString(), new Date(at(40)).toISOString());
  });

  it('no ancestry is needed when the applied commit is one of ours', () => {
    assert.deepEqual(ancestryCandidates(status, C), []);
    assert.deepEqual(ancestryCandidates(status, A), []);
    assert.deepEqual(ancestryCandidates(undefined, A), []);
  });

  it('an applied commit that holds none of ours is NotReady and names it (and why the ancestry is unknown)', () => {
    const rp = computeRecoveryPoint(input({ applied: { kind: 'applied', commit: X, by: 'Kustomization flux-system/dr' }, containedInApplied: new Set(), ancestryError: 'fetch failed: 401' }));
    assert.equal(rp.verdict, 'NotReady');
    assert.equal(rp.objectsTime, undefined);
    assert.match(rp.reason!, /runs commit 999999999999, which holds none of the 3 commit\(s\) this Replication's syncs left \(newest cccccccccccc\)/);
    assert.match(rp.reason!, /fetch failed: 401/);
  });

  it('a commit synced by an older version without a source time: NotReady, says the next sync records it', () => {
    const rp = computeRecoveryPoint(input({ status: { lastCommit: C } }));
    assert.equal(rp.verdict, 'NotReady');
    assert.match(rp.reason!, /no source time is recorded for commit cccccccccccc/);
  });

  it('never synced: NotReady', () => {
    const rp = computeRecoveryPoint(input({ status: {} }));
    assert.equal(rp.verdict, 'NotReady');
    assert.match(rp.reason!, /no successful sync yet/);
  });

  it('a GitOps object that has applied nothing yet: NotReady naming it', () => {
    const rp = computeRecoveryPoint(input({ applied: { kind: 'nothing-applied', by: 'Kustomization flux-system/dr' } }));
    assert.equal(rp.verdict, 'NotReady');
    assert.match(rp.reason!, /Kustomization flux-system\/dr in the DR cluster has not applied any commit yet/);
  });

  it('not known what the DR cluster runs (no kubeconfig, no GitOps object, unreachable): Unknown with that reason', () => {
    const rp = computeRecoveryPoint(input({ applied: { kind: 'unknown', reason: 'no spec.destinationCluster' } }));
    assert.equal(rp.verdict, 'Unknown');
    assert.equal(rp.reason, 'no spec.destinationCluster');
    assert.equal(rp.objectsTime, undefined);
  });

  it('a smaller objective judges the same time differently', () => {
    assert.equal(computeRecoveryPoint(input({ objectiveMs: 5 * 60_000 })).verdict, 'NotReady');
    assert.equal(computeRecoveryPoint(input({ objectiveMs: 10 * 60_000 })).verdict, 'Ready', 'an age equal to the objective is still within it');
  });

  it('failed over: Unknown (the DR cluster is the active site), times still reported', () => {
    const rp = computeRecoveryPoint(input({ status: { ...status, failover: { state: 'FailedOver' } }, applied: { kind: 'applied', commit: A, by: 'x' } }));
    assert.equal(rp.verdict, 'Unknown');
    assert.match(rp.reason!, /failed over/);
    assert.equal(rp.objectsTime?.toISOString(), new Date(at(90)).toISOString());
    assert.equal(computeRecoveryPoint(input({ failoverActive: true })).verdict, 'Unknown');
    for (const state of ['FailingOver', 'FailingBack', 'CopyingDataBack']) assert.equal(computeRecoveryPoint(input({ status: { ...status, failover: { state } } })).verdict, 'Unknown', state);
    assert.equal(computeRecoveryPoint(input({ status: { ...status, failover: { state: 'Standby' } } })).verdict, 'Ready');
  });
});

describe('recovery point: data', () => {
  const pvcs = [
    { name: 'db', namespace: 'shop', phase: 'Synced', lastSyncTime: at(20), lastSyncDuration: '300.0s' },
    { name: 'cache', namespace: 'shop', phase: 'Synced', lastSyncTime: at(5), lastSyncDuration: '1.25s' },
  ];

  it('the oldest PVC\'s last complete copy, at its start (end minus duration)', () => {
    const rp = computeRecoveryPoint(input({ syncData: true, status: { ...status, pvcs } }));
    assert.equal(rp.verdict, 'Ready');
    assert.equal(rp.dataTime?.toISOString(), new Date(new Date(at(20)).getTime() - 300_000).toISOString());
    assert.equal(rp.flipsAt?.getTime(), new Date(at(25)).getTime() + H + 1, 'the data (25 min) crosses before the objects (10 min)');
  });

  it('a failed copy keeps the last complete one\'s time; a PVC never copied is NotReady', () => {
    const failed = [...pvcs, { name: 'logs', namespace: 'shop', phase: 'Failed', lastSyncTime: at(50), lastSyncDuration: '10s' }];
    assert.equal(computeRecoveryPoint(input({ syncData: true, status: { ...status, pvcs: failed } })).dataTime?.toISOString(), new Date(new Date(at(50)).getTime() - 10_000).toISOString());
    const never = [...pvcs, { name: 'new', namespace: 'shop', phase: 'Failed' }];
    const rp = computeRecoveryPoint(input({ syncData: true, status: { ...status, pvcs: never } }));
    assert.equal(rp.verdict, 'NotReady');
    assert.match(rp.reason!, /PVC shop\/new has never been copied completely/);
  });

  it('data older than the objective is NotReady even when the objects are fresh', () => {
    const old = [{ name: 'db', namespace: 'shop', phase: 'Synced', lastSyncTime: at(70), lastSyncDuration: '1s' }];
    const rp = computeRecoveryPoint(input({ syncData: true, status: { ...status, pvcs: old } }));
    assert.equal(rp.verdict, 'NotReady');
    assert.match(rp.reason!, /^data: the oldest PVC copy holds the source as of 2025-06-01T10:49:59Z, older than the objective 1h$/);
  });

  it('NotReady wins over Unknown: a known-old data copy is reported even when the objects are unknown', () => {
    const old = [{ name: 'db', namespace: 'shop', phase: 'Synced', lastSyncTime: at(70), lastSyncDuration: '1s' }];
    const rp = computeRecoveryPoint(input({ syncData: true, status: { ...status, pvcs: old }, applied: { kind: 'unknown', reason: 'DR cluster unreachable' } }));
    assert.equal(rp.verdict, 'NotReady');
    assert.match(rp.reason!, /data: .*; DR cluster unreachable$/);
  });

  it('no data copy has run yet: NotReady; a run that found no PVCs: no data time, Ready', () => {
    assert.match(computeRecoveryPoint(input({ syncData: true })).reason!, /PVC data has not been copied yet/);
    const none = computeRecoveryPoint(input({ syncData: true, status: { ...status, pvcs: [], dataSync: { lastCompletionTime: at(1) } } }));
    assert.equal(none.verdict, 'Ready');
    assert.equal(none.dataTime, undefined);
  });

  it('skipped PVCs (owned by another object, never copied by design) do not count', () => {
    const rp = computeRecoveryPoint(input({ syncData: true, status: { ...status, pvcs: [...pvcs, { name: 'owned', namespace: 'shop', phase: 'Skipped' }] } }));
    assert.equal(rp.verdict, 'Ready');
  });

  it('without syncData the PVCs are not looked at', () => {
    const rp = computeRecoveryPoint(input({ status: { ...status, pvcs: [{ name: 'x', namespace: 'y', phase: 'Failed' }] } }));
    assert.equal(rp.verdict, 'Ready');
    assert.equal(rp.dataTime, undefined);
  });
});

describe('recovery point: helpers', () => {
  it('reads the durations status writes', () => {
    assert.equal(statusDurationMs('42.5s'), 42_500);
    assert.equal(statusDurationMs('1.25s'), 1250);
    assert.equal(statusDurationMs('1m30s'), 90_000);
    assert.equal(statusDurationMs('soon'), undefined);
    assert.equal(statusDurationMs(undefined), undefined);
  });

  it('formats ages', () => {
    assert.deepEqual([0, 59_000, 119_999, 120_000, 3_599_000, 3_600_000, 5_400_000, 47 * H, 50 * H].map(formatAge), ['0s', '59s', '119s', '2m', '59m59s', '1h', '1h30m', '47h', '2d2h']);
  });
});
