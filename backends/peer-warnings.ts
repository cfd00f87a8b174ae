// Backends re-compute desired state on every peer change, kernel event and
// resync; a peer they cannot serve must be reported once, not on every pass.
import type { Logger } from 'pino';
import type { Lease } from '../src/subnet/lease.js';
import { SaidOnce } from '../src/core/said-once.js';

/** Warns once per peer and problem; again only when the peer's lease or the problem changes. */
export class PeerWarnings {
  /** subnet key -> what was last said about that peer */
  private readonly said = new SaidOnce();

  constructor(private readonly logger: Logger) {}

  /** Forget peers that are gone, so a returning peer is reported afresh. */
  retain(peers: readonly Lease[]): void {
    if (this.said.size === 0) return; // the usual case, on every lease event: nothing said, nothing to forget
    this.said.retain(new Set(peers.map((p) => p.subnet.toKey())));
  }

  warn(peer: Lease, message: string): void {
    const key = peer.subnet.toKey();
    const { publicIP, backendType, backendData } = peer.attrs;
    const what = `${message}\0${publicIP}\0${backendType}\0${JSON.stringify(backendData ?? null)}`;
    if (!this.said.news(key, what)) return;
    this.logger.warn({ peer: peer.subnet.toString(), publicIP: publicIP.toString(), backendType }, message);
  }

  /**
   * A lease of another backend type: this node cannot serve it its own way.
   * `directDev` names the device of the direct route that reaches it meanwhile, if any.
   */
  otherBackend(peer: Lease, ownType: string, directDev?: string): void {
    const theirs = JSON.stringify(peer.attrs.backendType.slice(0, 32));
    const what = directDev
      ? `reaching peer ${peer.subnet} at ${peer.attrs.publicIP} by a direct route on ${directDev}`
      : `ignoring peer ${peer.subnet} at ${peer.attrs.publicIP}`;
    this.warn(peer, `${what}: its lease is for the ${theirs} backend and this node runs ${ownType}; all nodes must use one backend`);
  }

  /** The peer is served again: a later problem is news. */
  clear(peer: Lease): void {
    if (this.said.size === 0) return;
    this.said.forget(peer.subnet.toKey());
  }
}
