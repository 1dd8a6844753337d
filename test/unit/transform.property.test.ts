// Properties of the pure pipeline over random Kubernetes-shaped objects: transform never throws,
// is idempotent (a second pass over its own output changes nothing), and a namespace renders to
// the same bytes every time, whatever order the objects and their keys arrive in.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { renderNamespace } from '../../src/core/render.ts';
import type { TransformOptions } from '../../src/core/transform/index.ts';
import { transformObject } from '../../src/core/transform/index.ts';
import { SERVER_ANNOTATIONS, SERVER_METADATA, stripServerFields } from '../../src/core/transform/metadata.ts';
import type { KubeObject } from '../../src/core/types.ts';
import { kubeObject } from '../fixtures/arbitraries.ts';

const options: fc.Arbitrary<TransformOptions> = fc.record({
  sourceNamespace: fc.constant('shop'),
  destinationNamespace: fc.constantFrom('shop', 'shop-dr'),
  scaleToZero: fc.boolean(),
  pvc: fc.record({
    storageClassMappings: fc.constant([{ from: 'fast', to: 'dr-fast' }]),
    accessModeMappings: fc.constant([{ from: 'ReadWriteOnce', to: 'ReadWriteOncePod' }]),
    preserveVolumeAttributes: fc.boolean(),
  }),
});

function transformed(obj: KubeObject, opts: TransformOptions): KubeObject {
  const r = transformObject(obj, opts);
  assert.ok(r.ok, r.ok ? '' : r.error);
  return r.object;
}

/** Same data, keys in reverse order at every level. */
function reversedKeys(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(reversedKeys);
  if (v === null || typeof v !== 'object') return v;
  return Object.fromEntries(Object.entries(v).reverse().map(([k, x]) => [k, reversedKeys(x)]));
}

/** The rule as it reads (copy, then delete), the form stripServerFields had before it was made faster. */
function stripByDeleting(obj: KubeObject): KubeObject {
  const { status: _status, ...rest } = structuredClone(obj);
  const md = rest.metadata;
  for (const f of SERVER_METADATA) delete md[f];
  if (md.generateName !== undefined && md.name) delete md.generateName;
  if (md.annotations) {
    for (const a of SERVER_ANNOTATIONS) delete md.annotations[a];
    if (Object.keys(md.annotations).length === 0) delete md.annotations;
  }
  if (md.labels && Object.keys(md.labels).length === 0) delete md.labels;
  const dropNullTimestamps = (v: unknown): void => {
    if (Array.isArray(v)) v.forEach(dropNullTimestamps);
    else if (v !== null && typeof v === 'object') {
      for (const [k, child] of Object.entries(v)) {
        dropNullTimestamps(child);
        if (k === 'metadata' && child !== null && typeof child === 'object' && !Array.isArray(child) && (child as Record<string, unknown>).creationTimestamp === null) {
          delete (child as Record<string, unknown>).creationTimestamp;
        }
      }
    }
  };
  dropNullTimestamps(rest.spec);
  return rest;
}

/** Server-owned metadata and annotations, some of each, mixed into an object's own. */
const withServerFields = fc.record({
  obj: kubeObject('shop'),
  metadata: fc.subarray([...SERVER_METADATA, 'generateName']),
  annotations: fc.subarray([...SERVER_ANNOTATIONS]),
  userAnnotations: fc.dictionary(fc.constantFrom('team', 'a', 'z', 'example.com/x'), fc.string()),
  emptyLabels: fc.boolean(),
}).map(({ obj, metadata, annotations, userAnnotations, emptyLabels }) => {
  const md: Record<string, unknown> = { ...obj.metadata };
  for (const f of metadata) md[f] = f === 'managedFields' ? [{ manager: 'kubectl' }] : 'x';
  const ann = { ...userAnnotations, ...(obj.metadata.annotations ?? {}) };
  for (const a of annotations) ann[a] = 'server';
  md.annotations = ann;
  if (emptyLabels) md.labels = {};
  return { ...obj, metadata: md, status: { phase: 'x' } } as unknown as KubeObject;
});

describe('transform and render (property)', () => {
  it('stripServerFields gives what copying and deleting gives, keys in the same order, and does not touch its input', () => {
    fc.assert(
      fc.property(withServerFields, (obj) => {
        const before = JSON.stringify(obj);
        assert.equal(JSON.stringify(stripServerFields(obj)), JSON.stringify(stripByDeleting(obj)));
        assert.equal(JSON.stringify(obj), before);
      }),
      { numRuns: 1500 },
    );
  });
  it('transform never throws and is idempotent', () => {
    fc.assert(
      fc.property(kubeObject('shop'), options, (obj, opts) => {
        const once = transformed(obj, opts);
        const twice = transformed(once, { ...opts, sourceNamespace: opts.destinationNamespace });
        assert.deepEqual(twice, once);
      }),
      { numRuns: 1500 },
    );
  });
  it('transform does not mutate its input', () => {
    fc.assert(
      fc.property(kubeObject('shop'), options, (obj, opts) => {
        const before = JSON.stringify(obj);
        transformed(obj, opts);
        assert.equal(JSON.stringify(obj), before);
      }),
      { numRuns: 300 },
    );
  });
  it('a namespace renders byte-identically twice, whatever the order of objects and keys', () => {
    const objects = fc.uniqueArray(kubeObject('shop'), { maxLength: 12, selector: (o) => `${o.kind}/${o.metadata.name}` });
    fc.assert(
      fc.property(objects, options, (objs, opts) => {
        const render = (list: KubeObject[]) => {
          const out = list.map((o) => transformed(o, opts));
          const folder = renderNamespace('clusters/dr', { sourceNamespace: 'shop', destinationNamespace: opts.destinationNamespace, objects: out }, { replication: 'dr/app', sourceCluster: 'prod' });
          return [...folder.files].sort(([a], [b]) => a.localeCompare(b));
        };
        const first = render(objs);
        assert.deepEqual(render(objs), first);
        assert.deepEqual(render([...objs].reverse().map((o) => reversedKeys(o) as KubeObject)), first);
      }),
      { numRuns: 300 },
    );
  });
});
