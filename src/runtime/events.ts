// core/v1 Events on the objects we act on, recorded like client-go's recorder: a repeat of the
// same (object, type, reason, message) within 10 minutes bumps count/lastTimestamp on the existing
// Event instead of creating another, a per-object token bucket (burst 25, one token per 5 minutes)
// keeps a hot loop from flooding the API server, and recording never throws: writes happen in the
// background, in order, and failures are only logged, because an Event must not fail a reconcile.
import { KubeApiError, type KubeClient } from '../adapters/kube/client.ts';
import type { KubeObject } from '../core/types.ts';
import { silentLogger, type Logger } from '../util/log.ts';

export type EventType = 'Normal' | 'Warning';

export interface EventRecorderOptions {
  client: KubeClient;
  component: string;
  /** source.host / reportingInstance, e.g. the pod or node name. */
  host?: string;
  log?: Logger;
  /** Injected clock (ms since epoch), for tests. */
  now?: () => number;
  /** Repeats within this window aggregate into one Event. Default 10 min. */
  aggregateWindowMs?: number;
  /** Per-object token bucket. Defaults: burst 25, one token per 300 s. */
  burst?: number;
  refillEveryMs?: number;
  /** Entries in the dedup cache and in the rate-limiter table (LRU). Default 4096. */
  cacheSize?: number;
  /** Writes waiting to be sent; more are dropped (the API server is down or slow). Default 1000. */
  maxPending?: number;
  /** Per-request timeout. Default 10 s. */
  requestTimeoutMs?: number;
}

interface Pending {
  obj: KubeObject;
  type: EventType;
  reason: string;
  message: string;
  at: number;
}

interface Seen {
  namespace: string;
  name: string;
  count: number;
  firstTimestamp: string;
  lastSeenMs: number;
}

interface Bucket {
  tokens: number;
  updatedMs: number;
}

const MAX_MESSAGE = 1024;
const MAX_NAME = 253;

/** A Map used as an LRU: re-inserting moves a key to the end, the first key is the oldest. */
class Lru<V> {
  private readonly map = new Map<string, V>();
  constructor(private readonly max: number) {}
  get(key: string): V | undefined {
    const v = this.map.get(key);
    if (v !== undefined) {
      this.map.delete(key);
      this.map.set(key, v);
    }
    return v;
  }
  set(key: string, v: V): void {
    this.map.delete(key);
    this.map.set(key, v);
    while (this.map.size > this.max) this.map.delete(this.map.keys().next().value as string);
  }
  delete(key: string): void {
    this.map.delete(key);
  }
  get size(): number {
    return this.map.size;
  }
}

export class EventRecorder {
  private readonly client: KubeClient;
  private readonly component: string;
  private readonly host: string;
  private readonly log: Logger;
  private readonly now: () => number;
  private readonly windowMs: number;
  private readonly burst: number;
  private readonly refillMs: number;
  private readonly maxPending: number;
  private readonly timeoutMs: number;
  private readonly seen: Lru<Seen>;
  private readonly buckets: Lru<Bucket>;
  private readonly queue: Pending[] = [];
  private draining: Promise<void> | undefined;
  private seq = 0;
  private droppedPending = 0;

  constructor(opts: EventRecorderOptions) {
    this.client = opts.client;
    this.component = opts.component;
    this.host = opts.host ?? '';
    this.log = (opts.log ?? silentLogger).child({ component: 'events' });
    this.now = opts.now ?? Date.now;
    this.windowMs = opts.aggregateWindowMs ?? 10 * 60_000;
    this.burst = opts.burst ?? 25;
    this.refillMs = opts.refillEveryMs ?? 300_000;
    this.maxPending = opts.maxPending ?? 1000;
    this.timeoutMs = opts.requestTimeoutMs ?? 10_000;
    const size = opts.cacheSize ?? 4096;
    this.seen = new Lru(size);
    this.buckets = new Lru(size);
  }

  /** Queues an Event about `obj`; never throws. Use flush() to wait for it to be written. */
  event(obj: KubeObject, type: EventType, reason: string, message: string): void {
    try {
      if (!obj?.metadata?.name || !obj.kind || !obj.apiVersion) {
        this.log.warn({ reason }, 'event dropped: object has no apiVersion/kind/metadata.name');
        return;
      }
      const at = this.now();
      if (!this.allow(this.objectKey(obj), at)) {
        this.log.debug({ object: describe(obj), reason }, 'event dropped by the per-object rate limit');
        return;
      }
      if (this.queue.length >= this.maxPending) {
        if (this.droppedPending++ % 100 === 0) this.log.warn({ dropped: this.droppedPending }, 'event dropped: too many events waiting to be written');
        return;
      }
      this.queue.push({ obj, type, reason, message: truncate(message, MAX_MESSAGE), at });
      this.draining ??= this.drain().finally(() => (this.draining = undefined));
    } catch (err) {
      this.log.warn({ err }, 'recording an event failed');
    }
  }

  /** Resolves when every queued Event has been written (or has failed); never rejects. */
  async flush(): Promise<void> {
    while (this.draining) await this.draining;
  }

  private async drain(): Promise<void> {
    for (let p = this.queue.shift(); p; p = this.queue.shift()) {
      try {
        await this.write(p);
      } catch (err) {
        this.log.warn(
          { object: describe(p.obj), reason: p.reason, err: err instanceof Error ? err.message : String(err) },
          'writing an event failed',
        );
      }
    }
  }

  private async write(p: Pending): Promise<void> {
    const { obj } = p;
    const namespace = obj.metadata.namespace || 'default'; // cluster-scoped objects: like client-go
    const key = JSON.stringify([this.component, this.host, ...this.objectParts(obj), p.type, p.reason, p.message]);
    const ts = time(p.at);
    const prev = this.seen.get(key);
    let count = 1;
    let firstTimestamp = ts;
    if (prev && p.at - prev.lastSeenMs <= this.windowMs) {
      count = prev.count + 1;
      try {
        await this.call('PATCH', `/api/v1/namespaces/${encodeURIComponent(prev.namespace)}/events/${encodeURIComponent(prev.name)}`,
          { count, lastTimestamp: ts, message: p.message }, 'application/merge-patch+json');
        this.seen.set(key, { ...prev, count, lastSeenMs: p.at });
        return;
      } catch (err) {
        // The Event may have expired (events have a TTL): create it again, keeping the tally.
        if (!(err instanceof KubeApiError && err.status === 404)) throw err;
        this.seen.delete(key);
        firstTimestamp = prev.firstTimestamp;
      }
    }
    const name = `${obj.metadata.name.slice(0, MAX_NAME - 20)}.${this.suffix(p.at)}`;
    const meta = obj.metadata as { uid?: string; resourceVersion?: string };
    const event = {
      apiVersion: 'v1',
      kind: 'Event',
      metadata: { name, namespace },
      involvedObject: {
        apiVersion: obj.apiVersion,
        kind: obj.kind,
        name: obj.metadata.name,
        ...(obj.metadata.namespace ? { namespace: obj.metadata.namespace } : {}),
        ...(meta.uid ? { uid: meta.uid } : {}),
        ...(meta.resourceVersion ? { resourceVersion: meta.resourceVersion } : {}),
      },
      type: p.type,
      reason: p.reason,
      message: p.message,
      source: { component: this.component, ...(this.host ? { host: this.host } : {}) },
      reportingComponent: this.component,
      reportingInstance: this.host,
      firstTimestamp,
      lastTimestamp: ts,
      count,
    };
    await this.call('POST', `/api/v1/namespaces/${encodeURIComponent(namespace)}/events`, event);
    this.seen.set(key, { namespace, name, count, firstTimestamp, lastSeenMs: p.at });
  }

  /** Token bucket per object: `burst` tokens, one more every refillMs. */
  private allow(key: string, at: number): boolean {
    const b = this.buckets.get(key) ?? { tokens: this.burst, updatedMs: at };
    const refill = Math.floor((at - b.updatedMs) / this.refillMs);
    if (refill > 0) {
      b.tokens = Math.min(this.burst, b.tokens + refill);
      b.updatedMs += refill * this.refillMs;
    }
    if (b.tokens >= this.burst) b.updatedMs = at; // a full bucket does not bank time
    const ok = b.tokens >= 1;
    if (ok) b.tokens -= 1;
    this.buckets.set(key, b);
    return ok;
  }

  private objectParts(obj: KubeObject): string[] {
    const uid = (obj.metadata as { uid?: string }).uid ?? '';
    return [obj.apiVersion, obj.kind, obj.metadata.namespace ?? '', obj.metadata.name, uid];
  }

  private objectKey(obj: KubeObject): string {
    return JSON.stringify([this.component, this.host, ...this.objectParts(obj)]);
  }

  /** Hex nanoseconds like client-go, plus a sequence so two events in one ms get distinct names. */
  private suffix(at: number): string {
    this.seq = (this.seq + 1) % 1_000_000;
    return (BigInt(at) * 1_000_000n + BigInt(this.seq)).toString(16);
  }

  private async call(method: string, path: string, body: unknown, contentType?: string): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${method} ${path}: timed out after ${this.timeoutMs}ms`)), this.timeoutMs);
    });
    try {
      await Promise.race([this.client.request(method, path, body, contentType), timeout]);
    } finally {
      clearTimeout(timer);
    }
  }
}

/** metav1.Time: RFC 3339 in seconds. */
function time(ms: number): string {
  return new Date(ms).toISOString().replace(/\.\d+Z$/, 'Z');
}

function truncate(s: string, max: number): string {
  return s.length <= max ? s : `${s.slice(0, max - 3)}...`;
}

function describe(obj: KubeObject): string {
  return `${obj.kind} ${obj.metadata.namespace ? `${obj.metadata.namespace}/` : ''}${obj.metadata.name}`;
}
