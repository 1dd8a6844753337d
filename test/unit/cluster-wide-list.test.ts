// When the collected read lists a type across the whole cluster instead of once per namespace
// (listClusterWide), and what it keeps. Against a stand-in for the client's listPage, which
// answers pages as the test says (the real API server's answers, the same objects either way,
// and namespaced RBAC are in test/integration/sync-stream.test.ts).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { ListPage } from '../../src/adapters/kube/client.ts';
import type { ResourceType } from '../../src/core/types.ts';
import { listClusterWide } from '../../src/sync/engine.ts';
import { silentLogger } from '../../src/util/log.ts';

const configmaps: ResourceType = { group: '', version: 'v1', resource: 'configmaps', kind: 'ConfigMap', namespaced: true, verbs: ['list'], singular: 'configmap', shortNames: [] };
const cm = (ns: string, name: string) => ({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { namespace: ns, name } });
const selected = new Set(['a', 'b', 'c']);

/** A listPage that answers `pages` in turn (an Error is thrown), recording each request. */
function pager(...pages: (ListPage | Error)[]) {
  const asked: { path: string; limit: number; cont?: string }[] = [];
  return {
    asked,
    listPage: (path: string, _q: Record<string, string>, limit: number, cont?: string): Promise<ListPage> => {
      asked.push({ path, limit, ...(cont ? { cont } : {}) });
      const p = pages.shift();
      if (p === undefined) throw new Error('no more pages');
      return p instanceof Error ? Promise.reject(p) : Promise.resolve(p);
    },
  };
}

describe('listClusterWide', () => {
  it('lists across the cluster when the pages are fewer than the namespaces, keeping the selected namespaces only', async () => {
    const c = pager(
      { items: [cm('a', 'one')], resourceVersion: '9', continue: 'k1', remainingItemCount: 3 },
      { items: [cm('b', 'two'), cm('x', 'elsewhere'), cm('c', 'three'), cm('a', 'four')], resourceVersion: '9' },
    );
    const r = await listClusterWide(c, configmaps, selected, new AbortController().signal, silentLogger, 500);
    assert.ok(r);
    assert.deepEqual(Object.fromEntries([...r].map(([ns, l]) => [ns, l.map((o) => o.metadata.name)])), { a: ['one', 'four'], b: ['two'], c: ['three'] });
    assert.deepEqual(c.asked, [{ path: '/api/v1/configmaps', limit: 1 }, { path: '/api/v1/configmaps', limit: 500, cont: 'k1' }], 'one object first, then pages from where it ended');
  });

  it('lists per namespace (undefined) when that takes no more requests, when the server does not count, when the reader may not list cluster-wide, or for one namespace', async () => {
    // 1 + ceil(1000 / 500) = 3 pages for 3 namespaces: one LIST each is no more.
    const first: ListPage = { items: [cm('a', 'one')], resourceVersion: '9', continue: 'k1', remainingItemCount: 1000 };
    const many = pager(first, first, { items: [cm('d', 'two')], resourceVersion: '9' });
    assert.equal(await listClusterWide(many, configmaps, selected, new AbortController().signal, silentLogger, 500), undefined);
    assert.equal(many.asked.length, 1, 'nothing but the first page');
    // Remembered for this client: the next sync of as many namespaces asks nothing; one of more namespaces asks again.
    assert.equal(await listClusterWide(many, configmaps, selected, new AbortController().signal, silentLogger, 500), undefined);
    assert.equal(many.asked.length, 1);
    const wider = await listClusterWide(many, configmaps, new Set(['a', 'b', 'c', 'd']), new AbortController().signal, silentLogger, 500);
    assert.deepEqual([...(wider?.keys() ?? [])], ['a', 'd'], '4 namespaces: 3 pages are fewer, so it asks again, and lists cluster-wide');
    assert.equal(many.asked.length, 3);
    const uncounted = pager({ items: [cm('a', 'one')], resourceVersion: '9', continue: 'k1' });
    assert.equal(await listClusterWide(uncounted, configmaps, selected, new AbortController().signal), undefined);
    const refused = pager(Object.assign(new Error('configmaps is forbidden: User "ns-reader" cannot list resource "configmaps" at the cluster scope'), { status: 403 }));
    assert.equal(await listClusterWide(refused, configmaps, selected, new AbortController().signal), undefined);
    const one = pager();
    assert.equal(await listClusterWide(one, configmaps, new Set(['a']), new AbortController().signal), undefined);
    assert.equal(one.asked.length, 0, 'one namespace: no first page either');
    // Everything in the first page (no continue): one request for all namespaces.
    const all = pager({ items: [cm('c', 'only')], resourceVersion: '9' });
    const r = await listClusterWide(all, configmaps, selected, new AbortController().signal);
    assert.deepEqual([...r!.keys()], ['c']);
  });

  it('a page after the first that fails drops the partial answer (the type is listed per namespace), and an aborted read throws', async () => {
    const c = pager(
      { items: [cm('a', 'one')], resourceVersion: '9', continue: 'k1', remainingItemCount: 600 },
      { items: [cm('a', 'two')], resourceVersion: '9', continue: 'k2' },
      new Error('The provided continue parameter is too old to display a consistent list result'),
    );
    assert.equal(await listClusterWide(c, configmaps, new Set(['a', 'b', 'c', 'd']), new AbortController().signal, silentLogger, 500), undefined);
    assert.equal(c.asked.length, 3);
    const stop = new AbortController();
    stop.abort();
    await assert.rejects(listClusterWide(pager(new Error('aborted')), configmaps, selected, stop.signal), /aborted/);
  });

  it('never across the cluster: Secrets, types kube-apiserver does not serve itself (aggregated APIs, CRDs); a refusal is remembered for the client', async () => {
    const none = pager();
    const secrets: ResourceType = { ...configmaps, resource: 'secrets', kind: 'Secret', singular: 'secret' };
    const podMetrics: ResourceType = { ...configmaps, group: 'metrics.k8s.io', version: 'v1beta1', resource: 'pods', kind: 'PodMetrics', singular: '' };
    const crd: ResourceType = { ...configmaps, group: 'example.com', resource: 'widgets', kind: 'Widget', singular: 'widget' };
    for (const rt of [secrets, podMetrics, crd]) assert.equal(await listClusterWide(none, rt, selected, new AbortController().signal), undefined, rt.resource);
    assert.equal(none.asked.length, 0, 'not even a first page');
    const deployments: ResourceType = { ...configmaps, group: 'apps', resource: 'deployments', kind: 'Deployment', singular: 'deployment' };
    const c = pager(Object.assign(new Error('forbidden'), { status: 403 }));
    assert.equal(await listClusterWide(c, deployments, selected, new AbortController().signal), undefined);
    assert.equal(await listClusterWide(c, deployments, selected, new AbortController().signal), undefined);
    assert.equal(c.asked.length, 1, 'the second read does not ask again');
  });
});
