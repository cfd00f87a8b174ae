// Pure: (own lease, peer leases, options) -> the complete BIRD 2 config text.
// Nothing here touches the system, so every topology is unit-tested as text
// and parse-checked with `bird -p`.
import type { Cidr, Family, IP } from '../../src/core/cidr.js';
import type { Lease } from '../../src/subnet/lease.js';
import type { ExternalInterface } from '../backend.js';
import type { BorrowedByPeer } from '../borrowed.js';
import { WeftError } from '../../src/errors.js';
import { reflectorAddress, type BgpOptions } from './options.js';

/** One address family this node runs: its lease half, the peers' halves and the interface's side (NodeFamilies' view) with that family's cluster Network. */
export interface BirdFamily {
  family: Family;
  /** The cluster Network of this family: the only prefixes taken from nodes. */
  network: Cidr;
  own: Lease;
  peers: readonly Lease[];
  /** `ip` is the local end of the sessions; `connected` prefixes make peers inside them `direct`. */
  ext: Pick<ExternalInterface, 'ip' | 'connected'>;
  /** The peers' borrowed addresses of this family, claims settled (NodeFamilies' view); those inside this node's subnet are let in. */
  borrowed?: BorrowedByPeer;
}

export interface BirdConfigInput {
  nodeName: string;
  /** This node's whole lease: reflector lists may name either of its addresses. */
  own: Lease;
  /** The peers' whole leases, likewise. */
  peers: readonly Lease[];
  /** The families this node runs, primary first. Each gets its own sessions, filters and kernel protocol. */
  families: readonly BirdFamily[];
  options: BgpOptions;
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
  /** Kernel protocols, one per family (weft asks them to rescan when one of their routes was deleted). */
  kernelProtocols: string[];
  /** Leases (the family's half) that get no session, each with the reason (logged once by the backend). */
  skipped: { family: Family; lease: Lease; reason: string }[];
  /** RouteReflectors entries that match no lease (names not seen yet). */
  unresolvedReflectors: string[];
  /** A secondary family this node cannot route (no reflector has a half in it), with the reason. */
  familyProblems: string[];
}

const BGP = 'bgp';

/**
 * A BIRD name of one family's protocol, filter or function. IPv4 keeps the
 * names weft used before dual-stack, so a BIRD adopted across an upgrade is
 * reconfigured without restarting a protocol (which would flap its routes).
 */
export function familyName(base: string, family: Family): string {
  return family === 4 ? base : `${base}6`;
}

/** The lease attribute a node sets to act as a reflector without being listed. */
function leaseSaysReflector(lease: Lease): boolean {
  const data = lease.attrs.backendData;
  return typeof data === 'object' && data !== null && (data as Record<string, unknown>).RouteReflector === true;
}

/** Every address of a whole lease (PublicIP, PublicIPv6), as text. */
function leaseAddresses(lease: Lease): string[] {
  return [lease.attrs.publicIP, ...(lease.attrs.publicIPv6 ? [lease.attrs.publicIPv6] : [])].map(String);
}

export function birdConfig(input: BirdConfigInput): BirdConfig {
  const primary = input.families[0];
  if (!primary) throw new WeftError('bgp: this node runs no address family (no lease half matches an interface address)', 'check --iface and --public-ip');
  const result: BirdConfig = { text: '', sessions: [], kernelProtocols: [], skipped: [], unresolvedReflectors: unresolvedReflectors(input), familyProblems: [] };
  const parts: string[] = [];
  let selfReflector = false;
  for (const f of input.families) {
    if (f.own.attrs.publicIP.family !== f.network.family || f.family !== f.network.family) {
      throw new WeftError(`bgp: PublicIP ${f.own.attrs.publicIP} and Network ${f.network} are of different address families`, 'use an underlay address of the Network\'s family (--public-ip / --iface)');
    }
    const { peers, skipped } = usablePeers(input, f);
    result.skipped.push(...skipped.map((s) => ({ family: f.family, ...s })));
    let plan: SessionPlan;
    try {
      plan = planSessions(input, f, peers);
    } catch (err) {
      // Only the primary family's trouble stops the config; IPv6 without a reflector leaves IPv4 routed.
      if (f === primary || !(err instanceof WeftError)) throw err;
      result.familyProblems.push(`IPv${f.family}: ${err.message}`);
      continue;
    }
    selfReflector ||= plan.selfReflector;
    const sessions = [...plan.sessions, ...externalSessions(input, f)];
    result.sessions.push(...sessions);
    result.kernelProtocols.push(familyName(KERNEL_BASE, f.family));
    parts.push(renderFamily(input, f, plan.selfReflector, sessions));
  }
  result.text = [renderHeader(input, primary, selfReflector), ...parts].join('\n');
  return result;
}

const KERNEL_BASE = 'weft_kernel';

/** Peers of one family that can get a session, sorted by address so the text is stable; the rest with reasons. */
function usablePeers(input: BirdConfigInput, f: BirdFamily): { peers: Lease[]; skipped: { lease: Lease; reason: string }[] } {
  const { own, network } = f;
  const skipped: { lease: Lease; reason: string }[] = [];
  const byAddress = new Map<bigint, Lease>();
  const external = new Set(input.options.externalPeers.map((p) => p.peerIP.toString()));
  const sorted = [...f.peers].sort((a, b) => compareBig(a.attrs.publicIP.value, b.attrs.publicIP.value) || compareBig(a.subnet.ip.value, b.subnet.ip.value));
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
}

/** RouteReflectors names that are no address and match no node name seen yet. */
function unresolvedReflectors(input: BirdConfigInput): string[] {
  const names = new Set([input.own, ...input.peers].flatMap((l) => (l.attrs.nodeName ? [l.attrs.nodeName.toLowerCase()] : [])));
  names.add(input.nodeName.toLowerCase());
  return input.options.routeReflectors.filter((r) => reflectorAddress(r) === undefined && !names.has(r.toLowerCase()));
}

function planSessions(input: BirdConfigInput, f: BirdFamily, peers: Lease[]): SessionPlan {
  const { options } = input;
  const asn = options.asn;
  const ownIP = f.own.attrs.publicIP;
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
    return { sessions: peers.map((p) => session(p.attrs.publicIP, 'mesh', passiveTowards(p.attrs.publicIP))), selfReflector: false };
  }

  // Reflectors are named by node name or by either of a node's addresses; the
  // name is looked up on the whole lease, so one list serves both families.
  const listed = new Set(options.routeReflectors.map((r) => r.toLowerCase()));
  const wholeOf = (half: Lease): Lease => input.peers.find((l) => leaseAddresses(l).includes(half.attrs.publicIP.toString())) ?? half;
  const named = (lease: Lease): boolean =>
    leaseAddresses(lease).some((a) => listed.has(a)) || (lease.attrs.nodeName !== undefined && listed.has(lease.attrs.nodeName.toLowerCase()));
  const isReflector = (half: Lease): boolean => {
    const whole = wholeOf(half);
    return named(whole) || leaseSaysReflector(whole);
  };
  const selfReflector = input.selfReflector === true || named(input.own) || listed.has(input.nodeName.toLowerCase());
  const reflectorPeers = peers.filter(isReflector);
  const leaseIPs = new Set([input.own, ...input.peers].flatMap(leaseAddresses));
  // Listed addresses that are no weft node: a reflector run by someone else (gobgpd, a router).
  const external = new Set(options.externalPeers.map((p) => p.peerIP.toString()));
  const foreignReflectors = options.routeReflectors
    .map(reflectorAddress)
    .filter((ip): ip is IP => ip !== undefined && ip.family === f.family && !leaseIPs.has(ip.toString()) && !external.has(ip.toString()));

  if (!selfReflector && reflectorPeers.length === 0 && foreignReflectors.length === 0) {
    throw new WeftError(
      `bgp: Backend.RouteReflectors (${options.routeReflectors.join(', ').slice(0, 120)}) names no node in the cluster${f.family === 6 ? ' with an IPv6 address' : ''}`,
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
  return { sessions, selfReflector };
}

function externalSessions(input: BirdConfigInput, f: BirdFamily): BirdSession[] {
  return input.options.externalPeers
    .filter((p) => p.peerIP.family === f.family && !p.peerIP.equals(f.own.attrs.publicIP))
    .map((p) => ({ name: protocolName('ext', p.peerIP), peer: p.peerIP, asn: p.asn, role: 'external' as const, passive: false }));
}

/** A BIRD identifier from an address: "node_198_51_100_2", "ext_fd00__1". */
export function protocolName(prefix: string, ip: IP): string {
  return `${prefix}_${ip.toString().replace(/[.:]/g, '_')}`;
}

/** What the whole BIRD shares: logging, router id, graceful restart, the device scan. */
function renderHeader(input: BirdConfigInput, primary: BirdFamily, selfReflector: boolean): string {
  const { options } = input;
  const ownIP = primary.own.attrs.publicIP;
  // The primary family's address: a node that turns IPv6 on keeps its router id, so no session restarts.
  const routerId = ownIP.family === 4 ? ownIP : lowBitsAsId(ownIP);
  return [
    `# BIRD 2 configuration for weft node ${safeComment(input.nodeName)}, generated by the bgp backend.`,
    `# Do not edit: weft rewrites this file whenever the cluster's leases change.`,
    `# Inspect: birdc -s ${safeComment(input.controlSocket)} show protocols all`,
    `# Topology: ${options.topology}${options.topology === 'reflectors' ? (selfReflector ? ' (this node reflects)' : ' (this node is a client)') : ''}; AS ${options.asn}`,
    `# Families: ${input.families.map((f) => `IPv${f.family}`).join(', ')}; each has its own sessions between the nodes' addresses of that family.`,
    `# Routed prefixes: ${routedPrefixesOf(input).join(' ')}`,
    '',
    'log stderr { info, remote, warning, error, auth, fatal, bug };',
    ...(input.logFile !== undefined ? [`log "${birdString(input.logFile)}" 1048576 "${birdString(input.logFile)}.old" { info, remote, warning, error, auth, fatal, bug };`] : []),
    `router id ${routerId};`,
    'timeformat protocol iso long;',
    '# After a restart (bird -R) BIRD keeps the kernel routes and holds back changes',
    '# until every session has resynchronised, or this many seconds have passed.',
    'graceful restart wait 10;',
    '',
    '# Unnamed, so BIRD calls it device1 like most configs do: taking over a running',
    '# BIRD (--bird-socket) then keeps its interface list instead of rebuilding it.',
    'protocol device {',
    '  scan time 10;',
    '}',
    '',
  ].join('\n');
}

/** The prefixes whose routes BIRD puts into the kernel, every family: what teardown flushes. */
function routedPrefixesOf(input: BirdConfigInput): string[] {
  const families = new Set(input.families.map((f) => f.family));
  return [...input.families.map((f) => f.network), ...input.options.allowedPrefixes.filter((c) => families.has(c.family))].map(String);
}

/** The header line naming the routed prefixes, read back by teardown (which has no net-conf). */
export const ROUTED_PREFIXES_LINE = /^# Routed prefixes: (.*)$/m;

/** One family's filters, protocols, templates and sessions; every name carries the family (familyName). */
function renderFamily(input: BirdConfigInput, f: BirdFamily, selfReflector: boolean, sessions: BirdSession[]): string {
  const { options } = input;
  const { own, network, family } = f;
  const n = (base: string): string => familyName(base, family);
  const ch = family === 4 ? 'ipv4' : 'ipv6';
  const ownSubnet = own.subnet.toString();
  const source = f.ext.ip;
  const allowed = options.allowedPrefixes.filter((c) => c.family === family);
  const t = options.timers;
  const out: string[] = [];
  const line = (...ls: string[]): void => void out.push(...ls);
  const { borrowedHere, lent } = borrowedOf(f);
  const ownRoutes = [ownSubnet, ...borrowedHere];
  const claims = claimLines(f);
  // Left out when no peer borrows: the config text is then what it was before borrowing existed.
  const claimed = claims.length > 0 ? ` && ${n('weft_claimed')}()` : '';

  line(
    `# ---- IPv${family}: pod network ${network}, this node's subnet ${ownSubnet} ----`,
    `# Nodes may announce prefixes inside the Network, never this node's own subnet`,
    `# or a part of it (that would steal traffic meant for local pods).`,
    ...(borrowedHere.length + lent.length > 0
      ? ['# Borrowed addresses (pinned pods away from their subnet) follow the leases: those this node', '# holds are its own; those of its subnet that peers hold are theirs.']
      : []),
    `function ${n('weft_in_network')}() { return net ~ [ ${network}+ ]; }`,
    `function ${n('weft_not_own')}() { return ${notOwnTest(ownSubnet, borrowedHere, lent)}; }`,
    allowed.length > 0
      ? `function ${n('weft_in_allowed')}() { return net ~ [ ${allowed.map((c) => `${c}+`).join(', ')} ]; }`
      : `function ${n('weft_in_allowed')}() { return false; }`,
    ...(claims.length > 0
      ? [
          "# A peer's borrowed address is believed only from that peer: its next hop is the peer's",
          '# PublicIP (announced as such even when the session runs from another address, and',
          '# passed on unchanged by reflectors), so no other node can draw a pinned pod\'s traffic.',
          `function ${n('weft_claimed')}() {`,
          ...claims,
          '  return true;',
          '}',
        ]
      : []),
    '',
    `filter ${n('weft_import_nodes')} {`,
    `  if ${n('weft_in_network')}() && ${n('weft_not_own')}()${claimed} then accept;`,
    '  reject;',
    '}',
    '# External peers (ToR routers) are heard only inside Backend.AllowedPrefixes.',
    `filter ${n('weft_import_external')} {`,
    `  if ${n('weft_in_allowed')}() && ${n('weft_not_own')}()${claimed} then accept;`,
    '  reject;',
    '}',
    `filter ${n('weft_export_own')} {`,
    `  if source = RTS_STATIC && ${announcedTest(ownRoutes)} then accept;`,
    '  reject;',
    '}',
  );
  if (selfReflector) {
    line(
      '# Reflectors pass on what nodes announce, still only inside the Network.',
      `filter ${n('weft_export_reflected')} {`,
      `  if source = RTS_STATIC && ${announcedTest(ownRoutes)} then accept;`,
      `  if source = RTS_BGP && ${n('weft_in_network')}() && ${n('weft_not_own')}() then accept;`,
      '  reject;',
      '}',
    );
  }
  line(
    '# Only routes learned over BGP reach the kernel; the own subnet stays on the CNI bridge.',
    `filter ${n('weft_kernel_export')} {`,
    `  if source = RTS_BGP && (${n('weft_in_network')}() || ${n('weft_in_allowed')}()) && ${n('weft_not_own')}() then accept;`,
    '  reject;',
    '}',
    '# Underlay routes (for next hops of multihop sessions), never pod or allowed prefixes.',
    `filter ${n('weft_underlay_import')} {`,
    `  if ${n('weft_in_network')}() || ${n('weft_in_allowed')}() then reject;`,
    '  accept;',
    '}',
    '',
    `protocol direct ${n('weft_direct')} {`,
    `  ${ch} { import filter ${n('weft_underlay_import')}; };`,
    '  interface "*";',
    '}',
    '',
    `protocol kernel ${n(KERNEL_BASE)} {`,
    `  ${ch} {`,
    `    import filter ${n('weft_underlay_import')};`,
    `    export filter ${n('weft_kernel_export')};`,
    '  };',
    '  learn;',
    '  # Routes stay in the kernel when BIRD stops, so pods keep talking while weft restarts.',
    '  persist;',
    '  graceful restart on;',
    '  merge paths on;',
    '}',
    '',
    '# This node\'s pod subnet, announced to peers. A blackhole in BIRD\'s table only:',
    `# the kernel already routes it to the CNI bridge and ${n('weft_kernel_export')} drops it.`,
    `protocol static ${n('weft_own_subnet')} {`,
    `  ${ch};`,
    ...ownRoutes.map((r) => `  route ${r} blackhole;`),
    '}',
    '',
  );

  line(
    '# Timers and graceful restart shared by every session.',
    `template bgp ${n('weft_peer')} {`,
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
    line(`template bgp ${name} from ${n('weft_peer')} {`, ...extra, ...channel(n('weft_import_nodes'), exportFilter), '}', '');

  const roles = new Set(sessions.map((s) => s.role));
  const exportOwn = n('weft_export_own');
  const exportReflected = n('weft_export_reflected');
  if (roles.has('mesh')) template(n('weft_mesh'), exportOwn);
  if (roles.has('reflector')) template(n('weft_reflector'), selfReflector ? exportReflected : exportOwn);
  if (roles.has('rr-client')) template(n('weft_rr_client'), exportReflected, ['  rr client;', `  rr cluster id ${options.clusterID};`]);

  const connected = (ip: IP): boolean => f.ext.connected.some((c) => c.contains(ip));
  const reach = (ip: IP): string => (connected(ip) ? '  direct;' : '  multihop;');
  for (const s of sessions.filter((x) => x.role !== 'external')) {
    const tpl = s.role === 'mesh' ? 'weft_mesh' : s.role === 'reflector' ? 'weft_reflector' : 'weft_rr_client';
    line(`protocol bgp ${s.name} from ${n(tpl)} {`, `  neighbor ${s.peer} as ${s.asn};`, reach(s.peer));
    if (s.passive) line('  passive on;');
    line('}', '');
  }

  for (const peer of options.externalPeers) {
    const s = sessions.find((x) => x.role === 'external' && x.peer.equals(peer.peerIP));
    if (!s) continue;
    line(`protocol bgp ${s.name} from ${n('weft_peer')} {`, `  neighbor ${peer.peerIP} as ${peer.asn};`, reach(peer.peerIP));
    if (peer.password !== undefined) line(`  password "${peer.password}";`);
    line(...channel(n('weft_import_external'), exportOwn, ['    next hop self;']), '}', '');
  }
  return out.join('\n');
}

/** BIRD needs a 32-bit router id; an IPv6-only node uses its address's low 32 bits. */
/**
 * This node's borrowed addresses of the family that it announces, and the
 * peers' borrowed addresses inside its subnet (lent to them). An address a
 * peer with a lower subnet also claims is not announced: receivers then hear
 * only the claim the conflict rule (BorrowedClaims) picks, whatever BGP's
 * own best-path choice would be.
 */
function borrowedOf(f: BirdFamily): { borrowedHere: string[]; lent: string[] } {
  const lower = f.peers.filter((p) => p.subnet.ip.value < f.own.subnet.ip.value);
  const contested = new Set(lower.flatMap((p) => (p.attrs.borrowedIPs ?? []).map((ip) => ip.toKey())));
  const borrowedHere = (f.own.attrs.borrowedIPs ?? []).filter((ip) => !contested.has(ip.toKey())).map(String);
  const lent = [...(f.borrowed?.values() ?? [])].flat().filter((ip) => f.own.subnet.covers(ip)).map(String).sort();
  return { borrowedHere, lent };
}

/**
 * One test per peer with borrowed addresses of the family (claims settled):
 * those addresses are accepted only with the peer's PublicIP as next hop,
 * which is what every weft node announces (`next hop address` when its
 * session source differs). Sorted, so the text depends on the leases only.
 */
function claimLines(f: BirdFamily): string[] {
  return [...(f.borrowed?.entries() ?? [])]
    .filter(([, ips]) => ips.length > 0)
    .map(([peer, ips]) => `  if net ~ [ ${ips.map(String).join(', ')} ] then return bgp_next_hop = ${peer.attrs.publicIP};`)
    .sort();
}

/** Outside this node's subnet and its borrowed addresses, or one of its addresses a peer borrows. Unchanged text when nothing is borrowed. */
function notOwnTest(ownSubnet: string, borrowedHere: readonly string[], lent: readonly string[]): string {
  const mine = borrowedHere.length > 0 ? `!(net ~ [ ${[`${ownSubnet}+`, ...borrowedHere].join(', ')} ])` : `!(net ~ [ ${ownSubnet}+ ])`;
  return lent.length > 0 ? `${mine} || net ~ [ ${lent.join(', ')} ]` : mine;
}

/** The routes this node announces: its subnet, and its borrowed addresses (exact prefixes). */
function announcedTest(routes: readonly string[]): string {
  return routes.length === 1 ? `net = ${routes[0]}` : `net ~ [ ${routes.join(', ')} ]`;
}

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

function compareBig(a: bigint, b: bigint): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
