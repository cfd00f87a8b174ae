// The bgp backend's Backend keys: defaults, and one clear line for every bad value.
import t from 'tap';
import { parseBgpOptions } from '../../backends/bgp/options.js';
import { parseNetConf } from '../../src/config/parse.js';

t.test('defaults: AS 64512, full mesh, no external peers, tuned timers', async (t) => {
  const o = parseBgpOptions({});
  t.equal(o.asn, 64512);
  t.equal(o.topology, 'mesh');
  t.same(o.routeReflectors, []);
  t.same(o.externalPeers, []);
  t.same(o.allowedPrefixes, []);
  t.same(o.timers, { holdTime: 30, keepaliveTime: 10, connectRetryTime: 5 });
});

t.test('ASN: range 1..4294967295 without 0 and AS_TRANS', async (t) => {
  t.equal(parseBgpOptions({ ASN: 1 }).asn, 1);
  t.equal(parseBgpOptions({ ASN: 4294967295 }).asn, 4294967295);
  t.equal(parseBgpOptions({ ASN: '4200000000' }).asn, 4200000000);
  t.throws(() => parseBgpOptions({ ASN: 0 }), { name: 'ConfigError', message: /Backend\.ASN 0 is reserved/ });
  t.throws(() => parseBgpOptions({ ASN: 4294967296 }), { message: /Backend\.ASN 4294967296 is out of range 1\.\.4294967295/ });
  t.throws(() => parseBgpOptions({ ASN: 23456 }), { message: /Backend\.ASN 23456 is AS_TRANS/ });
  t.throws(() => parseBgpOptions({ ASN: -1 }), { message: /out of range/ });
  t.throws(() => parseBgpOptions({ ASN: 1.5 }), { message: /Backend\.ASN must be an integer/ });
  t.throws(() => parseBgpOptions({ ASN: '64512x' }), { message: /Backend\.ASN must be an integer/ });
});

t.test('Topology and RouteReflectors', async (t) => {
  const o = parseBgpOptions({ Topology: 'reflectors', RouteReflectors: ['node-a', '198.51.100.2'] });
  t.same(o.routeReflectors, ['node-a', '198.51.100.2']);
  t.equal(parseBgpOptions({ RouteReflectors: ['a', 'b'] }).topology, 'reflectors', 'a reflector list implies the topology');
  t.throws(() => parseBgpOptions({ Topology: 'star' }), { message: /Backend\.Topology "star" is not one of "mesh", "reflectors"/ });
  t.throws(() => parseBgpOptions({ Topology: 'reflectors' }), { message: /Backend\.RouteReflectors is required/ });
  t.throws(() => parseBgpOptions({ Topology: 'reflectors', RouteReflectors: [] }), { message: /RouteReflectors is empty/ });
  t.throws(() => parseBgpOptions({ Topology: 'mesh', RouteReflectors: ['a'] }), { message: /set but Topology is "mesh"/ });
  t.throws(() => parseBgpOptions({ RouteReflectors: ['a', 'A'] }), { message: /lists "A" twice/ });
  t.throws(() => parseBgpOptions({ RouteReflectors: ['10.0.0.1', '10.0.0.1'] }), { message: /twice/ });
  t.throws(() => parseBgpOptions({ RouteReflectors: ['bad name!'] }), { message: /RouteReflectors\[0\] "bad name!" is neither an IP address nor a node name/ });
  t.throws(() => parseBgpOptions({ RouteReflectors: 'a' }), { message: /must be an array of strings/ });
});

t.test('ClusterID: IPv4 form, reflectors only, default from the ASN', async (t) => {
  t.equal(parseBgpOptions({ RouteReflectors: ['a'], ClusterID: '10.0.0.1' }).clusterID, '10.0.0.1');
  t.equal(parseBgpOptions({ RouteReflectors: ['a'], ASN: 64512 }).clusterID, '0.0.252.0');
  t.throws(() => parseBgpOptions({ RouteReflectors: ['a'], ClusterID: 'fd00::1' }), { message: /ClusterID "fd00::1" must be in IPv4 dotted form/ });
  t.throws(() => parseBgpOptions({ RouteReflectors: ['a'], ClusterID: '0.0.0.0' }), { message: /not a valid cluster id/ });
  t.throws(() => parseBgpOptions({ ClusterID: '10.0.0.1' }), { message: /applies to Topology "reflectors" only/ });
});

t.test('ExternalPeers', async (t) => {
  const o = parseBgpOptions({ ExternalPeers: [{ PeerIP: '198.51.100.254', ASN: 65000, Password: 'a\\b c' }] });
  t.equal(o.externalPeers[0]?.peerIP.toString(), '198.51.100.254');
  t.equal(o.externalPeers[0]?.asn, 65000);
  t.equal(o.externalPeers[0]?.password, 'a\\b c', 'a backslash is literal in BIRD strings and kept');
  t.throws(() => parseBgpOptions({ ExternalPeers: [{ PeerIP: '198.51.100.254', ASN: 65000 }, { PeerIP: '198.51.100.254', ASN: 65001 }] }), {
    message: /Backend\.ExternalPeers lists PeerIP 198\.51\.100\.254 twice/,
  });
  t.throws(() => parseBgpOptions({ ExternalPeers: [{ PeerIP: '198.51.100.254' }] }), { message: /ExternalPeers\[0\]\.ASN is required/ });
  t.throws(() => parseBgpOptions({ ExternalPeers: [{ PeerIP: '198.51.100.254', ASN: 0 }] }), { message: /ExternalPeers\[0\]\.ASN 0 is reserved/ });
  t.throws(() => parseBgpOptions({ ExternalPeers: [{ PeerIP: 'tor1', ASN: 65000 }] }), { message: /PeerIP "tor1" is not an IP address/ });
  t.throws(() => parseBgpOptions({ ExternalPeers: [{ PeerIP: '0.0.0.0', ASN: 65000 }] }), { message: /unspecified address/ });
  t.throws(() => parseBgpOptions({ ExternalPeers: [{ PeerIP: '198.51.100.254', ASN: 65000, Pass: 'x' }] }), { message: /unknown key "Backend\.ExternalPeers\[0\]\.Pass"/ });
  t.throws(() => parseBgpOptions({ ExternalPeers: {} }), { message: /must be an array/ });
});

t.test('passwords BIRD cannot carry are refused, not mangled', async (t) => {
  const peer = (Password: string) => ({ ExternalPeers: [{ PeerIP: '198.51.100.254', ASN: 65000, Password }] });
  t.throws(() => parseBgpOptions(peer('a"; } protocol kernel evil { "')), { message: /Password contains a double quote/ });
  t.throws(() => parseBgpOptions(peer('line1\nline2')), { message: /printable ASCII/ });
  t.throws(() => parseBgpOptions(peer('tab\there')), { message: /printable ASCII/ });
  t.throws(() => parseBgpOptions(peer('')), { message: /is empty/ });
  t.throws(() => parseBgpOptions(peer('x'.repeat(81))), { message: /at most 80/ });
  t.equal(parseBgpOptions(peer('x'.repeat(80))).externalPeers[0]?.password?.length, 80);
});

t.test('AllowedPrefixes', async (t) => {
  t.same(parseBgpOptions({ AllowedPrefixes: ['203.0.113.0/24', '0.0.0.0/0'] }).allowedPrefixes.map(String), ['203.0.113.0/24', '0.0.0.0/0']);
  t.throws(() => parseBgpOptions({ AllowedPrefixes: ['203.0.113.1/24'] }), { message: /AllowedPrefixes\[0\]: .*host bits set/ });
  t.throws(() => parseBgpOptions({ AllowedPrefixes: ['203.0.113.0/24', '203.0.113.0/24'] }), { message: /lists 203\.0\.113\.0\/24 twice/ });
  t.throws(() => parseBgpOptions({ AllowedPrefixes: [24] }), { message: /AllowedPrefixes\[0\] must be a string/ });
});

t.test('timers', async (t) => {
  t.same(parseBgpOptions({ HoldTime: 9 }).timers, { holdTime: 9, keepaliveTime: 3, connectRetryTime: 5 });
  t.same(parseBgpOptions({ HoldTime: 3 }).timers.keepaliveTime, 1);
  t.throws(() => parseBgpOptions({ HoldTime: 2 }), { message: /Backend\.HoldTime 2 is out of range 3\.\.3600/ });
  t.throws(() => parseBgpOptions({ HoldTime: 9, KeepaliveTime: 9 }), { message: /KeepaliveTime 9 must be shorter than HoldTime 9/ });
  t.throws(() => parseBgpOptions({ ConnectRetryTime: 0 }), { message: /ConnectRetryTime 0 is out of range/ });
});

t.test('unknown keys name the key and suggest the spelling', async (t) => {
  t.throws(() => parseBgpOptions({ Asn: 64512 }), { name: 'ConfigError', message: /unknown key "Backend\.Asn" \(did you mean "Backend\.ASN"\?\)/ });
});

t.test('families: IPv6 prefixes and peers are taken with EnableIPv6; an entry of a family the cluster does not run is one clear line', async (t) => {
  const v4 = parseNetConf(JSON.stringify({ Network: '10.5.0.0/16', Backend: { Type: 'bgp' } }));
  const dual = parseNetConf(JSON.stringify({ Network: '10.5.0.0/16', EnableIPv6: true, IPv6Network: '2001:db8:1000::/56', Backend: { Type: 'bgp' } }));
  const raw = {
    ExternalPeers: [{ PeerIP: '198.51.100.254', ASN: 65000 }, { PeerIP: '2001:db8::254', ASN: 65000 }],
    AllowedPrefixes: ['203.0.113.0/24', '2001:db8:ff::/48'],
  };
  const o = parseBgpOptions(raw, dual);
  t.same(o.allowedPrefixes.map(String), ['203.0.113.0/24', '2001:db8:ff::/48'], 'an IPv6 prefix is accepted in a dual-stack cluster');
  t.same(o.externalPeers.map((p) => p.peerIP.toString()), ['198.51.100.254', '2001:db8::254']);
  t.throws(() => parseBgpOptions({ AllowedPrefixes: ['203.0.113.0/24', '2001:db8:ff::/48'] }, v4), {
    name: 'ConfigError',
    message: 'net-conf: Backend.AllowedPrefixes[1] 2001:db8:ff::/48 is IPv6, a family the cluster does not run; set EnableIPv6 and IPv6Network to run IPv6, or remove it',
  });
  t.throws(() => parseBgpOptions({ ExternalPeers: [{ PeerIP: '2001:db8::254', ASN: 65000 }] }, v4), { message: /ExternalPeers\[0\]\.PeerIP 2001:db8::254 is IPv6, a family the cluster does not run/ });
  t.throws(() => parseBgpOptions({ RouteReflectors: ['n1', '2001:db8::1'] }, v4), { message: /RouteReflectors\[1\] 2001:db8::1 is IPv6, a family the cluster does not run/ });
  t.throws(() => parseBgpOptions({ AllowedPrefixes: ['2001:db8:ff::1/48'] }, dual), { message: /AllowedPrefixes\[0\]: .*host bits set/, name: 'ConfigError' }, 'an IPv6 prefix is checked like an IPv4 one');
});
