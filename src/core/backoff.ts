// Waiting: an abortable sleep, a promise raced against an abort, and
// exponential backoff (100 ms doubling to 5 s by default) that reports each
// step once, so a long outage gives a handful of log lines, not one per retry.

/** Resolves true after `ms`, or false at once when `signal` aborts; never rejects. */
export function sleep(ms: number, signal?: AbortSignal): Promise<boolean> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve(false);
    const timer = setTimeout(() => finish(true), ms);
    function finish(slept: boolean): void {
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
      resolve(slept);
    }
    function onAbort(): void {
      finish(false);
    }
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/** Settles as `p` does, or rejects with the signal's reason as soon as it aborts. */
export function abortable<T>(p: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(signal.reason);
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    p.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
  });
}

export interface BackoffOptions {
  minMs?: number;
  maxMs?: number;
  /** Told once per step (not per retry) what failed and how long the wait is. */
  onStep?: (err: unknown, delayMs: number) => void;
  /** Told once when a success follows a reported failure. */
  onRecovered?: () => void;
  /** Report a failure whose reason differs from the last reported one, even within a step. */
  reportNewReasons?: boolean;
}

export class Backoff {
  private delayMs: number;
  private reportedMs: number | undefined;
  private reportedReason: string | undefined;

  constructor(private readonly opts: BackoffOptions = {}) {
    this.delayMs = opts.minMs ?? 100;
  }

  /** The delay to wait now; the next one is twice as long (up to the maximum). */
  step(): number {
    const ms = this.delayMs;
    this.delayMs = Math.min(ms * 2, this.opts.maxMs ?? 5000);
    return ms;
  }

  /** Reports the failure (once per step) and returns the delay to wait, for callers that keep their own timer. */
  next(err: unknown): number {
    const ms = this.step();
    const reason = this.opts.reportNewReasons ? String((err as Error)?.message ?? err) : undefined;
    if (ms !== this.reportedMs || reason !== this.reportedReason) {
      this.opts.onStep?.(err, ms);
      this.reportedMs = ms;
      this.reportedReason = reason;
    }
    return ms;
  }

  /** Reports the failure (once per step), waits the current delay; false when `signal` aborted. */
  wait(err: unknown, signal?: AbortSignal): Promise<boolean> {
    return sleep(this.next(err), signal);
  }

  /** Back to the first step after a success. */
  reset(): void {
    if (this.reportedMs !== undefined) this.opts.onRecovered?.();
    this.reportedMs = undefined;
    this.reportedReason = undefined;
    this.delayMs = this.opts.minMs ?? 100;
  }
}
