// Two controller processes with leader election: one leads; kill -9 the leader and the other
// takes over; nothing is lost and nothing is committed twice.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, it } from 'node:test';
import type { TestCluster } from '../env/cluster.ts';
import { kubectl, startCluster } from '../env/cluster.ts';
import type { GitServer } from '../env/git-server.ts';
import { startGitServer } from '../env/git-server.ts';
import { until } from '../env/wait.ts';

let cluster: TestCluster;
let git: GitServer;
const procs = new Map<string, ChildProcess>();
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'drs-ha-'));

function startController(name: string): ChildProcess {
  const log = fs.openSync(path.join(tmp, `${name}.log`), 'w');
  const p = spawn(process.execPath, ['--import', 'tsx', path.resolve('src/cli/main.ts'), 'controller', '--kubeconfig', cluster.kubeconfigPath, '--leader-elect',
    '--leader-election-namespace', 'dr-syncer', '--metrics-bind-address', '127.0.0.1:0', '--health-probe-bind-address', '127.0.0.1:0',
    '--cache-dir', path.join(tmp, name), '--log-level', 'info'], { env: { ...process.env, POD_NAME: name, LOG_FORMAT: 'json' }, stdio: ['ignore', log, log] });
  procs.set(name, p);
  return p;
}

const holder = async () => {
  const r = await kubectl(cluster.kubeconfigPath, ['-n', 'dr-syncer', 'get', 'lease', 'dr-syncer.io', '-o', 'jsonpath={.spec.holderIdentity}'], { check: false });
  return r.code === 0 ? r.stdout.split('_')[0] : undefined;
};
const files = async () => {
  const clone = await git.clone('dr');
  const dir = path.join(clone, 'ha/ha');
  return { clone, list: fs.existsSync(dir) ? fs.readdirSync(dir) : [] };
};

before(async () => {
  [cluster, git] = await Promise.all([startCluster(), startGitServer()]);
  const url = await git.createRepo('dr');
  await kubectl(cluster.kubeconfigPath, ['apply', '--server-side', '-f', path.resolve('crds')]);
  await kubectl(cluster.kubeconfigPath, ['wait', '--for=condition=Established', 'crd/replications.dr-syncer.io']);
  await kubectl(cluster.kubeconfigPath, ['create', 'namespace', 'dr-syncer']);
  await kubectl(cluster.kubeconfigPath, ['create', 'namespace', 'ha']);
  await kubectl(cluster.kubeconfigPath, ['-n', 'dr-syncer', 'create', 'secret', 'generic', 'git-creds', `--from-literal=username=${git.user}`, `--from-literal=password=${git.password}`]);
  await kubectl(cluster.kubeconfigPath, ['apply', '-f', '-'], {
    input: JSON.stringify({
      apiVersion: 'dr-syncer.io/v1alpha1', kind: 'Replication', metadata: { name: 'ha', namespace: 'dr-syncer' },
      spec: { sourceNamespace: 'ha', mode: 'Continuous', continuous: { debounce: '300ms' }, resourceTypes: ['configmaps'], git: { url, path: 'ha', credentialsSecretRef: { name: 'git-creds' } } },
    }),
  });
});

after(async () => {
  for (const p of procs.values()) if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
  await Promise.all([cluster?.stop(), git?.stop()]);
  if (!process.env.KEEP_TESTENV) await fs.promises.rm(tmp, { recursive: true, force: true });
});

it('one leader; kill -9 it and the other takes over: nothing lost, nothing committed twice', async () => {
  startController('ctl-a');
  startController('ctl-b');
  const leader = await until('a leader', holder, 60_000);
  const follower = leader === 'ctl-a' ? 'ctl-b' : 'ctl-a';
  await kubectl(cluster.kubeconfigPath, ['-n', 'ha', 'create', 'configmap', 'before', '--from-literal=v=1']);
  await until('first sync by the leader', async () => (await files()).list.includes('configmap-before.yaml'), 60_000);

  // A change, then the leader dies before (or while) it syncs it.
  await kubectl(cluster.kubeconfigPath, ['-n', 'ha', 'create', 'configmap', 'during', '--from-literal=v=1']);
  procs.get(leader!)!.kill('SIGKILL');
  const t0 = Date.now();
  await kubectl(cluster.kubeconfigPath, ['-n', 'ha', 'create', 'configmap', 'after', '--from-literal=v=1']);
  await until('the follower leads', async () => (await holder()) === follower, 40_000);
  const takeover = Date.now() - t0;
  await until('both changes committed', async () => {
    const l = (await files()).list;
    return l.includes('configmap-during.yaml') && l.includes('configmap-after.yaml');
  }, 40_000);
  assert.ok(takeover < 30_000, `takeover took ${takeover} ms`);

  const { clone } = await files();
  const commits = (await git.git(['rev-list', 'HEAD'], clone)).trim().split('\n');
  for (const c of commits.slice(0, -1)) {
    const changed = (await git.git(['diff-tree', '--no-commit-id', '--name-only', '-r', c], clone)).trim();
    assert.ok(changed.length > 0, `commit ${c} changes nothing (committed twice?)`);
  }
  assert.equal(procs.get(follower)!.exitCode, null, 'the new leader keeps running');
});
