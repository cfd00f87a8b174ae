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

/** One line for any error: user errors as they are, others with their message only. */
export function oneLine(err: unknown): string {
  if (err instanceof Error) return err.message.split('\n')[0] ?? String(err);
  return String(err);
}
