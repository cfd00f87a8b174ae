// The measuring tools' output reduced to the figures `weft bench compare`
// keeps: iperf3 (TCP and UDP, JSON), iputils ping and sockperf ping-pong.
// Output a run cannot be read from (empty, cut short, another tool's, an
// error report) throws one Error naming the tool and what was missing, with
// the start of the output so the reader can see what came instead.
import { outputExcerpt, parseIperfJson, readIperfJson, type IperfDocument, type IperfSum } from '../iperf.js';

export interface IperfTcpFigures {
  /** Received throughput over all streams, Gbit/s. */
  gbps: number;
  /** Segments retransmitted by the sender, all streams. */
  retransmits: number;
  /** Bytes received, all streams. */
  bytes: number;
}

export interface IperfUdpFigures {
  /** Received throughput, Gbit/s (what arrived, not what was sent). */
  gbps: number;
  lossPercent: number;
  jitterMs: number;
  /** Bytes received. */
  bytes: number;
  /** Datagrams sent. */
  packets: number;
  /** Datagrams the receiver counted as lost (gaps in the sequence numbers). */
  lostPackets: number;
}

export interface PingFigures {
  sent: number;
  /** Replies, duplicates not counted (ping's own summary figure). */
  received: number;
  /** Round-trip time of each reply, in the order they came; duplicates left out. */
  rttsMs: number[];
}

export interface SockperfFigures {
  /** Round trips per second: sockperf ping-pong keeps one message in flight, so this is its transaction rate. */
  perSecond: number;
  /** Round-trip time percentiles and mean, microseconds. */
  p50Us: number;
  p99Us: number;
  avgUs: number;
}

const num = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v);

function checkIperfProtocol(doc: IperfDocument, want: 'TCP' | 'UDP'): void {
  const protocol = doc.start?.test_start?.protocol;
  if (protocol && protocol !== want) throw new Error(`iperf3 output is a ${protocol} test where a ${want} one was expected (${want === 'UDP' ? 'add' : 'drop'} -u)`);
}

/** `iperf3 -J` of a TCP run, one stream or several (`-P 4`): the sums over all streams. */
export function parseIperfTcp(text: string): IperfTcpFigures {
  checkIperfProtocol(readIperfJson(text), 'TCP');
  const r = parseIperfJson(text);
  return { gbps: r.bitsPerSecond / 1e9, retransmits: r.retransmits, bytes: r.bytes };
}

/**
 * `iperf3 -u -J`. iperf3 3.12 reports a UDP run three times over: end.sum
 * (sender's counts with the receiver's loss and jitter), end.sum_sent and
 * end.sum_received. Throughput and bytes come from sum_received, because
 * a sender at full rate can send far more than arrives; loss and jitter,
 * which only the receiver knows, from end.sum.
 */
export function parseIperfUdp(text: string): IperfUdpFigures {
  const doc = readIperfJson(text);
  checkIperfProtocol(doc, 'UDP');
  const sum: IperfSum | undefined = doc.end?.sum;
  const rx: IperfSum | undefined = doc.end?.sum_received;
  const missing = [
    ...(num(rx?.bits_per_second) && num(rx?.bytes) ? [] : ['end.sum_received']),
    ...(num(sum?.lost_percent) && num(sum?.jitter_ms) && num(sum?.packets) && num(sum?.lost_packets) ? [] : ['end.sum loss and jitter']),
  ];
  if (missing.length) throw new Error(`iperf3 UDP JSON has no ${missing.join(' and no ')}: ${outputExcerpt(text)}`);
  return {
    gbps: rx!.bits_per_second! / 1e9,
    lossPercent: sum!.lost_percent!,
    jitterMs: sum!.jitter_ms!,
    bytes: rx!.bytes!,
    packets: sum!.packets!,
    lostPackets: sum!.lost_packets!,
  };
}

// "64 bytes from 10.1.2.3: icmp_seq=1 ttl=64 time=0.032 ms", maybe ending "(DUP!)".
const PING_REPLY = /\bicmp_seq=\d+\b.*\btime=([\d.]+) ?ms/;
// "20 packets transmitted, 20 received, [+2 duplicates, ][+1 errors, ]0% packet loss, time 346ms"
const PING_SUMMARY = /^(\d+) packets transmitted, (\d+) (?:packets )?received\b/m;

/** iputils ping output: every reply's `time=` (duplicates left out) and the summary's counts. */
export function parsePing(text: string): PingFigures {
  const summary = PING_SUMMARY.exec(text);
  if (!summary) throw new Error(`ping printed no "packets transmitted" summary (cut short, or not ping): ${outputExcerpt(text)}`);
  const rttsMs = text
    .split('\n')
    .filter((line) => !line.includes('(DUP!)'))
    .map((line) => PING_REPLY.exec(line)?.[1])
    .filter((ms): ms is string => ms !== undefined)
    .map(Number);
  const received = Number(summary[2]);
  if (received > 0 && rttsMs.length === 0) throw new Error(`ping printed no per-reply time= lines for its ${received} replies (run it without -q): ${outputExcerpt(text)}`);
  return { sent: Number(summary[1]), received, rttsMs };
}

// sockperf colours some lines even into a pipe.
const ANSI_ESCAPE = /\x1b\[[0-9;]*m/g;

/**
 * `sockperf ping-pong` (UDP or --tcp) output. The figures are round trips:
 * with --full-rtt sockperf prints them as measured ("avg-rtt"); without it
 * it prints each round trip halved as a one-way "avg-latency", and this
 * doubles them back (exact to sockperf's 3 decimals), so a report compares
 * like with like, ping's RTT beside sockperf's. The rate comes from the
 * "[Valid Duration]" line, which leaves out the warm-up and the tail.
 */
export function parseSockperfPingPong(text: string): SockperfFigures {
  const clean = text.replace(ANSI_ESCAPE, '');
  const noReplies = /No messages were received from the server/.test(clean);
  if (noReplies) throw new Error('sockperf got no replies from the server: is `sockperf server` listening on that address and port?');
  const valid = /\[Valid Duration\] RunTime=([\d.]+) sec;.*ReceivedMessages=(\d+)/.exec(clean);
  if (!valid) throw new Error(`sockperf printed no "[Valid Duration]" line: ${outputExcerpt(clean)}`);
  const avg = /avg-(rtt|latency)=([\d.]+)/.exec(clean);
  if (!avg) throw new Error(`sockperf printed no avg-rtt or avg-latency line: ${outputExcerpt(clean)}`);
  const percentile = (p: string): number | undefined => {
    const m = new RegExp(`percentile ${p.replace('.', '\\.')} =\\s*([\\d.]+)`).exec(clean);
    return m ? Number(m[1]) : undefined;
  };
  const p50 = percentile('50.000');
  const p99 = percentile('99.000');
  if (p50 === undefined || p99 === undefined) throw new Error(`sockperf printed no percentile 50 and 99 lines (cut short?): ${outputExcerpt(clean)}`);
  const seconds = Number(valid[1]);
  if (!(seconds > 0)) throw new Error(`sockperf's measured duration is ${valid[1]} s: run it longer than its warm-up (-t above 1)`);
  const toRoundTrip = avg[1] === 'latency' ? 2 : 1;
  return {
    perSecond: Number(valid[2]) / seconds,
    p50Us: p50 * toRoundTrip,
    p99Us: p99 * toRoundTrip,
    avgUs: Number(avg[2]) * toRoundTrip,
  };
}
