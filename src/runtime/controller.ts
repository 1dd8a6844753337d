// The worker loop of a controller: N workers take keys from a WorkQueue and reconcile them. The
// queue guarantees one key is never reconciled by two workers at once; failures are retried with
// the queue's rate limiter (exponential per key, bounded overall).
import { performance } from 'node:perf_hooks';
import type { KubeObject } from '../core/types.ts';
import { silentLogger, type Logger } from '../util/log.ts';
import type { RuntimeMetrics } from './metrics.ts';
import type { WorkQueue } from './workqueue.ts';

export interface ReconcileResult {
  /** Reconcile again after this delay (resets the key's backoff), e.g. for periodic work. */
  requeueAfterMs?: number;
  /** Reconcile again after the rate limiter's delay, without treating it as an error. */
  requeue?: boolean;
}

export type Reconciler<K extends string = string> = (key: K, signal: AbortSignal) => Promise<ReconcileResult | void>;

export interface ControllerOptions<K extends string = string> {
  /** The `controller` label of the controller_runtime_* metrics and the logger's `controller` field. */
  name: string;
  queue: WorkQueue<K>;
  /** Concurrent reconciles (default 1, like MaxConcurrentReconciles). */
  workers?: number;
  reconcile: Reconciler<K>;
  metrics?: RuntimeMetrics;
  log?: Logger;
  /** Aborting shuts the queue down; runController resolves once in-flight reconciles return. */
  signal: AbortSignal;
}

type Result = 'success' | 'error' | 'requeue' | 'requeue_after';
const RESULTS: readonly Result[] = ['success', 'error', 'requeue', 'requeue_after'];

export async function runController<K extends string = string>(opts: ControllerOptions<K>): Promise<void> {
  const { name, queue, reconcile, metrics, signal } = opts;
  const workers = Math.max(1, Math.floor(opts.workers ?? 1));
  const log = (opts.log ?? silentLogger).child({ controller: name });
  const labels = { controller: name };

  if (metrics) {
    metrics.maxConcurrentReconciles.set(labels, workers);
    metrics.activeWorkers.set(labels, 0);
    // Zero series exist from the start, so rate() and absent() alerts work before the first error.
    for (const result of RESULTS) metrics.reconcileTotal.inc({ controller: name, result }, 0);
    metrics.reconcileErrors.inc(labels, 0);
  }

  const onAbort = (): void => queue.shutDown();
  if (signal.aborted) onAbort();
  else signal.addEventListener('abort', onAbort, { once: true });

  const processOne = async (key: K): Promise<void> => {
    const t0 = performance.now();
    metrics?.activeWorkers.inc(labels);
    let result: Result;
    try {
      // Called inside try so that a synchronous throw counts as a failed reconcile too.
      const res = (await reconcile(key, signal)) ?? {};
      if (res.requeueAfterMs !== undefined && res.requeueAfterMs > 0) {
        queue.forget(key);
        queue.addAfter(key, res.requeueAfterMs);
        result = 'requeue_after';
      } else if (res.requeue) {
        queue.addRateLimited(key);
        result = 'requeue';
      } else {
        queue.forget(key);
        result = 'success';
      }
    } catch (err) {
      result = 'error';
      metrics?.reconcileErrors.inc(labels);
      if (signal.aborted) {
        log.debug({ err, key }, 'reconcile interrupted by shutdown');
      } else {
        queue.addRateLimited(key);
        log.error({ err, key, retries: queue.numRequeues(key) }, 'reconcile failed; retrying with backoff');
      }
    } finally {
      queue.done(key);
      metrics?.activeWorkers.dec(labels);
      metrics?.reconcileTime.observe(labels, (performance.now() - t0) / 1000);
    }
    metrics?.reconcileTotal.inc({ controller: name, result });
  };

  const worker = async (): Promise<void> => {
    for (;;) {
      const key = await queue.get();
      if (key === undefined) return;
      await processOne(key);
    }
  };

  log.info({ workers }, 'starting workers');
  try {
    await Promise.all(Array.from({ length: workers }, () => worker()));
  } finally {
    signal.removeEventListener('abort', onAbort);
    log.info('workers stopped');
  }
}

/** The work-queue key of an object: "namespace/name", or "name" for cluster-scoped objects. */
export function keyOf(obj: Pick<KubeObject, 'metadata'>): string {
  const { namespace, name } = obj.metadata;
  return namespace ? `${namespace}/${name}` : name;
}

/** Inverse of keyOf. Names and namespaces cannot contain "/". */
export function splitKey(key: string): { namespace: string | undefined; name: string } {
  const i = key.indexOf('/');
  return i < 0 ? { namespace: undefined, name: key } : { namespace: key.slice(0, i), name: key.slice(i + 1) };
}
