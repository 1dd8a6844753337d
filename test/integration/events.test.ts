// The EventRecorder against a real kube-apiserver: Events land on a ConfigMap and on a
// Replication CR with the right involvedObject (kubectl describe shows them), repeats aggregate into
// one Event with a growing count, the 10-minute window and the per-object token bucket hold (with an
// injected clock), a deleted Event is re-created, and failures (missing namespace, unreachable API
// server, malformed object) are logged, never thrown.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { pino } from 'pino';
import { KubeClient } from '../../src/adapters/kube/client.ts';
import type { KubeObject } from '../../src/core/types.ts';
import { API_VERSION } from '../../src/api/v1alpha1/index.ts';
import { EventRecorder } from '../../src/runtime/events.ts';
import { kubectl, startCluster, type TestCluster } from '../env/cluster.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const NS = 'shop';

interface CoreEvent {
  metadata: { name: string; namespace: string };
  involvedObject: { apiVersion: string; kind: string; name: string; namespace?: string; uid?: string };
  type: string;
  reason: string;
  message: string;
  count: number;
  firstTimestamp: string;
  lastTimestamp: string;
  source: { component: string; host?: string };
}

/** A clock the test moves by hand. */
function clock(start = Date.UTC(2030, 0, 1)) {
  let t = start;
  return { now: () => t, advance: (ms: number) => void (t += ms) };
}

function capturingLogger() {
  const lines: { level: number; msg: string; err?: unknown }[] = [];
  const log = pino({ level: 'debug' }, { write: (s: string) => void lines.push(JSON.parse(s) as (typeof lines)[number]) });
  return { log, lines };
}

void describe('EventRecorder', () => {
  let cluster: TestCluster;
  let client: KubeClient;

  async function eventsFor(obj: KubeObject, ns = NS): Promise<CoreEvent[]> {
    const q = new URLSearchParams({ fieldSelector: `involvedObject.name=${obj.metadata.name},involvedObject.kind=${obj.kind}` });
    const list = await client.get<{ items: CoreEvent[] }>(`/api/v1/namespaces/${ns}/events?${q}`);
    return list.items.sort((a, b) => a.metadata.name.localeCompare(b.metadata.name));
  }

  async function configMap(name: string): Promise<KubeObject> {
    const cm = await client.request<KubeObject>('POST', `/api/v1/namespaces/${NS}/configmaps`, {
      apiVersion: 'v1', kind: 'ConfigMap', metadata: { name }, data: { k: 'v' },
    });
    return { ...cm, apiVersion: 'v1', kind: 'ConfigMap' };
  }

  before(async () => {
    cluster = await startCluster({ controllerManager: false });
    client = await KubeClient.fromFile(cluster.kubeconfigPath);
    await kubectl(cluster.kubeconfigPath, ['apply', '--server-side', '-f', path.join(ROOT, 'crds')]);
    await kubectl(cluster.kubeconfigPath, ['wait', '--for=condition=Established', '--timeout=60s', 'crd/replications.dr-syncer.io']);
    await kubectl(cluster.kubeconfigPath, ['create', 'namespace', NS]);
  });
  after(async () => {
    await cluster?.stop();
  });

  void test('an Event on a ConfigMap; repeats aggregate into one Event with count 3', async () => {
    const cm = await configMap('settings');
    const c = clock();
    const rec = new EventRecorder({ client, component: 'dr-syncer', host: 'pod-a', now: c.now });
    for (let i = 0; i < 3; i++) {
      rec.event(cm, 'Normal', 'Exported', 'wrote 3 objects to the DR repository');
      c.advance(1_000);
    }
    rec.event(cm, 'Warning', 'ExportFailed', 'git push rejected');
    await rec.flush();

    const evs = await eventsFor(cm);
    assert.equal(evs.length, 2, JSON.stringify(evs.map((e) => [e.reason, e.count])));
    const ok = evs.find((e) => e.reason === 'Exported');
    assert.ok(ok);
    assert.equal(ok.count, 3);
    assert.equal(ok.type, 'Normal');
    assert.equal(ok.message, 'wrote 3 objects to the DR repository');
    assert.deepEqual(ok.involvedObject, {
      apiVersion: 'v1', kind: 'ConfigMap', name: 'settings', namespace: NS,
      uid: cm.metadata.uid as string,
      resourceVersion: cm.metadata.resourceVersion as string,
    });
    assert.deepEqual(ok.source, { component: 'dr-syncer', host: 'pod-a' });
    assert.equal(ok.metadata.namespace, NS);
    assert.equal(Date.parse(ok.lastTimestamp) - Date.parse(ok.firstTimestamp), 2_000);
    const warn = evs.find((e) => e.reason === 'ExportFailed');
    assert.equal(warn?.type, 'Warning');
    assert.equal(warn?.count, 1);
  });

  void test('an Event on a Replication CR shows in kubectl describe', async () => {
    await kubectl(cluster.kubeconfigPath, ['apply', '-f', '-'], {
      input: JSON.stringify({
        apiVersion: API_VERSION, kind: 'Replication', metadata: { name: 'shop-dr', namespace: NS },
        spec: { destinationCluster: 'dr', sourceNamespace: 'shop', schedule: '@hourly' },
      }),
    });
    const cr = await client.get<KubeObject>(`/apis/${API_VERSION}/namespaces/${NS}/replications/shop-dr`);
    const rec = new EventRecorder({ client, component: 'dr-syncer' });
    rec.event(cr, 'Warning', 'RemoteClusterUnreachable', 'cannot reach cluster "dr"');
    rec.event(cr, 'Warning', 'RemoteClusterUnreachable', 'cannot reach cluster "dr"');
    await rec.flush();
    const evs = await eventsFor(cr);
    assert.equal(evs.length, 1);
    assert.equal(evs[0]?.count, 2);
    assert.equal(evs[0]?.involvedObject.apiVersion, API_VERSION);
    assert.equal(evs[0]?.involvedObject.kind, 'Replication');
    assert.equal(evs[0]?.involvedObject.uid, cr.metadata.uid as string);
    const { stdout } = await kubectl(cluster.kubeconfigPath, ['describe', 'replication', 'shop-dr', '-n', NS]);
    assert.match(stdout, /Warning\s+RemoteClusterUnreachable\s+.*dr-syncer\s+cannot reach cluster "dr"/);
  });

  void test('outside the 10-minute window a repeat starts a new Event; a deleted Event is re-created', async () => {
    const cm = await configMap('window');
    const c = clock();
    const rec = new EventRecorder({ client, component: 'dr-syncer', now: c.now });
    rec.event(cm, 'Normal', 'Tick', 'same');
    c.advance(9 * 60_000);
    rec.event(cm, 'Normal', 'Tick', 'same'); // within 10 min of the last one: aggregated
    c.advance(11 * 60_000);
    rec.event(cm, 'Normal', 'Tick', 'same'); // new Event
    await rec.flush();
    let evs = await eventsFor(cm);
    assert.deepEqual(evs.map((e) => e.count).sort(), [1, 2]);

    // Events expire (TTL) or get deleted: patching a missing Event falls back to creating one.
    await kubectl(cluster.kubeconfigPath, ['delete', 'events', '-n', NS, '--field-selector', 'involvedObject.name=window']);
    c.advance(1_000);
    rec.event(cm, 'Normal', 'Tick', 'same');
    await rec.flush();
    evs = await eventsFor(cm);
    assert.equal(evs.length, 1);
    assert.equal(evs[0]?.count, 2);
    assert.equal(Date.parse(evs[0]?.lastTimestamp ?? '') - Date.parse(evs[0]?.firstTimestamp ?? ''), 1_000, 'firstTimestamp kept');
  });

  void test('a hot loop is rate limited per object: burst 25, then one per 5 minutes', async () => {
    const cm = await configMap('hot');
    const other = await configMap('cold');
    const c = clock();
    const { log, lines } = capturingLogger();
    const rec = new EventRecorder({ client, component: 'dr-syncer', now: c.now, log });
    for (let i = 0; i < 40; i++) rec.event(cm, 'Normal', 'Loop', `iteration ${i}`);
    rec.event(other, 'Normal', 'Loop', 'another object has its own bucket');
    await rec.flush();
    assert.equal((await eventsFor(cm)).length, 25);
    assert.equal((await eventsFor(other)).length, 1);
    assert.ok(lines.some((l) => l.msg === 'event dropped by the per-object rate limit'));

    c.advance(5 * 60_000);
    for (let i = 0; i < 5; i++) rec.event(cm, 'Normal', 'Loop', `later ${i}`);
    await rec.flush();
    assert.equal((await eventsFor(cm)).length, 26);
  });

  void test('failures never throw: missing namespace, unreachable API server, malformed object', async () => {
    const { log, lines } = capturingLogger();
    const rec = new EventRecorder({ client, component: 'dr-syncer', log });
    const ghost: KubeObject = { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'x', namespace: 'no-such-ns', uid: 'u1' } };
    assert.doesNotThrow(() => rec.event(ghost, 'Warning', 'Lost', 'into the void'));
    assert.doesNotThrow(() => rec.event({} as KubeObject, 'Normal', 'Bad', 'no metadata'));
    await rec.flush();
    const failed = lines.find((l) => l.msg === 'writing an event failed');
    assert.ok(failed, JSON.stringify(lines));
    assert.match(String(failed.err), /404/);
    assert.ok(lines.some((l) => l.msg.startsWith('event dropped: object has no')));

    // Nothing was cached for the failed write: once the namespace exists, the Event is created afresh.
    await kubectl(cluster.kubeconfigPath, ['create', 'namespace', 'no-such-ns']);
    rec.event(ghost, 'Warning', 'Lost', 'into the void');
    await rec.flush();
    const evs = await eventsFor(ghost, 'no-such-ns');
    assert.equal(evs.length, 1);
    assert.equal(evs[0]?.count, 1);

    const dead = await KubeClient.fromString(`apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:1", insecure-skip-tls-verify: true}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
current-context: x
`);
    const down = capturingLogger();
    const rec2 = new EventRecorder({ client: dead, component: 'dr-syncer', log: down.log });
    assert.doesNotThrow(() => rec2.event(ghost, 'Normal', 'Any', 'nobody listens'));
    await rec2.flush();
    assert.ok(down.lines.some((l) => l.msg === 'writing an event failed' && /ECONNREFUSED/.test(String(l.err))), JSON.stringify(down.lines));
  });
});
