// The benchmarks of issue 12 as users run them (one command each, their own API server and Git
// server on loopback), at a tiny size: what they print must be right, and they must say so when
// it is not. A correctness check only; nothing here is timed.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import path from 'node:path';
import { describe, it } from 'node:test';
import { promisify } from 'node:util';

const run = promisify(execFile);
const bench = async (name: string, args: string[]) => {
  const r = await run(process.execPath, ['--import', 'tsx', path.resolve(import.meta.dirname, `../../bench/${name}`), ...args], { maxBuffer: 1 << 24, timeout: 300_000 });
  return r.stdout;
};
const row = (out: string, key: string): string => {
  const line = out.split('\n').find((l) => l.startsWith(key));
  assert.ok(line, `no row "${key}" in:\n${out}`);
  return line.slice(key.length).trim();
};

describe('benchmarks at a tiny size', () => {
  it('sync.bench: a full sync commits every object, the no-op commits nothing, and the floors are measured', async () => {
    const out = await bench('sync.bench.ts', ['--namespaces', '3', '--per-namespace', '10', '--runs', '2']);
    assert.equal(row(out, 'objects'), '30 in 3 namespaces');
    assert.match(row(out, 'full sync, fresh repo (median of 2)'), /^\d+ ms = \d+\.\d\dx LIST \(\d+\.\d\dx, \d+\.\d\dx;/);
    assert.match(row(out, 'no-op resync (median of 2)'), /commits: none/);
    assert.match(row(out, 'CPU (the process; the machine in its timed window)'), /^LIST \d+ ms; \d\.\d\d of \d+ cores busy, full sync/);
    // The store floor read back every rendered file: 30 objects, 3 namespace.yaml and kustomization.yaml files, the base kustomization.yaml.
    assert.match(row(out, 'floor: LIST + git write+push'), /storing the 37 rendered files .* >= \d+\.\d\dx LIST$/);
    assert.match(row(out, 'API requests, no-op resync'), /^\d+ \(10 LIST pages for 3 namespaces/);
  });

  it('replications.bench: every Replication writing to one repository at once is pushed, each status names its own commit', async () => {
    const out = await bench('replications.bench.ts', ['--replications', '4', '--per-replication', '5', '--workers', '2']);
    assert.match(row(out, 'statuses'), /^all 4 Synced, each commit on the branch with its 5 objects$/);
    assert.equal(row(out, 'files on the branch'), '29 (expected 29)');
    const [, commits, pushes] = /^(\d+) commits in (\d+) pushes/.exec(row(out, 'commits / pushes'))!;
    assert.equal(Number(commits), 4, 'one commit per Replication');
    assert.ok(Number(pushes) >= 1 && Number(pushes) <= 4, `${pushes} pushes`);
  });
});
