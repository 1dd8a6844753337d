// WorkQueue, rate limiters and the controller worker loop: de-duplication, per-key exclusivity,
// delays, backoff, the global bucket, shutdown and the controller-runtime metrics.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  BucketRateLimiter,
  ExponentialFailureRateLimiter,
  WorkQueue,
  defaultControllerRateLimiter,
} from '../../src/runtime/workqueue.ts';
import { createMetrics } from '../../src/runtime/metrics.ts';
import { keyOf, runController, splitKey } from '../../src/runtime/controller.ts';

/** The value of get() if it resolves within ms, else 'timeout'. */
async function getWithin<K extends string>(q: WorkQueue<K>, ms: number): Promise<K | undefined | 'timeout'> {
  const ac = new AbortController();
  const t = sleep(ms, 'timeout' as const, { signal: ac.signal }).catch(() => 'timeout' as const);
  const r = await Promise.race([q.get(), t]);
  ac.abort();
  return r;
}

/** A limiter without delays, so queue tests do not depend on the default backoff. */
const noDelay = <K extends string>(): ExponentialFailureRateLimiter<K> => new ExponentialFailureRateLimiter<K>({ baseDelayMs: 0, jitter: 0 });

function metricValue(text: string, line: string): number | undefined {
  const hit = text.split('\n').find((l) => l.startsWith(line + ' '));
  return hit === undefined ? undefined : Number(hit.slice(line.length + 1));
}

void describe('WorkQueue', () => {
  void test('de-duplicates a key added many times while it waits', async () => {
    const q = new WorkQueue({ rateLimiter: noDelay() });
    q.add('a');
    q.add('a');
    q.add('b');
    q.add('a');
    assert.equal(q.len(), 2);
    assert.equal(await q.get(), 'a');
    assert.equal(await q.get(), 'b');
    assert.equal(q.len(), 0);
    assert.equal(await getWithin(q, 30), 'timeout');
    q.shutDown();
  });

  void test('never hands a key being processed to a second worker; a re-add is queued after done', async () => {
    const q = new WorkQueue();
    q.add('a');
    assert.equal(await q.get(), 'a');
    q.add('a'); // dirty while processing
    q.add('a');
    assert.equal(q.len(), 0, 'not handed out while processing');
    const second = q.get();
    q.add('b');
    assert.equal(await second, 'b', 'the blocked worker gets another key, not a');
    const third = q.get();
    assert.equal(await Promise.race([third, sleep(20, 'pending')]), 'pending');
    q.done('a');
    assert.equal(await third, 'a', 'a comes back once, after done');
    q.done('b');
    q.done('a');
    assert.equal(await getWithin(q, 20), 'timeout', 'processed once more, not twice');
    q.shutDown();
  });

  void test('with many workers and random adds, a key is never processed concurrently', async () => {
    const q = new WorkQueue<string>();
    const active = new Set<string>();
    const processed = new Map<string, number>();
    let violations = 0;
    const worker = async (): Promise<void> => {
      for (;;) {
        const key = await q.get();
        if (key === undefined) return;
        if (active.has(key)) violations++;
        active.add(key);
        await sleep(Math.random() * 3);
        // Re-adds while processing must be coalesced into one more round.
        if (Math.random() < 0.3) q.add(key);
        active.delete(key);
        processed.set(key, (processed.get(key) ?? 0) + 1);
        q.done(key);
      }
    };
    const workers = Array.from({ length: 8 }, () => worker());
    for (let i = 0; i < 400; i++) {
      q.add(`k${i % 10}`);
      if (i % 20 === 0) await sleep(1);
    }
    while (q.len() > 0 || active.size > 0) await sleep(5);
    await sleep(10);
    q.shutDown();
    await Promise.all(workers);
    assert.equal(violations, 0);
    assert.equal(processed.size, 10);
  });

  void test('addAfter: keys arrive in deadline order, and an earlier deadline wins', async () => {
    const q = new WorkQueue();
    const t0 = performance.now();
    q.addAfter('late', 90);
    q.addAfter('early', 15);
    q.addAfter('mid', 50);
    q.addAfter('moved', 300);
    q.addAfter('moved', 30); // earlier: replaces 300
    q.addAfter('kept', 40);
    q.addAfter('kept', 400); // later: ignored
    q.addAfter('now', 0); // no delay
    assert.equal(q.len(), 1);
    const order: string[] = [];
    for (let i = 0; i < 6; i++) {
      const k = (await q.get()) as string;
      order.push(k);
      q.done(k);
    }
    assert.deepEqual(order, ['now', 'early', 'moved', 'kept', 'mid', 'late']);
    assert.ok(performance.now() - t0 >= 85, 'late waited for its delay');
    assert.equal(await getWithin(q, 120), 'timeout', 'the ignored later deadlines do not fire');
    q.shutDown();
  });

  void test('addRateLimited: backoff per key grows, forget resets it', async () => {
    const q = new WorkQueue({ rateLimiter: new ExponentialFailureRateLimiter({ baseDelayMs: 20, jitter: 0 }) });
    const waits: number[] = [];
    for (let i = 0; i < 3; i++) {
      const t = performance.now();
      q.addRateLimited('a');
      assert.equal(await q.get(), 'a');
      waits.push(performance.now() - t);
      q.done('a');
    }
    assert.equal(q.numRequeues('a'), 3);
    // 20, 40, 80 ms: timers never fire early; the upper bounds leave room for a loaded machine.
    assert.ok(waits[0]! >= 19 && waits[0]! < 120, `first ${waits[0]}`);
    assert.ok(waits[1]! >= 39 && waits[1]! < 140, `second ${waits[1]}`);
    assert.ok(waits[2]! >= 79 && waits[2]! < 180, `third ${waits[2]}`);
    q.forget('a');
    assert.equal(q.numRequeues('a'), 0);
    const t = performance.now();
    q.addRateLimited('a');
    await q.get();
    assert.ok(performance.now() - t < 140, 'back to the base delay (the next one would be 160 ms)');
    q.shutDown();
  });

  void test('shutDown releases blocked getters, drops delayed keys and ignores adds', async () => {
    const q = new WorkQueue();
    const blocked = [q.get(), q.get()];
    q.addAfter('x', 50);
    q.addRateLimited('y');
    q.shutDown();
    assert.deepEqual(await Promise.all(blocked), [undefined, undefined]);
    q.add('z');
    assert.equal(q.len(), 0);
    assert.equal(await q.get(), undefined);
    assert.equal(q.isShuttingDown(), true);
    await sleep(60); // the delayed key does not come back
    assert.equal(q.len(), 0);
  });

  void test('reports controller-runtime workqueue metrics', async () => {
    const metrics = createMetrics();
    const q = new WorkQueue({ name: 'replication', metrics, rateLimiter: noDelay() });
    q.add('a');
    q.add('a');
    q.add('b');
    let text = await metrics.registry.metrics();
    assert.equal(metricValue(text, 'workqueue_adds_total{name="replication"}'), 2);
    assert.equal(metricValue(text, 'workqueue_depth{name="replication"}'), 2);
    const k = (await q.get()) as string;
    await sleep(30);
    text = await metrics.registry.metrics();
    assert.equal(metricValue(text, 'workqueue_depth{name="replication"}'), 1);
    assert.ok(metricValue(text, 'workqueue_unfinished_work_seconds{name="replication"}')! >= 0.025);
    assert.ok(metricValue(text, 'workqueue_longest_running_processor_seconds{name="replication"}')! >= 0.025);
    q.done(k);
    q.addRateLimited('c');
    text = await metrics.registry.metrics();
    assert.equal(metricValue(text, 'workqueue_retries_total{name="replication"}'), 1);
    assert.equal(metricValue(text, 'workqueue_queue_duration_seconds_count{name="replication"}'), 1);
    assert.equal(metricValue(text, 'workqueue_work_duration_seconds_count{name="replication"}'), 1);
    assert.equal(metricValue(text, 'workqueue_unfinished_work_seconds{name="replication"}'), 0);
    q.shutDown();
    text = await metrics.registry.metrics();
    assert.equal(metricValue(text, 'workqueue_unfinished_work_seconds{name="replication"}'), undefined, 'a shut-down queue stops reporting');
  });
});

void describe('rate limiters', () => {
  void test('exponential: 5 ms · 2^n, capped at 1000 s, per key, reset by forget', () => {
    const l = new ExponentialFailureRateLimiter({ jitter: 0 });
    const got = Array.from({ length: 6 }, () => l.when('a'));
    assert.deepEqual(got, [5, 10, 20, 40, 80, 160]);
    assert.equal(l.when('b'), 5, 'keys are independent');
    for (let i = 0; i < 40; i++) l.when('a');
    assert.equal(l.when('a'), 1_000_000);
    for (let i = 0; i < 2000; i++) l.when('a'); // no overflow to NaN
    assert.equal(l.when('a'), 1_000_000);
    assert.equal(l.numRequeues('b'), 1);
    l.forget('a');
    assert.equal(l.numRequeues('a'), 0);
    assert.equal(l.when('a'), 5);
  });

  void test('exponential jitter stays within [d, 1.1·d) and under the cap', () => {
    const hi = new ExponentialFailureRateLimiter({ random: () => 0.999999 });
    const lo = new ExponentialFailureRateLimiter({ random: () => 0 });
    for (let n = 0; n < 30; n++) {
      const d = Math.min(1_000_000, 5 * 2 ** n);
      const a = lo.when('k');
      const b = hi.when('k');
      assert.equal(a, d);
      assert.ok(b >= d && b <= Math.min(1_000_000, d * 1.1), `n=${n}: ${b}`);
    }
  });

  void test('token bucket: burst is free, then qps paces reservations', () => {
    let now = 0;
    const l = new BucketRateLimiter({ qps: 10, burst: 100, now: () => now });
    for (let i = 0; i < 100; i++) assert.equal(l.when(`k${i}`), 0);
    assert.equal(Math.round(l.when('x')), 100); // 101st: one token interval
    assert.equal(Math.round(l.when('y')), 200); // queued behind it
    now += 1000; // 10 tokens back: -2 + 10 = 8 available
    assert.equal(l.when('z'), 0);
    now += 60_000;
    for (let i = 0; i < 100; i++) assert.equal(l.when(`w${i}`), 0, 'refills up to burst, not beyond');
    assert.ok(l.when('v') > 0);
  });

  void test('default controller limiter is the max of both', () => {
    let now = 0;
    const l = defaultControllerRateLimiter({ exponential: { jitter: 0 }, bucket: { now: () => now } });
    // Fresh keys: exponential 5 ms dominates while the bucket has tokens.
    for (let i = 0; i < 100; i++) assert.equal(l.when(`k${i}`), 5);
    // Bucket empty: 100 ms for the next fresh key.
    assert.equal(Math.round(l.when('fresh')), 100);
    now += 3_600_000;
    for (let i = 0; i < 15; i++) l.when('hot');
    assert.equal(l.when('hot'), 5 * 2 ** 15);
    assert.equal(l.numRequeues('hot'), 16);
    l.forget('hot');
    assert.equal(l.numRequeues('hot'), 0);
  });
});

void describe('runController', () => {
  void test('retries failures with backoff, honours requeueAfter, forgets on success, records metrics', async () => {
    const metrics = createMetrics();
    const queue = new WorkQueue({ name: 'ctl', metrics, rateLimiter: new ExponentialFailureRateLimiter({ baseDelayMs: 5, jitter: 0 }) });
    const ac = new AbortController();
    const calls: string[] = [];
    let failuresLeft = 2;
    let periodic = 0;
    let requeuesSeenAtSuccess = -1;
    const running = runController({
      name: 'ctl',
      queue,
      workers: 3,
      metrics,
      signal: ac.signal,
      reconcile: async (key) => {
        calls.push(key);
        await sleep(1);
        if (key === 'ns/flaky') {
          if (failuresLeft-- > 0) throw new Error('boom');
          requeuesSeenAtSuccess = queue.numRequeues(key);
          return;
        }
        if (key === 'ns/periodic' && ++periodic < 3) return { requeueAfterMs: 20 };
      },
    });
    queue.add('ns/flaky');
    queue.add('ns/periodic');
    const deadline = Date.now() + 900;
    while (Date.now() < deadline && (calls.filter((c) => c === 'ns/flaky').length < 3 || periodic < 3)) await sleep(5);
    assert.equal(calls.filter((c) => c === 'ns/flaky').length, 3, 'two failures then success');
    assert.equal(requeuesSeenAtSuccess, 2);
    assert.equal(queue.numRequeues('ns/flaky'), 0, 'forgotten after success');
    assert.equal(periodic, 3);
    ac.abort();
    await running;
    assert.equal(await queue.get(), undefined, 'abort shuts the queue down');

    const text = await metrics.registry.metrics();
    assert.equal(metricValue(text, 'controller_runtime_reconcile_total{controller="ctl",result="error"}'), 2);
    assert.equal(metricValue(text, 'controller_runtime_reconcile_total{controller="ctl",result="success"}'), 2);
    assert.equal(metricValue(text, 'controller_runtime_reconcile_total{controller="ctl",result="requeue_after"}'), 2);
    assert.equal(metricValue(text, 'controller_runtime_reconcile_total{controller="ctl",result="requeue"}'), 0);
    assert.equal(metricValue(text, 'controller_runtime_reconcile_errors_total{controller="ctl"}'), 2);
    assert.equal(metricValue(text, 'controller_runtime_reconcile_time_seconds_count{controller="ctl"}'), 6);
    assert.equal(metricValue(text, 'controller_runtime_max_concurrent_reconciles{controller="ctl"}'), 3);
    assert.equal(metricValue(text, 'controller_runtime_active_workers{controller="ctl"}'), 0);
    assert.equal(metricValue(text, 'workqueue_retries_total{name="ctl"}'), 2);
  });

  void test('runs at most `workers` reconciles at once, never one key twice', async () => {
    const queue = new WorkQueue<string>({ rateLimiter: noDelay() });
    const ac = new AbortController();
    let active = 0;
    let peak = 0;
    const busy = new Set<string>();
    let overlap = 0;
    let total = 0;
    const running = runController({
      name: 'conc',
      queue,
      workers: 4,
      signal: ac.signal,
      reconcile: async (key) => {
        if (busy.has(key)) overlap++;
        busy.add(key);
        peak = Math.max(peak, ++active);
        await sleep(2);
        active--;
        busy.delete(key);
        total++;
      },
    });
    for (let round = 0; round < 5; round++) {
      for (let i = 0; i < 12; i++) queue.add(`k${i % 6}`);
      await sleep(4);
    }
    while (queue.len() > 0 || active > 0) await sleep(5);
    ac.abort();
    await running;
    assert.equal(peak, 4);
    assert.equal(overlap, 0);
    assert.ok(total >= 6);
  });

  void test('keyOf / splitKey', () => {
    assert.equal(keyOf({ metadata: { name: 'web', namespace: 'shop' } }), 'shop/web');
    assert.equal(keyOf({ metadata: { name: 'prod' } }), 'prod');
    assert.deepEqual(splitKey('shop/web'), { namespace: 'shop', name: 'web' });
    assert.deepEqual(splitKey('prod'), { namespace: undefined, name: 'prod' });
  });
});
