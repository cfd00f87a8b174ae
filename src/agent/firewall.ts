// The node's nftables rules, derived from the lease set: the tunnel port
// open only to peers, and (with --ip-masq) pod masquerade and forwarding of
// the cluster Network. One weft-owned table, kept by the Dataplane; no table
// when no rule is wanted.
import type { NftRules } from '../dataplane/nft.js';
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
    rules.masquerade = [{ network: network.toString(), podSubnet: own.subnet.toString() }];
    rules.forwardNetworks = [network.toString()];
  }
  return rules.vxlanPort === undefined && !rules.masquerade ? undefined : rules;
}
