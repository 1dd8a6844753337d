// The demo: local source and DR clusters (real kube-apiserver, etcd, kube-controller-manager),
// a local Git server, the CRDs and examples installed, one `dr-syncer sync` into the DR
// repository, the repository applied to the DR cluster as Argo CD or Flux would, and the state
// printed. Everything runs on loopback and is stopped at the end (--keep leaves it running).
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { fileURLToPath } from 'node:url';
import { kubectl, startClusters } from '../../test/env/cluster.ts';
import { startGitServer } from '../../test/env/git-server.ts';

const run = promisify(execFile);
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const keep = process.argv.includes('--keep');
if (process.argv.includes('--help')) {
  console.log('usage: bash scripts/demo/run [--keep]\n\nStarts local source and DR clusters and a Git server, replicates a demo app, prints the state.');
  process.exit(0);
}
const step = (s: string) => console.log(`\n\x1b[1m== ${s}\x1b[0m`);

step('starting source and DR clusters and a Git server on loopback');
const t0 = Date.now();
const [[src, dr], git] = await Promise.all([startClusters(2), startGitServer()]);
console.log(`source ${src!.server}   DR ${dr!.server}   git ${git.base.replace(/\/\/.*@/, '//')}   (${((Date.now() - t0) / 1000).toFixed(1)}s)`);
try {
  const repo = await git.createRepo('dr-cluster');
  step('installing the CRDs and the examples (source cluster, where the controller runs)');
  await kubectl(src!.kubeconfigPath, ['apply', '--server-side', '-f', path.join(root, 'crds')]);
  await kubectl(src!.kubeconfigPath, ['wait', '--for=condition=Established', 'crd/replications.dr-syncer.io', 'crd/remoteclusters.dr-syncer.io']);
  await kubectl(src!.kubeconfigPath, ['create', 'namespace', 'dr-syncer']);
  const examples = (await fs.promises.readdir(path.join(root, 'examples'))).filter((f) => f.endsWith('.yaml')).map((f) => path.join(root, 'examples', f));
  for (const f of examples) await kubectl(src!.kubeconfigPath, ['apply', '-f', f]);
  console.log((await kubectl(src!.kubeconfigPath, ['get', 'remoteclusters,replications', '-n', 'dr-syncer'])).stdout);

  step('the application in the source cluster');
  await kubectl(src!.kubeconfigPath, ['apply', '-f', path.join(root, 'scripts/demo/shop.yaml')]);
  console.log((await kubectl(src!.kubeconfigPath, ['get', 'deploy,sts,svc,cm,secret,pvc,cronjob', '-n', 'shop'])).stdout);

  step('dr-syncer sync: source cluster -> DR Git repository');
  const cli = await run(process.execPath, ['--import', 'tsx', path.join(root, 'src/cli/main.ts'), 'sync', '-f', path.join(root, 'scripts/demo/replication.yaml'),
    '--source-kubeconfig', src!.kubeconfigPath, '--repo', repo, '--cache-dir', path.join(src!.dir, 'git-cache')], {
    env: { ...process.env, DR_SYNCER_GIT_USERNAME: git.user, DR_SYNCER_GIT_PASSWORD: git.password }, cwd: root,
  });
  console.log(cli.stdout);

  step('the commit in the DR repository');
  const clone = await git.clone('dr-cluster');
  console.log(await git.git(['log', '--stat', '-1'], clone));

  step('Argo CD / Flux view: kubectl apply --server-side -k clusters/dr into the DR cluster');
  console.log((await kubectl(dr!.kubeconfigPath, ['apply', '--server-side', '-k', path.join(clone, 'clusters/dr')])).stdout);
  console.log((await kubectl(dr!.kubeconfigPath, ['get', 'deploy,sts,svc,cm,pvc,cronjob', '-n', 'shop'])).stdout);
  console.log('Deployments and StatefulSets wait at 0 replicas (original count in dr-syncer.io/original-replicas), the CronJob is suspended,');
  console.log('the Secret stayed out of Git (secrets.mode Omit), the PVC asks for storage class "standard".');
  if (keep) {
    console.log(`\nkept running: source kubeconfig ${src!.kubeconfigPath}\n              DR kubeconfig     ${dr!.kubeconfigPath}\nCtrl-C stops everything.`);
    await new Promise((resolve) => process.once('SIGINT', resolve));
  }
} finally {
  await Promise.all([src!.stop(), dr!.stop(), git.stop()]);
}
