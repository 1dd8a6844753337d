// `dr-syncer controller`: the operator, as the container runs it.
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { CONTROLLER_KUBE_API, DEFAULT_AGENT_IMAGE, startManager } from '../manager.ts';
import { createLogger } from '../util/log.ts';

export const CONTROLLER_HELP = `Usage: dr-syncer controller [options]

Runs the dr-syncer operator: watches RemoteClusters and Replications and keeps the DR
repositories in sync. Every option also reads an environment variable (shown in brackets).

Options:
      --kubeconfig <path>                  cluster the controller runs in [KUBECONFIG]; default in-cluster
      --metrics-bind-address <host:port>   Prometheus /metrics [METRICS_ADDR] (default :8080)
      --health-probe-bind-address <addr>   /healthz and /readyz [PROBE_ADDR] (default :8081)
      --leader-elect                       elect a leader through a Lease [ENABLE_LEADER_ELECTION=true]
      --leader-election-namespace <ns>     namespace of the Lease [LEADER_ELECTION_NAMESPACE, POD_NAMESPACE] (default dr-syncer)
      --leader-election-id <name>          name of the Lease [LEADER_ELECTION_ID] (default dr-syncer.io)
      --workers <n>                        concurrent Replication syncs [WORKERS] (default 4)
      --namespace <ns>                     only this namespace's resources [WATCH_NAMESPACE] (default all)
      --cluster-name <name>                name recorded for the local source cluster [CLUSTER_NAME] (default local)
      --cache-dir <dir>                    Git caches [CACHE_DIR] (default ~/.cache/dr-syncer)
      --kube-api-qps <n>                   client-side requests per second to each cluster [KUBE_API_QPS] (default 20)
      --kube-api-burst <n>                 client-side burst to each cluster [KUBE_API_BURST] (default 30)
      --kube-api-timeout <seconds>         timeout of each Kubernetes request, watches excepted [KUBE_API_TIMEOUT] (default 30)
      --agent-image <image>                PVC-sync agent image for RemoteClusters that do not set pvcSync.image
                                           [AGENT_IMAGE] (default ${DEFAULT_AGENT_IMAGE})
      --agent-image-pull-policy <policy>   Always|IfNotPresent|Never for the agent and rsync pods [AGENT_IMAGE_PULL_POLICY]
      --agent-pod-env <NAME=value>         extra environment for the agent pods, repeatable; only for clusters whose pods
                                           cannot reach the API through the kubernetes Service (no kube-proxy)
      --max-concurrent-transfers <n>       PVC data transfers at once, all Replications together [MAX_CONCURRENT_TRANSFERS] (default 4)
      --log-level <level>                  fatal|error|warn|info|debug|trace [LOG_LEVEL] (default info)
  -h, --help                               this help`;

export async function runControllerCommand(argv: string[]): Promise<number> {
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
      log,
    });
  } catch (err) {
    // Nothing may keep running after a failed start: the caller exits non-zero.
    console.error(`dr-syncer controller: ${err instanceof Error ? err.message : String(err)}`);
    return 1;
  }
  const running = mgr;
  log.info({ metricsPort: running.metricsPort, probePort: running.probePort }, 'dr-syncer controller started');
  await new Promise<void>((resolve) => {
    const stop = (sig: string) => {
      log.info({ signal: sig }, 'shutting down');
      void running.stop().then(resolve);
    };
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
  });
  return 0;
}
