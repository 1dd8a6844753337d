// Polling for integration tests that wait on a real API server.

export interface UntilOptions {
  /** Give up after this long (default 60 s). */
  timeoutMs?: number;
  /** Pause between two calls (default 300 ms). */
  intervalMs?: number;
  /** Called on timeout; what it returns is added to the error on a line of its own (e.g. the status of what was waited on). */
  context?: () => Promise<string> | string;
}

/** A truthy-polling function: `until` itself, or one made by `untilWith` with a test file's own defaults. */
export type Until = <T>(what: string, fn: () => Promise<T | undefined | false | null>, opts?: number | UntilOptions) => Promise<T>;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The one polling loop: calls fn until done(value); errors count as "not yet" (the last one is reported on timeout). */
async function poll<T>(what: string, fn: () => Promise<unknown>, done: (v: unknown) => boolean, opts: UntilOptions): Promise<T> {
  const { timeoutMs = 60_000, intervalMs = 300, context } = opts;
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      const v = await fn();
      if (done(v)) return v as T;
    } catch (err) {
      last = err;
    }
    await sleep(intervalMs);
  }
  let msg = `timed out waiting for ${what}`;
  if (last !== undefined) msg += `: ${last instanceof Error ? last.message : String(last)}`;
  if (context) {
    try {
      msg += `\n${await context()}`;
    } catch (err) {
      msg += `\n(no context: ${err instanceof Error ? err.message : String(err)})`;
    }
  }
  throw new Error(msg);
}

/** Calls fn every 300 ms until it returns a value; errors count as "not yet" (the last one is reported on timeout). */
export async function eventually<T>(what: string, fn: () => Promise<T | undefined>, timeoutMs = 60_000): Promise<T> {
  return poll<T>(what, fn, (v) => v !== undefined, { timeoutMs });
}

/**
 * Calls fn until it returns something truthy (undefined, null, false, '' and 0 are "not yet"; so are errors, the last one is
 * reported on timeout). `opts` may be just the timeout in ms.
 */
export const until: Until = (what, fn, opts) => poll(what, fn, Boolean, typeof opts === 'number' ? { timeoutMs: opts } : opts ?? {});

/** `until` with a test file's own defaults (timeout, poll interval, context on timeout); a call's own opts win. */
export function untilWith(defaults: UntilOptions): Until {
  return (what, fn, opts) => until(what, fn, { ...defaults, ...(typeof opts === 'number' ? { timeoutMs: opts } : opts) });
}
