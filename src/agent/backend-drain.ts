// After a switch to another backend type, the old backend keeps serving the
// peers whose leases still name it (they switch within moments, on the same
// config change) and is removed a grace period after the last one has, or
// at a deadline. Both backends own disjoint peers meanwhile.
import type { Backend } from '../../backends/backend.js';
import type { Lease } from '../subnet/lease.js';

export const DEFAULT_DRAIN_MS = 120_000;
/**
 * The old backend's device outlives its last peer by this much: peers still
 * tunnel to us until they have processed our republished lease.
 */
const DRAIN_GRACE_MS = 5000;

export class BackendDrain {
  private readonly until: number;
  private readonly deadline: NodeJS.Timeout;
  /** Since when no peer's lease names the old backend. */
  private emptySince?: number;
  private grace?: NodeJS.Timeout;

  /** `recheck` is called when the drain may be over (deadline, grace period), to program again. */
  constructor(readonly backend: Backend, private readonly drainMs: number, private readonly recheck: () => void) {
    this.until = Date.now() + drainMs;
    this.deadline = setTimeout(recheck, drainMs + 10);
  }

  /** The peers each backend serves: the old one those whose leases still name it. */
  split(peers: readonly Lease[]): { oldPeers: Lease[]; newPeers: Lease[] } {
    const type = this.backend.type;
    return { oldPeers: peers.filter((p) => p.attrs.backendType === type), newPeers: peers.filter((p) => p.attrs.backendType !== type) };
  }

  /** Why the drain is over (every peer switched a grace period ago, or the deadline passed), or undefined. */
  over(peers: readonly Lease[]): string | undefined {
    const left = this.split(peers).oldPeers.length;
    const now = Date.now();
    if (left > 0) {
      this.emptySince = undefined;
      clearTimeout(this.grace);
      this.grace = undefined;
      return now >= this.until ? `${left} peer(s) still on it after ${Math.round(this.drainMs / 1000)} s; they are no longer served` : undefined;
    }
    this.emptySince ??= now;
    const wait = this.emptySince + DRAIN_GRACE_MS - now;
    if (wait <= 0) return 'every peer has switched';
    if (!this.grace) {
      this.grace = setTimeout(() => {
        this.grace = undefined;
        this.recheck();
      }, wait + 10);
    }
    return undefined;
  }

  /** Stops the timers; the caller stops the backend. */
  cancel(): void {
    clearTimeout(this.deadline);
    clearTimeout(this.grace);
  }
}
