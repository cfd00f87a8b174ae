// BIRD config text for each topology: compared with golden files and parsed
// by the real `bird -p` (Debian bird2), so a config BIRD would reject fails here.
import t, { type Test } from 'tap';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { pino } from 'pino';
import type { ExternalInterface } from '../../backends/backend.js';
import { birdConfig, protocolName, type BirdConfigInput, type BirdFamily } from '../../backends/bgp/config.js';
import { NodeFamilies } from '../../backends/peers.js';
import { parseBgpOptions } from '../../backends/bgp/options.js';
import { Cidr, IP } from '../../src/core/cidr.js';
import type { Lease } from '../../src/subnet/lease.js';
import { birdParse } from './support/bird-parse.js';
import { extWithIPv6, withIPv6 } from '../support/dual-stack.js';

const GOLDEN = join(dirname(fileURLToPath(import.meta.url)), 'fixtures', 'bgp');
const UPDATE = process.env.WEFT_UPDATE_GOLDEN === '1';
const NETWORK = Cidr.parse('10.5.0.0/16');
const NETWORK6 = Cidr.parse('2001:db8:1000::/56');
const UNDERLAY = [Cidr.parse('198.51.100.0/24')];
const UNDERLAY6 = [Cidr.parse('2001:db8::/64')];
const silent = pino({ level: 'silent' });

/** Node n: 10.5.n.0/24 at 198.51.100.n; dual-stack adds 2001:db8:1000:n::/64 at 2001:db8::n. */
function lease(n: number, extra: Partial<Lease['attrs']> = {}, dual = false): Lease {
  const v4: Lease = {
    subnet: Cidr.parse(`10.5.${n}.0/24`),
    attrs: { publicIP: IP.parse(`198.51.100.${n}`), backendType: 'bgp', backendData: null, nodeName: `n${n}`, ...extra },
  };
  return dual ? withIPv6(v4, `2001:db8:1000:${n}::/64`, `2001:db8::${n}`) : v4;
}

function ext(n: number, dual: boolean, sourceIP?: IP): ExternalInterface {
  const ip = IP.parse(`198.51.100.${n}`);
  const v4: ExternalInterface = { name: 'eth0', ip: sourceIP ?? ip, publicIP: ip, mtu: 1500, connected: UNDERLAY };
  return dual ? extWithIPv6(v4, `2001:db8::${n}`, UNDERLAY6.map(String)) : v4;
}

/** The families a node runs, split as the backend splits them (NodeFamilies), each with its Network. */
function familiesOf(own: Lease, peers: readonly Lease[], iface: ExternalInterface, networks: Cidr[] = [NETWORK, NETWORK6]): BirdFamily[] {
  return new NodeFamilies(silent).views(own, peers, iface).flatMap((v) => {
    const network = networks.find((c) => c.family === v.family);
    return network ? [{ family: v.family, own: v.own, peers: v.peers, ext: v.ext, network }] : [];
  });
}

interface Shape {
  dual?: boolean;
  sourceIP?: IP;
  /** Peers built by the caller (replace peerNs). */
  peers?: Lease[];
}

function input(ownN: number, peerNs: number[], raw: Record<string, unknown>, more: Partial<BirdConfigInput> & Shape = {}): BirdConfigInput {
  const { dual = false, sourceIP, peers: given, ...rest } = more;
  const own = lease(ownN, {}, dual);
  const peers = given ?? peerNs.map((n) => lease(n, {}, dual));
  return {
    nodeName: `n${ownN}`,
    own,
    peers,
    families: familiesOf(own, peers, ext(ownN, dual, sourceIP)),
    options: parseBgpOptions(raw),
    controlSocket: '/run/weft/bird/bird.ctl',
    ...rest,
  };
}

async function golden(t: Test, name: string, text: string): Promise<void> {
  const file = join(GOLDEN, `${name}.conf`);
  if (UPDATE) await writeFile(file, text);
  const want = await readFile(file, 'utf8').catch(() => undefined);
  t.ok(want !== undefined, `golden file ${name}.conf exists (WEFT_UPDATE_GOLDEN=1 writes it)`);
  t.equal(text, want, `${name}.conf matches the generated text`);
  const parsed = await birdParse(text);
  t.ok(parsed.ok, `bird -p accepts ${name}.conf${parsed.message ? `: ${parsed.message}` : ''}`);
}

t.test('full mesh: one session per peer, the higher address passive', async (t) => {
  const cfg = birdConfig(input(2, [1, 3, 4], {}));
  t.same(
    cfg.sessions.map((s) => [s.name, s.role, s.passive]),
    [
      ['node_198_51_100_1', 'mesh', true],
      ['node_198_51_100_3', 'mesh', false],
      ['node_198_51_100_4', 'mesh', false],
    ],
  );
  // the other side of each pair does the opposite
  const n1 = birdConfig(input(1, [2, 3, 4], {}));
  t.equal(n1.sessions.find((s) => s.peer.toString() === '198.51.100.2')?.passive, false);
  t.match(cfg.text, /route 10\.5\.2\.0\/24 blackhole;/);
  t.match(cfg.text, /persist;/);
  t.notMatch(cfg.text, /rr client/);
  await golden(t, 'mesh', cfg.text);
});

const REFLECTORS = { Topology: 'reflectors', RouteReflectors: ['n1', '198.51.100.2'], ClusterID: '10.255.0.1' };

t.test('reflectors, on a reflector: meshes with reflectors, rr client to the rest', async (t) => {
  const cfg = birdConfig(input(1, [2, 3, 4, 5], REFLECTORS));
  t.same(
    cfg.sessions.map((s) => [s.name, s.role]),
    [
      ['rr_198_51_100_2', 'reflector'],
      ['client_198_51_100_3', 'rr-client'],
      ['client_198_51_100_4', 'rr-client'],
      ['client_198_51_100_5', 'rr-client'],
    ],
  );
  t.match(cfg.text, /rr client;\n\s+rr cluster id 10\.255\.0\.1;/);
  t.match(cfg.text, /filter weft_export_reflected/);
  await golden(t, 'reflector-on-reflector', cfg.text);
});

t.test('reflectors, on a client: sessions to the reflectors only', async (t) => {
  const cfg = birdConfig(input(4, [1, 2, 3, 5], REFLECTORS));
  t.same(
    cfg.sessions.map((s) => [s.name, s.role, s.passive]),
    [
      ['rr_198_51_100_1', 'reflector', true],
      ['rr_198_51_100_2', 'reflector', true],
    ],
  );
  t.notMatch(cfg.text, /rr client/);
  t.notMatch(cfg.text, /weft_export_reflected/);
  await golden(t, 'reflector-on-client', cfg.text);
});

t.test('reflectors: a lease attribute makes a node a reflector; an address no lease has is a foreign reflector', async (t) => {
  const flagged = input(4, [], { Topology: 'reflectors', RouteReflectors: ['198.51.100.200'] }, { peers: [lease(1, { backendData: { RouteReflector: true } }), lease(3)] });
  const cfg = birdConfig(flagged);
  t.same(cfg.sessions.map((s) => [s.name, s.passive]), [
    ['rr_198_51_100_1', true],
    ['rr_198_51_100_200', false],
  ]);
  const self = birdConfig(input(3, [1, 4], { Topology: 'reflectors', RouteReflectors: ['nobody-yet'] }, { selfReflector: true }));
  t.same(self.unresolvedReflectors, ['nobody-yet']);
  t.same(self.sessions.map((s) => s.role), ['rr-client', 'rr-client']);
  t.ok((await birdParse(cfg.text)).ok);
});

t.test('reflectors: a list naming no node is one clear error', async (t) => {
  t.throws(() => birdConfig(input(4, [3, 5], { Topology: 'reflectors', RouteReflectors: ['rr-a', 'rr-b'] })), {
    name: 'WeftError',
    message: /RouteReflectors \(rr-a, rr-b\) names no node in the cluster/,
  });
});

t.test('external peers: eBGP and iBGP, direct or multihop, allowed prefixes, password', async (t) => {
  const raw = {
    ExternalPeers: [
      { PeerIP: '198.51.100.254', ASN: 65000, Password: 's3cr\\et' },
      { PeerIP: '203.0.113.9', ASN: 64512 },
    ],
    AllowedPrefixes: ['203.0.113.0/24', '198.18.0.0/15'],
  };
  const cfg = birdConfig(input(1, [2, 3], raw));
  t.same(
    cfg.sessions.filter((s) => s.role === 'external').map((s) => [s.name, s.asn]),
    [
      ['ext_198_51_100_254', 65000],
      ['ext_203_0_113_9', 64512],
    ],
  );
  t.match(cfg.text, /neighbor 198\.51\.100\.254 as 65000;\n\s+direct;\n\s+password "s3cr\\et";/);
  t.match(cfg.text, /neighbor 203\.0\.113\.9 as 64512;\n\s+multihop;/);
  t.match(cfg.text, /weft_in_allowed\(\) \{ return net ~ \[ 203\.0\.113\.0\/24\+, 198\.18\.0\.0\/15\+ \]; \}/);
  await golden(t, 'external-peers', cfg.text);
});

t.test('peers that cannot get a session are skipped with a reason', async (t) => {
  const other: Lease = { ...lease(3), attrs: { ...lease(3).attrs, backendType: 'vxlan' } };
  const outside: Lease = { subnet: Cidr.parse('10.9.0.0/24'), attrs: { ...lease(4).attrs } };
  const dupIP: Lease = { subnet: Cidr.parse('10.5.7.0/24'), attrs: { ...lease(2).attrs } };
  const isExternal = lease(9);
  const peers = [lease(2), other, outside, dupIP, isExternal, lease(1)];
  const cfg = birdConfig(input(1, [], { ExternalPeers: [{ PeerIP: '198.51.100.9', ASN: 65000 }] }, { peers }));
  t.same(cfg.sessions.map((s) => s.name), ['node_198_51_100_2', 'ext_198_51_100_9']);
  t.same(cfg.skipped.map((s) => s.lease.subnet.toString()).sort(), ['10.5.3.0/24', '10.5.7.0/24', '10.5.9.0/24', '10.9.0.0/24']);
  t.equal(cfg.skipped.length, 4);
  const reasons = cfg.skipped.map((s) => s.reason).join('\n');
  for (const why of [/"vxlan" backend/, /outside the Network/, /same PublicIP/, /ExternalPeers; the external session wins/]) t.match(reasons, why);
});

t.test('filters: import only inside the Network and never the own subnet; kernel gets BGP routes only', async (t) => {
  const { text } = birdConfig(input(1, [2], {}));
  t.match(text, /function weft_in_network\(\) \{ return net ~ \[ 10\.5\.0\.0\/16\+ \]; \}/);
  t.match(text, /function weft_not_own\(\) \{ return !\(net ~ \[ 10\.5\.1\.0\/24\+ \]\); \}/);
  t.match(text, /function weft_in_allowed\(\) \{ return false; \}/);
  t.match(text, /filter weft_kernel_export \{\n\s+if source = RTS_BGP && \(weft_in_network\(\) \|\| weft_in_allowed\(\)\) && weft_not_own\(\) then accept;\n\s+reject;/);
  t.match(text, /filter weft_export_own \{\n\s+if source = RTS_STATIC && net = 10\.5\.1\.0\/24 then accept;\n\s+reject;/);
});

t.test('a source address other than the PublicIP still announces the PublicIP as next hop', async (t) => {
  const cfg = birdConfig(input(1, [2], {}, { sourceIP: IP.parse('198.51.100.101') }));
  t.match(cfg.text, /local 198\.51\.100\.101 as 64512;/);
  t.match(cfg.text, /next hop address 198\.51\.100\.1;/);
  t.ok((await birdParse(cfg.text)).ok);
});

t.test('an IPv6-only node (primary family 6) gets a valid config of its own', async (t) => {
  const v6 = (n: number): Lease => ({
    subnet: Cidr.parse(`2001:db8:1000:${n}::/64`),
    attrs: { publicIP: IP.parse(`2001:db8::${n}`), backendType: 'bgp', backendData: null },
  });
  const ip = IP.parse('2001:db8::1');
  const own = v6(1);
  const cfg = birdConfig({
    nodeName: 'v6',
    own,
    peers: [v6(2)],
    families: familiesOf(own, [v6(2)], { name: 'eth0', ip, publicIP: ip, mtu: 1500, connected: UNDERLAY6 }, [NETWORK6]),
    options: parseBgpOptions({ AllowedPrefixes: ['2001:db8:ff::/48'] }),
    controlSocket: '/run/weft/bird.ctl',
  });
  t.same(cfg.sessions.map((s) => s.name), ['node_2001_db8__2']);
  t.same(cfg.kernelProtocols, ['weft_kernel6']);
  t.match(cfg.text, /router id 0\.0\.0\.1;/);
  t.notMatch(cfg.text, /ipv4/, 'no IPv4 channel anywhere');
  const parsed = await birdParse(cfg.text);
  t.ok(parsed.ok, parsed.message);
});

/** The IPv4 part of a config: from its family header to the next family's (or the end). */
function ipv4Part(text: string): string {
  const from = text.indexOf('# ---- IPv4');
  const to = text.indexOf('# ---- IPv6');
  return text.slice(from, to < 0 ? undefined : to).trimEnd();
}

t.test('dual-stack mesh: a session per peer and family, between the addresses of that family', async (t) => {
  const cfg = birdConfig(input(2, [1, 3], {}, { dual: true }));
  t.same(
    cfg.sessions.map((s) => [s.name, s.peer.toString(), s.passive]),
    [
      ['node_198_51_100_1', '198.51.100.1', true],
      ['node_198_51_100_3', '198.51.100.3', false],
      ['node_2001_db8__1', '2001:db8::1', true],
      ['node_2001_db8__3', '2001:db8::3', false],
    ],
  );
  t.same(cfg.kernelProtocols, ['weft_kernel', 'weft_kernel6']);
  t.match(cfg.text, /protocol bgp node_2001_db8__1 from weft_mesh6 \{\n\s+neighbor 2001:db8::1 as 64512;\n\s+direct;\n\s+passive on;/);
  t.match(cfg.text, /template bgp weft_peer6 \{\n\s+local 2001:db8::2 as 64512;/);
  t.match(cfg.text, /function weft_in_network6\(\) \{ return net ~ \[ 2001:db8:1000::\/56\+ \]; \}/);
  t.match(cfg.text, /protocol static weft_own_subnet6 \{\n\s+ipv6;\n\s+route 2001:db8:1000:2::\/64 blackhole;/);
  t.match(cfg.text, /protocol kernel weft_kernel6 \{\n\s+ipv6 \{[^}]*\};\n\s+learn;\n[^}]*persist;/, 'IPv6 routes persist in the kernel too');
  t.match(cfg.text, /router id 198\.51\.100\.2;/, 'the router id stays the IPv4 address');
  t.match(cfg.text, /^# Routed prefixes: 10\.5\.0\.0\/16 2001:db8:1000::\/56$/m);
  // Turning IPv6 on leaves every IPv4 protocol as it was, so BIRD keeps those sessions up through the reconfigure.
  t.equal(ipv4Part(cfg.text), ipv4Part(birdConfig(input(2, [1, 3], {})).text), 'the IPv4 part is the IPv4-only config, to the byte');
  await golden(t, 'mesh-dualstack', cfg.text);
});

t.test('dual-stack: a peer without an IPv6 half gets an IPv4 session only', async (t) => {
  const cfg = birdConfig(input(1, [], {}, { dual: true, peers: [lease(2, {}, true), lease(3)] }));
  t.same(cfg.sessions.map((s) => s.name), ['node_198_51_100_2', 'node_198_51_100_3', 'node_2001_db8__2']);
});

const REFLECTORS_V4 = { Topology: 'reflectors', RouteReflectors: ['n1', '198.51.100.2'], ClusterID: '10.255.0.1' };

t.test('dual-stack reflectors: a node listed by name or by its IPv4 address reflects in both families', async (t) => {
  const client = birdConfig(input(4, [1, 2, 3], REFLECTORS_V4, { dual: true }));
  t.same(
    client.sessions.map((s) => [s.name, s.role]),
    [
      ['rr_198_51_100_1', 'reflector'],
      ['rr_198_51_100_2', 'reflector'],
      ['rr_2001_db8__1', 'reflector'],
      ['rr_2001_db8__2', 'reflector'],
    ],
  );
  await golden(t, 'reflector-dualstack-client', client.text);
  const reflector = birdConfig(input(2, [1, 3, 4], REFLECTORS_V4, { dual: true }));
  t.same(
    reflector.sessions.filter((s) => s.peer.family === 6).map((s) => [s.name, s.role]),
    [
      ['rr_2001_db8__1', 'reflector'],
      ['client_2001_db8__3', 'rr-client'],
      ['client_2001_db8__4', 'rr-client'],
    ],
  );
  t.match(reflector.text, /template bgp weft_rr_client6 from weft_peer6 \{\n\s+rr client;\n\s+rr cluster id 10\.255\.0\.1;/);
  t.match(reflector.text, /filter weft_export_reflected6 \{/);
  await golden(t, 'reflector-dualstack-reflector', reflector.text);
});

t.test('dual-stack reflectors: a reflector without IPv6 leaves IPv6 unrouted with a reason, IPv4 as before', async (t) => {
  const peers = [lease(1), lease(2, {}, true)];
  const cfg = birdConfig(input(4, [], { Topology: 'reflectors', RouteReflectors: ['n1'] }, { dual: true, peers }));
  t.same(cfg.sessions.map((s) => s.name), ['rr_198_51_100_1']);
  t.same(cfg.kernelProtocols, ['weft_kernel']);
  t.match(cfg.familyProblems.join('\n'), /^IPv6: bgp: Backend\.RouteReflectors \(n1\) names no node in the cluster with an IPv6 address/);
  t.ok((await birdParse(cfg.text)).ok);
});

t.test('dual-stack reflectors: gobgpd-style foreign reflectors, one address per family', async (t) => {
  const cfg = birdConfig(input(3, [1, 2], { Topology: 'reflectors', RouteReflectors: ['198.51.100.254', '2001:db8::254'] }, { dual: true }));
  t.same(cfg.sessions.map((s) => [s.name, s.passive]), [
    ['rr_198_51_100_254', false],
    ['rr_2001_db8__254', false],
  ]);
  t.ok((await birdParse(cfg.text)).ok);
});

t.test('dual-stack external peers: each family peers with its own ToR address and accepts its own AllowedPrefixes', async (t) => {
  const raw = {
    ExternalPeers: [
      { PeerIP: '198.51.100.254', ASN: 65000, Password: 'rack-7' },
      { PeerIP: '2001:db8::254', ASN: 65000, Password: 'rack-7' },
    ],
    AllowedPrefixes: ['203.0.113.0/24', '2001:db8:ff::/48'],
  };
  const cfg = birdConfig(input(1, [2], raw, { dual: true }));
  t.same(
    cfg.sessions.filter((s) => s.role === 'external').map((s) => s.name),
    ['ext_198_51_100_254', 'ext_2001_db8__254'],
  );
  t.match(cfg.text, /function weft_in_allowed\(\) \{ return net ~ \[ 203\.0\.113\.0\/24\+ \]; \}/);
  t.match(cfg.text, /function weft_in_allowed6\(\) \{ return net ~ \[ 2001:db8:ff::\/48\+ \]; \}/);
  t.match(cfg.text, /protocol bgp ext_2001_db8__254 from weft_peer6 \{\n\s+neighbor 2001:db8::254 as 65000;\n\s+direct;\n\s+password "rack-7";\n\s+ipv6 \{\n\s+import filter weft_import_external6;\n\s+export filter weft_export_own6;\n\s+next hop self;/);
  t.match(cfg.text, /^# Routed prefixes: 10\.5\.0\.0\/16 2001:db8:1000::\/56 203\.0\.113\.0\/24 2001:db8:ff::\/48$/m);
  await golden(t, 'external-peers-dualstack', cfg.text);
});

t.test('dual-stack: an IPv6 source address other than PublicIPv6 announces PublicIPv6 as next hop', async (t) => {
  const i = input(1, [2], {}, { dual: true });
  const families = i.families.map((f) => (f.family === 6 ? { ...f, ext: { ...f.ext, ip: IP.parse('2001:db8::101') } } : f));
  const cfg = birdConfig({ ...i, families });
  t.match(cfg.text, /local 2001:db8::101 as 64512;/);
  t.match(cfg.text, /next hop address 2001:db8::1;/);
  t.notMatch(cfg.text, /next hop address 198/);
  t.ok((await birdParse(cfg.text)).ok);
});

t.test('hostile values never reach the text unescaped', async (t) => {
  // A node name from a lease lands in a comment only, with no way to end it early.
  const cfg = birdConfig(input(1, [2], {}, { nodeName: 'evil\n}; protocol kernel x {' }));
  t.notMatch(cfg.text, /\n\}; protocol kernel x/);
  t.ok((await birdParse(cfg.text)).ok);
  t.equal(protocolName('ext', IP.parse('fd00::1')), 'ext_fd00__1');
});

t.test('mixed families are refused clearly', async (t) => {
  const i = input(1, [2], {});
  const wrong = { ...i, families: i.families.map((f) => ({ ...f, network: NETWORK6 })) };
  t.throws(() => birdConfig(wrong), { name: 'WeftError', message: /different address families/ });
});

t.test('extreme but valid values parse in BIRD: 4-byte ASNs, short timers, every printable password character', async (t) => {
  let printable = '';
  for (let c = 0x20; c <= 0x7e; c++) if (c !== 0x22) printable += String.fromCharCode(c);
  const cfg = birdConfig(
    input(1, [2], {
      ASN: 4294967295,
      HoldTime: 3,
      ConnectRetryTime: 1,
      ExternalPeers: [
        { PeerIP: '198.51.100.254', ASN: 1, Password: printable.slice(0, 80) },
        { PeerIP: '198.51.100.253', ASN: 4200000000, Password: printable.slice(14) },
      ],
    }),
  );
  t.match(cfg.text, /local 198\.51\.100\.1 as 4294967295;/);
  const parsed = await birdParse(cfg.text);
  t.ok(parsed.ok, parsed.message || 'bird -p accepts it');
});

t.test("weft's own BIRD also logs to a rotated file (an adopted BIRD has no reader on its stderr)", async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'wbg-unit-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const logFile = join(dir, 'bird.log');
  const cfg = birdConfig(input(1, [2], {}, { logFile }));
  t.ok(cfg.text.includes(`log "${logFile}" 1048576 "${logFile}.old" {`), 'a log line with a 1 MiB limit and a backup file');
  const parsed = await birdParse(cfg.text);
  t.ok(parsed.ok, `bird -p accepts it${parsed.message ? `: ${parsed.message}` : ''}`);
  t.throws(() => birdConfig(input(1, [2], {}, { logFile: '/run/we"ft/bird.log' })), { name: 'WeftError', message: /cannot be written in BIRD's config/ }, 'a path BIRD cannot quote is refused');
  t.notOk(birdConfig(input(1, [2], {})).text.includes('log "'), 'no log file unless asked (a BIRD behind --bird-socket keeps its own logging)');
});
