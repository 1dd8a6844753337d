// Properties of the pure pipeline over random Kubernetes-shaped objects: transform never throws,
// is idempotent (a second pass over its own output changes nothing), and a namespace renders to
// the same bytes every time, whatever order the objects and their keys arrive in.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { renderNamespace } from '../../src/core/render.ts';
import type { TransformOptions } from '../../src/core/transform/index.ts';
import { transformObject } from '../../src/core/transform/index.ts';
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

describe('transform and render (property)', () => {
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
