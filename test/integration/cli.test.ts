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

  it('bootstrap and controller: a typo in the command line or a settings file exits 2, names it, and touches no cluster', async () => {
    const cases: [string[], RegExp][] = [
      [['bootstrap', 'fluxx', 'dr'], /unknown GitOps tool "fluxx": use flux or argocd/],
      [['bootstrap', 'argocd'], /which RemoteCluster\?/],
      [['bootstrap', 'flux', 'dr', 'extra'], /unexpected argument: extra/],
      [['bootstrap', 'flux', 'dr', '--project', 'x'], /--project and --ignore-replicas are Argo CD options/],
      [['bootstrap', 'argocd', 'dr', '--interval', '1m'], /--interval and --sops-secret are Flux options/],
      [['bootstrap', 'flux', 'dr', '--interval', '5'], /--interval 5: use a duration/],
      [['bootstrap', 'flux', 'nosuch', '--kubeconfig', src.kubeconfigPath], /nosuch/],
    ];
    for (const [args, message] of cases) {
      const r = await cli(args);
      assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, message, args.join(' '));
    }
    const settings = path.join(tmp, 'pvc-sync.yaml');
    fs.writeFileSync(settings, 'enabled: true\nsshPort: 22\nagentAdress: ExternalIP\n');
    const r = await cli(['controller', '--local-pvc-sync', settings, '--kubeconfig', src.kubeconfigPath]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /--local-pvc-sync .*pvc-sync\.yaml: .*sshPort: .*at least 1024.*agentAdress: unknown field/);
  });

  it('writes into a local repository path, prints the summary, and says "no changes" the second time', async () => {
    const repo = path.join(tmp, 'local');
    await run('git', ['init', '-q', '--bare', '-b', 'main', repo]);
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

  it('--repo must name an existing repository: a plain folder, a typo or a file exit 2 and create nothing; --init creates a bare one', async () => {
    const f = manifest('paths.yaml', { sourceNamespace: 'shop', resourceTypes: ['configmaps'] });
    const sync = (repo: string, ...extra: string[]) => cli(['sync', '-f', f, '--source-kubeconfig', src.kubeconfigPath, '--repo', repo, ...extra]);

    const plain = path.join(tmp, 'plain-folder');
    fs.mkdirSync(plain);
    fs.writeFileSync(path.join(plain, 'notes.txt'), 'not a repository');
    let r = await sync(plain);
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /plain-folder is not a Git repository/);
    assert.deepEqual(fs.readdirSync(plain), ['notes.txt'], 'the folder is untouched');
    assert.equal((await sync(plain, '--init')).code, 2, '--init does not take over a folder with files');
    assert.deepEqual(fs.readdirSync(plain), ['notes.txt']);

    const typo = path.join(tmp, 'dr-repo-typo');
    r = await sync(typo);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /dr-repo-typo does not exist.*--init/);
    assert.ok(!fs.existsSync(typo), 'a misspelled path is not created');

    const file = path.join(tmp, 'a-file');
    fs.writeFileSync(file, 'x');
    r = await sync(file);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /a-file is a file, not a Git repository/);
    assert.doesNotMatch(r.stderr, /EEXIST/);

    for (const url of ['git@github.com:org/dr.git', 'ssh://git@example.com/dr.git', 'file:///srv/dr.git']) {
      r = await sync(url, '--init');
      assert.equal(r.code, 2, url);
      assert.match(r.stderr, /neither a local path nor an http\(s\):\/\/ URL/, url);
    }
    assert.ok(!fs.existsSync(path.resolve('git@github.com:org')), 'no folder named after a URL');

    r = await sync(typo, '--init');
    assert.equal(r.code, 0, r.stderr);
    assert.equal((await run('git', ['-C', typo, 'rev-parse', '--is-bare-repository'])).stdout.trim(), 'true');
    assert.equal((await run('git', ['-C', typo, 'ls-tree', '-r', '--name-only', 'main'])).stdout.split('\n').filter((x) => x.startsWith('shop/configmap-')).length, 300);
  });

  it('refuses a local clone whose branch is checked out (like receive.denyCurrentBranch); another branch works', async () => {
    const clone = path.join(tmp, 'work-clone');
    await run('git', ['init', '-q', '-b', 'main', clone]);
    fs.writeFileSync(path.join(clone, 'README.md'), 'DR\n');
    await run('git', ['-C', clone, 'add', '.']);
    await run('git', ['-C', clone, '-c', 'user.name=t', '-c', 'user.email=t@x', 'commit', '-qm', 'init']);
    const before = (await run('git', ['-C', clone, 'rev-parse', 'main'])).stdout.trim();
    const f = manifest('clone.yaml', { sourceNamespace: 'shop', resourceTypes: ['configmaps'] });
    const r = await cli(['sync', '-f', f, '--source-kubeconfig', src.kubeconfigPath, '--repo', clone]);
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /branch main is checked out in the working tree .*work-clone/);
    assert.equal((await run('git', ['-C', clone, 'rev-parse', 'main'])).stdout.trim(), before, 'the branch did not move');
    assert.equal((await run('git', ['-C', clone, 'status', '--porcelain'])).stdout, '', 'the work tree shows no reverse changes');
    // A linked work tree counts too.
    await run('git', ['-C', clone, 'branch', 'dr']);
    await run('git', ['-C', clone, 'worktree', 'add', '-q', path.join(tmp, 'wt-dr'), 'dr']);
    const linked = await cli(['sync', '-f', f, '--source-kubeconfig', src.kubeconfigPath, '--repo', clone, '--branch', 'dr']);
    assert.equal(linked.code, 2);
    assert.match(linked.stderr, /branch dr is checked out in the working tree .*wt-dr/);
    // Given as the linked work tree's own path, the same.
    const viaWorktree = await cli(['sync', '-f', f, '--source-kubeconfig', src.kubeconfigPath, '--repo', path.join(tmp, 'wt-dr'), '--branch', 'dr']);
    assert.equal(viaWorktree.code, 2, viaWorktree.stderr);
    assert.match(viaWorktree.stderr, /branch dr is checked out/);
    await run('git', ['-C', clone, 'worktree', 'remove', path.join(tmp, 'wt-dr')]);
    const ok = await cli(['sync', '-f', f, '--source-kubeconfig', src.kubeconfigPath, '--repo', clone, '--branch', 'dr']);
    assert.equal(ok.code, 0, ok.stderr);
    assert.equal((await run('git', ['-C', clone, 'status', '--porcelain'])).stdout, '');
  });

  it('a misspelled or unknown resource type exits 2, names it with a suggestion, and changes nothing', async () => {
    const url = await git.createRepo('types');
    const env = { DR_SYNCER_GIT_USERNAME: git.user, DR_SYNCER_GIT_PASSWORD: git.password };
    const cache = ['--cache-dir', path.join(tmp, 'c-types')];
    await kubectl(src.kubeconfigPath, ['-n', 'shop', 'create', 'service', 'clusterip', 'web', '--tcp=80:8080']);
    const syncTypes = (types: string[]) => cli(['sync', '-f', manifest(`types-${types.join('-')}.yaml`, { sourceNamespace: 'shop', resourceTypes: types, git: { url } }), '--source-kubeconfig', src.kubeconfigPath, ...cache], env);
    const first = await syncTypes(['configmaps', 'services']);
    assert.equal(first.code, 0, first.stderr);
    const tip = async () => (await git.git(['ls-remote', `${git.base}/types.git`, 'refs/heads/main'])).split('\t')[0];
    const committed = await tip();
    for (const types of [['configmaps', 'servcies'], ['deploymentz']]) {
      const r = await syncTypes(types);
      assert.equal(r.code, 2, r.stderr);
      assert.match(r.stderr, /UnknownResourceTypes/);
      assert.match(r.stderr, new RegExp(`"${types.at(-1)}"`));
      assert.equal(await tip(), committed, `${types.join(',')}: nothing committed`);
    }
    assert.match((await syncTypes(['configmaps', 'servcies'])).stderr, /did you mean "services"/);
    const clone = await git.clone('types');
    assert.ok(fs.existsSync(path.join(clone, 'shop/service-web.yaml')), 'the Service file is still there');
  });

  it('errors name their subject: the source cluster with its kubeconfig and context, the DR repository with its URL', async () => {
    const dead = path.join(tmp, 'dead.kubeconfig');
    fs.writeFileSync(dead, JSON.stringify({
      apiVersion: 'v1', kind: 'Config', 'current-context': 'prod-eu',
      clusters: [{ name: 'c', cluster: { server: 'https://127.0.0.1:1', 'insecure-skip-tls-verify': true } }],
      users: [{ name: 'u', user: { token: 't' } }], contexts: [{ name: 'prod-eu', context: { cluster: 'c', user: 'u' } }],
    }));
    const url = await git.createRepo('subject');
    const f = manifest('subject.yaml', { sourceNamespace: 'shop', resourceTypes: ['configmaps'], git: { url } });
    const env = { DR_SYNCER_GIT_USERNAME: git.user, DR_SYNCER_GIT_PASSWORD: git.password };
    let r = await cli(['sync', '-f', f, '--source-kubeconfig', dead, '--cache-dir', path.join(tmp, 'c-subj')], env);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /SourceUnreachable: source cluster prod-eu \(kubeconfig .*dead\.kubeconfig, context prod-eu, server https:\/\/127\.0\.0\.1:1\) is not reachable: .*ECONNREFUSED.*check that the cluster is up/);
    r = await cli(['sync', '-f', f, '--source-kubeconfig', src.kubeconfigPath, '--repo', 'http://127.0.0.1:1/dr.git', '--cache-dir', path.join(tmp, 'c-subj')], env);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /DR repository http:\/\/127\.0\.0\.1:1\/dr\.git \(branch main\) failed: .*ECONNREFUSED.*check the repository URL/);
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
