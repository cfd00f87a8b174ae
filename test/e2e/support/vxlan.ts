// Shared pieces for the vxlan e2e tests: what a node's kernel holds for the
// tunnel (device, neighbours, FDB, routes), what it should hold given the
// leases in etcd, UDP listeners and senders inside lab namespaces, and a
// hand-crafted VXLAN frame for the injection test.
import { createInterface } from 'node:readline';
import { spawn, type ChildProcess } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Lab, LabNode } from '../../../src/lab/lab.js';
import { inNetns, runCommand } from '../../../src/lab/command.js';
import { routesOf, type KernelRoute } from './lab-fixture.js';

export const VXLAN_DEV = 'weft.1';

export interface VxlanLinkView {
  ifindex: number;
  mac: string;
  mtu: number;
  vni: number;
  port: number;
  local: string;
  parent: string;
  learning: boolean;
}

/** The tunnel as one node's kernel holds it. */
export interface VxlanView {
  link?: VxlanLinkView;
  /** Permanent neighbour entries on the device. */
  neighs: { ip: string; mac: string }[];
  fdb: { mac: string; dst: string }[];
  routes: KernelRoute[];
}

async function json<T>(lab: Lab, node: LabNode, argv: string[]): Promise<T | undefined> {
  const r = await lab.exec(node, argv, { check: false });
  if (r.code !== 0 || !r.stdout.trim()) return undefined;
  return JSON.parse(r.stdout) as T;
}

export async function vxlanView(lab: Lab, node: LabNode, dev = VXLAN_DEV): Promise<VxlanView> {
  type RawLink = { ifindex: number; address: string; mtu: number; linkinfo?: { info_kind?: string; info_data?: Record<string, unknown> } };
  const [links, neighs, fdb, routes] = await Promise.all([
    json<RawLink[]>(lab, node, ['ip', '-j', '-d', 'link', 'show', 'dev', dev]),
    json<{ dst: string; lladdr?: string; state?: string[] }[]>(lab, node, ['ip', '-j', 'neigh', 'show', 'dev', dev]),
    json<{ mac: string; dst?: string }[]>(lab, node, ['bridge', '-j', 'fdb', 'show', 'dev', dev]),
    routesOf(lab, node),
  ]);
  const raw = links?.[0];
  const data = raw?.linkinfo?.info_data ?? {};
  const link: VxlanLinkView | undefined = raw && raw.linkinfo?.info_kind === 'vxlan'
    ? {
        ifindex: raw.ifindex,
        mac: raw.address,
        mtu: raw.mtu,
        vni: Number(data.id),
        port: Number(data.port),
        local: String(data.local),
        parent: String(data.link),
        learning: Boolean(data.learning),
      }
    : undefined;
  return {
    link,
    neighs: (neighs ?? []).filter((n) => n.state?.includes('PERMANENT') && n.lladdr).map((n) => ({ ip: n.dst, mac: n.lladdr! })),
    fdb: (fdb ?? []).filter((f) => f.dst).map((f) => ({ mac: f.mac, dst: f.dst! })),
    routes,
  };
}

/** One node's lease as etcd holds it. */
export interface NodeLease {
  /** The lab node's short name ("n1"), when the lease belongs to a lab node. */
  node?: string;
  subnet: string;
  /** The subnet's first address: the vxlan gateway/neighbour address. */
  gateway: string;
  publicIP: string;
  backendType: string;
  vni?: number;
  vtepMac?: string;
}

export async function leasesOf(lab: Lab): Promise<NodeLease[]> {
  const kvs = await lab.etcdList(`${lab.etcdPrefix}/subnets/`);
  const out: NodeLease[] = [];
  for (const [key, value] of kvs) {
    const m = /\/subnets\/([\d.]+)-(\d+)$/.exec(key);
    if (!m) continue;
    const v = JSON.parse(value) as { PublicIP: string; BackendType: string; BackendData?: { VNI?: number; VtepMAC?: string } | null };
    out.push({
      node: lab.nodes.find((n) => n.underlayIP === v.PublicIP)?.name,
      subnet: `${m[1]}/${m[2]}`,
      gateway: m[1]!,
      publicIP: v.PublicIP,
      backendType: v.BackendType,
      vni: v.BackendData?.VNI,
      vtepMac: v.BackendData?.VtepMAC,
    });
  }
  return out;
}

export function leaseOf(leases: readonly NodeLease[], node: LabNode): NodeLease {
  const lease = leases.find((l) => l.publicIP === node.underlayIP);
  if (!lease) throw new Error(`no lease for ${node.name} (${node.underlayIP}) in etcd`);
  return lease;
}

/**
 * What is missing or wrong in `view` for `self`'s tunnel to `peers` ([] when
 * complete). Peers in `direct` must be routed via their underlay address on
 * eth0 with no neighbour/FDB entry; the others through the tunnel.
 */
export function vxlanProblems(view: VxlanView, self: NodeLease, peers: readonly NodeLease[], opts: { direct?: ReadonlySet<string> } = {}): string[] {
  const problems: string[] = [];
  if (!view.link) return [`no vxlan device ${VXLAN_DEV}`];
  const l = view.link;
  if (l.vni !== 1 || l.port !== 8472 || l.local !== self.publicIP || l.parent !== 'eth0' || l.learning) {
    problems.push(`device is vni ${l.vni} port ${l.port} local ${l.local} dev ${l.parent} learning ${l.learning}`);
  }
  if (l.mac !== self.vtepMac) problems.push(`device MAC ${l.mac} is not the lease's VtepMAC ${self.vtepMac}`);
  for (const peer of peers) {
    const route = view.routes.find((r) => r.dst === peer.subnet);
    if (opts.direct?.has(peer.publicIP)) {
      if (route?.gateway !== peer.publicIP || route.dev !== 'eth0' || route.protocol !== '147') problems.push(`${peer.subnet}: want a direct route via ${peer.publicIP} dev eth0, have ${JSON.stringify(route)}`);
      if (view.fdb.some((f) => f.mac === peer.vtepMac)) problems.push(`${peer.subnet}: FDB entry for a directly routed peer`);
      if (view.neighs.some((n) => n.ip === peer.gateway)) problems.push(`${peer.subnet}: neighbour entry for a directly routed peer`);
      continue;
    }
    if (!view.neighs.some((n) => n.ip === peer.gateway && n.mac === peer.vtepMac)) problems.push(`${peer.subnet}: no neighbour ${peer.gateway} -> ${peer.vtepMac}`);
    if (!view.fdb.some((f) => f.mac === peer.vtepMac && f.dst === peer.publicIP)) problems.push(`${peer.subnet}: no FDB ${peer.vtepMac} -> ${peer.publicIP}`);
    if (route?.gateway !== peer.gateway || route.dev !== VXLAN_DEV || route.protocol !== '147') problems.push(`${peer.subnet}: want a route via ${peer.gateway} dev ${VXLAN_DEV}, have ${JSON.stringify(route)}`);
  }
  return problems;
}

/** The problems of every node of the lab against the leases in etcd, keyed "n1: ...". */
export async function labVxlanProblems(lab: Lab, opts: { direct?: (a: LabNode, b: LabNode) => boolean } = {}): Promise<string[]> {
  const leases = await leasesOf(lab);
  const out: string[] = [];
  for (const node of lab.nodes) {
    const self = leaseOf(leases, node);
    const peerNodes = lab.nodes.filter((n) => n !== node);
    const peers = peerNodes.map((n) => leaseOf(leases, n));
    const direct = new Set(peerNodes.filter((p) => opts.direct?.(node, p)).map((p) => p.underlayIP));
    out.push(...vxlanProblems(await vxlanView(lab, node), self, peers, { direct }).map((p) => `${node.name}: ${p}`));
  }
  return out;
}

// --- UDP in namespaces ---------------------------------------------------------

/** A datagram a listener received: the sender's address as the receiving socket saw it. */
export interface Received {
  from: string;
  port: number;
  text: string;
}

// One IPv6 socket hears both families; IPv4 senders show as ::ffff:a.b.c.d and are printed plain.
const LISTENER = `
const s = require('node:dgram').createSocket('udp6');
s.on('message', (m, r) => console.log(JSON.stringify({ from: r.address.replace(/^::ffff:(?=\\d+\\.)/, ''), port: r.port, text: m.toString('latin1') })));
s.bind(Number(process.argv[1]), () => console.log('listening'));
`;

/** A UDP socket in a namespace printing every datagram it receives, of either family. */
export class UdpListener {
  readonly received: Received[] = [];
  private listening = false;
  private readonly child: ChildProcess;

  private constructor(ns: string, port: number) {
    const [file, ...args] = inNetns(ns, [process.execPath, '-e', LISTENER, String(port)]);
    this.child = spawn(file!, args, { stdio: ['ignore', 'pipe', 'ignore'] });
    this.child.on('error', () => {});
    createInterface({ input: this.child.stdout! }).on('line', (line) => {
      if (line === 'listening') this.listening = true;
      else this.received.push(JSON.parse(line) as Received);
    });
  }

  /** Starts the listener and waits until its socket is bound. */
  static async start(ns: string, port: number): Promise<UdpListener> {
    const l = new UdpListener(ns, port);
    const deadline = Date.now() + 15_000;
    while (!l.listening) {
      if (Date.now() > deadline || l.child.exitCode !== null) {
        await l.stop();
        throw new Error(`UDP listener in ${ns} on port ${port} did not start`);
      }
      await sleep(20);
    }
    return l;
  }

  matching(text: string): Received[] {
    return this.received.filter((r) => r.text.includes(text));
  }

  async stop(): Promise<void> {
    if (this.child.exitCode === null && this.child.signalCode === null) {
      const closed = new Promise((resolve) => this.child.once('close', resolve));
      this.child.kill('SIGTERM');
      await closed;
    }
  }
}

const SENDER = `
const [ip, port, hex, count, bind] = process.argv.slice(1);
const s = require('node:dgram').createSocket(ip.includes(':') ? 'udp6' : 'udp4');
const buf = Buffer.from(hex, 'hex');
let left = Number(count);
const send = () => s.send(buf, Number(port), ip, (err) => { if (err) { console.error(err.message); process.exit(1); } if (--left > 0) setTimeout(send, 20); else s.close(); });
if (bind) s.bind({ address: bind }, send); else send();
`;

/** Sends `payload` `count` times (20 ms apart) as UDP from namespace `ns`, in `to.ip`'s family; `bind` picks the source address. */
export async function sendUdp(ns: string, to: { ip: string; port: number }, payload: Buffer, opts: { count?: number; bind?: string } = {}): Promise<void> {
  await runCommand([process.execPath, '-e', SENDER, to.ip, String(to.port), payload.toString('hex'), String(opts.count ?? 1), opts.bind ?? ''], { netns: ns, timeoutMs: 15_000 });
}

/** Sends `count` datagrams at a time until `done()` or the deadline; true when done. */
export async function sendUntil(send: () => Promise<void>, done: () => boolean, timeoutMs = 15_000): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (!done()) {
    if (Date.now() > deadline) return false;
    await send();
    await sleep(200);
  }
  return true;
}

/** The source address `to` sees for a datagram `from` sends it. */
export async function seenSource(from: { ns: string }, to: { ns: string; ip: string }, tag: string, port: number): Promise<string | undefined> {
  const listener = await UdpListener.start(to.ns, port);
  try {
    await sendUntil(() => sendUdp(from.ns, { ip: to.ip, port }, Buffer.from(tag), { count: 2 }), () => listener.matching(tag).length > 0);
    return listener.matching(tag)[0]?.from;
  } finally {
    await listener.stop();
  }
}

// --- a hand-made VXLAN frame -------------------------------------------------------

function macBytes(mac: string): number[] {
  return mac.split(':').map((b) => parseInt(b, 16));
}

function ipv4Bytes(ip: string): number[] {
  return ip.split('.').map(Number);
}

/** RFC 1071: the ones' complement of the ones' complement sum of 16-bit words. */
export function internetChecksum(bytes: ArrayLike<number>): number {
  let sum = 0;
  for (let i = 0; i < bytes.length; i += 2) sum += (bytes[i]! << 8) | (bytes[i + 1] ?? 0);
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return ~sum & 0xffff;
}

export interface InnerUdp {
  vni: number;
  dstMac: string;
  srcMac: string;
  srcIp: string;
  dstIp: string;
  srcPort: number;
  dstPort: number;
  payload: Buffer;
}

/**
 * The UDP payload of a VXLAN packet (RFC 7348): the 8-byte VXLAN header, then
 * an Ethernet frame carrying IPv4/UDP, both checksums correct. Sent to a
 * VTEP's port 8472 it is what a peer's kernel would have sent.
 */
export function vxlanUdpFrame(f: InnerUdp): Buffer {
  const payload = [...f.payload];
  const udpLen = 8 + payload.length;
  const ip = [
    0x45, 0, (20 + udpLen) >> 8, (20 + udpLen) & 0xff, // IPv4, 20-byte header; total length
    0, 0, 0x40, 0, // id 0, don't fragment
    64, 17, 0, 0, // TTL, UDP, checksum (below)
    ...ipv4Bytes(f.srcIp),
    ...ipv4Bytes(f.dstIp),
  ];
  const ipSum = internetChecksum(ip);
  ip[10] = ipSum >> 8;
  ip[11] = ipSum & 0xff;
  const udp = [f.srcPort >> 8, f.srcPort & 0xff, f.dstPort >> 8, f.dstPort & 0xff, udpLen >> 8, udpLen & 0xff, 0, 0];
  const pseudo = [...ip.slice(12, 20), 0, 17, udpLen >> 8, udpLen & 0xff];
  const udpSum = internetChecksum([...pseudo, ...udp, ...payload]) || 0xffff; // 0 means "no checksum"
  udp[6] = udpSum >> 8;
  udp[7] = udpSum & 0xff;
  const vxlan = [0x08, 0, 0, 0, (f.vni >> 16) & 0xff, (f.vni >> 8) & 0xff, f.vni & 0xff, 0]; // I flag: the VNI is valid
  const eth = [...macBytes(f.dstMac), ...macBytes(f.srcMac), 0x08, 0x00];
  return Buffer.from([...vxlan, ...eth, ...ip, ...udp, ...payload]);
}
