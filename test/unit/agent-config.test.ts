// What a new net-conf means for a running agent, and the subnet.env text it writes.
import t from 'tap';
import { classifyConfigChange, describeBackend, refusalLine } from '../../src/agent/config-change.js';
import { formatSubnetEnv } from '../../src/subnet/subnet-env.js';
import { parseNetConf } from '../../src/config/parse.js';
import { Cidr } from '../../src/core/cidr.js';

const conf = (doc: Record<string, unknown>) => JSON.stringify({ Network: '10.5.0.0/16', Backend: { Type: 'host-gw' }, ...doc });
const current = parseNetConf(conf({}));

t.test('same: identical text, reordered keys, whitespace', async (t) => {
  t.match(classifyConfigChange(current, conf({})), { kind: 'same', rangeChanged: false });
  t.match(classifyConfigChange(current, `{ "Backend": {"Type": "host-gw"},\n  "Network": "10.5.0.0/16" }`), { kind: 'same' });
  t.match(classifyConfigChange(current, conf({ SubnetLen: 24 })), { kind: 'same' }, 'the default SubnetLen written out');
  const vx = parseNetConf(conf({ Backend: { Type: 'vxlan', VNI: 2, Port: 4789 } }));
  t.match(classifyConfigChange(vx, conf({ Backend: { Port: 4789, Type: 'vxlan', VNI: 2 } })), { kind: 'same' }, 'Backend key order does not matter');
});

t.test('same backend, other SubnetMin/SubnetMax: no switch, noted', async (t) => {
  const c = classifyConfigChange(current, conf({ SubnetMin: '10.5.10.0' }));
  t.match(c, { kind: 'same', rangeChanged: true });
  if (c.kind === 'same') t.equal(String(c.conf.subnetMin), '10.5.10.0/24', 'the new range is handed back');
});

t.test('backend changed: type, or an option of the same type', async (t) => {
  const c = classifyConfigChange(current, conf({ Backend: { Type: 'vxlan' } }));
  t.match(c, { kind: 'backend-changed', from: 'host-gw', to: 'vxlan', rangeChanged: false });
  if (c.kind === 'backend-changed') t.equal(c.conf.backend.type, 'vxlan');
  const vx = parseNetConf(conf({ Backend: { Type: 'vxlan' } }));
  t.match(classifyConfigChange(vx, conf({ Backend: { Type: 'vxlan', VNI: 7 } })), { kind: 'backend-changed', from: 'vxlan', to: 'vxlan {"VNI":7}' });
  t.match(classifyConfigChange(vx, conf({ Backend: { Type: 'vxlan', MTU: 1400 } })), { kind: 'backend-changed' }, 'an MTU change rebuilds the device');
  t.match(classifyConfigChange(vx, conf({ Backend: { Type: 'host-gw' }, SubnetMax: '10.5.200.0' })), { kind: 'backend-changed', rangeChanged: true });
});

t.test('invalid: refused with the validator\'s one-line reason', async (t) => {
  const cases: [string, RegExp][] = [
    ['{"Network": "10.5.0.0/16", "Backend": {"Type": "vxlan", "VNI": "one"}', /not valid JSON/],
    [conf({ Backend: { Type: 'vxlan', VNI: 'one' } }), /Backend\.VNI/],
    [conf({ Backend: { Type: 'warp-drive' } }), /Backend\.Type "warp-drive" is not a known backend/],
    [conf({ Backend: { Type: 'host-gw', VNI: 1 } }), /host-gw takes no options/],
    ['', /not valid JSON/],
    ['[]', /must be a JSON object/],
  ];
  for (const [text, reason] of cases) {
    const c = classifyConfigChange(current, text);
    t.equal(c.kind, 'invalid', text.slice(0, 60));
    if (c.kind === 'invalid') {
      t.match(c.reason, reason);
      t.notMatch(c.reason, /\n/, 'one line');
    }
  }
});

t.test('network changed: Network or SubnetLen, refused even with a valid backend change', async (t) => {
  t.match(classifyConfigChange(current, conf({ Network: '10.6.0.0/16' })), { kind: 'network-changed', reason: 'Network changed from 10.5.0.0/16 to 10.6.0.0/16' });
  t.match(classifyConfigChange(current, conf({ SubnetLen: 26 })), { kind: 'network-changed', reason: 'SubnetLen changed from 24 to 26' });
  t.match(classifyConfigChange(current, conf({ Network: '10.5.0.0/17', Backend: { Type: 'vxlan' } })), { kind: 'network-changed' });
});

t.test('describeBackend is canonical', async (t) => {
  t.equal(describeBackend(parseNetConf(conf({})).backend), 'host-gw');
  const a = describeBackend(parseNetConf(conf({ Backend: { Type: 'vxlan', VNI: 3, DirectRouting: true } })).backend);
  const b = describeBackend(parseNetConf(conf({ Backend: { DirectRouting: true, VNI: 3, Type: 'vxlan' } })).backend);
  t.equal(a, b);
  t.equal(a, 'vxlan {"DirectRouting":true,"VNI":3}');
});

t.test('subnet.env: flannel keys, gateway address with the subnet length, MTU of the backend', async (t) => {
  t.equal(
    formatSubnetEnv({ network: Cidr.parse('10.5.0.0/16'), subnet: Cidr.parse('10.5.3.0/24'), mtu: 1450, ipMasq: true }),
    'FLANNEL_NETWORK=10.5.0.0/16\nFLANNEL_SUBNET=10.5.3.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n',
  );
  t.equal(
    formatSubnetEnv({ network: Cidr.parse('10.244.0.0/16'), subnet: Cidr.parse('10.244.17.0/26'), mtu: 1500, ipMasq: false }),
    'FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.17.1/26\nFLANNEL_MTU=1500\nFLANNEL_IPMASQ=false\n',
  );
});

t.test('dual-stack: EnableIPv6 toggled waits for restarts; the IPv6 range is compared like the IPv4 one', async (t) => {
  const v6 = { EnableIPv6: true, IPv6Network: '2001:db8:1000::/56' };
  const on = classifyConfigChange(current, conf(v6));
  t.match(on, { kind: 'family-changed', reason: 'EnableIPv6 changed from false to true' });
  t.match(
    refusalLine({ text: conf(v6) }, on, 'etcd', 'host-gw'),
    /^new network config in etcd refused: EnableIPv6 changed from false to true, which takes effect when each agent restarts .*; backend host-gw keeps running$/,
  );
  const dual = parseNetConf(conf(v6));
  t.match(classifyConfigChange(dual, conf({})), { kind: 'family-changed', reason: 'EnableIPv6 changed from true to false' });
  t.match(classifyConfigChange(dual, conf({ ...v6, IPv6Network: '2001:db8:2000::/56' })), {
    kind: 'network-changed',
    reason: 'IPv6Network changed from 2001:db8:1000::/56 to 2001:db8:2000::/56',
  });
  t.match(classifyConfigChange(dual, conf({ ...v6, IPv6SubnetLen: 60 })), { kind: 'network-changed', reason: 'IPv6SubnetLen changed from 64 to 60' });
  t.match(classifyConfigChange(dual, conf({ ...v6, IPv6SubnetMin: '2001:db8:1000:10::' })), { kind: 'same', rangeChanged: true });
});
