import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from 'pino';
import { oneLine } from '../../errors.js';

export interface BackoffOptions {
  /** What is being retried, for the log line ("etcd watch"). */
  what: string;
  logger: Logger;
  initialMs?: number;
  maxMs?: number;
}

/**
 * Exponential backoff (100 ms doubling to 5 s by default) that logs each step
 * once: a long outage gives a handful of lines, not one per retry.
 */
export class Backoff {
  private delayMs: number;
  private lastLoggedMs: number | undefined;

  constructor(private readonly opts: BackoffOptions) {
    this.delayMs = opts.initialMs ?? 100;
  }

  /** Waits the current delay, then doubles it. Resolves false if `signal` aborted. */
  async wait(err: unknown, signal?: AbortSignal): Promise<boolean> {
    const ms = this.delayMs;
    if (ms !== this.lastLoggedMs) {
      this.opts.logger.warn({ retryInMs: ms, reason: oneLine(err) }, `${this.opts.what} failed; retrying`);
      this.lastLoggedMs = ms;
    }
    this.delayMs = Math.min(ms * 2, this.opts.maxMs ?? 5000);
    try {
      await sleep(ms, undefined, { signal });
      return true;
    } catch {
      return false;
    }
  }

  /** Back to the first step after a success; says so if a failure was logged. */
  reset(): void {
    if (this.lastLoggedMs !== undefined) this.opts.logger.info(`${this.opts.what} recovered`);
    this.lastLoggedMs = undefined;
    this.delayMs = this.opts.initialMs ?? 100;
  }
}
