// `npm run testenv -- up <dir>` / `down <dir>`: a real loopback control plane (etcd,
// kube-apiserver, kube-controller-manager) that outlives this command, for manual work and demos.
import path from 'node:path';
import { startCluster, stopDetached } from './cluster.ts';

const USAGE = `usage: npm run testenv -- <command> <dir>

  up <dir>     start etcd, kube-apiserver and kube-controller-manager on free loopback ports,
               detached from this command; state, logs and pids go to <dir>, the admin
               kubeconfig to <dir>/kubeconfig. <dir> must be new, empty or a stopped test cluster.
  down <dir>   stop the cluster in <dir> by its pid files and remove <dir>
               (KEEP_TESTENV=1 keeps it).
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
  if (dirArg === undefined || rest.length > 0) {
    console.error(`testenv: "${cmd}" takes exactly one <dir>\n\n${USAGE}`);
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
  });
  console.log(`testenv: cluster "${c.name}" is up in ${((Date.now() - t0) / 1000).toFixed(1)}s at ${c.server}

  kubeconfig  ${c.kubeconfigPath}
  logs, pids  ${c.dir}/*.log, ${c.dir}/*.pid

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
