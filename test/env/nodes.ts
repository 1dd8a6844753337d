// Real nodes for the test clusters (issue 9): per node one containerd (own root, state, socket)
// and one kubelet, so pods created by controllers actually run. The recipe and the settings this
// sandbox needs are in shared/research/realnodes.md; each setting below says why it is there.
//
// Network: a node's name and kubelet address are a loopback literal (127.0.0.<i+1>), which the
// API server uses to reach the kubelet (logs, exec). Pods get their own network namespaces on
// a Linux bridge per node that this harness creates (10.<X>.<i>.0/24, no NAT, no iptables rules,
// and pods get no default route: they reach only the test clusters' bridges). The bridge's address
// is the node's InternalIP (kubelet refuses a loopback --node-ip), so hostNetwork pods have
// that IP. Pods reach every node's address, in this and other test clusters (each is a local
// address of this host), and the pods of their own node; pod-to-pod across nodes would need
// ip_forward, which we leave off.
// There is no kube-proxy and no DNS: pods that call the API need hostNetwork and
// KUBERNETES_SERVICE_HOST/PORT pointing at the loopback API server.
//
// Not realistic here: oom_score_adj is clamped (restrict_oom_score_adj), so QoS OOM ordering is
// not what a real node does; cgroupsPerQOS is off, so no pod-level cgroup limits.
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, rmSync, rmdirSync } from 'node:fs';
import { chmod, mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';

export interface TestNode {
  /** Node name, also the kubelet's address: 127.0.0.<index+1>. */
  name: string;
  /** The node's InternalIP: the address of its pod bridge (hostNetwork pods have this IP). */
  internalIP: string;
  /** Pod CIDR of this node's bridge. */
  podCIDR: string;
  dir: string;
  containerdSocket: string;
  kubeletPort: number;
  /** Local PVs of this node: name -> host directory (what a pod writes there shows up here). */
  pvs: Map<string, string>;
}

export interface NodeNet {
  /** Second octet of 10.X.0.0/16, free on this host when chosen. */
  x: number;
}

const usedX = new Set<number>();
/** Covers every 10.X.0.0/16 that allocateNet hands out (X in 200..249). */
const ALL_CLUSTERS = '10.192.0.0/10';

/** A 10.X.0.0/16 that no route on this host uses yet (and no other cluster of this process). */
export function allocateNet(): NodeNet {
  const routes = spawnSync('ip', ['-4', 'route', 'show'], { encoding: 'utf8' }).stdout ?? '';
  for (let tries = 0; tries < 200; tries++) {
    const x = 200 + Math.floor(Math.random() * 50);
    if (usedX.has(x) || routes.includes(`10.${x}.`)) continue;
    usedX.add(x);
    return { x };
  }
  throw new Error('no free 10.X.0.0/16 for the node bridges');
}

export function releaseNet(net: NodeNet): void {
  usedX.delete(net.x);
}

/** Linux interface names have at most 15 characters: drs<5 hex of the cluster dir>n<i>. */
export function bridgeName(clusterDir: string, i: number): string {
  let h = 0;
  for (const c of clusterDir) h = (h * 31 + c.charCodeAt(0)) >>> 0;
  return `drs${(h & 0xfffff).toString(16).padStart(5, '0')}n${i}`;
}

function ip(args: string[]): void {
  const res = spawnSync('ip', args, { encoding: 'utf8' });
  if (res.status !== 0) throw new Error(`ip ${args.join(' ')} failed: ${(res.stderr ?? '').trim()}`);
}

export interface NodeLayout {
  node: TestNode;
  bridge: string;
  containerdConfig: string;
  kubeletConfig: string;
  kubeletArgs: string[];
}

/**
 * Writes a node's configuration and creates its bridge (recorded in <node>/bridge, so stop and
 * `down` delete it). i counts from 1.
 */
export async function prepareNode(opts: {
  clusterDir: string;
  i: number;
  net: NodeNet;
  kubeconfigPath: string;
  caFile: string;
  pauseRef: string;
  kubeletPort: number;
  healthzPort: number;
  pvsPerNode: number;
  clusterName: string;
}): Promise<NodeLayout> {
  const { clusterDir, i, net } = opts;
  const dir = path.join(clusterDir, 'nodes', String(i));
  const name = `127.0.0.${i + 1}`;
  const internalIP = `10.${net.x}.${i}.1`;
  const podCIDR = `10.${net.x}.${i}.0/24`;
  const cd = path.join(dir, 'containerd');
  const socket = path.join(cd, 'state', 'containerd.sock');
  if (socket.length > 100) throw new Error(`${socket} is too long for a unix socket; use a shorter cluster dir`);
  for (const d of ['containerd/root', 'containerd/state', 'containerd/opt', 'cni/net.d', 'cni/ipam', 'kubelet', 'pod-logs', 'volume-plugins', 'pv']) {
    await mkdir(path.join(dir, d), { recursive: true });
  }

  // The bridge exists before the kubelet starts, because its address is the node's InternalIP;
  // the CNI bridge plugin then finds it and adds the pods' veths to it.
  const bridge = bridgeName(clusterDir, i);
  await writeFile(path.join(dir, 'bridge'), `${bridge}\n`);
  // A leftover of a killed run in this dir was removed by clearDir (from its bridge file); never
  // delete a bridge we did not record.
  if (existsSync(`/sys/class/net/${bridge}`)) throw new Error(`bridge ${bridge} already exists (another test cluster?)`);
  ip(['link', 'add', 'name', bridge, 'type', 'bridge']);
  ip(['addr', 'add', `${internalIP}/24`, 'dev', bridge]);
  ip(['link', 'set', bridge, 'up']);

  await writeFile(
    path.join(dir, 'cni', 'net.d', '10-bridge.conflist'),
    JSON.stringify(
      {
        cniVersion: '0.4.0',
        name: `drs-${opts.clusterName}-${i}`.replace(/[^A-Za-z0-9_.-]/g, '_'),
        plugins: [
          {
            type: 'bridge',
            bridge,
            isGateway: true,
            ipMasq: false, // no NAT, hence no iptables rules to clean up
            hairpinMode: true,
            ipam: {
              type: 'host-local',
              dataDir: path.join(dir, 'cni', 'ipam'), // not /var/lib/cni: nothing host-wide
              ranges: [[{ subnet: podCIDR, gateway: internalIP }]],
              // No default route: pods reach the node addresses of every test cluster on this
              // host (10.200-249.*.1, see allocateNet: a DR cluster's Job reaches a source
              // cluster's agent) and the pods of their own node, nothing else.
              routes: [{ dst: ALL_CLUSTERS }],
            },
          },
        ],
      },
      null,
      2,
    ),
  );

  const containerdConfig = path.join(dir, 'containerd.toml');
  const q = JSON.stringify; // TOML basic strings accept JSON string escapes for our paths
  await writeFile(
    containerdConfig,
    `version = 2
root = ${q(path.join(cd, 'root'))}
state = ${q(path.join(cd, 'state'))}
# Snapshotters this machine cannot use only log errors.
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper"]

[grpc]
  address = ${q(socket)}
[ttrpc]
  address = ""
[debug]
  address = ""
[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = ${q(path.join(cd, 'opt'))}
[plugins."io.containerd.grpc.v1.cri"]
  # No registry is reachable: the pause image is built locally and imported at start.
  sandbox_image = ${q(opts.pauseRef)}
  # Lowering oom_score_adj is not permitted here; without this every pod fails with
  # "can't get final child's PID from pipe: EOF".
  restrict_oom_score_adj = true
  # Pod network namespaces under our state dir, not /var/run/netns.
  netns_mounts_under_state_dir = true
  disable_apparmor = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        # No systemd here; crun refuses the hybrid cgroup layout, runc with cgroupfs works.
        SystemdCgroup = false
        # runc's state under ours, not /run/containerd/runc.
        Root = ${q(path.join(cd, 'state', 'runc'))}
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = ${q(path.join(dir, 'cni', 'net.d'))}
`,
  );

  const kubeletConfig = path.join(dir, 'kubelet.yaml');
  await writeFile(
    kubeletConfig,
    JSON.stringify(
      {
        apiVersion: 'kubelet.config.k8s.io/v1beta1',
        kind: 'KubeletConfiguration',
        address: name,
        port: opts.kubeletPort,
        readOnlyPort: 0,
        healthzBindAddress: name,
        healthzPort: opts.healthzPort,
        // Test only: the API server reaches the kubelet without a client cert (logs, exec).
        authentication: { anonymous: { enabled: true }, webhook: { enabled: false }, x509: { clientCAFile: opts.caFile } },
        authorization: { mode: 'AlwaysAllow' },
        cgroupDriver: 'cgroupfs',
        cgroupsPerQOS: false,
        enforceNodeAllocatable: [],
        failSwapOn: false,
        containerRuntimeEndpoint: `unix://${socket}`,
        // Image GC would delete the imported images (nothing can be pulled back); no eviction.
        imageGCHighThresholdPercent: 100,
        imageGCLowThresholdPercent: 99,
        evictionHard: {},
        // No KUBE-* chains in the host's iptables.
        makeIPTablesUtilChains: false,
        podLogsDir: path.join(dir, 'pod-logs'),
        serializeImagePulls: false,
        registerNode: true,
        // Faster status for tests (defaults: 10s / 5m).
        nodeStatusUpdateFrequency: '2s',
        nodeStatusReportFrequency: '10s',
        syncFrequency: '10s',
      },
      null,
      2,
    ),
  );
  const kubeletArgs = [
    `--config=${kubeletConfig}`,
    // The admin kubeconfig (system:masters): test clusters run RBAC without the Node authorizer.
    `--kubeconfig=${opts.kubeconfigPath}`,
    `--hostname-override=${name}`,
    `--node-ip=${internalIP}`,
    `--root-dir=${path.join(dir, 'kubelet')}`,
    `--cert-dir=${path.join(dir, 'kubelet', 'pki')}`,
    `--volume-plugin-dir=${path.join(dir, 'volume-plugins')}`,
    '--v=0',
  ];

  const pvs = new Map<string, string>();
  for (let k = 1; k <= opts.pvsPerNode; k++) {
    const pvDir = path.join(dir, 'pv', `pv-${k}`);
    await mkdir(pvDir, { recursive: true });
    // World-writable like a fresh volume that any pod user may write (our images run non-root).
    await chmod(pvDir, 0o777);
    pvs.set(`local-n${i}-${k}`, pvDir);
  }
  return {
    node: { name, internalIP, podCIDR, dir, containerdSocket: socket, kubeletPort: opts.kubeletPort, pvs },
    bridge,
    containerdConfig,
    kubeletConfig,
    kubeletArgs,
  };
}

/** ctr against one node's containerd, in the CRI's namespace. */
export function ctr(socket: string, args: string[]): { code: number; stdout: string; stderr: string } {
  const res = spawnSync('ctr', ['--address', socket, '--namespace', 'k8s.io', ...args], { encoding: 'utf8', maxBuffer: 64 << 20 });
  return { code: res.status ?? 1, stdout: res.stdout ?? '', stderr: res.stderr ?? '' };
}

/** The StorageClass and local PVs (one directory each) that PVCs bind to through the real PV controller. */
export function storageManifests(nodes: TestNode[], size = '1Gi'): string {
  const docs: object[] = [
    {
      apiVersion: 'storage.k8s.io/v1',
      kind: 'StorageClass',
      metadata: { name: 'local', annotations: { 'storageclass.kubernetes.io/is-default-class': 'true' } },
      provisioner: 'kubernetes.io/no-provisioner',
      // The scheduler picks the node, then the PV controller binds a PV of that node.
      volumeBindingMode: 'WaitForFirstConsumer',
      reclaimPolicy: 'Retain',
    },
  ];
  for (const n of nodes) {
    for (const [name, dir] of n.pvs) {
      docs.push({
        apiVersion: 'v1',
        kind: 'PersistentVolume',
        metadata: { name, labels: { 'dr-syncer.io/test-node': n.name } },
        spec: {
          capacity: { storage: size },
          accessModes: ['ReadWriteOnce'],
          persistentVolumeReclaimPolicy: 'Retain',
          storageClassName: 'local',
          local: { path: dir },
          nodeAffinity: {
            required: { nodeSelectorTerms: [{ matchExpressions: [{ key: 'kubernetes.io/hostname', operator: 'In', values: [n.name] }] }] },
          },
        },
      });
    }
  }
  return docs.map((d) => JSON.stringify(d)).join('\n---\n') + '\n';
}

// ---------------------------------------------------------------------------------------------
// Cleanup, synchronous so that it also runs from exit and signal handlers. Call it after the
// kubelets are gone (a live kubelet restarts what we kill) and before removing the cluster dir.

function pidIn(file: string): number | undefined {
  try {
    const pid = Number.parseInt(readFileSync(file, 'utf8').trim(), 10);
    return Number.isInteger(pid) && pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}

function cmdline(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8');
  } catch {
    return '';
  }
}

function kill(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch {
    // gone
  }
}

function taskDirs(nodeDir: string): string[] {
  const base = path.join(nodeDir, 'containerd', 'state', 'io.containerd.runtime.v2.task', 'k8s.io');
  try {
    return readdirSync(base).map((id) => path.join(base, id));
  } catch {
    return [];
  }
}

/** Node dirs of a cluster dir (none when it has no nodes). */
export function nodeDirs(clusterDir: string): string[] {
  const base = path.join(clusterDir, 'nodes');
  try {
    return readdirSync(base).map((n) => path.join(base, n));
  } catch {
    return [];
  }
}

/**
 * Container and shim processes a node's containerd left (its shims outlive it by design).
 * Shims are found by the containerd socket they serve, a path inside this node's dir (1.6 keeps
 * no shim.pid); containers by the init.pid files in containerd's state, when their parent is
 * one of those shims (so a reused PID is never killed).
 */
export function containerPids(nodeDir: string): { containers: number[]; shims: number[] } {
  const socket = path.join(nodeDir, 'containerd', 'state', 'containerd.sock');
  const shims: number[] = [];
  for (const e of readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    const argv = cmdline(Number(e)).split('\0');
    if (!path.basename(argv[0] ?? '').startsWith('containerd-shim')) continue;
    const a = argv.indexOf('-address');
    if (a >= 0 && argv[a + 1] === socket) shims.push(Number(e));
  }
  const containers: number[] = [];
  for (const t of taskDirs(nodeDir)) {
    const init = pidIn(path.join(t, 'init.pid'));
    if (init !== undefined && shims.includes(ppid(init) ?? -1)) containers.push(init);
  }
  return { containers, shims };
}

function ppid(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return Number.parseInt(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1] ?? '', 10);
  } catch {
    return undefined;
  }
}

/** Mount points at or below dir, deepest first. */
export function mountsUnder(dir: string): string[] {
  const prefix = path.resolve(dir) + '/';
  const out: string[] = [];
  for (const line of readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
    const mp = line.split(' ')[4];
    if (mp === undefined) continue;
    const p = mp.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(Number.parseInt(o, 8)));
    if (p.startsWith(prefix)) out.push(p);
  }
  return out.sort((a, b) => b.length - a.length);
}

function waitGone(pids: number[], ms: number): void {
  const sleeper = new Int32Array(new SharedArrayBuffer(4));
  const deadline = Date.now() + ms;
  while (Date.now() < deadline && pids.some((p) => existsSync(`/proc/${p}`) && !isZombie(p))) Atomics.wait(sleeper, 0, 0, 20);
}

function isZombie(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) === 'Z';
  } catch {
    return true;
  }
}

/** Container ids of a node, for their cgroups (runc names them after the container). */
function containerIds(nodeDir: string): string[] {
  return taskDirs(nodeDir).map((t) => path.basename(t));
}

/**
 * Kills the containers and shims of every node in clusterDir (by the pid files containerd
 * keeps), and returns the ids whose cgroups to remove once containerd is gone too.
 */
export function killContainersSync(clusterDir: string): string[] {
  const ids: string[] = [];
  const all: number[] = [];
  const sockets: string[] = [];
  for (const nd of nodeDirs(clusterDir)) {
    const { containers, shims } = containerPids(nd);
    ids.push(...containerIds(nd));
    for (const t of taskDirs(nd)) {
      // containerd 1.6 puts shim sockets in /run/containerd/s/<sha256> whatever its state dir;
      // a killed shim leaves its socket there.
      try {
        const m = /^unix:\/\/(\/run\/containerd\/s\/[0-9a-f]{64})$/.exec(readFileSync(path.join(t, 'address'), 'utf8').trim());
        if (m?.[1]) sockets.push(m[1]);
      } catch {
        // no address file
      }
    }
    for (const p of containers) kill(p, 'SIGKILL');
    waitGone(containers, 3_000);
    for (const p of shims) kill(p, 'SIGKILL');
    all.push(...containers, ...shims);
  }
  waitGone(all, 3_000);
  for (const s of sockets) rmSync(s, { force: true });
  return ids;
}

/**
 * After every node process is gone: unmounts what is left under clusterDir (pod volumes, netns,
 * container rootfs, shm), deletes the bridges and the containers' cgroups. Returns what it could
 * not clean (empty when all is gone), so the caller never removes a dir with mounts under it.
 */
export function cleanupNodesSync(clusterDir: string, containerIdsToClean: string[] = []): string[] {
  const problems: string[] = [];
  for (const mp of mountsUnder(clusterDir)) {
    // Busy (a process we do not own still uses it): detach it, it goes when released. A failure
    // can also mean it went away meanwhile, hence the check below.
    if (spawnSync('umount', [mp], { stdio: 'ignore' }).status !== 0) spawnSync('umount', ['-l', mp], { stdio: 'ignore' });
  }
  for (const mp of mountsUnder(clusterDir)) problems.push(`mount ${mp}`);
  for (const nd of nodeDirs(clusterDir)) {
    let bridge: string;
    try {
      bridge = readFileSync(path.join(nd, 'bridge'), 'utf8').trim();
    } catch {
      continue;
    }
    if (!/^drs[0-9a-f]{5}n\d+$/.test(bridge)) continue; // only names we make
    if (existsSync(`/sys/class/net/${bridge}`)) {
      const res = spawnSync('ip', ['link', 'del', bridge], { encoding: 'utf8' });
      if (res.status !== 0) problems.push(`bridge ${bridge}: ${(res.stderr ?? '').trim()}`);
    }
  }
  for (const id of containerIdsToClean) removeCgroups(id);
  removeCniResults(containerIdsToClean);
  return problems;
}

/**
 * containerd 1.6 has libcni cache each pod's network result in /var/lib/cni/results
 * (<network>-<sandbox id>-<ifname>, not configurable); a pod never torn down leaves its files.
 */
function removeCniResults(ids: string[]): void {
  const dir = '/var/lib/cni/results';
  let files: string[];
  try {
    files = readdirSync(dir);
  } catch {
    return;
  }
  const ours = new Set(ids.filter((id) => /^[0-9a-f]{64}$/.test(id)));
  for (const f of files) {
    const m = /-([0-9a-f]{64})-[A-Za-z0-9]+$/.exec(f);
    if (m?.[1] && ours.has(m[1])) rmSync(path.join(dir, f), { force: true });
  }
}

/** runc (cgroupfs, no parent) makes /<id> in each v1 hierarchy; a killed shim leaves them. */
function removeCgroups(id: string): void {
  if (!/^[0-9a-f]{64}$/.test(id)) return;
  let hierarchies: string[];
  try {
    hierarchies = readdirSync('/sys/fs/cgroup');
  } catch {
    return;
  }
  for (const h of hierarchies) {
    for (const d of [path.join('/sys/fs/cgroup', h, id), path.join('/sys/fs/cgroup', h, 'k8s.io', id)]) {
      try {
        rmdirSync(d);
      } catch {
        // not there, or not empty yet
      }
    }
  }
}
