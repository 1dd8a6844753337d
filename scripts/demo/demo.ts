// The demo: local source and DR clusters (real kube-apiserver, etcd, kube-controller-manager),
// a local Git server, the CRDs and examples installed, one `dr-syncer sync` into the DR
// repository, the repository applied to the DR cluster as Argo CD or Flux would, the operator
// following a live change, PVC data of a StatefulSet copied through the agent on real nodes
// (kubelet + containerd), and the state printed. Everything runs on loopback and is stopped at
// the end (--keep leaves it running).
import { execFile, spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { fileURLToPath } from 'node:url';
import { kubectl, startClusters } from '../../test/env/cluster.ts';
import { startGitServer } from '../../test/env/git-server.ts';
import { buildImage } from '../../test/env/images.ts';

const run = promisify(execFile);
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const keep = process.argv.includes('--keep');
if (process.argv.includes('--help')) {
  console.log('usage: bash scripts/demo/run [--keep]\n\nStarts local source and DR clusters and a Git server, replicates a demo app, prints the state.');
  process.exit(0);
}
const step = (s: string) => console.log(`\n\x1b[1m== ${s}\x1b[0m`);

step('starting source and DR clusters (one real node each) and a Git server on loopback; building the agent image');
const t0 = Date.now();
const [[src, dr], git, agentImage] = await Promise.all([startClusters(2, { nodes: 1, pvsPerNode: 2 }), startGitServer(), buildImage('agent', 'agent/Dockerfile')]);
await Promise.all([src!.loadImage(agentImage), dr!.loadImage(agentImage)]);
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
    '--metrics-bind-address', '127.0.0.1:0', '--health-probe-bind-address', '127.0.0.1:0', '--cache-dir', path.join(src!.dir, 'ctl-cache'), '--cluster-name', 'prod',
    // The demo's nodes have no registry and no kube-proxy: the locally built image, and the API address for the agent pods.
    '--agent-image', agentImage.ref, '--agent-image-pull-policy', 'Never', ...src!.podApiEnv.flatMap((e) => ['--agent-pod-env', `${e.name}=${e.value}`])],
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

    step('PVC data: a StatefulSet\'s volume, copied through the agent on the source node');
    await kubectl(src!.kubeconfigPath, ['apply', '-f', '-'], { input: JSON.stringify(notesStatefulSet(agentImage.ref)) });
    await kubectl(src!.kubeconfigPath, ['-n', 'shop', 'rollout', 'status', 'statefulset/notes', '--timeout=120s']);
    // The DR PVC as the DR repository defines it (Argo CD / Flux would apply it).
    await kubectl(dr!.kubeconfigPath, ['apply', '-f', '-'], { input: JSON.stringify({ apiVersion: 'v1', kind: 'PersistentVolumeClaim', metadata: { name: 'data-notes-0', namespace: 'shop' }, spec: { accessModes: ['ReadWriteOnce'], storageClassName: 'local', resources: { requests: { storage: '1Gi' } } } }) });
    // Two RemoteClusters for the demo's own clusters: the source with the PVC agents, the DR one.
    for (const [name, c] of [['demo-source', src!], ['demo-dr', dr!]] as const) {
      await kubectl(src!.kubeconfigPath, ['-n', 'dr-syncer', 'create', 'secret', 'generic', `${name}-kubeconfig`, `--from-file=kubeconfig=${c.kubeconfigPath}`]);
    }
    await kubectl(src!.kubeconfigPath, ['apply', '-f', '-'], {
      input: [
        { apiVersion: 'dr-syncer.io/v1alpha1', kind: 'RemoteCluster', metadata: { name: 'demo-source', namespace: 'dr-syncer' }, spec: { kubeconfigSecretRef: { name: 'demo-source-kubeconfig' }, pvcSync: { enabled: true } } },
        { apiVersion: 'dr-syncer.io/v1alpha1', kind: 'RemoteCluster', metadata: { name: 'demo-dr', namespace: 'dr-syncer' }, spec: { kubeconfigSecretRef: { name: 'demo-dr-kubeconfig' } } },
      ].map((o) => JSON.stringify(o)).join('\n---\n'),
    });
    await kubectl(src!.kubeconfigPath, ['apply', '-f', '-'], {
      input: JSON.stringify({
        apiVersion: 'dr-syncer.io/v1alpha1', kind: 'Replication', metadata: { name: 'shop-data', namespace: 'dr-syncer' },
        spec: { sourceCluster: 'demo-source', destinationCluster: 'demo-dr', sourceNamespace: 'shop', mode: 'Manual', resourceTypes: ['persistentvolumeclaims'], labelSelector: { matchLabels: { app: 'notes' } }, git: { url: repo, path: 'clusters/dr-data', credentialsSecretRef: { name: 'demo-git' } }, pvc: { syncData: true }, trigger: { manual: 'demo' } },
      }),
    });
    const t1 = Date.now();
    let status: { dataSync?: { phase?: string; message?: string }; pvcs?: { namespace: string; name: string; phase?: string; bytesTransferred?: number; filesTransferred?: number; lastSyncDuration?: string; lastExitCode?: number; message?: string }[] } = {};
    while (Date.now() - t1 < 240_000) {
      status = (JSON.parse((await kubectl(src!.kubeconfigPath, ['-n', 'dr-syncer', 'get', 'replication', 'shop-data', '-o', 'json'])).stdout) as { status?: typeof status }).status ?? {};
      // Pending (agents still starting, the DR PVC not there yet) is retried by the controller.
      if (status.dataSync?.phase === 'Synced' || status.dataSync?.phase === 'Failed') break;
      await new Promise((r) => setTimeout(r, 1000));
    }
    console.log(`data sync ${status.dataSync?.phase ?? 'not finished'} after ${((Date.now() - t1) / 1000).toFixed(1)} s (agent DaemonSet started, then per PVC an endpoint Job in the source and an rsync Job in DR): ${status.dataSync?.message ?? ''}`);
    console.log('PVC                  PHASE    BYTES      FILES  DURATION  EXIT');
    for (const p of status.pvcs ?? []) {
      console.log(`${`${p.namespace}/${p.name}`.padEnd(20)} ${String(p.phase).padEnd(8)} ${String(p.bytesTransferred ?? '').padEnd(10)} ${String(p.filesTransferred ?? '').padEnd(6)} ${String(p.lastSyncDuration ?? '').padEnd(9)} ${p.lastExitCode ?? ''}${p.phase === 'Synced' ? '' : `  ${p.message ?? ''}`}`);
    }
    const drDir = (n: string) => dr!.nodes[0]!.pvs.get(n);
    const volume = JSON.parse((await kubectl(dr!.kubeconfigPath, ['-n', 'shop', 'get', 'pvc', 'data-notes-0', '-o', 'json'])).stdout) as { spec: { volumeName?: string } };
    const dir = volume.spec.volumeName ? drDir(volume.spec.volumeName) : undefined;
    if (dir && fs.existsSync(path.join(dir, 'notes.txt'))) console.log(`DR volume ${volume.spec.volumeName}: notes.txt = ${JSON.stringify(fs.readFileSync(path.join(dir, 'notes.txt'), 'utf8').trim())}`);
    console.log(`agents: ${(await kubectl(src!.kubeconfigPath, ['-n', 'dr-syncer', 'get', 'remotecluster', 'demo-source', '-o', 'jsonpath={.status.agents}'])).stdout}`);
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

/** A StatefulSet that writes a file into its volume, then stays up (the agent image: it has node). */
function notesStatefulSet(image: string): unknown {
  return {
    apiVersion: 'apps/v1', kind: 'StatefulSet', metadata: { name: 'notes', namespace: 'shop' },
    spec: {
      replicas: 1, serviceName: 'notes', selector: { matchLabels: { app: 'notes' } },
      template: {
        metadata: { labels: { app: 'notes' } },
        spec: {
          terminationGracePeriodSeconds: 1,
          containers: [{
            name: 'notes', image, imagePullPolicy: 'Never',
            command: ['node', '-e', 'require("fs").writeFileSync("/data/notes.txt", "written in the source cluster at " + new Date().toISOString() + "\\n"); setInterval(() => {}, 1 << 30)'],
            volumeMounts: [{ name: 'data', mountPath: '/data' }],
          }],
        },
      },
      volumeClaimTemplates: [{ metadata: { name: 'data' }, spec: { accessModes: ['ReadWriteOnce'], storageClassName: 'local', resources: { requests: { storage: '1Gi' } } } }],
    },
  };
}
