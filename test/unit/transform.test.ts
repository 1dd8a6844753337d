import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { transformObject } from '../../src/core/transform/index.ts';
import type { TransformOptions } from '../../src/core/transform/index.ts';
import type { KubeObject } from '../../src/core/types.ts';
import { configMap, deployment, pvc, service, statefulSet } from '../fixtures/objects.ts';

const opts = (o: Partial<TransformOptions> = {}): TransformOptions => ({ sourceNamespace: 'shop', destinationNamespace: 'shop', scaleToZero: true, pvc: {}, ...o });
function ok(obj: KubeObject, o?: Partial<TransformOptions>, previous?: KubeObject): KubeObject {
  const r = transformObject(obj, opts(o), previous);
  if (!r.ok) throw new Error(r.error);
  return r.object;
}
const spec = (o: KubeObject) => o.spec as Record<string, unknown>;

describe('server-managed fields', () => {
  it('strips status, identity, bookkeeping and controller annotations but keeps user metadata', () => {
    const out = ok(deployment());
    assert.equal(out.status, undefined);
    for (const f of ['uid', 'resourceVersion', 'generation', 'creationTimestamp', 'managedFields']) assert.equal(out.metadata[f], undefined, f);
    assert.equal(out.metadata.annotations?.['deployment.kubernetes.io/revision'], undefined);
    assert.equal(out.metadata.annotations?.['kubectl.kubernetes.io/last-applied-configuration'], undefined);
    assert.equal(out.metadata.annotations?.team, 'payments');
    assert.deepEqual(out.metadata.labels, { app: 'web' });
  });
  it('removes ownerReferences, finalizers and deletion fields', () => {
    const cm = configMap('c', { a: '1' });
    Object.assign(cm.metadata, { finalizers: ['x'], deletionTimestamp: 'now', deletionGracePeriodSeconds: 30, ownerReferences: [{ apiVersion: 'v1', kind: 'X', name: 'y' }] });
    const out = ok(cm);
    assert.deepEqual(Object.keys(out.metadata).sort(), ['name', 'namespace']);
  });
  it('removes only the server annotations, keeping the order of the others; none left, no annotations', () => {
    const cm = configMap('c', { a: '1' });
    cm.metadata.annotations = { z: '1', 'deployment.kubernetes.io/revision': '2', a: '3', 'kubectl.kubernetes.io/last-applied-configuration': '{}' };
    assert.deepEqual(Object.entries(ok(cm).metadata.annotations ?? {}), [['z', '1'], ['a', '3']]);
    cm.metadata.annotations = { 'deployment.kubernetes.io/revision': '2' };
    assert.equal('annotations' in ok(cm).metadata, false);
    cm.metadata.labels = {};
    assert.equal('labels' in ok(cm).metadata, false);
  });
  it('a workload a failover cutover scaled down: the DR file keeps the count it remembered, not which Replication scaled it down', () => {
    const out = ok(deployment('web', 0, { annotations: { 'dr-syncer.io/original-replicas': '3', 'dr-syncer.io/scaled-down-by': 'dr-syncer/shop' } }));
    assert.equal(out.metadata.annotations?.['dr-syncer.io/original-replicas'], '3');
    assert.equal(out.metadata.annotations?.['dr-syncer.io/scaled-down-by'], undefined);
  });
  it('never mutates its input', () => {
    const d = deployment();
    const before = structuredClone(d);
    ok(d, { destinationNamespace: 'shop-dr' });
    assert.deepEqual(d, before);
    // Annotations without a server one are passed on as they are: a later step must copy them.
    const cm = configMap('c', { a: '1' });
    cm.metadata.annotations = { team: 'payments' };
    const cmBefore = structuredClone(cm);
    const out = ok(cm, { destinationNamespace: 'shop-dr', transforms: [{ patch: [{ op: 'add', path: '/metadata/annotations/extra', value: 'x' }, { op: 'replace', path: '/metadata/annotations/team', value: 'dr' }] }] });
    assert.deepEqual(out.metadata.annotations, { team: 'dr', extra: 'x' });
    assert.deepEqual(cm, cmBefore);
  });
});

describe('scale to zero', () => {
  it('scales Deployments and StatefulSets to 0 and remembers the source count', () => {
    for (const obj of [deployment('web', 3), statefulSet('db', 2)]) {
      const out = ok(obj);
      assert.equal(spec(out).replicas, 0);
      assert.equal(out.metadata.annotations?.['dr-syncer.io/original-replicas'], String(spec(obj).replicas));
    }
  });
  it('treats missing replicas as 1', () => {
    assert.equal(ok(deployment('web', null)).metadata.annotations?.['dr-syncer.io/original-replicas'], '1');
  });
  it('keeps a remembered non-zero count when the source is at 0', () => {
    const prev = ok(deployment('web', 5));
    const out = ok(deployment('web', 0), {}, prev);
    assert.equal(out.metadata.annotations?.['dr-syncer.io/original-replicas'], '5');
    const onSource = ok(deployment('web', 0, { annotations: { 'dr-syncer.io/original-replicas': '4' } }));
    assert.equal(onSource.metadata.annotations?.['dr-syncer.io/original-replicas'], '4');
    assert.equal(ok(deployment('web', 0)).metadata.annotations?.['dr-syncer.io/original-replicas'], '0');
  });
  it('scale-override: an integer sets the DR count, another value keeps the source count', () => {
    assert.equal(spec(ok(deployment('a', 3, { labels: { 'dr-syncer.io/scale-override': '2' } }))).replicas, 2);
    assert.equal(spec(ok(deployment('b', 3, { labels: { 'dr-syncer.io/scale-override': 'true' } }))).replicas, 3);
  });
  it('scaleToZero=false keeps the source count', () => {
    assert.equal(spec(ok(deployment('a', 3), { scaleToZero: false })).replicas, 3);
  });
  it('suspends CronJobs and Jobs and keeps their original state', () => {
    const cj: KubeObject = { apiVersion: 'batch/v1', kind: 'CronJob', metadata: { name: 'nightly', namespace: 'shop' }, spec: { schedule: '0 1 * * *', suspend: false, jobTemplate: {} } };
    const out = ok(cj);
    assert.equal(spec(out).suspend, true);
    assert.equal(out.metadata.annotations?.['dr-syncer.io/original-suspend'], 'false');
    assert.deepEqual(ok(out), out, 'a second pass keeps the remembered state');
    const suspendedAtSource = ok({ ...cj, spec: { ...(cj.spec as object), suspend: true } });
    assert.equal(suspendedAtSource.metadata.annotations?.['dr-syncer.io/original-suspend'], 'true');
  });
});

describe('services', () => {
  it('drops allocated cluster IPs and health-check port, and node ports the server assigned', () => {
    const out = ok(service('web', { type: 'NodePort', clusterIP: '10.0.0.12', clusterIPs: ['10.0.0.12'], ipFamilies: ['IPv4'], ipFamilyPolicy: 'SingleStack', ports: [{ port: 80, nodePort: 30080 }], selector: { app: 'web' } }));
    assert.equal(spec(out).clusterIP, undefined);
    assert.equal(spec(out).clusterIPs, undefined);
    assert.equal(spec(out).ipFamilies, undefined);
    assert.deepEqual(spec(out).ports, [{ port: 80 }], 'no manager set the nodePort: the server assigned it');
    const lb = ok(service('lb', { type: 'LoadBalancer', clusterIP: '10.0.0.13', healthCheckNodePort: 31000, loadBalancerIP: '1.2.3.4', externalTrafficPolicy: 'Local', ports: [{ port: 80 }] }));
    assert.equal(spec(lb).healthCheckNodePort, undefined);
    assert.equal(spec(lb).loadBalancerIP, undefined);
    assert.equal(spec(lb).externalTrafficPolicy, 'Local');
  });
  it('keeps the node ports a user chose (owned by a field manager), per port and protocol', () => {
    const svc = service('web', { type: 'NodePort', ports: [{ port: 80, protocol: 'TCP', nodePort: 30080 }, { port: 443, protocol: 'TCP', nodePort: 31443 }, { port: 53, protocol: 'UDP', nodePort: 30053 }] });
    svc.metadata.managedFields = [
      { manager: 'kubectl', operation: 'Apply', fieldsV1: { 'f:spec': { 'f:ports': { 'k:{"port":80,"protocol":"TCP"}': { '.': {}, 'f:nodePort': {}, 'f:port': {} }, 'k:{"port":443,"protocol":"TCP"}': { '.': {}, 'f:port': {} } } } } },
      { manager: 'helm', operation: 'Update', fieldsV1: { 'f:spec': { 'f:ports': { 'k:{"port":53,"protocol":"UDP"}': { 'f:nodePort': {} } } } } },
    ];
    assert.deepEqual(spec(ok(svc)).ports, [{ port: 80, protocol: 'TCP', nodePort: 30080 }, { port: 443, protocol: 'TCP' }, { port: 53, protocol: 'UDP', nodePort: 30053 }]);
    svc.metadata.managedFields = [{ manager: 'old', operation: 'Update' }];
    assert.equal((spec(ok(svc)).ports as { nodePort?: number }[]).filter((p) => p.nodePort).length, 3, 'managedFields without fieldsV1 cannot tell: kept');
    delete svc.metadata.managedFields;
    assert.equal((spec(ok(svc)).ports as { nodePort?: number }[]).filter((p) => p.nodePort).length, 3, 'no managedFields: kept as the source has them');
  });
  it('keeps headless Services headless', () => {
    const out = ok(service('db', { clusterIP: 'None', clusterIPs: ['None'], publishNotReadyAddresses: true, ports: [{ port: 5432 }] }));
    assert.equal(spec(out).clusterIP, 'None');
    assert.equal(spec(out).publishNotReadyAddresses, true);
  });
});

describe('persistent volume claims', () => {
  it('clears binding fields and annotations and maps the storage class and access modes', () => {
    const out = ok(pvc('data', { storageClassName: 'fast', accessModes: ['ReadWriteOncePod', 'ReadOnlyMany'] }), {
      pvc: { storageClassMappings: [{ from: 'fast', to: 'fast-dr' }], accessModeMappings: [{ from: 'ReadWriteOncePod', to: 'ReadWriteOnce' }, { from: 'ReadOnlyMany', to: 'ReadWriteMany' }] },
    });
    assert.equal(spec(out).volumeName, undefined);
    assert.equal(spec(out).storageClassName, 'fast-dr');
    assert.deepEqual(spec(out).accessModes, ['ReadWriteOnce', 'ReadWriteMany']);
    assert.deepEqual(out.metadata.annotations, { note: 'keep' });
    assert.equal(out.metadata.finalizers, undefined);
    assert.equal(spec(out).volumeMode, 'Filesystem');
  });
  it('the storage-class label overrides the mapping', () => {
    const out = ok(pvc('data', { storageClassName: 'fast' }, { 'dr-syncer.io/storage-class': 'gold' }), { pvc: { storageClassMappings: [{ from: 'fast', to: 'fast-dr' }] } });
    assert.equal(spec(out).storageClassName, 'gold');
  });
  it('drops selector and data sources unless preserveVolumeAttributes', () => {
    const p = pvc('data', { selector: { matchLabels: { disk: 'a' } }, dataSource: { kind: 'VolumeSnapshot', name: 's', apiGroup: 'snapshot.storage.k8s.io' } });
    assert.equal(spec(ok(p)).selector, undefined);
    assert.equal(spec(ok(p)).dataSource, undefined);
    assert.deepEqual(spec(ok(p, { pvc: { preserveVolumeAttributes: true } })).selector, { matchLabels: { disk: 'a' } });
  });
});

describe('StatefulSet claim templates', () => {
  it('map the storage class and access modes like claims, and drop status and null timestamps', () => {
    const sts = statefulSet('db', 2);
    const template = { apiVersion: 'v1', kind: 'PersistentVolumeClaim', metadata: { name: 'data', creationTimestamp: null }, spec: { accessModes: ['ReadWriteOnce'], storageClassName: 'fast', resources: { requests: { storage: '1Gi' } }, volumeMode: 'Filesystem' }, status: { phase: 'Pending' } };
    const labelled = { metadata: { name: 'logs', labels: { 'dr-syncer.io/storage-class': 'cheap' } }, spec: { storageClassName: 'fast', accessModes: ['ReadWriteOncePod'] } };
    (sts.spec as Record<string, unknown>).volumeClaimTemplates = [template, labelled];
    (sts.spec as { template: { metadata: Record<string, unknown> } }).template.metadata.creationTimestamp = null;
    const out = ok(sts, { pvc: { storageClassMappings: [{ from: 'fast', to: 'dr-ssd' }], accessModeMappings: [{ from: 'ReadWriteOncePod', to: 'ReadWriteOnce' }] } });
    assert.deepEqual(spec(out).volumeClaimTemplates, [
      { apiVersion: 'v1', kind: 'PersistentVolumeClaim', metadata: { name: 'data' }, spec: { accessModes: ['ReadWriteOnce'], storageClassName: 'dr-ssd', resources: { requests: { storage: '1Gi' } }, volumeMode: 'Filesystem' } },
      { metadata: { name: 'logs', labels: { 'dr-syncer.io/storage-class': 'cheap' } }, spec: { storageClassName: 'cheap', accessModes: ['ReadWriteOnce'] } },
    ]);
    // The StatefulSet's own label applies to templates without one, whatever other labels they carry.
    const labelled2 = statefulSet('db2', 1);
    labelled2.metadata.labels = { ...(labelled2.metadata.labels ?? {}), 'dr-syncer.io/storage-class': 'gold' };
    (labelled2.spec as Record<string, unknown>).volumeClaimTemplates = [{ metadata: { name: 'd', labels: { app: 'db' } }, spec: { storageClassName: 'fast' } }];
    assert.equal((spec(ok(labelled2)).volumeClaimTemplates as { spec: { storageClassName: string } }[])[0]!.spec.storageClassName, 'gold');
    assert.equal('creationTimestamp' in (spec(out).template as { metadata: object }).metadata, false);
  });
  it('null creationTimestamps go from every embedded template (CronJob job and pod templates)', () => {
    const cj: KubeObject = { apiVersion: 'batch/v1', kind: 'CronJob', metadata: { name: 'n', namespace: 'shop' }, spec: { schedule: '* * * * *', jobTemplate: { metadata: { creationTimestamp: null, labels: { a: 'b' } }, spec: { template: { metadata: { creationTimestamp: null }, spec: { containers: [] } } } } } };
    assert.deepEqual(spec(ok(cj)).jobTemplate, { metadata: { labels: { a: 'b' } }, spec: { template: { metadata: {}, spec: { containers: [] } } } });
  });
});

describe('jobs and service accounts', () => {
  it('drops the generated selector and controller-uid labels', () => {
    const uid = 'b0c6f1b1';
    const job: KubeObject = {
      apiVersion: 'batch/v1', kind: 'Job', metadata: { name: 'migrate', namespace: 'shop', labels: { 'controller-uid': uid, 'batch.kubernetes.io/controller-uid': uid, app: 'm' } },
      spec: { selector: { matchLabels: { 'batch.kubernetes.io/controller-uid': uid } }, template: { metadata: { labels: { 'controller-uid': uid, 'batch.kubernetes.io/job-name': 'migrate' } }, spec: { containers: [] } } },
    };
    const out = ok(job);
    assert.equal(spec(out).selector, undefined);
    assert.deepEqual(out.metadata.labels, { app: 'm' });
    assert.deepEqual((spec(out).template as { metadata: unknown }).metadata, { labels: { 'batch.kubernetes.io/job-name': 'migrate' } });
    assert.equal(spec(out).suspend, true);
  });
  it('drops ServiceAccount token references', () => {
    const sa: KubeObject = { apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: 'app', namespace: 'shop' }, secrets: [{ name: 'app-token-x' }], imagePullSecrets: [{ name: 'reg' }] };
    const out = ok(sa);
    assert.equal(out.secrets, undefined);
    assert.deepEqual(out.imagePullSecrets, [{ name: 'reg' }]);
  });
});

describe('namespace mapping', () => {
  it('moves objects and rewrites in-namespace references', () => {
    const rb: KubeObject = {
      apiVersion: 'rbac.authorization.k8s.io/v1', kind: 'RoleBinding', metadata: { name: 'rb', namespace: 'shop' },
      roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: 'r' },
      subjects: [{ kind: 'ServiceAccount', name: 'app', namespace: 'shop' }, { kind: 'ServiceAccount', name: 'ci', namespace: 'tools' }, { kind: 'User', name: 'alice', apiGroup: 'rbac.authorization.k8s.io' }],
    };
    const out = ok(rb, { destinationNamespace: 'shop-dr' });
    assert.equal(out.metadata.namespace, 'shop-dr');
    assert.deepEqual(out.subjects, [{ kind: 'ServiceAccount', name: 'app', namespace: 'shop-dr' }, { kind: 'ServiceAccount', name: 'ci', namespace: 'tools' }, { kind: 'User', name: 'alice', apiGroup: 'rbac.authorization.k8s.io' }]);
    const np: KubeObject = {
      apiVersion: 'networking.k8s.io/v1', kind: 'NetworkPolicy', metadata: { name: 'np', namespace: 'shop' },
      spec: { podSelector: {}, ingress: [{ from: [{ namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'shop' } } }] }] },
    };
    const npOut = ok(np, { destinationNamespace: 'shop-dr' });
    assert.deepEqual((spec(npOut).ingress as { from: unknown[] }[])[0]!.from[0], { namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'shop-dr' } } });
  });
});

describe('user transforms', () => {
  it('applies RFC 6902 patches to the selected targets only', () => {
    const transforms = [{ target: { kind: 'Deployment', name: 'web' }, patch: [{ op: 'replace' as const, path: '/spec/template/spec/containers/0/image', value: 'registry.dr/nginx:1.27' }, { op: 'add' as const, path: '/metadata/labels/site', value: 'dr' }] }];
    const out = ok(deployment('web'), { transforms });
    assert.equal(((spec(out).template as { spec: { containers: { image: string }[] } }).spec.containers[0]!.image), 'registry.dr/nginx:1.27');
    assert.equal(out.metadata.labels?.site, 'dr');
    assert.equal(ok(deployment('api'), { transforms }).metadata.labels?.site, undefined);
  });
  it('selects targets by label', () => {
    const transforms = [{ target: { labelSelector: { matchLabels: { tier: 'edge' } } }, patch: [{ op: 'add' as const, path: '/metadata/annotations', value: { dr: 'yes' } }] }];
    assert.equal(ok(configMap('a', {}, { tier: 'edge' }), { transforms }).metadata.annotations?.dr, 'yes');
    assert.equal(ok(configMap('b', {}, { tier: 'core' }), { transforms }).metadata.annotations, undefined);
  });
  it('reports a failing patch with the object and the operation instead of throwing', () => {
    const r = transformObject(deployment('web'), opts({ transforms: [{ patch: [{ op: 'replace', path: '/spec/nope/deeper', value: 1 }] }] }));
    assert.equal(r.ok, false);
    assert.match(!r.ok ? r.error : '', /spec\.transforms\[0\]\.patch\[0\] \(replace \/spec\/nope\/deeper\) failed on Deployment\.apps shop\/web/);
    const t = transformObject(configMap('c', { a: '1' }), opts({ transforms: [{ patch: [{ op: 'test', path: '/data/a', value: '2' }] }] }));
    assert.equal(t.ok, false);
  });
});
