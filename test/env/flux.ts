// Flux's source-controller and kustomize-controller (built by build-flux.sh) running as child
// processes against a test cluster from cluster.ts, so a test can close the GitOps loop with the
// real thing: Git server → GitRepository → Kustomization (with SOPS decryption) → DR cluster.
// No Deployments, no leader election, loopback ports only; processes are stopped by PID.
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
import { mkdir, open } from 'node:fs/promises';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { runBuildScript } from './build.ts';
import type { TestCluster } from './cluster.ts';
import { kubectl } from './cluster.ts';

export interface Flux {
  /** Log files of the two controllers (in the cluster dir). */
  logs: { sourceController: string; kustomizeController: string };
  /** Kills both controllers by PID (SIGTERM, then SIGKILL) and waits for them. */
  stop(): Promise<void>;
  /** Asks for an immediate reconcile: sets reconcile.fluxcd.io/requestedAt. */
  reconcile(kind: string, ns: string, name: string): Promise<void>;
}

export interface FluxBins {
  sourceController: string;
  sourceCrds: string;
  kustomizeController: string;
  kustomizeCrds: string;
}

const HERE = path.dirname(fileURLToPath(import.meta.url));
const BUILD_SCRIPT = path.join(HERE, 'build-flux.sh');
const READY_TIMEOUT_MS = 60_000;
const KILL_GRACE_MS = 5_000;
const NAMESPACE = 'flux-system';

/** kubectl resource names for the kinds a test reconciles; other values are passed as they are. */
const RESOURCES: Record<string, string> = {
  GitRepository: 'gitrepositories.source.toolkit.fluxcd.io',
  OCIRepository: 'ocirepositories.source.toolkit.fluxcd.io',
  HelmRepository: 'helmrepositories.source.toolkit.fluxcd.io',
  Bucket: 'buckets.source.toolkit.fluxcd.io',
  Kustomization: 'kustomizations.kustomize.toolkit.fluxcd.io',
};

// ---------------------------------------------------------------------------------------------
// Binaries

let binsPromise: Promise<FluxBins> | undefined;

/** Runs build-flux.sh once per process (a warm run only checks its markers). */
export function fluxBins(): Promise<FluxBins> {
  binsPromise ??= runBuildScript(BUILD_SCRIPT, parseFluxBins).catch((err: unknown) => {
    binsPromise = undefined;
    throw err;
  });
  return binsPromise;
}

/** build-flux.sh prints NAME=path lines; all four are needed. */
function parseFluxBins(stdout: string): FluxBins | undefined {
  const vars = new Map<string, string>();
  for (const line of stdout.split('\n')) {
    const m = /^([A-Z_]+)=(.+)$/.exec(line.trim());
    if (m) vars.set(m[1]!, m[2]!);
  }
  const get = (k: string): string => vars.get(k) ?? '';
  const bins: FluxBins = {
    sourceController: get('SOURCE_CONTROLLER'),
    sourceCrds: get('SOURCE_CRDS'),
    kustomizeController: get('KUSTOMIZE_CONTROLLER'),
    kustomizeCrds: get('KUSTOMIZE_CRDS'),
  };
  return Object.values(bins).some((v) => v === '') ? undefined : bins;
}

// ---------------------------------------------------------------------------------------------
// Processes

/** Controllers of this process, killed when it exits or is interrupted. */
const owned = new Map<number, ChildProcess>();
let handlersInstalled = false;

function installHandlers(): void {
  if (handlersInstalled) return;
  handlersInstalled = true;
  process.on('exit', () => {
    for (const pid of owned.keys()) signal(pid, 'SIGKILL');
  });
  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    // Prepended and one-shot: it runs before cluster.ts's handler, which re-raises the signal
    // only when it is the last listener left.
    const onSignal = (): void => {
      process.removeListener(sig, onSignal);
      for (const pid of owned.keys()) signal(pid, 'SIGKILL');
      owned.clear();
      if (process.listenerCount(sig) === 0) process.kill(process.pid, sig);
    };
    process.prependListener(sig, onSignal);
  }
}

function signal(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch {
    // already gone
  }
}

export const exited = (c: ChildProcess): boolean => c.exitCode !== null || c.signalCode !== null;

/** SIGTERM, then SIGKILL after a grace period; waits for every child to exit. */
export async function killAndWait(children: ChildProcess[]): Promise<void> {
  const waitAll = (ms: number): Promise<void> =>
    Promise.race([
      Promise.all(children.map((c) => (exited(c) ? undefined : new Promise((r) => c.once('exit', r))))).then(() => undefined),
      sleep(ms),
    ]);
  for (const c of children) if (!exited(c) && c.pid) signal(c.pid, 'SIGTERM');
  await waitAll(KILL_GRACE_MS);
  for (const c of children) if (!exited(c) && c.pid) signal(c.pid, 'SIGKILL');
  await waitAll(KILL_GRACE_MS);
}

/**
 * Starts `bin` with stdout and stderr appended to `log`; the child is killed by PID when this
 * process exits or is interrupted (also used by argocd.ts).
 */
export async function spawnOwned(bin: string, args: string[], opts: { cwd: string; env: NodeJS.ProcessEnv; log: string }): Promise<ChildProcess> {
  installHandlers();
  const fd = openSync(opts.log, 'a');
  let child: ChildProcess;
  try {
    child = spawn(bin, args, { cwd: opts.cwd, env: opts.env, stdio: ['ignore', fd, fd] });
  } finally {
    closeSync(fd);
  }
  const pid = await new Promise<number>((resolve, reject) => {
    child.once('spawn', () => resolve(child.pid as number));
    child.once('error', (e) => reject(new Error(`cannot start ${bin}: ${e.message}`)));
  });
  owned.set(pid, child);
  child.once('exit', () => owned.delete(pid));
  return child;
}

const handedOut = new Set<number>();

/** A free loopback port, never the same twice in this process. */
export async function freePort(): Promise<number> {
  for (;;) {
    const port = await new Promise<number>((resolve, reject) => {
      const srv = net.createServer();
      srv.once('error', reject);
      srv.listen(0, '127.0.0.1', () => {
        const addr = srv.address();
        srv.close(() => resolve(typeof addr === 'object' && addr ? addr.port : 0));
      });
    });
    if (port > 0 && !handedOut.has(port)) {
      handedOut.add(port);
      return port;
    }
  }
}

export function httpStatus(url: string): Promise<number> {
  return new Promise((resolve) => {
    const req = http.get(url, { agent: false, timeout: 2_000 }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(0));
  });
}

// ---------------------------------------------------------------------------------------------

/**
 * Installs Flux's CRDs and the flux-system namespace into `cluster` and starts source-controller
 * and kustomize-controller against it (admin kubeconfig, all namespaces). Stop it before the
 * cluster: its logs and storage live in the cluster dir.
 */
export async function startFlux(cluster: TestCluster): Promise<Flux> {
  const bins = await fluxBins();
  const kc = cluster.kubeconfigPath;
  await kubectl(kc, ['apply', '--server-side', '--field-manager=dr-syncer-testenv', '-f', bins.sourceCrds, '-f', bins.kustomizeCrds]);
  await kubectl(kc, ['wait', '--for=condition=Established', '--timeout=60s', 'crd', ...Object.values(RESOURCES)]);
  await kubectl(kc, ['apply', '--server-side', '--field-manager=dr-syncer-testenv', '-f', '-'], {
    input: `apiVersion: v1\nkind: Namespace\nmetadata: {name: ${NAMESPACE}}\n`,
  });

  const storage = path.join(cluster.dir, 'flux-storage');
  const tmp = path.join(cluster.dir, 'flux-tmp'); // git checkouts and SOPS scratch files
  await Promise.all([mkdir(storage, { recursive: true }), mkdir(tmp, { recursive: true })]);
  const [scMetrics, scHealth, scStorage, kcMetrics, kcHealth] = [
    await freePort(), await freePort(), await freePort(), await freePort(), await freePort(),
  ];
  const env = { ...process.env, KUBECONFIG: kc, RUNTIME_NAMESPACE: NAMESPACE, TMPDIR: tmp };

  const children: ChildProcess[] = [];
  const logs = {
    sourceController: path.join(cluster.dir, 'source-controller.log'),
    kustomizeController: path.join(cluster.dir, 'kustomize-controller.log'),
  };
  const launch = async (bin: string, log: string, args: string[]): Promise<ChildProcess> => {
    const child = await spawnOwned(bin, args, { cwd: cluster.dir, env, log });
    children.push(child);
    return child;
  };
  const waitReady = async (child: ChildProcess, name: string, log: string, healthPort: number): Promise<void> => {
    const deadline = Date.now() + READY_TIMEOUT_MS;
    for (;;) {
      if ((await httpStatus(`http://127.0.0.1:${healthPort}/readyz`)) === 200) return;
      if (exited(child)) throw new Error(`${name} exited (${child.exitCode ?? child.signalCode}); ${log}:\n${await logTail(log)}`);
      if (Date.now() > deadline) throw new Error(`${name} not ready after ${READY_TIMEOUT_MS / 1000}s; ${log}:\n${await logTail(log)}`);
      await sleep(200);
    }
  };

  try {
    const sc = await launch(bins.sourceController, logs.sourceController, [
      '--watch-all-namespaces',
      `--storage-path=${storage}`,
      // kustomize-controller downloads artifacts from the URL built from the advertised address.
      `--storage-addr=127.0.0.1:${scStorage}`,
      `--storage-adv-addr=127.0.0.1:${scStorage}`,
      `--metrics-addr=127.0.0.1:${scMetrics}`,
      `--health-addr=127.0.0.1:${scHealth}`,
      '--log-level=debug',
    ]);
    const kz = await launch(bins.kustomizeController, logs.kustomizeController, [
      '--watch-all-namespaces',
      '--no-remote-bases=true',
      `--metrics-addr=127.0.0.1:${kcMetrics}`,
      `--health-addr=127.0.0.1:${kcHealth}`,
      '--log-level=debug',
    ]);
    await Promise.all([
      waitReady(sc, 'source-controller', logs.sourceController, scHealth),
      waitReady(kz, 'kustomize-controller', logs.kustomizeController, kcHealth),
    ]);
  } catch (err) {
    await killAndWait(children);
    throw err;
  }

  let stopped: Promise<void> | undefined;
  return {
    logs,
    stop: () => (stopped ??= killAndWait(children)),
    async reconcile(kind, ns, name) {
      // Any new value differs from status.lastHandledReconcileAt, which is what triggers it.
      const at = `${new Date().toISOString()}-${process.hrtime.bigint()}`;
      await kubectl(kc, ['annotate', '--overwrite', '-n', ns, RESOURCES[kind] ?? kind, name, `reconcile.fluxcd.io/requestedAt=${at}`]);
    },
  };
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** The last lines of a log file (for error messages). */
export async function logTail(file: string, lines = 30): Promise<string> {
  try {
    const fh = await open(file, 'r');
    try {
      const { size } = await fh.stat();
      const len = Math.min(size, 32_768);
      const buf = Buffer.alloc(len);
      await fh.read(buf, 0, len, size - len);
      return buf.toString('utf8').trimEnd().split('\n').slice(-lines).join('\n');
    } finally {
      await fh.close();
    }
  } catch {
    return '(no log)';
  }
}
