// Measures the udp loop, one technique at a time, against a hand-built kernel
// VXLAN device between the same two namespaces, all in one run. A
// measurement, not a test: it asserts only that traffic flowed, and reports
// figures with t.comment (and as JSON under bench-results/). Opt-in, as it
// takes minutes, so it is not part of npm test: npx tap test/perf/udp-perf.test.ts
// Each variant is measured with TCP (one and four streams) and with inner UDP
// at the highest rate its sender reaches, datagrams that fit the smaller
// (VXLAN) tunnel MTU, received Gbit/s and loss: iperf3 -u (one datagram per
// system call), and a UDP GSO sender as QUIC stacks have (test/support/udp-flow.py,
// 16 datagrams per system call), which USO carries as superpackets.
import t from 'tap';
import { spawn } from 'node:child_process';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { waitListening } from '../../src/bench/iperf.js';
import { UDP_FLOW_SCRIPT } from '../support/udp-flow.js';
import { UdpTestbed, inNs, type NodeConfig, type NodeProcess, type TestbedNode } from '../support/udp-testbed.js';

const PREFIX = process.env.WEFT_UDP_PERF_PREFIX ?? 'wud';
const SECONDS = Number(process.env.WEFT_UDP_PERF_SECONDS ?? 5);
const ROUNDS = Number(process.env.WEFT_UDP_PERF_ROUNDS ?? 1);
const ONLY = process.env.WEFT_UDP_PERF_ONLY?.split(',');

interface Variant {
  name: string;
  /** What this step adds over the one before. */
  technique: string;
  config?: NodeConfig;
}

const off = { tso: false, gso: false, gro: false, coalesce: false, uso: false };
const VARIANTS: Variant[] = [
  { name: 'vxlan', technique: 'kernel VXLAN device, built by hand' },
  { name: 'simple', technique: 'one packet per system call (flannel-like)', config: { kind: 'loop', loop: { mode: 'simple' } } },
  { name: 'batch', technique: 'recvmmsg/sendmmsg batching, no offloads', config: { kind: 'loop', loop: { offload: off } } },
  { name: 'tso+gso', technique: 'TUN TSO superpackets split, sent with UDP GSO', config: { kind: 'loop', loop: { offload: { ...off, tso: true, gso: true } } } },
  { name: 'gro+coalesce', technique: 'UDP GRO and coalesced TUN writes (all offloads, 1 queue)', config: { kind: 'loop', loop: { queues: 1 } } },
  { name: 'uso-off', technique: 'as gro+coalesce, without UDP segmentation offload on TUN', config: { kind: 'loop', loop: { queues: 1, offload: { uso: false } } } },
  { name: 'verify', technique: 'as gro+coalesce, verifying every inner TCP/UDP checksum before coalescing', config: { kind: 'loop', loop: { queues: 1, verifyInnerChecksums: true } } },
  { name: 'multiqueue', technique: '2 queues, one worker and source port each', config: { kind: 'loop', loop: { queues: 2 } } },
];

/** Inner UDP datagram payload: fits VXLAN's 1450-byte pod MTU (IPv4 and UDP headers take 28). */
const UDP_LEN = 1450 - 28;

interface UdpSample {
  /** What the receiver got. */
  bps: number;
  lostPercent: number;
  jitterMs: number;
  /** Where datagrams were lost during the run, summed over both nodes. */
  losses: Record<string, number>;
}

interface Sample {
  bps: number;
  retransmits: number;
  /** System-wide busy core-seconds (user+system+irq+softirq) per Gbit moved. */
  systemCoreSecPerGbit: number;
  /** The two loop processes' utime+stime per Gbit. */
  loopCoreSecPerGbit: number;
  /** Where packets were lost during the run, summed over both nodes. */
  losses: Record<string, number>;
}

async function cpuTicks(): Promise<{ busy: number; total: number }> {
  const line = (await readFile('/proc/stat', 'utf8')).split('\n')[0]!;
  const v = line.trim().split(/\s+/).slice(1).map(Number);
  const idle = (v[3] ?? 0) + (v[4] ?? 0);
  const total = v.slice(0, 8).reduce((a, b) => a + b, 0);
  return { busy: total - idle, total };
}

async function procTicks(pids: number[]): Promise<number> {
  let sum = 0;
  for (const pid of pids) {
    // The child of `ip netns exec` is the node process itself (exec, same pid).
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => '');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    sum += Number(fields[11] ?? 0) + Number(fields[12] ?? 0);
  }
  return sum;
}

const HZ = 100;

/** Kernel drop counters that can explain retransmits, summed over the node namespaces. */
async function lossCounters(tb: UdpTestbed): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  const add = (k: string, v: number) => (out[k] = (out[k] ?? 0) + v);
  for (const n of tb.nodes) {
    for (const dev of ['weft0', n.dev, `${PREFIX}-h`]) {
      const r = await inNs(n.ns, 'ip', ['-j', '-s', 'link', 'show', dev]);
      if (r.code !== 0) continue;
      const st = JSON.parse(r.stdout)[0]?.stats64;
      add(`${dev.replace(/\d+$/, '')}TxDropped`, st?.tx?.dropped ?? 0);
      add(`${dev.replace(/\d+$/, '')}RxDropped`, st?.rx?.dropped ?? 0);
    }
    const snmp = await inNs(n.ns, 'nstat', ['-az', 'UdpRcvbufErrors', 'UdpSndbufErrors', 'IpExtInNoRoutes']);
    for (const m of snmp.stdout.matchAll(/^(\w+)\s+(\d+)/gm)) add(m[1]!, Number(m[2]));
  }
  for (const n of tb.nodes) {
    const snmp = await inNs(n.podNs, 'nstat', ['-az', 'TcpExtTCPRcvQDrop', 'TcpExtTCPBacklogDrop', 'TcpExtTCPOFOQueue', 'UdpRcvbufErrors', 'UdpSndbufErrors']);
    for (const m of snmp.stdout.matchAll(/^(\w+)\s+(\d+)/gm)) add(`pod${m[1]}`, Number(m[2]));
  }
  const softnet = await readFile('/proc/net/softnet_stat', 'utf8');
  add('softnetDropped', softnet.trim().split('\n').reduce((a, l) => a + parseInt(l.split(' ')[1] ?? '0', 16), 0));
  return out;
}

/** The loss counters that grew between two readings, by how much. */
function lossDelta(before: Record<string, number>, after: Record<string, number>): Record<string, number> {
  return Object.fromEntries(Object.entries(after).map(([k, v]) => [k, v - (before[k] ?? 0)]).filter(([, v]) => (v as number) > 0));
}

async function iperf(tb: UdpTestbed, client: TestbedNode, server: TestbedNode, streams: number, pids: number[]): Promise<Sample> {
  const srv = spawn('ip', ['netns', 'exec', server.podNs, 'iperf3', '-s', '-1', '-p', '5201'], { stdio: 'ignore' });
  try {
    await waitListening(server.podNs, 5201, 'tcp', 'iperf3 server');
    const l0 = await lossCounters(tb);
    const c0 = await cpuTicks();
    const p0 = await procTicks(pids);
    const r = await inNs(client.podNs, 'iperf3', ['-c', server.pod, '-p', '5201', '-J', '-t', String(SECONDS), '-P', String(streams)], (SECONDS + 30) * 1000);
    const c1 = await cpuTicks();
    const p1 = await procTicks(pids);
    const l1 = await lossCounters(tb);
    const losses = lossDelta(l0, l1);
    const j = JSON.parse(r.stdout);
    const bps = j.end?.sum_received?.bits_per_second ?? 0;
    const gbit = (bps * SECONDS) / 1e9;
    return {
      bps,
      retransmits: j.end?.sum_sent?.retransmits ?? 0,
      systemCoreSecPerGbit: gbit ? (c1.busy - c0.busy) / HZ / gbit : NaN,
      loopCoreSecPerGbit: gbit && pids.length ? (p1 - p0) / HZ / gbit : 0,
      losses,
    };
  } finally {
    srv.kill('SIGKILL');
  }
}

async function iperfUdp(tb: UdpTestbed, client: TestbedNode, server: TestbedNode): Promise<UdpSample> {
  const srv = spawn('ip', ['netns', 'exec', server.podNs, 'iperf3', '-s', '-1', '-p', '5202'], { stdio: 'ignore' });
  try {
    await waitListening(server.podNs, 5202, 'tcp', 'iperf3 server');
    const l0 = await lossCounters(tb);
    // -b 0: as fast as the sender goes.
    const r = await inNs(client.podNs, 'iperf3', ['-c', server.pod, '-p', '5202', '-J', '-u', '-b', '0', '-l', String(UDP_LEN), '-t', String(SECONDS)], (SECONDS + 30) * 1000);
    const l1 = await lossCounters(tb);
    const losses = lossDelta(l0, l1);
    const sum = JSON.parse(r.stdout).end?.sum ?? {};
    const lost = Number(sum.lost_percent ?? 100);
    // iperf3 3.12 reports the sender's rate in end.sum; the receiver got the rest.
    return { bps: Number(sum.bits_per_second ?? 0) * (1 - lost / 100), lostPercent: lost, jitterMs: Number(sum.jitter_ms ?? NaN), losses };
  } finally {
    srv.kill('SIGKILL');
  }
}

/** The UDP GSO flow: the receiver takes whole trains (UDP_GRO) to keep up. */
async function gsoFlow(tb: UdpTestbed, client: TestbedNode, server: TestbedNode): Promise<UdpSample> {
  const srv = spawn('ip', ['netns', 'exec', server.podNs, 'python3', UDP_FLOW_SCRIPT, 'recv', '7001', '--gro', '--idle-ms', '1500'], { stdio: ['ignore', 'pipe', 'ignore'] });
  let out = '';
  srv.stdout.on('data', (d: Buffer) => (out += d.toString()));
  try {
    for (let i = 0; i < 100 && !out.includes('listening'); i++) await new Promise((r) => setTimeout(r, 20));
    const l0 = await lossCounters(tb);
    const r = await inNs(client.podNs, 'python3', [UDP_FLOW_SCRIPT, 'send', server.pod, '7001', '--seconds', String(SECONDS), '--size', String(UDP_LEN), '--train', '16'], (SECONDS + 30) * 1000);
    await new Promise<void>((resolve) => (srv.exitCode !== null ? resolve() : srv.once('exit', () => resolve())));
    const l1 = await lossCounters(tb);
    const losses = lossDelta(l0, l1);
    const sent = Number(JSON.parse(r.stdout || '{}').sent ?? 0);
    const got = JSON.parse(out.trim().split('\n').pop() || '{}');
    const received = Number(got.received ?? 0);
    return { bps: Number(got.bitsPerSecond ?? 0), lostPercent: sent ? 100 * (1 - received / sent) : 100, jitterMs: NaN, losses };
  } finally {
    srv.kill('SIGKILL');
  }
}

async function idleRttMs(from: TestbedNode, to: TestbedNode): Promise<number> {
  const r = await inNs(from.podNs, 'ping', ['-n', '-q', '-c', '30', '-i', '0.02', to.pod], 30_000);
  const m = /= [\d.]+\/([\d.]+)\//.exec(r.stdout);
  return m ? Number(m[1]) : NaN;
}

async function setPodMtu(tb: UdpTestbed, mtu: number): Promise<void> {
  for (const n of tb.nodes) {
    await inNs(n.podNs, 'ip', ['link', 'set', `${PREFIX}-pod`, 'mtu', String(mtu)]);
    await inNs(n.ns, 'ip', ['link', 'set', `${PREFIX}-h`, 'mtu', String(mtu)]);
    await inNs(n.podNs, 'ip', ['route', 'flush', 'cache']);
  }
}

async function vxlan(tb: UdpTestbed, up: boolean): Promise<void> {
  const [a, b] = tb.nodes as [TestbedNode, TestbedNode];
  for (const [me, peer, i] of [[a, b, 1], [b, a, 2]] as const) {
    if (!up) {
      await inNs(me.ns, 'ip', ['link', 'del', `${PREFIX}-vx`]);
      continue;
    }
    await inNs(me.ns, 'ip', ['link', 'add', `${PREFIX}-vx`, 'type', 'vxlan', 'id', '42', 'dstport', '4789', 'local', me.underlay, 'remote', peer.underlay, 'dev', me.dev]);
    await inNs(me.ns, 'ip', ['addr', 'add', `10.99.0.${i}/24`, 'dev', `${PREFIX}-vx`]);
    await inNs(me.ns, 'ip', ['link', 'set', `${PREFIX}-vx`, 'up']);
    await inNs(me.ns, 'ip', ['route', 'replace', peer.subnet, 'via', `10.99.0.${3 - i}`]);
  }
}

{
  const tb = await UdpTestbed.create({ prefix: PREFIX, nodes: 2 });
  t.teardown(() => tb.destroy());
  const [a, b] = tb.nodes as [TestbedNode, TestbedNode];
  const results: Record<string, { single: Sample[]; four: Sample[]; udp: UdpSample[]; udpGso: UdpSample[]; rttMs: number[]; features?: unknown }> = {};
  const variants = VARIANTS.filter((v) => !ONLY || ONLY.includes(v.name));

  for (let round = 0; round < ROUNDS; round++) {
    for (const v of variants) {
      const res = (results[v.name] ??= { single: [], four: [], udp: [], udpGso: [], rttMs: [] });
      let procs: NodeProcess[] = [];
      if (v.config) {
        await setPodMtu(tb, 1472);
        procs = await Promise.all([tb.startNode(a, v.config), tb.startNode(b, v.config)]);
        await Promise.all(procs.map((p, i) => p.sync(tb.peersOf(tb.nodes[i]!))));
        res.features = await procs[0]!.features();
      } else {
        await setPodMtu(tb, 1450);
        await vxlan(tb, true);
      }
      try {
        await inNs(a.podNs, 'ping', ['-c', '3', '-i', '0.2', '-W', '2', b.pod]);
        const pids = procs.map((p) => p.pid!).filter(Boolean);
        res.single.push(await iperf(tb, a, b, 1, pids));
        res.four.push(await iperf(tb, a, b, 4, pids));
        res.udp.push(await iperfUdp(tb, a, b));
        res.udpGso.push(await gsoFlow(tb, a, b));
        res.rttMs.push(await idleRttMs(a, b));
      } finally {
        if (v.config) await Promise.all(procs.map((p) => p.stop(false)));
        else await vxlan(tb, false);
      }
    }
  }

  const median = (xs: number[]) => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)] ?? NaN;
  const med = (s: Sample[], k: Exclude<keyof Sample, 'losses'>) => median(s.map((x) => x[k]));
  const vx = results.vxlan;
  const simple = results.simple;
  const rows = variants.map((v) => {
    const r = results[v.name]!;
    const one = med(r.single, 'bps');
    const four = med(r.four, 'bps');
    const udp = median(r.udp.map((x) => x.bps));
    const udpGso = median(r.udpGso.map((x) => x.bps));
    return {
      variant: v.name,
      technique: v.technique,
      singleGbps: +(one / 1e9).toFixed(2),
      fourGbps: +(four / 1e9).toFixed(2),
      singleVsVxlan: vx ? +(one / med(vx.single, 'bps')).toFixed(2) : null,
      fourVsVxlan: vx ? +(four / med(vx.four, 'bps')).toFixed(2) : null,
      udpGbps: +(udp / 1e9).toFixed(2),
      udpLossPercent: +median(r.udp.map((x) => x.lostPercent)).toFixed(1),
      udpVsVxlan: vx ? +(udp / median(vx.udp.map((x) => x.bps))).toFixed(2) : null,
      udpLosses: r.udp.map((x) => x.losses),
      udpGsoGbps: +(udpGso / 1e9).toFixed(2),
      udpGsoLossPercent: +median(r.udpGso.map((x) => x.lostPercent)).toFixed(1),
      udpGsoVsVxlan: vx ? +(udpGso / median(vx.udpGso.map((x) => x.bps))).toFixed(2) : null,
      udpGsoLosses: r.udpGso.map((x) => x.losses),
      singleVsSimple: simple ? +(one / med(simple.single, 'bps')).toFixed(1) : null,
      systemCoreSecPerGbit: +med(r.single, 'systemCoreSecPerGbit').toFixed(3),
      loopCoreSecPerGbit: +med(r.single, 'loopCoreSecPerGbit').toFixed(3),
      retransmits: med(r.single, 'retransmits'),
      losses: r.single.map((x) => x.losses),
      idleRttMs: +median(r.rttMs).toFixed(3),
      rttAddedOverVxlanMs: vx ? +(median(r.rttMs) - median(vx.rttMs)).toFixed(3) : null,
    };
  });
  for (const row of rows) t.comment(JSON.stringify(row));
  for (const v of variants) t.ok(med(results[v.name]!.single, 'bps') > 0, `${v.name}: traffic flowed`);
  const load = (await readFile('/proc/loadavg', 'utf8')).trim();
  await mkdir('bench-results', { recursive: true });
  await writeFile(`bench-results/udp-perf-${Date.now()}.json`, JSON.stringify({ seconds: SECONDS, rounds: ROUNDS, loadavg: load, rows, raw: results }, null, 2));
  t.comment(`load average at the end: ${load}`);
}
