// A node object as a lease (pure): spec.podCIDRs and the IPv6 annotations, hostile values included.
import t from 'tap';
import { parseNetConf } from '../../src/config/parse.js';
import { IP } from '../../src/core/cidr.js';
import { leaseAnnotations, nodeLease, type NodeObject } from '../../src/subnet/kube/node-lease.js';

const dual = parseNetConf(JSON.stringify({ Network: '10.244.0.0/16', EnableIPv6: true, IPv6Network: '2001:db8:1000::/56', Backend: { Type: 'vxlan' } }));

const weft = {
  'weft.io/public-ip': '192.0.2.1',
  'weft.io/backend-type': 'vxlan',
  'weft.io/backend-data': '{"VNI":1}',
  'weft.io/public-ipv6': '2001:db8::1',
  'weft.io/backend-v6-data': '{"VNI":1,"VtepMAC":"0e:00:00:00:00:06"}',
};

function node(podCIDRs: unknown, annotations: Record<string, string | undefined> = weft): NodeObject {
  const list = podCIDRs as string[];
  return { metadata: { name: 'n1', annotations: annotations as Record<string, string> }, spec: { podCIDR: Array.isArray(list) ? list[0] : undefined, podCIDRs: list } };
}

/** What nodeLease makes of a node, as plain data. */
function view(n: NodeObject): Record<string, unknown> {
  const r = nodeLease(n, dual);
  if (r.kind !== 'lease') return r.kind === 'invalid' ? { invalid: r.reason } : { none: true };
  const { subnet, ipv6Subnet, attrs } = r.lease;
  return {
    subnet: subnet.toString(),
    ...(ipv6Subnet ? { ipv6Subnet: ipv6Subnet.toString(), publicIPv6: attrs.publicIPv6?.toString(), backendV6Data: attrs.backendV6Data } : {}),
    ...(r.warning ? { warning: r.warning } : {}),
  };
}

const DUAL = ['10.244.1.0/24', '2001:db8:1000:1::/64'];
/** A lone IPv6 podCIDR is an IPv6-only node's primary range, which a dual-stack cluster's IPv4 Network cannot hold. */
const ONLY_IPV6_IN_DUAL = 'subnet 2001:db8:1000:1::/64 is outside Network 10.244.0.0/16';
const v4Half = { subnet: '10.244.1.0/24' };

t.test('a dual-stack node: podCIDRs give both subnets, the IPv6 annotations the IPv6 half', async (t) => {
  const flannel = {
    'flannel.alpha.coreos.com/public-ip': '192.0.2.1',
    'flannel.alpha.coreos.com/backend-type': 'vxlan',
    'flannel.alpha.coreos.com/public-ipv6': '2001:db8::1',
    'flannel.alpha.coreos.com/backend-v6-data': '{"VNI":1,"VtepMAC":"0e:00:00:00:00:06"}',
  };
  const { 'weft.io/public-ipv6': _p, 'weft.io/backend-v6-data': _d, ...v4only } = weft;
  const both = { ...v4Half, ipv6Subnet: '2001:db8:1000:1::/64', publicIPv6: '2001:db8::1', backendV6Data: { VNI: 1, VtepMAC: '0e:00:00:00:00:06' } };
  t.strictSame(
    {
      weft: view(node(DUAL)),
      flannel: view(node(DUAL, flannel)),
      ipv6First: view(node([...DUAL].reverse())),
      notPublished: view(node(DUAL, v4only)),
    },
    { weft: both, flannel: both, ipv6First: both, notPublished: v4Half },
  );
});

t.test('a bad IPv6 half is dropped with a warning; the IPv4 half stands', async (t) => {
  const dropped = (why: string) => ({ ...v4Half, warning: `IPv6 half dropped: ${why}` });
  t.strictSame(
    {
      noIPv6Range: view(node(['10.244.1.0/24'])),
      outside: view(node(['10.244.1.0/24', '2001:db8:2000::/64'])),
      badAddress: view(node(DUAL, { ...weft, 'weft.io/public-ipv6': '192.0.2.1' })),
      multicast: view(node(DUAL, { ...weft, 'weft.io/public-ipv6': 'ff02::1' })),
    },
    {
      noIPv6Range: dropped('the node publishes weft.io/public-ipv6 but spec.podCIDRs has no IPv6 range'),
      outside: dropped('subnet 2001:db8:2000::/64 is outside IPv6Network 2001:db8:1000::/56'),
      badAddress: dropped("PublicIPv6 192.0.2.1 is IPv4, the key's subnet 2001:db8:1000:1::/64 is IPv6"),
      multicast: dropped('PublicIPv6 ff02::1 is not a unicast host address (multicast)'),
    },
  );
});

t.test('hostile podCIDRs and IPv6 annotations skip the node, with the reason', async (t) => {
  t.strictSame(
    {
      three: view(node([...DUAL, '10.244.2.0/24'])),
      twoIPv4: view(node(['10.244.1.0/24', '10.244.2.0/24'])),
      onlyIPv6: view(node(['2001:db8:1000:1::/64'])),
      notAList: view({ metadata: { name: 'n1', annotations: weft }, spec: { podCIDRs: '10.244.1.0/24' as unknown as string[] } }),
      notAString: view(node(['10.244.1.0/24', 7])),
      v6DataNotJson: view(node(DUAL, { ...weft, 'weft.io/backend-v6-data': '{"VNI":' })),
      v6DataHuge: view(node(DUAL, { ...weft, 'weft.io/backend-v6-data': `"${'x'.repeat(9000)}"` })),
      v6DataProto: view(node(DUAL, { ...weft, 'weft.io/backend-v6-data': '{"__proto__":{"x":1}}' })),
    },
    {
      three: { invalid: 'spec.podCIDRs has 3 ranges (at most one IPv4 and one IPv6)' },
      twoIPv4: { invalid: 'spec.podCIDRs has two IPv4 ranges (10.244.1.0/24, 10.244.2.0/24)' },
      onlyIPv6: { invalid: ONLY_IPV6_IN_DUAL },
      notAList: { invalid: 'spec.podCIDRs is not a list' },
      notAString: { invalid: 'spec.podCIDRs has an entry that is not a string' },
      v6DataNotJson: { invalid: 'annotation weft.io/backend-v6-data is not JSON' },
      v6DataHuge: { invalid: 'annotation weft.io/backend-v6-data is larger than 8192 bytes' },
      v6DataProto: { invalid: 'value contains a "__proto__" key' },
    },
  );
  t.match(view(node(['10.244.1.0/24', 'junk'])).invalid, /^spec\.podCIDRs /, 'a range that does not parse is named with its field');
});

t.test('an IPv6-only node (its one podCIDR IPv6): flannel\'s IPv6 annotations carry its address and data', async (t) => {
  const only6 = parseNetConf(JSON.stringify({ EnableIPv4: false, EnableIPv6: true, IPv6Network: '2001:db8:1000::/56', Backend: { Type: 'vxlan' } }));
  const flannel6 = {
    'flannel.alpha.coreos.com/backend-type': 'vxlan',
    'flannel.alpha.coreos.com/public-ipv6': '2001:db8::7',
    'flannel.alpha.coreos.com/backend-v6-data': '{"VNI":1,"VtepMAC":"0e:00:00:00:00:07"}',
  };
  const r = nodeLease(node(['2001:db8:1000:7::/64'], flannel6), only6);
  t.strictSame(
    r.kind === 'lease' ? [String(r.lease.subnet), String(r.lease.attrs.publicIP), r.lease.attrs.backendData, r.lease.ipv6Subnet] : r,
    ['2001:db8:1000:7::/64', '2001:db8::7', { VNI: 1, VtepMAC: '0e:00:00:00:00:07' }, undefined],
  );
  t.strictSame(leaseAnnotations({ publicIP: IP.parse('2001:db8::7'), backendType: 'vxlan', backendData: { VNI: 1 } }), {
    'weft.io/public-ip': null,
    'weft.io/public-ipv6': '2001:db8::7',
    'weft.io/backend-type': 'vxlan',
    'weft.io/backend-data': null,
    'weft.io/backend-v6-data': '{"VNI":1}',
    'weft.io/borrowed-ips': null,
    'weft.io/kube-subnet-manager': 'true',
  }, 'written the same way: flannel\'s IPv6-only nodes read it');
});

t.test('annotations written: both halves for a dual-stack lease, the IPv6 ones removed otherwise', async (t) => {
  const attrs = { publicIP: IP.parse('192.0.2.1'), backendType: 'vxlan', backendData: { VNI: 1 } };
  t.strictSame(
    {
      dual: leaseAnnotations({ ...attrs, publicIPv6: IP.parse('2001:db8::1'), backendV6Data: { VNI: 1 } }),
      single: leaseAnnotations(attrs),
    },
    {
      dual: {
        'weft.io/public-ip': '192.0.2.1',
        'weft.io/public-ipv6': '2001:db8::1',
        'weft.io/backend-type': 'vxlan',
        'weft.io/backend-data': '{"VNI":1}',
        'weft.io/backend-v6-data': '{"VNI":1}',
        'weft.io/borrowed-ips': null,
        'weft.io/kube-subnet-manager': 'true',
      },
      single: {
        'weft.io/public-ip': '192.0.2.1',
        'weft.io/public-ipv6': null,
        'weft.io/backend-type': 'vxlan',
        'weft.io/backend-data': '{"VNI":1}',
        'weft.io/backend-v6-data': null,
        'weft.io/borrowed-ips': null,
        'weft.io/kube-subnet-manager': 'true',
      },
    },
  );
});
