// Error classification shared by the adapters.

/** An error's message, for whatever was thrown. */
export const errorMessage = (err: unknown): string => (err instanceof Error ? err.message : String(err));

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
