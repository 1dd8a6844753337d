// The informer against a real kube-apiserver: initial list and events, watches the server closes
// (timeoutSeconds), stalled watches, and a real 410 Gone after an outage, which must re-list and
// deliver the deletes, updates and adds that happened meanwhile. One test uses a fake client to
// feed a watch stream split at every byte.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type http from 'node:http';
import { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { KubeClient } from '../../src/adapters/kube/client.ts';
import type { KubeObject } from '../../src/core/types.ts';
import { Informer, type InformerClient } from '../../src/runtime/informer.ts';
import { startCluster, type TestCluster } from '../env/cluster.ts';

interface Ev {
  type: 'add' | 'update' | 'delete';
  name: string;
  rv: string;
  /** add: isInInitialList; delete: finalStateUnknown; update: old === new (resync). */
  flag: boolean;
  oldRv?: string;
  data?: Record<string, string>;
}

const rv = (o: KubeObject): string => String(o.metadata.resourceVersion);
const dataOf = (o: KubeObject): Record<string, string> => (o.data ?? {}) as Record<string, string>;

function record(inf: Informer): Ev[] {
  const events: Ev[] = [];
  inf.addHandler({
    add: (o, initial) => void events.push({ type: 'add', name: o.metadata.name, rv: rv(o), flag: initial, data: dataOf(o) }),
    update: (old, cur) =>
      void events.push({ type: 'update', name: cur.metadata.name, rv: rv(cur), oldRv: rv(old), flag: old === cur, data: dataOf(cur) }),
    delete: (o, unknown) => void events.push({ type: 'delete', name: o.metadata.name, rv: rv(o), flag: unknown }),
  });
  return events;
}

async function until(what: string, fn: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!fn()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

const summary = (events: Ev[]): string[] => events.map((e) => `${e.type} ${e.name}${e.flag ? ' *' : ''}`);

void describe('Informer against a real API server', { timeout: 180_000 }, () => {
  let cluster: TestCluster;
  let client: KubeClient;

  const cmPath = (ns: string, name?: string): string => `/api/v1/namespaces/${ns}/configmaps${name ? `/${name}` : ''}`;
  const createNs = (ns: string): Promise<unknown> =>
    client.request('POST', '/api/v1/namespaces', { apiVersion: 'v1', kind: 'Namespace', metadata: { name: ns } });
  const createCm = (ns: string, name: string, data: Record<string, string> = { k: 'v1' }, labels?: Record<string, string>): Promise<KubeObject> =>
    client.request('POST', cmPath(ns), { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name, labels }, data });
  const patchCm = (ns: string, name: string, data: Record<string, string>): Promise<KubeObject> =>
    client.request('PATCH', cmPath(ns, name), { data }, 'application/merge-patch+json');
  const deleteCm = (ns: string, name: string): Promise<unknown> => client.request('DELETE', cmPath(ns, name));

  before(async () => {
    cluster = await startCluster({ controllerManager: false });
    client = await KubeClient.fromFile(cluster.kubeconfigPath);
  });
  after(async () => {
    await cluster?.stop();
  });

  void test('lists, then delivers add, update and delete; a throwing handler harms nobody', async () => {
    await createNs('basic');
    await createCm('basic', 'pre-1', { k: 'a' }, { app: 'x' });
    await createCm('basic', 'pre-2', { k: 'b' }, { app: 'x' });
    await createCm('basic', 'unlabelled');
    const inf = new Informer({ client, path: cmPath('basic'), labelSelector: 'app=x' });
    inf.addHandler({
      add: () => {
        throw new Error('handler bug');
      },
      update: () => Promise.reject(new Error('async handler bug')),
    });
    const events = record(inf);
    inf.start();
    await inf.waitForSync();
    assert.equal(inf.hasSynced(), true);
    assert.deepEqual(summary(events).sort(), ['add pre-1 *', 'add pre-2 *']);
    assert.deepEqual(inf.list().map((o) => o.metadata.name).sort(), ['pre-1', 'pre-2']);
    assert.equal(inf.get('basic', 'unlabelled'), undefined, 'label selector applies');

    events.length = 0;
    const created = await createCm('basic', 'c1', { k: 'v1' }, { app: 'x' });
    await until('add c1', () => events.length >= 1);
    const patched = await patchCm('basic', 'c1', { k: 'v2' });
    await until('update c1', () => events.length >= 2);
    await deleteCm('basic', 'c1');
    await until('delete c1', () => events.length >= 3);
    await sleep(100);
    assert.deepEqual(summary(events), ['add c1', 'update c1', 'delete c1']);
    assert.equal(events[1]!.oldRv, rv(created));
    assert.equal(events[1]!.rv, rv(patched));
    assert.deepEqual(events[1]!.data, { k: 'v2' });
    assert.equal(inf.get('basic', 'c1'), undefined);
    assert.equal(inf.get('basic', 'pre-1')?.metadata.name, 'pre-1');

    // A handler that joins late first receives the cache as adds.
    const late: string[] = [];
    inf.onAdd((o, initial) => void late.push(`${o.metadata.name}${initial ? ' *' : ''}`));
    assert.deepEqual(late.sort(), ['pre-1 *', 'pre-2 *']);
    await inf.stop();
    assert.equal(inf.stats.lists, 1);
  });

  void test('resumes watches the server closes, from the last resourceVersion, without duplicate events', async () => {
    await createNs('resume');
    // timeoutSeconds 1-2: the server ends each watch after a second or two.
    const inf = new Informer({ client, path: cmPath('resume'), watchTimeoutSeconds: 1, backoff: { initialMs: 50, maxMs: 200 } });
    const events = record(inf);
    inf.start();
    await inf.waitForSync();
    const t0 = Date.now();
    for (let i = 0; i < 14; i++) {
      await createCm('resume', `cm-${i}`);
      await sleep(300);
    }
    await until('14 adds', () => events.length >= 14);
    await sleep(1200); // one more server close with nothing new to deliver
    const elapsed = Date.now() - t0;
    assert.ok(inf.stats.watches >= 3, `watches ${inf.stats.watches} in ${elapsed} ms`);
    assert.equal(inf.stats.lists, 1, 'resumed from the last resourceVersion, not re-listed');
    assert.equal(inf.stats.gone, 0);
    assert.equal(events.length, 14, `exactly one event per object: ${summary(events).join(', ')}`);
    assert.equal(new Set(events.map((e) => e.name)).size, 14);
    assert.ok(events.every((e) => e.type === 'add' && !e.flag));
    await inf.stop();
  });

  void test('restarts a watch that stays silent for stallTimeoutMs', async () => {
    await createNs('stall');
    // The server would keep this watch open for 5+ min and send its first bookmark after ~1 min.
    const inf = new Informer({ client, path: cmPath('stall'), stallTimeoutMs: 800 });
    const events = record(inf);
    inf.start();
    await inf.waitForSync();
    await until('a stall', () => inf.stats.stalls >= 2, 5_000);
    assert.ok(inf.stats.watches >= 3);
    assert.equal(inf.stats.lists, 1);
    await createCm('stall', 'after-stall');
    await until('add after the restart', () => events.length >= 1);
    assert.deepEqual(summary(events), ['add after-stall']);
    await inf.stop();
  });

  void test('after an outage, the real 410 triggers a re-list that delivers missed deletes, updates and adds', async () => {
    await createNs('outage');
    await createCm('outage', 'a');
    await createCm('outage', 'b', { k: 'old' });
    await createCm('outage', 'c');
    const flaky = new FlakyClient(client);
    const inf = new Informer({ client: flaky, path: cmPath('outage'), backoff: { initialMs: 40, maxMs: 160 } });
    const events = record(inf);
    inf.start();
    await inf.waitForSync();
    await until('watching', () => flaky.streams.size === 1);
    events.length = 0;

    flaky.cut(); // the open watch dies with ECONNRESET; new connections are refused
    await until('retries during the outage', () => inf.stats.errors >= 3);
    await deleteCm('outage', 'a');
    await patchCm('outage', 'b', { k: 'new' });
    await createCm('outage', 'd');
    // The outage "lasted" long enough for the server's watch window to move past our position:
    // rv 1 predates the window of this cluster, so the next watch gets a real 410 from the server.
    inf.forceResourceVersion('1');
    const errorsDuringOutage = inf.stats.errors;
    flaky.down = false;

    await until('re-list events', () => events.length >= 3);
    await sleep(200);
    assert.deepEqual(summary(events).sort(), ['add d', 'delete a *', 'update b']);
    assert.equal(events.find((e) => e.type === 'update')?.data?.k, 'new');
    assert.equal(inf.stats.gone, 1, 'the server answered 410 Gone');
    assert.equal(inf.stats.lists, 2, 'one re-list');
    assert.ok(errorsDuringOutage <= 20, `backoff, not a tight loop: ${errorsDuringOutage} failed attempts`);
    assert.deepEqual(inf.list().map((o) => o.metadata.name).sort(), ['b', 'c', 'd']);

    // Still live after the re-list.
    await deleteCm('outage', 'c');
    await until('delete c', () => events.length >= 4);
    assert.deepEqual(summary(events.slice(3)), ['delete c']);

    // stop() ends a blocked watch promptly.
    const t = Date.now();
    await inf.stop();
    assert.ok(Date.now() - t < 1000);
    assert.equal(flaky.streams.size, 0, 'the watch connection is closed');
  });
});

/** Passes requests to the real client, but can drop open watches and refuse new requests. */
class FlakyClient implements InformerClient {
  down = false;
  readonly streams = new Set<http.IncomingMessage>();

  constructor(private readonly real: KubeClient) {}

  list(...args: Parameters<KubeClient['list']>): ReturnType<KubeClient['list']> {
    if (this.down) return Promise.reject(refused());
    return this.real.list(...args);
  }

  async raw(...args: Parameters<KubeClient['raw']>): Promise<http.IncomingMessage> {
    if (this.down) throw refused();
    const res = await this.real.raw(...args);
    this.streams.add(res);
    res.once('close', () => this.streams.delete(res));
    return res;
  }

  cut(): void {
    this.down = true;
    for (const s of this.streams) s.destroy(Object.assign(new Error('read ECONNRESET (simulated)'), { code: 'ECONNRESET' }));
  }
}

function refused(): Error {
  return Object.assign(new Error('connect ECONNREFUSED (simulated)'), { code: 'ECONNREFUSED' });
}

void describe('Informer watch stream parsing (fake client)', { timeout: 20_000 }, () => {
  void test('handles NDJSON split at every byte, skips same-resourceVersion updates, resumes and resyncs', async () => {
    const cm = (name: string, rv: string, data: Record<string, string> = {}): KubeObject => ({
      apiVersion: 'v1',
      kind: 'ConfigMap',
      metadata: { name, namespace: 'ns', resourceVersion: rv },
      data,
    });
    const lines = [
      { type: 'ADDED', object: cm('x', '2', { greeting: 'grüße 🚀' }) },
      { type: 'MODIFIED', object: cm('x', '2', { greeting: 'grüße 🚀' }) }, // same rv: no event
      { type: 'MODIFIED', object: cm('x', '3', { greeting: 'ciao' }) },
      { type: 'BOOKMARK', object: { kind: 'ConfigMap', apiVersion: 'v1', metadata: { resourceVersion: '4' } } },
      { type: 'ADDED', object: cm('y', '5') },
      { type: 'DELETED', object: cm('x', '6') },
    ];
    const payload = Buffer.from(lines.map((l) => JSON.stringify(l)).join('\n') + '\n');
    const urls: string[] = [];
    const fake: InformerClient = {
      list: () => Promise.resolve({ items: [cm('pre', '1')], resourceVersion: '1' }),
      raw: (_method, path, _body, _ct, signal) => {
        urls.push(path);
        const s = new Readable({ read() {} });
        signal?.addEventListener('abort', () => s.destroy(new Error('aborted')), { once: true });
        if (urls.length === 1) {
          for (const byte of payload) s.push(Buffer.from([byte]));
          s.push(null); // server closes
        } // later watches stay open and silent
        return Promise.resolve(Object.assign(s, { statusCode: 200 }) as unknown as http.IncomingMessage);
      },
    };
    const inf = new Informer({ client: fake, path: '/api/v1/namespaces/ns/configmaps', resyncPeriodMs: 100 });
    inf.onAdd(() => {
      throw new Error('bug');
    });
    const events = record(inf);
    inf.start();
    await until('stream consumed', () => urls.length >= 2);
    assert.deepEqual(summary(events), ['add pre *', 'add x', 'update x', 'add y', 'delete x']);
    assert.deepEqual(events[1]!.data, { greeting: 'grüße 🚀' });
    const second = new URL(urls[1]!, 'https://x');
    assert.equal(second.searchParams.get('resourceVersion'), '6', 'resumes after the last event');
    assert.equal(second.searchParams.get('allowWatchBookmarks'), 'true');
    const timeout = Number(second.searchParams.get('timeoutSeconds'));
    assert.ok(timeout >= 300 && timeout < 600, `timeoutSeconds ${timeout}`);
    assert.deepEqual(inf.list().map((o) => o.metadata.name).sort(), ['pre', 'y']);

    events.length = 0;
    await until('a resync', () => events.length >= 2, 2_000);
    assert.ok(events.every((e) => e.type === 'update' && e.flag), 'resync replays the cache as update(obj, obj)');
    await inf.stop();
  });

  void test('HTTP 410 and other ERROR events re-list; connection errors back off and resume the watch', async () => {
    const cm = (name: string, rv: string): KubeObject => ({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name, namespace: 'ns', resourceVersion: rv } });
    const lists = [[cm('a', '1')], [cm('a', '1'), cm('b', '2')], [cm('b', '3')]];
    let listCalls = 0;
    let rawCalls = 0;
    let healthyAfterRefusal: boolean | undefined;
    const stream = (status: number, body?: string): http.IncomingMessage => {
      const s = new Readable({ read() {} });
      if (body !== undefined) {
        s.push(body);
        s.push(null);
      }
      return Object.assign(s, { statusCode: status }) as unknown as http.IncomingMessage;
    };
    const fake: InformerClient = {
      list: () => {
        const items = lists[Math.min(listCalls, lists.length - 1)]!;
        listCalls++;
        return Promise.resolve({ items, resourceVersion: String(10 * listCalls) });
      },
      raw: () => {
        rawCalls++;
        if (rawCalls === 1) return Promise.resolve(stream(410, JSON.stringify({ kind: 'Status', code: 410, reason: 'Gone' })));
        if (rawCalls === 2) return Promise.resolve(stream(200, JSON.stringify({ type: 'ERROR', object: { kind: 'Status', code: 500, message: 'etcd down' } }) + '\n'));
        if (rawCalls === 3) return Promise.reject(Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' }));
        healthyAfterRefusal ??= inf.healthy(); // the fourth watch, before it is open
        return Promise.resolve(stream(200)); // open and silent
      },
    };
    const inf = new Informer({ client: fake, path: '/api/v1/namespaces/ns/configmaps', backoff: { initialMs: 10, maxMs: 40 } });
    const events = record(inf);
    const ac = new AbortController();
    setTimeout(() => ac.abort(new Error('gave up')), 10); // AbortSignal.timeout would not keep the loop alive
    await assert.rejects(inf.waitForSync(ac.signal), /gave up/, 'waitForSync honours its signal');
    inf.start();
    await until('the fourth watch', () => rawCalls >= 4, 3_000);
    await until('healthy again once a watch is open', () => inf.healthy(), 3_000);
    assert.equal(healthyAfterRefusal, false, 'not healthy while its watch cannot connect');
    assert.deepEqual(inf.stats, { lists: 3, watches: 4, gone: 1, stalls: 0, errors: 2 });
    assert.deepEqual(summary(events), ['add a *', 'add b', 'update b', 'delete a *']);
    assert.equal(inf.lastResourceVersion(), '30', 'after ECONNREFUSED the watch resumes from the last list');
    await inf.stop();
  });
});
