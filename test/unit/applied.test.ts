// What the DR cluster's GitOps tool has applied (src/gitops/applied.ts), from the objects
// `dr-syncer bootstrap` makes and the status fields Flux and Argo CD write.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { RemoteCluster, Replication } from '../../src/api/v1alpha1/index.ts';
import type { GitOpsObject, GitOpsObjects } from '../../src/gitops/applied.ts';
import { appliedFor, argoApplied, commitOfRevision, fluxApplied, notFoundReason } from '../../src/gitops/applied.ts';
import { buildBootstrap, drTargets } from '../../src/gitops/bootstrap.ts';
import { loadBootstrapTemplates } from '../../src/gitops/templates.ts';
import { sameRepository } from '../../src/gitops/repo-url.ts';

const SHA = '0123456789abcdef0123456789abcdef01234567';
const OTHER = 'fedcba9876543210fedcba9876543210fedcba98';
const URL_ = 'https://git.example.com/platform/dr.git';
const folder = { url: URL_, branch: 'main', path: 'clusters/dr' };

const rc = { apiVersion: 'dr-syncer.io/v1alpha1', kind: 'RemoteCluster', metadata: { name: 'dr', namespace: 'dr-syncer' }, spec: { kubeconfigSecretRef: { name: 'dr-kubeconfig' } } } as RemoteCluster;
const rep = {
  apiVersion: 'dr-syncer.io/v1alpha1', kind: 'Replication', metadata: { name: 'shop', namespace: 'dr-syncer' },
  spec: { sourceNamespace: 'shop', destinationCluster: 'dr', mode: 'Manual', git: { url: URL_, branch: 'main', path: 'clusters/dr' } },
} as Replication;

/** The objects `dr-syncer bootstrap <tool>` makes for the Replication, with `status` added. */
async function bootstrapped(tool: 'flux' | 'argocd'): Promise<GitOpsObject[]> {
  const out = buildBootstrap(drTargets(rc, [rep]), { tool, remoteCluster: 'dr-syncer/dr' }, await loadBootstrapTemplates());
  return structuredClone(out.objects) as unknown as GitOpsObject[];
}

async function flux(lastAppliedRevision?: string): Promise<GitOpsObjects> {
  const [repo, ks] = await bootstrapped('flux');
  if (lastAppliedRevision) ks!.status = { lastAppliedRevision };
  return { gitRepositories: [repo!], kustomizations: [ks!] };
}

async function argo(status?: Record<string, unknown>): Promise<GitOpsObjects> {
  const [app] = await bootstrapped('argocd');
  if (status) app!.status = status;
  return { applications: [app!] };
}

describe('Flux: Kustomization.status.lastAppliedRevision', () => {
  it('the revision forms: "main@sha1:<sha>" (Flux 2), "main/<sha>" (older), a bare sha; nothing else', () => {
    assert.equal(commitOfRevision(`main@sha1:${SHA}`), SHA);
    assert.equal(commitOfRevision(`main/${SHA}`), SHA);
    assert.equal(commitOfRevision(`refs/heads/main@sha1:${SHA}`), SHA);
    assert.equal(commitOfRevision(`sha1:${SHA}`), SHA);
    assert.equal(commitOfRevision(SHA), SHA);
    assert.equal(commitOfRevision('main@sha1:short'), undefined);
    assert.equal(commitOfRevision('latest@sha256:xyz'), undefined);
    assert.equal(commitOfRevision(undefined), undefined);
    assert.equal(commitOfRevision(42), undefined);
  });

  it('the bootstrap objects: found, applied commit read', async () => {
    assert.deepEqual(appliedFor(await flux(`main@sha1:${SHA}`), folder), { commit: SHA, by: 'Kustomization flux-system/dr-syncer', tool: 'flux' });
    assert.deepEqual(appliedFor(await flux(`main/${SHA}`), folder)?.commit, SHA);
  });

  it('found but nothing applied yet: no commit', async () => {
    assert.deepEqual(appliedFor(await flux(), folder), { commit: undefined, by: 'Kustomization flux-system/dr-syncer', tool: 'flux' });
  });

  it('paths match however they are spelled ("./clusters/dr", "clusters/dr/"); another folder does not', async () => {
    const objs = await flux(`main@sha1:${SHA}`);
    assert.equal(objs.kustomizations![0]!.spec!.path, './clusters/dr', 'bootstrap writes ./');
    for (const p of ['clusters/dr', 'clusters/dr/', '/clusters/dr']) assert.equal(fluxApplied(objs, { ...folder, path: p }).length, 1, p);
    assert.equal(fluxApplied(objs, { ...folder, path: 'clusters' }).length, 0);
    assert.equal(fluxApplied(objs, { ...folder, path: '' }).length, 0);
  });

  it('the URL compares canonically (credentials, ".git", trailing "/", host case); another repository or branch does not match', async () => {
    const objs = await flux(`main@sha1:${SHA}`);
    for (const u of ['https://git.example.com/platform/dr', 'https://bot:token@GIT.example.com/platform/dr.git/']) assert.equal(fluxApplied(objs, { ...folder, url: u }).length, 1, u);
    assert.equal(fluxApplied(objs, { ...folder, url: 'https://git.example.com/platform/other.git' }).length, 0);
    assert.equal(fluxApplied(objs, { ...folder, branch: 'dr' }).length, 0);
    assert.ok(sameRepository('https://h/x.git', 'https://h/x'));
    assert.ok(!sameRepository('https://h:1/x', 'https://h:2/x'));
  });

  it('the GitRepository is found by sourceRef (name, namespace defaulting to the Kustomization\'s); a missing one matches nothing', async () => {
    const objs = await flux(`main@sha1:${SHA}`);
    const ks = objs.kustomizations![0]!;
    const other = structuredClone(ks);
    other.metadata = { name: 'elsewhere', namespace: 'apps' };
    (other.spec!.sourceRef as Record<string, unknown>).namespace = 'flux-system';
    assert.deepEqual(fluxApplied({ ...objs, kustomizations: [ks, other] }, folder).map((a) => a.by), ['Kustomization flux-system/dr-syncer', 'Kustomization apps/elsewhere']);
    assert.equal(fluxApplied({ ...objs, gitRepositories: [] }, folder).length, 0);
  });

  it('a GitRepository pinned to a tag or commit does not follow the branch', async () => {
    const objs = await flux(`main@sha1:${SHA}`);
    objs.gitRepositories![0]!.spec!.ref = { tag: 'v1' };
    assert.equal(fluxApplied(objs, folder).length, 0);
    objs.gitRepositories![0]!.spec!.ref = undefined;
    assert.equal(fluxApplied(objs, folder).length, 1, 'no ref: the default branch, accepted');
  });
});

describe('Argo CD: the revision of the last successful sync', () => {
  it('Synced: status.sync.revision', async () => {
    assert.deepEqual(appliedFor(await argo({ sync: { status: 'Synced', revision: SHA } }), { ...folder, path: './clusters/dr' }), { commit: SHA, by: 'Application argocd/dr-syncer', tool: 'argocd' });
  });

  it('OutOfSync (a newer commit not applied yet): the last operation\'s revision when it Succeeded', async () => {
    const st = { sync: { status: 'OutOfSync', revision: OTHER }, operationState: { phase: 'Succeeded', syncResult: { revision: SHA } } };
    assert.equal(appliedFor(await argo(st), folder)?.commit, SHA);
  });

  it('OutOfSync after a failed operation: the newest history entry (successful syncs only)', async () => {
    const st = {
      sync: { status: 'OutOfSync', revision: OTHER }, operationState: { phase: 'Failed', syncResult: { revision: OTHER } },
      history: [{ id: 0, revision: 'a'.repeat(40) }, { id: 1, revision: SHA }],
    };
    assert.equal(appliedFor(await argo(st), folder)?.commit, SHA);
  });

  it('never synced: found, no commit; a revision that is not a commit is not one', async () => {
    assert.deepEqual(appliedFor(await argo({ sync: { status: 'OutOfSync', revision: OTHER } }), folder), { commit: undefined, by: 'Application argocd/dr-syncer', tool: 'argocd' });
    assert.equal(appliedFor(await argo({ sync: { status: 'Synced', revision: 'main' } }), folder)?.commit, undefined);
  });

  it('multi-source Applications: the revision at the matching source\'s index', async () => {
    const objs = await argo({ sync: { status: 'Synced', revisions: [OTHER, SHA] } });
    const app = objs.applications![0]!;
    app.spec!.sources = [{ repoURL: 'https://charts.example.com', chart: 'x', targetRevision: '1.0' }, app.spec!.source];
    delete app.spec!.source;
    assert.equal(argoApplied(objs, folder)[0]?.commit, SHA);
  });

  it('targetRevision: the branch, HEAD or empty match; another branch does not; path "." is the root', async () => {
    const objs = await argo({ sync: { status: 'Synced', revision: SHA } });
    const src = objs.applications![0]!.spec!.source as Record<string, unknown>;
    for (const t of ['main', 'HEAD', '', 'refs/heads/main']) {
      src.targetRevision = t;
      assert.equal(argoApplied(objs, folder).length, 1, t);
    }
    src.targetRevision = 'release';
    assert.equal(argoApplied(objs, folder).length, 0);
    src.targetRevision = 'main';
    src.path = '.';
    assert.equal(argoApplied(objs, { ...folder, path: '' }).length, 1);
  });
});

describe('choosing and explaining', () => {
  it('an object that has applied a commit is preferred to one that has not; Flux before Argo CD', async () => {
    const f = await flux();
    const a = await argo({ sync: { status: 'Synced', revision: SHA } });
    assert.deepEqual(appliedFor({ ...f, ...a }, folder), { commit: SHA, by: 'Application argocd/dr-syncer', tool: 'argocd' });
    const f2 = await flux(`main@sha1:${OTHER}`);
    assert.equal(appliedFor({ ...f2, ...a }, folder)?.tool, 'flux');
  });

  it('nothing follows the folder: undefined, and the reason says whether any tool is installed', async () => {
    assert.equal(appliedFor({}, folder), undefined);
    assert.match(notFoundReason({}, folder), /neither Flux .* nor Argo CD .* is installed/);
    assert.match(notFoundReason({ kustomizations: [], gitRepositories: [] }, folder), /no Flux Kustomization or Argo CD Application in the DR cluster follows https:\/\/git.example.com\/platform\/dr.git \(branch main, path "clusters\/dr"\)/);
  });
});
