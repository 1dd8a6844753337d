// List + watch of one resource path into an in-memory cache, with event handlers: the parts of
// client-go's reflector/informer that a controller needs, and the failure handling that plain
// watches in Node lack (silent stalls, resets, 410 Gone, restart storms):
// - LIST (paginated), then WATCH from the list's resourceVersion with bookmarks and a randomized
//   server-side timeout, so the server closes every watch after 5-10 min and it is resumed from
//   the last seen resourceVersion (object or bookmark);
// - 410 Gone (HTTP status, or an ERROR event with code 410, which is how kube-apiserver reports
//   an expired resourceVersion on a watch) re-LISTs and diffs against the cache, so adds,
//   updates and deletes missed while disconnected are delivered as events;
// - a watch that sends no data for stallTimeoutMs is torn down and resumed;
// - failed lists/watches are retried with capped, jittered exponential backoff.
import { performance } from 'node:perf_hooks';
import type { Readable } from 'node:stream';
import { setTimeout as sleepFor } from 'node:timers/promises';
import { KubeApiError, type KubeClient } from '../adapters/kube/client.ts';
import { isRecord, type KubeObject } from '../core/types.ts';
import { silentLogger, type Logger } from '../util/log.ts';
import { keyOf } from './controller.ts';

/** What the informer needs from KubeClient (a narrower type so tests can pass a fake). */
export type InformerClient = Pick<KubeClient, 'list' | 'raw'>;

export interface InformerOptions<T extends KubeObject = KubeObject> {
  client: InformerClient;
  /** Collection path, e.g. /api/v1/namespaces/shop/configmaps or /apis/dr-syncer.io/v1alpha1/replications. */
  path: string;
  labelSelector?: string;
  fieldSelector?: string;
  /** Replays the whole cache to update handlers (old === new) every period; 0 = off (default). It
   * does not contact the API server. */
  resyncPeriodMs?: number;
  /** A watch that delivers no data (no event, no bookmark) for this long is restarted (default 5 min). */
  stallTimeoutMs?: number;
  /** Each watch asks the server to close it after a random time in [min, 2·min) s (default 300). */
  watchTimeoutSeconds?: number;
  /** Retry delays after failures: initial · 2^(n-1), capped, then jittered to [d/2, d]
   * (default 800 ms and 30 s, like client-go's reflector). */
  backoff?: { initialMs?: number; maxMs?: number };
  log?: Logger;
  /** For logs (default: the path). */
  name?: string;
  /** Applied to every object before it is cached and handed to handlers (client-go's
   * SetTransform): keep only what the handlers need, e.g. a digest instead of a Secret's data. */
  transform?: (obj: KubeObject) => T;
}

/** Handlers receive the cached objects themselves: treat them as read-only. A handler may be
 * async; a throw or rejection is logged and does not affect the informer or other handlers. */
export interface EventHandler<T> {
  /** isInInitialList: the object was in the first LIST (or the handler joined after sync). */
  add?(obj: T, isInInitialList: boolean): void | Promise<void>;
  /** Called when the resourceVersion changed, and on resync with old === new. */
  update?(oldObj: T, newObj: T): void | Promise<void>;
  /** finalStateUnknown: the delete was detected by a re-LIST, obj is the last state the cache had. */
  delete?(obj: T, finalStateUnknown: boolean): void | Promise<void>;
}

export interface InformerStats {
  /** Completed LISTs (the first one included). */
  lists: number;
  /** Watch requests started. */
  watches: number;
  /** 410 Gone answers (each is followed by a re-LIST). */
  gone: number;
  /** Watches restarted because they went silent. */
  stalls: number;
  /** Failed LISTs and watches (each is followed by a backoff). */
  errors: number;
}

type WatchOutcome =
  | { kind: 'closed' | 'gone' | 'stalled' | 'stopped'; events: number; durationMs: number }
  | { kind: 'error'; events: number; durationMs: number; err: unknown; relist: boolean };

const DEFAULT_STALL_MS = 5 * 60_000;
const DEFAULT_WATCH_TIMEOUT_S = 300;

export class Informer<T extends KubeObject = KubeObject> {
  readonly name: string;
  readonly stats: InformerStats = { lists: 0, watches: 0, gone: 0, stalls: 0, errors: 0 };

  private readonly client: InformerClient;
  private readonly path: string;
  private readonly selectors: Record<string, string> = {};
  private readonly resyncPeriodMs: number;
  private readonly stallTimeoutMs: number;
  private readonly watchTimeoutSeconds: number;
  private readonly backoffInitialMs: number;
  private readonly backoffMaxMs: number;
  private readonly log: Logger;
  private readonly transform: (obj: KubeObject) => T;

  private cache = new Map<string, T>();
  private handlers: EventHandler<T>[] = [];
  private resourceVersion = '';
  private synced = false;
  private failures = 0;
  private readonly stopCtl = new AbortController();
  private loop: Promise<void> | undefined;
  /** A LIST or watch failed (or stalled) and none has succeeded since. */
  private failing = false;
  private resyncTimer: NodeJS.Timeout | undefined;
  private syncWaiters = new Set<{ resolve: () => void; reject: (err: unknown) => void }>();

  constructor(opts: InformerOptions<T>) {
    this.client = opts.client;
    this.path = opts.path;
    if (opts.labelSelector) this.selectors.labelSelector = opts.labelSelector;
    if (opts.fieldSelector) this.selectors.fieldSelector = opts.fieldSelector;
    this.resyncPeriodMs = opts.resyncPeriodMs ?? 0;
    this.stallTimeoutMs = opts.stallTimeoutMs ?? DEFAULT_STALL_MS;
    this.watchTimeoutSeconds = Math.max(1, opts.watchTimeoutSeconds ?? DEFAULT_WATCH_TIMEOUT_S);
    this.backoffInitialMs = opts.backoff?.initialMs ?? 800;
    this.backoffMaxMs = opts.backoff?.maxMs ?? 30_000;
    this.name = opts.name ?? opts.path;
    this.transform = opts.transform ?? ((o) => o as T);
    this.log = (opts.log ?? silentLogger).child({ informer: this.name });
  }

  // --- handlers ------------------------------------------------------------------------------

  /** Registers handlers; returns a function that removes them. A handler added after the first
   * sync first receives an add for every cached object. */
  addHandler(h: EventHandler<T>): () => void {
    this.handlers = [...this.handlers, h];
    if (this.synced && h.add) for (const obj of this.cache.values()) this.call('add', () => h.add?.(obj, true));
    return () => {
      this.handlers = this.handlers.filter((x) => x !== h);
    };
  }

  onAdd(fn: NonNullable<EventHandler<T>['add']>): () => void {
    return this.addHandler({ add: fn });
  }

  onUpdate(fn: NonNullable<EventHandler<T>['update']>): () => void {
    return this.addHandler({ update: fn });
  }

  onDelete(fn: NonNullable<EventHandler<T>['delete']>): () => void {
    return this.addHandler({ delete: fn });
  }

  // --- lifecycle -----------------------------------------------------------------------------

  /** Starts list+watch in the background; it runs until stop(). */
  start(): void {
    if (this.stopCtl.signal.aborted) throw new Error(`informer ${this.name}: cannot start after stop()`);
    if (this.loop) return;
    this.loop = this.run().catch((err: unknown) => this.log.error({ err }, 'informer loop crashed'));
    if (this.resyncPeriodMs > 0) {
      this.resyncTimer = setInterval(() => this.resync(), this.resyncPeriodMs);
      this.resyncTimer.unref();
    }
  }

  /** Ends the watch and the loop; the cache stays readable. */
  async stop(): Promise<void> {
    this.stopCtl.abort();
    if (this.resyncTimer) clearInterval(this.resyncTimer);
    for (const w of this.syncWaiters) w.reject(new Error(`informer ${this.name} stopped before it synced`));
    this.syncWaiters.clear();
    await this.loop;
  }

  /** True once the first LIST has been applied to the cache. */
  /** Listed, and nothing has failed since its last good LIST or watch: the cache follows the server. */
  healthy(): boolean {
    return this.hasSynced() && !this.failing;
  }

  hasSynced(): boolean {
    return this.synced;
  }

  waitForSync(signal?: AbortSignal): Promise<void> {
    if (this.synced) return Promise.resolve();
    if (this.stopCtl.signal.aborted) return Promise.reject(new Error(`informer ${this.name} is stopped`));
    return new Promise((resolve, reject) => {
      const w = {
        resolve: () => {
          signal?.removeEventListener('abort', onAbort);
          resolve();
        },
        reject: (err: unknown) => {
          signal?.removeEventListener('abort', onAbort);
          reject(err);
        },
      };
      const onAbort = (): void => {
        this.syncWaiters.delete(w);
        reject(signal?.reason ?? new Error('aborted'));
      };
      if (signal?.aborted) return onAbort();
      signal?.addEventListener('abort', onAbort, { once: true });
      this.syncWaiters.add(w);
    });
  }

  // --- cache ---------------------------------------------------------------------------------

  list(): T[] {
    return [...this.cache.values()];
  }

  get(namespace: string | undefined, name: string): T | undefined {
    return this.cache.get(namespace ? `${namespace}/${name}` : name);
  }

  /** The resourceVersion the next watch starts from. */
  lastResourceVersion(): string {
    return this.resourceVersion;
  }

  /**
   * TEST ONLY: makes the next watch start from `rv`. kube-apiserver answers a watch from a
   * resourceVersion older than its watch cache window with an ERROR event (410 Expired); on a
   * fresh cluster the window starts right after bootstrap, so rv "1" is always too old. That is
   * how tests drive the real 410 → re-LIST path without waiting for the window to move.
   */
  forceResourceVersion(rv: string): void {
    this.resourceVersion = rv;
  }

  // --- list + watch loop ---------------------------------------------------------------------

  private get stopSignal(): AbortSignal {
    return this.stopCtl.signal;
  }

  private async run(): Promise<void> {
    let needList = true;
    while (!this.stopSignal.aborted) {
      let justListed = false;
      if (needList) {
        try {
          await this.relist();
          this.failing = false;
          needList = false;
          justListed = true;
        } catch (err) {
          if (this.stopSignal.aborted) return;
          this.stats.errors++;
          await this.backoff(err, 'list failed');
          continue;
        }
      }

      const out = await this.watchOnce();
      // Progress resets the backoff; a watch that only ever fails does not.
      if (out.events > 0) this.failures = 0;
      switch (out.kind) {
        case 'stopped':
          return;
        case 'closed':
          // The server closes every watch at its timeout; resume at once. A watch that closes
          // immediately with nothing in it is a failure, or we would spin.
          this.log.debug({ events: out.events, durationMs: Math.round(out.durationMs) }, 'watch closed by server');
          if (out.events === 0 && out.durationMs < 1000) await this.backoff(new Error('watch closed within 1s without events'), 'very short watch');
          break;
        case 'stalled':
          this.stats.stalls++;
          this.failing = true;
          this.log.warn({ stallTimeoutMs: this.stallTimeoutMs, resourceVersion: this.resourceVersion }, 'watch stalled; restarting it');
          break;
        case 'gone':
          this.stats.gone++;
          needList = true;
          this.log.info({ resourceVersion: this.resourceVersion }, 'resourceVersion expired (410); re-listing');
          // A 410 straight after a fresh LIST means something is off; do not loop LIST/WATCH tightly.
          if (justListed && out.events === 0) await this.backoff(new Error('410 right after list'), 'watch expired immediately');
          break;
        case 'error':
          this.stats.errors++;
          // Like client-go: transient failures (network, 429, 5xx) resume the watch from the same
          // resourceVersion; an ERROR event or another HTTP error re-lists.
          if (out.relist) needList = true;
          await this.backoff(out.err, 'watch failed');
          break;
      }
    }
  }

  private async backoff(err: unknown, msg: string): Promise<void> {
    this.failures++;
    this.failing = true;
    const d = Math.min(this.backoffMaxMs, this.backoffInitialMs * 2 ** (this.failures - 1));
    const delayMs = Math.round(d / 2 + (Math.random() * d) / 2);
    this.log.warn({ err, failures: this.failures, delayMs }, `${msg}; retrying`);
    try {
      await sleepFor(delayMs, undefined, { signal: this.stopSignal });
    } catch {
      // stopped
    }
  }

  private async relist(): Promise<void> {
    const res = await abortable(this.client.list(this.path, { ...this.selectors }), this.stopSignal);
    this.stats.lists++;
    this.replace(res.items.map(this.transform), res.resourceVersion);
  }

  /** Applies a full LIST: adds, changes and deletes relative to the cache become events. */
  private replace(items: T[], resourceVersion: string): void {
    const initial = !this.synced;
    const seen = new Set<string>();
    for (const obj of items) {
      const key = keyOf(obj);
      seen.add(key);
      const prev = this.cache.get(key);
      this.cache.set(key, obj);
      if (!prev) this.emitAdd(obj, initial);
      else if (rvOf(prev) !== rvOf(obj)) this.emitUpdate(prev, obj);
    }
    for (const [key, prev] of [...this.cache]) {
      if (seen.has(key)) continue;
      this.cache.delete(key);
      this.emitDelete(prev, true);
    }
    this.resourceVersion = resourceVersion;
    if (!this.synced) {
      this.synced = true;
      this.log.debug({ objects: this.cache.size, resourceVersion }, 'synced');
      for (const w of this.syncWaiters) w.resolve();
      this.syncWaiters.clear();
    }
  }

  private async watchOnce(): Promise<WatchOutcome> {
    const t0 = performance.now();
    let events = 0;
    const outcome = (kind: 'closed' | 'gone' | 'stalled' | 'stopped'): WatchOutcome => ({ kind, events, durationMs: performance.now() - t0 });
    const failed = (err: unknown, relist: boolean): WatchOutcome => ({ kind: 'error', events, durationMs: performance.now() - t0, err, relist });

    const ac = new AbortController();
    const onStop = (): void => ac.abort();
    this.stopSignal.addEventListener('abort', onStop, { once: true });
    let stalled = false;
    // Covers the whole request, headers included; refreshed by every chunk of data.
    const stallTimer = setTimeout(() => {
      stalled = true;
      ac.abort();
    }, this.stallTimeoutMs);

    const timeoutSeconds = Math.floor(this.watchTimeoutSeconds * (1 + Math.random()));
    const q = new URLSearchParams({
      ...this.selectors,
      watch: 'true',
      allowWatchBookmarks: 'true',
      resourceVersion: this.resourceVersion,
      timeoutSeconds: String(timeoutSeconds),
    });
    const url = `${this.path}${this.path.includes('?') ? '&' : '?'}${q}`;
    this.stats.watches++;
    let res: (Readable & { statusCode?: number }) | undefined;
    try {
      res = await this.client.raw('GET', url, undefined, undefined, ac.signal);
      // Do not rely on the client honouring the signal once headers are in: end the stream ourselves.
      const stream = res;
      if (ac.signal.aborted) stream.destroy();
      else ac.signal.addEventListener('abort', () => stream.destroy(), { once: true });
      const status = res.statusCode ?? 0;
      if (status >= 400) {
        let body = '';
        for await (const chunk of res as AsyncIterable<Buffer | string>) body += chunk.toString();
        if (status === 410) return outcome('gone');
        const err = statusError(status, body, url);
        return failed(err, !(status === 429 || status >= 500));
      }
      // The watch is open again, from the resourceVersion the cache is at: it follows the server.
      this.failing = false;
      res.setEncoding('utf8'); // a string decoder: multi-byte characters split across chunks stay intact
      let pending = '';
      const handle = (line: string): boolean => {
        if (line.trim() === '') return false;
        if (this.handleEvent(line) === 'gone') return true;
        events++;
        return false;
      };
      for await (const chunk of res as AsyncIterable<string>) {
        stallTimer.refresh();
        const parts = chunk.split('\n');
        if (parts.length === 1) {
          pending += chunk;
          continue;
        }
        const first = pending + parts[0];
        pending = parts[parts.length - 1] ?? '';
        if (handle(first)) return outcome('gone');
        for (let i = 1; i < parts.length - 1; i++) if (handle(parts[i] ?? '')) return outcome('gone');
      }
      if (this.stopSignal.aborted) return outcome('stopped');
      if (stalled) return outcome('stalled');
      if (handle(pending)) return outcome('gone');
      return outcome('closed');
    } catch (err) {
      if (this.stopSignal.aborted) return outcome('stopped');
      if (stalled) return outcome('stalled');
      // An ERROR event other than 410: the server gave up on this watch; start over with a LIST.
      return failed(err, err instanceof KubeApiError);
    } finally {
      clearTimeout(stallTimer);
      this.stopSignal.removeEventListener('abort', onStop);
      if (res && !res.readableEnded) res.destroy();
    }
  }

  /** Applies one watch event; returns 'gone' for a 410 ERROR event, throws on other errors. */
  private handleEvent(line: string): 'gone' | undefined {
    let ev: unknown;
    try {
      ev = JSON.parse(line);
    } catch {
      throw new Error(`malformed watch event: ${line.slice(0, 200)}`);
    }
    if (!isRecord(ev) || !isRecord(ev.object)) throw new Error(`malformed watch event: ${line.slice(0, 200)}`);
    const obj = ev.object;
    if (ev.type === 'ERROR') {
      const code = typeof obj.code === 'number' ? obj.code : 0;
      if (code === 410) return 'gone';
      const reason = typeof obj.reason === 'string' ? obj.reason : '';
      const message = typeof obj.message === 'string' ? obj.message : line;
      throw new KubeApiError(code, reason, `watch ${this.path}: ERROR ${code} ${reason}: ${message}`);
    }
    const meta = isRecord(obj.metadata) ? obj.metadata : {};
    switch (ev.type) {
      case 'ADDED':
      case 'MODIFIED':
      case 'DELETED': {
        if (typeof meta.name !== 'string') {
          this.log.warn({ type: ev.type }, 'watch event without metadata.name ignored');
          return undefined;
        }
        const o = this.transform(obj as KubeObject);
        if (ev.type === 'DELETED') this.remove(o);
        else this.upsert(o);
        break;
      }
      case 'BOOKMARK':
        break;
      default:
        this.log.warn({ type: ev.type }, 'unknown watch event type ignored');
        return undefined;
    }
    if (typeof meta.resourceVersion === 'string' && meta.resourceVersion !== '') this.resourceVersion = meta.resourceVersion;
    return undefined;
  }

  private upsert(obj: T): void {
    const key = keyOf(obj);
    const prev = this.cache.get(key);
    this.cache.set(key, obj);
    if (!prev) this.emitAdd(obj, false);
    else if (rvOf(prev) !== rvOf(obj)) this.emitUpdate(prev, obj);
  }

  private remove(obj: T): void {
    this.cache.delete(keyOf(obj));
    this.emitDelete(obj, false);
  }

  private resync(): void {
    if (!this.synced || this.stopSignal.aborted) return;
    for (const obj of this.cache.values()) this.emitUpdate(obj, obj);
  }

  // --- dispatch ------------------------------------------------------------------------------

  private emitAdd(obj: T, initial: boolean): void {
    for (const h of this.handlers) if (h.add) this.call('add', () => h.add?.(obj, initial));
  }

  private emitUpdate(oldObj: T, newObj: T): void {
    for (const h of this.handlers) if (h.update) this.call('update', () => h.update?.(oldObj, newObj));
  }

  private emitDelete(obj: T, finalStateUnknown: boolean): void {
    for (const h of this.handlers) if (h.delete) this.call('delete', () => h.delete?.(obj, finalStateUnknown));
  }

  private call(event: string, fn: () => void | Promise<void> | undefined): void {
    try {
      const r = fn();
      if (r && typeof r.then === 'function') r.then(undefined, (err: unknown) => this.log.error({ err, event }, 'event handler failed'));
    } catch (err) {
      this.log.error({ err, event }, 'event handler failed');
    }
  }
}

function rvOf(obj: KubeObject): unknown {
  return obj.metadata.resourceVersion;
}

function statusError(status: number, body: string, url: string): KubeApiError {
  let reason = '';
  let message = body.slice(0, 500);
  try {
    const s = JSON.parse(body) as { reason?: string; message?: string };
    reason = s.reason ?? '';
    message = s.message ?? message;
  } catch {
    // not a Status object
  }
  return new KubeApiError(status, reason, `watch ${url}: ${status} ${reason}: ${message}`);
}

/** Rejects as soon as the signal aborts; the underlying promise is left to settle unobserved. */
function abortable<V>(p: Promise<V>, signal: AbortSignal): Promise<V> {
  return new Promise((resolve, reject) => {
    const onAbort = (): void => reject(signal.reason ?? new Error('aborted'));
    if (signal.aborted) onAbort();
    else signal.addEventListener('abort', onAbort, { once: true });
    p.then(
      (v) => {
        signal.removeEventListener('abort', onAbort);
        resolve(v);
      },
      (err: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(err instanceof Error ? err : new Error(String(err)));
      },
    );
  });
}
