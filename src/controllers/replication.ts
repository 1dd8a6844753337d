// The Replication reconciler: one small idempotent function per key that decides whether a sync
// is due (mode, schedule, trigger, source changes), runs it through the sync engine, and writes
// what happened to status, Events and metrics. It returns "requeue after" for the next due time
// or throws for the work queue's backoff. Status writes never trigger a sync: the watch on
// Replications only enqueues on generation, annotation or deletion changes.
import { randomBytes } from 'node:crypto';
import type { KubeClient } from '../adapters/kube/client.ts';
import { KubeApiError, resourcePath } from '../adapters/kube/client.ts';
import type { GitAuth } from '../adapters/git/repo.ts';
import { GitRepo, PushConflictError } from '../adapters/git/repo.ts';
import type { RemoteCluster, Replication, ReplicationStatus } from '../api/v1alpha1/index.ts';
import { validateReplication } from '../api/v1alpha1/index.ts';
import { selectorToQuery } from '../core/labels.ts';
import { resolveResourceTypes } from '../core/select.ts';
import type { KubeObject, LabelSelector } from '../core/types.ts';
import type { EventRecorder } from '../runtime/events.ts';
import type { Informer } from '../runtime/informer.ts';
import type { ReconcileResult } from '../runtime/controller.ts';
import { splitKey } from '../runtime/controller.ts';
import { removeReplication, resolveNamespaces, runSync, SyncError } from '../sync/engine.ts';
import type { SyncResult, SyncSpec } from '../sync/engine.ts';
import { sopsSealer } from '../sync/secrets.ts';
import type { GitTarget } from '../sync/spec.ts';
import { gitTarget, syncSpecFor } from '../sync/spec.ts';
import type { Logger } from '../util/log.ts';
import type { ClusterClients} from './clusters.ts';
import { ClusterError } from './clusters.ts';
import type { Condition } from './conditions.ts';
import { getCondition, rfc3339, setCondition } from './conditions.ts';
import type { SyncMetrics } from './metrics.ts';
import { nextRun, parseCron } from './schedule.ts';
import type { SourceWatches, WatchSpec } from './source-watches.ts';

export const FINALIZER = 'dr-syncer.io/cleanup';
export const SYNC_NOW_ANNOTATION = 'dr-syncer.io/sync-now';
const API = '/apis/dr-syncer.io/v1alpha1';

export interface ReplicationControllerDeps {
  client: KubeClient;
  replications: Informer<Replication>;
  remoteClusters: Informer<RemoteCluster>;
  clusters: ClusterClients;
  watches: SourceWatches;
  events: EventRecorder;
  metrics: SyncMetrics;
  /** Where bare caches of DR repositories live. */
  cacheDir: string;
  /** Name recorded for an empty spec.sourceCluster. */
  localClusterName: string;
  log: Logger;
  now?: () => Date;
}

/** A reason a sync cannot run that the user must fix, or that resolves by itself later. */
class NotReady extends Error {
  constructor(
    readonly reason: string,
    message: string,
    readonly retryAfterMs?: number,
  ) {
    super(message);
  }
}

const parseDuration = (d: string | undefined, fallbackMs: number): number => {
  if (!d) return fallbackMs;
  let ms = 0;
  for (const m of d.matchAll(/(\d+(?:\.\d+)?)(ms|s|m|h)/g)) ms += Number(m[1]) * { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[m[2] as 'ms' | 's' | 'm' | 'h'];
  return ms || fallbackMs;
};
const seconds = (ms: number): string => `${(ms / 1000).toFixed(ms < 10_000 ? 2 : 1)}s`;

export class ReplicationController {
  /** Replications whose source changed since their last sync (Continuous mode). */
  private readonly dirty = new Set<string>();
  /** Continuous Replications this process has synced: after a restart or a takeover, changes
   * made while no controller watched are unknown, so the first reconcile syncs. */
  private readonly watchedSince = new Set<string>();
  /** One GitRepo per repository and branch, and one operation at a time on it. */
  private readonly repos = new Map<string, { repo: GitRepo; auth: string; lock: Promise<unknown> }>();
  private readonly kindsByReplication = new Map<string, string[]>();
  private readonly now: () => Date;

  constructor(private readonly d: ReplicationControllerDeps) {
    this.now = d.now ?? (() => new Date());
  }

  /** Called by the source watches when something changed for `key` (after the debounce). */
  markDirty(key: string): void {
    this.dirty.add(key);
    this.d.metrics.outOfSync.set({ replication: key }, 1);
  }

  reconcile = async (key: string): Promise<ReconcileResult | void> => {
    const { namespace, name } = splitKey(key);
    const cached = this.d.replications.get(namespace, name);
    if (!cached) {
      this.d.watches.remove(key);
      this.dirty.delete(key);
      this.watchedSince.delete(key);
      this.kindsByReplication.delete(key);
      await this.d.metrics.forget(key);
      return;
    }
    const rep = structuredClone(cached); // the informer's copy is shared and read-only
    if (rep.metadata.deletionTimestamp) return this.finalize(key, rep);
    if (!(rep.metadata.finalizers ?? []).includes(FINALIZER)) {
      await this.patch(rep, { metadata: { finalizers: [...(rep.metadata.finalizers ?? []), FINALIZER], resourceVersion: rep.metadata.resourceVersion } });
    }

    const valid = validateReplication(rep);
    if (!valid.ok) {
      this.d.watches.remove(key);
      const message = `invalid spec: ${valid.errors.join('; ')}`;
      if (getCondition(rep.status?.conditions as Condition[] | undefined, 'Ready')?.reason !== 'InvalidSpec') this.d.events.event(rep as unknown as KubeObject, 'Warning', 'InvalidSpec', message);
      await this.writeStatus(rep, { phase: 'Failed', lastError: { message, reason: 'InvalidSpec', time: rfc3339(this.now()) } }, [
        { type: 'Ready', status: 'False', reason: 'InvalidSpec', message },
      ]);
      return; // nothing to retry until the spec changes
    }
    const spec = valid.value.spec;
    if (spec.paused) {
      this.d.watches.remove(key);
      if (rep.status?.phase !== 'Paused') this.d.events.event(rep as unknown as KubeObject, 'Normal', 'Paused', 'spec.paused is true: no syncs run until it is set to false');
      await this.writeStatus(rep, { phase: 'Paused', nextSyncTime: undefined }, [{ type: 'Ready', status: 'False', reason: 'Paused', message: 'spec.paused is true' }]);
      return;
    }

    let prepared: { target: GitTarget; syncSpec: SyncSpec; source: KubeClient; repo: GitRepo; author: SyncSpec['git']['author'] };
    try {
      prepared = await this.prepare(valid.value);
    } catch (err) {
      if (!(err instanceof NotReady)) throw err;
      this.d.watches.remove(key);
      await this.writeStatus(rep, { phase: 'Failed', lastError: { message: err.message, reason: err.reason, time: rfc3339(this.now()) } }, [
        { type: 'Ready', status: 'False', reason: err.reason, message: err.message },
      ]);
      return { requeueAfterMs: err.retryAfterMs ?? 30_000 };
    }

    // Continuous mode watches the source; the other modes do not.
    const mode = spec.mode ?? 'Scheduled';
    if (mode === 'Continuous') {
      await this.ensureWatches(key, valid.value, prepared.source);
      // Watch first, then read: a change during the sync then arrives as an event, never in between.
      await Promise.race([this.d.watches.waitForSync(key), new Promise((r) => setTimeout(r, 30_000).unref())]);
    } else this.d.watches.remove(key);

    const now = this.now();
    const status = rep.status ?? {};
    const syncNow = rep.metadata.annotations?.[SYNC_NOW_ANNOTATION];
    const manual = spec.trigger?.manual && spec.trigger.manual !== status.lastManualSync ? spec.trigger.manual : undefined;
    const specChanged = rep.metadata.generation !== status.observedGeneration;
    const lastSync = status.lastSyncTime ? new Date(status.lastSyncTime) : undefined;
    let next: Date | undefined;
    let due = syncNow !== undefined || manual !== undefined;
    if (mode === 'Scheduled') {
      const sched = parseCron(spec.schedule ?? '');
      next = nextRun(sched, lastSync ?? new Date(rep.metadata.creationTimestamp ?? now.toISOString()));
      // A tick missed while the controller was down runs once now.
      due ||= specChanged || !lastSync || (next !== undefined && next <= now);
    } else if (mode === 'Continuous') {
      const resyncMs = parseDuration(spec.continuous?.resyncInterval, 3_600_000);
      next = new Date((lastSync ?? now).getTime() + resyncMs);
      due ||= specChanged || !lastSync || this.dirty.has(key) || next <= now || !this.watchedSince.has(key);
    }
    if (!due) {
      await this.writeStatus(rep, { nextSyncTime: next ? rfc3339(next) : undefined, phase: status.phase ?? 'Pending' }, []);
      return next ? { requeueAfterMs: Math.max(1000, next.getTime() - now.getTime()) } : undefined;
    }

    this.dirty.delete(key);
    const result = await this.sync(key, rep, prepared);
    if (mode === 'Continuous') this.watchedSince.add(key);
    const after = this.now();
    if (mode === 'Scheduled') next = nextRun(parseCron(spec.schedule ?? ''), after);
    else if (mode === 'Continuous') next = new Date(after.getTime() + parseDuration(spec.continuous?.resyncInterval, 3_600_000));
    await this.recordSuccess(rep, result, { manual, next });
    if (syncNow !== undefined) await this.clearSyncNow(rep, syncNow);
    if (result.errors.length) return { requeueAfterMs: 60_000 };
    return next ? { requeueAfterMs: Math.max(1000, next.getTime() - after.getTime()) } : undefined;
  };

  /** Everything a sync needs, or NotReady with a reason the user can act on. */
  private async prepare(rep: Replication) {
    const spec = rep.spec;
    const ns = rep.metadata.namespace ?? 'default';
    const rc = (name: string | undefined, field: string): RemoteCluster | undefined => {
      if (!name) return undefined;
      const found = this.d.remoteClusters.get(ns, name);
      if (!found) throw new NotReady('RemoteClusterNotFound', `${field}: RemoteCluster ${ns}/${name} does not exist`);
      return found;
    };
    const sourceRc = rc(spec.sourceCluster, 'spec.sourceCluster');
    const destRc = rc(spec.destinationCluster, 'spec.destinationCluster');
    let source = this.d.clusters.local;
    if (sourceRc) {
      try {
        source = await this.d.clusters.forRemoteCluster(sourceRc);
      } catch (err) {
        if (err instanceof ClusterError) throw new NotReady('SourceClusterNotReady', `source cluster ${sourceRc.metadata.name}: ${err.message}`);
        throw err;
      }
    }
    let target: GitTarget;
    try {
      target = gitTarget(rep, destRc);
    } catch (err) {
      throw new NotReady('NoRepository', err instanceof Error ? err.message : String(err), 300_000);
    }
    const auth = target.credentialsSecret ? await this.gitAuth(ns, target.credentialsSecret) : undefined;
    const repo = this.repoFor(target, auth);
    const syncSpec = syncSpecFor(rep, spec.sourceCluster ?? this.d.localClusterName, target);
    return { target, syncSpec, source, repo, author: syncSpec.git.author };
  }

  private async gitAuth(namespace: string, secretName: string): Promise<GitAuth> {
    let secret: { data?: Record<string, string> };
    try {
      secret = await this.d.client.get(`/api/v1/namespaces/${encodeURIComponent(namespace)}/secrets/${encodeURIComponent(secretName)}`);
    } catch (err) {
      if (err instanceof KubeApiError && err.status === 404) {
        throw new NotReady('GitCredentialsNotFound', `Secret ${namespace}/${secretName} (git credentialsSecretRef) does not exist; it needs the keys username and password, or token`);
      }
      throw err;
    }
    const get = (k: string) => (secret.data?.[k] ? Buffer.from(secret.data[k], 'base64').toString('utf8') : undefined);
    const auth = { username: get('username'), password: get('password'), token: get('token') };
    if (!auth.password && !auth.token) {
      throw new NotReady('GitCredentialsInvalid', `Secret ${namespace}/${secretName} needs the keys username and password, or token`);
    }
    return auth;
  }

  private repoFor(target: GitTarget, auth: GitAuth | undefined): GitRepo {
    const k = `${target.url}#${target.branch}`;
    const authKey = JSON.stringify(auth ?? null);
    const hit = this.repos.get(k);
    if (hit && hit.auth === authKey) return hit.repo;
    const repo = new GitRepo({ url: target.url, branch: target.branch, auth, cacheDir: this.d.cacheDir, log: this.d.log });
    this.repos.set(k, { repo, auth: authKey, lock: hit?.lock ?? Promise.resolve() });
    return repo;
  }

  /** Runs `fn` when no other operation on the same repository runs (they share a bare cache). */
  private async withRepo<T>(repo: GitRepo, fn: () => Promise<T>): Promise<T> {
    const entry = this.repos.get(`${repo.url}#${repo.branch}`)!;
    const run = entry.lock.then(fn, fn);
    entry.lock = run.catch(() => undefined);
    return run;
  }

  private async sync(key: string, rep: Replication, p: Awaited<ReturnType<ReplicationController['prepare']>>): Promise<SyncResult> {
    const t0 = performance.now();
    await this.writeStatus(rep, { phase: 'Syncing' }, []);
    const sealSecrets = p.syncSpec.plan.secretsMode === 'SOPS' ? sopsSealer(rep.spec.secrets?.sops?.ageRecipients ?? [], await this.digestKey(rep)) : undefined;
    try {
      const result = await this.withRepo(p.repo, () => runSync(p.syncSpec, { source: p.source, repo: p.repo, sealSecrets, log: this.d.log.child({ replication: key }) }));
      this.d.metrics.syncDuration.observe({ replication: key, result: 'success' }, (performance.now() - t0) / 1000);
      if (result.attempts > 1) this.d.metrics.pushFailures.inc({ replication: key }, result.attempts - 1);
      return result;
    } catch (err) {
      this.d.metrics.syncDuration.observe({ replication: key, result: 'error' }, (performance.now() - t0) / 1000);
      this.d.metrics.outOfSync.set({ replication: key }, 1);
      const reason = err instanceof SyncError ? err.reason : err instanceof PushConflictError ? 'GitPushRejected' : /push|fetch/i.test(String(err)) ? 'GitFailed' : 'SyncFailed';
      if (reason.startsWith('Git')) this.d.metrics.pushFailures.inc({ replication: key });
      const message = err instanceof Error ? err.message : String(err);
      this.d.events.event(rep as unknown as KubeObject, 'Warning', 'SyncFailed', message);
      await this.writeStatus(rep, { phase: 'Failed', lastError: { message, reason, time: rfc3339(this.now()) } }, [
        { type: 'Synced', status: 'False', reason, message },
        { type: 'Ready', status: 'False', reason, message },
      ]);
      throw err;
    }
  }

  private async recordSuccess(rep: Replication, r: SyncResult, o: { manual?: string; next?: Date }): Promise<void> {
    const key = `${rep.metadata.namespace}/${rep.metadata.name}`;
    const now = this.now();
    const kinds = Object.keys(r.counts);
    for (const kind of this.kindsByReplication.get(key) ?? []) if (!kinds.includes(kind)) this.d.metrics.objectsSynced.remove({ replication: key, kind });
    for (const [kind, n] of Object.entries(r.counts)) this.d.metrics.objectsSynced.set({ replication: key, kind }, n);
    this.kindsByReplication.set(key, kinds);
    const partial = r.errors.length > 0;
    this.d.metrics.outOfSync.set({ replication: key }, partial || this.dirty.has(key) ? 1 : 0);
    if (!partial) this.d.metrics.lastSuccess.set({ replication: key }, now.getTime() / 1000);
    const { added, changed, removed } = r.diff;
    const summary = `${added.length} added, ${changed.length} changed, ${removed.length} removed`;
    if (r.commit) {
      this.d.metrics.commits.inc({ replication: key });
      this.d.events.event(rep as unknown as KubeObject, 'Normal', 'Committed', `committed ${r.commit.slice(0, 12)} (${summary})`);
    }
    if (partial) this.d.events.event(rep as unknown as KubeObject, 'Warning', 'ObjectsFailed', r.errors.map((e) => e.message).join('; '));
    const skipped = new Map<string, { group: string; kind: string; reason: string; count: number }>();
    for (const s of r.skipped) {
      const k = `${s.kind}|${s.reason}`;
      const e = skipped.get(k) ?? { group: '', kind: s.kind, reason: s.reason, count: 0 };
      e.count++;
      skipped.set(k, e);
    }
    const message = r.commit ? `committed ${r.commit.slice(0, 12)}: ${summary}` : 'no changes: the DR repository is up to date';
    const errorText = r.errors.map((e) => e.message).join('; ');
    const status: ReplicationStatus = {
      phase: partial ? 'Failed' : 'Synced',
      observedGeneration: rep.metadata.generation,
      lastSyncTime: rfc3339(now),
      lastSyncDuration: seconds(r.durationMs),
      nextSyncTime: o.next ? rfc3339(o.next) : undefined,
      lastCommit: r.head ?? rep.status?.lastCommit,
      resources: Object.entries(r.counts).map(([gk, count]) => {
        const [kind, ...g] = gk.split('.');
        return { group: g.join('.'), kind: kind!, count };
      }),
      skipped: [...skipped.values()].sort((a, b) => `${a.kind}${a.reason}`.localeCompare(`${b.kind}${b.reason}`)),
      sourceNamespaces: r.namespaces.map((n) => n.source),
      lastError: partial ? { message: errorText, reason: 'TransformFailed', time: rfc3339(now) } : undefined,
      ...(o.manual !== undefined ? { lastManualSync: o.manual } : {}),
    };
    const warn = r.warnings.length ? ` (warnings: ${r.warnings.join('; ')})` : '';
    await this.writeStatus(rep, status, [
      partial
        ? { type: 'Synced', status: 'False', reason: 'TransformFailed', message: errorText }
        : { type: 'Synced', status: 'True', reason: r.commit ? 'Committed' : 'UpToDate', message: message + warn },
      partial ? { type: 'Ready', status: 'False', reason: 'TransformFailed', message: errorText } : { type: 'Ready', status: 'True', reason: 'Synced', message },
    ]);
  }

  private async ensureWatches(key: string, rep: Replication, source: KubeClient): Promise<void> {
    const spec = rep.spec;
    const discovered = await source.discover();
    const { types } = resolveResourceTypes(spec.resourceTypes, spec.excludeResourceTypes, discovered);
    const watches: WatchSpec[] = [];
    if (spec.sourceNamespace) {
      for (const t of types) watches.push({ path: resourcePath(t, spec.sourceNamespace) });
    } else {
      const sel = spec.namespaceSelector?.labelSelector as LabelSelector | undefined;
      const q = selectorToQuery(sel);
      watches.push({ path: '/api/v1/namespaces', labelSelector: q || undefined });
      const namespaces = new Set((await resolveNamespaces(source, { namespaceSelector: spec.namespaceSelector as SyncSpec['namespaceSelector'] })).map((n) => n.source));
      for (const t of types) watches.push({ path: resourcePath(t), namespaces });
    }
    this.d.watches.set(key, source, watches, parseDuration(spec.continuous?.debounce, 500));
  }

  private async finalize(key: string, rep: Replication): Promise<ReconcileResult | void> {
    this.d.watches.remove(key);
    this.dirty.delete(key);
    if (!(rep.metadata.finalizers ?? []).includes(FINALIZER)) return;
    const valid = validateReplication(rep);
    if (valid.ok) {
      try {
        const p = await this.prepare(valid.value);
        const commit = await this.withRepo(p.repo, () =>
          removeReplication({ replication: p.syncSpec.replication, sourceCluster: p.syncSpec.sourceCluster, path: p.target.path, author: p.author }, { repo: p.repo, log: this.d.log }),
        );
        if (commit) this.d.events.event(rep as unknown as KubeObject, 'Normal', 'Removed', `removed its folders from the DR repository in ${commit.slice(0, 12)}`);
      } catch (err) {
        if (!(err instanceof NotReady)) throw err; // e.g. the repository is unreachable: retry with backoff
        this.d.events.event(rep as unknown as KubeObject, 'Warning', 'CleanupSkipped', `the DR repository folders were not removed: ${err.message}`);
      }
    }
    const finalizers = (rep.metadata.finalizers ?? []).filter((f) => f !== FINALIZER);
    await this.patch(rep, { metadata: { finalizers, resourceVersion: rep.metadata.resourceVersion } });
  }

  /** The key of the keyed digest that lets unchanged SOPS Secrets keep their files (see sync/secrets.ts). */
  private async digestKey(rep: Replication): Promise<Uint8Array> {
    const ns = rep.metadata.namespace ?? 'default';
    const name = `${rep.metadata.name}-sops-digest`.slice(0, 253);
    const p = `/api/v1/namespaces/${encodeURIComponent(ns)}/secrets`;
    try {
      const s = await this.d.client.get<{ data?: { key?: string } }>(`${p}/${encodeURIComponent(name)}`);
      if (s.data?.key) return Buffer.from(s.data.key, 'base64');
    } catch (err) {
      if (!(err instanceof KubeApiError && err.status === 404)) throw err;
    }
    const key = randomBytes(32);
    const owner = { apiVersion: 'dr-syncer.io/v1alpha1', kind: 'Replication', name: rep.metadata.name, uid: rep.metadata.uid, controller: true };
    try {
      await this.d.client.request('POST', p, {
        apiVersion: 'v1', kind: 'Secret', type: 'Opaque',
        metadata: { name, labels: { 'app.kubernetes.io/managed-by': 'dr-syncer' }, ownerReferences: [owner] },
        data: { key: key.toString('base64') },
      });
      return key;
    } catch (err) {
      if (err instanceof KubeApiError && err.status === 409) return this.digestKey(rep); // created meanwhile
      throw err;
    }
  }

  private async clearSyncNow(rep: Replication, handled: string): Promise<void> {
    // Only if nobody asked again meanwhile: `test` fails when the value changed.
    const ptr = `/metadata/annotations/${SYNC_NOW_ANNOTATION.replace(/~/g, '~0').replace(/\//g, '~1')}`;
    try {
      await this.d.client.request('PATCH', `${API}/namespaces/${rep.metadata.namespace}/replications/${rep.metadata.name}`, [
        { op: 'test', path: ptr, value: handled },
        { op: 'remove', path: ptr },
      ], 'application/json-patch+json');
    } catch (err) {
      if (!(err instanceof KubeApiError && (err.status === 422 || err.status === 404))) throw err;
    }
  }

  private patch(rep: Replication, body: unknown): Promise<unknown> {
    return this.d.client.request('PATCH', `${API}/namespaces/${rep.metadata.namespace}/replications/${rep.metadata.name}`, body, 'application/merge-patch+json');
  }

  /**
   * Merges `fields` and `conditions` into the status and writes it when it changed. The
   * conditions record the generation they were computed for.
   */
  private async writeStatus(rep: Replication, fields: Partial<ReplicationStatus>, conditions: Omit<Condition, 'lastTransitionTime' | 'observedGeneration'>[]): Promise<void> {
    const now = this.now();
    const old = rep.status ?? {};
    let conds = (old.conditions ?? []) as Condition[];
    for (const c of conditions) conds = setCondition(conds, { ...c, observedGeneration: rep.metadata.generation }, now);
    const next: Record<string, unknown> = { ...old, ...fields, conditions: conds };
    for (const k of Object.keys(next)) if (next[k] === undefined) delete next[k];
    if (JSON.stringify(next) === JSON.stringify(old)) return;
    // A merge patch with null removes fields we dropped (e.g. lastError after a success).
    const body: Record<string, unknown> = { ...next };
    for (const k of Object.keys(old)) if (!(k in next)) body[k] = null;
    try {
      await this.d.client.request('PATCH', `${API}/namespaces/${rep.metadata.namespace}/replications/${rep.metadata.name}/status`, { status: body }, 'application/merge-patch+json');
      rep.status = next as ReplicationStatus; // later writes in this reconcile start from here
    } catch (err) {
      if (err instanceof KubeApiError && err.status === 404) return; // deleted meanwhile
      throw err;
    }
  }
}
