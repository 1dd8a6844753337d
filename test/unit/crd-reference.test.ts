// docs/crd-reference.md is generated from the CRD schemas (npm run manifests; the test command's
// "generated CRDs in sync" step and crds.test.ts fail when the checked-in file is stale). These
// tests check that the generator misses no field and writes tables GitHub can read.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { remoteClusterCrd, replicationCrd } from '../../src/api/v1alpha1/index.ts';
import { crdReference } from '../../src/api/v1alpha1/reference.ts';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
type Json = Record<string, unknown>;

const schemaOf = (crd: Json): Json => (crd.spec as { versions: Array<{ schema: { openAPIV3Schema: Json } }> }).versions[0]!.schema.openAPIV3Schema;

/** Every field path under spec and status, as the reference spells them. */
function fieldPaths(node: Json, path: string, out: string[] = []): string[] {
  for (const [name, child] of Object.entries((node.properties ?? {}) as Record<string, Json>)) {
    const p = path ? `${path}.${name}` : name;
    if (path) out.push(p);
    let inner: Json = child;
    let innerPath = p;
    for (;;) {
      if (inner.type === 'array' && inner.items) { inner = inner.items as Json; innerPath += '[]'; continue; }
      if (inner.properties === undefined && typeof inner.additionalProperties === 'object') { inner = inner.additionalProperties as Json; innerPath += '.<key>'; continue; }
      break;
    }
    if (path || name === 'spec' || name === 'status') fieldPaths(inner, innerPath, out);
  }
  return out;
}

/** The first cell of each table row, unwrapped from its code span. */
function rowPaths(markdown: string, section: string): string[] {
  const start = markdown.indexOf(`### ${section}\n`);
  assert.ok(start >= 0, `section ${section}`);
  const end = markdown.indexOf('\n### ', start + 1);
  const body = markdown.slice(start, end < 0 ? undefined : end).split('\nCEL rules on')[0]!;
  const out: string[] = [];
  for (const line of body.split('\n')) {
    const m = /^\| `([^`]+)` \|/.exec(line);
    if (m) out.push(m[1]!);
  }
  return out;
}

test('the reference lists every spec and status field of both CRDs once, in the schema order', async () => {
  const doc = await readFile(resolve(ROOT, 'docs/crd-reference.md'), 'utf8');
  for (const [kind, crd] of [['RemoteCluster', remoteClusterCrd()], ['Replication', replicationCrd()]] as const) {
    const all = fieldPaths(schemaOf(crd), '');
    const fieldRows = (section: string) => rowPaths(doc, section).filter((p) => all.includes(p));
    assert.deepEqual(fieldRows(`${kind} spec`), all.filter((p) => p.startsWith('spec.')), `${kind} spec`);
    assert.deepEqual(fieldRows(`${kind} status`), all.filter((p) => p.startsWith('status.')), `${kind} status`);
    assert.ok(all.length > 20, `${kind}: ${all.length} fields`);
  }
  // Spot checks of what a user looks up.
  assert.match(doc, /\| `spec\.mode` \| string \| {2}\| `"Scheduled"` \| one of `Continuous`, `Scheduled`, `Manual`/);
  assert.match(doc, /\| `spec\.failover\.active` \| boolean \|/);
  assert.match(doc, /\| `status\.pvcs\[\]\.bytesTransferred` \|/);
});

test('cells stay on one line, pipes are escaped, CEL rules and defaults are shown', () => {
  const crd = {
    spec: {
      group: 'example.io',
      names: { plural: 'things', shortNames: ['th'] },
      versions: [{
        name: 'v1',
        schema: {
          openAPIV3Schema: {
            type: 'object',
            properties: {
              spec: {
                type: 'object',
                required: ['name'],
                'x-kubernetes-validations': [{ rule: "self.a == 'x|y'", message: 'a must be x|y', fieldPath: '.a' }],
                properties: {
                  name: { type: 'string', description: 'The name.\nSecond line | with a pipe.', pattern: '^(a|b)$' },
                  a: { type: 'string', default: 'x|y', description: 'With `ticks`.' },
                  list: { type: 'array', items: { type: 'object', properties: { k: { type: 'integer', minimum: 1 } } }, 'x-kubernetes-list-type': 'map', 'x-kubernetes-list-map-keys': ['k'] },
                  labels: { type: 'object', additionalProperties: { type: 'string' } },
                  q: { 'x-kubernetes-int-or-string': true },
                },
              },
            },
          },
        },
      }],
    },
  };
  const md = crdReference([{ kind: 'Thing', crd }], '<!-- header -->');
  const lines = md.split('\n');
  const row = (path: string) => lines.find((l) => l.startsWith(`| \`${path}\` |`));
  assert.equal(row('spec.name'), '| `spec.name` | string | yes |  | matches `^(a\\|b)$` | The name. Second line \\| with a pipe. |');
  assert.equal(row('spec.a'), '| `spec.a` | string |  | `"x\\|y"` |  | With `ticks`. |');
  assert.match(row('spec.list') ?? '', /\| \[\]object \|.*unique by `k`/);
  assert.match(row('spec.list[].k') ?? '', /\| integer \|.*≥ 1/);
  assert.match(row('spec.labels') ?? '', /map\[string\]string/);
  assert.match(row('spec.q') ?? '', /int or string/);
  assert.ok(lines.some((l) => l === "| `spec.a` | `self.a == 'x\\|y'` | a must be x\\|y |"), md);
  // Every table row has as many cells as its header (an unescaped pipe would add one).
  for (const l of lines.filter((x) => x.startsWith('| '))) {
    const cells = l.replace(/\\\|/g, '').split('|').length - 2;
    assert.ok(cells === 6 || cells === 3, `${cells} cells: ${l}`);
  }
});
