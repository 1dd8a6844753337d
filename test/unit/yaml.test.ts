import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parse } from 'yaml';
import { canonicalize, toYaml } from '../../src/core/yaml.ts';
import { deployment, pvc } from '../fixtures/objects.ts';

// Strings chosen to trip YAML: retyping in 1.1 or 1.2, indicators, whitespace, escapes.
const TRICKY = [
  '', ' ', 'a', 'on', 'Off', 'yes', 'NO', 'y', 'null', '~', 'true', 'False', '0', '007', '0o17', '0x1F', '1_000', '1e3', 'e0', 'E+5', '.5', '-1', '+1', '.inf', '.NaN',
  '2026-01-01', '2026-01-01T00:00:00Z', '12:30', '1:20:30', '<<', '=', '-', '- a', '? x', ': x', 'a: b', 'a:b', 'a #b', 'a#b', '#x', '&a', '*a', '!t', '%x', '@x', '`x',
  '|', '>', "'q'", '"dq"', '{a}', '[a]', 'a,b', 'trailing ', ' leading', 'tab\there', 'nl\n', '\n', 'two\nlines', 'two\nlines\n\n', ' indented\nblock\n',
  'line\n  \nspaces-only line', 'cr\r\nlf', 'nel\u0085x', 'ls\u2028x', 'bom\ufeffx', 'ctrl\u0001', 'emoji 🎉', 'ünïcödé', 'back\\slash', 'nginx:1.27', '/api(/|$)(.*)',
  'a=b', 'x-y_z.w/v', '(paren)', 'http://x.y/z?q=1&r=2', 'key: "v"', 'ends:', '50%', 'C:\\dir',
];

describe('YAML emitter', () => {
  it('round-trips every tricky string as a value, a key and a list item, in YAML 1.1 and 1.2', () => {
    for (const s of TRICKY) {
      const doc = { data: { v: s, [s || 'empty']: 1 }, list: [s, { name: s }], nested: [[s]] };
      const text = toYaml(doc);
      for (const version of ['1.1', '1.2'] as const) {
        assert.deepEqual(parse(text, { version }), canonicalize(doc), `${JSON.stringify(s)} (YAML ${version}):\n${text}`);
      }
    }
  });
  it('round-trips numbers, booleans, nulls and empty collections', () => {
    const doc = { a: 0, b: -1.5, c: 1e21, d: true, e: false, f: null, g: [], h: {}, i: [[], {}], j: [1, 'x', null] };
    assert.deepEqual(parse(toYaml(doc)), canonicalize(doc));
  });
  it('renders real objects readably and parses back to the same data', () => {
    for (const o of [deployment('web'), pvc('data', { storageClassName: 'fast' })]) {
      assert.deepEqual(parse(toYaml(o)), canonicalize(o));
    }
    assert.equal(
      toYaml({ kind: 'ConfigMap', apiVersion: 'v1', metadata: { namespace: 'shop', name: 'x' }, data: { script: 'echo hi\nexit 0\n', flag: 'on', items: ['a', 'b'] } }),
      'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n  namespace: shop\ndata:\n  flag: "on"\n  items:\n    - a\n    - b\n  script: |\n    echo hi\n    exit 0\n',
    );
    assert.equal(toYaml({ spec: { containers: [{ name: 'c', ports: [{ containerPort: 80 }] }] } }), 'spec:\n  containers:\n    - name: c\n      ports:\n        - containerPort: 80\n');
  });
  it('writes empty collections, nested lists, keys without values and awkward keys byte for byte as it always has (a change would rewrite every repository)', () => {
    const v = { b: [], a: {}, c: [[], {}, [1, [2]], { x: undefined }, 'two\nlines', { name: 'n', z: 1, a: [] }], d: { x: undefined }, 'e: f': 'g', '10': 2, '9': 1, on: 'yes', metadata: { x: 1, name: 'm' } };
    assert.equal(toYaml(v), 'metadata:\n  name: m\n  x: 1\n"10": 2\n"9": 1\na: {}\nb: []\nc:\n  - []\n  - {}\n  -\n    - 1\n    -\n      - 2\n  - {}\n  - |-\n    two\n    lines\n  - name: "n"\n    a: []\n    z: 1\nd: {}\n"e: f": g\n"on": "yes"\n');
    assert.deepEqual([toYaml({}), toYaml([]), toYaml('s'), toYaml(null)], ['{}\n', '[]\n', 's\n', 'null\n']);
  });
});
