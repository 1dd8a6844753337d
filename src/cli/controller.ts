// `dr-syncer controller`: the operator, as the container runs it.
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { CONTROLLER_KUBE_API, DEFAULT_AGENT_IMAGE, startManager } from '../manager.ts';
import { createLogger } from '../util/log.ts';
import { CONTROLLER_HELP } from './controller-help.ts';
import type { PvcSync } from '../api/v1alpha1/index.ts';

/** inLocalRun: called by --local's wrapper (src/cli/local-run.ts), which already scaled the in-cluster controller down. */
export async function runControllerCommand(argv: string[], inLocalRun = false): Promise<number> {
  let v;
  try {
    v = parseArgs({
      args: argv,
      options: {
        kubeconfig: { type: 'string' },
        'metrics-bind-address': { type: 'string' },
        'health-probe-bind-address': { type: 'string' },
        'leader-elect': { type: 'boolean' },
        'leader-election-namespace': { type: 'string' },
        'leader-election-id': { type: 'string' },
        workers: { type: 'string' },
        namespace: { type: 'string' },
        'cluster-name': { type: 'string' },
        'cache-dir': { type: 'string' },
        'kube-api-qps': { type: 'string' },
        'kube-api-burst': { type: 'string' },
        'kube-api-timeout': { type: 'string' },
        'agent-image': { type: 'string' },
        'agent-image-pull-policy': { type: 'string' },
        'agent-pod-env': { type: 'string', multiple: true },
        'max-concurrent-transfers': { type: 'string' },
        'local-pvc-sync': { type: 'string' },
        local: { type: 'boolean' },
        'local-namespace': { type: 'string' },
        'local-restore': { type: 'boolean' },
        'log-level': { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
      strict: true,
    }).values;
  } catch (err) {
    console.error(`${err instanceof Error ? err.message : String(err)}\n\n${CONTROLLER_HELP}`);
    return 2;
  }
  if (v.help) {
    console.log(CONTROLLER_HELP);
    return 0;
  }
  const env = process.env;
  const workers = Number(v.workers ?? env.WORKERS ?? 4);
  if (!Number.isInteger(workers) || workers < 1) {
    console.error(`--workers must be a positive integer, got "${v.workers ?? env.WORKERS}"`);
    return 2;
  }
  const transfers = Number(v['max-concurrent-transfers'] ?? env.MAX_CONCURRENT_TRANSFERS ?? 4);
  if (!Number.isInteger(transfers) || transfers < 1) {
    console.error(`--max-concurrent-transfers must be a positive integer, got "${v['max-concurrent-transfers'] ?? env.MAX_CONCURRENT_TRANSFERS}"`);
    return 2;
  }
  const pullPolicy = v['agent-image-pull-policy'] ?? (env.AGENT_IMAGE_PULL_POLICY || undefined);
  if (pullPolicy !== undefined && !['Always', 'IfNotPresent', 'Never'].includes(pullPolicy)) {
    console.error(`--agent-image-pull-policy must be Always, IfNotPresent or Never, got "${pullPolicy}"`);
    return 2;
  }
  const podEnv: { name: string; value: string }[] = [];
  for (const e of v['agent-pod-env'] ?? []) {
    const m = /^([A-Za-z_][A-Za-z0-9_]*)=(.*)$/s.exec(e);
    if (!m) {
      console.error(`--agent-pod-env must be NAME=value, got "${e}"`);
      return 2;
    }
    podEnv.push({ name: m[1]!, value: m[2]! });
  }
  const localFile = v['local-pvc-sync'] ?? (env.LOCAL_PVC_SYNC || undefined);
  let localPvcSync: PvcSync | undefined;
  if (localFile !== undefined) {
    const r = await readLocalPvcSync(localFile);
    if (!r.ok) {
      console.error(`--local-pvc-sync ${localFile}: ${r.errors.join('; ')}`);
      return 2;
    }
    localPvcSync = r.value;
  }
  const d = CONTROLLER_KUBE_API;
  const numbers = {
    'kube-api-qps': [v['kube-api-qps'] ?? env.KUBE_API_QPS, d.qps], 'kube-api-burst': [v['kube-api-burst'] ?? env.KUBE_API_BURST, d.burst],
    'kube-api-timeout': [v['kube-api-timeout'] ?? env.KUBE_API_TIMEOUT, d.timeoutMs / 1000],
  } as const;
  const n: Record<string, number> = {};
  for (const [flag, [value, fallback]] of Object.entries(numbers)) {
    n[flag] = Number(value ?? fallback);
    if (!Number.isFinite(n[flag]) || n[flag] <= 0) {
      console.error(`--${flag} must be a positive number, got "${value}"`);
      return 2;
    }
  }
  const log = createLogger({ level: v['log-level'] ?? env.LOG_LEVEL ?? 'info' });
  if ((v.local || v['local-restore']) && !inLocalRun) {
    const { runLocal } = await import('./local-run.ts');
    const localRun = { kubeconfig: v.kubeconfig ?? (env.KUBECONFIG || undefined), namespace: v['local-namespace'] ?? (env.LOCAL_NAMESPACE || 'dr-syncer'), log };
    if (v['local-restore']) return runLocal({ ...localRun, restoreOnly: true }, () => Promise.resolve(0));
    if (!(v['leader-elect'] ?? env.ENABLE_LEADER_ELECTION === 'true')) log.warn('--local without --leader-elect: nothing but the scale-down keeps the in-cluster controller from working alongside');
    return runLocal(localRun, () => runControllerCommand(argv, true));
  }
  // Signals count from before the start: one that comes while the manager starts stops it once it has.
  const signalled = new Promise<string>((resolve) => {
    process.once('SIGTERM', () => resolve('SIGTERM'));
    process.once('SIGINT', () => resolve('SIGINT'));
  });
  let mgr;
  try {
    mgr = await startManager({
      kubeconfig: v.kubeconfig ?? (env.KUBECONFIG || undefined),
      metricsAddress: v['metrics-bind-address'] ?? env.METRICS_ADDR ?? ':8080',
      probeAddress: v['health-probe-bind-address'] ?? env.PROBE_ADDR ?? ':8081',
      leaderElect: v['leader-elect'] ?? env.ENABLE_LEADER_ELECTION === 'true',
      leaderElectionNamespace: v['leader-election-namespace'] ?? env.LEADER_ELECTION_NAMESPACE ?? env.POD_NAMESPACE ?? 'dr-syncer',
      leaderElectionId: v['leader-election-id'] ?? env.LEADER_ELECTION_ID ?? 'dr-syncer.io',
      workers,
      namespace: v.namespace ?? (env.WATCH_NAMESPACE || undefined),
      cacheDir: v['cache-dir'] ?? env.CACHE_DIR ?? path.join(os.homedir(), '.cache', 'dr-syncer'),
      clusterName: v['cluster-name'] ?? env.CLUSTER_NAME ?? 'local',
      kubeClient: { qps: n['kube-api-qps'], burst: n['kube-api-burst'], timeoutMs: n['kube-api-timeout']! * 1000 },
      agent: {
        image: v['agent-image'] ?? (env.AGENT_IMAGE || DEFAULT_AGENT_IMAGE),
        ...(pullPolicy ? { imagePullPolicy: pullPolicy } : {}),
        ...(podEnv.length ? { podEnv } : {}),
      },
      maxConcurrentTransfers: transfers,
      ...(localPvcSync ? { localPvcSync } : {}),
      log,
    });
  } catch (err) {
    // Nothing may keep running after a failed start: the caller exits non-zero.
    console.error(`dr-syncer controller: ${err instanceof Error ? err.message : String(err)}`);
    return 1;
  }
  const running = mgr;
  log.info({ metricsPort: running.metricsPort, probePort: running.probePort }, 'dr-syncer controller started');
  log.info({ signal: await signalled }, 'shutting down');
  await running.stop();
  return 0;
}

/** The --local-pvc-sync file, validated with RemoteCluster.spec.pvcSync's rules. */
async function readLocalPvcSync(file: string): Promise<{ ok: true; value: PvcSync } | { ok: false; errors: string[] }> {
  const [{ readFile }, { parse }, { validatePvcSync }] = await Promise.all([import('node:fs/promises'), import('yaml'), import('../api/v1alpha1/index.ts')]);
  let doc: unknown;
  try {
    doc = parse(await readFile(file, 'utf8'));
  } catch (err) {
    return { ok: false, errors: [err instanceof Error ? err.message : String(err)] };
  }
  return validatePvcSync(doc ?? {});
}
