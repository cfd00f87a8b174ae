// Work that must not overlap (writes of one lease, one nftables table, one
// BIRD's config) runs one job at a time, in the order it was queued.

export class SerialQueue {
  private tail: Promise<unknown> = Promise.resolve();

  /** Runs `fn` after every job queued before it has settled; a failed job does not stop the queue. */
  run<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.tail.then(fn, fn);
    this.tail = next.catch(() => undefined);
    return next;
  }

  /** Settles when everything queued so far has settled. */
  idle(): Promise<void> {
    return this.tail.then(() => undefined);
  }
}
