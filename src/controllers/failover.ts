// What failover and failback do to the clusters (the repository side is sync/failover.ts): the
// source workloads scaled down for a cutover and restored at failback, the DR cluster's live
// workloads read to wait for a failback to be applied, and the split-brain guard. Every step
// reads what it changes first, so running it again after a crash does nothing twice.
import type { KubeClient } from '../adapters/kube/client.ts';
import { KubeApiError } from '../adapters/kube/client.ts';
import { standbyWorkload } from '../core/failover.ts';
import { SCALED_DOWN_BY } from '../core/transform/metadata.ts';
import { ORIGINAL_REPLICAS, ORIGINAL_SUSPEND } from '../core/transform/workloads.ts';
import { matchesSelector } from '../core/labels.ts';
import type { KubeObject, LabelSelector, ResourceType } from '../core/types.ts';
import { isRecord } from '../core/types.ts';
import type { RepoWorkload } from '../sync/failover.ts';

/** Ready condition reason of the split-brain guard; the PVC data controller stops on it too. */
export const SPLIT_BRAIN = 'SplitBrain';

const PATHS: Record<string, string> = { Deployment: '/apis/apps/v1', StatefulSet: '/apis/apps/v1', CronJob: '/apis/batch/v1' };
const PLURAL: Record<string, string> = { Deployment: 'deployments', StatefulSet: 'statefulsets', CronJob: 'cronjobs' };

const objectPath = (kind: string, namespace: string, name: string): string =>
  `${PATHS[kind]}/namespaces/${encodeURIComponent(namespace)}/${PLURAL[kind]}/${encodeURIComponent(name)}`;

const replicasOf = (o: KubeObject): number => (isRecord(o.spec) && typeof o.spec.replicas === 'number' ? o.spec.replicas : 1);

async function getOrUndefined(client: KubeClient, p: string): Promise<KubeObject | undefined> {
  try {
    return await client.get<KubeObject>(p);
  } catch (err) {
    if (err instanceof KubeApiError && err.status === 404) return undefined;
    throw err;
  }
}

/** The `kind` objects of namespace `ns`; none where the cluster does not serve the kind. */
async function listOf(client: KubeClient, kind: string, ns: string): Promise<KubeObject[]> {
  try {
    return (await client.list(`${PATHS[kind]}/namespaces/${encodeURIComponent(ns)}/${PLURAL[kind]}`)).items;
  } catch (err) {
    if (err instanceof KubeApiError && err.status === 404) return [];
    throw err;
  }
}

const patch = (client: KubeClient, p: string, body: unknown, dryRun = false) => client.request('PATCH', dryRun ? `${p}?dryRun=All` : p, body, 'application/merge-patch+json');

/**
 * Cutover by Replication `by` ("namespace/name"; with dryRun: the same requests checked by the
 * API server, authorization and admission included, changing nothing): the source's workloads
 * to 0 and its CronJobs suspended, each remembering its state in the annotations the sync
 * already reads (so a sync of the scaled-down source would still write the right counts), and
 * which Replication scaled it down. Returns what it changed, "Deployment shop/web: replicas 3 -> 0".
 */
export async function scaleSourceDown(source: KubeClient, workloads: readonly RepoWorkload[], o: { by: string; dryRun?: boolean }): Promise<string[]> {
  const changed: string[] = [];
  for (const w of workloads) {
    if (!PATHS[w.kind]) continue;
    const p = objectPath(w.kind, w.sourceNamespace, w.name);
    const obj = await getOrUndefined(source, p);
    if (!obj || !isRecord(obj.spec)) continue;
    const ref = `${w.kind} ${w.sourceNamespace}/${w.name}`;
    if (w.kind === 'CronJob') {
      if (obj.spec.suspend === true) continue;
      await patch(source, p, { metadata: { annotations: { [ORIGINAL_SUSPEND]: 'false', [SCALED_DOWN_BY]: o.by }, resourceVersion: obj.metadata.resourceVersion }, spec: { suspend: true } }, o.dryRun);
      changed.push(`${ref}: active -> suspended`);
    } else {
      const n = replicasOf(obj);
      if (n === 0) continue;
      await patch(source, p, { metadata: { annotations: { [ORIGINAL_REPLICAS]: String(n), [SCALED_DOWN_BY]: o.by }, resourceVersion: obj.metadata.resourceVersion }, spec: { replicas: 0 } }, o.dryRun);
      changed.push(`${ref}: replicas ${n} -> 0`);
    }
  }
  return changed;
}

/**
 * What a failback of Replication `by` does to source workload `o` (a `kind`): it gets the state
 * the cutover remembered back and the annotations go (`patch`, `change` as "replicas 0 -> 3");
 * `otherReplication` when another Replication's cutover scaled it down (that one's failback
 * restores it); undefined when there is nothing to do. A workload without the mark (a cutover
 * before the mark existed) is restored as before; one of ours already running again (started
 * by hand) or whose remembered state is gone only loses our annotations.
 */
export function restoreStep(kind: string, o: KubeObject, by: string): { patch: Record<string, unknown>; change: string } | { otherReplication: string } | undefined {
  if (!isRecord(o.spec)) return undefined;
  const annotations = o.metadata.annotations ?? {};
  const mark = annotations[SCALED_DOWN_BY];
  if (mark !== undefined && mark !== by) return { otherReplication: mark };
  const remembered = kind === 'CronJob' ? ORIGINAL_SUSPEND : ORIGINAL_REPLICAS;
  const metadata = { annotations: { [remembered]: null, [SCALED_DOWN_BY]: null }, resourceVersion: o.metadata.resourceVersion };
  const down = kind === 'CronJob' ? o.spec.suspend === true : replicasOf(o) === 0;
  const count = annotations[ORIGINAL_REPLICAS];
  if (down && kind === 'CronJob' && annotations[ORIGINAL_SUSPEND] === 'false') return { patch: { metadata, spec: { suspend: false } }, change: 'suspended -> active' };
  if (down && kind !== 'CronJob' && count !== undefined && /^\d+$/.test(count)) return { patch: { metadata, spec: { replicas: Number(count) } }, change: `replicas 0 -> ${count}` };
  if (mark === undefined) return undefined;
  return { patch: { metadata }, change: down ? "left as it is (the state the cutover remembered is gone): the cutover's annotations go" : "running again already (started by hand): the cutover's annotations go" };
}

/** How to restore by hand a workload whose cutover's Replication is gone. */
export const RESTORE_BY_HAND = `kubectl scale it (a CronJob: set spec.suspend to false), then kubectl annotate it ${SCALED_DOWN_BY}- ${ORIGINAL_REPLICAS}- (a CronJob: ${ORIGINAL_SUSPEND}-)`;

/**
 * Failback of Replication `by`: restoreStep for each of `workloads`. `changed` says what it did
 * ("Deployment shop/web: replicas 0 -> 3"); `othersMarked`, which it left to another
 * Replication's failback ("Deployment shop/db (scaled down by dr-syncer/db)").
 */
export async function restoreSource(source: KubeClient, workloads: readonly RepoWorkload[], by: string): Promise<{ changed: string[]; othersMarked: string[] }> {
  const changed: string[] = [];
  const othersMarked: string[] = [];
  for (const w of workloads) {
    if (!PATHS[w.kind]) continue;
    const p = objectPath(w.kind, w.sourceNamespace, w.name);
    const o = await getOrUndefined(source, p);
    const step = o && restoreStep(w.kind, o, by);
    if (!step) continue;
    const ref = `${w.kind} ${w.sourceNamespace}/${w.name}`;
    if ('otherReplication' in step) {
      othersMarked.push(`${ref} (scaled down by ${step.otherReplication})`);
      continue;
    }
    await patch(source, p, step.patch);
    changed.push(`${ref}: ${step.change}`);
  }
  return { changed, othersMarked };
}

/**
 * The workloads in the source namespaces that the cutover of Replication `select.by` scaled
 * down, among the Replication's types (those it may list): what a failback restores when the DR
 * repository no longer says which they were (its folders removed by hand while failed over).
 * Ours by the mark, whatever their labels are now (a label changed during the failover must not
 * leave a workload down); a workload scaled down before the mark existed, by its remembered
 * state and the Replication's label selector (as it was found then).
 */
export async function scaledDownSourceWorkloads(source: KubeClient, namespaces: readonly { source: string; destination: string }[], select: { by: string; types: readonly ResourceType[]; labelSelector?: LabelSelector }): Promise<RepoWorkload[]> {
  const out: RepoWorkload[] = [];
  const kinds = Object.keys(PATHS).filter((kind) => select.types.some((t) => t.kind === kind && PATHS[kind]!.startsWith(`/apis/${t.group}/`)));
  for (const ns of namespaces) {
    for (const kind of kinds) {
      const remembered = kind === 'CronJob' ? ORIGINAL_SUSPEND : ORIGINAL_REPLICAS;
      for (const o of await listOf(source, kind, ns.source)) {
        const a = o.metadata.annotations ?? {};
        const ours = a[SCALED_DOWN_BY] === undefined ? a[remembered] !== undefined && matchesSelector(o.metadata.labels, select.labelSelector) : a[SCALED_DOWN_BY] === select.by;
        if (ours) out.push({ kind, name: o.metadata.name, sourceNamespace: ns.source, destinationNamespace: ns.destination });
      }
    }
  }
  return out;
}

/**
 * The DR cluster's Deployments and StatefulSets in `namespaces` that run more than a standby DR
 * site would ("Deployment shop/web runs 3 replicas"). `applied`: also count pods still running
 * (status.replicas), for a failback waiting until the DR site is really down.
 */
export async function activeDrWorkloads(dr: KubeClient, namespaces: readonly string[], scaleToZero: boolean, o: { countRunning?: boolean } = {}): Promise<string[]> {
  const out: string[] = [];
  for (const ns of [...new Set(namespaces)].sort()) {
    for (const kind of ['Deployment', 'StatefulSet']) {
      for (const live of await listOf(dr, kind, ns)) {
        // Only what dr-syncer wrote (it carries the remembered count).
        if (live.metadata.annotations?.[ORIGINAL_REPLICAS] === undefined) continue;
        const want = replicasOf(standbyWorkload({ ...live, apiVersion: live.apiVersion ?? 'apps/v1', kind }, scaleToZero));
        const spec = replicasOf(live);
        const running = isRecord(live.status) && typeof live.status.replicas === 'number' ? live.status.replicas : 0;
        if (spec > want) out.push(`${kind} ${ns}/${live.metadata.name} runs ${spec} replica${spec === 1 ? '' : 's'}`);
        else if (o.countRunning && running > want) out.push(`${kind} ${ns}/${live.metadata.name} still has ${running} pod${running === 1 ? '' : 's'}`);
      }
    }
  }
  return out;
}
