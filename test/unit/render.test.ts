import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parse } from 'yaml';
import { commitMessage, diffFiles } from '../../src/core/commit.ts';
import { planNamespace } from '../../src/core/plan.ts';
import { objectFileName, renderNamespace } from '../../src/core/render.ts';
import { toYaml } from '../../src/core/yaml.ts';
import type { KubeObject } from '../../src/core/types.ts';
import { configMap, deployment, pvc, secret, service, statefulSet } from '../fixtures/objects.ts';

const owner = { replication: 'dr-syncer/shop', sourceCluster: 'prod' };
const nsObj: KubeObject = { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'shop', uid: 'u', labels: { 'kubernetes.io/metadata.name': 'shop', environment: 'production' }, annotations: { description: 'the shop' } } };
const listed = () => [deployment('web'), service('web', { clusterIP: '10.0.0.5', ports: [{ port: 80 }] }), configMap('settings', { b: '2', a: '1' }), pvc('data', { storageClassName: 'fast' }), secret('creds')];
const planOpts = { scaleToZero: true, pvc: {}, secretsMode: 'Plaintext' as const };

describe('rendering', () => {
  it('writes one file per object plus namespace.yaml and kustomization.yaml', () => {
    const plan = planNamespace(listed(), 'shop', 'shop-dr', planOpts);
    const f = renderNamespace('clusters/dr', { sourceNamespace: 'shop', destinationNamespace: 'shop-dr', source: nsObj, objects: plan.objects }, owner);
    assert.equal(f.folder, 'clusters/dr/shop-dr');
    assert.deepEqual([...f.files.keys()].sort(), ['configmap-settings.yaml', 'deployment.apps-web.yaml', 'kustomization.yaml', 'namespace.yaml', 'persistentvolumeclaim-data.yaml', 'secret-creds.yaml', 'service-web.yaml']);
    const k = parse(f.files.get('kustomization.yaml')!);
    assert.deepEqual(k.resources, ['configmap-settings.yaml', 'deployment.apps-web.yaml', 'namespace.yaml', 'persistentvolumeclaim-data.yaml', 'secret-creds.yaml', 'service-web.yaml']);
    const ns = parse(f.files.get('namespace.yaml')!);
    assert.deepEqual(ns.metadata.labels, { environment: 'production', 'dr-syncer.io/managed-by': 'dr-syncer', 'dr-syncer.io/source-namespace': 'shop' });
    assert.equal(ns.metadata.name, 'shop-dr');
    assert.equal(ns.metadata.annotations.description, 'the shop');
    assert.equal(ns.metadata.annotations['dr-syncer.io/replication'], 'dr-syncer/shop');
    const claim = parse(f.files.get('persistentvolumeclaim-data.yaml')!);
    assert.equal(claim.metadata.annotations['kustomize.toolkit.fluxcd.io/prune'], 'disabled');
  });
  it('StatefulSets carry Flux\'s force annotation (their claim templates cannot change in place); others do not', () => {
    const f = renderNamespace('p', { sourceNamespace: 'shop', destinationNamespace: 'shop', objects: [statefulSet('db', 2), deployment('web')] }, owner);
    assert.equal(parse(f.files.get('statefulset.apps-db.yaml')!).metadata.annotations['kustomize.toolkit.fluxcd.io/force'], 'enabled');
    assert.equal(parse(f.files.get('deployment.apps-web.yaml')!).metadata.annotations?.['kustomize.toolkit.fluxcd.io/force'], undefined);
  });
  it('is deterministic: same input, byte-identical files, whatever the key order', () => {
    const a = renderNamespace('', { sourceNamespace: 'shop', destinationNamespace: 'shop', objects: planNamespace(listed(), 'shop', 'shop', planOpts).objects }, owner);
    const shuffled = listed().reverse().map((o) => Object.fromEntries(Object.entries(o).reverse()) as KubeObject);
    const b = renderNamespace('', { sourceNamespace: 'shop', destinationNamespace: 'shop', objects: planNamespace(shuffled, 'shop', 'shop', planOpts).objects }, owner);
    assert.deepEqual([...a.files.entries()], [...b.files.entries()]);
    const text = a.files.get('deployment.apps-web.yaml')!;
    assert.match(text, /^apiVersion: apps\/v1\nkind: Deployment\nmetadata:\n {2}name: web\n {2}namespace: shop\n/);
    assert.equal(toYaml(parse(text)), text);
  });
  it('names files kind[.group]-name', () => {
    assert.equal(objectFileName({ apiVersion: 'networking.k8s.io/v1', kind: 'Ingress', metadata: { name: 'web' } }), 'ingress.networking.k8s.io-web.yaml');
    assert.equal(objectFileName({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'a.b' } }), 'configmap-a.b.yaml');
  });
  it('omits Secrets by default and counts them as skipped', () => {
    const plan = planNamespace(listed(), 'shop', 'shop', { ...planOpts, secretsMode: 'Omit' });
    assert.ok(!plan.objects.some((o) => o.kind === 'Secret'));
    assert.deepEqual(plan.skipped.map((s) => [s.kind, s.name, s.reason]), [['Secret', 'creds', 'secrets.mode is Omit']]);
  });
});

describe('commits', () => {
  it('diffs files and writes a reviewable message with trailers', () => {
    const d = diffFiles(new Map([['a', '1'], ['b', '2'], ['c', '3']]), new Map([['a', '1'], ['b', '9'], ['d', '4']]));
    assert.deepEqual(d, { added: ['d'], changed: ['b'], removed: ['c'] });
    const msg = commitMessage({ replication: 'dr-syncer/shop', sourceCluster: 'prod', diff: d, counts: { ConfigMap: 2 } });
    assert.match(msg, /^dr-syncer: sync dr-syncer\/shop \(1 added, 1 changed, 1 removed\)\n\nAdded:\n {2}d\n\nChanged:\n {2}b\n\nRemoved:\n {2}c\n/);
    assert.match(msg, /\nDr-Syncer-Replication: dr-syncer\/shop\nDr-Syncer-Source-Cluster: prod\n$/);
  });
});
