// Pinning annotations: the forms a user writes, and hostile values, each
// refused in one line naming the annotation.
import t from 'tap';
import { Cidr, IP } from '../../src/core/cidr.js';
import { derivedMac, parseIpAnnotation, parseIpPool, parseMacAnnotation, podOrdinal, podPins, poolAddresses } from '../../src/ipam/annotations.js';
import { errorOf } from '../support/error-of.js';

const NETS = [Cidr.parse('10.244.0.0/16'), Cidr.parse('2001:db8::/32')];

t.test('weft.io/ip: one address, or one per family', async (t) => {
  t.same([parseIpAnnotation('10.244.3.17', NETS).map(String), parseIpAnnotation('10.244.3.17, 2001:db8:3::17', NETS).map(String)], [['10.244.3.17'], ['10.244.3.17', '2001:db8:3::17']]);
});

t.test('weft.io/ip: hostile values, one line each', async (t) => {
  const values = ['garbage', '', '10.244.3.17,10.244.3.18', '10.244.3.17,2001:db8::1,10.244.3.18', '10.9.9.9', '2001:db9::1', '10.244.3.017', 'fe80::1%eth0', 'x'.repeat(10_000), '10.244.3.17\n10.244.3.18'];
  const got = values.map((v) => errorOf(() => parseIpAnnotation(v, NETS)));
  t.same(got, [
    'weft.io/ip "garbage": "garbage" is not an IP address; give one address per family inside the cluster network, e.g. 10.244.3.17 or 10.244.3.17,2001:db8:3::17',
    'weft.io/ip "": "" is not an IP address; give one address per family inside the cluster network, e.g. 10.244.3.17 or 10.244.3.17,2001:db8:3::17',
    'weft.io/ip "10.244.3.17,10.244.3.18": two IPv4 addresses; give one address per family inside the cluster network, e.g. 10.244.3.17 or 10.244.3.17,2001:db8:3::17',
    'weft.io/ip "10.244.3.17,2001:db8::1,10.244.3.18": 3 addresses; give one address per family inside the cluster network, e.g. 10.244.3.17 or 10.244.3.17,2001:db8:3::17',
    'weft.io/ip "10.9.9.9": 10.9.9.9 is outside the cluster network 10.244.0.0/16; give one address per family inside the cluster network, e.g. 10.244.3.17 or 10.244.3.17,2001:db8:3::17',
    'weft.io/ip "2001:db9::1": 2001:db9::1 is outside the cluster network 2001:db8::/32; give one address per family inside the cluster network, e.g. 10.244.3.17 or 10.244.3.17,2001:db8:3::17',
    'weft.io/ip "10.244.3.017": "10.244.3.017" is not a dotted-quad IPv4 address; give one address per family inside the cluster network, e.g. 10.244.3.17 or 10.244.3.17,2001:db8:3::17',
    'weft.io/ip "fe80::1%eth0": "fe80::1%eth0" has a zone (%...); give the address alone; give one address per family inside the cluster network, e.g. 10.244.3.17 or 10.244.3.17,2001:db8:3::17',
    `weft.io/ip "${'x'.repeat(64)}..." (10000 characters): longer than 256 characters; give one address per family inside the cluster network, e.g. 10.244.3.17 or 10.244.3.17,2001:db8:3::17`,
    'weft.io/ip "10.244.3.17\\n10.244.3.18": "10.244.3.17\n10.244.3.18" is not an IP address; give one address per family inside the cluster network, e.g. 10.244.3.17 or 10.244.3.17,2001:db8:3::17',
  ]);
});

t.test('weft.io/ip: a family the cluster lacks', async (t) => {
  t.equal(errorOf(() => parseIpAnnotation('2001:db8::5', [Cidr.parse('10.244.0.0/16')])),
    'weft.io/ip "2001:db8::5": 2001:db8::5 is IPv6 but the cluster has no IPv6 network; give one address per family inside the cluster network, e.g. 10.244.3.17 or 10.244.3.17,2001:db8:3::17');
});

t.test('weft.io/mac: unicast, locally administered or not, in lower case', async (t) => {
  t.same([parseMacAnnotation('02:42:0A:F4:03:11'), parseMacAnnotation('00:16:3e:00:00:01')], ['02:42:0a:f4:03:11', '00:16:3e:00:00:01']);
});

t.test('weft.io/mac: hostile values', async (t) => {
  const values = ['01:00:5e:00:00:01', 'ff:ff:ff:ff:ff:ff', '00:00:00:00:00:00', '02-42-0a-f4-03-11', '02:42:0a:f4:03', '02:42:0a:f4:03:11:22', 'zz:42:0a:f4:03:11', ''];
  const causes = values.map((v) => errorOf(() => parseMacAnnotation(v)).replace(/; give six .*$/, ''));
  t.same(causes, [
    'weft.io/mac "01:00:5e:00:00:01": a multicast MAC (the first octet is odd)',
    'weft.io/mac "ff:ff:ff:ff:ff:ff": a multicast MAC (the first octet is odd)',
    'weft.io/mac "00:00:00:00:00:00": the all-zero MAC',
    'weft.io/mac "02-42-0a-f4-03-11": not a MAC address',
    'weft.io/mac "02:42:0a:f4:03": not a MAC address',
    'weft.io/mac "02:42:0a:f4:03:11:22": not a MAC address',
    'weft.io/mac "zz:42:0a:f4:03:11": not a MAC address',
    'weft.io/mac "": not a MAC address',
  ]);
});

t.test('weft.io/ip-pool: ranges and lists, each family numbered on its own', async (t) => {
  const pool = parseIpPool('10.244.3.10-10.244.3.12,10.244.3.20,2001:db8:3::a-2001:db8:3::f', NETS);
  t.same([0, 2, 3].map((i) => poolAddresses(pool, i).map(String)), [
    ['10.244.3.10', '2001:db8:3::a'],
    ['10.244.3.12', '2001:db8:3::c'],
    ['10.244.3.20', '2001:db8:3::d'],
  ]);
});

t.test('weft.io/ip-pool: an ordinal beyond the pool', async (t) => {
  const value = '10.244.3.10-10.244.3.11';
  t.equal(errorOf(() => poolAddresses(parseIpPool(value, NETS), 2, value)),
    'weft.io/ip-pool "10.244.3.10-10.244.3.11": ordinal 2 is beyond its 2 IPv4 addresses; add addresses to the pool or scale the StatefulSet down');
});

t.test('weft.io/ip-pool: hostile values', async (t) => {
  const values = ['', '10.244.3.12-10.244.3.10', '10.244.3.10-2001:db8::1', '10.244.3.10-10.245.0.1', '10.0.0.0-10.0.0.9', '10.244.0.0-10.244.255.255,2001:db8::-2001:db8::1:0', '10.244.3.10-10.244.3.20,10.244.3.15', 'a-b', '1'.repeat(20_000), '2001:db8::-2001:db8:0:0:1::'];
  const causes = values.map((v) => errorOf(() => parseIpPool(v, NETS)).replace(/; (give addresses or first-last|list each|give the StatefulSet).*$/, ''));
  t.same(causes, [
    'weft.io/ip-pool "": empty',
    'weft.io/ip-pool "10.244.3.12-10.244.3.10": range 10.244.3.12-10.244.3.10 ends before it starts',
    'weft.io/ip-pool "10.244.3.10-2001:db8::1": range 10.244.3.10-2001:db8::1 mixes IPv4 and IPv6',
    'weft.io/ip-pool "10.244.3.10-10.245.0.1": range 10.244.3.10-10.245.0.1 leaves the cluster network',
    'weft.io/ip-pool "10.0.0.0-10.0.0.9": 10.0.0.0 is outside the cluster network 10.244.0.0/16',
    'weft.io/ip-pool "10.244.0.0-10.244.255.255,2001:db8::-2001:db8::1:0": more than 65536 IPv6 addresses',
    'weft.io/ip-pool "10.244.3.10-10.244.3.20,10.244.3.15": 10.244.3.15 repeats addresses listed before',
    'weft.io/ip-pool "a-b": "a" is not an IP address',
    `weft.io/ip-pool "${'1'.repeat(64)}..." (20000 characters): longer than 16384 characters`,
    'weft.io/ip-pool "2001:db8::-2001:db8:0:0:1::": more than 65536 IPv6 addresses',
  ]);
});

t.test('a pod ordinal from the pod-index label, else the name', async (t) => {
  t.same([podOrdinal('web-3'), podOrdinal('web-3', { 'apps.kubernetes.io/pod-index': '7' }), podOrdinal('web'), podOrdinal('web-99999999999')], [3, 7, undefined, undefined]);
});

t.test('podPins: a StatefulSet pod takes its ordinal\'s pool address', async (t) => {
  const pins = podPins({ name: 'db-1', annotations: { 'weft.io/ip-pool': '10.244.3.10-10.244.3.19' } }, NETS);
  t.same(pins, { addresses: [IP.parse('10.244.3.11')] });
});

t.test('podPins: weft.io/mac beside a pool is refused (every pod of the StatefulSet would share it)', async (t) => {
  t.equal(
    errorOf(() => podPins({ name: 'db-1', annotations: { 'weft.io/ip-pool': '10.244.3.10-10.244.3.19', 'weft.io/mac': '02:00:00:00:00:01' } }, NETS)),
    'weft.io/mac "02:00:00:00:00:01": the pod also carries weft.io/ip-pool, so every pod of its StatefulSet would share one MAC; remove weft.io/mac: each pool address gets its own MAC derived from it',
  );
});

t.test('derivedMac: 0a:58 and the IPv4 octets, else the low 32 bits of the IPv6 pin; none without a pin', async (t) => {
  const of = (...ips: string[]) => derivedMac(ips.map((i) => IP.parse(i)));
  t.same(
    [of('10.244.3.17'), of('2001:db8:3::17', '10.244.3.17'), of('2001:db8:3::a:ff01'), of('255.255.255.255'), of()],
    ['0a:58:0a:f4:03:11', '0a:58:0a:f4:03:11', '0a:58:00:0a:ff:01', '0a:58:ff:ff:ff:ff', undefined],
  );
});

t.test('derivedMac: a unicast MAC that weft.io/mac would accept, the same for the same address', async (t) => {
  const macs = ['10.244.3.17', '10.244.3.18', '2001:db8::1'].map((i) => derivedMac([IP.parse(i)])!);
  t.same([macs.map((m) => parseMacAnnotation(m)), new Set(macs).size, derivedMac([IP.parse('10.244.3.17')])], [macs, 3, macs[0]]);
});

t.test('podPins: no annotations pin nothing', async (t) => {
  t.same(podPins({ name: 'web-abc12' }, NETS), { addresses: [] });
});

t.test('podPins: both ip and pool, or a pool without an ordinal, are refused', async (t) => {
  t.same([
    errorOf(() => podPins({ name: 'db-0', annotations: { 'weft.io/ip': '10.244.3.5', 'weft.io/ip-pool': '10.244.3.10' } }, NETS)),
    errorOf(() => podPins({ name: 'web', annotations: { 'weft.io/ip-pool': '10.244.3.10' } }, NETS)),
  ], [
    'weft.io/ip "10.244.3.5": the pod also carries weft.io/ip-pool; keep one of the two',
    'weft.io/ip-pool "10.244.3.10": pod web has no StatefulSet ordinal; put weft.io/ip-pool on a StatefulSet\'s pod template only',
  ]);
});
