// The usual Backoff reporting: "<what> failed; retrying" with the delay and
// the reason at warn, "<what> recovered" at info; and the retry loop the
// agent's start-up steps share.
import type { Logger } from 'pino';
import { WeftError, isRetryable, oneLine } from '../errors.js';
import { Backoff, type BackoffOptions } from './backoff.js';

export function loggedSteps(what: string, logger: Logger): Pick<BackoffOptions, 'onStep' | 'onRecovered'> {
  return {
    onStep: (err, ms) => logger.warn({ retryInMs: ms, reason: oneLine(err) }, `${what} failed; retrying`),
    onRecovered: () => logger.info(`${what} recovered`),
  };
}

/**
 * Runs `fn` until it succeeds, waiting with backoff after each retryable
 * failure (logged as "cannot <what>: why" once per step, and again when the
 * reason changes). Other failures are rethrown; an abort ends it with
 * WeftError("stopped").
 */
export async function retryUntilDone<T>(what: string, signal: AbortSignal, logger: Logger, fn: () => Promise<T>): Promise<T> {
  const backoff = new Backoff({ reportNewReasons: true, onStep: (err, ms) => logger.warn({ retryInMs: ms }, `cannot ${what}: ${oneLine(err)}`) });
  for (;;) {
    try {
      return await fn();
    } catch (err) {
      if (signal.aborted) throw new WeftError('stopped', 'none');
      if (!isRetryable(err)) throw err;
      if (!(await backoff.wait(err, signal))) throw new WeftError('stopped', 'none');
    }
  }
}
