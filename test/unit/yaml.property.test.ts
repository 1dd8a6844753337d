// Property: any JSON value rendered by our emitter reads back equal under YAML 1.2 and YAML 1.1
// (the `yaml` library in both modes). PyYAML, a second and stricter YAML 1.1 reader, runs in
// test/integration/yaml-readers.test.ts.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { parse } from 'yaml';
import { toYaml, unreadableByGitOps } from '../../src/core/yaml.ts';
import { jsonValue, trickyString } from '../fixtures/arbitraries.ts';

/** What the data is, independent of key order (JSON round trip drops nothing JSON can hold). */
const asJson = (v: unknown): unknown => JSON.parse(JSON.stringify(v)) as unknown;

function readsBack(value: unknown): void {
  const text = toYaml(value);
  for (const version of ['1.1', '1.2'] as const) {
    assert.deepEqual(asJson(parse(text, { version, uniqueKeys: true })), asJson(value), `YAML ${version}:\n${text}`);
  }
}

describe('YAML emitter (property)', () => {
  it('any JSON value reads back equal in YAML 1.1 and 1.2', () => {
    fc.assert(fc.property(jsonValue, readsBack), { numRuns: 2000 });
  });
  it('any string reads back equal as a nested value, a key and a list item', () => {
    fc.assert(
      fc.property(trickyString, (s) => readsBack({ data: { v: s, [s]: s }, list: [s, { name: s, x: [s] }], deep: { a: { b: s } } })),
      { numRuns: 3000 },
    );
  });
  it('the same data in any key order renders to the same bytes', () => {
    fc.assert(
      fc.property(fc.dictionary(trickyString, jsonValue, { maxKeys: 6 }), (obj) => {
        const reversed = Object.fromEntries(Object.entries(obj).reverse());
        assert.equal(toYaml(reversed), toYaml(obj));
      }),
      { numRuns: 500 },
    );
  });
  it('finds a character kustomize cannot carry exactly when the JSON text holds one, and names where', () => {
    const unreadable = /[\u007f-\u009f]/;
    fc.assert(
      fc.property(jsonValue, (v) => {
        const where = unreadableByGitOps(v);
        assert.equal(where !== undefined, unreadable.test(JSON.stringify(v)), String(where));
      }),
      { numRuns: 2000 },
    );
    assert.equal(unreadableByGitOps({ data: { ok: 'x', v: 'del\u007f' } }), 'data.v');
    assert.equal(unreadableByGitOps({ spec: { list: ['a', { b: 'c1\u0090' }] } }), 'spec.list[1].b');
    assert.equal(unreadableByGitOps({ data: { 'k\u0085': 'v' } }), 'data."k\u0085"');
  });
  it('keeps a literal block\'s indentation when its first line (after empty ones) is indented', () => {
    for (const s of ['\n  server {\n    listen 80;\n  }\n', '\n  x\ny\n', '\n\n   a\n b', '  a\nb\n\n']) readsBack({ data: { v: s }, l: [s] });
    assert.match(toYaml({ v: '\n  server {\n    listen 80;\n  }\n' }), /^v: \|2\n/);
  });
});
