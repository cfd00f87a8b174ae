/**
 * An error the user can cause and fix (bad config, unreachable etcd, missing
 * capability or binary). The CLI prints its message as one line, never a stack.
 */
export class WeftError extends Error {
  constructor(cause: string, readonly fix?: string) {
    super(fix ? `${cause}; ${fix}` : cause);
    this.name = 'WeftError';
  }
}

/** A failure that may pass by itself (the other end unreachable, slow or overloaded). */
export class TransientError extends WeftError {
  constructor(cause: string, fix?: string) {
    super(cause, fix);
    this.name = 'TransientError';
  }
}

/**
 * Whether a retry loop should try again: failures a user can fix while weft
 * waits, transient ones, and errors that say so (`retryable`); never a
 * programming error.
 */
export function isRetryable(err: unknown): boolean {
  return err instanceof WeftError || (err instanceof Error && (err as { retryable?: unknown }).retryable === true);
}

/** One line for any error: user errors as they are, others with their message only. */
export function oneLine(err: unknown): string {
  if (err instanceof Error) return err.message.split('\n')[0] ?? String(err);
  return String(err);
}
