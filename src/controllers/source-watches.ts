// Continuous mode: watches on the source cluster turn changes into reconciles. Informers are
// shared per (cluster, path, selectors) across Replications and reference-counted; a change
// starts a debounce window, and everything that changes within it becomes one reconcile.
//
// The caches hold no object content, only a digest of each object without its status and
// server-managed metadata (see contentDigest): no Secret data in memory, status-only updates
// (a Deployment's replicas count, a Job's progress) are not changes, and digest() summarises
// what the source looks like now, which the reconciler compares with the digest recorded in
// status at the last successful sync. Nothing here remembers "something changed": a lost
// event, a failed sync or a restart cannot lose a change, as the digests still differ.
import { createHash } from 'node:crypto';
import type { KubeClient } from '../adapters/kube/client.ts';
import type { KubeObject } from '../core/types.ts';
import { isRecord } from '../core/types.ts';
import { Informer } from '../runtime/informer.ts';
import { VERSION } from '../version.ts';
import type { Logger } from '../util/log.ts';

export interface WatchSpec {
  /** Collection path, namespaced or cluster-wide. */
  path: string;
  labelSelector?: string;
  fieldSelector?: string;
  /** Cluster-wide paths: only objects in the namespaces the Replication's `selectsNamespaces`
   * watch currently holds count. */
  inSelectedNamespaces?: boolean;
  /** This watch lists the source namespaces themselves (labels, deletion). */
  selectsNamespaces?: boolean;
}

/** What the caches keep of an object. */
export interface Watched extends KubeObject {
  digest: string;
}

interface Shared {
  informer: Informer<Watched>;
  users: Map<string, WatchSpec>;
}

interface Registration {
  client: KubeClient;
  keys: string[];
  specs: WatchSpec[];
  debounceMs: number;
  timer?: NodeJS.Timeout;
  /** The watches (keys) a notification is pending for, once they all have their first list. */
  awaitingSync?: string;
  /** Since when (ms) its informers have not all listed. */
  unsyncedSince?: number;
}

const clientIds = new WeakMap<KubeClient, number>();
let nextClientId = 1;
const clientId = (c: KubeClient): number => {
  let id = clientIds.get(c);
  if (id === undefined) clientIds.set(c, (id = nextClientId++));
  return id;
};

/** JSON with sorted keys: the same content always hashes the same. */
function stableJson(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(stableJson).join(',')}]`;
  if (isRecord(v)) {
    return `{${Object.keys(v).sort().filter((k) => v[k] !== undefined).map((k) => `${JSON.stringify(k)}:${stableJson(v[k])}`).join(',')}}`;
  }
  return JSON.stringify(v) ?? 'null';
}

/** Metadata the server writes on its own; a change there alone is not a change of the object. */
const VOLATILE_METADATA = ['resourceVersion', 'managedFields', 'generation', 'creationTimestamp', 'uid', 'selfLink'];

/**
 * The watch predicate: a digest of what a sync would read of the object. Status and
 * server-managed metadata are left out, so status-only updates do not count as changes.
 */
export function contentDigest(obj: KubeObject): string {
  const { status: _status, metadata, ...rest } = obj;
  const meta: Record<string, unknown> = { ...metadata };
  for (const k of VOLATILE_METADATA) delete meta[k];
  return createHash('sha256').update(stableJson({ ...rest, metadata: meta })).digest('base64url').slice(0, 22);
}

const toWatched = (obj: KubeObject): Watched => ({
  apiVersion: obj.apiVersion,
  kind: obj.kind,
  metadata: {
    name: obj.metadata.name, namespace: obj.metadata.namespace, resourceVersion: obj.metadata.resourceVersion,
    ...(obj.metadata.deletionTimestamp ? { deletionTimestamp: obj.metadata.deletionTimestamp } : {}),
  },
  digest: contentDigest(obj),
});

export class SourceWatches {
  private readonly shared = new Map<string, Shared>();
  private readonly regs = new Map<string, Registration>();

  constructor(
    private readonly log: Logger,
    /** Called (after the debounce) when something the Replication watches changed, and once
     * its watches have their first lists. */
    private readonly onChange: (replication: string) => void,
    private readonly stallTimeoutMs?: number,
  ) {}

  /** Declares what `replication` watches now; informers it no longer needs are released. */
  set(replication: string, client: KubeClient, watches: WatchSpec[], debounceMs: number): void {
    const prev = this.regs.get(replication);
    const keys = watches.map((w) => `${clientId(client)}|${w.path}|${w.labelSelector ?? ''}|${w.fieldSelector ?? ''}`);
    for (const [i, w] of watches.entries()) {
      const k = keys[i]!;
      let s = this.shared.get(k);
      if (!s) {
        const informer = new Informer<Watched>({
          client, path: w.path, labelSelector: w.labelSelector, fieldSelector: w.fieldSelector, log: this.log, name: w.path,
          stallTimeoutMs: this.stallTimeoutMs, transform: toWatched,
        });
        s = { informer, users: new Map() };
        const entry = s;
        const changed = (obj: Watched) => {
          for (const [rep, spec] of entry.users) {
            if (spec.inSelectedNamespaces && obj.metadata.namespace !== undefined && !this.selectedNamespaces(rep).has(obj.metadata.namespace)) continue;
            this.touch(rep);
          }
        };
        informer.addHandler({
          add: (obj, initial) => {
            if (!initial) changed(obj);
          },
          update: (o, n) => {
            if (o.digest !== n.digest || !o.metadata.deletionTimestamp !== !n.metadata.deletionTimestamp) changed(n);
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
    const reg = prev ? Object.assign(prev, { client, keys, specs: watches, debounceMs }) : { client, keys, specs: watches, debounceMs };
    this.regs.set(replication, reg);
    if (this.synced(replication)) reg.unsyncedSince = undefined;
    else reg.unsyncedSince ??= Date.now();
    const awaiting = keys.join('\n');
    if (!this.synced(replication) && reg.awaitingSync !== awaiting) {
      reg.awaitingSync = awaiting;
      const done = (notify: boolean) => {
        if (reg.awaitingSync !== awaiting) return; // superseded by other watches
        reg.awaitingSync = undefined;
        if (notify && this.regs.get(replication) === reg) this.onChange(replication);
      };
      void Promise.all(keys.map((k) => this.shared.get(k)?.informer.waitForSync())).then(() => done(true), () => done(false));
    }
  }

  has(replication: string): boolean {
    return this.regs.has(replication);
  }

  /** How long the Replication's watches have been waiting for their first lists (0 once they have). */
  pendingMs(replication: string): number {
    const r = this.regs.get(replication);
    if (!r || this.synced(replication)) return 0;
    return Date.now() - (r.unsyncedSince ?? Date.now());
  }

  /** True once every informer of the Replication has its initial list. */
  synced(replication: string): boolean {
    const r = this.regs.get(replication);
    return !r || r.keys.every((k) => this.shared.get(k)?.informer.hasSynced() ?? false);
  }

  /** Every watch of the Replication listed, and none failing since: the caches follow the source. */
  healthy(replication: string): boolean {
    const r = this.regs.get(replication);
    return !!r && r.keys.every((k) => this.shared.get(k)?.informer.healthy() ?? false);
  }

  /** The namespaces the Replication's namespace watch holds now (not being deleted). */
  selectedNamespaces(replication: string): Set<string> {
    const r = this.regs.get(replication);
    const out = new Set<string>();
    if (!r) return out;
    for (const [i, w] of r.specs.entries()) {
      if (!w.selectsNamespaces) continue;
      for (const ns of this.shared.get(r.keys[i]!)?.informer.list() ?? []) if (!ns.metadata.deletionTimestamp) out.add(ns.metadata.name);
    }
    return out;
  }

  /**
   * A digest of everything the Replication watches, as the caches hold it now; undefined until
   * every watch has its first list (a digest of a partial view would prove nothing).
   */
  digest(replication: string): string | undefined {
    const r = this.regs.get(replication);
    if (!r || !this.synced(replication)) return undefined;
    const selected = this.selectedNamespaces(replication);
    const lines: string[] = [];
    for (const [i, w] of r.specs.entries()) {
      for (const o of this.shared.get(r.keys[i]!)?.informer.list() ?? []) {
        if (w.inSelectedNamespaces && o.metadata.namespace !== undefined && !selected.has(o.metadata.namespace)) continue;
        lines.push(`${w.path}\t${o.metadata.namespace ?? ''}\t${o.metadata.name}\t${o.digest}`);
      }
    }
    // The version too: after an upgrade (a rendering fix), the source no longer counts as synced,
    // so the periodic resync renders it again instead of answering from the caches.
    return `v1:${createHash('sha256').update(`${VERSION}\n${lines.sort().join('\n')}`).digest('base64url')}`;
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

  /** A change: the first one opens the debounce window; the window's end triggers one reconcile. */
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
