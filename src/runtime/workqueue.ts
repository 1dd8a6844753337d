// A keyed work queue with controller-runtime semantics:
// - de-duplicating: a key added many times while it waits is handed out once;
// - exclusive: a key being processed is never handed to a second worker; re-added meanwhile it is
//   marked dirty and queued again on done();
// - delaying: addAfter() with the earlier deadline winning;
// - rate limited: addRateLimited() waits max(per-key exponential backoff, global token bucket).
// Keys are strings ("namespace/name"), so identity is value equality.
import { performance } from 'node:perf_hooks';
import type { RuntimeMetrics } from './metrics.ts';

export interface RateLimiter<K extends string = string> {
  /** Delay in ms before the key may be retried; records one more failure. */
  when(key: K): number;
  /** Stops tracking the key (call on success). */
  forget(key: K): void;
  numRequeues(key: K): number;
}

export interface ExponentialOptions {
  /** First retry delay (default 5 ms). */
  baseDelayMs?: number;
  /** Cap (default 1000 s, like client-go). */
  maxDelayMs?: number;
  /** Each delay is stretched by a random factor in [1, 1 + jitter) before capping (default 0.1), so
   * keys that failed together do not retry in lockstep. */
  jitter?: number;
  random?: () => number;
}

/** Per-key exponential backoff: base · 2^failures, capped. */
export class ExponentialFailureRateLimiter<K extends string = string> implements RateLimiter<K> {
  private readonly failures = new Map<K, number>();
  private readonly base: number;
  private readonly max: number;
  private readonly jitter: number;
  private readonly random: () => number;

  constructor(opts: ExponentialOptions = {}) {
    this.base = opts.baseDelayMs ?? 5;
    this.max = opts.maxDelayMs ?? 1_000_000;
    this.jitter = opts.jitter ?? 0.1;
    this.random = opts.random ?? Math.random;
  }

  when(key: K): number {
    const n = this.failures.get(key) ?? 0;
    this.failures.set(key, n + 1);
    // 2 ** n is Infinity for huge n, which the cap absorbs.
    const delay = this.base * 2 ** n * (1 + this.jitter * this.random());
    return Math.min(this.max, delay);
  }

  forget(key: K): void {
    this.failures.delete(key);
  }

  numRequeues(key: K): number {
    return this.failures.get(key) ?? 0;
  }
}

export interface BucketOptions {
  /** Sustained rate (default 10 per second). */
  qps?: number;
  /** Tokens available at once (default 100). */
  burst?: number;
  /** Monotonic clock in ms (tests). */
  now?: () => number;
}

/** A global token bucket: each when() reserves a token; without one it returns the wait for it. */
export class BucketRateLimiter<K extends string = string> implements RateLimiter<K> {
  private readonly qps: number;
  private readonly burst: number;
  private readonly now: () => number;
  private tokens: number;
  private last: number;

  constructor(opts: BucketOptions = {}) {
    this.qps = opts.qps ?? 10;
    this.burst = opts.burst ?? 100;
    this.now = opts.now ?? (() => performance.now());
    this.tokens = this.burst;
    this.last = this.now();
  }

  when(_key: K): number {
    const t = this.now();
    this.tokens = Math.min(this.burst, this.tokens + ((t - this.last) / 1000) * this.qps);
    this.last = t;
    // Tokens may go negative: reservations queue up behind each other.
    this.tokens -= 1;
    return this.tokens >= 0 ? 0 : (-this.tokens / this.qps) * 1000;
  }

  forget(_key: K): void {}

  numRequeues(_key: K): number {
    return 0;
  }
}

/** Asks every limiter (so each records the attempt) and waits for the longest. */
export class MaxOfRateLimiter<K extends string = string> implements RateLimiter<K> {
  private readonly limiters: RateLimiter<K>[];

  constructor(...limiters: RateLimiter<K>[]) {
    this.limiters = limiters;
  }

  when(key: K): number {
    let max = 0;
    for (const l of this.limiters) max = Math.max(max, l.when(key));
    return max;
  }

  forget(key: K): void {
    for (const l of this.limiters) l.forget(key);
  }

  numRequeues(key: K): number {
    let max = 0;
    for (const l of this.limiters) max = Math.max(max, l.numRequeues(key));
    return max;
  }
}

/** controller-runtime's default: max(5 ms · 2^n capped at 1000 s, 10 qps / burst 100). */
export function defaultControllerRateLimiter<K extends string = string>(
  opts: { exponential?: ExponentialOptions; bucket?: BucketOptions } = {},
): RateLimiter<K> {
  return new MaxOfRateLimiter<K>(new ExponentialFailureRateLimiter<K>(opts.exponential), new BucketRateLimiter<K>(opts.bucket));
}

export interface WorkQueueOptions<K extends string = string> {
  /** The `name` label of the workqueue_* metrics (use the controller name). */
  name?: string;
  rateLimiter?: RateLimiter<K>;
  metrics?: RuntimeMetrics;
}

// setTimeout fires at once for delays beyond a signed 32-bit ms count (~24.8 days).
const MAX_TIMER_MS = 2 ** 31 - 1;

export class WorkQueue<K extends string = string> {
  readonly name: string;
  private readonly limiter: RateLimiter<K>;
  private readonly metrics: RuntimeMetrics | undefined;
  private readonly untrack: (() => void) | undefined;
  private readonly labels: { name: string };

  /** Keys ready to be handed out, in order. */
  private readonly fifo = new Fifo<K>();
  /** Keys that need processing: queued, or re-added while being processed. */
  private readonly dirty = new Set<K>();
  /** Keys held by a worker -> when get() handed them out. */
  private readonly processing = new Map<K, number>();
  /** When a dirty key was first added (queue latency). */
  private readonly addedAt = new Map<K, number>();
  /** Keys waiting for addAfter(). */
  private readonly waiting = new Map<K, { at: number; timer: NodeJS.Timeout }>();
  /** Blocked get() calls, first come first served. */
  private readonly getters = new Fifo<(key: K | undefined) => void>();
  private shuttingDown = false;

  constructor(opts: WorkQueueOptions<K> = {}) {
    this.name = opts.name ?? 'workqueue';
    this.labels = { name: this.name };
    this.limiter = opts.rateLimiter ?? defaultControllerRateLimiter<K>();
    this.metrics = opts.metrics;
    this.untrack = this.metrics?.trackInFlight(this.name, () => this.inFlight());
  }

  add(key: K): void {
    if (this.shuttingDown || this.dirty.has(key)) return;
    this.dirty.add(key);
    if (!this.addedAt.has(key)) this.addedAt.set(key, performance.now());
    this.metrics?.workqueueAdds.inc(this.labels);
    this.metrics?.workqueueDepth.inc(this.labels);
    if (this.processing.has(key)) return; // queued again by done()
    this.fifo.push(key);
    this.dispatch();
  }

  /** Adds the key after `ms`; if it is already waiting with an earlier deadline, that one stays. */
  addAfter(key: K, ms: number): void {
    if (this.shuttingDown) return;
    if (!(ms > 0)) {
      this.add(key);
      return;
    }
    const delay = Math.min(ms, MAX_TIMER_MS);
    const at = performance.now() + delay;
    const prev = this.waiting.get(key);
    if (prev && prev.at <= at) return;
    if (prev) clearTimeout(prev.timer);
    const timer = setTimeout(() => {
      this.waiting.delete(key);
      this.add(key);
    }, delay);
    this.waiting.set(key, { at, timer });
  }

  /** Adds the key after the rate limiter's delay (a retry after failure). */
  addRateLimited(key: K): void {
    if (this.shuttingDown) return;
    this.metrics?.workqueueRetries.inc(this.labels);
    this.addAfter(key, this.limiter.when(key));
  }

  /** Resets the key's backoff (after a success). Does not remove a pending add. */
  forget(key: K): void {
    this.limiter.forget(key);
  }

  numRequeues(key: K): number {
    return this.limiter.numRequeues(key);
  }

  /** The next key to process, waiting for one; undefined once the queue is shut down. The caller
   * owns the key until done(key). */
  get(): Promise<K | undefined> {
    if (this.shuttingDown) return Promise.resolve(undefined);
    if (this.fifo.length > 0 && this.getters.length === 0) return Promise.resolve(this.take());
    return new Promise((resolve) => {
      this.getters.push(resolve);
      this.dispatch();
    });
  }

  /** Releases a key handed out by get(); if it was re-added meanwhile it is queued again. */
  done(key: K): void {
    const started = this.processing.get(key);
    if (started === undefined) return;
    this.processing.delete(key);
    this.metrics?.workqueueWorkDuration.observe(this.labels, (performance.now() - started) / 1000);
    if (this.dirty.has(key) && !this.shuttingDown) {
      this.fifo.push(key);
      this.dispatch();
    }
  }

  /** Keys ready to be handed out (not those being processed or waiting for a delay). */
  len(): number {
    return this.fifo.length;
  }

  isShuttingDown(): boolean {
    return this.shuttingDown;
  }

  /** Stops handing out keys: blocked and later get() calls return undefined; pending delays are
   * dropped and adds are ignored. Keys still being processed may call done(). */
  shutDown(): void {
    if (this.shuttingDown) return;
    this.shuttingDown = true;
    for (const w of this.waiting.values()) clearTimeout(w.timer);
    this.waiting.clear();
    this.fifo.clear();
    this.dirty.clear();
    this.addedAt.clear();
    for (let g = this.getters.shift(); g; g = this.getters.shift()) g(undefined);
    this.metrics?.workqueueDepth.set(this.labels, 0);
    this.untrack?.();
  }

  private take(): K {
    const key = this.fifo.shift() as K;
    const now = performance.now();
    this.dirty.delete(key);
    this.processing.set(key, now);
    const added = this.addedAt.get(key);
    this.addedAt.delete(key);
    this.metrics?.workqueueDepth.dec(this.labels);
    if (added !== undefined) this.metrics?.workqueueQueueDuration.observe(this.labels, (now - added) / 1000);
    return key;
  }

  private dispatch(): void {
    while (this.getters.length > 0 && this.fifo.length > 0) {
      const resolve = this.getters.shift() as (key: K | undefined) => void;
      resolve(this.take());
    }
  }

  private inFlight(): { unfinishedSeconds: number; longestSeconds: number } {
    const now = performance.now();
    let sum = 0;
    let longest = 0;
    for (const started of this.processing.values()) {
      const s = (now - started) / 1000;
      sum += s;
      longest = Math.max(longest, s);
    }
    return { unfinishedSeconds: sum, longestSeconds: longest };
  }
}

/** Array-backed FIFO with O(1) amortised shift (Array#shift is O(n) on large queues). */
class Fifo<T> {
  private items: T[] = [];
  private head = 0;

  get length(): number {
    return this.items.length - this.head;
  }

  push(v: T): void {
    this.items.push(v);
  }

  shift(): T | undefined {
    if (this.head >= this.items.length) return undefined;
    const v = this.items[this.head];
    this.items[this.head] = undefined as T; // release the reference
    this.head++;
    if (this.head > 1024 && this.head * 2 > this.items.length) {
      this.items = this.items.slice(this.head);
      this.head = 0;
    }
    return v;
  }

  clear(): void {
    this.items = [];
    this.head = 0;
  }
}
