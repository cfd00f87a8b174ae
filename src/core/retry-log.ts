// The usual Backoff reporting: "<what> failed; retrying" with the delay and
// the reason at warn, "<what> recovered" at info.
import type { Logger } from 'pino';
import { oneLine } from '../errors.js';
import type { BackoffOptions } from './backoff.js';

export function loggedSteps(what: string, logger: Logger): Pick<BackoffOptions, 'onStep' | 'onRecovered'> {
  return {
    onStep: (err, ms) => logger.warn({ retryInMs: ms, reason: oneLine(err) }, `${what} failed; retrying`),
    onRecovered: () => logger.info(`${what} recovered`),
  };
}
