// The node's nftables rules, derived from the lease set: the tunnel port
// open only to peers, and (with --ip-masq) pod masquerade and forwarding of
// the cluster Network. One weft-owned table; no table when no rule is wanted.
import type { Logger } from 'pino';
import { NftTable, type NftRules } from '../dataplane/nft.js';
import { oneLine } from '../errors.js';
import type { Cidr } from '../core/cidr.js';
import type { Lease } from '../subnet/lease.js';

export interface FirewallInput {
  /** UDP port only peers may reach (the running backend's tunnel), if any. */
  tunnelPort?: number;
  own: Lease;
  peers: readonly Lease[];
  network: Cidr;
  ipMasq: boolean;
}

/** The rules this node needs, or undefined when it needs none. */
export function firewallRules(input: FirewallInput): NftRules | undefined {
  const { own, peers, network } = input;
  const rules: NftRules = { allowedPeers: [] };
  if (input.tunnelPort !== undefined) {
    rules.vxlanPort = input.tunnelPort;
    // Every current lease holder, whatever its backend: during a switch the cluster is briefly mixed.
    rules.allowedPeers = peers.filter((p) => !p.attrs.publicIP.equals(own.attrs.publicIP)).map((p) => p.attrs.publicIP.toString());
  }
  if (input.ipMasq) {
    rules.masquerade = { network: network.toString(), podSubnet: own.subnet.toString() };
    rules.forwardNetwork = network.toString();
  }
  return rules.vxlanPort === undefined && !rules.masquerade ? undefined : rules;
}

/** Keeps weft's table equal to the wanted rules, and absent when none are wanted. */
export class NodeFirewall {
  private readonly table: NftTable;
  private present: boolean | undefined; // undefined: not known yet (a previous run may have left a table)

  constructor(private readonly opts: { logger: Logger; resyncMs?: number; signal: AbortSignal }) {
    this.table = new NftTable({ logger: opts.logger, ...(opts.resyncMs !== undefined ? { resyncMs: opts.resyncMs } : {}) });
  }

  /** Rejects when a wanted table cannot be written (e.g. nft missing): the agent is then not ready. */
  async apply(rules: NftRules | undefined): Promise<void> {
    if (rules) {
      const { written } = await this.table.apply(rules);
      if (this.present !== true) {
        this.table.start(this.opts.signal); // restore it if someone deletes it
        this.opts.logger.info('nftables table weft in place');
      } else if (written) {
        this.opts.logger.debug('nftables table weft updated');
      }
      this.present = true;
      return;
    }
    if (this.present === false) return;
    try {
      await this.table.remove();
      if (this.present) this.opts.logger.info('nftables table weft removed: no rule is needed');
    } catch (err) {
      // Nothing wanted and nothing known to exist: a node without nft needs no table.
      if (this.present) throw err;
      this.opts.logger.debug(`no leftover nftables table removed: ${oneLine(err)}`);
    }
    this.present = false;
  }

  /** Why weft's table is not as wanted, undefined when it is. */
  get error(): string | undefined {
    return this.table.error;
  }

  /** Stops checking; the table stays (SIGTERM keeps the data plane). */
  stop(): Promise<void> {
    return this.table.stop();
  }

  /** Deletes the table (removing weft from the node). */
  remove(): Promise<void> {
    this.present = false;
    return this.table.remove();
  }
}
