// Failover and failback on the DR repository's files: what changes, what stays byte for byte,
// and that failback gives back exactly what the sync writes.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parse } from 'yaml';
import { changeRole, roleCommitMessage } from '../../src/core/failover.ts';
import { renderNamespace } from '../../src/core/render.ts';
import { transformObject } from '../../src/core/transform/index.ts';
import type { KubeObject } from '../../src/core/types.ts';

const source: KubeObject[] = [
  { apiVersion: 'apps/v1', kind: 'Deployment', metadata: { name: 'web', namespace: 'shop' }, spec: { replicas: 3, selector: { matchLabels: { app: 'web' } }, template: { metadata: { labels: { app: 'web' } }, spec: { containers: [{ name: 'web', image: 'nginx' }] } } } },
  { apiVersion: 'apps/v1', kind: 'Deployment', metadata: { name: 'default-count', namespace: 'shop' }, spec: { selector: {}, template: {} } },
  { apiVersion: 'apps/v1', kind: 'Deployment', metadata: { name: 'idle', namespace: 'shop' }, spec: { replicas: 0, selector: {}, template: {} } },
  { apiVersion: 'apps/v1', kind: 'StatefulSet', metadata: { name: 'db', namespace: 'shop' }, spec: { replicas: 2, serviceName: 'db', selector: {}, template: {} } },
  { apiVersion: 'apps/v1', kind: 'Deployment', metadata: { name: 'canary', namespace: 'shop', labels: { 'dr-syncer.io/scale-override': '1' } }, spec: { replicas: 4, selector: {}, template: {} } },
  { apiVersion: 'batch/v1', kind: 'CronJob', metadata: { name: 'report', namespace: 'shop' }, spec: { schedule: '0 * * * *', jobTemplate: {} } },
  { apiVersion: 'batch/v1', kind: 'CronJob', metadata: { name: 'paused', namespace: 'shop' }, spec: { schedule: '0 * * * *', suspend: true, jobTemplate: {} } },
  { apiVersion: 'batch/v1', kind: 'Job', metadata: { name: 'once', namespace: 'shop' }, spec: { template: {} } },
  { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'cfg', namespace: 'shop' }, data: { replicas: '5' } },
];

/** The folder as the sync renders it: path → content. */
function synced(scaleToZero = true): Map<string, string> {
  const objects = source.map((o) => {
    const r = transformObject(o, { sourceNamespace: 'shop', destinationNamespace: 'shop', scaleToZero, pvc: {} });
    assert.ok(r.ok);
    return r.object;
  });
  const folder = renderNamespace('clusters/dr', { sourceNamespace: 'shop', destinationNamespace: 'shop', objects }, { replication: 'dr-syncer/shop', sourceCluster: 'prod' });
  return new Map([...folder.files].map(([f, c]) => [`${folder.folder}/${f}`, c]));
}
const spec = (files: Map<string, string>, name: string) => parse(files.get(`clusters/dr/shop/${name}`)!).spec;

void describe('failover and failback of the DR repository files', () => {
  it('failover restores the source replicas and resumes the CronJobs that were active; nothing else changes', () => {
    const before = synced();
    const { files, workloads } = changeRole(before, 'active', true);
    const after = new Map([...before, ...files]);
    assert.equal(spec(after, 'deployment.apps-web.yaml').replicas, 3);
    assert.equal(spec(after, 'deployment.apps-default-count.yaml').replicas, 1);
    assert.equal(spec(after, 'statefulset.apps-db.yaml').replicas, 2);
    assert.equal(spec(after, 'deployment.apps-canary.yaml').replicas, 4, 'the source count, not the DR override');
    assert.equal(spec(after, 'cronjob.batch-report.yaml').suspend, false);
    assert.equal(spec(after, 'cronjob.batch-paused.yaml').suspend, true, 'suspended at the source: stays suspended');
    assert.equal(spec(after, 'job.batch-once.yaml').suspend, true, 'a one-off Job is not run again');
    assert.deepEqual([...files.keys()].sort(), ['clusters/dr/shop/cronjob.batch-report.yaml', 'clusters/dr/shop/deployment.apps-canary.yaml', 'clusters/dr/shop/deployment.apps-default-count.yaml', 'clusters/dr/shop/deployment.apps-web.yaml', 'clusters/dr/shop/statefulset.apps-db.yaml']);
    assert.deepEqual(workloads.map((w) => `${w.kind} ${w.name}: ${w.from} -> ${w.to}`), [
      'CronJob report: suspended -> active', 'Deployment canary: replicas 1 -> replicas 4', 'Deployment default-count: replicas 0 -> replicas 1', 'Deployment web: replicas 0 -> replicas 3', 'StatefulSet db: replicas 0 -> replicas 2',
    ]);
    // Minimal diff: one line per file.
    for (const [p, c] of files) {
      const a = before.get(p)!.split('\n');
      const b = c.split('\n');
      assert.equal(a.length, b.length);
      assert.equal(a.filter((l, i) => l !== b[i]).length, 1, p);
    }
  });

  it('failback gives back exactly what the sync writes; both are idempotent', () => {
    for (const scaleToZero of [true, false]) {
      const before = synced(scaleToZero);
      const active = new Map([...before, ...changeRole(before, 'active', scaleToZero).files]);
      assert.equal(changeRole(active, 'active', scaleToZero).files.size, 0, 'a second failover changes nothing');
      const back = new Map([...active, ...changeRole(active, 'standby', scaleToZero).files]);
      assert.deepEqual(back, before);
      assert.equal(changeRole(back, 'standby', scaleToZero).files.size, 0, 'a second failback changes nothing');
    }
  });

  it('the commit message names the action, each workload and who asked, with trailers', () => {
    const { workloads } = changeRole(synced(), 'active', true);
    const m = roleCommitMessage({ role: 'active', replication: 'dr-syncer/shop', sourceCluster: 'prod', workloads, requestedBy: 'alice@laptop' });
    assert.match(m, /^dr-syncer: failover dr-syncer\/shop \(5 workloads activated\)\n/);
    assert.match(m, /\n {2}Deployment shop\/web: replicas 0 -> replicas 3\n/);
    assert.match(m, /\nRequested-By: alice@laptop\nDr-Syncer-Replication: dr-syncer\/shop\nDr-Syncer-Source-Cluster: prod\nDr-Syncer-Action: failover\n$/);
  });
});
