// The node's nftables rules, derived from the lease set: the tunnel port
// open only to peers, and (with --ip-masq) pod masquerade and forwarding of
// the cluster Network. One weft-owned table, kept by the Dataplane; no table
// when no rule is wanted.
import type { NftRules, PolicyNft } from '../dataplane/nft.js';
import type { Cidr } from '../core/cidr.js';
import { leaseFamilies, leaseHalf, leaseHalves, type Lease } from '../subnet/lease.js';

export interface FirewallInput {
  /** UDP port only peers may reach (the running backend's tunnel), if any. */
  tunnelPort?: number;
  own: Lease;
  peers: readonly Lease[];
  /** The cluster Network of each family the node runs (IPv4's, and IPv6's on a dual-stack node). */
  networks: readonly Cidr[];
  ipMasq: boolean;
  /** Kube mode: the NetworkPolicy chains and sets (compiled by src/policy). */
  policy?: PolicyNft;
}

/** The rules this node needs, or undefined when it needs none. */
export function firewallRules(input: FirewallInput): NftRules | undefined {
  const { own, peers } = input;
  const rules: NftRules = { allowedPeers: [] };
  // Each family the node runs, with its lease half and Network.
  const families = leaseFamilies(own).flatMap((family) => {
    const half = leaseHalf(own, family);
    const network = input.networks.find((n) => n.family === family);
    return half && network ? [{ family, half, network }] : [];
  });
  if (input.tunnelPort !== undefined) {
    rules.vxlanPort = input.tunnelPort;
    // Every current lease holder, whatever its backend: during a switch the cluster is briefly mixed.
    rules.allowedPeers = families.flatMap(({ family, half }) =>
      leaseHalves(peers, family).filter((p) => !p.attrs.publicIP.equals(half.attrs.publicIP)).map((p) => p.attrs.publicIP.toString()),
    );
  }
  if (input.ipMasq) {
    rules.masquerade = families.map(({ half, network }) => ({ network: network.toString(), podSubnet: half.subnet.toString() }));
    rules.forwardNetworks = families.map(({ network }) => network.toString());
  }
  // No pod isolated: no policy chains, and no table just for them.
  if (input.policy?.chains.length) rules.policy = input.policy;
  return rules.vxlanPort === undefined && !rules.masquerade && !rules.policy ? undefined : rules;
}
