// One PVC's data transfer, start to end, against the two clusters:
//   source: Lease -> endpoint Job (+ Secret) on the node that holds the volume -> target
//           registered with that node's agent
//   destination: rsync Job (+ Secret) mounting the DR PVC, through the agent, host keys pinned
// then rsync's exit code and statistics, and everything removed again (also on failure or
// abort). What a crash leaves behind is removed by sweep() and, failing that, by the Jobs'
// deadlines and TTLs; the Lease expires.
import { randomBytes } from 'node:crypto';
import net from 'node:net';
import { setTimeout as delay } from 'node:timers/promises';
import type { KubeClient } from '../adapters/kube/client.ts';
import { KubeApiError } from '../adapters/kube/client.ts';
import type { KeyPair } from '../agent/keys.ts';
import { generateKeyPair } from '../agent/keys.ts';
import { formatAddress } from '../agent/registry.ts';
import type { KubeObject } from '../core/types.ts';
import type { Logger } from '../util/log.ts';
import type { AddressType } from './agent.ts';
import { deleteIfExists, nodeAddress, podReady, objectPath, registeredTargets, registerTarget, unregisterTargets } from './agent.ts';
import type { TransferPlan } from './manifests.ts';
import { ENDPOINT_PORT, endpointJob, endpointSecret, OPERATION_LABEL, operationName, REPLICATION_UID_LABEL, rsyncJob, rsyncSecret } from './manifests.ts';
import type { RsyncFigures } from './rsync-result.ts';
import { rsyncResult } from './rsync-result.ts';

export interface TransferDeps {
  source: KubeClient;
  destination: KubeClient;
  /** Names the clusters in messages. */
  sourceName: string;
  destinationName: string;
  /**
   * forward (default): the data sync, source cluster -> DR cluster. back: during a failback, the
   * DR cluster's data -> the source cluster (source here is the DR cluster, whose agents serve
   * the copy). The steps are the same; back also refuses a destination PVC that a pod still
   * mounts (the source workloads must be stopped) and skips a DR PVC that was never bound.
   */
  direction?: 'forward' | 'back';
  agent: {
    namespace: string; port: number; addressType: AddressType; hostPublicKey: string; clientPrivateKey: string;
    /** The agents as their RemoteCluster last reported them. */
    nodes: { node: string; ready: boolean }[];
  };
  replicationKey: KeyPair;
  /** Who holds the PVC's Lease (controller identity). */
  holder: string;
  log: Logger;
  /** How long the endpoint pod may take to be scheduled and ready. Default 3 minutes. */
  podReadyTimeoutMs?: number;
  pollMs?: number;
}

export type PvcPhase = 'Pending' | 'Syncing' | 'Synced' | 'Failed' | 'Skipped';

export interface TransferOutcome {
  phase: PvcPhase;
  message: string;
  startedAt: Date;
  durationMs: number;
  exitCode?: number;
  figures?: RsyncFigures;
}

/** A condition that ends the transfer with a phase and a message for status. */
export class Stop extends Error {
  constructor(
    readonly phase: PvcPhase,
    message: string,
    readonly exitCode?: number,
  ) {
    super(message);
  }
}

export const newOperationId = (): string => randomBytes(5).toString('hex');

/** An IP address or a DNS-1123 host name: safe to write into ssh_config and known_hosts. */
export const isSafeHost = (h: string): boolean =>
  net.isIP(h) !== 0 || (h.length <= 253 && /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?(\.[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)*$/i.test(h));

/** Longer than the endpoint may take to start (podReadyTimeoutMs, 3 min), renewed every third of it while the copy runs. */
const LEASE_SECONDS = 300;
const leaseName = (pvc: string) => (`dr-syncer-pvc-${pvc}`.length <= 253 ? `dr-syncer-pvc-${pvc}` : `dr-syncer-pvc-${pvc.slice(0, 200)}`);

interface PodLike {
  metadata: { name: string };
  spec?: { nodeName?: string; volumes?: { persistentVolumeClaim?: { claimName?: string } }[] };
  status?: {
    phase?: string;
    podIP?: string;
    conditions?: { type: string; status: string; reason?: string; message?: string }[];
    containerStatuses?: { state?: { running?: unknown; terminated?: { exitCode: number; reason?: string; message?: string }; waiting?: { reason?: string; message?: string } } }[];
  };
}

/** The Lease of one PVC (or, with name, any Lease) in a namespace of the source cluster. */
const leasePath = (namespace: string, name?: string) =>
  `/apis/coordination.k8s.io/v1/namespaces/${encodeURIComponent(namespace)}/leases${name === undefined ? '' : `/${encodeURIComponent(name)}`}`;

async function getOrUndefined<T>(client: KubeClient, path: string, signal?: AbortSignal): Promise<T | undefined> {
  try {
    return await client.get<T>(path, signal);
  } catch (err) {
    if (err instanceof KubeApiError && err.status === 404) return undefined;
    throw err;
  }
}

/** The clusters as messages name them: "source cluster prod" -> "destination cluster dr", or back "DR cluster dr" -> "source cluster prod". */
const fromCluster = (d: Pick<TransferDeps, 'direction' | 'sourceName'>) => `${d.direction === 'back' ? 'DR' : 'source'} cluster ${d.sourceName}`;
const toCluster = (d: Pick<TransferDeps, 'direction' | 'destinationName'>) => `${d.direction === 'back' ? 'source' : 'destination'} cluster ${d.destinationName}`;

/** Pods that hold a volume: scheduled and not ended. */
const mounting = (pods: PodLike[], claim: string) =>
  pods.filter((p) => p.spec?.nodeName && !['Succeeded', 'Failed'].includes(p.status?.phase ?? '') && p.spec.volumes?.some((v) => v.persistentVolumeClaim?.claimName === claim));

const pvcPath = (ns: string, name: string) => `/api/v1/namespaces/${encodeURIComponent(ns)}/persistentvolumeclaims/${encodeURIComponent(name)}`;

export async function transferPvc(d: TransferDeps, plan: TransferPlan, signal?: AbortSignal): Promise<TransferOutcome> {
  const startedAt = new Date();
  const t0 = Date.now();
  const src = `${plan.source.namespace}/${plan.source.pvc}`;
  const log = d.log.child({ pvc: src, operation: plan.opId });
  const created: { client: KubeClient; path: string }[] = [];
  let registered = false;
  let leaseHeld = false;
  try {
    const back = d.direction === 'back';
    const dst = `${plan.destination.namespace}/${plan.destination.pvc}`;
    // The DR PVC arrives through GitOps; until it is there, there is nowhere to copy to. (Back:
    // the source PVC, which someone removed during the failover.)
    const drPvc = await getOrUndefined<{ status?: { phase?: string } }>(d.destination, pvcPath(plan.destination.namespace, plan.destination.pvc), signal);
    if (!drPvc) {
      throw new Stop('Pending', back
        ? `waiting for PVC ${dst} in ${toCluster(d)}: the DR data is copied back into it (create it again, or fail back with spec.failover.force: true, which does not copy the data back)`
        : `waiting for PVC ${dst} in ${toCluster(d)} (it is created when the DR repository is applied)`);
    }
    if (drPvc.status?.phase === 'Lost') throw new Stop('Failed', `PVC ${dst} in ${toCluster(d)} is Lost: its volume is gone`);
    if (back) {
      // Written into while something runs on it, the source would start from a mix; a cutover
      // stopped the source workloads, without one the user must.
      const live = mounting((await d.destination.list(`/api/v1/namespaces/${encodeURIComponent(plan.destination.namespace)}/pods`, {}, 500, signal)).items as unknown as PodLike[], plan.destination.pvc);
      if (live.length > 0) {
        throw new Stop('Pending', `PVC ${dst} in ${toCluster(d)} is mounted by pod ${live[0]!.metadata.name}: the source workloads must be stopped (scaled to 0) before the DR data is copied back into it`);
      }
    }
    const srcPvc = await getOrUndefined<{ spec?: { accessModes?: string[] }; status?: { phase?: string } }>(d.source, pvcPath(plan.source.namespace, plan.source.pvc), signal);
    if (!srcPvc) throw new Stop('Skipped', `PVC ${src} no longer exists in ${fromCluster(d)}`);
    // A DR PVC that was never bound was never written: there is nothing to copy back.
    if (back && srcPvc.status?.phase === 'Pending') throw new Stop('Skipped', `PVC ${src} in ${fromCluster(d)} was never bound: no data was written to it`);
    if (srcPvc.status?.phase !== 'Bound') throw new Stop('Pending', `PVC ${src} in ${fromCluster(d)} is ${srcPvc.status?.phase ?? 'not bound'}: waiting until it is Bound`);

    // Where is it mounted? A ReadWriteOnce volume can be mounted again only on that node.
    const pods = (await d.source.list(`/api/v1/namespaces/${encodeURIComponent(plan.source.namespace)}/pods`, {}, 500, signal)).items as unknown as PodLike[];
    const users = mounting(pods, plan.source.pvc);
    if (users.length > 0 && srcPvc.spec?.accessModes?.includes('ReadWriteOncePod')) {
      throw new Stop('Skipped', `PVC ${src} is ReadWriteOncePod and mounted by pod ${users[0]!.metadata.name}: no second pod may mount it`);
    }
    const node = users[0]?.spec?.nodeName;
    const p: TransferPlan = { ...plan, source: { ...plan.source, ...(node ? { node } : {}) } };

    await acquireLease(d, plan, signal);
    leaseHeld = true;

    // Source side: the endpoint, with a host key made for this transfer only.
    const endpointHost = generateKeyPair(`dr-syncer-endpoint-${plan.opId}`);
    const ejob = await d.source.request<KubeObject>('POST', `/apis/batch/v1/namespaces/${encodeURIComponent(plan.source.namespace)}/jobs`, endpointJob(p), 'application/json', signal);
    created.push({ client: d.source, path: objectPath(ejob) });
    await d.source.request('POST', `/api/v1/namespaces/${encodeURIComponent(plan.source.namespace)}/secrets`, endpointSecret(p, endpointHost.privateKey, d.replicationKey.publicKey, ejob), 'application/json', signal);
    const endpoint = await waitForEndpoint(d, p, signal);
    log.info({ node: endpoint.node, endpoint: endpoint.ip }, 'rsync endpoint ready');

    if (!d.agent.nodes.some((n) => n.node === endpoint.node && n.ready)) {
      throw new Stop('Pending', `the PVC-sync agent on node ${endpoint.node} of ${fromCluster(d)} is not ready (RemoteCluster status.agents); retrying`);
    }
    const nodeObj = await d.source.get<{ metadata: { name: string }; status?: { addresses?: { type: string; address: string }[] } }>(`/api/v1/nodes/${encodeURIComponent(endpoint.node)}`, signal);
    const agentHost = nodeAddress(nodeObj, d.agent.addressType);
    if (!agentHost) throw new Stop('Failed', `node ${endpoint.node} of ${fromCluster(d)} has no ${d.agent.addressType} address (spec.pvcSync.agentAddress)`);
    // Written by the node itself and copied into the DR side's ssh_config: an IP or a host name, nothing else.
    if (!isSafeHost(agentHost)) throw new Stop('Failed', `node ${endpoint.node} of ${fromCluster(d)} reports ${d.agent.addressType} ${JSON.stringify(agentHost.slice(0, 100))}, which is neither an IP address nor a host name`);
    await registerTarget(d.source, d.agent.namespace, plan.opId, endpoint.node, formatAddress(endpoint.ip, ENDPOINT_PORT), signal);
    registered = true;

    // Destination side: the rsync Job.
    const rjob = await d.destination.request<KubeObject>('POST', `/apis/batch/v1/namespaces/${encodeURIComponent(plan.destination.namespace)}/jobs`, rsyncJob(p), 'application/json', signal);
    created.push({ client: d.destination, path: objectPath(rjob) });
    await d.destination.request(
      'POST', `/api/v1/namespaces/${encodeURIComponent(plan.destination.namespace)}/secrets`,
      rsyncSecret(p, { agentHost, agentPort: d.agent.port, agentHostPublicKey: d.agent.hostPublicKey, endpointIP: endpoint.ip, endpointHostPublicKey: endpointHost.publicKey },
        { agentPrivateKey: d.agent.clientPrivateKey, endpointPrivateKey: d.replicationKey.privateKey }, rjob),
      'application/json', signal,
    );
    log.info({ agent: `${agentHost}:${d.agent.port}` }, 'rsync job started');
    const done = await waitForRsync(d, p, signal);
    const r = rsyncResult(done.exitCode, done.log, done.log);
    log.info({ exitCode: r.exitCode, figures: r.figures }, r.ok ? 'rsync complete' : 'rsync failed');
    return { phase: r.ok ? 'Synced' : 'Failed', message: r.ok ? 'complete' : r.message, startedAt, durationMs: Date.now() - t0, exitCode: r.exitCode, ...(r.figures ? { figures: r.figures } : {}) };
  } catch (err) {
    if (err instanceof Stop) return { phase: err.phase, message: err.message, startedAt, durationMs: Date.now() - t0, ...(err.exitCode !== undefined ? { exitCode: err.exitCode } : {}) };
    throw err;
  } finally {
    // Not with the (maybe aborted) signal: clean-up must run also when the reconcile is cancelled.
    const cleanup: Promise<unknown>[] = created.map((c) => deleteIfExists(c.client, c.path));
    if (registered) cleanup.push(unregisterTargets(d.source, d.agent.namespace, [plan.opId]));
    if (leaseHeld) cleanup.push(releaseLease(d, plan));
    for (const r of await Promise.allSettled(cleanup)) {
      if (r.status === 'rejected') log.warn({ err: r.reason as unknown }, 'clean-up failed; the next sweep removes it');
    }
  }
}

interface LeaseObject {
  metadata: { resourceVersion?: string };
  spec?: { holderIdentity?: string; renewTime?: string; leaseDurationSeconds?: number };
}

function leaseBody(d: Pick<TransferDeps, 'holder'>, plan: TransferPlan, resourceVersion?: string): unknown {
  const now = new Date().toISOString().replace(/Z$/, '000Z'); // MicroTime
  return {
    apiVersion: 'coordination.k8s.io/v1', kind: 'Lease',
    metadata: {
      name: leaseName(plan.source.pvc), namespace: plan.source.namespace,
      labels: { 'app.kubernetes.io/managed-by': 'dr-syncer', [OPERATION_LABEL]: plan.opId, [REPLICATION_UID_LABEL]: plan.replication.uid },
      ...(resourceVersion ? { resourceVersion } : {}),
    },
    spec: { holderIdentity: holderOf(d, plan), leaseDurationSeconds: LEASE_SECONDS, acquireTime: now, renewTime: now },
  };
}

/** One transfer per PVC at a time, across Replications and controllers: a Lease next to the PVC. */
async function acquireLease(d: Pick<TransferDeps, 'source' | 'holder'>, plan: TransferPlan, signal?: AbortSignal): Promise<void> {
  const base = leasePath(plan.source.namespace);
  try {
    await d.source.request('POST', base, leaseBody(d, plan), 'application/json', signal);
    return;
  } catch (err) {
    if (!(err instanceof KubeApiError && err.status === 409)) throw err;
  }
  const l = await d.source.get<LeaseObject>(`${base}/${encodeURIComponent(leaseName(plan.source.pvc))}`, signal);
  const renewed = Date.parse(l.spec?.renewTime ?? '');
  const expired = Number.isNaN(renewed) || Date.now() - renewed > (l.spec?.leaseDurationSeconds ?? LEASE_SECONDS) * 1000;
  if (!expired) throw new Stop('Pending', `another transfer of PVC ${plan.source.namespace}/${plan.source.pvc} is running (Lease ${leaseName(plan.source.pvc)} held by ${l.spec?.holderIdentity ?? 'unknown'})`);
  try {
    await d.source.request('PUT', `${base}/${encodeURIComponent(leaseName(plan.source.pvc))}`, leaseBody(d, plan, l.metadata.resourceVersion), 'application/json', signal);
  } catch (err) {
    if (err instanceof KubeApiError && err.status === 409) throw new Stop('Pending', `another transfer of PVC ${plan.source.namespace}/${plan.source.pvc} took its Lease first`);
    throw err;
  }
}

const holderOf = (d: Pick<TransferDeps, 'holder'>, plan: TransferPlan) => `${d.holder}/${plan.replication.namespace}/${plan.replication.name}/${plan.opId}`;

/** Renews the Lease only while this transfer holds it (a write with its resourceVersion); a lost Lease ends the transfer. */
async function renewLease(d: Pick<TransferDeps, 'source' | 'holder'>, plan: TransferPlan, signal?: AbortSignal): Promise<void> {
  const path = leasePath(plan.source.namespace, leaseName(plan.source.pvc));
  const l = await getOrUndefined<LeaseObject & { spec?: Record<string, unknown> }>(d.source, path, signal);
  if (l?.spec?.holderIdentity !== holderOf(d, plan)) {
    throw new Stop('Failed', `lost the Lease of PVC ${plan.source.namespace}/${plan.source.pvc} (now held by ${l?.spec?.holderIdentity ?? 'nobody'}): this copy was stopped so that two never run at once`);
  }
  const now = new Date().toISOString().replace(/Z$/, '000Z');
  try {
    await d.source.request('PUT', path, { ...l, spec: { ...l.spec, renewTime: now } }, 'application/json', signal);
  } catch (err) {
    if (err instanceof KubeApiError && err.status === 409) throw new Stop('Failed', `lost the Lease of PVC ${plan.source.namespace}/${plan.source.pvc} while renewing it: this copy was stopped`);
    throw err;
  }
}

/** Deletes the Lease if this transfer still holds it (never another transfer's). */
async function releaseLease(d: Pick<TransferDeps, 'source' | 'holder'>, plan: TransferPlan): Promise<void> {
  const path = leasePath(plan.source.namespace, leaseName(plan.source.pvc));
  const l = await getOrUndefined<LeaseObject>(d.source, path);
  if (!l || l.spec?.holderIdentity !== holderOf(d, plan)) return;
  try {
    await d.source.request('DELETE', path, { apiVersion: 'v1', kind: 'DeleteOptions', preconditions: { resourceVersion: l.metadata.resourceVersion } }, 'application/json');
  } catch (err) {
    if (!(err instanceof KubeApiError && (err.status === 404 || err.status === 409))) throw err;
  }
}

async function operationPods(client: KubeClient, namespace: string, opId: string, signal?: AbortSignal): Promise<PodLike[]> {
  return (await client.list(`/api/v1/namespaces/${encodeURIComponent(namespace)}/pods`, { labelSelector: `${OPERATION_LABEL}=${opId}` }, 500, signal)).items as unknown as PodLike[];
}

function podProblem(p: PodLike): string | undefined {
  const cs = p.status?.containerStatuses?.[0]?.state;
  const w = cs?.waiting;
  if (w?.reason && /ErrImage|ImagePull|CreateContainer|InvalidImageName|CrashLoop/.test(w.reason)) return `${w.reason}: ${w.message ?? ''}`.trim();
  if (p.status?.phase === 'Failed') return `the pod failed${cs?.terminated ? ` (exit ${cs.terminated.exitCode}${cs.terminated.reason ? `, ${cs.terminated.reason}` : ''})` : ''}`;
  return undefined;
}

/**
 * Why the Job controller cannot create an operation pod, from its FailedCreate Events: without a
 * pod there is nothing else to read, and a copy would only time out. `permanent` when admission
 * refused the pod for what it is (Pod Security: a namespace enforcing "restricted"), which no
 * retry changes; other causes (a quota) may pass, and are only reported.
 */
interface CreateFailure { message: string; permanent: boolean }

async function podCreateFailure(client: KubeClient, ns: string, job: string, signal?: AbortSignal): Promise<CreateFailure | undefined> {
  let events: Array<{ message?: string; lastTimestamp?: string; eventTime?: string }>;
  try {
    events = (await client.list(`/api/v1/namespaces/${encodeURIComponent(ns)}/events`, {
      fieldSelector: `involvedObject.kind=Job,involvedObject.name=${job},reason=FailedCreate`,
    }, 50, signal)).items as typeof events;
  } catch (err) {
    if (signal?.aborted) throw err;
    return undefined; // a kubeconfig that may not list Events: the copy then waits and times out, as before
  }
  const last = events.sort((a, b) => (a.lastTimestamp ?? a.eventTime ?? '').localeCompare(b.lastTimestamp ?? b.eventTime ?? '')).at(-1);
  if (!last?.message) return undefined;
  const permanent = /forbidden: violates PodSecurity/.test(last.message);
  const hint = permanent
    ? `; the namespace's Pod Security level (label pod-security.kubernetes.io/enforce) must be baseline or privileged for dr-syncer's copy pods (docs/pvc-data.md, "Security")`
    : '';
  return { message: `cannot create its pod: ${last.message}${hint}`, permanent };
}

/** Polls podCreateFailure while a Job has no pod, a few seconds apart. */
function createFailureProbe(client: KubeClient, ns: string, job: string, pollMs: number): (signal?: AbortSignal) => Promise<CreateFailure | undefined> {
  let next = Date.now() + Math.max(2000, pollMs);
  return async (signal) => {
    if (Date.now() < next) return undefined;
    next = Date.now() + Math.max(5000, pollMs);
    return podCreateFailure(client, ns, job, signal);
  };
}

async function waitForEndpoint(d: TransferDeps, p: TransferPlan, signal?: AbortSignal): Promise<{ node: string; ip: string }> {
  const deadline = Date.now() + (d.podReadyTimeoutMs ?? 180_000);
  let last = 'no pod yet';
  const createFailure = createFailureProbe(d.source, p.source.namespace, operationName(p.opId), d.pollMs ?? 1000);
  for (;;) {
    const pod = (await operationPods(d.source, p.source.namespace, p.opId, signal))[0];
    if (!pod) {
      const why = await createFailure(signal);
      if (why?.permanent) throw new Stop('Failed', `rsync endpoint Job ${p.source.namespace}/${operationName(p.opId)} in ${fromCluster(d)} ${why.message}`);
      if (why) last = why.message;
    } else {
      if (podReady(pod) && pod.spec?.nodeName && pod.status?.podIP) return { node: pod.spec.nodeName, ip: pod.status.podIP };
      const problem = podProblem(pod);
      if (problem) throw new Stop('Failed', `rsync endpoint pod ${pod.metadata.name} in ${fromCluster(d)}: ${problem}`);
      const unscheduled = pod.status?.conditions?.find((c) => c.type === 'PodScheduled' && c.status === 'False');
      last = unscheduled ? `not scheduled: ${unscheduled.message ?? unscheduled.reason ?? ''}` : `${pod.status?.phase ?? 'Pending'}, not ready`;
    }
    if (Date.now() > deadline) throw new Stop('Failed', `rsync endpoint for PVC ${p.source.namespace}/${p.source.pvc} in ${fromCluster(d)} was not ready within ${Math.round((d.podReadyTimeoutMs ?? 180_000) / 1000)}s: ${last}`);
    await delay(d.pollMs ?? 1000, undefined, { signal });
  }
}

async function waitForRsync(d: TransferDeps, p: TransferPlan, signal?: AbortSignal): Promise<{ exitCode: number; log: string }> {
  const ns = p.destination.namespace;
  const jobPath = `/apis/batch/v1/namespaces/${encodeURIComponent(ns)}/jobs/${operationName(p.opId)}`;
  let lastRenew = Date.now();
  const createFailure = createFailureProbe(d.destination, ns, operationName(p.opId), d.pollMs ?? 1000);
  for (;;) {
    if (Date.now() - lastRenew > (LEASE_SECONDS * 1000) / 3) {
      await renewLease(d, p, signal);
      lastRenew = Date.now();
    }
    const pod = (await operationPods(d.destination, ns, p.opId, signal))[0];
    if (!pod) {
      const why = await createFailure(signal);
      if (why?.permanent) throw new Stop('Failed', `rsync Job ${ns}/${operationName(p.opId)} in ${toCluster(d)} ${why.message}`);
    }
    const term = pod?.status?.containerStatuses?.[0]?.state?.terminated;
    if (pod && term) return { exitCode: term.exitCode, log: await podLog(d.destination, ns, pod.metadata.name, signal) };
    const problem = pod && podProblem(pod);
    if (problem) throw new Stop('Failed', `rsync pod ${pod.metadata.name} in ${toCluster(d)}: ${problem}`);
    const job = await getOrUndefined<{ status?: { conditions?: { type: string; status: string; reason?: string; message?: string }[] } }>(d.destination, jobPath, signal);
    if (!job) throw new Stop('Failed', `rsync Job ${ns}/${operationName(p.opId)} in ${toCluster(d)} was deleted while it ran`);
    const failed = job.status?.conditions?.find((c) => (c.type === 'Failed' || c.type === 'FailureTarget') && c.status === 'True');
    if (failed && !pod?.status?.containerStatuses?.[0]?.state?.running) {
      const why = failed.reason === 'DeadlineExceeded' ? `timed out after ${p.timeoutSeconds}s (spec.pvc.dataSync.timeout)` : `${failed.reason ?? 'failed'}: ${failed.message ?? ''}`;
      throw new Stop('Failed', `rsync Job ${ns}/${operationName(p.opId)} in ${toCluster(d)} ${why}`);
    }
    await delay(d.pollMs ?? 1000, undefined, { signal });
  }
}

async function podLog(client: KubeClient, ns: string, pod: string, signal?: AbortSignal): Promise<string> {
  const res = await client.raw('GET', `/api/v1/namespaces/${encodeURIComponent(ns)}/pods/${encodeURIComponent(pod)}/log?container=rsync&limitBytes=1048576`, undefined, 'application/json', signal);
  const chunks: Buffer[] = [];
  for await (const c of res) chunks.push(c as Buffer);
  const text = Buffer.concat(chunks).toString('utf8');
  if ((res.statusCode ?? 0) >= 400) return `(log unavailable: ${res.statusCode ?? 0} ${text.slice(0, 200)})`;
  return text;
}

/**
 * Removes what earlier transfers of this Replication left behind (a crash, a lost leader): the
 * Jobs labelled with its uid in both clusters (their pods and Secrets go with them), its PVC
 * Leases, and agent targets whose endpoint Job no longer exists. Called only when no transfer
 * of this Replication runs (the work queue never runs one key twice at once).
 */
export async function sweep(d: Pick<TransferDeps, 'source' | 'destination' | 'agent' | 'log'>, replicationUid: string, signal?: AbortSignal): Promise<number> {
  let removed = 0;
  for (const client of new Set([d.source, d.destination])) {
    const jobs = await client.list('/apis/batch/v1/jobs', { labelSelector: `${REPLICATION_UID_LABEL}=${replicationUid}` }, 500, signal);
    for (const j of jobs.items) {
      await deleteIfExists(client, objectPath({ ...j, apiVersion: 'batch/v1', kind: 'Job' }), signal);
      removed++;
    }
  }
  // Its Leases too: held by a transfer that no longer runs (a crashed controller), they would
  // keep the PVC locked until they expire.
  const leases = await d.source.list('/apis/coordination.k8s.io/v1/leases', { labelSelector: `${REPLICATION_UID_LABEL}=${replicationUid}` }, 500, signal);
  for (const l of leases.items) {
    await deleteIfExists(d.source, leasePath(l.metadata.namespace ?? '', l.metadata.name), signal);
    removed++;
  }
  const ops = await registeredTargets(d.source, d.agent.namespace, signal);
  if (ops.length > 0) {
    const live = new Set(
      (await d.source.list('/apis/batch/v1/jobs', { labelSelector: OPERATION_LABEL }, 500, signal)).items.map((j) => j.metadata.labels?.[OPERATION_LABEL] ?? ''),
    );
    const stale = ops.filter((id) => !live.has(id));
    await unregisterTargets(d.source, d.agent.namespace, stale, signal);
    removed += stale.length;
  }
  if (removed > 0) d.log.info({ removed }, 'removed what earlier transfers left behind');
  return removed;
}

/** The per-PVC Lease's steps, for tests of its failure paths (taken over, lost, released by another). */
export const pvcLease = { acquire: acquireLease, renew: renewLease, release: releaseLease, name: leaseName };
