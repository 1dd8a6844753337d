// Leader election on a coordination.k8s.io/v1 Lease with client-go's semantics: a lease counts as
// expired only after leaseDuration has passed on OUR clock since we last saw the record change
// (clock skew between replicas cannot shorten it), writes carry the read resourceVersion (a 409
// means another candidate won), and a leader that cannot renew within renewDeadline stops
// leading: the signal handed to onStartedLeading is aborted, so every writer must stop (fencing).
// renewDeadline < leaseDuration guarantees we stop before a follower may take over.
import { performance } from 'node:perf_hooks';
import { Gauge, type Registry } from 'prom-client';
import { KubeApiError, type KubeClient } from '../adapters/kube/client.ts';
import { silentLogger, type Logger } from '../util/log.ts';

export interface LeaderElectorOptions {
  client: KubeClient;
  namespace: string;
  /** Lease name. */
  name: string;
  /** Unique per replica (pod name + random suffix); two replicas with one identity both lead. */
  identity: string;
  leaseDurationMs?: number;
  renewDeadlineMs?: number;
  retryPeriodMs?: number;
  /** Release the lease when run()'s signal aborts, so a follower takes over at once. Default true. */
  releaseOnCancel?: boolean;
  log?: Logger;
  /** Adds leader_election_master_status{name}. */
  registry?: Registry;
  /** Runs while we lead; `signal` aborts when leadership ends, for whatever reason. */
  onStartedLeading: (signal: AbortSignal) => void | Promise<void>;
  onStoppedLeading: () => void;
  /** Called when a different (non-empty) holder is observed, including ourselves. */
  onNewLeader?: (identity: string) => void;
}

/** The fields of LeaseSpec we read and write (MicroTime strings as the API returns them). */
export interface LeaseSpec {
  holderIdentity?: string;
  leaseDurationSeconds?: number;
  acquireTime?: string;
  renewTime?: string;
  leaseTransitions?: number;
}

interface Lease {
  apiVersion?: string;
  kind?: string;
  metadata: { name: string; namespace?: string; resourceVersion?: string };
  spec?: LeaseSpec;
}

type Attempt = 'ok' | 'held' | 'error';

const JITTER = 1.2; // like client-go: acquire retries wait retryPeriod * (1 + rand * 1.2)
const GAUGE = 'leader_election_master_status';

export class LeaderElector {
  private readonly o: Required<Pick<LeaderElectorOptions, 'leaseDurationMs' | 'renewDeadlineMs' | 'retryPeriodMs' | 'releaseOnCancel'>> &
    LeaderElectorOptions;
  private readonly log: Logger;
  private readonly path: string;
  private readonly gauge: Gauge<'name'> | undefined;

  /** Last record seen on the server and when (monotonic ms) it last changed. */
  private observed: LeaseSpec | undefined;
  private observedAt = 0;
  private observedRv = '';
  private reportedLeader = '';
  private leading: AbortController | undefined;
  private lastRenewAt = 0;
  private running = false;

  constructor(opts: LeaderElectorOptions) {
    // `?? default` rather than spreading: an explicit undefined must not erase a default.
    const o = {
      ...opts,
      leaseDurationMs: opts.leaseDurationMs ?? 15_000,
      renewDeadlineMs: opts.renewDeadlineMs ?? 10_000,
      retryPeriodMs: opts.retryPeriodMs ?? 2_000,
      releaseOnCancel: opts.releaseOnCancel ?? true,
    };
    for (const k of ['leaseDurationMs', 'renewDeadlineMs', 'retryPeriodMs'] as const) {
      if (!Number.isFinite(o[k])) throw new Error(`leader election: ${k} must be a number of milliseconds, got ${String(o[k])}`);
    }
    if (!o.identity) throw new Error('leader election: identity must not be empty');
    if (o.leaseDurationMs <= o.renewDeadlineMs) throw new Error('leader election: leaseDuration must be greater than renewDeadline');
    if (o.renewDeadlineMs <= JITTER * o.retryPeriodMs) throw new Error('leader election: renewDeadline must be greater than retryPeriod*1.2');
    if (o.retryPeriodMs <= 0) throw new Error('leader election: retryPeriod must be positive');
    if (o.leaseDurationMs < 1000) throw new Error('leader election: leaseDuration must be at least 1s (the Lease stores seconds)');
    this.o = o;
    this.log = (opts.log ?? silentLogger).child({ lease: `${o.namespace}/${o.name}`, identity: o.identity });
    this.path = `/apis/coordination.k8s.io/v1/namespaces/${encodeURIComponent(o.namespace)}/leases/${encodeURIComponent(o.name)}`;
    if (opts.registry) {
      // Several electors (or a restarted one) may share a registry: reuse the gauge.
      const existing = opts.registry.getSingleMetric(GAUGE);
      this.gauge =
        (existing as Gauge<'name'> | undefined) ??
        new Gauge({
          name: GAUGE,
          help: 'Whether this process currently holds the leader lease (1) or is a follower (0), per lease name.',
          labelNames: ['name'],
          registers: [opts.registry],
        });
      this.gauge.set({ name: o.name }, 0);
    }
  }

  /** True between acquiring the lease and the abort of the leading signal. */
  isLeader(): boolean {
    return this.leading !== undefined && !this.leading.signal.aborted;
  }

  /** The holder of the lease as last observed ('' when none or released). */
  leaderIdentity(): string {
    return this.observed?.holderIdentity ?? '';
  }

  /**
   * A healthz check (like client-go's watchdog): fails when we think we lead but have not renewed
   * for leaseDuration + tolerance, e.g. because the event loop is stuck.
   */
  check(toleranceMs = 20_000): true | string {
    if (!this.isLeader()) return true;
    const since = performance.now() - this.lastRenewAt;
    return since > this.o.leaseDurationMs + toleranceMs ? `lease ${this.o.name} not renewed for ${Math.round(since)}ms` : true;
  }

  /**
   * Campaigns until `signal` aborts: acquire, lead (renewing), and after a lost lease go back to
   * campaigning. Resolves once stopped (and, on a graceful stop, after releasing the lease).
   */
  async run(signal: AbortSignal): Promise<void> {
    if (this.running) throw new Error('leader election: run() is already running');
    this.running = true;
    try {
      while (!signal.aborted) {
        if (!(await this.acquire(signal))) break;
        await this.lead(signal);
      }
    } finally {
      this.running = false;
    }
  }

  private async acquire(signal: AbortSignal): Promise<boolean> {
    this.log.info('attempting to acquire leader lease');
    for (;;) {
      if (signal.aborted) return false;
      const started = performance.now();
      const res = await this.tryAcquireOrRenew('acquire', signal, this.o.renewDeadlineMs);
      this.reportTransition();
      if (res === 'ok') {
        this.lastRenewAt = started;
        return true;
      }
      await sleep(this.o.retryPeriodMs * (1 + Math.random() * JITTER), signal);
    }
  }

  private async lead(signal: AbortSignal): Promise<void> {
    const leading = new AbortController();
    this.leading = leading;
    this.gauge?.set({ name: this.o.name }, 1);
    this.log.info('became leader');
    const work = (async () => {
      try {
        await this.o.onStartedLeading(leading.signal);
      } catch (err) {
        this.log.error({ err }, 'onStartedLeading failed');
      }
    })();

    let why: 'cancelled' | 'lost';
    try {
      why = await this.renewLoop(signal);
    } catch (err) {
      // Whatever went wrong, the writers must stop: treat it as a lost lease.
      this.log.error({ err }, 'renewing the leader lease failed unexpectedly');
      why = 'lost';
    }
    leading.abort(new Error(why === 'cancelled' ? 'leader election stopped' : 'leader lease lost'));
    this.gauge?.set({ name: this.o.name }, 0);
    if (why === 'lost') this.log.warn('lost leader lease: stopping all writers');
    else this.log.info('stopping leadership');
    try {
      this.o.onStoppedLeading();
    } catch (err) {
      this.log.error({ err }, 'onStoppedLeading failed');
    }
    if (why === 'cancelled') {
      // Let writers finish before handing over; the lease is no longer renewed, so past
      // leaseDuration a follower takes over regardless of how long this takes.
      const timer = new AbortController();
      const drained = await Promise.race([work.then(() => true), sleep(this.o.leaseDurationMs, timer.signal).then(() => false)]);
      timer.abort();
      // Released only once every writer returned: a follower that acquires a released lease
      // starts at once, and must never overlap a sync of ours still running.
      if (!drained) this.log.warn('writers still running a leaseDuration after cancel: the lease is not released and expires by itself');
      else if (this.o.releaseOnCancel) await this.release();
    } else {
      // Never campaign again while the previous term's writers may still be running.
      const done = new AbortController();
      await Promise.race([work, sleep(2 ** 31 - 1, AbortSignal.any([signal, done.signal]))]);
      done.abort();
    }
    this.leading = undefined;
  }

  /** Renews every retryPeriod; returns 'lost' once no renewal succeeded within renewDeadline. */
  private async renewLoop(signal: AbortSignal): Promise<'cancelled' | 'lost'> {
    for (;;) {
      await sleep(this.o.retryPeriodMs, signal);
      if (signal.aborted) return 'cancelled';
      const started = performance.now();
      const left = this.lastRenewAt + this.o.renewDeadlineMs - started;
      if (left <= 0) return 'lost';
      const res = await this.tryAcquireOrRenew('renew', signal, left);
      this.reportTransition();
      if (signal.aborted) return 'cancelled';
      // Stricter than client-go: a record naming another holder ends our term at once instead of
      // after renewDeadline, since that holder may already be writing.
      if (res === 'held') return 'lost';
      // The deadline counts from when the request was sent: the server's renewTime is no older.
      if (res === 'ok') this.lastRenewAt = started;
      else if (performance.now() - this.lastRenewAt >= this.o.renewDeadlineMs) return 'lost';
    }
  }

  private async tryAcquireOrRenew(mode: 'acquire' | 'renew', outer: AbortSignal, timeoutMs: number): Promise<Attempt> {
    try {
      return await this.attempt(mode, outer, timeoutMs);
    } catch (err) {
      return this.failed(mode, err);
    }
  }

  private async attempt(mode: 'acquire' | 'renew', outer: AbortSignal, timeoutMs: number): Promise<Attempt> {
    const signal = AbortSignal.any([outer, AbortSignal.timeout(Math.max(1, Math.ceil(timeoutMs)))]);
    const nowIso = microTime(new Date());
    const desired: LeaseSpec = {
      holderIdentity: this.o.identity,
      leaseDurationSeconds: Math.round(this.o.leaseDurationMs / 1000),
      acquireTime: nowIso,
      renewTime: nowIso,
      leaseTransitions: 0,
    };
    let current: Lease;
    try {
      current = await this.call<Lease>('GET', this.path, undefined, signal);
    } catch (err) {
      if (!(err instanceof KubeApiError && err.status === 404)) return this.failed('get lease', err);
      try {
        const created = await this.call<Lease>('POST', this.path.replace(/\/[^/]+$/, ''), this.lease(desired), signal);
        this.observe(desired, created.metadata.resourceVersion ?? '', true);
        return 'ok';
      } catch (e) {
        return this.failed('create lease', e);
      }
    }

    const old = current.spec ?? {};
    this.observe(old, current.metadata.resourceVersion ?? '', false);
    const holder = old.holderIdentity ?? '';
    if (mode === 'renew' && holder !== this.o.identity) {
      this.log.warn({ holder }, 'lease now names another holder');
      return 'held';
    }
    if (holder !== '' && holder !== this.o.identity) {
      const durMs = (old.leaseDurationSeconds ?? 0) > 0 ? (old.leaseDurationSeconds as number) * 1000 : this.o.leaseDurationMs;
      if (this.observedAt + durMs > performance.now()) {
        this.log.debug({ holder }, 'lease held by another candidate and not yet expired');
        return 'held';
      }
    }
    if (holder === this.o.identity) {
      desired.acquireTime = old.acquireTime ?? nowIso;
      desired.leaseTransitions = old.leaseTransitions ?? 0;
    } else {
      desired.leaseTransitions = (old.leaseTransitions ?? 0) + 1;
    }
    try {
      const updated = await this.call<Lease>('PUT', this.path, {
        ...this.lease(desired),
        metadata: { name: this.o.name, namespace: this.o.namespace, resourceVersion: current.metadata.resourceVersion },
      }, signal);
      this.observe(desired, updated.metadata.resourceVersion ?? '', true);
      return 'ok';
    } catch (err) {
      return this.failed(mode === 'acquire' ? 'acquire lease' : 'renew lease', err);
    }
  }

  /** Graceful hand-over: an empty holder lets any follower acquire on its next try. */
  private async release(): Promise<void> {
    if (this.observed?.holderIdentity !== this.o.identity) return;
    const spec: LeaseSpec = {
      holderIdentity: '',
      leaseDurationSeconds: 1,
      acquireTime: microTime(new Date()),
      renewTime: microTime(new Date()),
      leaseTransitions: this.observed.leaseTransitions ?? 0,
    };
    try {
      // With our last resourceVersion: if anyone wrote since, the lease is no longer ours to release.
      const res = await this.call<Lease>('PUT', this.path, {
        ...this.lease(spec),
        metadata: { name: this.o.name, namespace: this.o.namespace, resourceVersion: this.observedRv },
      }, AbortSignal.timeout(this.o.renewDeadlineMs));
      this.observe(spec, res.metadata.resourceVersion ?? '', true);
      this.log.info('released leader lease');
    } catch (err) {
      this.log.warn({ err: String(err) }, 'failed to release leader lease');
    }
  }

  private lease(spec: LeaseSpec): Lease & { spec: LeaseSpec } {
    return { apiVersion: 'coordination.k8s.io/v1', kind: 'Lease', metadata: { name: this.o.name, namespace: this.o.namespace }, spec };
  }

  private observe(spec: LeaseSpec, rv: string, ours: boolean): void {
    if (ours || !sameRecord(this.observed, spec)) {
      this.observed = { ...spec };
      this.observedAt = performance.now();
    }
    this.observedRv = rv;
  }

  private reportTransition(): void {
    const holder = this.leaderIdentity();
    if (holder === this.reportedLeader) return;
    this.reportedLeader = holder;
    if (holder === '' || !this.o.onNewLeader) return;
    try {
      this.o.onNewLeader(holder);
    } catch (err) {
      this.log.error({ err }, 'onNewLeader failed');
    }
  }

  private failed(what: string, err: unknown): Attempt {
    if (err instanceof Error && (err.name === 'AbortError' || err.name === 'TimeoutError')) this.log.debug(`${what}: ${err.message}`);
    else if (err instanceof KubeApiError && err.status === 409) this.log.debug(`${what}: conflict, another candidate wrote first`);
    else this.log.warn({ err: err instanceof Error ? err.message : String(err) }, `${what} failed`);
    return 'error';
  }

  /** A request that the signal really cancels (a hung renewal must not outlive the deadline). */
  private call<T>(method: string, path: string, body: unknown, signal: AbortSignal): Promise<T> {
    return this.o.client.request<T>(method, path, body, 'application/json', signal);
  }
}

/** metav1.MicroTime as the API server writes it: 2006-01-02T15:04:05.000000Z. */
export function microTime(d: Date): string {
  return d.toISOString().replace(/\.(\d{3})Z$/, '.$1000Z');
}

function sameRecord(a: LeaseSpec | undefined, b: LeaseSpec): boolean {
  if (!a) return false;
  // Compare instants, not strings: the server may normalise the fraction digits.
  const t = (s: string | undefined) => (s ? Date.parse(s) : 0);
  return (
    (a.holderIdentity ?? '') === (b.holderIdentity ?? '') &&
    (a.leaseDurationSeconds ?? 0) === (b.leaseDurationSeconds ?? 0) &&
    (a.leaseTransitions ?? 0) === (b.leaseTransitions ?? 0) &&
    t(a.acquireTime) === t(b.acquireTime) &&
    t(a.renewTime) === t(b.renewTime)
  );
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const onAbort = () => {
      clearTimeout(t);
      resolve();
    };
    const t = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}
