// The second thread that deflates new blobs: the same bytes as deflating inline, a thread that
// dies fails only what it held, and an idle thread never keeps a process alive.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { promisify } from 'node:util';
import zlib from 'node:zlib';
import { describe, it } from 'node:test';
import { DeflateThread, deflateBatch, THREAD_MIN_BLOBS } from '../../src/adapters/git/deflate-thread.ts';
import { deflate } from '../../src/adapters/git/objects.ts';

const samples = (n: number): Buffer[] => Array.from({ length: n }, (_, i) => {
  if (i === 0) return Buffer.alloc(0);
  if (i === 1) return Buffer.from('x'.repeat(70_000)); // the large-object branch
  if (i % 3 === 0) return randomBytes(i * 7); // incompressible
  return Buffer.from(`apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm-${i}\n${'data: ümlaut ✓\n'.repeat(i)}`);
});

describe('deflate thread', () => {
  it('gives, in order, exactly the bytes deflate() gives inline', async () => {
    const data = samples(THREAD_MIN_BLOBS * 3);
    const copies = data.map((d) => Buffer.from(d));
    const thread = new DeflateThread();
    try {
      const out = await thread.deflateAll(data);
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

  it('deflateBatch: small batches inline, big ones on the thread, the same bytes either way', async () => {
    for (const n of [0, 1, THREAD_MIN_BLOBS - 1, THREAD_MIN_BLOBS, 200]) {
      const data = samples(n);
      assert.deepEqual(await deflateBatch(data), data.map(deflate), `${n} buffers`);
    }
  });

  it('an idle thread does not keep the process alive', async () => {
    // Were it kept referenced, this child would never exit and the timeout would fail the test.
    const module = path.resolve(import.meta.dirname, '../../src/adapters/git/deflate-thread.ts');
    const script = `import { deflateBatch } from ${JSON.stringify(module)}; const out = await deflateBatch(Array.from({ length: 64 }, (_, i) => Buffer.from('blob ' + i))); console.log(out.length);`;
    const { stdout } = await promisify(execFile)(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { timeout: 30_000 });
    assert.equal(stdout.trim(), '64');
  });
});
