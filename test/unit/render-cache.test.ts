// The render cache's own rules: what its key and scope tell apart, what survives a sync, and
// that a kept file of the wrong shape is only a lost cache. (That a sync with it writes what a
// sync without it writes is in test/integration/sync-stream.test.ts.)
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import { planNamespace } from '../../src/core/plan.ts';
import type { ReusedFile } from '../../src/core/plan.ts';
import type { KubeObject } from '../../src/core/types.ts';
import { RenderCache, withKeptRenderCache } from '../../src/sync/render-cache.ts';
import { configMap, deployment } from '../fixtures/objects.ts';

const OID = 'a'.repeat(40);
const withIds = (o: KubeObject, uid: string, rv: string): KubeObject => ({ ...o, metadata: { ...o.metadata, uid, resourceVersion: rv } });
const scope = { plan: { scaleToZero: true }, replication: 'dr/app', sourceCluster: 'prod', serverVersion: 'v1.34.1' };

describe('render cache', () => {
  it('keys an object by listed type, uid and resourceVersion, per destination folder; none without uid or resourceVersion', () => {
    const ing = (apiVersion: string): KubeObject => ({ apiVersion, kind: 'Ingress', metadata: { name: 'web', uid: 'u1', resourceVersion: '7' } });
    const keys = new Set([
      RenderCache.keyOf(ing('networking.k8s.io/v1')),
      RenderCache.keyOf(ing('extensions/v1beta1')), // the same object through another type
      RenderCache.keyOf({ ...ing('networking.k8s.io/v1'), metadata: { name: 'web', uid: 'u1', resourceVersion: '8' } }),
    ]);
    assert.equal(keys.size, 3);
    assert.equal(RenderCache.keyOf({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'x', uid: 'u1' } }), undefined);
    assert.equal(RenderCache.keyOf({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'x', resourceVersion: '1' } }), undefined);
    const c = new RenderCache();
    c.begin(scope);
    c.keep('shop', 'k', { file: 'configmap-a.yaml', oid: OID, kind: 'ConfigMap' });
    c.end();
    assert.ok(c.get('shop', 'k'));
    assert.equal(c.get('shop-dr', 'k'), undefined, 'another destination folder');
  });

  it('keeps what a sync used or rendered; other options, another server version or a failed sync drop or keep as they should', () => {
    const c = new RenderCache();
    c.begin(scope);
    c.keep('shop', 'a', { file: 'configmap-a.yaml', oid: OID, kind: 'ConfigMap' });
    c.keep('shop', 'b', { file: 'configmap-b.yaml', oid: OID, kind: 'ConfigMap' });
    c.end();
    assert.equal(c.size, 2);
    // The next sync uses only a: b (its object gone or changed) is dropped at the end.
    c.begin(scope);
    c.keep('shop', 'a', c.get('shop', 'a')!);
    c.end();
    assert.deepEqual([c.get('shop', 'a')?.file, c.get('shop', 'b')], ['configmap-a.yaml', undefined]);
    // A sync that stops half way (no end()) leaves the cache as it was.
    c.begin(scope);
    c.keep('shop', 'z', { file: 'configmap-z.yaml', oid: OID, kind: 'ConfigMap' });
    c.begin(scope);
    assert.equal(c.get('shop', 'z'), undefined);
    assert.ok(c.get('shop', 'a'));
    c.begin({ ...scope, serverVersion: 'v1.35.0' });
    assert.equal(c.get('shop', 'a'), undefined, 'an upgraded source server: nothing reused');
    c.keep('shop', 'a', { file: 'configmap-a.yaml', oid: OID, kind: 'ConfigMap' });
    c.end();
    c.begin({ ...scope, plan: { scaleToZero: false } });
    assert.equal(c.get('shop', 'a'), undefined, 'other options: nothing reused');
  });

  it('is kept in a file between processes; a file of another shape, or unreadable, loads as an empty cache', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'drs-rc-'));
    try {
      const file = path.join(dir, 'sub', 'render.json');
      const c = new RenderCache();
      c.begin(scope);
      c.keep('shop', 'a', { file: 'deployment.apps-web.yaml', oid: OID, kind: 'Deployment.apps' });
      c.end();
      c.rememberTree('b'.repeat(40), { owner: 'dr/app', kustomization: true });
      const memo = { inputs: 'i', tree: 'c'.repeat(40), counts: { 'Deployment.apps': 1 }, skipped: [{ kind: 'ServiceAccount', namespace: 'shop', name: 'default', reason: 'r' }] };
      c.begin(scope);
      c.keep('shop', 'a', c.get('shop', 'a')!);
      c.keepFolder('shop', memo);
      c.end();
      await c.save(file);
      const loaded = await RenderCache.load(file);
      loaded.begin(scope);
      assert.deepEqual(loaded.get('shop', 'a'), { file: 'deployment.apps-web.yaml', oid: OID, kind: 'Deployment.apps' });
      assert.deepEqual(loaded.getFolder('shop'), memo);
      assert.deepEqual(loaded.treeSummary('b'.repeat(40)), { summary: { owner: 'dr/app', kustomization: true }, verified: false }, 'from a file: a claim');
      loaded.rememberTree('b'.repeat(40), { owner: 'dr/app', kustomization: true });
      assert.equal(loaded.treeSummary('b'.repeat(40))?.verified, true, 'read by this process: known');
      // Saved: only the trees this process used (here d…, written now; b… was loaded, never looked up).
      const kept = await RenderCache.load(file);
      kept.rememberTree('d'.repeat(40), { owner: '', kustomization: false });
      await kept.save(file);
      const reloaded = await RenderCache.load(file);
      assert.equal(reloaded.treeCount, 1, 'a claim no sync used is not kept');
      assert.deepEqual(reloaded.treeSummary('d'.repeat(40))?.summary, { owner: '', kustomization: false });
      reloaded.dropClaims();
      assert.equal(reloaded.treeSummary('d'.repeat(40)), undefined, 'claims dropped');
      assert.deepEqual(fs.readdirSync(path.dirname(file)), ['render.json'], 'no temporary file left');
      // A folder left as it was carries its memo and all its entries to the next sync, and to the next process.
      loaded.keepFolder('shop', memo, true);
      loaded.end();
      await loaded.save(file);
      const again = await RenderCache.load(file);
      again.begin(scope);
      assert.deepEqual([again.getFolder('shop'), again.get('shop', 'a')?.file], [memo, 'deployment.apps-web.yaml']);
      again.end();
      assert.equal(again.getFolder('shop'), undefined, 'a folder no sync kept is dropped');
      assert.equal(again.get('shop', 'a'), undefined);

      const folder = (memoValue: unknown, entries: unknown) => JSON.stringify({ scope: 's', build: 'b', trees: [], folders: [['shop', memoValue, entries]] });
      const bad = [
        '{"scope": tru',
        JSON.stringify([]),
        JSON.stringify({ scope: 's', build: 'b', trees: [['b'.repeat(40), 3, true]], folders: [] }),
        JSON.stringify({ scope: 's', build: 'b', trees: [['b'.repeat(40), 'dr/app', 'yes']], folders: [] }),
        JSON.stringify({ scope: 's', owners: [['b'.repeat(40), 'dr/app']], folders: [] }), // the shape before trees
        JSON.stringify({ scope: 's', build: 'another build', trees: [['b'.repeat(40), 'dr/app', true]], folders: [] }), // its claims are not used
        folder({ inputs: 'i', tree: 'x', counts: {}, skipped: [] }, '[]'),
        folder({ inputs: 'i', tree: 'c'.repeat(40), counts: { a: 'x' }, skipped: [] }, '[]'),
        folder(null, [['a', 'x.yaml', OID, 'ConfigMap']]), // entries not as a string
        folder(null, JSON.stringify([['a']])), // only this folder's entries are lost
        folder(null, JSON.stringify([['a', 'x.yaml', 'not-an-oid', 'ConfigMap']])),
        folder(null, '[["a", "x.yaml", '),
      ];
      for (const content of bad) {
        fs.writeFileSync(file, content);
        const l = await RenderCache.load(file);
        assert.equal(l.size + l.treeCount + (l.getFolder('shop') ? 1 : 0), 0, content);
      }
      fs.writeFileSync(file, folder(null, JSON.stringify([['a', 'x.yaml', OID, 'ConfigMap']])));
      assert.equal((await RenderCache.load(file)).size, 1, 'a well-formed file loads');
      assert.equal((await RenderCache.load(path.join(dir, 'missing.json'))).size, 0);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('withKeptRenderCache writes the file as soon as the sync has rendered (while it pushes), again only for what changed after, and nothing for a sync that changed nothing', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'drs-rc-'));
    try {
      const repo = { cacheFile: (name: string) => path.join(dir, name) };
      const spec = { replication: 'dr/app', sourceCluster: 'prod' };
      const file = RenderCache.fileFor(repo, spec.replication, spec.sourceCluster)!;
      const warnings: unknown[] = [];
      const log = { warn: (o: unknown) => void warnings.push(o) };
      const entry = (name: string) => ({ file: `configmap-${name}.yaml`, oid: OID, kind: 'ConfigMap' });
      const kept = async (key: string) => {
        const c = await RenderCache.load(file);
        c.begin(scope);
        return c.get('shop', key);
      };
      let duringPush: ReusedFile | undefined;
      await withKeptRenderCache(repo, spec, log, async (c) => {
        c.begin(scope);
        c.keep('shop', 'a', entry('a'));
        c.end();
        // The push: the file is written meanwhile.
        await c.idle();
        duringPush = await kept('a');
        // The branch moved: the retry renders again, and keeps something else.
        c.begin(scope);
        c.keep('shop', 'b', entry('b'));
        c.end();
      });
      assert.deepEqual(duringPush, entry('a'), 'written before the sync returned');
      assert.deepEqual([await kept('a'), await kept('b')], [undefined, entry('b')], 'the retry is what the file holds at the end');
      // A sync that fails after rendering (its push refused): what it rendered is kept, no temporary file left.
      await assert.rejects(withKeptRenderCache(repo, spec, log, async (c) => {
        c.begin(scope);
        c.keep('shop', 'c', entry('c'));
        c.end();
        throw new Error('push refused');
      }), /push refused/);
      assert.deepEqual(await kept('c'), entry('c'));
      assert.deepEqual(fs.readdirSync(dir), [path.basename(file)]);
      // Nothing changed: nothing written (the file removed after loading stays removed).
      await withKeptRenderCache(repo, spec, log, async (c) => {
        fs.rmSync(file);
        c.begin(scope);
        c.keep('shop', 'c', entry('c'));
        c.end();
        await c.idle();
      });
      assert.equal(fs.existsSync(file), false);
      assert.deepEqual(warnings, []);
      // A cache folder that cannot be written (a file where the folder should be): the sync's
      // result still comes back, the early write fails quietly and the last one warns once.
      const blocked = path.join(dir, 'blocked');
      fs.writeFileSync(blocked, '');
      const out = await withKeptRenderCache({ cacheFile: (name: string) => path.join(blocked, name) }, spec, log, async (c) => {
        c.begin(scope);
        c.keep('shop', 'd', entry('d'));
        c.end();
        await c.idle();
        return 'pushed';
      });
      assert.equal(out, 'pushed');
      assert.equal(warnings.length, 1, 'one warning, from the last write');
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('planNamespace: a reused object is not transformed and is counted by the kind it was rendered as', () => {
    const listed = [withIds(deployment('web'), 'u1', '1'), withIds(configMap('cfg', { a: '1' }), 'u2', '1')];
    const reused = { file: 'deployment.apps-web.yaml', oid: OID, kind: 'Rollout.argoproj.io' };
    const plan = planNamespace(listed, 'shop', 'shop', { scaleToZero: true, pvc: {}, secretsMode: 'Omit' }, undefined, (o) => (o.kind === 'Deployment' ? reused : undefined));
    assert.deepEqual(plan.objects.map((o) => o.metadata.name), ['cfg']);
    assert.deepEqual([...plan.reused], [['deployment.apps-web.yaml', OID]]);
    assert.deepEqual(plan.counts, { ConfigMap: 1, 'Rollout.argoproj.io': 1 });
    assert.equal(plan.sourceOf.get(plan.objects[0]!), listed[1]);
  });
});
