// The source side of failover against a real kube-apiserver. Two Replications split namespace
// `shop` by label (team=a, team=b) and a third syncs its StatefulSet; all three cut over. Each
// cutover scales its workloads down remembering their state and marking them as its own; a
// failback restores only what its own cutover scaled down (and says which it left to the
// others), also when its DR folders are gone and it must find them at the source: by the mark,
// whatever their labels are now; a workload scaled down before the mark existed, by its
// remembered state and the selector. No controllers: only the API objects matter.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { KubeClient } from '../../src/adapters/kube/client.ts';
import { restoreSource, scaleSourceDown, scaledDownSourceWorkloads } from '../../src/controllers/failover.ts';
import { SCALED_DOWN_BY } from '../../src/core/transform/metadata.ts';
import { ORIGINAL_REPLICAS, ORIGINAL_SUSPEND } from '../../src/core/transform/workloads.ts';
import { resolveResourceTypes } from '../../src/core/select.ts';
import type { KubeObject, LabelSelector, ResourceType } from '../../src/core/types.ts';
import type { RepoWorkload } from '../../src/sync/failover.ts';
import { kubectl, startCluster, type TestCluster } from '../env/cluster.ts';

const NS = 'shop';
const DR_NS = 'shop-dr';
const NAMESPACES = [{ source: NS, destination: DR_NS }];

const deployment = (name: string, team: string, replicas: number): string => `
apiVersion: apps/v1
kind: Deployment
metadata: { name: ${name}, namespace: ${NS}, labels: { team: ${team} } }
spec:
  replicas: ${replicas}
  selector: { matchLabels: { app: ${name} } }
  template:
    metadata: { labels: { app: ${name}, team: ${team} } }
    spec: { containers: [{ name: app, image: nginx:1.27 }] }
`;

const cronJob = (name: string, team: string): string => `
apiVersion: batch/v1
kind: CronJob
metadata: { name: ${name}, namespace: ${NS}, labels: { team: ${team} } }
spec:
  schedule: "0 3 * * *"
  jobTemplate:
    spec:
      template:
        spec: { restartPolicy: OnFailure, containers: [{ name: job, image: nginx:1.27 }] }
`;

const statefulSet = (name: string, team: string, replicas: number): string => `
apiVersion: apps/v1
kind: StatefulSet
metadata: { name: ${name}, namespace: ${NS}, labels: { team: ${team} } }
spec:
  replicas: ${replicas}
  serviceName: ${name}
  selector: { matchLabels: { app: ${name} } }
  template:
    metadata: { labels: { app: ${name}, team: ${team} } }
    spec: { containers: [{ name: db, image: nginx:1.27 }] }
`;

const MANIFESTS = [
  `apiVersion: v1\nkind: Namespace\nmetadata: { name: ${NS} }\n`,
  deployment('web-a', 'a', 3),
  deployment('api-a', 'a', 2),
  deployment('web-b', 'b', 4),
  deployment('plain', 'a', 1),
  cronJob('report-a', 'a'),
  cronJob('report-b', 'b'),
  statefulSet('db-a', 'a', 2),
  // Scaled down by a cutover before the mark existed: the annotation alone.
  deployment('legacy', 'a', 0).replace('labels: { team: a } }', `labels: { team: a }, annotations: { ${ORIGINAL_REPLICAS}: "5" } }`),
].join('---\n');

const PATHS: Record<string, string> = {
  Deployment: `/apis/apps/v1/namespaces/${NS}/deployments`,
  StatefulSet: `/apis/apps/v1/namespaces/${NS}/statefulsets`,
  CronJob: `/apis/batch/v1/namespaces/${NS}/cronjobs`,
};
const OBJECTS: [kind: string, name: string][] = [
  ['Deployment', 'web-a'], ['Deployment', 'api-a'], ['Deployment', 'web-b'], ['Deployment', 'plain'],
  ['CronJob', 'report-a'], ['CronJob', 'report-b'], ['StatefulSet', 'db-a'],
];

const A = 'dr-syncer/team-a';
const B = 'dr-syncer/team-b';
const DB = 'dr-syncer/db';
const OTHER = 'dr-syncer/other';
const wl = (kind: string, name: string): RepoWorkload => ({ kind, name, sourceNamespace: NS, destinationNamespace: DR_NS });
/** What each Replication's DR folder names (`plain` is in none of them). */
const OF_A = [wl('Deployment', 'web-a'), wl('Deployment', 'api-a'), wl('CronJob', 'report-a')];
const OF_B = [wl('Deployment', 'web-b'), wl('CronJob', 'report-b')];
const OF_DB = [wl('StatefulSet', 'db-a')];
/** Scaled down by a cutover before the mark existed (team a, in no folder here). */
const LEGACY = wl('Deployment', 'legacy');

// Order is not part of the contract; compare as sorted "Kind name src->dst" strings.
const keys = (ws: readonly RepoWorkload[]): string[] =>
  ws.map((w) => `${w.kind} ${w.name} ${w.sourceNamespace}->${w.destinationNamespace}`).sort();

void describe('source-side failover helpers against a real API server', { timeout: 180_000 }, () => {
  let cluster: TestCluster;
  let client: KubeClient;
  /** What each Replication syncs: its types and label selector. */
  const SELECT: Record<string, { by: string; types: ResourceType[]; labelSelector?: LabelSelector }> = {};
  const found = (by: string, namespaces = NAMESPACES) => scaledDownSourceWorkloads(client, namespaces, SELECT[by]!).then(keys);

  /** Every object's live state, "replicas=N" or "suspend=B", then the remembered state and the mark, if any. */
  async function snapshot(): Promise<Record<string, string>> {
    const out: Record<string, string> = {};
    for (const [kind, name] of OBJECTS) {
      const o = await client.get<KubeObject>(`${PATHS[kind]}/${name}`);
      const spec = o.spec as { replicas?: number; suspend?: boolean };
      const a = o.metadata.annotations ?? {};
      const remembered = a[kind === 'CronJob' ? ORIGINAL_SUSPEND : ORIGINAL_REPLICAS];
      out[name] = `${kind === 'CronJob' ? `suspend=${String(spec.suspend)}` : `replicas=${String(spec.replicas)}`}` +
        `${remembered !== undefined ? ` original=${remembered}` : ''}${a[SCALED_DOWN_BY] !== undefined ? ` by=${a[SCALED_DOWN_BY]}` : ''}`;
    }
    return out;
  }

  const INITIAL = {
    'web-a': 'replicas=3', 'api-a': 'replicas=2', 'web-b': 'replicas=4', plain: 'replicas=1',
    'report-a': 'suspend=false', 'report-b': 'suspend=false', 'db-a': 'replicas=2',
  };
  const CUT_OVER = {
    'web-a': `replicas=0 original=3 by=${A}`, 'api-a': `replicas=0 original=2 by=${A}`, 'web-b': `replicas=0 original=4 by=${B}`, plain: 'replicas=1',
    'report-a': `suspend=true original=false by=${A}`, 'report-b': `suspend=true original=false by=${B}`, 'db-a': `replicas=0 original=2 by=${DB}`,
  };
  const LINES_A = ['Deployment shop/web-a: replicas 3 -> 0', 'Deployment shop/api-a: replicas 2 -> 0', 'CronJob shop/report-a: active -> suspended'];

  before(async () => {
    cluster = await startCluster({ controllerManager: false });
    // No client-side rate limit: it would only slow the test down.
    client = await KubeClient.fromFile(cluster.kubeconfigPath, undefined, { qps: 0 });
    await kubectl(cluster.kubeconfigPath, ['apply', '-f', '-'], { input: MANIFESTS });
    const discovered = await client.discover();
    const typesOf = (names: string[]) => resolveResourceTypes(names, undefined, discovered).types;
    SELECT[A] = { by: A, types: typesOf(['deployments', 'cronjobs']), labelSelector: { matchLabels: { team: 'a' } } };
    SELECT[B] = { by: B, types: typesOf(['deployments', 'cronjobs']), labelSelector: { matchExpressions: [{ key: 'team', operator: 'In', values: ['b'] }] } };
    SELECT[DB] = { by: DB, types: typesOf(['statefulsets']) };
    SELECT[OTHER] = { by: OTHER, types: typesOf(['deployments', 'cronjobs', 'statefulsets']), labelSelector: { matchLabels: { team: 'c' } } };
    for (const sel of Object.values(SELECT)) assert.ok(sel.types.length > 0);
  });
  after(async () => {
    await cluster?.stop();
  });

  void test('nothing is found before a cutover', async () => {
    assert.deepEqual(await snapshot(), INITIAL);
    // (legacy, unmarked, is found by its remembered state and A's selector.)
    for (const by of [B, DB, OTHER]) assert.deepEqual(await found(by), []);
    assert.deepEqual(await found(A), keys([LEGACY]));
  });

  void test('a dry-run cutover reports the changes and changes nothing', async () => {
    assert.deepEqual(await scaleSourceDown(client, OF_A, { by: A, dryRun: true }), LINES_A);
    assert.deepEqual(await snapshot(), INITIAL);
  });

  void test('each cutover scales its own workloads down, remembers their state and marks them; again, it does nothing', async () => {
    assert.deepEqual(await scaleSourceDown(client, OF_A, { by: A }), LINES_A);
    assert.deepEqual(await scaleSourceDown(client, OF_B, { by: B }), ['Deployment shop/web-b: replicas 4 -> 0', 'CronJob shop/report-b: active -> suspended']);
    assert.deepEqual(await scaleSourceDown(client, OF_DB, { by: DB }), ['StatefulSet shop/db-a: replicas 2 -> 0']);
    assert.deepEqual(await snapshot(), CUT_OVER);
    assert.deepEqual(await scaleSourceDown(client, OF_A, { by: A }), []);
    assert.deepEqual(await snapshot(), CUT_OVER);
  });

  void test('at the source, each Replication finds what its own cutover scaled down, whatever the labels say now', async () => {
    assert.deepEqual(await found(A), keys([...OF_A, LEGACY]));
    assert.deepEqual(await found(B), keys(OF_B));
    assert.deepEqual(await found(DB), keys(OF_DB));
    assert.deepEqual(await found(OTHER), []);
    // Only among the Replication's types (those it may list).
    const deploymentsOnly = resolveResourceTypes(['deployments'], undefined, await client.discover()).types;
    assert.deepEqual(keys(await scaledDownSourceWorkloads(client, NAMESPACES, { ...SELECT[A]!, types: deploymentsOnly })), keys([...OF_A.filter((w) => w.kind === 'Deployment'), LEGACY]));
    // A label changed during the failover moves nothing: web-a is A's by its mark (the unmarked
    // legacy workload is A's by the selector, as before the mark; plain was never scaled down).
    await kubectl(cluster.kubeconfigPath, ['-n', NS, 'label', 'deployment', 'web-a', 'team=b', '--overwrite']);
    assert.deepEqual(await found(A), keys([...OF_A, LEGACY]));
    assert.deepEqual(await found(B), keys(OF_B));
  });

  void test('failback of A restores only what A scaled down (and the unmarked one), removes the annotations, and is idempotent', async () => {
    // Given every workload of the namespace (as if A's folder named them all): B's and DB's marks keep them down.
    const everything = [...OF_A, ...OF_B, ...OF_DB, wl('Deployment', 'plain'), LEGACY];
    const othersMarked = ['Deployment shop/web-b (scaled down by dr-syncer/team-b)', 'CronJob shop/report-b (scaled down by dr-syncer/team-b)', 'StatefulSet shop/db-a (scaled down by dr-syncer/db)'];
    const first = await restoreSource(client, everything, A);
    assert.deepEqual(first.changed.sort(), [
      'CronJob shop/report-a: suspended -> active',
      'Deployment shop/api-a: replicas 0 -> 2',
      'Deployment shop/legacy: replicas 0 -> 5',
      'Deployment shop/web-a: replicas 0 -> 3',
    ]);
    assert.deepEqual(first.othersMarked, othersMarked);
    const restored = { ...CUT_OVER, 'web-a': 'replicas=3', 'api-a': 'replicas=2', 'report-a': 'suspend=false' };
    assert.deepEqual(await snapshot(), restored);
    const legacy = await client.get<KubeObject>(`${PATHS.Deployment}/legacy`);
    assert.equal((legacy.spec as { replicas: number }).replicas, 5);
    assert.equal(legacy.metadata.annotations?.[ORIGINAL_REPLICAS], undefined);
    assert.deepEqual(await restoreSource(client, everything, A), { changed: [], othersMarked });
    assert.deepEqual(await snapshot(), restored);
    assert.deepEqual(await found(A), []);
    assert.deepEqual(await found(B), keys(OF_B));
  });

  void test('one of ours started again by hand keeps its replicas; one whose remembered state is gone stays as it is; both lose our annotations', async () => {
    await kubectl(cluster.kubeconfigPath, ['-n', NS, 'scale', 'deployment', 'web-b', '--replicas=6']);
    // plain: at 0 with B's mark but no remembered count (edited by hand).
    await kubectl(cluster.kubeconfigPath, ['-n', NS, 'scale', 'deployment', 'plain', '--replicas=0']);
    await kubectl(cluster.kubeconfigPath, ['-n', NS, 'annotate', 'deployment', 'plain', `${SCALED_DOWN_BY}=${B}`]);
    const r = await restoreSource(client, await scaledDownSourceWorkloads(client, NAMESPACES, SELECT[B]!), B);
    assert.deepEqual(r.changed.sort(), [
      'CronJob shop/report-b: suspended -> active',
      'Deployment shop/plain: left as it is (the state the cutover remembered is gone): the cutover\'s annotations go',
      'Deployment shop/web-b: running again already (started by hand): the cutover\'s annotations go',
    ]);
    assert.deepEqual(r.othersMarked, []);
    const s = await snapshot();
    assert.equal(s['web-b'], 'replicas=6');
    assert.equal(s['report-b'], 'suspend=false');
    assert.equal(s.plain, 'replicas=0');
    assert.equal(s['db-a'], `replicas=0 original=2 by=${DB}`, 'another Replication\'s cutover is left as it is');
    assert.deepEqual(await found(B), []);
  });

  void test('a namespace that does not exist yields nothing and does not throw', async () => {
    assert.deepEqual(await found(A, [{ source: 'no-such-ns', destination: 'x' }]), []);
    const missing = OF_A.map((w) => ({ ...w, sourceNamespace: 'no-such-ns' }));
    assert.deepEqual(await scaleSourceDown(client, missing, { by: A }), []);
    assert.deepEqual(await restoreSource(client, missing, A), { changed: [], othersMarked: [] });
  });
});
