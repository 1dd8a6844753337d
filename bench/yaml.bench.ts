// Benchmark: our YAML emitter (src/core/yaml.ts) against the `yaml` library's stringify, on
// 10,000 objects shaped as a sync renders the bench data (bench/seed.ts: 70% ConfigMaps, 20%
// headless Services, 10% Deployments, after the DR transforms), both in this run. Also the
// check for characters kustomize cannot carry, which runs on every object too.
//
//   npx tsx bench/yaml.bench.ts [--objects 10000]
import { parseArgs } from 'node:util';
import { stringify } from 'yaml';
import { toYaml, unreadableByGitOps } from '../src/core/yaml.ts';

const { values } = parseArgs({ options: { objects: { type: 'string', default: '10000' }, help: { type: 'boolean', default: false } } });
if (values.help) {
  console.log('usage: npx tsx bench/yaml.bench.ts [--objects N]');
  process.exit(0);
}
const objects: unknown[] = [];
for (let i = 0; i < Number(values.objects); i++) {
  const name = `obj-${i % 100}`;
  const namespace = `bench-${String(Math.floor(i / 100)).padStart(3, '0')}`;
  const annotations = { 'dr-syncer.io/source-cluster': 'bench' };
  const r = i % 10;
  if (r < 7) objects.push({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name, namespace, labels: { app: name }, annotations }, data: { 'config.yaml': `key: ${i}\nvalue: ${'x'.repeat(200)}\n`, other: String(i) } });
  else if (r < 9) objects.push({ apiVersion: 'v1', kind: 'Service', metadata: { name, namespace, annotations }, spec: { clusterIP: 'None', clusterIPs: ['None'], internalTrafficPolicy: 'Cluster', ipFamilies: ['IPv4'], ipFamilyPolicy: 'SingleStack', ports: [{ port: 80, protocol: 'TCP', targetPort: 8080 }], selector: { app: name }, sessionAffinity: 'None', type: 'ClusterIP' } });
  else objects.push({ apiVersion: 'apps/v1', kind: 'Deployment', metadata: { name, namespace, annotations: { ...annotations, 'dr-syncer.io/original-replicas': '2' } }, spec: { replicas: 0, progressDeadlineSeconds: 600, revisionHistoryLimit: 10, selector: { matchLabels: { app: name } }, strategy: { rollingUpdate: { maxSurge: '25%', maxUnavailable: '25%' }, type: 'RollingUpdate' }, template: { metadata: { labels: { app: name } }, spec: { containers: [{ name: 'c', image: 'nginx:1.27', imagePullPolicy: 'IfNotPresent', resources: {}, terminationMessagePath: '/dev/termination-log', terminationMessagePolicy: 'File' }], dnsPolicy: 'ClusterFirst', restartPolicy: 'Always', schedulerName: 'default-scheduler', securityContext: {}, terminationGracePeriodSeconds: 30 } } } });
}
/** Median of `runs` passes over every object, in ms. */
const median = (runs: number, pass: () => void): number => {
  const times: number[] = [];
  for (let k = 0; k < runs; k++) {
    const t = performance.now();
    pass();
    times.push(performance.now() - t);
  }
  return times.sort((a, b) => a - b)[Math.floor(runs / 2)]!;
};
let bytes = 0;
const library = median(3, () => objects.forEach((o) => (bytes += stringify(o).length)));
const ours = median(9, () => objects.forEach((o) => (bytes += toYaml(o).length)));
const check = median(9, () => objects.forEach((o) => (bytes += unreadableByGitOps(o)?.length ?? 0)));
const rows = [
  ['objects', `${objects.length} (${bytes > 0 ? 'rendered' : 'nothing rendered'})`],
  ['yaml library stringify', `${library.toFixed(0)} ms (median of 3)`],
  ['toYaml (ours)', `${ours.toFixed(0)} ms (median of 9) = ${(library / ours).toFixed(1)}x faster, ${((ours * 1000) / objects.length).toFixed(1)} µs per object`],
  ['unreadableByGitOps', `${check.toFixed(0)} ms (median of 9), ${((check * 1000) / objects.length).toFixed(1)} µs per object`],
];
console.log(rows.map(([k, v]) => `${k!.padEnd(24)} ${v}`).join('\n'));
