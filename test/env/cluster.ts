// A real Kubernetes control plane on loopback for integration tests: etcd, kube-apiserver and
// (optionally) kube-controller-manager built by build-bins.sh, each cluster with its own PKI,
// free ports and working dir. Processes are tracked by PID and killed on exit or signal, so a
// failed or interrupted run leaves nothing behind; detached clusters (for the CLI) outlive us.
// With nodes: N, also a kube-scheduler and N real nodes (containerd + kubelet, see nodes.ts).
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, openSync, closeSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, readdir, rm, writeFile, open } from 'node:fs/promises';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { runBuildScript } from './build.ts';
import { baseImages, type BuiltImage } from './images.ts';
import {
  allocateNet,
  cleanupNodesSync,
  ctr,
  killContainersSync,
  nodeDirs,
  prepareNode,
  releaseNet,
  storageManifests,
  type NodeNet,
  type TestNode,
} from './nodes.ts';

export type { TestNode } from './nodes.ts';
export type { BuiltImage } from './images.ts';

export interface TestCluster {
  name: string;
  /** Working dir: pki/, etcd data, logs, pids. */
  dir: string;
  /** Admin kubeconfig (client cert, O=system:masters), server https://127.0.0.1:<port>. */
  kubeconfigPath: string;
  /** https://127.0.0.1:<port> */
  server: string;
  /** Real nodes (empty unless started with nodes: N). */
  nodes: TestNode[];
  /**
   * Env for a hostNetwork pod that calls this API server (no kube-proxy: the kubernetes Service
   * does not work): KUBERNETES_SERVICE_HOST/PORT of the loopback server. Such a pod also needs
   * a projected ServiceAccount token (ServiceAccount admission is off, nothing is mounted by itself).
   */
  podApiEnv: { name: string; value: string }[];
  /** Imports an image (OCI archive, see images.ts) into every node's containerd. */
  loadImage(image: BuiltImage): Promise<void>;
  /**
   * Kill by PID (kubelets, scheduler, kcm, apiserver, containers and their shims, containerd,
   * etcd), wait for exit, unmount what the nodes left, delete their bridges, remove dir unless
   * KEEP_TESTENV=1.
   */
  stop(): Promise<void>;
}

export interface StartOptions {
  name?: string;
  dir?: string;
  /** Default true. */
  controllerManager?: boolean;
  /** For the CLI: processes outlive this node process; pids in dir/*.pid. */
  detached?: boolean;
  /**
   * Real nodes (default 0: no kubelet, nothing extra is built or started). With N > 0 also a
   * kube-scheduler, the daemonset and node-lifecycle controllers, a default StorageClass "local"
   * and pvsPerNode local PVs per node backed by directories (see TestNode.pvs).
   */
  nodes?: number;
  /** Local PVs per node (default 4, 1Gi each). */
  pvsPerNode?: number;
}

const START_TIMEOUT_MS = 90_000;
const KILL_GRACE_MS = 5_000;
/** Marks a dir as ours, so stop/down never removes a folder it did not create. */
const MARKER = '.dr-syncer-testenv';
/** In the dir of a non-detached cluster with nodes: the pid of the process that owns it. */
const OWNER = 'owner.pid';
const COMPONENTS = ['kubelet', 'kube-scheduler', 'kube-controller-manager', 'kube-apiserver', 'containerd', 'etcd'] as const; // stop order
type Component = (typeof COMPONENTS)[number];
/** Components that run once per node; their pid files are <comp>-<node>.pid. */
const PER_NODE: readonly Component[] = ['kubelet', 'containerd'];

const HERE = path.dirname(fileURLToPath(import.meta.url));
const BUILD_SCRIPT = path.join(HERE, 'build-bins.sh');

// ---------------------------------------------------------------------------------------------
// Binaries

let binDirPromise: Promise<string> | undefined;
let nodeBinDirPromise: Promise<string> | undefined;

/** Runs build-bins.sh once per process (it honours KUBEBUILDER_ASSETS) and returns the folder. */
export function binDir(): Promise<string> {
  binDirPromise ??= runBuildScript(BUILD_SCRIPT, parseBinDir).catch((err: unknown) => {
    binDirPromise = undefined; // let a later call retry
    throw err;
  });
  return binDirPromise;
}

/** The same folder, with kubelet and kube-scheduler built too (build-bins.sh --nodes). */
export function nodeBinDir(): Promise<string> {
  nodeBinDirPromise ??= runBuildScript(BUILD_SCRIPT, parseBinDir, ['--nodes']).catch((err: unknown) => {
    nodeBinDirPromise = undefined;
    throw err;
  });
  return nodeBinDirPromise;
}

/** The last line build-bins.sh prints is the folder. */
function parseBinDir(stdout: string): string | undefined {
  const dir = stdout.trim().split('\n').pop() ?? '';
  return dir === '' ? undefined : dir;
}

// ---------------------------------------------------------------------------------------------
// kubectl

export async function kubectl(
  kubeconfig: string,
  args: string[],
  opts: { input?: string; check?: boolean } = {},
): Promise<{ stdout: string; stderr: string; code: number }> {
  const bin = await kubectlPath();
  const res = await run(bin, ['--kubeconfig', kubeconfig, ...args], { input: opts.input });
  if ((opts.check ?? true) && res.code !== 0) {
    throw new Error(`kubectl ${args.join(' ')} failed (exit ${res.code}): ${res.stderr.trim()}`);
  }
  return res;
}

let kubectlBin: Promise<string> | undefined;
function kubectlPath(): Promise<string> {
  kubectlBin ??= binDir().then(
    (d) => (existsSync(path.join(d, 'kubectl')) ? path.join(d, 'kubectl') : 'kubectl'),
    () => 'kubectl', // no Go / build failed: the PATH one is good enough for a client
  );
  return kubectlBin;
}

function run(
  cmd: string,
  args: string[],
  opts: { input?: string | undefined; cwd?: string } = {},
): Promise<{ stdout: string; stderr: string; code: number }> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd: opts.cwd, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', (e) => reject(new Error(`cannot run ${cmd}: ${e.message}`)));
    child.on('close', (code, signal) => resolve({ stdout, stderr, code: code ?? (signal ? 128 : 1) }));
    child.stdin.on('error', () => {}); // EPIPE if the command exits without reading stdin
    child.stdin.end(opts.input ?? '');
  });
}

// ---------------------------------------------------------------------------------------------
// Process tracking and cleanup

/** Children of this process that must die with it (non-detached clusters). */
const owned = new Map<number, ChildProcess>();
/** Their working dirs, removed on exit too (unless KEEP_TESTENV=1). */
const ownedDirs = new Set<string>();
let handlersInstalled = false;

function installHandlers(): void {
  if (handlersInstalled) return;
  handlersInstalled = true;
  process.on('exit', () => killOwnedSync());
  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    const onSignal = (): void => {
      killOwnedSync();
      // We replaced the default action; if nobody else handles the signal, restore and re-raise it.
      if (process.listenerCount(sig) === 1) {
        process.removeListener(sig, onSignal);
        process.kill(process.pid, sig);
      }
    };
    process.on(sig, onSignal);
  }
}

function killOwnedSync(): void {
  const pids = [...owned.keys()];
  for (const pid of pids) signal(pid, 'SIGTERM');
  const deadline = Date.now() + KILL_GRACE_MS;
  const sleeper = new Int32Array(new SharedArrayBuffer(4));
  while (Date.now() < deadline && pids.some(isAlive)) Atomics.wait(sleeper, 0, 0, 50);
  for (const pid of pids) if (isAlive(pid)) signal(pid, 'SIGKILL');
  owned.clear();
  for (const dir of ownedDirs) {
    try {
      // Nodes: containers and shims outlive containerd; mounts and bridges outlive everything.
      const problems = nodeDirs(dir).length > 0 ? cleanupNodesSync(dir, killContainersSync(dir)) : [];
      if (process.env.KEEP_TESTENV !== '1' && problems.length === 0 && existsSync(path.join(dir, MARKER))) {
        rmSync(dir, { recursive: true, force: true });
      }
    } catch {
      // best effort while exiting
    }
  }
  ownedDirs.clear();
}

function signal(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch {
    // already gone
  }
}

/** Alive and not a zombie (an unreaped child still answers kill(pid, 0), e.g. in an exit handler). */
function isAlive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
    return state !== 'Z' && state !== 'X';
  } catch {
    if (existsSync('/proc/self/stat')) return false; // Linux: no entry means gone
    try {
      process.kill(pid, 0);
      return true;
    } catch {
      return false;
    }
  }
}

/** Guards against PID reuse when killing from a pid file: the process must still be that binary. */
function isComponent(pid: number, comp: Component): boolean {
  try {
    const argv0 = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0')[0] ?? '';
    return path.basename(argv0) === comp;
  } catch {
    return !existsSync('/proc/self/cmdline') && isAlive(pid);
  }
}

async function killAndWait(pids: number[]): Promise<void> {
  for (const pid of pids) signal(pid, 'SIGTERM');
  const deadline = Date.now() + KILL_GRACE_MS;
  while (Date.now() < deadline && pids.some(isAlive)) await sleep(50);
  const stuck = pids.filter(isAlive);
  for (const pid of stuck) signal(pid, 'SIGKILL');
  const hard = Date.now() + KILL_GRACE_MS;
  while (Date.now() < hard && stuck.some(isAlive)) await sleep(50);
}

// ---------------------------------------------------------------------------------------------
// Ports, PKI, kubeconfig

const handedOut = new Set<number>();

/** A free loopback port; never the same one twice in this process (parallel starts). */
async function freePort(): Promise<number> {
  for (;;) {
    const port = await new Promise<number>((resolve, reject) => {
      const srv = net.createServer();
      srv.unref();
      srv.on('error', reject);
      srv.listen(0, '127.0.0.1', () => {
        const addr = srv.address();
        srv.close(() => (typeof addr === 'object' && addr ? resolve(addr.port) : reject(new Error('no port'))));
      });
    });
    if (!handedOut.has(port)) {
      handedOut.add(port);
      return port;
    }
  }
}

async function openssl(cwd: string, args: string[]): Promise<void> {
  const res = await run('openssl', args, { cwd });
  if (res.code !== 0) throw new Error(`openssl ${args.join(' ')} failed (exit ${res.code}): ${res.stderr.trim()}`);
}

function serial(): string {
  return '0x' + randomBytes(16).toString('hex');
}

/** CA, apiserver serving cert, admin client cert (O=system:masters) and the SA key pair. */
async function makePki(dir: string): Promise<void> {
  await mkdir(dir, { recursive: true });
  const rsa = ['-newkey', 'rsa:2048', '-nodes'];
  await writeFile(
    path.join(dir, 'server.ext'),
    'subjectAltName=IP:127.0.0.1,DNS:localhost,IP:10.0.0.1,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc\n' +
      'extendedKeyUsage=serverAuth\nkeyUsage=critical,digitalSignature,keyEncipherment\n',
  );
  await writeFile(path.join(dir, 'client.ext'), 'extendedKeyUsage=clientAuth\nkeyUsage=critical,digitalSignature,keyEncipherment\n');
  const sign = (base: string, ext: string): Promise<void> =>
    openssl(dir, ['x509', '-req', '-in', `${base}.csr`, '-CA', 'ca.crt', '-CAkey', 'ca.key', '-set_serial', serial(),
      '-days', '30', '-extfile', ext, '-out', `${base}.crt`]);
  await Promise.all([
    openssl(dir, ['req', '-x509', ...rsa, '-keyout', 'ca.key', '-out', 'ca.crt', '-days', '30', '-subj', '/CN=dr-syncer-testenv-ca',
      '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign,digitalSignature']),
    openssl(dir, ['req', ...rsa, '-keyout', 'apiserver.key', '-out', 'apiserver.csr', '-subj', '/CN=kube-apiserver']),
    // CN = user name, O = group; system:masters bypasses RBAC.
    openssl(dir, ['req', ...rsa, '-keyout', 'admin.key', '-out', 'admin.csr', '-subj', '/O=system:masters/CN=admin']),
    openssl(dir, ['genrsa', '-out', 'sa.key', '2048']).then(() => openssl(dir, ['rsa', '-in', 'sa.key', '-pubout', '-out', 'sa.pub'])),
  ]);
  await Promise.all([sign('apiserver', 'server.ext'), sign('admin', 'client.ext')]);
}

function kubeconfigYaml(name: string, server: string, ca: Buffer, cert: Buffer, key: Buffer): string {
  const n = JSON.stringify(name); // a JSON string is a valid YAML scalar
  const b64 = (b: Buffer): string => b.toString('base64');
  return [
    'apiVersion: v1',
    'kind: Config',
    'clusters:',
    `- name: ${n}`,
    '  cluster:',
    `    server: ${server}`,
    `    certificate-authority-data: ${b64(ca)}`,
    'users:',
    '- name: admin',
    '  user:',
    `    client-certificate-data: ${b64(cert)}`,
    `    client-key-data: ${b64(key)}`,
    'contexts:',
    `- name: ${n}`,
    '  context:',
    `    cluster: ${n}`,
    '    user: admin',
    `current-context: ${n}`,
    '',
  ].join('\n');
}

// ---------------------------------------------------------------------------------------------
// Readiness probes

interface Tls {
  ca: Buffer;
  cert: Buffer;
  key: Buffer;
}

function httpGet(url: string, tls?: Tls): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const u = new URL(url);
    const mod = u.protocol === 'https:' ? https : http;
    const req = mod.request(
      { host: u.hostname, port: u.port, path: u.pathname + u.search, method: 'GET', agent: false, timeout: 3_000, ...tls },
      (res) => {
        let body = '';
        res.on('data', (d: Buffer) => (body += d.toString()));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
        res.on('error', reject);
      },
    );
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
    req.end();
  });
}

async function ok(url: string, tls?: Tls): Promise<boolean> {
  try {
    return (await httpGet(url, tls)).status === 200;
  } catch {
    return false;
  }
}

// ---------------------------------------------------------------------------------------------
// Start / stop

interface Proc {
  comp: Component;
  /** Pid file stem: the component, or <component>-<node> for per-node ones. */
  id: string;
  pid: number;
  child: ChildProcess;
  log: string;
}

class StartError extends Error {
  constructor(
    message: string,
    readonly retryable: boolean,
  ) {
    super(message);
  }
}

let clusterCounter = 0;

export async function startCluster(opts: StartOptions = {}): Promise<TestCluster> {
  const bins = (opts.nodes ?? 0) > 0 ? await nodeBinDir() : await binDir();
  if ((opts.nodes ?? 0) > 0) await sweepOrphanedNodeClusters();
  const name = opts.name ?? `testenv-${process.pid}-${++clusterCounter}`;
  const dir = await prepareDir(opts.dir, name);
  for (let attempt = 1; ; attempt++) {
    try {
      return await startOnce(bins, name, dir, opts);
    } catch (err) {
      // Ports are probed then released, so another process can take one in between: retry.
      if (err instanceof StartError && err.retryable && attempt < 3) {
        await clearDir(dir);
        continue;
      }
      ownedDirs.delete(dir);
      if (process.env.KEEP_TESTENV !== '1') {
        // Never let a cleanup failure hide why the start failed.
        await removeDir(dir).catch((rmErr: unknown) => {
          if (err instanceof Error) err.message += `\n(and removing ${dir}: ${rmErr instanceof Error ? rmErr.message : String(rmErr)})`;
        });
      } else if (err instanceof Error) err.message += `\n(kept ${dir})`;
      throw err;
    }
  }
}

export async function startClusters(n: number, opts: Omit<StartOptions, 'name' | 'dir'> = {}): Promise<TestCluster[]> {
  // Build once, not n times concurrently.
  if ((opts.nodes ?? 0) > 0) await Promise.all([nodeBinDir(), baseImages()]);
  else await binDir();
  const base = `testenv-${process.pid}-${++clusterCounter}`;
  const results = await Promise.allSettled(
    Array.from({ length: n }, (_, i) => startCluster({ ...opts, name: `${base}-${i + 1}` })),
  );
  const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed) {
    await Promise.all(results.map((r) => (r.status === 'fulfilled' ? r.value.stop() : undefined)));
    throw failed.reason;
  }
  return results.map((r) => (r as PromiseFulfilledResult<TestCluster>).value);
}

async function prepareDir(dir: string | undefined, name: string): Promise<string> {
  if (dir === undefined) {
    const d = await mkdtemp(path.join(os.tmpdir(), `drs-${name.replace(/[^A-Za-z0-9_.-]/g, '_')}-`));
    await writeFile(path.join(d, MARKER), '');
    return d;
  }
  const abs = path.resolve(dir);
  await mkdir(abs, { recursive: true });
  const entries = await readdir(abs);
  if (entries.length > 0 && !entries.includes(MARKER)) {
    throw new Error(`${abs} is not empty and not a test cluster dir; use an empty or new folder`);
  }
  const live = livePids(abs);
  if (live.length > 0) {
    throw new Error(`a test cluster is already running in ${abs} (pids ${live.map((p) => p.pid).join(', ')}); stop it first`);
  }
  await clearDir(abs);
  return abs;
}

/** Empties an (own) cluster dir, keeping the marker. */
async function clearDir(dir: string): Promise<void> {
  cleanLeftoverNodes(dir);
  for (const e of await readdir(dir)) if (e !== MARKER) await rm(path.join(dir, e), { recursive: true, force: true });
  await writeFile(path.join(dir, MARKER), '');
}

async function removeDir(dir: string): Promise<void> {
  if (!existsSync(path.join(dir, MARKER))) return;
  cleanLeftoverNodes(dir);
  await rm(dir, { recursive: true, force: true });
}

let swept: Promise<void> | undefined;

/**
 * A test process killed with SIGKILL cannot clean up, and its nodes' containers, mounts and
 * bridges would stay forever: once per process, stop the node clusters in the temp dir whose
 * owner process is gone (by their pid files, as `down` does) and remove them.
 */
function sweepOrphanedNodeClusters(): Promise<void> {
  swept ??= (async () => {
    const tmp = os.tmpdir();
    for (const e of readdirSync(tmp)) {
      if (!e.startsWith('drs-')) continue;
      const dir = path.join(tmp, e);
      let owner: number;
      try {
        owner = Number.parseInt(readFileSync(path.join(dir, OWNER), 'utf8'), 10);
      } catch {
        continue; // not a node cluster of ours, or a detached one (no owner file)
      }
      if (!existsSync(path.join(dir, MARKER)) || !Number.isInteger(owner) || owner <= 0 || isAlive(owner)) continue;
      try {
        await stopAll(dir, livePids(dir));
        await removeDir(dir);
        if (process.env.TESTENV_VERBOSE === '1') process.stderr.write(`[testenv] removed orphaned cluster ${dir} (owner ${owner} gone)\n`);
      } catch (err) {
        process.stderr.write(`[testenv] could not remove orphaned cluster ${dir}: ${err instanceof Error ? err.message : String(err)}\n`);
      }
    }
  })();
  return swept;
}

/** Nodes of a killed run leave containers, mounts and bridges: clean them before any rm -rf. */
function cleanLeftoverNodes(dir: string): void {
  if (nodeDirs(dir).length === 0) return;
  const problems = cleanupNodesSync(dir, killContainersSync(dir));
  if (problems.length > 0) throw new Error(`cannot clean up ${dir}: ${problems.join('; ')}`);
}

async function startOnce(bins: string, name: string, dir: string, opts: StartOptions): Promise<TestCluster> {
  const t0 = Date.now();
  const detached = opts.detached === true;
  const nodeCount = opts.nodes ?? 0;
  if (!Number.isInteger(nodeCount) || nodeCount < 0 || nodeCount > 200) throw new Error(`nodes must be 0..200, not ${nodeCount}`);
  const images = nodeCount > 0 ? await baseImages() : undefined;
  if (!detached) {
    installHandlers();
    ownedDirs.add(dir);
    // Who to ask whether this cluster is still wanted (see sweepOrphanedNodeClusters).
    if (nodeCount > 0) await writeFile(path.join(dir, OWNER), `${process.pid}\n`);
  }
  const [etcdPort, peerPort, apiPort] = [await freePort(), await freePort(), await freePort()];
  const pki = path.join(dir, 'pki');
  await makePki(pki);
  const server = `https://127.0.0.1:${apiPort}`;
  const read = (f: string): Promise<Buffer> => readFile(path.join(pki, f));
  const tls: Tls = { ca: await read('ca.crt'), cert: await read('admin.crt'), key: await read('admin.key') };
  let net: NodeNet | undefined;
  let nodes: TestNode[] = [];
  const kubeconfigPath = path.join(dir, 'kubeconfig');
  await writeFile(kubeconfigPath, kubeconfigYaml(name, server, tls.ca, tls.cert, tls.key), { mode: 0o600 });

  const procs: Proc[] = [];
  const startTimeout = START_TIMEOUT_MS + nodeCount * 30_000;
  const deadline = Date.now() + startTimeout;
  const launch = async (comp: Component, args: string[], node?: number): Promise<Proc> => {
    const id = node === undefined ? comp : `${comp}-${node}`;
    const log = path.join(dir, `${id}.log`);
    const fd = openSync(log, 'a');
    let child: ChildProcess;
    // containerd is Debian's; everything else was built by build-bins.sh.
    const bin = comp === 'containerd' ? 'containerd' : path.join(bins, comp);
    try {
      child = spawn(bin, args, { cwd: dir, stdio: ['ignore', fd, fd], detached });
    } finally {
      closeSync(fd);
    }
    const pid = await new Promise<number>((resolve, reject) => {
      child.once('spawn', () => resolve(child.pid as number));
      child.once('error', (e) => reject(new Error(`cannot start ${comp}: ${e.message}`)));
    });
    const p: Proc = { comp, id, pid, child, log };
    procs.push(p);
    await writeFile(path.join(dir, `${id}.pid`), `${pid}\n`);
    if (detached) {
      child.unref();
    } else {
      owned.set(pid, child);
      child.once('exit', () => owned.delete(pid));
    }
    return p;
  };
  const waitFor = async (p: Proc, what: string, probe: () => Promise<boolean>): Promise<void> => {
    for (;;) {
      if (await probe()) {
        if (process.env.TESTENV_VERBOSE === '1') process.stderr.write(`[testenv] ${name}: ${what} after ${Date.now() - t0} ms\n`);
        return;
      }
      if (p.child.exitCode !== null || p.child.signalCode !== null) {
        const tail = await logTail(p.log);
        const inUse = /address already in use/i.test(tail);
        throw new StartError(
          `${name}: ${p.comp} exited (${p.child.exitCode ?? p.child.signalCode}) before ${what}; ${p.log}:\n${tail}`,
          inUse,
        );
      }
      if (Date.now() > deadline) {
        throw new StartError(
          `${name}: timed out after ${startTimeout / 1000}s waiting for ${what}; ${p.log}:\n${await logTail(p.log)}`,
          false,
        );
      }
      await sleep(200);
    }
  };

  try {
    const etcdUrl = `http://127.0.0.1:${etcdPort}`;
    const peerUrl = `http://127.0.0.1:${peerPort}`;
    const etcd = await launch('etcd', [
      '--name=testenv',
      `--data-dir=${path.join(dir, 'etcd')}`,
      `--listen-client-urls=${etcdUrl}`,
      `--advertise-client-urls=${etcdUrl}`,
      `--listen-peer-urls=${peerUrl}`,
      `--initial-advertise-peer-urls=${peerUrl}`,
      `--initial-cluster=testenv=${peerUrl}`,
      '--unsafe-no-fsync',
      '--snapshot-count=10000', // fewer raft entries kept in memory
      '--log-level=warn',
    ]);
    await waitFor(etcd, 'etcd /health', () => ok(`${etcdUrl}/health`));

    const api = await launch('kube-apiserver', [
      `--etcd-servers=${etcdUrl}`,
      '--bind-address=127.0.0.1',
      // A loopback bind address otherwise advertises the host's default-route IP (or fails without one).
      '--advertise-address=127.0.0.1',
      `--secure-port=${apiPort}`,
      `--cert-dir=${pki}`,
      `--tls-cert-file=${path.join(pki, 'apiserver.crt')}`,
      `--tls-private-key-file=${path.join(pki, 'apiserver.key')}`,
      `--client-ca-file=${path.join(pki, 'ca.crt')}`,
      `--service-account-issuer=${server}`,
      `--service-account-key-file=${path.join(pki, 'sa.pub')}`,
      `--service-account-signing-key-file=${path.join(pki, 'sa.key')}`,
      '--service-cluster-ip-range=10.0.0.0/24',
      '--authorization-mode=RBAC',
      // Pods are created without waiting for the default SA (and there is none without kcm).
      '--disable-admission-plugins=ServiceAccount',
      '--allow-privileged=true',
      // A loopback address is invalid in Endpoints: do not reconcile the kubernetes service.
      '--endpoint-reconciler-type=none',
      '--v=0',
    ]);
    await waitFor(api, 'kube-apiserver /readyz', () => ok(`${server}/readyz`, tls));
    await waitFor(api, 'the default namespace', () => ok(`${server}/api/v1/namespaces/default`, tls));

    if (opts.controllerManager ?? true) {
      const kcm = await launch('kube-controller-manager', [
        `--kubeconfig=${kubeconfigPath}`,
        '--secure-port=0', // no HTTPS endpoint, so no authn/authz kubeconfigs needed
        '--leader-elect=false',
        `--controllers=${[...KCM_CONTROLLERS, ...(nodeCount > 0 ? KCM_NODE_CONTROLLERS : [])].join(',')}`,
        `--service-account-private-key-file=${path.join(pki, 'sa.key')}`,
        `--root-ca-file=${path.join(pki, 'ca.crt')}`,
        '--use-service-account-credentials=false',
        '--v=0',
      ]);
      // The default ServiceAccount appears only when the serviceaccount controller runs.
      await waitFor(kcm, 'the default ServiceAccount (kube-controller-manager)', () =>
        ok(`${server}/api/v1/namespaces/default/serviceaccounts/default`, tls),
      );
    }
    if (images) {
      net = allocateNet();
      nodes = await startNodes({ name, dir, pki, kubeconfigPath, server, tls, images, net, nodeCount, opts, launch, waitFor });
    }
  } catch (err) {
    try {
      await stopAll(dir, procs);
    } catch (cleanupErr) {
      if (err instanceof Error) err.message += `\n(and ${cleanupErr instanceof Error ? cleanupErr.message : String(cleanupErr)})`;
    }
    if (net) releaseNet(net);
    throw err;
  }

  let stopped: Promise<void> | undefined;
  const started = nodes;
  return {
    name,
    dir,
    kubeconfigPath,
    server,
    nodes: started,
    podApiEnv: [
      { name: 'KUBERNETES_SERVICE_HOST', value: '127.0.0.1' },
      { name: 'KUBERNETES_SERVICE_PORT', value: String(apiPort) },
    ],
    loadImage: (img) => loadImage(started, img),
    stop: () =>
      (stopped ??= stopProcs(dir, procs).finally(() => {
        if (net) releaseNet(net);
      })),
  };
}

type Launch = (comp: Component, args: string[], node?: number) => Promise<Proc>;
type WaitFor = (p: Proc, what: string, probe: () => Promise<boolean>) => Promise<void>;

/** kube-scheduler, then every node (containerd, pause image, kubelet) in parallel, then the PVs. */
async function startNodes(c: {
  name: string;
  dir: string;
  pki: string;
  kubeconfigPath: string;
  server: string;
  tls: Tls;
  images: Awaited<ReturnType<typeof baseImages>>;
  net: NodeNet;
  nodeCount: number;
  opts: StartOptions;
  launch: Launch;
  waitFor: WaitFor;
}): Promise<TestNode[]> {
  const sched = await c.launch('kube-scheduler', [
    `--kubeconfig=${c.kubeconfigPath}`,
    '--secure-port=0', // no HTTPS endpoint, as for kcm
    '--leader-elect=false',
    '--v=0',
  ]);
  // allSettled: when one node fails, the others must finish launching before the caller stops
  // everything, or a kubelet started later would be missed and outlive the cluster.
  const settled = await Promise.allSettled(
    Array.from({ length: c.nodeCount }, async (_, k) => {
      const i = k + 1;
      const layout = await prepareNode({
        clusterDir: c.dir,
        i,
        net: c.net,
        kubeconfigPath: c.kubeconfigPath,
        caFile: path.join(c.pki, 'ca.crt'),
        pauseRef: c.images.pause.ref,
        kubeletPort: await freePort(),
        healthzPort: await freePort(),
        pvsPerNode: c.opts.pvsPerNode ?? 4,
        clusterName: c.name,
      });
      const sock = layout.node.containerdSocket;
      const cd = await c.launch('containerd', ['--config', layout.containerdConfig, '--log-level', 'warn'], i);
      await c.waitFor(cd, `containerd of node ${i}`, async () => existsSync(sock) && ctr(sock, ['version']).code === 0);
      await importImage(sock, c.images.pause);
      const kubelet = await c.launch('kubelet', layout.kubeletArgs, i);
      // Ready, and the node-lifecycle controller has removed the not-ready taint (or nothing schedules).
      await c.waitFor(kubelet, `node ${layout.node.name} Ready`, async () => {
        const res = await httpGet(`${c.server}/api/v1/nodes/${layout.node.name}`, c.tls).catch(() => undefined);
        if (res?.status !== 200) return false;
        return nodeReady(JSON.parse(res.body) as NodeObject);
      });
      return layout.node;
    }),
  );
  const failed = settled.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed) throw failed.reason;
  const nodes = settled.map((r) => (r as PromiseFulfilledResult<TestNode>).value);
  if (sched.child.exitCode !== null) throw new StartError(`${c.name}: kube-scheduler exited; ${sched.log}:\n${await logTail(sched.log)}`, false);
  await kubectl(c.kubeconfigPath, ['apply', '-f', '-'], { input: storageManifests(nodes) });
  return nodes;
}

interface NodeObject {
  spec?: { taints?: { key: string }[] };
  status?: { conditions?: { type: string; status: string }[] };
}

function nodeReady(n: NodeObject): boolean {
  const ready = n.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') ?? false;
  const tainted = n.spec?.taints?.some((t) => t.key.startsWith('node.kubernetes.io/')) ?? false;
  return ready && !tainted;
}

async function importImage(socket: string, img: BuiltImage): Promise<void> {
  // ctr names the image after the archive's ref annotation, which our archives carry in full
  // (localhost/dr-syncer/...:<hash>). Not --index-name: it makes a second image record of that
  // name for the archive's index, re-pointed to the manifest a moment later, and containerd's
  // GC can then drop the unreferenced index blob before ctr unpacks it: "content digest <the
  // index.json's digest>: not found", which lasted through 20 s of retries in a CI run.
  const ctr = (...args: string[]) => run('ctr', ['--address', socket, '--namespace', 'k8s.io', ...args]);
  for (let attempt = 1; ; attempt++) {
    const res = await ctr('images', 'import', img.archive);
    if (res.code === 0) break;
    if (attempt < 4 && /content digest .* not found/.test(res.stderr)) {
      process.stderr.write(`[testenv] ctr import into ${socket} failed (${res.stderr.trim()}); retry ${attempt}\n`);
      await sleep(1000 * attempt);
      continue;
    }
    throw new Error(`ctr images import ${img.archive} failed (exit ${res.code}): ${res.stderr.trim()}`);
  }
  const names = (await ctr('images', 'ls', '-q')).stdout.split('\n');
  if (!names.includes(img.ref)) throw new Error(`ctr images import ${img.archive}: no image ${img.ref} afterwards (the archive's ref annotation names another?); images: ${names.filter(Boolean).join(', ')}`);
}

async function loadImage(nodes: TestNode[], img: BuiltImage): Promise<void> {
  if (nodes.length === 0) throw new Error('this cluster has no nodes (start it with nodes: N)');
  await Promise.all(nodes.map((n) => importImage(n.containerdSocket, img)));
}

const KCM_CONTROLLERS = [
  'namespace-controller',
  'garbage-collector-controller',
  'deployment-controller',
  'replicaset-controller',
  'statefulset-controller',
  'job-controller',
  'cronjob-controller',
  'serviceaccount-controller',
  'serviceaccount-token-controller',
  'root-ca-certificate-publisher-controller',
  'clusterrole-aggregation-controller',
  'persistentvolume-binder-controller',
  'persistentvolumeclaim-protection-controller',
  'persistentvolume-protection-controller',
  'resourcequota-controller',
];

/** Only with nodes: DaemonSets, and the not-ready taint removed once a kubelet reports Ready. */
const KCM_NODE_CONTROLLERS = ['daemonset-controller', 'node-lifecycle-controller'];

async function stopProcs(dir: string, procs: Proc[]): Promise<void> {
  await stopAll(dir, procs);
  await finishStop(dir);
  ownedDirs.delete(dir);
}

/**
 * Kubelets first (a live kubelet restarts what we kill), the scheduler, kcm and the apiserver
 * (so none logs a storm of etcd errors), then the containers and their shims, containerd, etcd;
 * then what the nodes left on the host. Throws if a mount or bridge could not be removed.
 */
async function stopAll(dir: string, procs: { comp: Component; pid: number }[]): Promise<void> {
  const byComp = (...cs: Component[]): number[] => procs.filter((p) => cs.includes(p.comp)).map((p) => p.pid);
  await killAndWait(byComp('kubelet', 'kube-scheduler', 'kube-controller-manager', 'kube-apiserver'));
  const hasNodes = nodeDirs(dir).length > 0;
  const ids = hasNodes ? killContainersSync(dir) : [];
  await killAndWait(byComp('containerd', 'etcd'));
  for (const p of procs) owned.delete(p.pid);
  const problems = hasNodes ? cleanupNodesSync(dir, ids) : [];
  if (problems.length > 0) {
    ownedDirs.delete(dir); // never rm -rf through a mount
    throw new Error(`could not clean up after the nodes of ${dir} (left in place): ${problems.join('; ')}`);
  }
}

async function finishStop(dir: string): Promise<void> {
  if (process.env.KEEP_TESTENV === '1') {
    for (const f of await readdir(dir)) if (f.endsWith('.pid')) await rm(path.join(dir, f), { force: true });
  } else {
    await removeDir(dir);
  }
}

/** Pid file stem -> component: kube-apiserver, kubelet-2, ... */
function componentOf(stem: string): Component | undefined {
  const m = /^(.*)-\d+$/.exec(stem);
  const perNode = PER_NODE.find((c) => c === m?.[1]);
  if (perNode) return perNode;
  return COMPONENTS.find((c) => c === stem && !PER_NODE.includes(c));
}

function livePids(dir: string): { comp: Component; pid: number }[] {
  const out: { comp: Component; pid: number }[] = [];
  let files: string[];
  try {
    files = readdirSync(dir).filter((f) => f.endsWith('.pid'));
  } catch {
    return out;
  }
  for (const f of files) {
    const comp = componentOf(f.slice(0, -'.pid'.length));
    if (!comp) continue;
    let text: string;
    try {
      text = readFileSync(path.join(dir, f), 'utf8');
    } catch {
      continue;
    }
    const pid = Number.parseInt(text.trim(), 10);
    if (Number.isInteger(pid) && pid > 0 && isAlive(pid) && isComponent(pid, comp)) out.push({ comp, pid });
  }
  return out;
}

/** Stops a cluster started with detached:true (possibly by another process) from its pid files. */
export async function stopDetached(dir: string): Promise<void> {
  const abs = path.resolve(dir);
  if (!existsSync(abs)) throw new Error(`${abs} does not exist`);
  const names = readdirSync(abs);
  if (!names.includes(MARKER) || !names.some((n) => n.endsWith('.pid'))) {
    throw new Error(`no test cluster in ${abs} (no pid files)`);
  }
  await stopAll(abs, livePids(abs));
  await finishStop(abs);
}

// ---------------------------------------------------------------------------------------------

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

function tailText(text: string, lines: number): string {
  return text.trimEnd().split('\n').slice(-lines).join('\n');
}

async function logTail(file: string, lines = 25): Promise<string> {
  try {
    const fh = await open(file, 'r');
    try {
      const { size } = await fh.stat();
      const len = Math.min(size, 16_384);
      const buf = Buffer.alloc(len);
      await fh.read(buf, 0, len, size - len);
      return tailText(buf.toString('utf8'), lines);
    } finally {
      await fh.close();
    }
  } catch {
    return '(no log)';
  }
}
