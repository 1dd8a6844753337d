// Argo CD's application controller and repo server (built by build-argocd.sh), with its in-process
// redis role, running as child processes against a test cluster from cluster.ts: the GitOps loop
// with the real thing, as flux.ts does for Flux. No Deployments, no API server or UI; the
// controller treats https://kubernetes.default.svc as the cluster's kubeconfig. Loopback ports
// only (the controller's metrics bind all interfaces: a free port per run); stopped by PID.
import type { ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { runBuildScript } from './build.ts';
import type { TestCluster } from './cluster.ts';
import { kubectl } from './cluster.ts';
import { exited, freePort, httpStatus, killAndWait, logTail, sleep, spawnOwned } from './flux.ts';

export const ARGOCD_NAMESPACE = 'argocd';
const HERE = path.dirname(fileURLToPath(import.meta.url));
const BUILD_SCRIPT = path.join(HERE, 'build-argocd.sh');
const READY_TIMEOUT_MS = 60_000;

export interface ArgoCd {
  logs: { redis: string; repoServer: string; controller: string };
  /** Asks for an immediate refresh of an Application (argocd.argoproj.io/refresh=normal). */
  refresh(name: string): Promise<void>;
  /** Kills the three processes by PID and removes the run's temp folder. */
  stop(): Promise<void>;
}

let binPromise: Promise<string> | undefined;

/** Runs build-argocd.sh once per process; it prints the bin folder. */
export function argocdBinDir(): Promise<string> {
  binPromise ??= runBuildScript(BUILD_SCRIPT, (out) => out.trim().split('\n').pop() || undefined).catch((err: unknown) => {
    binPromise = undefined;
    throw err;
  });
  return binPromise;
}

function tcpOpen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port }, () => {
      s.destroy();
      resolve(true);
    });
    s.on('error', () => resolve(false));
  });
}

const ARGOCD_OBJECTS = `
apiVersion: v1
kind: Namespace
metadata: {name: ${ARGOCD_NAMESPACE}}
---
# Only settings labelled as Argo CD's own are read. A short reconciliation timeout: tests see a
# new commit within seconds.
apiVersion: v1
kind: ConfigMap
metadata: {name: argocd-cm, namespace: ${ARGOCD_NAMESPACE}, labels: {app.kubernetes.io/part-of: argocd}}
data: {timeout.reconciliation: 10s}
---
apiVersion: v1
kind: Secret
metadata: {name: argocd-secret, namespace: ${ARGOCD_NAMESPACE}, labels: {app.kubernetes.io/part-of: argocd}}
type: Opaque
---
# Normally made by argocd-server, which the tests do not run.
apiVersion: argoproj.io/v1alpha1
kind: AppProject
metadata: {name: default, namespace: ${ARGOCD_NAMESPACE}}
spec:
  sourceRepos: ['*']
  destinations: [{server: '*', namespace: '*'}]
  clusterResourceWhitelist: [{group: '*', kind: '*'}]
`;

/**
 * Installs the Application and AppProject CRDs, the argocd namespace and its settings into
 * `cluster`, and starts redis, the repo server and the application controller against it.
 * Stop it before the cluster.
 */
export async function startArgoCd(cluster: TestCluster): Promise<ArgoCd> {
  const bin = await argocdBinDir();
  const kc = cluster.kubeconfigPath;
  // The Application CRD is over 256 KB: client-side apply cannot store it in an annotation.
  await kubectl(kc, ['apply', '--server-side', '--field-manager=dr-syncer-testenv', '-f', path.join(bin, 'crds')]);
  // `kubectl wait` fails outright while a new CRD has no status.conditions yet: retry it.
  for (let i = 0; ; i++) {
    const r = await kubectl(kc, ['wait', '--for=condition=Established', '--timeout=60s', 'crd', 'applications.argoproj.io', 'appprojects.argoproj.io'], { check: i >= 20 });
    if (r.code === 0) break;
    await sleep(500);
  }
  await kubectl(kc, ['apply', '--server-side', '--field-manager=dr-syncer-testenv', '-f', '-'], { input: ARGOCD_OBJECTS });

  // A short path: the askpass socket's path must fit a unix socket address (108 bytes).
  const work = await mkdtemp(path.join(os.tmpdir(), 'drs-argocd-'));
  const [redisPort, repoPort, repoMetrics, ctlMetrics] = [await freePort(), await freePort(), await freePort(), await freePort()];
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    // The repo server runs `argocd` (askpass), `kustomize` and git-verify-wrapper.sh by name.
    PATH: `${bin}${path.delimiter}${process.env.PATH ?? ''}`,
    HOME: work,
    TMPDIR: work,
    KUBECONFIG: kc,
    ARGOCD_GPG_ENABLED: 'false',
    ARGOCD_ASK_PASS_SOCK: path.join(work, 'askpass.sock'),
    ARGOCD_TLS_DATA_PATH: path.join(work, 'tls'),
    ARGOCD_SSH_DATA_PATH: path.join(work, 'ssh'),
    ARGOCD_PLUGINSOCKFILEPATH: path.join(work, 'plugins'),
    // https://kubernetes.default.svc means KUBECONFIG's cluster.
    ARGOCD_FAKE_IN_CLUSTER: 'true',
  };
  const logs = {
    redis: path.join(cluster.dir, 'argocd-redis.log'),
    repoServer: path.join(cluster.dir, 'argocd-repo-server.log'),
    controller: path.join(cluster.dir, 'argocd-application-controller.log'),
  };
  const argocd = path.join(bin, 'argocd');
  const children: ChildProcess[] = [];
  const launch = async (role: string, log: string, args: string[]): Promise<ChildProcess> => {
    const child = await spawnOwned(argocd, args, { cwd: work, env: { ...env, ARGOCD_BINARY_NAME: role }, log });
    children.push(child);
    return child;
  };
  const waitFor = async (child: ChildProcess, name: string, log: string, ready: () => Promise<boolean>): Promise<void> => {
    const deadline = Date.now() + READY_TIMEOUT_MS;
    for (;;) {
      if (await ready()) return;
      if (exited(child)) throw new Error(`${name} exited (${child.exitCode ?? child.signalCode}); ${log}:\n${await logTail(log)}`);
      if (Date.now() > deadline) throw new Error(`${name} not ready after ${READY_TIMEOUT_MS / 1000}s; ${log}:\n${await logTail(log)}`);
      await sleep(200);
    }
  };

  const redis = `127.0.0.1:${redisPort}`;
  try {
    const r = await launch('argocd-redis', logs.redis, ['--addr', redis]);
    await waitFor(r, 'redis', logs.redis, () => tcpOpen(redisPort));
    const repo = await launch('argocd-repo-server', logs.repoServer, [
      '--address', '127.0.0.1', '--port', String(repoPort),
      '--metrics-address', '127.0.0.1', '--metrics-port', String(repoMetrics),
      '--redis', redis,
      // v3.6 refuses --disable-tls while a client CA path is set (it has a default).
      '--disable-tls', '--client-ca-path=',
      '--loglevel', 'debug',
    ]);
    const ctl = await launch('argocd-application-controller', logs.controller, [
      '--namespace', ARGOCD_NAMESPACE,
      '--repo-server', `127.0.0.1:${repoPort}`, '--repo-server-plaintext',
      '--redis', redis,
      '--metrics-port', String(ctlMetrics),
      '--app-resync', '10',
      '--loglevel', 'debug',
    ]);
    await Promise.all([
      waitFor(repo, 'argocd-repo-server', logs.repoServer, () => tcpOpen(repoPort)),
      waitFor(ctl, 'argocd-application-controller', logs.controller, async () => (await httpStatus(`http://127.0.0.1:${ctlMetrics}/metrics`)) === 200),
    ]);
  } catch (err) {
    await killAndWait(children);
    await rm(work, { recursive: true, force: true });
    throw err;
  }

  let stopped: Promise<void> | undefined;
  return {
    logs,
    stop: () =>
      (stopped ??= (async () => {
        await killAndWait(children);
        await rm(work, { recursive: true, force: true });
      })()),
    async refresh(name) {
      await kubectl(kc, ['annotate', '--overwrite', '-n', ARGOCD_NAMESPACE, 'applications.argoproj.io', name, 'argocd.argoproj.io/refresh=normal']);
    },
  };
}
