// A sync whose push is rejected because the branch moved re-renders onto the new head: with a
// fresh read of the source, so that a newer sync of the same objects written meanwhile (another
// controller, the CLI) is never rolled back to the older read. Real API server, real Git server;
// only the moment of the competing push is arranged (just before ours).
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, it } from 'node:test';
import { parse } from 'yaml';
import { GitRepo } from '../../src/adapters/git/repo.ts';
import { KubeClient } from '../../src/adapters/kube/client.ts';
import type { Replication } from '../../src/api/v1alpha1/index.ts';
import { runSync } from '../../src/sync/engine.ts';
import { gitTarget, syncSpecFor } from '../../src/sync/spec.ts';
import type { TestCluster } from '../env/cluster.ts';
import { kubectl, startCluster } from '../env/cluster.ts';
import type { GitServer } from '../env/git-server.ts';
import { startGitServer } from '../env/git-server.ts';

let cluster: TestCluster;
let git: GitServer;
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'drs-retry-'));

/** A GitRepo that runs `beforePush` once, right before its next push. */
class RacingRepo extends GitRepo {
  beforePush?: () => Promise<void>;
  override async push(commit: string, expected: string | undefined): Promise<void> {
    const f = this.beforePush;
    this.beforePush = undefined;
    await f?.();
    return super.push(commit, expected);
  }
}

before(async () => {
  [cluster, git] = await Promise.all([startCluster({ controllerManager: false }), startGitServer()]);
});
after(async () => {
  await Promise.all([cluster?.stop(), git?.stop()]);
  await fs.promises.rm(tmp, { recursive: true, force: true });
});

it('a rejected push is retried with a fresh read of the source: a newer sync written meanwhile is not rolled back', async () => {
  const url = await git.createRepo('dr');
  await kubectl(cluster.kubeconfigPath, ['create', 'namespace', 'race']);
  await kubectl(cluster.kubeconfigPath, ['-n', 'race', 'create', 'configmap', 'a', '--from-literal=v=1']);
  const rep = {
    apiVersion: 'dr-syncer.io/v1alpha1', kind: 'Replication', metadata: { name: 'race', namespace: 'dr' },
    spec: { sourceNamespace: 'race', resourceTypes: ['configmaps'], git: { url, path: 'r' } },
  } as Replication;
  const spec = syncSpecFor(rep, 'src', gitTarget(rep));
  const source = await KubeClient.fromFile(cluster.kubeconfigPath);
  const auth = { username: git.user, password: git.password };
  const ours = new RacingRepo({ url, branch: 'main', auth, cacheDir: path.join(tmp, 'a') });
  const theirs = new GitRepo({ url, branch: 'main', auth, cacheDir: path.join(tmp, 'b') });

  // Our sync read v=1; before it pushes, the source changes and another writer syncs v=2.
  ours.beforePush = async () => {
    await kubectl(cluster.kubeconfigPath, ['-n', 'race', 'patch', 'configmap', 'a', '--type=merge', '-p', '{"data":{"v":"2"}}']);
    const r = await runSync(spec, { source, repo: theirs });
    assert.ok(r.commit, 'the other writer committed');
  };
  const result = await runSync(spec, { source, repo: ours });
  assert.equal(result.attempts, 2, 'our first push was rejected');
  const clone = await git.clone('dr');
  const cm = parse(fs.readFileSync(path.join(clone, 'r/race/configmap-a.yaml'), 'utf8')) as { data: { v: string } };
  assert.equal(cm.data.v, '2', 'the newer sync stays');
});
