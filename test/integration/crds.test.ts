// The generated CRDs against a real kube-apiserver: they install and become Established, every
// example is accepted (and defaulted exactly like validateReplication/validateRemoteCluster
// default it), `kubectl explain` shows the descriptions, the printer columns work, and invalid
// CRs are rejected with a message that names the field (the list is test/fixtures/invalid-crs.ts,
// shared with test/unit/crds.test.ts, where the TS validator must reject the same cases plus the
// `tsOnly` ones, which CEL cannot catch).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, readdir } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseAllDocuments } from 'yaml';
import { kubectl, startCluster } from '../env/cluster.ts';
import { eventually } from '../env/wait.ts';
import { validateRemoteCluster, validateReplication } from '../../src/api/v1alpha1/index.ts';
import { INVALID_CRS, baseRemoteCluster, baseReplication } from '../fixtures/invalid-crs.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const NS = 'dr-syncer';

type Json = Record<string, unknown>;
type Cluster = Awaited<ReturnType<typeof startCluster>>;

const INVALID = INVALID_CRS.filter((c) => c.tsOnly === undefined);

async function exampleFiles(): Promise<Array<{ file: string; text: string; objs: Json[] }>> {
  const dir = path.join(ROOT, 'examples');
  const files = (await readdir(dir)).filter((f) => f.endsWith('.yaml')).sort();
  return Promise.all(
    files.map(async (file) => {
      const text = await readFile(path.join(dir, file), 'utf8');
      const objs = parseAllDocuments(text).map((d) => d.toJS() as Json).filter((o) => o !== null);
      return { file, text, objs };
    }),
  );
}

void describe('CRDs on a real API server', () => {
  let c: Cluster;
  let kc: string;

  before(async () => {
    c = await startCluster({ controllerManager: false });
    kc = c.kubeconfigPath;
    await kubectl(kc, ['apply', '--server-side', '-f', path.join(ROOT, 'crds')]);
    await kubectl(kc, [
      'wait', '--for=condition=Established', '--timeout=60s',
      'crd/remoteclusters.dr-syncer.io', 'crd/replications.dr-syncer.io',
    ]);
    await kubectl(kc, ['create', 'namespace', NS]);
  });
  after(async () => {
    await c?.stop();
  });

  void test('the chart carries the same CRDs', async () => {
    for (const f of await readdir(path.join(ROOT, 'crds'))) {
      assert.equal(await readFile(path.join(ROOT, 'crds', f), 'utf8'), await readFile(path.join(ROOT, 'charts/dr-syncer/crds', f), 'utf8'), f);
    }
  });

  void test('every example is accepted and defaulted like the TS validator defaults it', async () => {
    const examples = await exampleFiles();
    assert.ok(examples.length >= 6);
    for (const { file, text } of examples) {
      const res = await kubectl(kc, ['apply', '-f', '-'], { input: text, check: false });
      assert.equal(res.code, 0, `${file}: ${res.stderr}`);
    }
    let compared = 0;
    for (const { file, objs } of examples) {
      for (const obj of objs) {
        if (obj.kind !== 'Replication' && obj.kind !== 'RemoteCluster') continue;
        const name = (obj.metadata as Json).name as string;
        const got = await kubectl(kc, ['get', obj.kind.toLowerCase(), name, '-n', NS, '-o', 'json']);
        const server = JSON.parse(got.stdout) as Json;
        const local = obj.kind === 'Replication' ? validateReplication(obj) : validateRemoteCluster(obj);
        assert.ok(local.ok, `${file}: ${local.ok ? '' : local.errors.join('; ')}`);
        assert.deepEqual(server.spec, local.value.spec, `${file}: the API server and validate${String(obj.kind)} default differently`);
        compared++;
      }
    }
    assert.ok(compared >= 6);
  });

  void test('kubectl explain shows the descriptions', async () => {
    const git = await eventually('kubectl explain replication.spec.git', async () => {
      const r = await kubectl(kc, ['explain', 'replication.spec.git'], { check: false });
      return r.code === 0 ? r.stdout : undefined;
    });
    assert.match(git, /Where the manifests are committed/);
    assert.match(git, /author\s+<Object>/);
    assert.match(git, /prune\s+<boolean>/);
    assert.match(git, /credentialsSecretRef/);
    const mode = await kubectl(kc, ['explain', 'replication.spec.mode']);
    assert.match(mode.stdout, /Continuous: on every change/);
    assert.match(mode.stdout, /ENUM|Continuous/);
    const ssh = await kubectl(kc, ['explain', 'remotecluster.spec.pvcSync.sshPort']);
    assert.match(ssh.stdout, /SSH server listens on/);
  });

  void test('printer columns', async () => {
    await kubectl(kc, [
      'patch', 'replication', 'shop-sops', '-n', NS, '--subresource=status', '--type=merge', '-p',
      JSON.stringify({
        status: {
          phase: 'Synced',
          lastSyncTime: '2024-05-01T10:00:00Z',
          lastCommit: '0123abc',
          observedGeneration: 1,
          conditions: [
            { type: 'Ready', status: 'True', reason: 'SyncSucceeded', message: 'synced', observedGeneration: 1, lastTransitionTime: '2024-05-01T10:00:00Z' },
          ],
        },
      }),
    ]);
    const repl = await kubectl(kc, ['get', 'replications', '-n', NS]);
    const [header, ...rows] = repl.stdout.trimEnd().split('\n');
    assert.match(header ?? '', /^NAME\s+SOURCE\s+DESTINATION\s+MODE\s+READY\s+LAST SYNC\s+LAST COMMIT\s+AGE$/);
    const row = rows.find((r) => r.startsWith('shop-sops '));
    assert.match(row ?? '', /^shop-sops\s+shop\s+Scheduled\s+True\s+\S+\s+0123abc\s+\S+$/);
    assert.match(rows.find((r) => r.startsWith('payments-scheduled ')) ?? '', /payments\s+payments-dr\s+Scheduled/);

    await kubectl(kc, [
      'patch', 'remotecluster', 'dr', '-n', NS, '--subresource=status', '--type=merge', '-p',
      JSON.stringify({ status: { health: 'Healthy', agents: { ready: 2, total: 3 } } }),
    ]);
    const rc = await kubectl(kc, ['get', 'remoteclusters', '-n', NS]);
    const [rcHeader, ...rcRows] = rc.stdout.trimEnd().split('\n');
    assert.match(rcHeader ?? '', /^NAME\s+HEALTH\s+AGENTS READY\s+AGE$/);
    assert.match(rcRows.find((r) => r.startsWith('dr ')) ?? '', /^dr\s+Healthy\s+2\s+\S+$/);
  });

  void test('status values are validated too', async () => {
    const r = await kubectl(
      kc,
      ['patch', 'replication', 'shop-sops', '-n', NS, '--subresource=status', '--type=merge', '-p', '{"status":{"phase":"Done"}}'],
      { check: false },
    );
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /status\.phase/);
  });

  void test(`${INVALID.length} invalid CRs are rejected with a message naming the field`, async () => {
    assert.ok(new Set(INVALID.map((c) => c.name)).size >= 10);
    const failures: string[] = [];
    for (const [i, c] of INVALID.entries()) {
      const name = `bad-${i}`;
      const obj = c.kind === 'Replication' ? baseReplication(name) : baseRemoteCluster(name);
      c.mutate(obj.spec as Json);
      const res = await kubectl(kc, ['apply', '-f', '-'], { input: JSON.stringify(obj), check: false });
      if (process.env.SHOW_ERRORS === '1') console.log(`# ${c.name}: ${res.stderr.trim()}`);
      if (res.code === 0) failures.push(`${c.name}: accepted`);
      else if (!res.stderr.includes(c.field)) failures.push(`${c.name}: stderr does not name ${c.field}:\n  ${res.stderr.trim()}`);
      const local = c.kind === 'Replication' ? validateReplication(obj) : validateRemoteCluster(obj);
      if (local.ok) failures.push(`${c.name}: the TS validator accepted it`);
    }
    assert.deepEqual(failures, []);
  });

  void test('the valid bases of the invalid cases are accepted', async () => {
    for (const obj of [baseReplication('good-base'), baseRemoteCluster('good-base')]) {
      const res = await kubectl(kc, ['apply', '-f', '-'], { input: JSON.stringify(obj), check: false });
      assert.equal(res.code, 0, res.stderr);
    }
  });
});
