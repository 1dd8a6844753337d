// Deflating new blobs on a second thread. A full sync of 10,000 objects into a fresh repository
// spent ~0.26 s of its one thread in zlib (bench/sync.bench.ts --profile), while that thread
// also parses the LIST responses and renders; here zlib runs beside them. One worker per
// process, started on first use and shared by every repository; without a second core, or once
// the worker has failed, the caller deflates inline, as before.
import fs from 'node:fs';
import os from 'node:os';
import { Worker } from 'node:worker_threads';
import zlib from 'node:zlib';
import { deflateWith } from './objects.ts';

/** Fewer new blobs than this are deflated inline: a message round trip is not worth it. */
export const THREAD_MIN_BLOBS = 16;

// The worker's whole program: a batch arrives as one buffer and its lengths (transferred, not
// copied) and goes back the same way. `deflateWith` is the one rule for how objects are deflated.
const WORKER_SOURCE = `
const { parentPort } = require('node:worker_threads');
const zlib = require('node:zlib');
const deflateWith = ${deflateWith.toString()};
parentPort.on('message', ({ id, input, lengths }) => {
  const all = Buffer.from(input);
  const out = [];
  let at = 0;
  for (const n of lengths) { out.push(deflateWith(zlib, all.subarray(at, at + n))); at += n; }
  const joined = Buffer.allocUnsafeSlow(out.reduce((a, b) => a + b.length, 0));
  let o = 0;
  for (const b of out) o += b.copy(joined, o);
  parentPort.postMessage({ id, output: joined.buffer, lengths: out.map((b) => b.length) }, [joined.buffer]);
});
`;

interface Waiting {
  resolve: (out: Buffer[]) => void;
  reject: (err: Error) => void;
}

export class DeflateThread {
  private worker: Worker | undefined;
  private readonly waiting = new Map<number, Waiting>();
  private next = 0;

  /** Each buffer's zlib stream (deflateWith), in order. */
  deflateAll(data: readonly Buffer[]): Promise<Buffer[]> {
    const worker = this.start();
    const input = Buffer.allocUnsafeSlow(data.reduce((a, b) => a + b.length, 0));
    let at = 0;
    for (const d of data) at += d.copy(input, at);
    const id = this.next++;
    // Posted first: a post that throws leaves nothing waiting (and the worker not referenced).
    worker.postMessage({ id, input: input.buffer, lengths: data.map((d) => d.length) }, [input.buffer]);
    const done = new Promise<Buffer[]>((resolve, reject) => this.waiting.set(id, { resolve, reject }));
    // Referenced only while it has work: an idle worker never keeps the process alive.
    if (this.waiting.size === 1) worker.ref();
    this.batches++;
    return done;
  }

  /** Batches handed to the thread so far. */
  batches = 0;

  /** Stops the thread; what it had not answered yet fails. A later call starts a new one. */
  async close(): Promise<void> {
    await this.worker?.terminate();
  }

  private start(): Worker {
    if (this.worker) return this.worker;
    const worker = new Worker(WORKER_SOURCE, { eval: true, execArgv: [], env: {}, stdout: false, stderr: false });
    worker.unref();
    worker.on('message', ({ id, output, lengths }: { id: number; output: ArrayBuffer; lengths: number[] }) => {
      const w = this.waiting.get(id);
      if (!w) return;
      this.waiting.delete(id);
      if (this.waiting.size === 0) worker.unref();
      const out: Buffer[] = [];
      let at = 0;
      for (const n of lengths) {
        out.push(Buffer.from(output, at, n));
        at += n;
      }
      w.resolve(out);
    });
    const fail = (err: Error) => {
      if (this.worker !== worker) return;
      this.worker = undefined;
      // Gone for good (a message it could not read leaves it running): never keeps the process alive.
      worker.unref();
      void worker.terminate().catch(() => {});
      for (const w of this.waiting.values()) w.reject(err);
      this.waiting.clear();
    };
    worker.on('error', fail);
    worker.on('messageerror', fail);
    worker.on('exit', (code) => fail(new Error(`the deflate thread exited (code ${code})`)));
    this.worker = worker;
    return worker;
  }
}

/** CPUs this process may use: the machine's, or fewer under a cgroup (v2) CPU limit (a container's limits.cpu). */
export function usableCpus(): number {
  let cpus = os.availableParallelism();
  try {
    const [quota, period] = fs.readFileSync('/sys/fs/cgroup/cpu.max', 'utf8').trim().split(/\s+/);
    if (quota !== 'max' && Number(period) > 0) cpus = Math.min(cpus, Number(quota) / Number(period));
  } catch {
    // no cgroup v2 limit to read
  }
  return cpus;
}

/** The process's deflate thread: undefined without a second CPU, or once it has failed. */
export let sharedDeflateThread: DeflateThread | undefined = usableCpus() >= 2 ? new DeflateThread() : undefined;

/**
 * Each buffer's zlib stream, in order: on the shared second thread when there is one and the
 * batch is big enough, otherwise on this one. A thread that fails (it exits, say) is not
 * started again: this batch and all later ones are deflated here, with one warning.
 */
export async function deflateBatch(data: readonly Buffer[]): Promise<Buffer[]> {
  const thread = sharedDeflateThread;
  if (thread && data.length >= THREAD_MIN_BLOBS) {
    try {
      return await thread.deflateAll(data);
    } catch (err) {
      if (sharedDeflateThread === thread) {
        sharedDeflateThread = undefined;
        process.emitWarning(`the deflate thread failed (${err instanceof Error ? err.message : String(err)}); new Git objects are compressed on the main thread from now on`, 'DrSyncerWarning');
      }
    }
  }
  return data.map((d) => deflateWith(zlib, d));
}
