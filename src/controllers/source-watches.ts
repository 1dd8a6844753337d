// Continuous mode: watches on the source cluster turn changes into syncs. Informers are shared
// per (cluster, path, selector) across Replications and reference-counted; a change starts a
// debounce window, and everything that changes within it becomes one sync (one commit).
import type { KubeClient } from '../adapters/kube/client.ts';
import type { KubeObject } from '../core/types.ts';
import { Informer } from '../runtime/informer.ts';
import type { Logger } from '../util/log.ts';

export interface WatchSpec {
  /** Collection path, namespaced or cluster-wide. */
  path: string;
  labelSelector?: string;
  /** Only events for objects in these namespaces count (cluster-wide paths). */
  namespaces?: ReadonlySet<string>;
}

interface Shared {
  informer: Informer;
  users: Map<string, WatchSpec>;
}

interface Registration {
  client: KubeClient;
  keys: string[];
  debounceMs: number;
  timer?: NodeJS.Timeout;
}

const clientIds = new WeakMap<KubeClient, number>();
let nextClientId = 1;
const clientId = (c: KubeClient): number => {
  let id = clientIds.get(c);
  if (id === undefined) clientIds.set(c, (id = nextClientId++));
  return id;
};

export class SourceWatches {
  private readonly shared = new Map<string, Shared>();
  private readonly regs = new Map<string, Registration>();

  constructor(
    private readonly log: Logger,
    private readonly onChange: (replication: string) => void,
    private readonly stallTimeoutMs?: number,
  ) {}

  /** Declares what `replication` watches now; informers it no longer needs are released. */
  set(replication: string, client: KubeClient, watches: WatchSpec[], debounceMs: number): void {
    const prev = this.regs.get(replication);
    const keys = watches.map((w) => `${clientId(client)}|${w.path}|${w.labelSelector ?? ''}`);
    for (const [i, w] of watches.entries()) {
      const k = keys[i]!;
      let s = this.shared.get(k);
      if (!s) {
        const informer = new Informer({ client, path: w.path, labelSelector: w.labelSelector, log: this.log, name: w.path, stallTimeoutMs: this.stallTimeoutMs });
        s = { informer, users: new Map() };
        const entry = s;
        const changed = (obj: KubeObject) => {
          for (const [rep, spec] of entry.users) {
            if (spec.namespaces && obj.metadata.namespace !== undefined && !spec.namespaces.has(obj.metadata.namespace)) continue;
            this.touch(rep);
          }
        };
        informer.addHandler({
          add: (obj, initial) => {
            if (!initial) changed(obj);
          },
          update: (o, n) => {
            if (o !== n) changed(n);
          },
          delete: (obj) => changed(obj),
        });
        informer.start();
        this.shared.set(k, s);
      }
      s.users.set(replication, w);
    }
    if (prev) {
      for (const k of prev.keys) if (!keys.includes(k)) this.release(k, replication);
    }
    // Update in place: a pending debounce timer refers to this registration object.
    if (prev) Object.assign(prev, { client, keys, debounceMs });
    else this.regs.set(replication, { client, keys, debounceMs });
  }

  /** True once every informer of the Replication has its initial list. */
  synced(replication: string): boolean {
    const r = this.regs.get(replication);
    return !r || r.keys.every((k) => this.shared.get(k)?.informer.hasSynced() ?? false);
  }

  async waitForSync(replication: string, signal?: AbortSignal): Promise<void> {
    const r = this.regs.get(replication);
    if (!r) return;
    await Promise.all(r.keys.map((k) => this.shared.get(k)?.informer.waitForSync(signal)));
  }

  remove(replication: string): void {
    const r = this.regs.get(replication);
    if (!r) return;
    clearTimeout(r.timer);
    for (const k of r.keys) this.release(k, replication);
    this.regs.delete(replication);
  }

  async stop(): Promise<void> {
    for (const r of this.regs.values()) clearTimeout(r.timer);
    this.regs.clear();
    await Promise.all([...this.shared.values()].map((s) => s.informer.stop()));
    this.shared.clear();
  }

  get informerCount(): number {
    return this.shared.size;
  }

  /** A change: the first one opens the debounce window; the window's end triggers one sync. */
  private touch(replication: string): void {
    const r = this.regs.get(replication);
    if (!r || r.timer) return;
    r.timer = setTimeout(() => {
      r.timer = undefined;
      this.onChange(replication);
    }, r.debounceMs);
  }

  private release(key: string, replication: string): void {
    const s = this.shared.get(key);
    if (!s) return;
    s.users.delete(replication);
    if (s.users.size === 0) {
      this.shared.delete(key);
      void s.informer.stop();
    }
  }
}
