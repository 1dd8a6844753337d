// Benchmark of the PVC data path: OpenSSH rsync on the DR side pulling a volume from the rsync
// endpoint through the agent's SSH bastion (ProxyCommand `ssh -W`), against the same rsync pulling
// from the same endpoint directly (no jump) in the same run, on loopback. The bastion and the
// endpoint run as their own processes (`dr-syncer-agent bastion|endpoint`), so their CPU time and
// peak RSS are their own.
//
//   npx tsx bench/pvc.bench.ts [--size-mb 2048] [--small-files N] [--large-files 4] [--repeats 3]
//                              [--dir /tmp] [--cipher NAME] [--tsx] [--profile <dir>] [--keep]
//
// The dataset (generated once, deterministic AES-CTR keystream so nothing compresses): many small
// files of 1-64 KiB in nested folders plus a few large files that hold the rest of the size.
// Full copies alternate bastion/direct; then no-op resyncs (the cost of comparing the file lists);
// then rounds of an incremental resync with 1% of the files changed (one large file appended to,
// the rest small files rewritten). test/integration/pvc-bench.test.ts runs these functions on a
// few MB as a correctness check. Results and conclusions: docs/benchmarks.md, "PVC data path".
import { execFile, spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { createCipheriv, createHash } from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs, promisify } from 'node:util';
import type { KeyPair } from '../src/agent/keys.ts';
import { generateKeyPair } from '../src/agent/keys.ts';
import { busyShare, machineJiffies } from './machine.ts';

const run = promisify(execFile);
const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const KiB = 1024;
const MiB = 1024 * KiB;

// ---------------------------------------------------------------------------------------------
// Dataset

export interface DatasetOptions {
  /** Total bytes, small and large files together. */
  totalBytes: number;
  /** How many small files (1-64 KiB each, in nested folders). */
  smallFiles: number;
  /** How many large files share what the small files leave of totalBytes. */
  largeFiles: number;
}

export interface Dataset {
  root: string;
  /** Relative paths. */
  small: string[];
  large: string[];
  bytes: number;
  /** Size of each large file as generated. */
  largeBytes: number;
}

/** Deterministic incompressible bytes: the AES-128-CTR keystream for (name, round). */
function keystream(name: string, round: number): (n: number) => Buffer {
  const d = createHash('sha256').update(`dr-syncer pvc bench\0${name}\0${round}`).digest();
  const c = createCipheriv('aes-128-ctr', d.subarray(0, 16), d.subarray(16, 32));
  return (n) => c.update(Buffer.alloc(n));
}

/** A small, seeded PRNG (mulberry32) for sizes and choices. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

async function writeStream(file: string, size: number, next: (n: number) => Buffer): Promise<void> {
  const fh = await fs.promises.open(file, 'w');
  try {
    for (let off = 0; off < size; off += 4 * MiB) await fh.write(next(Math.min(4 * MiB, size - off)));
  } finally {
    await fh.close();
  }
}

/** Writes the dataset into `root` (created). The same options always give the same bytes. */
export async function generateDataset(root: string, o: DatasetOptions): Promise<Dataset> {
  const rnd = prng(42);
  const small: string[] = [];
  const sizes: number[] = [];
  // 20 top folders x 10 subfolders, ~100 files each at the default size.
  for (let i = 0; i < o.smallFiles; i++) {
    small.push(path.join('small', `d${String(i % 20).padStart(2, '0')}`, `s${String(Math.floor(i / 20) % 10)}`, `f${String(i).padStart(6, '0')}.bin`));
    sizes.push(KiB + Math.floor(rnd() * 63 * KiB));
  }
  for (const d of new Set(small.map((f) => path.dirname(f)))) await fs.promises.mkdir(path.join(root, d), { recursive: true });
  // 64 writes at a time.
  for (let i = 0; i < small.length; i += 64) {
    await Promise.all(small.slice(i, i + 64).map((rel, j) => fs.promises.writeFile(path.join(root, rel), keystream(rel, 0)(sizes[i + j]!))));
  }
  let bytes = sizes.reduce((a, b) => a + b, 0);
  const large: string[] = [];
  let each = 0;
  if (o.largeFiles > 0) {
    await fs.promises.mkdir(path.join(root, 'large'), { recursive: true });
    each = Math.max(0, Math.floor((o.totalBytes - bytes) / o.largeFiles / (4 * KiB)) * 4 * KiB);
    for (let i = 0; i < o.largeFiles; i++) {
      const rel = path.join('large', `file-${i}.bin`);
      await writeStream(path.join(root, rel), each, keystream(rel, 0));
      large.push(rel);
      bytes += each;
    }
  }
  return { root, small, large, bytes, largeBytes: each };
}

/**
 * Changes `fraction` of the files (at least 2): appends 1 MiB to one large file and rewrites the
 * rest among the small files with new content of the same size; every changed file gets a new
 * mtime (`round` seconds later than any before, so rsync's size+mtime quick check sees it).
 * Returns the changed paths.
 */
export async function changeFiles(ds: Dataset, fraction: number, round: number): Promise<string[]> {
  const total = ds.small.length + ds.large.length;
  const n = Math.max(2, Math.round(total * fraction));
  const rnd = prng(1000 + round);
  const picked = new Set<string>();
  if (ds.large.length > 0) picked.add(ds.large[round % ds.large.length]!);
  while (picked.size < Math.min(n, ds.small.length + (ds.large.length > 0 ? 1 : 0))) picked.add(ds.small[Math.floor(rnd() * ds.small.length)]!);
  const when = new Date(Date.now() + round * 10_000);
  for (const rel of picked) {
    const file = path.join(ds.root, rel);
    if (ds.large.includes(rel)) await fs.promises.appendFile(file, keystream(rel, round)(MiB));
    else await fs.promises.writeFile(file, keystream(rel, round)((await fs.promises.stat(file)).size));
    await fs.promises.utimes(file, when, when);
  }
  return [...picked];
}

/** Every entry under dir: type, mode, size, mtime (seconds) and, where `hash` says, sha256. */
async function listTree(dir: string, hash: (rel: string) => boolean): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  const walk = async (rel: string): Promise<void> => {
    for (const name of (await fs.promises.readdir(path.join(dir, rel))).sort()) {
      const r = path.join(rel, name);
      const full = path.join(dir, r);
      const st = await fs.promises.lstat(full);
      const common = `${st.mode.toString(8)} ${Math.floor(st.mtimeMs / 1000)}`;
      if (st.isDirectory()) {
        out.set(r, `dir ${st.mode.toString(8)}`);
        await walk(r);
      } else if (st.isFile()) {
        let h = '';
        if (hash(r)) {
          const sha = createHash('sha256');
          for await (const chunk of fs.createReadStream(full, { highWaterMark: 4 * MiB })) sha.update(chunk as Buffer);
          h = ` ${sha.digest('hex')}`;
        }
        out.set(r, `file ${common} ${st.size}${h}`);
      } else out.set(r, `other ${common}`);
    }
  };
  await walk('');
  return out;
}

/**
 * Differences between two trees (empty: equal): the same entries with the same type, mode, size
 * and mtime, and the same sha256 for the files `hash` selects.
 */
export async function compareTrees(src: string, dest: string, hash: (rel: string) => boolean = () => true): Promise<string[]> {
  const [a, b] = await Promise.all([listTree(src, hash), listTree(dest, hash)]);
  const diffs: string[] = [];
  for (const [k, v] of a) if (b.get(k) !== v) diffs.push(`${k}: source ${v}, copy ${b.get(k) ?? 'missing'}`);
  for (const k of b.keys()) if (!a.has(k)) diffs.push(`${k}: only in the copy`);
  return diffs;
}

// ---------------------------------------------------------------------------------------------
// The agent processes and the OpenSSH client

export interface AgentProcess {
  pid: number;
  port: number;
  child: ChildProcess;
}

export interface Agents {
  bastion: AgentProcess;
  endpoint: AgentProcess;
  /** The endpoint's --root: what rsync pulls. */
  src: string;
  /** `rsync -e` for the path through the bastion, or straight to the endpoint. */
  transport(via: 'bastion' | 'direct'): string;
  stop(): Promise<void>;
}

export interface AgentOptions {
  /** The volume the endpoint serves. */
  src: string;
  /** Where keys, known_hosts and the allow file go. */
  work: string;
  /** Run the agents from `dist/` (compiled, as the container does) or from source through tsx. */
  runner: 'dist' | 'tsx';
  /** Write V8 CPU profiles of both agents into this folder (on stop). */
  profileDir?: string;
  /** Pin the SSH cipher of both OpenSSH connections (`-o Ciphers=`). */
  cipher?: string;
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer().once('error', reject).listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as net.AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}

/** Compiles the project into dist/ (tsc emits even when someone else's file has a type error). */
export async function compile(): Promise<void> {
  try {
    await run(process.execPath, [path.join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', path.join(ROOT, 'tsconfig.json')], { maxBuffer: 1 << 26 });
  } catch (err) {
    if (!fs.existsSync(path.join(ROOT, 'dist', 'src', 'agent', 'main.js'))) throw err;
    const out = (err as { stdout?: string }).stdout ?? '';
    console.error(`[bench] tsc reported errors (dist/ was written anyway):\n${out.split('\n').slice(0, 5).join('\n')}`);
  }
}

async function startAgent(mode: 'bastion' | 'endpoint', args: string[], o: AgentOptions): Promise<AgentProcess> {
  const port = await freePort();
  const entry = o.runner === 'dist' ? [path.join(ROOT, 'dist', 'src', 'agent', 'main.js')] : ['--import', 'tsx', path.join(ROOT, 'src', 'agent', 'main.ts')];
  const prof = o.profileDir ? ['--cpu-prof', `--cpu-prof-dir=${o.profileDir}`, `--cpu-prof-name=${mode}-${Date.now()}.cpuprofile`] : [];
  const child = spawn(process.execPath, [...prof, ...entry, mode, '--listen', `127.0.0.1:${port}`, ...args], { stdio: ['ignore', 'ignore', 'pipe'], cwd: ROOT });
  let stderr = '';
  child.stderr!.setEncoding('utf8').on('data', (d: string) => {
    if (stderr.length < 1 << 20) stderr += d;
  });
  await new Promise<void>((resolve, reject) => {
    const deadline = setTimeout(() => reject(new Error(`${mode} did not start:\n${stderr}`)), 60_000);
    const check = setInterval(() => {
      if (stderr.includes('listening')) {
        clearTimeout(deadline);
        clearInterval(check);
        resolve();
      }
    }, 20);
    child.once('exit', (code) => {
      clearTimeout(deadline);
      clearInterval(check);
      reject(new Error(`${mode} exited with ${code}:\n${stderr}`));
    });
  });
  return { pid: child.pid!, port, child };
}

/** OpenSSH options: no user config, pinned host keys, only the given key (as agent-ssh.test.ts). */
function sshOpts(key: string, port: number, knownHosts: string, cipher?: string): string[] {
  return [
    '-F', '/dev/null', '-i', key, '-p', String(port), '-o', 'IdentitiesOnly=yes', '-o', 'BatchMode=yes',
    '-o', 'StrictHostKeyChecking=yes', '-o', `UserKnownHostsFile=${knownHosts}`, '-o', 'ConnectTimeout=10',
    ...(cipher ? ['-o', `Ciphers=${cipher}`] : []),
  ];
}

/**
 * generateKeyPair, again when it throws: ssh2's keygen strips leading zero bytes from the ed25519
 * public key, so about 1 key in 256 comes out 31 bytes long and does not parse.
 */
function newKey(comment: string): KeyPair {
  for (let i = 0; ; i++) {
    try {
      return generateKeyPair(comment);
    } catch (err) {
      if (i >= 5) throw err;
    }
  }
}

/** Starts the bastion and the endpoint as their own processes, with fresh keys, on loopback. */
export async function startAgents(o: AgentOptions): Promise<Agents> {
  await fs.promises.mkdir(o.work, { recursive: true });
  const file = async (name: string, content: string) => {
    const p = path.join(o.work, name);
    await fs.promises.writeFile(p, content, { mode: 0o600 });
    return p;
  };
  const k = { bastionHost: newKey('bastion-host'), endpointHost: newKey('endpoint-host'), cluster: newKey('dr-to-agent'), replication: newKey('replication') };
  const allow = await file('allow', '');
  const bastion = await startAgent('bastion', ['--host-key', await file('bastion_host_key', k.bastionHost.privateKey), '--authorized-keys', await file('bastion_authorized_keys', k.cluster.publicKey), '--allow-file', allow], o);
  let endpoint: AgentProcess;
  try {
    endpoint = await startAgent('endpoint', ['--host-key', await file('endpoint_host_key', k.endpointHost.privateKey), '--authorized-keys', await file('endpoint_authorized_keys', k.replication.publicKey), '--root', o.src], o);
  } catch (err) {
    bastion.child.kill('SIGTERM');
    throw err;
  }
  await fs.promises.writeFile(allow, `127.0.0.1:${endpoint.port}\n`);
  const kh = await file('known_hosts', `[127.0.0.1]:${bastion.port} ${k.bastionHost.publicKey}[127.0.0.1]:${endpoint.port} ${k.endpointHost.publicKey}`);
  const clusterKey = await file('cluster_key', k.cluster.privateKey);
  const replicationKey = await file('replication_key', k.replication.privateKey);
  const stopOne = (a: AgentProcess) => new Promise<void>((resolve) => {
    if (a.child.exitCode !== null || a.child.signalCode !== null) return resolve();
    a.child.once('exit', () => resolve());
    a.child.kill('SIGTERM');
  });
  return {
    bastion, endpoint, src: o.src,
    transport(via) {
      const direct = ['ssh', ...sshOpts(replicationKey, endpoint.port, kh, o.cipher)];
      if (via === 'direct') return direct.join(' ');
      const jump = ['ssh', ...sshOpts(clusterKey, bastion.port, kh, o.cipher), '-W', '%h:%p', 'agent@127.0.0.1'].join(' ');
      return [...direct, '-o', `'ProxyCommand=${jump}'`].join(' ');
    },
    stop: () => Promise.all([stopOne(bastion), stopOne(endpoint)]).then(() => undefined),
  };
}

// ---------------------------------------------------------------------------------------------
// Measurements

let clockTicks = 100;

/** CPU seconds of a process, its reaped children included (the endpoint's rsync senders). */
export function cpuSeconds(pid: number | 'self'): number {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ').map(Number);
  // Fields 14-17 of proc(5): utime, stime, cutime, cstime; f[0] is field 3.
  return (f[11]! + f[12]! + f[13]! + f[14]!) / clockTicks;
}

/** Peak (VmHWM) and current (VmRSS) resident memory of a process, in MiB. */
export function memoryMiB(pid: number): { peak: number; now: number } {
  const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (k: string) => Number(new RegExp(`${k}:\\s+(\\d+)`).exec(status)?.[1] ?? NaN) / 1024;
  return { peak: kb('VmHWM'), now: kb('VmRSS') };
}

export interface CopyResult {
  via: 'bastion' | 'direct';
  ms: number;
  /** Bytes the rsync receiver read from the wire, and wrote to it (rsync --stats). */
  received: number;
  sent: number;
  filesTransferred: number;
  /** CPU seconds during the copy. */
  cpu: { bastion: number; endpoint: number };
  /** The machine's busy share of all cores during the copy (other work included). */
  machineBusy: number;
}

const stat = (out: string, name: string) => Number((new RegExp(`${name}: ([\\d,]+)`).exec(out)?.[1] ?? 'NaN').replace(/,/g, ''));

/** rsync's options as the DR-side Job passes them (rsyncArgs in src/pvc/manifests.ts), without the user's. */
const RSYNC_OPTIONS = ['-rlptgoH', '--numeric-ids', '--delete', '--stats', '--timeout=300'];

/** One OpenSSH rsync pull of the whole volume into `dest`. */
export async function rsyncPull(agents: Agents, via: 'bastion' | 'direct', dest: string): Promise<CopyResult> {
  await fs.promises.mkdir(dest, { recursive: true });
  const cpu0 = { bastion: cpuSeconds(agents.bastion.pid), endpoint: cpuSeconds(agents.endpoint.pid) };
  const m0 = machineJiffies();
  const t0 = performance.now();
  let stdout: string;
  try {
    ({ stdout } = await run('rsync', [...RSYNC_OPTIONS, '-e', agents.transport(via), `rsync@127.0.0.1:${agents.src}/`, `${dest}/`], { maxBuffer: 1 << 26 }));
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    throw new Error(`rsync via ${via} failed: ${e.stderr ?? e.message}`, { cause: err });
  }
  const ms = performance.now() - t0;
  const m1 = machineJiffies();
  return {
    via, ms,
    received: stat(stdout, 'Total bytes received'), sent: stat(stdout, 'Total bytes sent'),
    filesTransferred: stat(stdout, 'Number of regular files transferred'),
    cpu: { bastion: cpuSeconds(agents.bastion.pid) - cpu0.bastion, endpoint: cpuSeconds(agents.endpoint.pid) - cpu0.endpoint },
    machineBusy: busyShare(m0, m1),
  };
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};

// ---------------------------------------------------------------------------------------------
// The benchmark

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      'size-mb': { type: 'string', default: process.env.PVC_BENCH_SIZE_MB ?? '2048' },
      'small-files': { type: 'string' }, 'large-files': { type: 'string', default: '4' },
      repeats: { type: 'string', default: '3' }, dir: { type: 'string', default: os.tmpdir() },
      cipher: { type: 'string' }, tsx: { type: 'boolean', default: false }, profile: { type: 'string' },
      keep: { type: 'boolean', default: false }, help: { type: 'boolean', short: 'h', default: false },
    },
  });
  if (values.help) {
    console.log(`usage: npx tsx bench/pvc.bench.ts [options]

  --size-mb N        dataset size in MiB (default 2048, or $PVC_BENCH_SIZE_MB)
  --small-files N    small files (default 20,000 per 2 GiB, scaled with --size-mb)
  --large-files N    large files sharing the rest of the size (default 4)
  --repeats N        full copies per path and incremental rounds (default 3)
  --dir DIR          where the dataset and the copies go (default the system temp dir)
  --cipher NAME      pin the SSH cipher of both OpenSSH connections (-o Ciphers=NAME)
  --tsx              run the agents from source through tsx instead of the compiled dist/
  --profile DIR      write V8 CPU profiles of the bastion and the endpoint into DIR
  --keep             keep the dataset and copies (printed path)`);
    return;
  }
  const sizeMiB = Number(values['size-mb']);
  const opts: DatasetOptions = {
    totalBytes: sizeMiB * MiB,
    smallFiles: values['small-files'] ? Number(values['small-files']) : Math.max(10, Math.round((20_000 * sizeMiB) / 2048)),
    largeFiles: Number(values['large-files']),
  };
  const repeats = Number(values.repeats);
  const log = (s: string) => console.error(`[bench] ${s}`);
  try {
    clockTicks = Number((await run('getconf', ['CLK_TCK'])).stdout.trim()) || 100;
  } catch {
    // 100 on every Linux we run on
  }

  const tmp = await fs.promises.mkdtemp(path.join(values.dir, 'drs-pvcbench-'));
  let agents: Agents | undefined;
  try {
    if (!values.tsx) {
      log('compiling (tsc -> dist/)');
      await compile();
    }
    log(`generating ${opts.smallFiles} small files and ${opts.largeFiles} large files, ${sizeMiB} MiB in all, in ${tmp}`);
    let t = performance.now();
    const ds = await generateDataset(path.join(tmp, 'volume'), opts);
    log(`  ${(ds.bytes / 1e6).toFixed(0)} MB in ${((performance.now() - t) / 1000).toFixed(1)} s`);
    agents = await startAgents({ src: ds.root, work: path.join(tmp, 'agent'), runner: values.tsx ? 'tsx' : 'dist', profileDir: values.profile, cipher: values.cipher });
    const idle = { bastion: memoryMiB(agents.bastion.pid).now, endpoint: memoryMiB(agents.endpoint.pid).now };
    const dest = { bastion: path.join(tmp, 'copy-bastion'), direct: path.join(tmp, 'copy-direct') };
    const mbps = (r: CopyResult) => ds.bytes / 1e6 / (r.ms / 1000);
    const line = (r: CopyResult) => `${r.via.padEnd(7)} ${(r.ms / 1000).toFixed(2).padStart(7)} s ${mbps(r).toFixed(0).padStart(5)} MB/s  received ${(r.received / 1e6).toFixed(1)} MB, ${r.filesTransferred} files; CPU s bastion ${r.cpu.bastion.toFixed(2)}, endpoint+rsync ${r.cpu.endpoint.toFixed(2)}; machine busy ${(r.machineBusy * 100).toFixed(0)}%`;

    // 1. Full copies, alternating, into empty folders.
    const full: Record<'bastion' | 'direct', CopyResult[]> = { bastion: [], direct: [] };
    for (let i = 0; i < repeats; i++) {
      for (const via of ['bastion', 'direct'] as const) {
        await fs.promises.rm(dest[via], { recursive: true, force: true });
        const r = await rsyncPull(agents, via, dest[via]);
        full[via].push(r);
        log(`full #${i + 1} ${line(r)}`);
      }
    }
    t = performance.now();
    // Every file's metadata, every large file's and every 10th small file's sha256.
    const sample = new Set([...ds.large, ...ds.small.filter((_, i) => i % 10 === 0)]);
    const diffs = await compareTrees(ds.root, dest.bastion, (rel) => sample.has(rel));
    const diffsDirect = await compareTrees(ds.root, dest.direct, () => false);
    if (diffs.length || diffsDirect.length) throw new Error(`the copy differs from the source:\n${[...diffs, ...diffsDirect].slice(0, 20).join('\n')}`);
    log(`full copies verified (${sample.size} files hashed) in ${((performance.now() - t) / 1000).toFixed(1)} s`);

    // 2. Nothing changed: what walking 20,000 files on both sides costs, the floor of any resync.
    const noop: Record<'bastion' | 'direct', CopyResult[]> = { bastion: [], direct: [] };
    for (let i = 0; i < repeats; i++) {
      for (const via of ['bastion', 'direct'] as const) {
        const r = await rsyncPull(agents, via, dest[via]);
        noop[via].push(r);
        log(`no-op #${i + 1} ${line(r)}`);
      }
    }

    // 3. Incremental rounds: 1% of the files changed, both copies brought up to date.
    const incr: Record<'bastion' | 'direct', CopyResult[]> = { bastion: [], direct: [] };
    let changed: string[] = [];
    for (let i = 0; i < repeats; i++) {
      changed = await changeFiles(ds, 0.01, i + 1);
      for (const via of ['bastion', 'direct'] as const) {
        const r = await rsyncPull(agents, via, dest[via]);
        incr[via].push(r);
        log(`incremental #${i + 1} (${changed.length} files changed) ${line(r)}`);
      }
    }
    const last = new Set(changed);
    const diffsIncr = await compareTrees(ds.root, dest.bastion, (rel) => last.has(rel) || sample.has(rel));
    if (diffsIncr.length) throw new Error(`the incremental copy differs from the source:\n${diffsIncr.slice(0, 20).join('\n')}`);
    log('incremental copy verified');

    const mem = { bastion: memoryMiB(agents.bastion.pid), endpoint: memoryMiB(agents.endpoint.pid) };
    const fb = median(full.bastion.map((r) => r.ms));
    const fd = median(full.direct.map((r) => r.ms));
    const ib = median(incr.bastion.map((r) => r.ms));
    const id = median(incr.direct.map((r) => r.ms));
    const nb = median(noop.bastion.map((r) => r.ms));
    const nd = median(noop.direct.map((r) => r.ms));
    const cpuMed = (rs: CopyResult[], k: 'bastion' | 'endpoint') => median(rs.map((r) => r.cpu[k])).toFixed(1);
    const totalFiles = ds.small.length + ds.large.length;
    const rows: [string, string][] = [
      ['dataset', `${(ds.bytes / 1e6).toFixed(0)} MB: ${ds.small.length} files of 1-64 KiB + ${ds.large.length} of ${(ds.largeBytes / 1e6).toFixed(0)} MB; ${os.cpus().length} cores, load ${os.loadavg().map((x) => x.toFixed(1)).join(' ')}`],
      [`full copy, direct (median of ${repeats})`, `${(fd / 1000).toFixed(2)} s = **${(ds.bytes / 1e6 / (fd / 1000)).toFixed(0)} MB/s** (endpoint CPU ${cpuMed(full.direct, 'endpoint')} s)`],
      [`full copy, through the bastion (median of ${repeats})`, `${(fb / 1000).toFixed(2)} s = **${(ds.bytes / 1e6 / (fb / 1000)).toFixed(0)} MB/s** (bastion CPU ${cpuMed(full.bastion, 'bastion')} s, endpoint ${cpuMed(full.bastion, 'endpoint')} s)`],
      ['throughput bastion / direct', `**${(fd / fb).toFixed(2)}x** (goal >= 0.9x)`],
      [`incremental, ${changed.length} of ${totalFiles} files changed, through the bastion`, `${(ib / 1000).toFixed(2)} s = **${(ib / fb).toFixed(3)}x the full copy** (goal <= 0.1x); received ${(median(incr.bastion.map((r) => r.received)) / 1e6).toFixed(1)} MB`],
      ['incremental, direct', `${(id / 1000).toFixed(2)} s = ${(id / fd).toFixed(3)}x the full copy`],
      ['no-op resync (nothing changed), through the bastion / direct', `${(nb / 1000).toFixed(2)} s = ${(nb / fb).toFixed(3)}x / ${(nd / 1000).toFixed(2)} s = ${(nd / fd).toFixed(3)}x the full copy`],
      ['peak RSS, bastion process', `**${mem.bastion.peak.toFixed(0)} MB** (idle after start ${idle.bastion.toFixed(0)} MB)`],
      ['peak RSS, endpoint process', `**${mem.endpoint.peak.toFixed(0)} MB** (idle after start ${idle.endpoint.toFixed(0)} MB; rsync senders not included)`],
    ];
    console.log(`agents: ${values.tsx ? 'tsx (source)' : 'compiled dist/'}; cipher: ${values.cipher ?? "OpenSSH's default choice"}; MB = 10^6 bytes`);
    console.log('| | result |\n|---|---|');
    for (const [k, v] of rows) console.log(`| ${k} | ${v} |`);
  } finally {
    await agents?.stop();
    if (values.keep) log(`kept ${tmp}`);
    else await fs.promises.rm(tmp, { recursive: true, force: true });
  }
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) await main();
