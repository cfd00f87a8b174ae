// udp backend: flannel's wire format (the inner IP packet as the payload of a
// UDP datagram to port 8285), carried by the native loop in native/. The loop
// runs in a process of its own (loop-process.ts) that outlives the agent; the
// kernel side is one TUN device and one route per family; the peer table is
// pushed to the loop process after every reconcile. A dual-stack node's loop
// receives on the interface's IPv4 and IPv6 addresses alike.
import { availableParallelism } from 'node:os';
import { extSides, MIN_DEVICE_MTU, type Backend, type BackendFactory } from '../backend.js';
import { NodeFamilies } from '../peers.js';
import { parseUdpOptions } from './options.js';
import { confNetworks } from '../../src/config/netconf.js';
import { WeftError } from '../../src/errors.js';
import { UDP, UDP_DEVICE, udpDesired, udpMtu, udpOverhead, udpTable } from './desired.js';
import type { LoopStatus } from './loop-client.js';
import { LoopSupervisor } from './loop-supervisor.js';
import { udpMetrics } from './metrics.js';
import type { DropReason, UdpCounters, UdpFeatures, UdpLoopOptions } from './native.js';

/** How often drop counters are checked for the (rate-limited) warning. */
const DROP_REPORT_MS = 30_000;

/** The udp backend also answers for its loop's counters and probed features (as last polled, every second). */
export interface UdpBackend extends Backend {
  counters(): UdpCounters;
  features(): UdpFeatures;
  /** Why the loop process cannot carry traffic now (not running, not answering). */
  notReadyReason(): string | undefined;
  /** Polls the loop process now, for counters() and features() fresher than a second. */
  poll(): Promise<void>;
}

export const createUdpBackend: BackendFactory = async (ctx): Promise<UdpBackend> => {
  const options = parseUdpOptions(ctx.config.backend.raw);
  const { ext, logger } = ctx;
  const networks = confNetworks(ctx.config);
  // The underlay's side of each family: the costliest one's headers decide the MTU.
  const sides = extSides(ext, ctx.config.ipv6 !== undefined);
  const overhead = Math.max(...sides.map(udpOverhead));
  const mtu = udpMtu(options, sides);
  // The kernel keeps IPv6 off a device below 1280 bytes.
  const min = MIN_DEVICE_MTU[networks.some((n) => n.family === 6) ? 6 : 4];
  if (mtu < min) {
    throw new WeftError(`${ext.name} has MTU ${ext.mtu}, too small for the udp backend (${overhead} bytes of headers, and ${UDP_DEVICE} needs at least ${min})`, `raise the MTU of ${ext.name}`);
  }
  if (mtu > ext.mtu - overhead) {
    logger.warn(
      { mtu, underlayMtu: ext.mtu },
      `Backend.MTU ${mtu} plus ${overhead} bytes of headers exceeds ${ext.name}'s MTU ${ext.mtu}; oversized packets will be refused with ICMP fragmentation-needed`,
    );
  }
  const [address, addressV6] = sides.map((s) => s.ip.toString()) as [string, string | undefined];
  const loopOptions: UdpLoopOptions = {
    device: UDP_DEVICE,
    port: options.port,
    bindAddress: address,
    ...(addressV6 ? { bindAddressV6: addressV6 } : {}),
    mode: options.mode,
    queues: options.mode === 'simple' ? 1 : options.queues ?? Math.min(availableParallelism(), 4),
  };
  const listening = [address, ...(addressV6 ? [`[${addressV6}]`] : [])].map((a) => `${a}:${options.port}`).join(' and ');
  const loop = await LoopSupervisor.open({ runDir: ctx.runDir, options: loopOptions, logger, explain: (err) => explainLoopError(err, options.port, [address, addressV6].filter(Boolean).join(' or ')) });
  logger.info(
    { loopPid: loop.pid, features: loop.last.features },
    `udp backend: ${loop.adopted ? 'adopted the running loop process' : 'started the loop process'}; ${UDP_DEVICE} up, listening on ${listening}`,
  );

  const families = new NodeFamilies(logger);
  const dropReport = reportDrops(() => loop.last, logger);
  return {
    type: UDP,
    mtu,
    backendData: null,
    backendV6Data: null,
    desired: (own, peers) => udpDesired(families, own, peers, ext, networks, mtu),
    sync: async (own, peers) => {
      const reopened = await loop.setPeers(udpTable(families, own, peers, ext));
      // The next reconcile gives the recreated device its address and route back.
      if (reopened) logger.warn(`${UDP_DEVICE} was deleted under the udp loop; the loop process recreated it`);
    },
    stop: async ({ teardown }) => {
      clearInterval(dropReport);
      await loop.stop({ teardown });
    },
    notReadyReason: () => loop.notReadyReason(),
    poll: () => loop.poll(),
    counters: () => loop.last.counters,
    metrics: () => udpMetrics(loop.last.counters),
    features: () => loop.last.features,
  };
};

/** The loop process's startup error (the addon's errno code and message) as a cause and a fix. */
function explainLoopError(err: unknown, port: number, address: string): unknown {
  const code = (err as { code?: string }).code;
  const msg = (err as Error).message;
  switch (code) {
    case 'EPERM':
    case 'EACCES':
      return new WeftError(`udp backend: ${msg}`, 'run weft as root or with CAP_NET_ADMIN');
    case 'ENOENT':
    case 'ENODEV':
      return new WeftError(`udp backend: ${msg}`, 'load the tun module (modprobe tun) or give the container /dev/net/tun');
    case 'EADDRINUSE':
      return new WeftError(`udp backend: ${msg}`, `stop the other process using UDP port ${port} (flanneld?) or set Backend.Port`);
    case 'EADDRNOTAVAIL':
      return new WeftError(`udp backend: ${msg}`, `${address} is not an address of this node; check --iface/--public-ip`);
    case 'EINVAL':
    case 'EBUSY':
      return new WeftError(`udp backend: ${msg}`, `delete it (ip link del ${UDP_DEVICE}) and start weft again`);
    default:
      return err;
  }
}

/** Logs inbound/outbound drops at most once per interval, as deltas by reason. */
function reportDrops(current: () => LoopStatus, logger: { warn(obj: object, msg: string): void }): NodeJS.Timeout {
  let last: UdpCounters | undefined;
  let lastPid: number | undefined;
  const timer = setInterval(() => {
    const { pid, counters: now } = current();
    // A restarted loop process starts its counters from zero.
    if (pid !== lastPid) last = undefined;
    lastPid = pid;
    if (last) {
      const delta = (a: Record<DropReason, number>, b: Record<DropReason, number>) =>
        Object.fromEntries(Object.entries(a).filter(([k, v]) => v > b[k as DropReason]).map(([k, v]) => [k, v - b[k as DropReason]]));
      const inbound = delta(now.dropsInbound, last.dropsInbound);
      const outbound = delta(now.dropsOutbound, last.dropsOutbound);
      if (Object.keys(inbound).length || Object.keys(outbound).length) {
        logger.warn({ inbound, outbound }, `udp backend dropped packets in the last ${DROP_REPORT_MS / 1000}s`);
      }
    }
    last = now;
  }, DROP_REPORT_MS);
  timer.unref();
  return timer;
}
