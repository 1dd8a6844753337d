// `npm run testenv -- up <dir> [--nodes N]` / `down <dir>`: a real loopback control plane (etcd,
// kube-apiserver, kube-controller-manager; with --nodes also kube-scheduler and N real nodes)
// that outlives this command, for manual work and demos.
import path from 'node:path';
import { startCluster, stopDetached } from './cluster.ts';

const USAGE = `usage: npm run testenv -- <command> <dir> [options]

  up <dir> [--nodes N]
               start etcd, kube-apiserver and kube-controller-manager on free loopback ports,
               detached from this command; state, logs and pids go to <dir>, the admin
               kubeconfig to <dir>/kubeconfig. <dir> must be new, empty or a stopped test cluster.
               --nodes N: also kube-scheduler and N real nodes (containerd + kubelet each, named
               127.0.0.2, 127.0.0.3, ...), a default StorageClass "local" and local PVs backed
               by <dir>/nodes/<i>/pv/*. Import images with
               ctr --address <dir>/nodes/<i>/containerd/state/containerd.sock -n k8s.io images import <oci archive>
               (test/env/build-images.sh builds them).
  down <dir>   stop the cluster in <dir> by its pid files (containers too), unmount and delete
               what its nodes left, and remove <dir> (KEEP_TESTENV=1 keeps it).
  --help       this text

options (env): KUBEBUILDER_ASSETS=<folder with kube-apiserver, etcd>  use prebuilt binaries
               UP_NO_KCM=1                                           skip kube-controller-manager

binaries are built (once, cached in ~/.cache/dr-syncer) by test/env/build-bins.sh.`;

async function main(argv: string[]): Promise<number> {
  if (argv.length === 0 || argv.includes('--help') || argv.includes('-h') || argv[0] === 'help') {
    (argv.length === 0 ? console.error : console.log)(USAGE);
    return argv.length === 0 ? 2 : 0;
  }
  const [cmd, dirArg, ...rest] = argv;
  if (cmd !== 'up' && cmd !== 'down') {
    console.error(`testenv: unknown command "${cmd}"\n\n${USAGE}`);
    return 2;
  }
  let nodes = 0;
  if (cmd === 'up' && (rest[0] === '--nodes' || rest[0]?.startsWith('--nodes='))) {
    const value = rest[0] === '--nodes' ? rest[1] : rest[0].slice('--nodes='.length);
    nodes = /^\d+$/.test(value ?? '') ? Number(value) : -1;
    if (nodes < 0 || nodes > 50) {
      console.error(`testenv: --nodes takes a number from 0 to 50\n\n${USAGE}`);
      return 2;
    }
    rest.splice(0, rest[0] === '--nodes' ? 2 : 1);
  }
  if (dirArg === undefined || dirArg.startsWith('--') || rest.length > 0) {
    console.error(`testenv: "${cmd}" takes one <dir>${cmd === 'up' ? ' and optionally --nodes N' : ''}\n\n${USAGE}`);
    return 2;
  }
  // npm run changes the cwd to the package root; resolve against where the user typed it.
  const dir = path.resolve(process.env.INIT_CWD ?? process.cwd(), dirArg);

  if (cmd === 'down') {
    await stopDetached(dir);
    console.log(`testenv: stopped the cluster in ${dir}`);
    return 0;
  }

  const t0 = Date.now();
  const c = await startCluster({
    dir,
    name: path.basename(dir),
    detached: true,
    controllerManager: process.env.UP_NO_KCM !== '1',
    nodes,
  });
  const nodeLines = c.nodes.map((n) => `  node        ${n.name} (InternalIP ${n.internalIP}), containerd ${n.containerdSocket}`).join('\n');
  console.log(`testenv: cluster "${c.name}" is up in ${((Date.now() - t0) / 1000).toFixed(1)}s at ${c.server}

  kubeconfig  ${c.kubeconfigPath}
  logs, pids  ${c.dir}/*.log, ${c.dir}/*.pid
${nodeLines === '' ? '' : nodeLines + '\n'}
  export KUBECONFIG=${c.kubeconfigPath}
  kubectl get ns

  stop it:    npm run testenv -- down ${dirArg}`);
  return 0;
}

main(process.argv.slice(2)).then(
  // Exit explicitly: the detached children are unref'd, but do not wait on anything else either.
  (code) => process.exit(code),
  (err: unknown) => {
    console.error(`testenv: ${err instanceof Error ? err.message : String(err)}`);
    process.exit(1);
  },
);
