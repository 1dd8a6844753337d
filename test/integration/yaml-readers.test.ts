// A second, independent reader for our YAML: PyYAML (Debian's python3-yaml), a strict YAML 1.1
// parser like the ones kubectl and kustomize descend from. Random JSON values and tricky strings
// are rendered by our emitter and must read back equal. (The `yaml` library in YAML 1.1 and 1.2
// modes checks the same property in test/unit/yaml.property.test.ts.)
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { toYaml } from '../../src/core/yaml.ts';
import { jsonValue, trickyString } from '../fixtures/arbitraries.ts';

// Reads a JSON list of YAML documents, answers a JSON list of what PyYAML made of each (types
// JSON cannot hold, such as dates, become a marker that never equals the input).
const READER = `
import json, sys, yaml
def plain(v):
    if isinstance(v, dict): return {str(k) if isinstance(k, str) else "<non-string key %r>" % (k,): plain(x) for k, x in v.items()}
    if isinstance(v, list): return [plain(x) for x in v]
    if v is None or isinstance(v, (str, bool, int, float)): return v
    return "<%s %r>" % (type(v).__name__, v)
docs = json.load(open(sys.argv[1], encoding="utf-8"))
out = []
for d in docs:
    try: out.append(plain(yaml.safe_load(d)))
    except Exception as e: out.append("<error %s>" % e)
json.dump(out, sys.stdout)
`;

describe('PyYAML reads our YAML back unchanged', () => {
  it('random JSON values and tricky strings as values, keys and list items', () => {
    const seed = Date.now();
    const values = [
      ...fc.sample(jsonValue, { numRuns: 1500, seed }),
      ...fc.sample(trickyString, { numRuns: 1500, seed: seed + 1 }).map((s) => ({ v: s, [s]: [s, { name: s }] })),
    ];
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'drs-pyyaml-'));
    try {
      const input = path.join(dir, 'docs.json');
      fs.writeFileSync(input, JSON.stringify(values.map((v) => toYaml(v))));
      const read = JSON.parse(execFileSync('/usr/bin/python3', ['-c', READER, input], { encoding: 'utf8', maxBuffer: 1 << 28 })) as unknown[];
      assert.equal(read.length, values.length);
      for (let i = 0; i < values.length; i++) {
        assert.deepEqual(read[i], JSON.parse(JSON.stringify(values[i])), `seed ${seed}, document ${i}:\n${toYaml(values[i])}`);
      }
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
