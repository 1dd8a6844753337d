// unifiedDiff is what `dr-syncer diff` and `failover --dry-run` print: `git apply` must accept it
// and turn the old files into the new ones exactly.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import { unifiedDiff } from '../../src/core/patch.ts';
import type { FileChange } from '../../src/core/patch.ts';

function applyWithGit(before: Map<string, string>, patch: string): Map<string, string> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'patch-'));
  try {
    execFileSync('git', ['init', '-q'], { cwd: dir });
    for (const [p, c] of before) {
      fs.mkdirSync(path.dirname(path.join(dir, p)), { recursive: true });
      fs.writeFileSync(path.join(dir, p), c);
    }
    if (patch) execFileSync('git', ['apply', '-'], { cwd: dir, input: patch });
    const out = new Map<string, string>();
    const walk = (d: string) => {
      for (const e of fs.readdirSync(d, { withFileTypes: true })) {
        if (e.name === '.git') continue;
        const full = path.join(d, e.name);
        if (e.isDirectory()) walk(full);
        else out.set(path.relative(dir, full), fs.readFileSync(full, 'utf8'));
      }
    };
    walk(dir);
    return out;
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

void describe('unified diff', () => {
  it('git apply turns the old files into the new ones (random edits, adds and removals)', () => {
    let seed = 7;
    const rnd = (n: number) => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) % n);
    const line = () => ['a: 1', 'b: "x y"', '  - item', 'replicas: 0', '', 'k: |', '    text'][rnd(7)]!;
    for (let round = 0; round < 40; round++) {
      const before = new Map<string, string>();
      const after = new Map<string, string>();
      for (let f = 0; f < 5; f++) {
        const p = `clusters/dr/ns${rnd(2)}/file-${f}.yaml`;
        const lines = Array.from({ length: 1 + rnd(12) }, line);
        const kind = rnd(4); // 0 unchanged, 1 changed, 2 added, 3 removed
        if (kind !== 2) before.set(p, lines.join('\n') + '\n');
        if (kind === 1) {
          const edited = [...lines];
          edited.splice(rnd(edited.length + 1), rnd(2), ...Array.from({ length: rnd(3) }, line));
          after.set(p, edited.join('\n') + '\n');
        } else if (kind !== 3) after.set(p, lines.join('\n') + '\n');
      }
      const changes: FileChange[] = [...new Set([...before.keys(), ...after.keys()])].map((p) => ({ path: p, before: before.get(p), after: after.get(p) }));
      const patch = unifiedDiff(changes);
      assert.deepEqual(applyWithGit(before, patch), after, patch);
    }
  });

  it('prints nothing when nothing changed, and git-style headers otherwise', () => {
    assert.equal(unifiedDiff([{ path: 'a.yaml', before: 'x: 1\n', after: 'x: 1\n' }]), '');
    const p = unifiedDiff([{ path: 'd/a.yaml', before: 'replicas: 0\n', after: 'replicas: 3\n' }]);
    assert.equal(p, 'diff --git a/d/a.yaml b/d/a.yaml\n--- a/d/a.yaml\n+++ b/d/a.yaml\n@@ -1,1 +1,1 @@\n-replicas: 0\n+replicas: 3\n');
  });
});
