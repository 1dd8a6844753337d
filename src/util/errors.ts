// Error classification shared by the adapters.

/** A connection-level failure (nothing answered, or the connection broke), by Node's error code. */
export function isNetworkError(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  return typeof code === 'string' && /^(ECONNREFUSED|ENOTFOUND|EHOSTUNREACH|ENETUNREACH|ETIMEDOUT|ECONNRESET|EAI_AGAIN|EPIPE)$/.test(code);
}

/** Something a reconcile waits for: a condition reason and a message that says what is missing. */
export class NotReady extends Error {
  constructor(
    readonly reason: string,
    message: string,
  ) {
    super(message);
  }
}
