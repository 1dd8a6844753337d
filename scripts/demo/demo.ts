// The demo: local source and DR clusters (real kube-apiserver, etcd, kube-controller-manager),
// a local Git server, the CRDs and examples installed, one `dr-syncer sync` into the DR
// repository, the repository applied to the DR cluster as Argo CD or Flux would, the operator
// following a live change, and the state printed. Everything runs on loopback and is stopped at the end (--keep leaves it running).
import { execFile, spawn } from 'node:child_process';
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

  step('the operator: dr-syncer controller with a Continuous Replication');
  await kubectl(src!.kubeconfigPath, ['-n', 'dr-syncer', 'create', 'secret', 'generic', 'demo-git', `--from-literal=username=${git.user}`, `--from-literal=password=${git.password}`]);
  const ctl = spawn(process.execPath, ['--import', 'tsx', path.join(root, 'src/cli/main.ts'), 'controller', '--kubeconfig', src!.kubeconfigPath,
    '--metrics-bind-address', '127.0.0.1:0', '--health-probe-bind-address', '127.0.0.1:0', '--cache-dir', path.join(src!.dir, 'ctl-cache'), '--cluster-name', 'prod'],
  { stdio: ['ignore', 'ignore', fs.openSync(path.join(src!.dir, 'controller.log'), 'w')], cwd: root });
  try {
    await kubectl(src!.kubeconfigPath, ['apply', '-f', '-'], {
      input: JSON.stringify({
        apiVersion: 'dr-syncer.io/v1alpha1', kind: 'Replication', metadata: { name: 'shop-live', namespace: 'dr-syncer' },
        spec: { sourceNamespace: 'shop', mode: 'Continuous', git: { url: repo, path: 'clusters/dr-live', credentialsSecretRef: { name: 'demo-git' } } },
      }),
    });
    await kubectl(src!.kubeconfigPath, ['-n', 'dr-syncer', 'wait', '--for=condition=Ready', 'replication/shop-live', '--timeout=60s']);
    console.log('scaling web to 5 in the source cluster...');
    await kubectl(src!.kubeconfigPath, ['-n', 'shop', 'scale', 'deployment', 'web', '--replicas=5']);
    const t0 = Date.now();
    let annotation = '';
    while (Date.now() - t0 < 30_000) {
      const c = await git.clone('dr-cluster');
      const f = path.join(c, 'clusters/dr-live/shop/deployment.apps-web.yaml');
      annotation = fs.existsSync(f) ? (/original-replicas: "(\d+)"/.exec(await fs.promises.readFile(f, 'utf8'))?.[1] ?? '') : '';
      if (annotation === '5') break;
      await new Promise((r) => setTimeout(r, 300));
    }
    console.log(`the DR repository recorded original-replicas=${annotation} ${((Date.now() - t0) / 1000).toFixed(1)} s later`);
    console.log((await kubectl(src!.kubeconfigPath, ['get', 'replications', '-n', 'dr-syncer', 'shop-live'])).stdout);
    console.log(await git.git(['log', '--oneline', '-3'], await git.clone('dr-cluster')));
  } finally {
    ctl.kill('SIGTERM');
  }
  if (keep) {
    console.log(`\nkept running: source kubeconfig ${src!.kubeconfigPath}\n              DR kubeconfig     ${dr!.kubeconfigPath}\nCtrl-C stops everything.`);
    await new Promise((resolve) => process.once('SIGINT', resolve));
  }
} finally {
  await Promise.all([src!.stop(), dr!.stop(), git.stop()]);
}
