// Test data for the sync benchmarks and their correctness tests: N namespaces labelled
// bench=true, M objects each (70% ConfigMaps with ~250 B of data, 20% headless Services, 10%
// Deployments). Headless Services: the test API server's service IP range (a /24) cannot hold
// thousands of ClusterIPs.
import type { KubeClient } from '../src/adapters/kube/client.ts';

export const benchNamespace = (i: number): string => `bench-${String(i).padStart(3, '0')}`;

export async function seedObjects(client: KubeClient, namespaces: number, perNamespace: number, log: (s: string) => void = () => {}, first = 0): Promise<void> {
  const t0 = Date.now();
  const post = async (p: string, body: unknown) => client.request('POST', p, body);
  for (let i = first; i < first + namespaces; i++) {
    const ns = benchNamespace(i);
    await post('/api/v1/namespaces', { metadata: { name: ns, labels: { bench: 'true' } } });
    const jobs: Promise<unknown>[] = [];
    for (let j = 0; j < perNamespace; j++) {
      const name = `obj-${j}`;
      const r = j % 10;
      if (r < 7) jobs.push(post(`/api/v1/namespaces/${ns}/configmaps`, { metadata: { name, labels: { app: name } }, data: { 'config.yaml': `key: ${j}\nvalue: ${'x'.repeat(200)}\n`, other: String(j) } }));
      else if (r < 9) jobs.push(post(`/api/v1/namespaces/${ns}/services`, { metadata: { name }, spec: { clusterIP: 'None', selector: { app: name }, ports: [{ port: 80, targetPort: 8080 }] } }));
      else jobs.push(post(`/apis/apps/v1/namespaces/${ns}/deployments`, { metadata: { name }, spec: { replicas: 2, selector: { matchLabels: { app: name } }, template: { metadata: { labels: { app: name } }, spec: { containers: [{ name: 'c', image: 'nginx:1.27' }] } } } }));
      // At most 500 requests in flight: 6,000 at once exhaust the API server's connections.
      if (jobs.length >= 500) await Promise.all(jobs.splice(0));
    }
    await Promise.all(jobs);
    if ((i - first) % 20 === 19) log(`  ${(i - first + 1) * perNamespace} objects (${((Date.now() - t0) / 1000).toFixed(0)}s)`);
  }
}
