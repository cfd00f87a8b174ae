// Pure: (own lease, peer leases, options) -> the complete BIRD 2 config text.
// Nothing here touches the system, so every topology is unit-tested as text
// and parse-checked with `bird -p`.
import { IP, type Cidr, type Family } from '../../src/core/cidr.js';
import type { Lease } from '../../src/subnet/lease.js';
import { WeftError } from '../../src/errors.js';
import type { BgpOptions } from './options.js';

export interface BirdConfigInput {
  nodeName: string;
  own: Lease;
  peers: readonly Lease[];
  /** The cluster Network: the only prefixes taken from nodes. */
  network: Cidr;
  options: BgpOptions;
  /** Underlay prefixes on this node's interface: peers inside them get `direct` sessions. */
  connected: readonly Cidr[];
  /** Local end of the sessions (the interface address); defaults to the PublicIP. */
  sourceIP?: IP;
  /** This node also reflects routes (a per-node flag published in its lease). */
  selfReflector?: boolean;
  /** Named in the header so an operator knows how to reach this BIRD. */
  controlSocket: string;
  /**
   * BIRD also logs here (rotated at 1 MiB): a BIRD that outlived the agent
   * that started it has no reader on its stderr. Only for weft's own BIRD.
   */
  logFile?: string;
}

export type BirdSessionRole = 'mesh' | 'reflector' | 'rr-client' | 'external';

export interface BirdSession {
  /** BIRD protocol name, e.g. node_198_51_100_2. */
  name: string;
  peer: IP;
  asn: number;
  role: BirdSessionRole;
  /** This side waits for the peer to connect. */
  passive: boolean;
}

export interface BirdConfig {
  text: string;
  sessions: BirdSession[];
  /** Leases that get no session, each with the reason (logged once by the backend). */
  skipped: { lease: Lease; reason: string }[];
  /** RouteReflectors entries that match no lease (names not seen yet). */
  unresolvedReflectors: string[];
}

const BGP = 'bgp';
/** The kernel protocol's name (weft asks it to rescan when one of its routes was deleted). */
export const KERNEL_PROTOCOL = 'weft_kernel';

/** The lease attribute a node sets to act as a reflector without being listed. */
function leaseSaysReflector(lease: Lease): boolean {
  const data = lease.attrs.backendData;
  return typeof data === 'object' && data !== null && (data as Record<string, unknown>).RouteReflector === true;
}

export function birdConfig(input: BirdConfigInput): BirdConfig {
  const { own, network } = input;
  const family = network.family;
  if (own.attrs.publicIP.family !== family) {
    throw new WeftError(`bgp: PublicIP ${own.attrs.publicIP} and Network ${network} are of different address families`, 'use an underlay address of the Network\'s family (--public-ip / --iface)');
  }
  const { peers, skipped } = usablePeers(input);
  const plan = planSessions(input, peers);
  const sessions = [...plan.sessions, ...externalSessions(input)];
  return { text: render(input, family, plan.selfReflector, sessions), sessions, skipped, unresolvedReflectors: plan.unresolved };
}

/** Peers that can get a session, sorted by address so the text is stable; the rest with reasons. */
function usablePeers(input: BirdConfigInput): { peers: Lease[]; skipped: BirdConfig['skipped'] } {
  const { own, network, options } = input;
  const skipped: BirdConfig['skipped'] = [];
  const byAddress = new Map<bigint, Lease>();
  const external = new Set(options.externalPeers.map((p) => p.peerIP.toString()));
  const sorted = [...input.peers].sort((a, b) => compareBig(a.attrs.publicIP.value, b.attrs.publicIP.value) || compareBig(a.subnet.ip.value, b.subnet.ip.value));
  for (const lease of sorted) {
    const ip = lease.attrs.publicIP;
    if (lease.subnet.equals(own.subnet) || ip.equals(own.attrs.publicIP)) continue;
    let reason: string | undefined;
    if (lease.attrs.backendType !== BGP) reason = `its lease is for the ${JSON.stringify(lease.attrs.backendType.slice(0, 32))} backend; all nodes must use bgp`;
    else if (ip.family !== network.family) reason = `its PublicIP ${ip} is not of the Network's address family`;
    else if (!network.covers(lease.subnet)) reason = `its subnet is outside the Network ${network}`;
    else if (external.has(ip.toString())) reason = `its PublicIP is also listed in Backend.ExternalPeers; the external session wins`;
    else if (byAddress.has(ip.value)) reason = `another lease (${byAddress.get(ip.value)!.subnet}) has the same PublicIP ${ip}`;
    if (reason) skipped.push({ lease, reason });
    else byAddress.set(ip.value, lease);
  }
  return { peers: [...byAddress.values()], skipped };
}

interface SessionPlan {
  sessions: BirdSession[];
  selfReflector: boolean;
  unresolved: string[];
}

function planSessions(input: BirdConfigInput, peers: Lease[]): SessionPlan {
  const { own, options } = input;
  const asn = options.asn;
  const ownIP = own.attrs.publicIP;
  // The higher address waits: each pair has exactly one side connecting.
  const passiveTowards = (peer: IP): boolean => ownIP.value > peer.value;
  const session = (peer: IP, role: BirdSessionRole, passive: boolean): BirdSession => ({
    name: protocolName(role === 'mesh' ? 'node' : role === 'rr-client' ? 'client' : 'rr', peer),
    peer,
    asn,
    role,
    passive,
  });

  if (options.topology === 'mesh') {
    return { sessions: peers.map((p) => session(p.attrs.publicIP, 'mesh', passiveTowards(p.attrs.publicIP))), selfReflector: false, unresolved: [] };
  }

  const listed = new Set(options.routeReflectors.map((r) => r.toLowerCase()));
  const named = (lease: Lease): boolean =>
    listed.has(lease.attrs.publicIP.toString()) || (lease.attrs.nodeName !== undefined && listed.has(lease.attrs.nodeName.toLowerCase()));
  const selfReflector = input.selfReflector === true || listed.has(ownIP.toString()) || listed.has(input.nodeName.toLowerCase());
  const reflectorPeers = peers.filter((p) => named(p) || leaseSaysReflector(p));
  const leaseIPs = new Set([own, ...input.peers].map((l) => l.attrs.publicIP.toString()));
  const leaseNames = new Set([own, ...peers].flatMap((l) => (l.attrs.nodeName ? [l.attrs.nodeName.toLowerCase()] : [])));
  leaseNames.add(input.nodeName.toLowerCase());
  // Listed addresses that are no weft node: a reflector run by someone else (gobgpd, a router).
  const external = new Set(options.externalPeers.map((p) => p.peerIP.toString()));
  const foreignReflectors = options.routeReflectors
    .map(asAddress)
    .filter((ip): ip is IP => ip !== undefined && ip.family === input.network.family && !leaseIPs.has(ip.toString()) && !external.has(ip.toString()));
  const unresolved = options.routeReflectors.filter((r) => asAddress(r) === undefined && !leaseNames.has(r.toLowerCase()));

  if (!selfReflector && reflectorPeers.length === 0 && foreignReflectors.length === 0) {
    throw new WeftError(
      `bgp: Backend.RouteReflectors (${options.routeReflectors.join(', ').slice(0, 120)}) names no node in the cluster`,
      'list the node names or PublicIPs of running nodes, or wait until a reflector node has joined',
    );
  }

  const sessions: BirdSession[] = [];
  for (const p of reflectorPeers) sessions.push(session(p.attrs.publicIP, 'reflector', passiveTowards(p.attrs.publicIP)));
  // A foreign reflector follows its own rules: connect actively, it may be passive.
  for (const ip of foreignReflectors) sessions.push(session(ip, 'reflector', false));
  if (selfReflector) {
    for (const p of peers) {
      if (reflectorPeers.includes(p)) continue;
      sessions.push(session(p.attrs.publicIP, 'rr-client', passiveTowards(p.attrs.publicIP)));
    }
  }
  sessions.sort((a, b) => compareBig(a.peer.value, b.peer.value));
  return { sessions, selfReflector, unresolved };
}

function externalSessions(input: BirdConfigInput): BirdSession[] {
  return input.options.externalPeers
    .filter((p) => p.peerIP.family === input.network.family && !p.peerIP.equals(input.own.attrs.publicIP))
    .map((p) => ({ name: protocolName('ext', p.peerIP), peer: p.peerIP, asn: p.asn, role: 'external' as const, passive: false }));
}

/** A BIRD identifier from an address: "node_198_51_100_2", "ext_fd00__1". */
export function protocolName(prefix: string, ip: IP): string {
  return `${prefix}_${ip.toString().replace(/[.:]/g, '_')}`;
}

function render(input: BirdConfigInput, family: Family, selfReflector: boolean, sessions: BirdSession[]): string {
  const { own, network, options } = input;
  const ch = family === 4 ? 'ipv4' : 'ipv6';
  const ownSubnet = own.subnet.toString();
  const routerId = own.attrs.publicIP.family === 4 ? own.attrs.publicIP : lowBitsAsId(own.attrs.publicIP);
  const source = input.sourceIP ?? own.attrs.publicIP;
  const allowed = options.allowedPrefixes.filter((c) => c.family === family);
  const t = options.timers;
  const out: string[] = [];
  const line = (...ls: string[]): void => void out.push(...ls);

  line(
    `# BIRD 2 configuration for weft node ${safeComment(input.nodeName)}, generated by the bgp backend.`,
    `# Do not edit: weft rewrites this file whenever the cluster's leases change.`,
    `# Inspect: birdc -s ${safeComment(input.controlSocket)} show protocols all`,
    `# Topology: ${options.topology}${options.topology === 'reflectors' ? (selfReflector ? ' (this node reflects)' : ' (this node is a client)') : ''}; AS ${options.asn}`,
    '',
    'log stderr { info, remote, warning, error, auth, fatal, bug };',
    ...(input.logFile !== undefined ? [`log "${birdString(input.logFile)}" 1048576 "${birdString(input.logFile)}.old" { info, remote, warning, error, auth, fatal, bug };`] : []),
    `router id ${routerId};`,
    'timeformat protocol iso long;',
    '# After a restart (bird -R) BIRD keeps the kernel routes and holds back changes',
    '# until every session has resynchronised, or this many seconds have passed.',
    'graceful restart wait 10;',
    '',
    `# Nodes may announce prefixes inside the Network, never this node's own subnet`,
    `# or a part of it (that would steal traffic meant for local pods).`,
    `function weft_in_network() { return net ~ [ ${network}+ ]; }`,
    `function weft_not_own() { return !(net ~ [ ${ownSubnet}+ ]); }`,
    allowed.length > 0
      ? `function weft_in_allowed() { return net ~ [ ${allowed.map((c) => `${c}+`).join(', ')} ]; }`
      : 'function weft_in_allowed() { return false; }',
    '',
    'filter weft_import_nodes {',
    '  if weft_in_network() && weft_not_own() then accept;',
    '  reject;',
    '}',
    '# External peers (ToR routers) are heard only inside Backend.AllowedPrefixes.',
    'filter weft_import_external {',
    '  if weft_in_allowed() && weft_not_own() then accept;',
    '  reject;',
    '}',
    'filter weft_export_own {',
    `  if source = RTS_STATIC && net = ${ownSubnet} then accept;`,
    '  reject;',
    '}',
  );
  if (selfReflector) {
    line(
      '# Reflectors pass on what nodes announce, still only inside the Network.',
      'filter weft_export_reflected {',
      `  if source = RTS_STATIC && net = ${ownSubnet} then accept;`,
      '  if source = RTS_BGP && weft_in_network() && weft_not_own() then accept;',
      '  reject;',
      '}',
    );
  }
  line(
    '# Only routes learned over BGP reach the kernel; the own subnet stays on the CNI bridge.',
    'filter weft_kernel_export {',
    '  if source = RTS_BGP && (weft_in_network() || weft_in_allowed()) && weft_not_own() then accept;',
    '  reject;',
    '}',
    '# Underlay routes (for next hops of multihop sessions), never pod or allowed prefixes.',
    'filter weft_underlay_import {',
    '  if weft_in_network() || weft_in_allowed() then reject;',
    '  accept;',
    '}',
    '',
    '# Unnamed, so BIRD calls it device1 like most configs do: taking over a running',
    '# BIRD (--bird-socket) then keeps its interface list instead of rebuilding it.',
    'protocol device {',
    '  scan time 10;',
    '}',
    '',
    'protocol direct weft_direct {',
    `  ${ch} { import filter weft_underlay_import; };`,
    '  interface "*";',
    '}',
    '',
    `protocol kernel ${KERNEL_PROTOCOL} {`,
    `  ${ch} {`,
    '    import filter weft_underlay_import;',
    '    export filter weft_kernel_export;',
    '  };',
    '  learn;',
    '  # Routes stay in the kernel when BIRD stops, so pods keep talking while weft restarts.',
    '  persist;',
    '  graceful restart on;',
    '  merge paths on;',
    '}',
    '',
    '# This node\'s pod subnet, announced to peers. A blackhole in BIRD\'s table only:',
    '# the kernel already routes it to the CNI bridge and weft_kernel_export drops it.',
    'protocol static weft_own_subnet {',
    `  ${ch};`,
    `  route ${ownSubnet} blackhole;`,
    '}',
    '',
  );

  line(
    '# Timers and graceful restart shared by every session.',
    'template bgp weft_peer {',
    `  local ${source} as ${options.asn};`,
    `  hold time ${t.holdTime};`,
    `  startup hold time ${t.holdTime};`,
    `  keepalive time ${t.keepaliveTime};`,
    '  # Retry a refused connection after about a second: a new peer is often still configuring.',
    '  connect delay time 1;',
    `  connect retry time ${t.connectRetryTime};`,
    '  error wait time 5, 60;',
    "  # Peers keep this node's routes while BIRD or weft restarts.",
    '  graceful restart on;',
    '}',
    '',
  );
  const nextHop = source.equals(own.attrs.publicIP) ? [] : [`    next hop address ${own.attrs.publicIP};`];
  const channel = (importFilter: string, exportFilter: string, extra: string[] = []): string[] => [
    `  ${ch} {`,
    `    import filter ${importFilter};`,
    `    export filter ${exportFilter};`,
    ...extra,
    ...nextHop,
    '  };',
  ];
  const template = (name: string, exportFilter: string, extra: string[] = []): void =>
    line(`template bgp ${name} from weft_peer {`, ...extra, ...channel('weft_import_nodes', exportFilter), '}', '');

  const roles = new Set(sessions.map((s) => s.role));
  if (roles.has('mesh')) template('weft_mesh', 'weft_export_own');
  if (roles.has('reflector')) template('weft_reflector', selfReflector ? 'weft_export_reflected' : 'weft_export_own');
  if (roles.has('rr-client')) template('weft_rr_client', 'weft_export_reflected', ['  rr client;', `  rr cluster id ${options.clusterID};`]);

  const connected = (ip: IP): boolean => input.connected.some((c) => c.contains(ip));
  const reach = (ip: IP): string => (connected(ip) ? '  direct;' : '  multihop;');
  for (const s of sessions.filter((x) => x.role !== 'external')) {
    const tpl = s.role === 'mesh' ? 'weft_mesh' : s.role === 'reflector' ? 'weft_reflector' : 'weft_rr_client';
    line(`protocol bgp ${s.name} from ${tpl} {`, `  neighbor ${s.peer} as ${s.asn};`, reach(s.peer));
    if (s.passive) line('  passive on;');
    line('}', '');
  }

  for (const peer of options.externalPeers) {
    const s = sessions.find((x) => x.role === 'external' && x.peer.equals(peer.peerIP));
    if (!s) continue;
    line(`protocol bgp ${s.name} from weft_peer {`, `  neighbor ${peer.peerIP} as ${peer.asn};`, reach(peer.peerIP));
    if (peer.password !== undefined) line(`  password "${peer.password}";`);
    line(...channel('weft_import_external', 'weft_export_own', ['    next hop self;']), '}', '');
  }
  return out.join('\n');
}

/** BIRD needs a 32-bit router id; an IPv6-only node uses its address's low 32 bits. */
function lowBitsAsId(ip: IP): string {
  const v = ip.value & 0xffffffffn;
  return [24n, 16n, 8n, 0n].map((s) => String((v >> s) & 0xffn)).join('.');
}

/** A path inside a BIRD string, which has no escapes. */
function birdString(text: string): string {
  if (/["\n\\]/.test(text)) throw new WeftError(`path ${JSON.stringify(text)} cannot be written in BIRD's config`, 'use a --run-dir without quotes, backslashes or newlines');
  return text;
}

/** Text from leases or flags placed in a comment: no newline may end the comment early. */
function safeComment(text: string): string {
  return text.replace(/[^\x20-\x7e]/g, '?').slice(0, 200);
}

function asAddress(text: string): IP | undefined {
  try {
    return IP.parse(text);
  } catch {
    return undefined;
  }
}

function compareBig(a: bigint, b: bigint): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
