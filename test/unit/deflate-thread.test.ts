// The second thread that deflates new blobs: the same bytes as deflating inline, a thread that
// dies fails only what it held, and an idle thread never keeps a process alive.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { promisify } from 'node:util';
import zlib from 'node:zlib';
import { describe, it } from 'node:test';
import { DeflateThread, deflateBatch, sharedDeflateThread, THREAD_MIN_BLOBS, usableCpus } from '../../src/adapters/git/deflate-thread.ts';
import { deflate } from '../../src/adapters/git/objects.ts';

const samples = (n: number): Buffer[] => Array.from({ length: n }, (_, i) => {
  if (i === 0) return Buffer.alloc(0);
  if (i === 1) return Buffer.from('x'.repeat(70_000)); // the large-object branch
  if (i % 3 === 0) return randomBytes(i * 7); // incompressible
  return Buffer.from(`apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm-${i}\n${'data: ümlaut ✓\n'.repeat(i)}`);
});

// A thread that never answers would hang a test: each has a bound.
describe('deflate thread', { timeout: 60_000 }, () => {
  it('gives, in order, exactly the bytes deflate() gives inline', async () => {
    const data = samples(THREAD_MIN_BLOBS * 3);
    const copies = data.map((d) => Buffer.from(d));
    const thread = new DeflateThread();
    try {
      const out = await thread.deflateAll(data);
      assert.equal(thread.batches, 1);
      assert.equal(out.length, data.length);
      out.forEach((o, i) => {
        assert.deepEqual(o, deflate(data[i]!), `buffer ${i}`);
        assert.deepEqual(zlib.inflateSync(o), data[i]);
      });
      // The inputs are copied, not moved: the caller's buffers stay as they were.
      assert.deepEqual(data, copies);
    } finally {
      await thread.close();
    }
  });

  it('a thread that stops fails what it held, and the next batch starts a new one', async () => {
    const thread = new DeflateThread();
    const data = samples(THREAD_MIN_BLOBS);
    const held = thread.deflateAll(data);
    await thread.close();
    await assert.rejects(held, /exited/);
    const again = await thread.deflateAll(data);
    assert.deepEqual(again, data.map(deflate));
    await thread.close();
  });

  it('deflateBatch: small batches inline, big ones on the thread (with a second CPU), the same bytes either way', async () => {
    assert.equal(sharedDeflateThread !== undefined, usableCpus() >= 2, 'a thread exactly when there is a second CPU');
    for (const n of [0, 1, THREAD_MIN_BLOBS - 1, THREAD_MIN_BLOBS, 200]) {
      const data = samples(n);
      const before = sharedDeflateThread?.batches ?? 0;
      assert.deepEqual(await deflateBatch(data), data.map(deflate), `${n} buffers`);
      if (sharedDeflateThread) assert.equal(sharedDeflateThread.batches - before, n >= THREAD_MIN_BLOBS ? 1 : 0, `${n} buffers: on the thread?`);
    }
  });

  it('an idle thread does not keep the process alive', async () => {
    // Were it kept referenced, this child would never exit and the timeout would fail the test.
    const module = path.resolve(import.meta.dirname, '../../src/adapters/git/deflate-thread.ts');
    const script = `import { deflateBatch } from ${JSON.stringify(module)}; const out = await deflateBatch(Array.from({ length: 64 }, (_, i) => Buffer.from('blob ' + i))); console.log(out.length);`;
    const { stdout } = await promisify(execFile)(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { timeout: 30_000 });
    assert.equal(stdout.trim(), '64');
  });

  // Last: it turns the process's thread off.
  it('a shared thread that fails: the batch it held and all later ones are deflated inline, the same bytes, with one warning', async (t) => {
    const thread = sharedDeflateThread;
    assert.ok(thread, 'this test needs the second CPU the CI machine has');
    const warnings: string[] = [];
    const onWarning = (w: Error) => warnings.push(w.message);
    process.on('warning', onWarning);
    t.after(() => process.off('warning', onWarning));
    const data = samples(THREAD_MIN_BLOBS * 2);
    const before = thread.batches;
    const held = deflateBatch(data);
    await thread.close();
    assert.deepEqual(await held, data.map(deflate));
    assert.equal(sharedDeflateThread, undefined, 'not started again');
    assert.deepEqual(await deflateBatch(data), data.map(deflate));
    assert.equal(thread.batches, before + 1, 'the later batch went to no thread');
    await new Promise((r) => setImmediate(r));
    assert.equal(warnings.filter((w) => /deflate thread failed/.test(w)).length, 1);
  });
});
