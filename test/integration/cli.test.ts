// `dr-syncer sync` as people and pipelines run it: a separate process, a real source API server,
// a local repository path or the loopback Git server. Exit codes, the summary, bad input, and a
// sync killed at random moments, which must leave the remote at the old or at a new complete
// commit, never in between.
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, it } from 'node:test';
import type { TestCluster } from '../env/cluster.ts';
import { kubectl, startCluster } from '../env/cluster.ts';
import type { GitServer } from '../env/git-server.ts';
import { startGitServer } from '../env/git-server.ts';

const run = promisify(execFile);
const CLI = path.resolve('src/cli/main.ts');
let src: TestCluster;
let git: GitServer;
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'drs-cli-'));

async function cli(args: string[], env: Record<string, string> = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const r = await run(process.execPath, ['--import', 'tsx', CLI, ...args], { env: { ...process.env, ...env }, maxBuffer: 1 << 24 });
    return { code: 0, stdout: r.stdout, stderr: r.stderr };
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string };
    return { code: e.code ?? -1, stdout: e.stdout ?? '', stderr: e.stderr ?? '' };
  }
}

function manifest(file: string, spec: Record<string, unknown>): string {
  const p = path.join(tmp, file);
  fs.writeFileSync(p, JSON.stringify({ apiVersion: 'dr-syncer.io/v1alpha1', kind: 'Replication', metadata: { name: 'shop', namespace: 'dr-syncer' }, spec: { mode: 'Manual', ...spec } }));
  return p;
}

before(async () => {
  [src, git] = await Promise.all([startCluster({ controllerManager: false }), startGitServer()]);
  const cms = Array.from({ length: 300 }, (_, i) => JSON.stringify({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: `cm-${i}`, namespace: 'shop' }, data: { v: String(i) } }));
  await kubectl(src.kubeconfigPath, ['apply', '-f', '-'], { input: [JSON.stringify({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'shop' } }), ...cms].join('\n') });
});

after(async () => {
  await Promise.all([src?.stop(), git?.stop()]);
  await fs.promises.rm(tmp, { recursive: true, force: true });
});

describe('dr-syncer sync', () => {
  it('--help on every command; bad input exits 2 with a message and changes nothing', async () => {
    for (const args of [['--help'], ['sync', '--help'], ['controller', '--help']]) {
      const r = await cli(args);
      assert.equal(r.code, 0, args.join(' '));
      assert.match(r.stdout, /Usage: dr-syncer/);
    }
    const bad = manifest('bad.yaml', { sourceNamespace: 'Shop!', git: { url: path.join(tmp, 'never') } });
    const r = await cli(['sync', '-f', bad, '--source-kubeconfig', src.kubeconfigPath]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /spec\.sourceNamespace/);
    assert.ok(!fs.existsSync(path.join(tmp, 'never')));
    assert.equal((await cli(['sync', '--nope'])).code, 2);
    assert.equal((await cli(['sync', '-f', path.join(tmp, 'missing.yaml')])).code, 2);
  });

  it('writes into a local repository path, prints the summary, and says "no changes" the second time', async () => {
    const repo = path.join(tmp, 'local');
    await run('git', ['init', '-q', '-b', 'main', repo]);
    const f = manifest('local.yaml', { sourceNamespace: 'shop', resourceTypes: ['configmaps'] });
    const r = await cli(['sync', '-f', f, '--source-kubeconfig', src.kubeconfigPath, '--repo', repo, '--source-cluster', 'prod']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /ConfigMap\s+300/);
    assert.match(r.stdout, /committed [0-9a-f]{40}/);
    const files = (await run('git', ['-C', repo, 'ls-tree', '-r', '--name-only', 'main'])).stdout.trim().split('\n');
    assert.equal(files.filter((x) => x.startsWith('shop/configmap-')).length, 300);
    const again = await cli(['sync', '-f', f, '--source-kubeconfig', src.kubeconfigPath, '--repo', repo, '--source-cluster', 'prod']);
    assert.equal(again.code, 0);
    assert.match(again.stdout, /no changes/);
    assert.equal((await run('git', ['-C', repo, 'rev-list', '--count', 'main'])).stdout.trim(), '1');
  });

  it('a wrong Git password fails with a clear error and exit 1', async () => {
    const url = await git.createRepo('auth');
    const f = manifest('auth.yaml', { sourceNamespace: 'shop', resourceTypes: ['configmaps'], git: { url } });
    const r = await cli(['sync', '-f', f, '--source-kubeconfig', src.kubeconfigPath, '--cache-dir', path.join(tmp, 'c1')], { DR_SYNCER_GIT_USERNAME: git.user, DR_SYNCER_GIT_PASSWORD: 'wrong' });
    assert.equal(r.code, 1);
    assert.match(r.stderr, /authentication failed/);
  });

  it('killed at random moments, a sync leaves the remote at the old or at a new complete commit', async () => {
    const url = await git.createRepo('crash');
    const base = { sourceNamespace: 'shop', resourceTypes: ['configmaps'], git: { url } };
    const env = { ...process.env, DR_SYNCER_GIT_USERNAME: git.user, DR_SYNCER_GIT_PASSWORD: git.password };
    const tip = async () => (await git.git(['ls-remote', `${git.base}/crash.git`, 'refs/heads/main'])).split('\t')[0] ?? '';
    const outcomes = { old: 0, new: 0 };
    for (let i = 0; i < 8; i++) {
      // A different source each round, so every completed sync is a new commit.
      await kubectl(src.kubeconfigPath, ['-n', 'shop', 'patch', 'configmap', 'cm-0', '--type=merge', '-p', JSON.stringify({ data: { round: String(i) } })]);
      const before = await tip();
      const f = manifest(`crash-${i}.yaml`, base);
      const child = spawn(process.execPath, ['--import', 'tsx', CLI, 'sync', '-f', f, '--source-kubeconfig', src.kubeconfigPath, '--cache-dir', path.join(tmp, `c-${i % 2}`)], { env, stdio: 'ignore' });
      const exited = new Promise((r) => child.once('exit', r));
      await Promise.race([exited, new Promise((r) => setTimeout(r, 800 + Math.random() * 2500))]);
      child.kill('SIGKILL'); // a no-op when the sync already finished
      await exited;
      const after = await tip();
      if (after === before) {
        outcomes.old++;
        continue;
      }
      outcomes.new++;
      const clone = await git.clone('crash');
      await git.git(['fsck', '--strict'], clone);
      const files = (await git.git(['ls-tree', '-r', '--name-only', 'HEAD'], clone)).trim().split('\n');
      assert.equal(files.filter((x) => x.startsWith('shop/configmap-')).length, 300, 'a pushed commit is complete');
      assert.match(fs.readFileSync(path.join(clone, 'shop/configmap-cm-0.yaml'), 'utf8'), new RegExp(`round: "${i}"`));
    }
    // A final sync after all the crashes still works from whatever the caches hold.
    const f = manifest('crash-final.yaml', base);
    const r = await cli(['sync', '-f', f, '--source-kubeconfig', src.kubeconfigPath, '--cache-dir', path.join(tmp, 'c-0')], { DR_SYNCER_GIT_USERNAME: git.user, DR_SYNCER_GIT_PASSWORD: git.password });
    assert.equal(r.code, 0, r.stderr);
    const clone = await git.clone('crash');
    await git.git(['fsck', '--strict'], clone);
    assert.match(fs.readFileSync(path.join(clone, 'shop/configmap-cm-0.yaml'), 'utf8'), /round: "7"/);
    assert.equal(outcomes.old + outcomes.new, 8);
  });
});
