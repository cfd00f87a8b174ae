// What was already said about each thing (a peer, a lease key, a node, a
// route), so that a problem seen on every pass, resync and event is logged
// once, and again only when it changes or after it went away.

export class SaidOnce {
  private readonly said = new Map<string, string>();

  /** `limit` bounds the memory: a flapping set of keys must not grow it forever. */
  constructor(private readonly limit = 10_000) {}

  /** True (and remembered) when `what` is news for `key`: never said, or different from the last time. */
  news(key: string, what: string): boolean {
    if (this.said.get(key) === what) return false;
    if (!this.said.has(key) && this.said.size >= this.limit) this.said.clear();
    this.said.set(key, what);
    return true;
  }

  /** The problem with `key` is over: a later one is news. */
  forget(key: string): void {
    this.said.delete(key);
  }

  /** How many keys have something said about them. */
  get size(): number {
    return this.said.size;
  }

  /** Forgets every key `keep` does not hold (things that are gone). */
  retain(keep: { has(key: string): boolean }): void {
    for (const key of this.said.keys()) if (!keep.has(key)) this.said.delete(key);
  }
}
