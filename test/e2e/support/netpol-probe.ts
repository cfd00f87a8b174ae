// Servers and probes for the NetworkPolicy matrix.
//
// Every pod runs socat echo servers on TCP and UDP 80 and 81 (and UDP 53,
// the port a default-deny-egress case leaves open for DNS), plus a raw SCTP
// receiver (socat). A probe round starts one bash per source pod (one `ip
// netns exec`), which starts all that pod's probes in the background and
// waits: a TCP or UDP probe prints its token when the echo comes back.
//
// SCTP is probed at the packet level: this machine's kernel has no SCTP
// sockets (socket(AF_INET, SOCK_STREAM, IPPROTO_SCTP) fails), yet nftables
// matches SCTP ports and conntrack tracks SCTP, which is what policy
// enforcement acts on. So a probe is a real SCTP INIT (common header,
// verification tag 0, CRC32c, an INIT chunk whose initiate tag names the
// probe) sent as raw IP protocol 132, and it passes when the destination
// pod's raw receiver got that INIT. The INITs leave through one long-lived
// socat per ordered pod pair (started with the pods): a socat per probe
// would cost ~8 ms of CPU each, 576 of them per step of four labs.
import { readFile } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { createConnection } from 'node:net';
import { join } from 'node:path';
import type { Lab } from '../../../src/lab/lab.js';
import { key, type PortKey, type Protocol } from './netpol-truth.js';

/** A pod as the probes see it: its id in the tables, its network namespace, its IPv4 address. */
export interface ProbePod {
  id: string;
  ns: string;
  ip: string;
}

/** Ports with an echo server in every pod (SCTP: any port reaches the raw receiver). */
export const SERVED: { protocol: 'TCP' | 'UDP'; port: number }[] = [
  { protocol: 'TCP', port: 80 },
  { protocol: 'TCP', port: 81 },
  { protocol: 'UDP', port: 80 },
  { protocol: 'UDP', port: 81 },
  { protocol: 'UDP', port: 53 },
];

/** The file a pod's SCTP receiver appends every INIT it gets to. */
export function sctpInbox(dir: string, pod: ProbePod): string {
  return join(dir, `${pod.ns}.sctp-inbox`);
}

/**
 * Starts the pod's servers as one detached process group (bash and its
 * socats); returns the group's pid, for stopGroup.
 */
export function startServers(lab: Lab, pod: ProbePod, dir: string): number {
  const lines = SERVED.map(({ protocol, port }) =>
    // backlog: socat's default (5) overflows when eight pods connect at once, and a dropped SYN costs a second.
    protocol === 'TCP' ? `socat TCP4-LISTEN:${port},reuseaddr,fork,backlog=128 PIPE &` : `socat UDP4-RECVFROM:${port},reuseaddr,fork PIPE &`,
  );
  // IP4-RECV hands over the SCTP packet without its IP header.
  lines.push(`socat -u IP4-RECV:132 OPEN:${sctpInbox(dir, pod)},creat,append &`, 'wait');
  return lab.spawn(pod, ['bash', '-c', lines.join('\n')], { logFile: join(dir, `${pod.ns}.servers.log`) }).pid;
}

/** Ends a process group this module started (a pod's servers, a flow). */
export function stopGroup(pid: number): void {
  try {
    process.kill(-pid, 'SIGKILL');
  } catch {
    // already gone with its namespace
  }
}

/**
 * A long-lived TCP connection from `from` to `to`'s echo server on `port`:
 * a counter line every 50 ms, the echoes appended to `file`. Returns the
 * process group's pid (stopGroup ends it).
 */
export function startEchoFlow(lab: Lab, from: ProbePod, to: ProbePod, port: number, file: string): number {
  const script = `i=0; while sleep 0.05; do echo $((i++)); done | socat - TCP4:${to.ip}:${port} >> ${file}`;
  return lab.spawn(from, ['bash', '-c', script], { logFile: `${file}.log` }).pid;
}

/** Echoes a flow got back so far. */
export async function echoesIn(file: string): Promise<number> {
  return (await readFile(file, 'utf8').catch(() => '')).split('\n').filter(Boolean).length;
}

/** The unix socket of the SCTP sender from `from` to `to`: each connection's bytes leave `from` as one raw IP datagram to `to`. */
export function sctpSenderPath(dir: string, from: ProbePod, to: ProbePod): string {
  return join(dir, `${from.ns}.${to.ns}.sctp`);
}

/** Starts the SCTP sender from `from` to `to` (a detached socat in `from`); returns its pid, for stopGroup. */
export function startSctpSender(lab: Lab, dir: string, from: ProbePod, to: ProbePod): number {
  const path = sctpSenderPath(dir, from, to);
  return lab.spawn(from, ['socat', '-u', `UNIX-LISTEN:${path},fork,unlink-early`, `IP4-SENDTO:${to.ip}:132`], { logFile: join(dir, `${from.ns}.sctp-senders.log`) }).pid;
}

/** Hands `bytes` to a sender; resolves once written (an absent sender is a probe that fails). */
function sendThrough(path: string, bytes: Buffer): Promise<void> {
  return new Promise((resolve) => {
    const socket = createConnection({ path });
    socket.on('error', () => resolve());
    socket.on('close', () => resolve());
    socket.end(bytes);
  });
}

/** True when every server of the pod is listening (ss inside the pod). */
export async function serversListening(lab: Lab, pod: ProbePod): Promise<boolean> {
  const r = await lab.exec(pod, ['ss', '-Hlntuw'], { check: false });
  const want = [...SERVED.map((s) => `${s.protocol === 'TCP' ? 'tcp' : 'udp'} .*:${s.port}\\b`), 'raw .*:132\\b|raw .*:sctp\\b'];
  return want.every((w) => new RegExp(w, 'm').test(r.stdout));
}

// --- SCTP INIT packets --------------------------------------------------------

const CRC32C_TABLE = (() => {
  const table = new Uint32Array(256);
  for (let i = 0; i < 256; i++) {
    let c = i;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1;
    table[i] = c >>> 0;
  }
  return table;
})();

/** CRC32c (Castagnoli), the SCTP checksum (RFC 9260 appendix A). */
export function crc32c(bytes: Uint8Array): number {
  let c = 0xffffffff;
  for (const b of bytes) c = CRC32C_TABLE[(c ^ b) & 0xff]! ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

export const SCTP_INIT_BYTES = 32;

/** An SCTP packet holding one INIT chunk from `srcPort` to `dstPort`, its initiate tag `tag` (non-zero). */
export function sctpInit(srcPort: number, dstPort: number, tag: number): Buffer {
  const p = Buffer.alloc(SCTP_INIT_BYTES);
  p.writeUInt16BE(srcPort, 0);
  p.writeUInt16BE(dstPort, 2);
  // Verification tag 0 (an INIT's) at 4; checksum at 8, filled in last.
  p[12] = 1; // chunk type INIT
  p[13] = 0; // flags
  p.writeUInt16BE(20, 14); // chunk length
  p.writeUInt32BE(tag >>> 0, 16); // initiate tag
  p.writeUInt32BE(65536, 20); // a_rwnd
  p.writeUInt16BE(1, 24); // outbound streams
  p.writeUInt16BE(1, 26); // inbound streams
  p.writeUInt32BE(1, 28); // initial TSN
  // The CRC is stored in network order of its little-endian reflection: write it little-endian.
  p.writeUInt32LE(crc32c(p), 8);
  return p;
}

/** (dstPort, initiate tag) of every INIT in a receiver's file (records of SCTP_INIT_BYTES). */
export function initsIn(bytes: Buffer): { dstPort: number; tag: number }[] {
  const out: { dstPort: number; tag: number }[] = [];
  for (let at = 0; at + SCTP_INIT_BYTES <= bytes.length; at += SCTP_INIT_BYTES) {
    if (bytes[at + 12] !== 1) continue;
    out.push({ dstPort: bytes.readUInt16BE(at + 2), tag: bytes.readUInt32BE(at + 16) });
  }
  return out;
}

// --- a probe round ------------------------------------------------------------

export interface ProbeSpec {
  port: PortKey;
  from: ProbePod;
  to: ProbePod;
}

/** Probe rounds in one lab; files under `dir` (the pods' SCTP inboxes, each round's INITs). */
export class Prober {
  private rounds = 0;

  constructor(
    private readonly lab: Lab,
    private readonly dir: string,
  ) {}

  /**
   * Runs every probe once, all at once (one bash per source pod); `timeoutS`
   * bounds a TCP connect and the wait for an echo. Returns key() -> reached.
   */
  run(probes: readonly ProbeSpec[], timeoutS: number): Promise<Map<string, boolean>> {
    this.rounds = (this.rounds % 0xffff) + 1;
    return probeRound(this.lab, this.dir, this.rounds, probes, timeoutS);
  }
}

/**
 * What every source pod's bash defines: a TCP or UDP probe opens a real
 * socket with bash's own /dev/tcp or /dev/udp (no process is started per
 * probe: socat per probe cost ~5 ms of CPU each, 1700 of them per matrix
 * of four labs, which the suite's time budget cannot carry), sends its
 * token and prints it when the server (socat) echoes it back.
 */
const PROBE_FUNCTIONS = [
  'exec 2>/dev/null',
  // bash reads a socket a byte at a time, which takes a whole datagram: a UDP echo is one byte read (the
  // connected socket takes datagrams from the server's address and port only); a TCP echo is the token.
  'probe() { exec 3<>/dev/$1/$2/$3 || return; echo $4 >&3; if [[ $1 == udp ]]; then read -t $5 -n 1 -u 3 l; else read -t $5 -u 3 l && [[ $l == $4 ]]; fi && echo $4; }',
  'pids=()',
];

async function probeRound(lab: Lab, dir: string, round: number, probes: readonly ProbeSpec[], timeoutS: number): Promise<Map<string, boolean>> {
  const bySource = new Map<ProbePod, string[]>();
  const sctpTag = new Map<number, ProbeSpec>();
  const tokens = new Map<string, ProbeSpec>();
  await Promise.all(
    probes.map(async (probe, i) => {
      const [protocol, portText] = probe.port.split('/') as [Protocol, string];
      if (protocol === 'SCTP') {
        const tag = ((round << 16) | (i + 1)) >>> 0;
        sctpTag.set(tag, probe);
        await sendThrough(sctpSenderPath(dir, probe.from, probe.to), sctpInit(10_000 + ((round * 1024 + i) % 50_000), Number(portText), tag));
      } else {
        const token = `p${i}`;
        tokens.set(token, probe);
        const lines = bySource.get(probe.from) ?? [];
        bySource.set(probe.from, lines);
        lines.push(`probe ${protocol.toLowerCase()} ${probe.to.ip} ${portText} ${token} ${timeoutS} & pids+=($!)`);
      }
    }),
  );
  const observed = new Map<string, boolean>();
  for (const probe of probes) observed.set(key(probe.port, probe.from.id, probe.to.id), false);
  const tcpAndUdp = Promise.all(
    [...bySource.entries()].map(async ([source, lines]) => {
      // A TCP connect to a peer that drops blocks for minutes: the watchdog ends what is left after the timeout.
      const script = [...PROBE_FUNCTIONS, ...lines, `( sleep ${timeoutS}; kill \${pids[@]} ) >/dev/null 2>&1 & dog=$!`, 'wait ${pids[@]}', 'kill $dog', 'exit 0'].join('\n');
      const r = await lab.exec(source, ['bash', '-c', script], { check: false, timeoutMs: (timeoutS + 30) * 1000 });
      for (const token of r.stdout.split('\n')) {
        const probe = tokens.get(token.trim());
        if (probe) observed.set(key(probe.port, probe.from.id, probe.to.id), true);
      }
    }),
  );
  // The INITs are on their way already: their inboxes are read meanwhile, until every one arrived or the timeout.
  const sctp = (async () => {
    if (sctpTag.size === 0) return;
    const deadline = Date.now() + timeoutS * 1000;
    const receivers = new Set([...sctpTag.values()].map((p) => p.to));
    for (;;) {
      for (const to of receivers) {
        const bytes = await readFile(sctpInbox(dir, to)).catch(() => Buffer.alloc(0));
        for (const init of initsIn(bytes)) {
          const probe = sctpTag.get(init.tag);
          if (probe && probe.to === to && probe.port === `SCTP/${init.dstPort}`) observed.set(key(probe.port, probe.from.id, probe.to.id), true);
        }
      }
      const missing = [...sctpTag.values()].some((p) => !observed.get(key(p.port, p.from.id, p.to.id)));
      if (!missing || Date.now() >= deadline) break;
      await sleep(100);
    }
  })();
  await Promise.all([tcpAndUdp, sctp]);
  return observed;
}
