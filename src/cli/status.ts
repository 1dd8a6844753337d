// `dr-syncer status`: the Replications and their measured recovery point, computed live with the
// controller's own code (controllers/readiness.ts measure()): every DR cluster is asked in
// parallel, with a short timeout; a DR cluster that cannot be asked from here falls back to the
// controller's last measurement in status.recoveryPoint.
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import type { KubeClient } from '../adapters/kube/client.ts';
import type { RemoteCluster, Replication } from '../api/v1alpha1/index.ts';
import type { AppliedState } from '../core/recovery.ts';
import { formatAge } from '../core/recovery.ts';
import type { GitOpsObjects } from '../gitops/applied.ts';
import type { Measured } from '../controllers/readiness.ts';
import type { GitTarget } from '../sync/spec.ts';
import { STATUS_HELP } from './status-help.ts';
import { CLUSTER_OPTIONS, CommandError, ControllerCluster, ReplicationContext } from './replication-context.ts';
import { errorMessage as message } from '../util/errors.ts';

const DURATION = /^(\d+(\.\d+)?(ms|s|m|h))+$/;

export interface StatusRow {
  namespace: string;
  name: string;
  mode: string;
  paused: boolean;
  lastSyncTime?: string;
  lastCommit?: string;
  appliedCommit?: string;
  appliedBy?: string;
  objectsTime?: string;
  objectsAgeSeconds?: number;
  dataTime?: string;
  dataAgeSeconds?: number;
  objective: string;
  objectiveSeconds: number;
  verdict: 'Ready' | 'NotReady' | 'Unknown';
  reason?: string;
  /** live: read from the DR cluster now; status: the controller's status.recoveryPoint. */
  source: 'live' | 'status';
  /** Why the DR cluster was not read live (source status). */
  fallbackReason?: string;
  /** When the controller last asked the DR cluster (source status). */
  checkedTime?: string;
}

export async function runStatusCommand(argv: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      strict: true,
      options: {
        ...CLUSTER_OPTIONS,
        'max-age': { type: 'string' },
        timeout: { type: 'string', default: '3s' },
        'cache-dir': { type: 'string' },
        json: { type: 'boolean', default: false },
        help: { type: 'boolean', short: 'h', default: false },
      },
    });
  } catch (err) {
    console.error(`${message(err)}\n\n${STATUS_HELP}`);
    return 2;
  }
  const { values: args, positionals } = parsed;
  if (args.help) {
    console.log(STATUS_HELP);
    return 0;
  }
  for (const [flag, v] of [['--max-age', args['max-age']], ['--timeout', args.timeout]] as const) {
    if (v !== undefined && (!DURATION.test(v) || durationMs(v) <= 0)) {
      console.error(`${flag} ${v}: not a duration (for example 90s, 15m, 2h or 1h30m)`);
      return 2;
    }
  }
  try {
    const cluster = await ControllerCluster.connect({ namespace: args.namespace, kubeconfig: args.kubeconfig, context: args.context });
    const rows = await statusRows(cluster, positionals, {
      maxAgeMs: args['max-age'] !== undefined ? durationMs(args['max-age']) : undefined,
      timeoutMs: durationMs(args.timeout),
      cacheDir: args['cache-dir'] ?? path.join(os.homedir(), '.cache', 'dr-syncer', 'git'),
    });
    if (args.json) console.log(JSON.stringify({ replications: rows }, null, 2));
    else printTable(rows, cluster.namespace);
    return rows.every((r) => r.verdict === 'Ready') ? 0 : 1;
  } catch (err) {
    if (err instanceof CommandError) {
      console.error(err.message);
      return err.exitCode === 2 ? 2 : 3;
    }
    throw err;
  }
}

function durationMs(d: string): number {
  let ms = 0;
  for (const m of d.matchAll(/(\d+(?:\.\d+)?)(ms|s|m|h)/g)) ms += Number(m[1]) * { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[m[2] as 'ms' | 's' | 'm' | 'h'];
  return ms;
}

interface Options {
  maxAgeMs?: number;
  timeoutMs: number;
  cacheDir: string;
}

/** The rows, every DR cluster read once and all of them in parallel. */
export async function statusRows(cluster: ControllerCluster, names: string[], o: Options): Promise<StatusRow[]> {
  const readiness = await import('../controllers/readiness.ts');
  let reps = await cluster.replications();
  if (names.length) {
    const known = new Set(reps.map((r) => r.metadata.name));
    const missing = names.filter((n) => !known.has(n));
    if (missing.length) {
      throw new CommandError(`Replication ${missing.map((n) => `${cluster.namespace}/${n}`).join(', ')} does not exist in ${cluster.client.describe()} (kubectl -n ${cluster.namespace} get replications lists them; -n sets the namespace)`, 2);
    }
    reps = reps.filter((r) => names.includes(r.metadata.name));
  }
  // The RemoteClusters named as destinations, and one read of each DR cluster's GitOps objects.
  const rcNames = [...new Set(reps.map((r) => r.spec.destinationCluster).filter((n): n is string => n !== undefined))];
  const remoteClusters = new Map<string, RemoteCluster | undefined>();
  await Promise.all(rcNames.map(async (n) => {
    try {
      remoteClusters.set(n, await cluster.remoteCluster(n, 'spec.destinationCluster'));
    } catch (err) {
      if (!(err instanceof CommandError && err.exitCode === 2)) throw err;
      remoteClusters.set(n, undefined);
    }
  }));
  const drReads = new Map<string, Promise<GitOpsObjects | { error: string }>>();
  for (const [n, rc] of remoteClusters) {
    if (!rc) continue;
    drReads.set(n, (async () => {
      let dr: KubeClient;
      try {
        dr = await cluster.clusterClient(rc);
      } catch (err) {
        return { error: `its kubeconfig Secret cannot be used from here: ${message(err)}` };
      }
      return readiness.readDr(dr, o.timeoutMs);
    })());
  }

  const now = new Date();
  return Promise.all(reps.map(async (rep): Promise<StatusRow> => {
    const ns = rep.metadata.namespace ?? cluster.namespace;
    const destName = rep.spec.destinationCluster;
    const destination = destName ? remoteClusters.get(destName) : undefined;
    const folder = readiness.folderOf(rep, destination);
    let applied: AppliedState;
    let source: StatusRow['source'] = 'live';
    let fallbackReason: string | undefined;
    if (folder instanceof Error) applied = { kind: 'unknown', reason: folder.message };
    else if (!destName) applied = { kind: 'unknown', reason: 'no spec.destinationCluster: there is no kubeconfig for the DR cluster, so what it has applied is not known' };
    else if (!destination) applied = { kind: 'unknown', reason: `spec.destinationCluster: RemoteCluster ${ns}/${destName} does not exist` };
    else {
      const objects = await drReads.get(destName)!;
      if ('error' in objects) {
        source = 'status';
        fallbackReason = `DR cluster ${destName}: ${objects.error}`;
        applied = fromStatus(rep);
      } else {
        applied = readiness.appliedState(objects, folder);
      }
    }
    const objectiveMs = o.maxAgeMs ?? readiness.objectiveOf(rep);
    const m: Measured = await readiness.measure({
      rep, applied, now, objectiveMs,
      ancestry: async (commit, candidates) => {
        const repo = await new ReplicationContext(cluster, rep, folder as GitTarget, destination).repo(o.cacheDir);
        return repo.exclusive(async () => {
          if (!(await repo.hasCommit(commit))) await repo.fetch();
          return repo.reachable(commit, candidates, 2000);
        });
      },
    });
    const age = (t?: Date) => (t ? Math.max(0, Math.round((now.getTime() - t.getTime()) / 1000)) : undefined);
    const rfc = (t?: Date) => t?.toISOString().replace(/\.\d{3}Z$/, 'Z');
    return {
      namespace: ns,
      name: rep.metadata.name,
      mode: rep.spec.mode ?? 'Scheduled',
      paused: rep.spec.paused === true,
      lastSyncTime: rep.status?.lastSyncTime,
      lastCommit: rep.status?.lastCommit,
      appliedCommit: m.appliedCommit,
      appliedBy: m.appliedBy,
      objectsTime: rfc(m.objectsTime),
      objectsAgeSeconds: age(m.objectsTime),
      dataTime: rfc(m.dataTime),
      dataAgeSeconds: age(m.dataTime),
      objective: formatAge(objectiveMs),
      objectiveSeconds: objectiveMs / 1000,
      verdict: m.verdict,
      ...(m.reason ? { reason: m.reason } : {}),
      source,
      ...(fallbackReason ? { fallbackReason, checkedTime: rep.status?.recoveryPoint?.checkedTime } : {}),
    };
  }));

  /** What the controller last saw the DR cluster apply. */
  function fromStatus(rep: Replication): AppliedState {
    const rp = rep.status?.recoveryPoint;
    if (rp?.appliedCommit) return { kind: 'applied', commit: rp.appliedCommit, by: rp.appliedBy ?? 'the GitOps tool' };
    if (rp?.appliedBy) return { kind: 'nothing-applied', by: rp.appliedBy };
    return { kind: 'unknown', reason: rp?.checkedTime ? `the controller could not tell either: ${rp.reason ?? 'no reason given'}` : 'the controller has not measured it yet (status.recoveryPoint is empty)' };
  }
}

function printTable(rows: StatusRow[], namespace: string): void {
  if (rows.length === 0) {
    console.log(`No Replications in namespace ${namespace}.`);
    return;
  }
  const now = Date.now();
  const fmt = (s?: number) => (s === undefined ? '-' : formatAgeSeconds(s));
  const header = ['NAME', 'MODE', 'LAST SYNC', 'LAST COMMIT', 'APPLIED', 'OBJECTS RP', 'DATA RP', 'VERDICT'];
  const lines = rows.map((r) => [
    r.name,
    r.paused ? `${r.mode} (paused)` : r.mode,
    r.lastSyncTime ? formatAgeSeconds(Math.max(0, Math.round((now - new Date(r.lastSyncTime).getTime()) / 1000))) : 'never',
    r.lastCommit?.slice(0, 12) ?? '-',
    (r.appliedCommit ? r.appliedCommit.slice(0, 12) : r.appliedBy ? '-' : 'unknown') + (r.source === 'status' ? '*' : ''),
    fmt(r.objectsAgeSeconds),
    fmt(r.dataAgeSeconds),
    r.verdict,
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...lines.map((l) => l[i]!.length)));
  const render = (cells: string[]) => cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]! + 2))).join('').trimEnd();
  console.log([render(header), ...lines.map(render)].join('\n'));
  const notes = rows.filter((r) => r.reason).map((r) => `${r.name} (${r.verdict}, objective ${r.objective}): ${r.reason}`);
  const fallbacks = rows.filter((r) => r.source === 'status').map((r) =>
    `* ${r.name}: from status.recoveryPoint${r.checkedTime ? ` (the controller checked ${formatAgeSeconds(Math.max(0, Math.round((now - new Date(r.checkedTime).getTime()) / 1000)))} ago)` : ''}, not read live: ${r.fallbackReason}`);
  if (notes.length) console.log(`\n${notes.join('\n')}`);
  if (fallbacks.length) console.log(`\n${fallbacks.join('\n')}`);
}

const formatAgeSeconds = (s: number): string => formatAge(s * 1000);
