import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { matchesSelector, selectorToQuery } from '../../src/core/labels.ts';
import { DEFAULT_RESOURCE_TYPES, resolveResourceTypes, selectObjects } from '../../src/core/select.ts';
import type { KubeObject, ResourceType } from '../../src/core/types.ts';
import { configMap, deployment, secret } from '../fixtures/objects.ts';

const rt = (group: string, version: string, resource: string, kind: string, namespaced = true, shortNames: string[] = []): ResourceType => ({
  group, version, resource, kind, namespaced, singular: kind.toLowerCase(), shortNames, verbs: ['get', 'list', 'watch', 'create'],
});
const discovered: ResourceType[] = [
  rt('', 'v1', 'configmaps', 'ConfigMap', true, ['cm']), rt('', 'v1', 'secrets', 'Secret'), rt('', 'v1', 'pods', 'Pod', true, ['po']),
  rt('', 'v1', 'events', 'Event', true, ['ev']), rt('', 'v1', 'endpoints', 'Endpoints', true, ['ep']), rt('', 'v1', 'services', 'Service', true, ['svc']),
  rt('', 'v1', 'namespaces', 'Namespace', false, ['ns']), rt('', 'v1', 'persistentvolumeclaims', 'PersistentVolumeClaim', true, ['pvc']),
  rt('apps', 'v1', 'deployments', 'Deployment', true, ['deploy']), rt('apps', 'v1', 'replicasets', 'ReplicaSet', true, ['rs']),
  rt('apps', 'v1', 'statefulsets', 'StatefulSet', true, ['sts']), rt('events.k8s.io', 'v1', 'events', 'Event'),
  rt('coordination.k8s.io', 'v1', 'leases', 'Lease'), rt('discovery.k8s.io', 'v1', 'endpointslices', 'EndpointSlice'),
  rt('example.com', 'v1beta1', 'widgets', 'Widget'), rt('', 'v1', 'pods/log', 'Pod'),
];
const names = (ts: ResourceType[]) => ts.map((t) => (t.group ? `${t.resource}.${t.group}` : t.resource));

describe('resource types', () => {
  it('accepts plural, singular, kind, short names and resource.group', () => {
    const r = resolveResourceTypes(['ConfigMaps', 'deployment', 'Service', 'pvc', 'widgets.example.com'], [], discovered);
    assert.deepEqual(names(r.types), ['configmaps', 'deployments.apps', 'persistentvolumeclaims', 'services', 'widgets.example.com']);
    assert.deepEqual(r.unknown, []);
  });
  it('"*" means every namespaced listable type except the built-in whiteouts', () => {
    const r = resolveResourceTypes(['*'], [], discovered);
    assert.deepEqual(names(r.types), ['configmaps', 'deployments.apps', 'persistentvolumeclaims', 'secrets', 'services', 'statefulsets.apps', 'widgets.example.com']);
  });
  it('applies excludeResourceTypes and reports unknown and refused names', () => {
    const r = resolveResourceTypes(['*', 'gizmos', 'pods', 'namespaces'], ['secrets', 'widgets.example.com'], discovered);
    assert.ok(!names(r.types).includes('secrets'));
    assert.ok(!names(r.types).includes('widgets.example.com'));
    assert.deepEqual(r.unknown, ['gizmos']);
    assert.deepEqual(r.refused.map((x) => x.name), ['pods', 'namespaces']);
  });
  it('defaults to the broad set when resourceTypes is empty', () => {
    const r = resolveResourceTypes(undefined, undefined, discovered);
    assert.ok(DEFAULT_RESOURCE_TYPES.includes('statefulsets'));
    assert.deepEqual(names(r.types), ['configmaps', 'deployments.apps', 'persistentvolumeclaims', 'secrets', 'services', 'statefulsets.apps']);
  });
});

describe('unknown names', () => {
  const discovered = [
    { group: '', version: 'v1', resource: 'services', kind: 'Service', singular: 'service', shortNames: ['svc'], namespaced: true, verbs: ['list'] },
    { group: '', version: 'v1', resource: 'secrets', kind: 'Secret', singular: 'secret', shortNames: [], namespaced: true, verbs: ['list'] },
  ];
  it('a misspelled exclusion is unknown (it would copy what the user meant to keep out)', () => {
    const r = resolveResourceTypes(['*'], ['secert'], discovered);
    assert.deepEqual(r.unknown, ['secert']);
  });
  it('default types the server does not serve are skipped, not errors', () => {
    const r = resolveResourceTypes(undefined, undefined, discovered);
    assert.deepEqual(r.unknown, []);
    assert.ok(r.missingDefaults.includes('deployments'));
    assert.deepEqual(r.types.map((t) => t.resource), ['secrets', 'services']);
  });
});

describe('object selection', () => {
  it('skips ignored, owned, token, default and published objects with reasons', () => {
    const owned = configMap('owned', {});
    owned.metadata.ownerReferences = [{ apiVersion: 'apps/v1', kind: 'Deployment', name: 'web', uid: 'x' }];
    const objs: KubeObject[] = [
      deployment('web'), deployment('skip', 1, { labels: { 'dr-syncer.io/ignore': 'true' } }), deployment('notskip', 1, { labels: { 'dr-syncer.io/ignore': 'false' } }),
      owned, secret('tok', 'kubernetes.io/service-account-token'), secret('creds'), configMap('kube-root-ca.crt', {}),
      { apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: 'default', namespace: 'shop' } },
    ];
    const { selected, skipped } = selectObjects(objs);
    assert.deepEqual(selected.map((o) => o.metadata.name), ['web', 'notskip', 'creds']);
    assert.deepEqual(skipped.map((s) => s.name), ['skip', 'owned', 'tok', 'kube-root-ca.crt', 'default']);
    assert.match(skipped[1]!.reason, /owned by Deployment\/web/);
  });
  it('copies a default ServiceAccount that carries user settings (pull secrets, token mounting, labels)', () => {
    const sa = (extra: Record<string, unknown>, md: Record<string, unknown> = {}): KubeObject => ({ apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: 'default', namespace: 'shop', ...md }, ...extra });
    const { selected, skipped } = selectObjects([
      sa({ imagePullSecrets: [{ name: 'regcred' }] }),
      sa({ automountServiceAccountToken: false }),
      sa({}, { labels: { team: 'a' } }),
      sa({ secrets: [{ name: 'default-token-x' }] }, { annotations: { 'kubectl.kubernetes.io/last-applied-configuration': '{}' } }),
    ]);
    assert.equal(selected.length, 3);
    assert.equal(skipped.length, 1, 'one that only has what every namespace gets is skipped');
    // OpenShift gives every ServiceAccount an annotation and a generated pull secret: not user settings.
    const openshift = sa({ imagePullSecrets: [{ name: 'default-dockercfg-x7k2p' }] }, { annotations: { 'openshift.io/internal-registry-pull-secret-ref': 'default-dockercfg-x7k2p' } });
    assert.equal(selectObjects([openshift]).selected.length, 0);
  });
  it('applies the label selector', () => {
    const { selected } = selectObjects([configMap('a', {}, { tier: 'web' }), configMap('b', {}, { tier: 'db' })], { labelSelector: { matchExpressions: [{ key: 'tier', operator: 'In', values: ['web'] }] } });
    assert.deepEqual(selected.map((o) => o.metadata.name), ['a']);
  });
});

describe('label selectors', () => {
  it('implements every operator', () => {
    const l = { a: '1', b: '2' };
    assert.ok(matchesSelector(l, { matchLabels: { a: '1' } }));
    assert.ok(!matchesSelector(l, { matchLabels: { a: '2' } }));
    assert.ok(matchesSelector(l, { matchExpressions: [{ key: 'b', operator: 'NotIn', values: ['3'] }, { key: 'a', operator: 'Exists' }, { key: 'c', operator: 'DoesNotExist' }] }));
    assert.ok(!matchesSelector(l, { matchExpressions: [{ key: 'c', operator: 'Exists' }] }));
    assert.ok(matchesSelector(undefined, {}));
    assert.equal(selectorToQuery({ matchLabels: { b: '2', a: '1' }, matchExpressions: [{ key: 'x', operator: 'In', values: ['q', 'p'] }, { key: 'y', operator: 'DoesNotExist' }] }), 'a=1,b=2,x in (p,q),!y');
  });
});
