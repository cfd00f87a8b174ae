import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { checkBackendOptions } from '../../backends/registry.js';
import { ConfigError } from '../../src/config/netconf.js';
import { loadNetConfFile, parseNetConf } from '../../src/config/parse.js';
import { WeftError } from '../../src/errors.js';
import { run as runConfigCommand } from '../../src/cli/config.js';

const conf = (doc: Record<string, unknown>) => parseNetConf(JSON.stringify(doc));
const hostGw = { Type: 'host-gw' };

/** Asserts a ConfigError whose one-line message matches `pattern`. */
function rejects(t: Test, text: string, pattern: RegExp, what?: string): void {
  try {
    checkBackendOptions(parseNetConf(text));
    t.fail(`accepted: ${what ?? text.slice(0, 80)}`);
  } catch (err) {
    t.type(err, ConfigError, what ?? 'a ConfigError');
    const msg = (err as Error).message;
    t.notMatch(msg, /\n/, 'one line');
    t.match(msg, /^net-conf: /);
    t.match(msg, pattern, what ?? text.slice(0, 80));
  }
}
const rejectsDoc = (t: Test, doc: unknown, pattern: RegExp, what?: string) =>
  rejects(t, JSON.stringify(doc), pattern, what ?? JSON.stringify(doc).slice(0, 80));

t.test('flannel sample configs are accepted', async (t) => {
  // kube-flannel.yml's net-conf.json
  const kube = parseNetConf(`{
    "Network": "10.244.0.0/16",
    "EnableNFTables": false,
    "Backend": {
      "Type": "vxlan"
    }
  }`);
  t.equal(kube.network.toString(), '10.244.0.0/16');
  t.equal(kube.backend.type, 'vxlan');

  // flannel's Documentation/configuration.md example
  const doc = parseNetConf(`{
	"Network": "10.0.0.0/8",
	"SubnetLen": 20,
	"SubnetMin": "10.10.0.0",
	"SubnetMax": "10.99.0.0",
	"Backend": {
		"Type": "udp",
		"Port": 7890
	}
}`);
  t.equal(doc.subnetLen, 20);
  t.equal(doc.subnetMin.toString(), '10.10.0.0/20');
  t.equal(doc.subnetMax.toString(), '10.99.0.0/20');
  t.same(doc.backend.raw, { Port: 7890 }, 'Type is not among the backend keys');

  const gw = conf({ Network: '10.1.0.0/16', EnableIPv4: true, EnableIPv6: false, Backend: hostGw });
  t.equal(gw.backend.type, 'host-gw');
  t.same(gw.backend.raw, {});

  t.ok(parseNetConf('\uFEFF{"Network": "10.1.0.0/16", "Backend": {"Type": "bgp"}}'), 'a byte-order mark is tolerated');
});

t.test('defaults', async (t) => {
  const wide = conf({ Network: '10.5.0.0/16', Backend: hostGw });
  t.equal(wide.subnetLen, 24, '/16 -> /24');
  t.equal(wide.subnetMin.toString(), '10.5.1.0/24', 'the first subnet is skipped');
  t.equal(wide.subnetMax.toString(), '10.5.255.0/24', 'up to the last subnet');

  const slash22 = conf({ Network: '10.5.4.0/22', Backend: hostGw });
  t.equal(slash22.subnetLen, 24, '/22 is still wide enough for /24');
  t.equal(slash22.subnetMin.toString(), '10.5.5.0/24');
  t.equal(slash22.subnetMax.toString(), '10.5.7.0/24');

  const slash23 = conf({ Network: '10.5.4.0/23', Backend: hostGw });
  t.equal(slash23.subnetLen, 25, 'narrower than /22 -> prefix + 2');
  t.equal(slash23.subnetMin.toString(), '10.5.4.128/25');
  t.equal(slash23.subnetMax.toString(), '10.5.5.128/25');

  const slash28 = conf({ Network: '192.0.2.16/28', Backend: hostGw });
  t.equal(slash28.subnetLen, 30);
  t.equal(slash28.subnetMin.toString(), '192.0.2.20/30');
  t.equal(slash28.subnetMax.toString(), '192.0.2.28/30');

  rejectsDoc(t, { Network: '192.0.2.0/29', Backend: hostGw }, /Network 192\.0\.2\.0\/29 is too small.*\/28 or wider/);

  const one = conf({ Network: '10.5.0.0/16', SubnetLen: 17, Backend: hostGw });
  t.equal(one.subnetMin.toString(), '10.5.128.0/17', 'SubnetLen one longer than Network leaves one subnet');
  t.equal(one.subnetMax.toString(), '10.5.128.0/17');
});

t.test('input: size, JSON, shape', async (t) => {
  const big = JSON.stringify({ Network: '10.5.0.0/16', Backend: hostGw }) + ' '.repeat(64 * 1024);
  rejects(t, big, /larger than the 64 KiB limit/, 'over 64 KiB, even if only whitespace');
  const justUnder = JSON.stringify({ Network: '10.5.0.0/16', Backend: hostGw });
  t.ok(parseNetConf(justUnder + ' '.repeat(64 * 1024 - justUnder.length)), 'exactly 64 KiB is fine');
  rejects(t, '{"Network": "10.5.0.0/16",', /not valid JSON/);
  rejects(t, '', /not valid JSON/);
  rejects(t, '{"Network": "10.5.0.0/16"\n\n,,}', /not valid JSON/, 'JSON error with newlines stays one line');
  rejects(t, '[{"Network": "10.5.0.0/16"}]', /must be a JSON object, got an array/);
  rejects(t, 'null', /must be a JSON object, got null/);
  rejects(t, '"10.5.0.0/16"', /must be a JSON object, got string/);
  rejects(t, '42', /must be a JSON object, got number/);
});

t.test('unknown and unsupported top-level keys', async (t) => {
  rejectsDoc(t, { Network: '10.5.0.0/16', Subnetlen: 24, Backend: hostGw }, /unknown key "Subnetlen" \(did you mean "SubnetLen"\?\); known keys: Network, SubnetLen/);
  rejectsDoc(t, { Network: '10.5.0.0/16', Foo: 1, Backend: hostGw }, /unknown key "Foo"; known keys: /);
  rejectsDoc(t, { Network: '10.5.0.0/16', ['x'.repeat(500)]: 1, Backend: hostGw }, /unknown key "x{10,64}"; /, 'a huge key name is cut');
  rejectsDoc(t, { Network: '10.5.0.0/16', EnableIPv6: 'no', Backend: hostGw }, /EnableIPv6 must be true or false, got string "no"/);
  rejectsDoc(t, { Network: '10.5.0.0/16', EnableIPv4: false, Backend: hostGw }, /^net-conf: EnableIPv4 and EnableIPv6 are both false: no address family left; enable one$/);
  rejectsDoc(t, { Network: '10.5.0.0/16', EnableIPv4: false, EnableIPv6: true, IPv6Network: 'fd00:10::/56', Backend: hostGw }, /^net-conf: Network has no effect when "EnableIPv4" is false \(IPv6-only\); remove it, or remove EnableIPv4$/);
  rejectsDoc(t, { Network: '10.5.0.0/16', EnableIPv4: 0, Backend: hostGw }, /EnableIPv4 must be true or false, got number 0/);
  rejectsDoc(t, { Network: '10.5.0.0/16', EnableNFTables: 1, Backend: hostGw }, /EnableNFTables must be true or false, got number 1/);
  rejectsDoc(t, { Network: '10.5.0.0/16', Networks: ['10.6.0.0/16'], Backend: hostGw }, /Networks: several cluster networks are not supported/);
  rejectsDoc(t, { Network: '10.5.0.0/16', IPv6Networks: ['fd00::/48'], Backend: hostGw }, /IPv6Networks: several cluster networks are not supported; use one IPv6Network/);
});

t.test('Network', async (t) => {
  rejectsDoc(t, { Backend: hostGw }, /Network is required/);
  rejectsDoc(t, { Network: 10, Backend: hostGw }, /Network must be a string, got number 10/);
  rejectsDoc(t, { Network: ['10.5.0.0/16'], Backend: hostGw }, /Network must be a string, got an array/);
  rejectsDoc(t, { Network: null, Backend: hostGw }, /Network must be a string, got null/);
  rejectsDoc(t, { Network: '10.5.0.1/16', Backend: hostGw }, /Network "10\.5\.0\.1\/16" has host bits set \(did you mean 10\.5\.0\.0\/16\?\)/);
  rejectsDoc(t, { Network: '10.5.0.0', Backend: hostGw }, /Network "10\.5\.0\.0" is not a CIDR/);
  rejectsDoc(t, { Network: '10.5.0.0/33', Backend: hostGw }, /Network "10\.5\.0\.0\/33" has a prefix longer than \/32/);
  rejectsDoc(t, { Network: '10.5/16', Backend: hostGw }, /Network "10\.5" is not a dotted-quad IPv4 address/);
  rejectsDoc(t, { Network: 'ten/8', Backend: hostGw }, /Network "ten" is not an IP address/);
  rejectsDoc(t, { Network: 'fd00:10::/48', Backend: hostGw }, /^net-conf: Network fd00:10::\/48 is an IPv6 network; Network takes IPv4, IPv6Network takes IPv6$/);
});

t.test('SubnetLen', async (t) => {
  const net = { Network: '10.5.0.0/16', Backend: hostGw };
  rejectsDoc(t, { ...net, SubnetLen: 33 }, /^net-conf: SubnetLen 33 is longer than \/30$/);
  rejectsDoc(t, { ...net, SubnetLen: 31 }, /SubnetLen 31 is longer than \/30/);
  rejectsDoc(t, { ...net, SubnetLen: 16 }, /SubnetLen 16 must be longer than the Network's \/16/);
  rejectsDoc(t, { ...net, SubnetLen: 8 }, /SubnetLen 8 must be longer than the Network's \/16/);
  rejectsDoc(t, { ...net, SubnetLen: -1 }, /SubnetLen -1 must be longer/);
  rejectsDoc(t, { ...net, SubnetLen: 24.5 }, /SubnetLen must be an integer, got number 24\.5/);
  rejectsDoc(t, { ...net, SubnetLen: '24' }, /SubnetLen must be an integer, got string "24"/);
  rejectsDoc(t, { ...net, SubnetLen: null }, /SubnetLen must be an integer, got null/);
  rejects(t, '{"Network": "10.5.0.0/16", "SubnetLen": 1e400, "Backend": {"Type": "host-gw"}}', /SubnetLen must be an integer, got number/, 'Infinity');
  t.equal(conf({ ...net, SubnetLen: 30 }).subnetLen, 30);
  t.equal(conf({ ...net, SubnetLen: 26 }).subnetMax.toString(), '10.5.255.192/26');
});

t.test('SubnetMin and SubnetMax', async (t) => {
  const net = { Network: '10.5.0.0/16', Backend: hostGw };
  const addr = conf({ ...net, SubnetMin: '10.5.10.0', SubnetMax: '10.5.20.0' });
  t.equal(addr.subnetMin.toString(), '10.5.10.0/24', 'flannel writes bare addresses');
  t.equal(addr.subnetMax.toString(), '10.5.20.0/24');
  const cidr = conf({ ...net, SubnetMin: '10.5.0.0/24', SubnetMax: '10.5.0.0/24' });
  t.equal(cidr.subnetMin.toString(), '10.5.0.0/24', 'the first subnet may be asked for explicitly');
  t.equal(cidr.subnetMax.toString(), '10.5.0.0/24', 'a range of one subnet');

  for (const key of ['SubnetMin', 'SubnetMax']) {
    rejectsDoc(t, { ...net, [key]: '10.5.10.7' }, new RegExp(`${key} 10\\.5\\.10\\.7 is not aligned to SubnetLen /24 \\(did you mean 10\\.5\\.10\\.0\\?\\)`));
    rejectsDoc(t, { ...net, [key]: '10.6.10.0' }, new RegExp(`${key} 10\\.6\\.10\\.0 is outside Network 10\\.5\\.0\\.0/16`));
    rejectsDoc(t, { ...net, [key]: '10.6.10.0/24' }, new RegExp(`${key} 10\\.6\\.10\\.0 is outside Network`));
    rejectsDoc(t, { ...net, [key]: '10.5.10.0/25' }, new RegExp(`${key} "10\\.5\\.10\\.0/25" is a /25, not a /24 \\(SubnetLen\\)`));
    rejectsDoc(t, { ...net, [key]: '10.5.10.1/24' }, new RegExp(`${key} "10\\.5\\.10\\.1/24" has host bits set`));
    rejectsDoc(t, { ...net, [key]: 'first' }, new RegExp(`${key} "first" is not an IP address`));
    rejectsDoc(t, { ...net, [key]: 'fd00::' }, new RegExp(`${key} fd00:: is outside Network`));
    rejectsDoc(t, { ...net, [key]: 167772160 }, new RegExp(`${key} must be a string, got number`));
    rejectsDoc(t, { ...net, [key]: { IP: '10.5.1.0' } }, new RegExp(`${key} must be a string, got an object`));
  }
  rejectsDoc(t, { ...net, SubnetMin: '10.5.20.0', SubnetMax: '10.5.10.0' }, /SubnetMin 10\.5\.20\.0\/24 is above SubnetMax 10\.5\.10\.0\/24: no subnet left/);
  rejectsDoc(t, { ...net, SubnetMax: '10.5.0.0' }, /SubnetMin 10\.5\.1\.0\/24 \(the default: the first subnet is skipped\) is above SubnetMax/);
  const narrow = conf({ Network: '10.5.0.0/16', SubnetLen: 20, SubnetMin: '10.5.16.0', Backend: hostGw });
  t.equal(narrow.subnetMin.toString(), '10.5.16.0/20', 'alignment follows SubnetLen');
  rejectsDoc(t, { Network: '10.5.0.0/16', SubnetLen: 20, SubnetMin: '10.5.8.0', Backend: hostGw }, /not aligned to SubnetLen \/20 \(did you mean 10\.5\.0\.0\?\)/);
});

// flannel's dual-stack keys (pkg/subnet/config.go): read with the IPv4 code
// path, the family a parameter. parseNetConf takes them; the registry still
// refuses to run them (see 'IPv6 is read, but this weft does not run it').
const v4 = { Network: '10.5.0.0/16', Backend: hostGw };
const dual = (doc: Record<string, unknown>) => conf({ ...v4, EnableIPv6: true, IPv6Network: 'fd00:10:0:100::/56', ...doc });

t.test('IPv6: EnableIPv6 and IPv6Network', async (t) => {
  // flannel's Documentation/configuration.md dual-stack example
  const doc = conf({ Network: '10.42.0.0/16', EnableIPv6: true, IPv6Network: '2001:cafe:42::/56', Backend: { Type: 'vxlan' } });
  t.equal(doc.ipv6?.network.toString(), '2001:cafe:42::/56');
  t.same(
    { network: String(doc.network), subnetLen: doc.subnetLen, subnetMin: String(doc.subnetMin), subnetMax: String(doc.subnetMax) },
    { network: '10.42.0.0/16', subnetLen: 24, subnetMin: '10.42.1.0/24', subnetMax: '10.42.255.0/24' },
    'the IPv4 side is read as without IPv6',
  );
  t.equal(conf(v4).ipv6, undefined, 'EnableIPv6 defaults to false');
  t.equal(conf({ ...v4, EnableIPv6: false }).ipv6, undefined, 'EnableIPv6 false: no IPv6 range');
  t.equal(conf({ ...v4, EnableIPv4: true }).network.toString(), '10.5.0.0/16', 'EnableIPv4 true is the default, accepted');
  rejectsDoc(t, { ...v4, EnableIPv6: true }, /^net-conf: IPv6Network is required when EnableIPv6 is true, e.g. "IPv6Network": "fd00:10:244::\/56"$/);
  rejectsDoc(t, { ...v4, IPv6Network: 'fd00::/48' }, /^net-conf: IPv6Network has no effect unless "EnableIPv6": true; add that, or remove the IPv6 keys$/, 'IPv6 keys without EnableIPv6');
  rejectsDoc(t, { ...v4, EnableIPv6: false, IPv6SubnetLen: 64 }, /IPv6SubnetLen has no effect unless "EnableIPv6": true/, 'IPv6 keys with EnableIPv6 false');
  rejectsDoc(t, { ...v4, EnableIPv6: true, IPv6Network: 48 }, /IPv6Network must be a string, got number 48/);
  rejectsDoc(t, { ...v4, EnableIPv6: true, IPv6Network: '10.6.0.0/16' }, /^net-conf: IPv6Network 10\.6\.0\.0\/16 is an IPv4 network; Network takes IPv4, IPv6Network takes IPv6$/);
  rejectsDoc(t, { ...v4, EnableIPv6: true, IPv6Network: 'fd00:10::1/56' }, /IPv6Network "fd00:10::1\/56" has host bits set \(did you mean fd00:10::\/56\?\)/);
  rejectsDoc(t, { ...v4, EnableIPv6: true, IPv6Network: 'fd00::/129' }, /IPv6Network "fd00::\/129" has a prefix longer than \/128/);
  rejectsDoc(t, { ...v4, EnableIPv6: true, IPv6Network: 'fd00::%eth0/48' }, /IPv6Network "fd00::%eth0" has a zone/);
  rejectsDoc(t, { ...v4, EnableIPv6: true, IPv6Network: 'fd00::/48', IPv6Subnetlen: 64 }, /unknown key "IPv6Subnetlen" \(did you mean "IPv6SubnetLen"\?\)/);
});

t.test('IPv6SubnetLen: flannel\'s default is /64, or prefix + 2 for a network narrower than /62', async (t) => {
  t.equal(dual({}).ipv6?.subnetLen, 64, '/56 -> /64');
  t.equal(dual({ IPv6Network: 'fd00:10::/62' }).ipv6?.subnetLen, 64, '/62 still holds four /64s');
  t.equal(dual({ IPv6Network: 'fd00:10::/63' }).ipv6?.subnetLen, 65, '/63 -> /65');
  t.equal(dual({ IPv6Network: 'fd00:10::/124' }).ipv6?.subnetLen, 126, '/124 is the narrowest network');
  rejectsDoc(t, { ...v4, EnableIPv6: true, IPv6Network: 'fd00:10::/125' }, /^net-conf: IPv6Network fd00:10::\/125 is too small to split into node subnets; use \/124 or wider$/);
  t.equal(dual({ IPv6SubnetLen: 80 }).ipv6?.subnetLen, 80, 'given');
  t.equal(dual({ IPv6SubnetLen: 126 }).ipv6?.subnetLen, 126, 'the longest');
  rejectsDoc(t, { ...v4, EnableIPv6: true, IPv6Network: 'fd00:10::/56', IPv6SubnetLen: 127 }, /^net-conf: IPv6SubnetLen 127 is longer than \/126$/);
  rejectsDoc(t, { ...v4, EnableIPv6: true, IPv6Network: 'fd00:10::/56', IPv6SubnetLen: 56 }, /^net-conf: IPv6SubnetLen 56 must be longer than the IPv6Network's \/56$/);
  rejectsDoc(t, { ...v4, EnableIPv6: true, IPv6Network: 'fd00:10::/56', IPv6SubnetLen: 48 }, /IPv6SubnetLen 48 must be longer than the IPv6Network's \/56/, 'a subnet wider than the network');
  rejectsDoc(t, { ...v4, EnableIPv6: true, IPv6Network: 'fd00:10::/56', IPv6SubnetLen: '64' }, /IPv6SubnetLen must be an integer, got string "64"/);
  t.equal(dual({ SubnetLen: 26 }).ipv6?.subnetLen, 64, 'SubnetLen is the IPv4 side\'s only');
});

t.test('IPv6SubnetMin and IPv6SubnetMax', async (t) => {
  t.equal(dual({}).ipv6?.subnetMin.toString(), 'fd00:10:0:101::/64', 'default: the second subnet, as flannel');
  t.equal(dual({}).ipv6?.subnetMax.toString(), 'fd00:10:0:1ff::/64', 'default: the last subnet');
  t.equal(dual({ IPv6Network: 'ffff:ffff:ffff:ff00::/56' }).ipv6?.subnetMax.toString(), 'ffff:ffff:ffff:ffff::/64', 'the last subnet of the address space');
  t.equal(dual({ IPv6SubnetMin: 'fd00:10:0:110::' }).ipv6?.subnetMin.toString(), 'fd00:10:0:110::/64', 'flannel writes a bare address');
  t.equal(dual({ IPv6SubnetMax: 'fd00:10:0:120::/64' }).ipv6?.subnetMax.toString(), 'fd00:10:0:120::/64', 'a CIDR of IPv6SubnetLen');
  t.equal(dual({ IPv6SubnetLen: 60, IPv6SubnetMin: 'fd00:10:0:110::' }).ipv6?.subnetMin.toString(), 'fd00:10:0:110::/60', 'alignment follows IPv6SubnetLen');
  rejectsDoc(t, { ...v4, EnableIPv6: true, IPv6Network: 'fd00:10:0:100::/56', IPv6SubnetMin: 'fd00:10:0:200::' }, /^net-conf: IPv6SubnetMin fd00:10:0:200:: is outside IPv6Network fd00:10:0:100::\/56$/);
  rejectsDoc(t, { ...v4, EnableIPv6: true, IPv6Network: 'fd00:10:0:100::/56', IPv6SubnetMax: '10.5.1.0' }, /IPv6SubnetMax 10\.5\.1\.0 is outside IPv6Network/, 'an IPv4 address');
  rejectsDoc(t, { ...v4, EnableIPv6: true, IPv6Network: 'fd00:10:0:100::/56', IPv6SubnetMin: 'fd00:10:0:110::1' }, /IPv6SubnetMin fd00:10:0:110::1 is not aligned to IPv6SubnetLen \/64 \(did you mean fd00:10:0:110::\?\)/);
  rejectsDoc(t, { ...v4, EnableIPv6: true, IPv6Network: 'fd00:10:0:100::/56', IPv6SubnetMax: 'fd00:10:0:120::/80' }, /IPv6SubnetMax "fd00:10:0:120::\/80" is a \/80, not a \/64 \(IPv6SubnetLen\)/);
  rejectsDoc(t, { ...v4, EnableIPv6: true, IPv6Network: 'fd00:10:0:100::/56', IPv6SubnetMin: 'first' }, /IPv6SubnetMin "first" is not an IP address/);
  rejectsDoc(
    t,
    { ...v4, EnableIPv6: true, IPv6Network: 'fd00:10:0:100::/56', IPv6SubnetMin: 'fd00:10:0:120::', IPv6SubnetMax: 'fd00:10:0:110::' },
    /^net-conf: IPv6SubnetMin fd00:10:0:120::\/64 is above IPv6SubnetMax fd00:10:0:110::\/64: no subnet left to lease$/,
  );
  rejectsDoc(t, { ...v4, EnableIPv6: true, IPv6Network: 'fd00:10:0:100::/56', IPv6SubnetMax: 'fd00:10:0:100::' }, /IPv6SubnetMin fd00:10:0:101::\/64 \(the default: the first subnet is skipped\) is above IPv6SubnetMax/);
  t.equal(dual({ SubnetMin: '10.5.9.0' }).ipv6?.subnetMin.toString(), 'fd00:10:0:101::/64', 'SubnetMin is the IPv4 side\'s only');
});

t.test('IPv6-only (EnableIPv4 false): the IPv6 range is the primary one', async (t) => {
  const only = conf({ EnableIPv4: false, EnableIPv6: true, IPv6Network: 'fd00:10:0:100::/56', Backend: hostGw });
  t.same([only.network.toString(), only.subnetLen, only.subnetMin.toString(), only.ipv6], ['fd00:10:0:100::/56', 64, 'fd00:10:0:101::/64', undefined]);
  t.doesNotThrow(() => checkBackendOptions({ ...only, backend: { type: 'bgp', raw: {} } }), 'bgp runs IPv6-only');
});

t.test('IPv6 runs on every backend; a bgp address of a family the cluster does not run is refused in one line', async (t) => {
  t.ok(checkBackendOptions(dual({ Backend: { Type: 'vxlan' } })).ipv6, 'vxlan runs dual-stack');
  t.ok(checkBackendOptions(dual({ Backend: { Type: 'bgp', AllowedPrefixes: ['2001:db8:ff::/48'] } })).ipv6, 'bgp runs dual-stack, with an IPv6 allowed prefix');
  const refusal = /^net-conf: Backend\.AllowedPrefixes\[0\] 2001:db8:ff::\/48 is IPv6, a family the cluster does not run; set EnableIPv6 and IPv6Network to run IPv6, or remove it$/;
  t.throws(() => checkBackendOptions(conf({ Network: '10.5.0.0/16', Backend: { Type: 'bgp', AllowedPrefixes: ['2001:db8:ff::/48'] } })), { message: refusal });
});

t.test('Backend', async (t) => {
  const net = { Network: '10.5.0.0/16' };
  rejectsDoc(t, net, /Backend is required/);
  rejectsDoc(t, { ...net, Backend: 'host-gw' }, /Backend must be an object, got string/);
  rejectsDoc(t, { ...net, Backend: [hostGw] }, /Backend must be an object, got an array/);
  rejectsDoc(t, { ...net, Backend: null }, /Backend must be an object, got null/);
  rejectsDoc(t, { ...net, Backend: {} }, /Backend\.Type is required; one of host-gw, vxlan, udp, bgp/);
  rejectsDoc(t, { ...net, Backend: { Type: 1 } }, /Backend\.Type must be a string, got number/);
  rejectsDoc(t, { ...net, Backend: { Type: 'ipip' } }, /Backend\.Type "ipip" is not a known backend; use one of host-gw, vxlan, udp, bgp/);
  rejectsDoc(t, { ...net, Backend: { Type: 'HOST-GW' } }, /Backend\.Type "HOST-GW" is not a known backend/);
  rejectsDoc(t, { ...net, Backend: { Type: 'host-gw', DirectRouting: true } }, /unknown key "Backend\.DirectRouting": host-gw takes no options besides Type/);
});

t.test('backend keys are checked by the backend\'s own parser, through the registry', async (t) => {
  const text = JSON.stringify({ Network: '10.5.0.0/16', Backend: { Type: 'host-gw', Port: 1 } });
  const parsed = parseNetConf(text);
  t.same(parsed.backend.raw, { Port: 1 }, 'the core parser keeps the Backend section for the backend');
  t.throws(() => checkBackendOptions(parsed), { name: 'ConfigError', message: /Backend\.Port/ }, 'the registry runs host-gw\'s parser on it');
  const gw = conf({ Network: '10.5.0.0/16', Backend: hostGw });
  t.equal(checkBackendOptions(gw), gw, 'a valid config passes through unchanged');
});

t.test('loadNetConfFile', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'weftcfg-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const good = join(dir, 'good.json');
  writeFileSync(good, JSON.stringify({ Network: '10.5.0.0/16', Backend: hostGw }));
  t.equal(loadNetConfFile(good).network.toString(), '10.5.0.0/16');

  const missing = join(dir, 'missing.json');
  t.throws(() => loadNetConfFile(missing), {
    name: 'WeftError',
    message: `net-conf file ${missing} does not exist; pass the path of your net-conf.json`,
  });
  t.throws(() => loadNetConfFile(dir), { name: 'WeftError', message: /is a directory/ });

  const big = join(dir, 'big.json');
  writeFileSync(big, Buffer.alloc(1024 * 1024, 0x20));
  t.throws(() => loadNetConfFile(big), { name: 'ConfigError', message: /larger than the 64 KiB limit/ });

  const latin1 = join(dir, 'latin1.json');
  writeFileSync(latin1, Buffer.from([0x7b, 0xe9, 0x7d]));
  t.throws(() => loadNetConfFile(latin1), { name: 'ConfigError', message: /is not UTF-8 text/ });

  const bad = join(dir, 'bad.json');
  writeFileSync(bad, '{"Network": "10.5.0.0/16", "SubnetLen": 33, "Backend": {"Type": "host-gw"}}');
  t.throws(() => loadNetConfFile(bad), new ConfigError('SubnetLen 33 is longer than /30'));

  const locked = join(dir, 'locked.json');
  writeFileSync(locked, '{}');
  chmodSync(locked, 0o000);
  if (process.getuid?.() === 0) {
    t.comment('running as root: the permission-denied case cannot be produced');
  } else {
    t.throws(() => loadNetConfFile(locked), { name: 'WeftError', message: /permission denied/ });
  }
});

/** Runs `weft config ...` in-process, collecting what it writes to stdout/stderr. */
async function runCli(argv: string[]): Promise<{ code: number | undefined; out: string; err: string; error?: unknown }> {
  let out = '';
  let err = '';
  const stdoutWrite = process.stdout.write;
  const stderrWrite = process.stderr.write;
  process.stdout.write = ((chunk: string) => ((out += chunk), true)) as typeof process.stdout.write;
  process.stderr.write = ((chunk: string) => ((err += chunk), true)) as typeof process.stderr.write;
  try {
    return { code: await runConfigCommand(argv), out, err };
  } catch (error) {
    return { code: undefined, out, err, error };
  } finally {
    process.stdout.write = stdoutWrite;
    process.stderr.write = stderrWrite;
  }
}

t.test('weft config validate / put', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'weftcfg-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const good = join(dir, 'net-conf.json');
  writeFileSync(good, JSON.stringify({ Network: '10.5.0.0/16', SubnetMax: '10.5.9.0', Backend: { Type: 'vxlan' } }));
  const bad = join(dir, 'bad.json');
  writeFileSync(bad, JSON.stringify({ Network: '10.5.0.0/16', SubnetLen: 33, Backend: hostGw }));

  const ok = await runCli(['validate', good]);
  t.equal(ok.code, 0);
  t.equal(ok.out, `${good}: ok: Network 10.5.0.0/16, SubnetLen 24, subnets 10.5.1.0/24..10.5.9.0/24 (9 leasable), backend vxlan\n`);

  const invalid = await runCli(['validate', bad]);
  t.type(invalid.error, ConfigError, 'the CLI entry prints it as one line and exits 1');
  t.equal((invalid.error as Error).message, 'net-conf: SubnetLen 33 is longer than /30');

  const help = await runCli(['validate', '--help']);
  t.equal(help.code, 0);
  t.match(help.out, /usage: weft config validate FILE/);
  t.match((await runCli(['put', '--help'])).out, /--etcd-endpoints/);
  t.match((await runCli(['--help'])).out, /validate.*\n.*put/);

  const noFile = await runCli(['validate']);
  t.equal(noFile.code, 2);
  t.match(noFile.err, /expected one FILE, got 0/);
  const badFlag = await runCli(['validate', '--bogus', good]);
  t.equal(badFlag.code, 2);
  t.match(badFlag.err, /Unknown option '--bogus'/);
  t.equal((await runCli(['frobnicate'])).code, 2);
  t.equal((await runCli([])).code, 2);

  const notWritten = await runCli(['put', '--etcd-endpoints', 'http://127.0.0.1:1', bad]);
  t.type(notWritten.error, ConfigError, 'an invalid file is refused before etcd is contacted');

  // Port 1 on loopback: nothing listens, the connection is refused at once.
  const unreachable = await runCli(['put', '--etcd-endpoints', 'http://127.0.0.1:1', '--etcd-prefix', '/coreos.com/network', good]);
  t.type(unreachable.error, WeftError);
  const msg = (unreachable.error as Error).message;
  t.notMatch(msg, /\n/);
  t.match(msg, /^cannot write \/coreos\.com\/network\/config to etcd at http:\/\/127\.0\.0\.1:1 \(.+\); check that etcd is running and --etcd-endpoints/);

  const dualStack = join(dir, 'dual-stack.json');
  writeFileSync(dualStack, JSON.stringify({ Network: '10.5.0.0/16', EnableIPv6: true, IPv6Network: 'fd00:10::/56', Backend: hostGw }));
  const v6 = await runCli(['validate', dualStack]);
  t.equal(v6.error, undefined, 'validate accepts dual-stack host-gw');
  writeFileSync(dualStack, JSON.stringify({ Network: '10.5.0.0/16', Backend: { Type: 'bgp', ExternalPeers: [{ PeerIP: '2001:db8::1', ASN: 65000 }] } }));
  const v6Put = await runCli(['put', '--etcd-endpoints', 'http://127.0.0.1:1', dualStack]);
  t.type(v6Put.error, ConfigError, 'put refuses an IPv6 bgp peer in an IPv4-only cluster before etcd is contacted');

  const badEndpoint = await runCli(['put', '--etcd-endpoints', 'localhost:2379', good]);
  t.match((badEndpoint.error as Error).message, /bad etcd endpoint "localhost:2379"/);
});
