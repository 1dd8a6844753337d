// Real nodes in the test clusters (issue 9): containerd + kubelet per node, kube-scheduler, and
// the daemonset and node-lifecycle controllers. The project's own image (built from the root
// Dockerfile on the node:20-bookworm-slim STAND-IN, see test/env/build-images.sh) runs as a
// DaemonSet and a Job, a pod writes into a PVC bound to a directory-backed local PV, and stop()
// leaves no process, mount, bridge or state directory behind.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { kubectl, startCluster, type BuiltImage, type TestCluster, type TestNode } from '../env/cluster.ts';
import { buildImage } from '../env/images.ts';
import { containerPids, mountsUnder } from '../env/nodes.ts';
import { eventually } from '../env/wait.ts';

/** Running (a killed process may linger as a zombie until init reaps it: that counts as gone). */
function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return !/^[ZX]/.test(stat.slice(stat.lastIndexOf(')') + 2));
  } catch {
    return false;
  }
}

interface Pod {
  metadata: { name: string };
  spec: { nodeName?: string; volumes?: { persistentVolumeClaim?: { claimName: string } }[] };
  status: { phase?: string; containerStatuses?: { ready: boolean }[] };
}

async function getJson<T>(c: TestCluster, args: string[]): Promise<T> {
  return JSON.parse((await kubectl(c.kubeconfigPath, [...args, '-o', 'json'])).stdout) as T;
}

void describe('a cluster with two real nodes', () => {
  let c: TestCluster;
  let image: BuiltImage;

  before(async () => {
    const t0 = Date.now();
    // The controller image: cached by what its Dockerfile copies, rebuilt (~1 min) when src changes.
    [c, image] = await Promise.all([startCluster({ nodes: 2, pvsPerNode: 2 }), buildImage('controller')]);
    const t1 = Date.now();
    await c.loadImage(image);
    console.log(`2 nodes + image up in ${((t1 - t0) / 1000).toFixed(1)}s, image imported into both in ${((Date.now() - t1) / 1000).toFixed(1)}s`);
  });
  after(async () => {
    await c?.stop();
  });

  test('nodes are Ready at loopback names, each with its own containerd', async () => {
    assert.deepEqual(
      c.nodes.map((n) => n.name),
      ['127.0.0.2', '127.0.0.3'],
    );
    const nodes = await getJson<{ items: { metadata: { name: string }; status: { addresses: { type: string; address: string }[] } }[] }>(c, ['get', 'nodes']);
    for (const n of c.nodes) {
      const api = nodes.items.find((i) => i.metadata.name === n.name);
      assert.ok(api, `node ${n.name} registered`);
      assert.ok(api.status.addresses.some((a) => a.type === 'InternalIP' && a.address === n.internalIP));
      assert.ok(existsSync(n.containerdSocket));
    }
  });

  test('a DaemonSet of the locally built image gets one Running pod per node; exec and logs work', async () => {
    const ds = {
      apiVersion: 'apps/v1',
      kind: 'DaemonSet',
      metadata: { name: 'ds', namespace: 'default' },
      spec: {
        selector: { matchLabels: { app: 'ds' } },
        template: {
          metadata: { labels: { app: 'ds' } },
          spec: {
            terminationGracePeriodSeconds: 1,
            containers: [
              {
                name: 'main',
                image: image.ref,
                imagePullPolicy: 'Never',
                // The image's own Node and its built app; stays up so the pod is Running.
                command: ['node', '-e', 'console.log("up", require("/app/package.json").name); setInterval(() => {}, 1 << 30)'],
              },
            ],
          },
        },
      },
    };
    await kubectl(c.kubeconfigPath, ['apply', '-f', '-'], { input: JSON.stringify(ds) });
    const pods = await eventually(
      'a Ready DaemonSet pod on each node',
      async () => {
        const list = await getJson<{ items: Pod[] }>(c, ['get', 'pods', '-l', 'app=ds']);
        const ready = list.items.filter((p) => p.status.phase === 'Running' && p.status.containerStatuses?.every((s) => s.ready));
        return ready.length === 2 ? ready : undefined;
      },
      90_000,
    );
    assert.deepEqual(pods.map((p) => p.spec.nodeName).sort(), ['127.0.0.2', '127.0.0.3']);
    const pod = pods[0]?.metadata.name ?? '';
    const logs = await eventually('the pod log', async () => {
      const out = (await kubectl(c.kubeconfigPath, ['logs', pod])).stdout;
      return out.includes('up dr-syncer') ? out : undefined;
    });
    assert.match(logs, /up dr-syncer/);
    const exec = await kubectl(c.kubeconfigPath, ['exec', pod, '--', 'node', '-p', 'process.version + " " + process.getuid()']);
    assert.match(exec.stdout, /^v20\.\d+\.\d+ 65532$/m); // the Dockerfile's USER
  });

  test('a Job runs the image entrypoint to completion on a node', async () => {
    const job = {
      apiVersion: 'batch/v1',
      kind: 'Job',
      metadata: { name: 'version', namespace: 'default' },
      spec: {
        backoffLimit: 0,
        template: {
          spec: {
            restartPolicy: 'Never',
            containers: [{ name: 'main', image: image.ref, imagePullPolicy: 'Never', args: ['version'] }],
          },
        },
      },
    };
    await kubectl(c.kubeconfigPath, ['apply', '-f', '-'], { input: JSON.stringify(job) });
    await eventually(
      'the Job to complete',
      async () => {
        const j = await getJson<{ status: { succeeded?: number; failed?: number } }>(c, ['get', 'job', 'version']);
        if ((j.status.failed ?? 0) > 0) throw new Error('the Job failed');
        return j.status.succeeded === 1 ? true : undefined;
      },
      90_000,
    );
    const pods = await getJson<{ items: Pod[] }>(c, ['get', 'pods', '-l', 'job-name=version']);
    const pod = pods.items[0];
    assert.ok(pod);
    assert.ok(pod.spec.nodeName?.startsWith('127.0.0.'));
    assert.equal(pod.status.phase, 'Succeeded');
    const logs = (await kubectl(c.kubeconfigPath, ['logs', pod.metadata.name])).stdout;
    assert.match(logs, /\d+\.\d+\.\d+/); // `dr-syncer version` printed a version
  });

  test('a pod writes into a PVC bound to a directory-backed local PV; the file is in that directory', async () => {
    const manifests = [
      {
        apiVersion: 'v1',
        kind: 'PersistentVolumeClaim',
        metadata: { name: 'data', namespace: 'default' },
        spec: { accessModes: ['ReadWriteOnce'], resources: { requests: { storage: '100Mi' } } }, // default class "local"
      },
      {
        apiVersion: 'v1',
        kind: 'Pod',
        metadata: { name: 'writer', namespace: 'default' },
        spec: {
          restartPolicy: 'Never',
          containers: [
            {
              name: 'main',
              image: image.ref,
              imagePullPolicy: 'Never',
              command: ['node', '-e', 'require("fs").writeFileSync("/data/hello.txt", "written by " + require("os").hostname())'],
              volumeMounts: [{ name: 'data', mountPath: '/data' }],
            },
          ],
          volumes: [{ name: 'data', persistentVolumeClaim: { claimName: 'data' } }],
        },
      },
    ];
    await kubectl(c.kubeconfigPath, ['apply', '-f', '-'], { input: manifests.map((m) => JSON.stringify(m)).join('\n---\n') });
    const pod = await eventually(
      'the writer pod to succeed',
      async () => {
        const p = await getJson<Pod>(c, ['get', 'pod', 'writer']);
        if (p.status.phase === 'Failed') throw new Error('the writer pod failed');
        return p.status.phase === 'Succeeded' ? p : undefined;
      },
      90_000,
    );
    // Bound by the real PV controller, to a PV of the node the scheduler picked.
    const pvc = await getJson<{ spec: { volumeName: string }; status: { phase: string } }>(c, ['get', 'pvc', 'data']);
    assert.equal(pvc.status.phase, 'Bound');
    const node = c.nodes.find((n) => n.name === pod.spec.nodeName);
    assert.ok(node, `the pod ran on one of our nodes (${pod.spec.nodeName})`);
    const dir = node.pvs.get(pvc.spec.volumeName);
    assert.ok(dir, `${pvc.spec.volumeName} is a PV of ${node.name}`);
    assert.equal(readFileSync(path.join(dir, 'hello.txt'), 'utf8'), 'written by writer');
  });

  test('the host reaches pod IPs, and a pod on one node reaches a hostNetwork server on the other node', async () => {
    const server = (name: string, node: string, hostNetwork: boolean, listen: string): object => ({
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name, namespace: 'default', labels: { net: 'test' } },
      spec: {
        nodeName: node,
        hostNetwork,
        terminationGracePeriodSeconds: 1,
        containers: [
          {
            name: 'main',
            image: image.ref,
            imagePullPolicy: 'Never',
            env: [{ name: 'LISTEN', value: listen }],
            command: ['node', '-e', `require('http').createServer((q, s) => s.end('hello from ${name}')).listen(18080, process.env.LISTEN)`],
          },
        ],
      },
    });
    const [n1, n2] = c.nodes as [TestNode, TestNode];
    // A hostNetwork server binds its node's own address: all hostNetwork pods share one network namespace.
    const manifests = [server('pod-server', n1.name, false, '0.0.0.0'), server('host-server', n1.name, true, n1.internalIP)];
    await kubectl(c.kubeconfigPath, ['apply', '-f', '-'], { input: manifests.map((m) => JSON.stringify(m)).join('\n---\n') });
    const podIP = await eventually('the pod server to run', async () => {
      const p = await getJson<Pod & { status: { podIP?: string } }>(c, ['get', 'pod', 'pod-server']);
      return p.status.containerStatuses?.every((s) => s.ready) ? p.status.podIP : undefined;
    });
    assert.ok(podIP?.startsWith(n1.podCIDR.split('.').slice(0, 3).join('.') + '.'), `pod IP ${podIP} in ${n1.podCIDR}`);
    const body = await eventually('an answer from the pod', async () => {
      const res = await fetch(`http://${podIP}:18080/`);
      return res.ok ? res.text() : undefined;
    });
    assert.equal(body, 'hello from pod-server');

    const client = {
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name: 'client', namespace: 'default', labels: { net: 'test' } },
      spec: {
        nodeName: n2.name,
        restartPolicy: 'OnFailure', // until the host server listens
        containers: [
          {
            name: 'main',
            image: image.ref,
            imagePullPolicy: 'Never',
            command: ['node', '-e', `fetch('http://${n1.internalIP}:18080/').then((r) => r.text()).then(console.log)`],
          },
        ],
      },
    };
    await kubectl(c.kubeconfigPath, ['apply', '-f', '-'], { input: JSON.stringify(client) });
    await eventually('the client pod to succeed', async () => {
      const p = await getJson<Pod>(c, ['get', 'pod', 'client']);
      return p.status.phase === 'Succeeded' ? true : undefined;
    });
    assert.match((await kubectl(c.kubeconfigPath, ['logs', 'client'])).stdout, /hello from host-server/);
  });

  test('a hostNetwork pod calls the API server with a projected ServiceAccount token', async () => {
    const manifests = [
      { apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: 'reader', namespace: 'default' } },
      {
        apiVersion: 'rbac.authorization.k8s.io/v1',
        kind: 'RoleBinding',
        metadata: { name: 'reader', namespace: 'default' },
        roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'view' },
        subjects: [{ kind: 'ServiceAccount', name: 'reader', namespace: 'default' }],
      },
      {
        apiVersion: 'v1',
        kind: 'Pod',
        metadata: { name: 'api-caller', namespace: 'default' },
        spec: {
          hostNetwork: true,
          serviceAccountName: 'reader',
          restartPolicy: 'OnFailure', // until the RoleBinding is in force
          containers: [
            {
              name: 'main',
              image: image.ref,
              imagePullPolicy: 'Never',
              env: [...c.podApiEnv, { name: 'NODE_EXTRA_CA_CERTS', value: '/var/run/secrets/kubernetes.io/serviceaccount/ca.crt' }],
              command: [
                'node',
                '-e',
                `const fs = require('fs'); const e = process.env;
                 const token = fs.readFileSync('/var/run/secrets/kubernetes.io/serviceaccount/token', 'utf8');
                 fetch('https://' + e.KUBERNETES_SERVICE_HOST + ':' + e.KUBERNETES_SERVICE_PORT + '/api/v1/namespaces/default/serviceaccounts/reader',
                   { headers: { authorization: 'Bearer ' + token } })
                   .then(async (r) => { if (!r.ok) throw new Error('HTTP ' + r.status); console.log('read', (await r.json()).metadata.name); })
                   .catch((err) => { console.error(err.message); process.exit(1); });`,
              ],
              volumeMounts: [{ name: 'sa', mountPath: '/var/run/secrets/kubernetes.io/serviceaccount', readOnly: true }],
            },
          ],
          volumes: [
            {
              name: 'sa',
              projected: {
                sources: [
                  { serviceAccountToken: { path: 'token', expirationSeconds: 3600 } },
                  { configMap: { name: 'kube-root-ca.crt', items: [{ key: 'ca.crt', path: 'ca.crt' }] } },
                ],
              },
            },
          ],
        },
      },
    ];
    await kubectl(c.kubeconfigPath, ['apply', '-f', '-'], { input: manifests.map((m) => JSON.stringify(m)).join('\n---\n') });
    await eventually('the API caller to succeed', async () => {
      const p = await getJson<Pod>(c, ['get', 'pod', 'api-caller']);
      return p.status.phase === 'Succeeded' ? true : undefined;
    });
    assert.match((await kubectl(c.kubeconfigPath, ['logs', 'api-caller'])).stdout, /^read reader$/m);
  });

  test('stop() leaves no process, mount, bridge, shim socket or state directory', async () => {
    // Component pid files (owner.pid names this test process, which owns the cluster).
    const pidFiles = readdirSync(c.dir).filter((f) => f.endsWith('.pid') && f !== 'owner.pid');
    const pids = pidFiles.map((f) => Number.parseInt(readFileSync(path.join(c.dir, f), 'utf8'), 10));
    assert.ok(pidFiles.includes('kubelet-1.pid') && pidFiles.includes('containerd-2.pid') && pidFiles.includes('kube-scheduler.pid'));
    const shims = c.nodes.flatMap((n) => containerPids(n.dir).shims);
    const containers = c.nodes.flatMap((n) => containerPids(n.dir).containers);
    assert.ok(shims.length >= 2 && containers.length >= 2, 'the DaemonSet pods are running before stop');
    assert.ok(mountsUnder(c.dir).length > 0, 'pods have mounts under the cluster dir before stop');
    const bridges = c.nodes.map((n) => readFileSync(path.join(n.dir, 'bridge'), 'utf8').trim());
    // Host-wide paths containerd 1.6 and runc use whatever their config: shim sockets, CNI
    // result cache, cgroups (named after the container ids).
    const taskDirs = c.nodes.flatMap((n) => {
      const base = path.join(n.dir, 'containerd', 'state', 'io.containerd.runtime.v2.task', 'k8s.io');
      return readdirSync(base).map((id) => path.join(base, id));
    });
    const ids = taskDirs.map((t) => path.basename(t));
    const hostPaths = [
      ...taskDirs.map((t) => readFileSync(path.join(t, 'address'), 'utf8').trim().replace(/^unix:\/\//, '')),
      ...ids.flatMap((id) => ['memory', 'pids', 'cpu'].map((h) => `/sys/fs/cgroup/${h}/k8s.io/${id}`)),
    ];
    const cniResults = (): string[] => {
      try {
        return readdirSync('/var/lib/cni/results').filter((f) => ids.some((id) => f.includes(id)));
      } catch {
        return [];
      }
    };
    assert.ok(cniResults().length > 0 && hostPaths.some((p) => existsSync(p)), 'the pods left host-wide state before stop');
    assert.ok(bridges.every((b) => existsSync(`/sys/class/net/${b}`)));

    await c.stop();

    for (const pid of [...pids, ...shims, ...containers]) assert.equal(alive(pid), false, `pid ${pid} is gone`);
    assert.deepEqual(mountsUnder(c.dir), []);
    for (const b of bridges) assert.equal(existsSync(`/sys/class/net/${b}`), false, `bridge ${b} is gone`);
    assert.deepEqual(hostPaths.filter((p) => existsSync(p)), []);
    assert.deepEqual(cniResults(), []);
    assert.equal(existsSync(c.dir), false);
  });
});
