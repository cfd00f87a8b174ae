// The child process of one udp testbed node (see udp-testbed.ts): runs the
// udp backend (kind "backend") or the bare native loop (kind "loop") inside
// the node's namespace, stands in for the reconciler with ip(8), and answers
// JSON lines on stdin: sync, counters, features, stop.
import { execFileSync } from 'node:child_process';
import { createInterface } from 'node:readline';
import { pino } from 'pino';
import { createUdpBackend, type UdpBackend } from '../../backends/udp/index.js';
import { loadUdpAddon } from '../../backends/udp/native.js';
import type { NetConf } from '../../src/config/netconf.js';
import { Cidr, IP } from '../../src/core/cidr.js';
import type { Lease } from '../../src/subnet/lease.js';
import { extWithIPv6, withIPv6 } from './dual-stack.js';
import type { NodeConfig, PeerSpec, TestbedNode } from './udp-testbed.js';

interface ChildConfig extends NodeConfig {
  node: TestbedNode;
  network: string;
  network6: string;
  underlayMtu: number;
}

interface NodeApi {
  sync(peers: PeerSpec[]): Promise<unknown>;
  counters(): Promise<unknown> | unknown;
  features(): Promise<unknown> | unknown;
  stop(teardown: boolean): Promise<void>;
}

const cfg = JSON.parse(process.argv[2] ?? '{}') as ChildConfig;
const out = (o: unknown): void => void process.stdout.write(JSON.stringify(o) + '\n');
const ip = (...args: string[]): void => void execFileSync('ip', args, { stdio: ['ignore', 'ignore', 'pipe'] });
const stack = cfg.stack ?? 'ipv4';
const network = Cidr.parse(stack === 'ipv6' ? cfg.network6 : cfg.network);
const network6 = Cidr.parse(cfg.network6);
const { node } = cfg;

/** A lease as the agent would pass it for this node's stack: IPv4 with the IPv6 half (dual), or the IPv6 half alone. */
function lease(p: PeerSpec): Lease {
  const attrs = { backendType: p.backendType ?? 'udp', backendData: null, ...(p.borrowedIPs ? { borrowedIPs: p.borrowedIPs.map((c) => Cidr.parse(c)) } : {}) };
  if (stack === 'ipv6') return { subnet: Cidr.parse(p.ipv6Subnet!), attrs: { ...attrs, publicIP: IP.parse(p.publicIPv6!) } };
  const l: Lease = { subnet: Cidr.parse(p.subnet), attrs: { ...attrs, publicIP: IP.parse(p.publicIP) } };
  return stack === 'dual' && p.ipv6Subnet ? withIPv6(l, p.ipv6Subnet, p.publicIPv6!) : l;
}
const own = lease({ subnet: node.subnet, publicIP: node.underlay, ipv6Subnet: node.subnet6, publicIPv6: node.underlay6, ...(cfg.borrowedIPs ? { borrowedIPs: cfg.borrowedIPs } : {}) });
/** The node's subnets in the families it runs. */
const ownSubnets = [own.subnet, ...(own.ipv6Subnet ? [own.ipv6Subnet] : [])];

async function backendApi(): Promise<NodeApi> {
  const logger = pino({ level: 'warn' }, process.stderr);
  const config: NetConf = { network, subnetLen: own.subnet.prefixLen, subnetMin: own.subnet, subnetMax: own.subnet, backend: { type: 'udp', raw: cfg.backend ?? {} } };
  if (own.ipv6Subnet) config.ipv6 = { network: network6, subnetLen: 64, subnetMin: own.ipv6Subnet, subnetMax: own.ipv6Subnet };
  const underlay = own.attrs.publicIP;
  const single = { name: node.dev, ip: underlay, publicIP: underlay, mtu: cfg.underlayMtu, connected: [] };
  const ext = own.ipv6Subnet ? extWithIPv6(single, node.underlay6, []) : single;
  const backend = (await createUdpBackend({ config, ext, logger, nodeName: cfg.node.ns, runDir: cfg.node.runDir })) as UdpBackend;
  // Stands in for the reconciler: applies the desired state with ip(8).
  const reconcile = (): void => {
    const state = backend.desired(own, []);
    for (const l of state.links) ip('link', 'set', l.name, 'mtu', String(l.mtu), 'up');
    for (const a of state.addrs) ip('addr', 'replace', a.cidr, 'dev', a.dev);
    for (const r of state.routes) ip('route', 'replace', r.dst, 'dev', r.dev!, 'proto', '147');
  };
  reconcile();
  return {
    sync: async (peers) => {
      await backend.sync!(own, peers.map(lease));
      reconcile();
      return { ok: true };
    },
    counters: async () => (await backend.poll(), backend.counters()),
    features: async () => (await backend.poll(), backend.features()),
    stop: (teardown) => backend.stop({ teardown }),
  };
}

function loopApi(): NodeApi {
  const addon = loadUdpAddon();
  const opts = cfg.loop ?? {};
  const dual = stack === 'dual';
  const loop = new addon.UdpLoop({ device: 'weft0', port: 8285, bindAddress: own.attrs.publicIP.toString(), ...(dual ? { bindAddressV6: node.underlay6 } : {}), ...opts });
  loop.start();
  ip('link', 'set', 'weft0', 'mtu', String(opts.mtu ?? cfg.underlayMtu - (stack === 'ipv4' ? 28 : 48)), 'up');
  for (const s of ownSubnets) ip('addr', 'replace', `${s.ip}/${s.ip.bits}`, 'dev', 'weft0');
  for (const n of dual ? [network, network6] : [network]) ip('route', 'replace', n.toString(), 'dev', 'weft0', 'proto', '147');
  return {
    sync: async (peers) => {
      const leases = peers.filter((p) => (p.backendType ?? 'udp') === 'udp').map(lease);
      const entries = leases.flatMap((l) => [
        { subnet: l.subnet.toString(), publicIP: l.attrs.publicIP.toString() },
        ...(l.ipv6Subnet ? [{ subnet: l.ipv6Subnet.toString(), publicIP: l.attrs.publicIPv6!.toString() }] : []),
      ]);
      return { entries: loop.setPeers(entries, ownSubnets.map(String)) };
    },
    counters: () => loop.counters(),
    features: () => loop.features(),
    stop: async (teardown) => loop.stop(teardown),
  };
}

const api = cfg.kind === 'backend' ? await backendApi() : loopApi();
let stopping = false;
const stop = async (teardown: boolean): Promise<void> => {
  if (stopping) return;
  stopping = true;
  await api.stop(teardown);
};
process.on('SIGTERM', () => void stop(false).then(() => process.exit(0)));
const rl = createInterface({ input: process.stdin });
rl.on('close', () => void stop(false).then(() => process.exit(0)));
rl.on('line', async (line) => {
  const cmd = JSON.parse(line) as { op: string; peers?: PeerSpec[]; teardown?: boolean };
  try {
    if (cmd.op === 'sync') out(await api.sync(cmd.peers ?? []));
    else if (cmd.op === 'counters') out(await api.counters());
    else if (cmd.op === 'features') out(await api.features());
    else if (cmd.op === 'stop') {
      await stop(!!cmd.teardown);
      out({ stopped: true });
      process.exit(0);
    } else out({ error: `unknown op ${cmd.op}` });
  } catch (e) {
    out({ error: String((e as Error)?.message ?? e) });
  }
});
out({ ready: true, pid: process.pid });
