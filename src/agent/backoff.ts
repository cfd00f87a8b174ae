/** Exponential backoff: 100 ms doubling to 5 s by default; reset on success. */
export class Backoff {
  private next: number;
  constructor(private readonly minMs = 100, private readonly maxMs = 5000) {
    this.next = minMs;
  }

  /** The delay to wait now; each call doubles the following one. */
  step(): number {
    const d = this.next;
    this.next = Math.min(this.maxMs, this.next * 2);
    return d;
  }

  reset(): void {
    this.next = this.minMs;
  }
}

/** Resolves after ms, or at once when the signal aborts (never rejects). */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const timer = setTimeout(done, ms);
    function done(): void {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done, { once: true });
  });
}
