// The node's nftables rules as a function of backend, lease set and --ip-masq.
import t from 'tap';
import { firewallRules } from '../../src/agent/firewall.js';
import { nftRuleset } from '../../src/dataplane/nft.js';
import { Cidr, IP } from '../../src/core/cidr.js';
import type { Lease } from '../../src/subnet/lease.js';
import { withIPv6 } from '../support/dual-stack.js';

const lease = (subnet: string, publicIP: string, backendType = 'vxlan'): Lease => ({
  subnet: Cidr.parse(subnet),
  attrs: { publicIP: IP.parse(publicIP), backendType, backendData: null },
});
const networks = [Cidr.parse('10.5.0.0/16')];
const own = lease('10.5.1.0/24', '192.0.2.1');
const peers = [lease('10.5.2.0/24', '192.0.2.2'), lease('10.5.3.0/24', '192.0.2.3', 'host-gw')];

t.test('no tunnel and no --ip-masq: no table at all', async (t) => {
  t.equal(firewallRules({ own, peers, networks, ipMasq: false }), undefined);
});

t.test('tunnel: the port opens to every current lease holder but this node', async (t) => {
  const rules = firewallRules({ tunnelPort: 8472, own, peers: [...peers, lease('10.5.1.0/24', '192.0.2.1')], networks, ipMasq: false });
  t.same(rules, { vxlanPort: 8472, allowedPeers: ['192.0.2.2', '192.0.2.3'] }, 'a peer still on the old backend during a switch is a cluster member');
  t.notOk(rules && 'masquerade' in rules, 'no masquerade unless asked');
  const alone = firewallRules({ tunnelPort: 8472, own, peers: [], networks, ipMasq: false });
  t.same(alone, { vxlanPort: 8472, allowedPeers: [] }, 'no peers: the port is closed, not open');
  t.match(nftRuleset(alone!), /udp dport 8472 drop/);
});

t.test('the set follows the lease set', async (t) => {
  const before = nftRuleset(firewallRules({ tunnelPort: 8472, own, peers, networks, ipMasq: false })!);
  const after = nftRuleset(firewallRules({ tunnelPort: 8472, own, peers: peers.slice(0, 1), networks, ipMasq: false })!);
  t.match(before, /elements = \{ 192\.0\.2\.2, 192\.0\.2\.3 \}/);
  t.match(after, /elements = \{ 192\.0\.2\.2 \}/);
});

t.test('--ip-masq: masquerade this node\'s pods leaving the Network, forward the Network, for any backend', async (t) => {
  const rules = firewallRules({ own, peers, networks, ipMasq: true });
  t.same(rules, { allowedPeers: [], masquerade: [{ network: '10.5.0.0/16', podSubnet: '10.5.1.0/24' }], forwardNetworks: ['10.5.0.0/16'] });
  const text = nftRuleset(rules!);
  t.notMatch(text, /udp dport/, 'host-gw has no tunnel port');
  t.match(text, /ip saddr 10\.5\.0\.0\/16 ip daddr 10\.5\.0\.0\/16 return/, 'never pod-to-pod');
  t.match(text, /meta mark & 0x4000 == 0x4000 return/, 'never what kube-proxy masquerades itself');
  const both = firewallRules({ tunnelPort: 4789, own, peers, networks, ipMasq: true });
  t.match(both, { vxlanPort: 4789, masquerade: [{ podSubnet: '10.5.1.0/24' }] });
});

t.test('dual-stack: IPv6 peers in the tunnel set, masquerade and forwarding per family', async (t) => {
  const own6 = withIPv6(lease('10.5.1.0/24', '192.0.2.1'), '2001:db8:1000:1::/64', '2001:db8::1');
  const peers6 = [withIPv6(lease('10.5.2.0/24', '192.0.2.2'), '2001:db8:1000:2::/64', '2001:db8::2'), lease('10.5.3.0/24', '192.0.2.3')];
  const both = [Cidr.parse('10.5.0.0/16'), Cidr.parse('2001:db8:1000::/56')];
  const rules = firewallRules({ tunnelPort: 4789, own: own6, peers: peers6, networks: both, ipMasq: true });
  t.same(rules, {
    vxlanPort: 4789,
    allowedPeers: ['192.0.2.2', '192.0.2.3', '2001:db8::2'],
    masquerade: [
      { network: '10.5.0.0/16', podSubnet: '10.5.1.0/24' },
      { network: '2001:db8:1000::/56', podSubnet: '2001:db8:1000:1::/64' },
    ],
    forwardNetworks: ['10.5.0.0/16', '2001:db8:1000::/56'],
  });
});
