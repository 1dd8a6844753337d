// One Prometheus registry for the whole process. Metric names and labels follow controller-runtime
// (workqueue_* and controller_runtime_*), so dashboards and alerts written for Go operators work.
// To add metrics: declare them in RuntimeMetrics and create them in createMetrics with
// `registers: [registry]`.
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

/** In-flight work of one queue, read when the registry is scraped. */
export interface InFlightSnapshot {
  /** Sum over all keys being processed of the time since their get(). */
  unfinishedSeconds: number;
  /** The longest time any key currently being processed has been held. */
  longestSeconds: number;
}

export interface RuntimeMetrics {
  registry: Registry;

  workqueueDepth: Gauge<'name'>;
  workqueueAdds: Counter<'name'>;
  workqueueQueueDuration: Histogram<'name'>;
  workqueueWorkDuration: Histogram<'name'>;
  workqueueRetries: Counter<'name'>;
  workqueueUnfinishedWork: Gauge<'name'>;
  workqueueLongestRunningProcessor: Gauge<'name'>;

  reconcileTotal: Counter<'controller' | 'result'>;
  reconcileErrors: Counter<'controller'>;
  reconcileTime: Histogram<'controller'>;
  activeWorkers: Gauge<'controller'>;
  maxConcurrentReconciles: Gauge<'controller'>;

  /**
   * A queue registers a reader of its in-flight work; the two gauges are computed at scrape time
   * (client-go polls every 500 ms instead). Returns the unregister function.
   */
  trackInFlight(name: string, read: () => InFlightSnapshot): () => void;
}

export interface MetricsOptions {
  /** Use an existing registry instead of a new one. */
  registry?: Registry;
  /** Also register prom-client's process and Node.js runtime metrics (default false). */
  defaultMetrics?: boolean;
}

// 10 ns .. 1000 s: queue waits span sub-millisecond hand-offs up to the maximum backoff.
const QUEUE_BUCKETS = Array.from({ length: 12 }, (_, i) => 1e-8 * 10 ** i);
// controller-runtime's reconcile time buckets.
const RECONCILE_BUCKETS = [
  0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.25, 1.5, 1.75, 2.0,
  2.5, 3.0, 3.5, 4.0, 4.5, 5, 6, 7, 8, 9, 10, 15, 20, 25, 30, 40, 50, 60,
];

export function createMetrics(opts: MetricsOptions = {}): RuntimeMetrics {
  const registry = opts.registry ?? new Registry();
  const registers = [registry];
  if (opts.defaultMetrics) collectDefaultMetrics({ register: registry });

  const inFlight = new Map<string, () => InFlightSnapshot>();
  const snapshot = (): Map<string, InFlightSnapshot> => {
    const out = new Map<string, InFlightSnapshot>();
    for (const [name, read] of inFlight) out.set(name, read());
    return out;
  };

  return {
    registry,
    workqueueDepth: new Gauge({ name: 'workqueue_depth', help: 'Current depth of the work queue', labelNames: ['name'], registers }),
    workqueueAdds: new Counter({ name: 'workqueue_adds_total', help: 'Total number of adds handled by the work queue', labelNames: ['name'], registers }),
    workqueueQueueDuration: new Histogram({
      name: 'workqueue_queue_duration_seconds',
      help: 'How long in seconds a key waits in the work queue before it is handed to a worker',
      labelNames: ['name'],
      buckets: QUEUE_BUCKETS,
      registers,
    }),
    workqueueWorkDuration: new Histogram({
      name: 'workqueue_work_duration_seconds',
      help: 'How long in seconds processing a key from the work queue takes',
      labelNames: ['name'],
      buckets: QUEUE_BUCKETS,
      registers,
    }),
    workqueueRetries: new Counter({ name: 'workqueue_retries_total', help: 'Total number of rate-limited retries handled by the work queue', labelNames: ['name'], registers }),
    workqueueUnfinishedWork: new Gauge({
      name: 'workqueue_unfinished_work_seconds',
      help: 'Seconds of work in progress that has not yet been observed by work_duration; large values indicate stuck workers',
      labelNames: ['name'],
      registers,
      collect() {
        this.reset(); // a queue that unregistered must disappear, not freeze at its last value
        for (const [name, s] of snapshot()) this.set({ name }, s.unfinishedSeconds);
      },
    }),
    workqueueLongestRunningProcessor: new Gauge({
      name: 'workqueue_longest_running_processor_seconds',
      help: 'How many seconds the longest running processor of the work queue has been running',
      labelNames: ['name'],
      registers,
      collect() {
        this.reset();
        for (const [name, s] of snapshot()) this.set({ name }, s.longestSeconds);
      },
    }),

    reconcileTotal: new Counter({ name: 'controller_runtime_reconcile_total', help: 'Total number of reconciliations per controller', labelNames: ['controller', 'result'], registers }),
    reconcileErrors: new Counter({ name: 'controller_runtime_reconcile_errors_total', help: 'Total number of reconciliation errors per controller', labelNames: ['controller'], registers }),
    reconcileTime: new Histogram({
      name: 'controller_runtime_reconcile_time_seconds',
      help: 'Length of time per reconciliation per controller',
      labelNames: ['controller'],
      buckets: RECONCILE_BUCKETS,
      registers,
    }),
    activeWorkers: new Gauge({ name: 'controller_runtime_active_workers', help: 'Number of currently used workers per controller', labelNames: ['controller'], registers }),
    maxConcurrentReconciles: new Gauge({ name: 'controller_runtime_max_concurrent_reconciles', help: 'Maximum number of concurrent reconciles per controller', labelNames: ['controller'], registers }),

    trackInFlight(name, read) {
      inFlight.set(name, read);
      return () => {
        if (inFlight.get(name) === read) inFlight.delete(name);
      };
    },
  };
}
