// The PVC data path benchmark's own functions on a few MB: the copies it times must be right.
// A correctness check only; nothing here is timed.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { Agents, CopyResult, Dataset } from '../../bench/pvc.bench.ts';
import { changeFiles, compareTrees, generateDataset, memoryMiB, rsyncPull, startAgents } from '../../bench/pvc.bench.ts';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'drs-pvcbench-test-'));
let ds: Dataset;
let agents: Agents | undefined;

before(async () => {
  ds = await generateDataset(path.join(tmp, 'volume'), { totalBytes: 4 * 1024 * 1024, smallFiles: 40, largeFiles: 2 });
  // From source through tsx: no compile step in a test.
  agents = await startAgents({ src: ds.root, work: path.join(tmp, 'agent'), runner: 'tsx' });
});

after(async () => {
  await agents?.stop();
  fs.rmSync(tmp, { recursive: true, force: true });
});

describe('PVC data path benchmark (tiny dataset)', () => {
  it('generates the same incompressible dataset every time', async () => {
    assert.equal(ds.small.length, 40);
    assert.equal(ds.large.length, 2);
    assert.ok(ds.bytes > 3.5 * 1024 * 1024 && ds.bytes <= 4 * 1024 * 1024, String(ds.bytes));
    const again = await generateDataset(path.join(tmp, 'again'), { totalBytes: 4 * 1024 * 1024, smallFiles: 40, largeFiles: 2 });
    assert.deepEqual(again.small, ds.small);
    for (const f of [...ds.small, ...ds.large]) assert.ok(fs.readFileSync(path.join(ds.root, f)).equals(fs.readFileSync(path.join(again.root, f))), f);
    const big = fs.readFileSync(path.join(ds.root, ds.large[0]!));
    assert.ok(new Set(big.subarray(0, 4096)).size > 200, 'not zeros or a repeated pattern');
  });

  let full: CopyResult;
  it('a full copy through the bastion and one straight to the endpoint equal the source', async () => {
    const dest = path.join(tmp, 'copy-bastion');
    full = await rsyncPull(agents!, 'bastion', dest);
    assert.equal(full.filesTransferred, 42);
    assert.ok(full.received >= ds.bytes, `received ${full.received} of ${ds.bytes}`);
    assert.deepEqual(await compareTrees(ds.root, dest), []);
    const direct = await rsyncPull(agents!, 'direct', path.join(tmp, 'copy-direct'));
    assert.equal(direct.filesTransferred, 42);
    assert.deepEqual(await compareTrees(ds.root, path.join(tmp, 'copy-direct')), []);
    assert.ok(full.cpu.bastion > 0, 'the bastion process carried the bastion copy');
  });

  it('compareTrees sees a wrong byte', async () => {
    const victim = path.join(tmp, 'copy-direct', ds.small[3]!);
    const st = fs.statSync(victim);
    const buf = fs.readFileSync(victim);
    buf[0] = buf[0]! ^ 1;
    fs.writeFileSync(victim, buf);
    fs.utimesSync(victim, st.atime, st.mtime);
    assert.deepEqual((await compareTrees(ds.root, path.join(tmp, 'copy-direct'))).map((d) => d.split(':')[0]), [ds.small[3]]);
  });

  it('an incremental resync moves only the changed files, fewer bytes than the full copy, and equals the source', async () => {
    const changed = await changeFiles(ds, 0.01, 1);
    assert.equal(changed.length, 2);
    assert.ok(changed.some((f) => ds.large.includes(f)) && changed.some((f) => ds.small.includes(f)));
    const dest = path.join(tmp, 'copy-bastion');
    const incr = await rsyncPull(agents!, 'bastion', dest);
    assert.equal(incr.filesTransferred, 2);
    assert.ok(incr.received < full.received, `incremental ${incr.received} B, full ${full.received} B`);
    assert.deepEqual(await compareTrees(ds.root, dest), []);
  });

  it('reads the peak RSS of both agent processes', () => {
    for (const pid of [agents!.bastion.pid, agents!.endpoint.pid]) {
      const m = memoryMiB(pid);
      assert.ok(m.peak >= m.now && m.now > 10, JSON.stringify(m));
    }
  });
});
