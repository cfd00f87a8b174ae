// The measuring half of `weft bench compare`: every variant as its own lab
// (the bare underlay borrows the nodes of a hand-built lab, which run no
// agents), all brought up before anything is measured, then per repetition,
// in alternating variant order, TCP (1 stream, pinged while it runs, and 4
// streams), UDP, ping idle and sockperf ping-pong, with the CPU and memory
// each costs.
// Fills a RawCompare; the statistics and the reports are analyse.ts's and
// write.ts's.
import { existsSync, readFileSync } from 'node:fs';
import { cpus, release } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { BACKEND_TYPES, type BackendType } from '../../config/netconf.js';
import { processRssKiB, spawnDetached, terminate } from '../../core/process.js';
import { Lab, agentEntry, labNetConf, type LabNode } from '../../lab/lab.js';
import { runCommand } from '../../lab/command.js';
import { checkLabPrerequisites } from '../../lab/prereqs.js';
import { isLabProcess, nodeUnderlayIP, podAddress } from '../../lab/state.js';
import { withCpuCost } from '../cpu.js';
import { iperfClientOutput, startIperfServer, waitListening } from '../iperf.js';
import { waitReachable } from '../runner.js';
import { alternatingOrder, percentile, ratio } from '../stats.js';
import { handRoutes, handVxlan, weftVariant, type BenchVariant } from '../variants.js';
import { parseIperfTcp, parseIperfUdp, parsePing, parseSockperfPingPong } from './parse.js';
import { HAND_BUILT_EQUAL, VARIANT_LABEL, type MetricKey, type RawCompare, type RawVariant, type RepFigures, type VariantKey } from './types.js';

export interface CompareOptions {
  backends: BackendType[];
  /** Repetitions per variant; the median and spread need 3. */
  reps: number;
  /** Length of each timed run (iperf3, ping, sockperf). */
  seconds: number;
  /** One unrecorded TCP run per variant first; 0 skips it. */
  warmupSeconds: number;
  /** Labs are named <prefix>0, <prefix>1, ... (default "cmp"). */
  labNamePrefix?: string;
  /** Progress lines: the plan with its estimated time, then one per step. */
  log?: (line: string) => void;
}

export const COMPARE_LAB_PREFIX = 'cmp';
/** Labs of a run with every backend: one each, and one per distinct hand-built equal. */
export const MAX_LABS = BACKEND_TYPES.length + new Set(Object.values(HAND_BUILT_EQUAL)).size;

const SOCKPERF_PORT = 11111;
/** Outer IPv4 and UDP headers: a datagram of MTU - 28 bytes leaves unfragmented. */
const IPV4_UDP_HEADERS = 28;
/** The ping interval (root may go below ping's 200 ms floor). */
const PING_INTERVAL_S = 0.01;
/** How long the TCP stream runs before the loaded ping starts, so the ping meets a full pipe. */
const LOAD_RAMP_MS = 200;
/**
 * Estimated seconds per lab to bring the labs up (in parallel) and see their
 * paths work: 4 labs took 9 s on a shared 2-core machine.
 */
const LAB_SETUP_S = 2.5;

/**
 * sockperf's client sleeps 2 s before its first message, whatever -t says
 * (a fixed sleep(2) in its client.cpp). It is started this long before the
 * idle ping ends, so its sleep overlaps the ping instead of adding to the
 * run; the margin keeps its messages clear of the ping's last ones.
 */
const SOCKPERF_SILENT_S = 2 - 0.2;

/**
 * The tests of one repetition, in the order they run, with the seconds each
 * takes beyond `seconds`. The loaded ping is pinged during the TCP 1 stream
 * run (stopped when it ends), not a run of its own: same load, one run fewer.
 */
const TESTS = {
  tcp1: { label: 'TCP 1 stream', overheadS: () => 0.2 },
  tcp4: { label: 'TCP 4 streams', overheadS: () => 0.2 },
  udp: { label: 'UDP', overheadS: () => 0.2 },
  pingIdle: { label: 'ping idle', overheadS: () => 0.1 },
  // A run is its sleep, `seconds` and 0.3 s; up to SOCKPERF_SILENT_S of it passed during the ping.
  rr: { label: 'sockperf ping-pong', overheadS: (seconds: number) => 2.3 - Math.min(seconds, SOCKPERF_SILENT_S) },
} as const;
type TestKey = keyof typeof TESTS;

/** A variant's lab, once up: where its client and server run and what of it is charged to the agent. */
interface Running {
  raw: RawVariant;
  lab: Lab;
  clientNs: string;
  serverNs: string;
  serverIp: string;
  /** Whether the lab runs agents (weft variants): only then are agent and BIRD figures taken. */
  agents: boolean;
}

/** A planned unit of work: a warm-up or one test of one repetition of one variant. */
interface Step {
  run: Running;
  rep: number;
  test: TestKey | 'warmup';
  estimateS: number;
}

/** The hand-built variants, by key. */
const HAND_VARIANT: Partial<Record<VariantKey, BenchVariant>> = { 'hand-routes': handRoutes, 'hand-vxlan': handVxlan };

interface PlannedLab {
  key: Exclude<VariantKey, 'bare'>;
  kind: 'weft' | 'hand';
  variant: BenchVariant;
  name: string;
}

/** The labs of a run: one per weft backend, then one per distinct hand-built equal. */
function planLabs(backends: readonly BackendType[], prefix: string): PlannedLab[] {
  const hands = [...new Set(backends.map((b) => HAND_BUILT_EQUAL[b]))].sort();
  const planned = [
    ...backends.map((b) => ({ key: b, kind: 'weft' as const, variant: weftVariant(VARIANT_LABEL[b], labNetConf(b, [4])) })),
    ...hands.map((h) => ({ key: h as PlannedLab['key'], kind: 'hand' as const, variant: HAND_VARIANT[h]! })),
  ];
  return planned.map((p, i) => ({ ...p, name: `${prefix}${i}` }));
}

async function linkMtu(ns: string, dev: string): Promise<number> {
  const r = await runCommand(['ip', '-j', 'link', 'show', 'dev', dev], { netns: ns });
  const mtu = (JSON.parse(r.stdout) as { mtu?: number }[])[0]?.mtu;
  if (typeof mtu !== 'number') throw new Error(`no MTU for ${dev} in ${ns}`);
  return mtu;
}

function rawVariant(key: VariantKey, kind: RawVariant['kind'], mtu: number, equal?: VariantKey): RawVariant {
  return { key, label: VARIANT_LABEL[key], kind, ...(equal ? { equal } : {}), mtu, udpDatagramBytes: mtu - IPV4_UDP_HEADERS, reps: [] };
}

/** Pod to pod across the lab's two nodes, once the path works. */
async function podToPod(planned: PlannedLab, lab: Lab, equal?: VariantKey): Promise<Running> {
  const [client, server] = [lab.podsOf(lab.nodes[0]!)[0], lab.podsOf(lab.nodes[1]!)[0]];
  if (!client || !server) throw new Error(`compare lab ${lab.name} has no pod on each of its two nodes`);
  const serverIp = podAddress(server, 4)!;
  await waitReachable(client.ns, serverIp, `${planned.variant.label} (lab ${lab.name})`);
  const raw = rawVariant(planned.key, planned.kind, await linkMtu(client.ns, 'eth0'), equal);
  return { raw, lab, clientNs: client.ns, serverNs: server.ns, serverIp, agents: planned.kind === 'weft' };
}

/** Node to node over the underlay of a lab without agents: nothing but the lab's links in the path. */
async function bare(lab: Lab): Promise<Running> {
  const [client, server] = lab.nodes as [LabNode, LabNode];
  const serverIp = nodeUnderlayIP(server, 4)!;
  await waitReachable(client.ns, serverIp, `the bare underlay (lab ${lab.name})`);
  const raw = rawVariant('bare', 'bare', await linkMtu(client.ns, 'eth0'));
  return { raw, lab, clientNs: client.ns, serverNs: server.ns, serverIp, agents: false };
}

/** iperf3's and sockperf's servers: their pids. */
async function startServers(run: Running): Promise<number[]> {
  const pids = [await startIperfServer(run.serverNs, run.lab.dir)];
  const log = join(run.lab.dir, `sockperf-server-${run.serverNs}.log`);
  pids.push(spawnDetached(['ip', 'netns', 'exec', run.serverNs, 'sockperf', 'server', '-i', run.serverIp, '-p', String(SOCKPERF_PORT)], log));
  await waitListening(run.serverNs, SOCKPERF_PORT, 'udp', 'sockperf server');
  return pids;
}

/** BIRD's pid on a node of a bgp lab (its pid file), if it runs. */
function birdPid(lab: Lab, node: LabNode): number | undefined {
  const file = join(lab.nodeDir(node), 'run', 'bird', 'bird.pid');
  if (!existsSync(file)) return undefined;
  const pid = Number(readFileSync(file, 'utf8').trim());
  return isLabProcess(pid, lab.dir) ? pid : undefined;
}

/**
 * Per node, the agent's processes: the agent and what it runs beside itself
 * in the node's namespace with the lab's dir on its command line (the udp
 * loop process), BIRD left out (it has its own figure).
 */
async function agentProcesses(lab: Lab): Promise<number[][]> {
  return Promise.all(
    lab.nodes.map(async (node) => {
      const r = await runCommand(['ip', 'netns', 'pids', node.ns], { check: false });
      const bird = birdPid(lab, node);
      const found = r.stdout.split(/\s+/).filter(Boolean).map(Number).filter((pid) => pid !== bird && isLabProcess(pid, lab.dir));
      return [...new Set([...(node.agentPid !== undefined ? [node.agentPid] : []), ...found])];
    }),
  );
}

const mib = (kib: number): number => kib / 1024;
const mean = (xs: readonly number[]): number => xs.reduce((s, x) => s + x, 0) / xs.length;

/** Fields of /proc/meminfo, in MiB. */
function meminfoMiB(...fields: string[]): number[] {
  const info = readFileSync('/proc/meminfo', 'utf8');
  return fields.map((field) => mib(Number(new RegExp(`^${field}:\\s+(\\d+) kB$`, 'm').exec(info)?.[1] ?? Number.NaN)));
}

function hostUsedMiB(): number {
  const [total, available] = meminfoMiB('MemTotal', 'MemAvailable');
  return total! - available!;
}

/** Sets finite figures only: a repetition lacks a figure rather than holding NaN. */
function put(figures: RepFigures, values: Partial<Record<MetricKey, number>>): void {
  for (const [k, v] of Object.entries(values)) if (Number.isFinite(v)) figures[k as MetricKey] = v;
}

/**
 * One bandwidth run with the CPU it cost: system-wide, softirq, and the
 * agent's processes. `pingUnderLoad`: ping from its ramp-up to its end.
 */
async function bandwidth(
  run: Running,
  agentPids: readonly number[],
  seconds: number,
  kind: 'tcp1' | 'tcp4' | 'udp',
  pingUnderLoad = false,
): Promise<{ figures: RepFigures; text: string }> {
  const args = kind === 'tcp4' ? ['-P', '4'] : kind === 'udp' ? ['-u', '-b', '0', '-l', String(run.raw.udpDatagramBytes)] : [];
  const loadEnded = new AbortController();
  const {
    result: [output, loaded],
    cpu,
    pidSeconds: agentSeconds,
  } = await withCpuCost(agentPids, () =>
    Promise.all([
      iperfClientOutput(run.clientNs, run.serverIp, seconds, args).finally(() => loadEnded.abort()),
      pingUnderLoad ? sleep(LOAD_RAMP_MS).then(() => pingRtts(run, seconds, loadEnded.signal)) : undefined,
    ]),
  );
  const figures: RepFigures = {};
  if (kind === 'udp') {
    const r = parseIperfUdp(output);
    const gbit = (r.bytes * 8) / 1e9;
    put(figures, { 'udp.gbps': r.gbps, 'udp.lossPercent': r.lossPercent, 'udp.jitterMs': r.jitterMs, 'udp.cpuPerGbit': ratio(cpu.busy, gbit), 'udp.softirqPerGbit': ratio(cpu.softirq, gbit) });
    return { figures, text: `${r.gbps.toFixed(2)} Gbit/s received, ${r.lossPercent.toFixed(1)}% lost` };
  }
  const r = parseIperfTcp(output);
  const gbit = (r.bytes * 8) / 1e9;
  put(figures, { [`${kind}.gbps`]: r.gbps, [`${kind}.retransmits`]: r.retransmits, [`${kind}.cpuPerGbit`]: ratio(cpu.busy, gbit), [`${kind}.softirqPerGbit`]: ratio(cpu.softirq, gbit) });
  if (kind === 'tcp1' && run.agents) put(figures, { 'tcp1.agentCpuPerGbit': ratio(agentSeconds, gbit) });
  if (loaded) put(figures, { 'ping.loaded.p50Ms': loaded.p50, 'ping.loaded.p99Ms': loaded.p99 });
  const pinged = loaded ? `; ping under it p50 ${loaded.p50.toFixed(3)} ms, p99 ${loaded.p99.toFixed(3)} ms` : '';
  return { figures, text: `${r.gbps.toFixed(2)} Gbit/s, ${ratio(cpu.busy, gbit).toFixed(3)} CPU s/Gbit${pinged}` };
}

/** Per-reply RTTs at a 10 ms interval for `seconds` (or until `interrupt`): p50 and p99. */
async function pingRtts(run: Running, seconds: number, interrupt?: AbortSignal): Promise<{ p50: number; p99: number }> {
  // A deadline, not a count: ping's 10 ms interval stretches on a busy machine.
  const r = await runCommand(['ping', '-n', '-i', String(PING_INTERVAL_S), '-w', String(seconds), run.serverIp], {
    netns: run.clientNs,
    check: false,
    timeoutMs: (seconds + 10) * 1000,
    ...(interrupt ? { interrupt } : {}),
  });
  const { rttsMs } = parsePing(r.stdout);
  return { p50: percentile(rttsMs, 50), p99: percentile(rttsMs, 99) };
}

async function sockperfPingPong(run: Running, seconds: number): Promise<RepFigures> {
  const r = await runCommand(['sockperf', 'ping-pong', '-i', run.serverIp, '-p', String(SOCKPERF_PORT), '-t', String(seconds)], {
    netns: run.clientNs,
    check: false,
    timeoutMs: (seconds + 30) * 1000,
  });
  const f = parseSockperfPingPong(r.stdout + r.stderr);
  const figures: RepFigures = {};
  put(figures, { 'rr.perSecond': f.perSecond, 'rr.p50Us': f.p50Us, 'rr.p99Us': f.p99Us });
  return figures;
}

/** Agent and BIRD RSS (mean per node) and the host's used memory, taken once per repetition. */
function memory(run: Running, agentPids: readonly number[][]): RepFigures {
  const figures: RepFigures = {};
  put(figures, { 'mem.hostUsedMiB': hostUsedMiB() });
  if (!run.agents) return figures;
  put(figures, { 'mem.agentRssMiB': mean(agentPids.map((pids) => mib(pids.reduce((s, pid) => s + (processRssKiB(pid) ?? 0), 0)))) });
  const birds = run.lab.nodes.map((n) => birdPid(run.lab, n)).filter((p): p is number => p !== undefined);
  const birdKiB = birds.map((pid) => processRssKiB(pid)).filter((k): k is number => k !== undefined);
  if (birdKiB.length) put(figures, { 'mem.birdRssMiB': mib(mean(birdKiB)) });
  return figures;
}

const secondsText = (s: number): string => `${Math.max(0, Math.round(s))}s`;

/** Plans, brings every lab up, measures, and always removes its labs and servers. */
export async function runCompare(opts: CompareOptions): Promise<RawCompare> {
  const log = opts.log ?? (() => {});
  const { backends, reps, seconds, warmupSeconds } = opts;
  checkLabPrerequisites({ needIperf3: true, needSockperf: true, agentEntry: agentEntry() });
  const prefix = opts.labNamePrefix ?? COMPARE_LAB_PREFIX;
  const planned = planLabs(backends, prefix);
  const variantCount = planned.length + 1; // and the bare underlay
  const testCount = Object.keys(TESTS).length;
  const perRepS = Object.values(TESTS).reduce((s, t) => s + seconds + t.overheadS(seconds), 0);
  const setupS = planned.length * LAB_SETUP_S;
  const warmupS = warmupSeconds > 0 ? variantCount * (warmupSeconds + TESTS.tcp1.overheadS()) : 0;
  const estimateS = setupS + warmupS + reps * variantCount * perRepS;
  log(
    `plan: ${variantCount} variants (bare underlay, ${planned.map((p) => p.variant.label).join(', ')}) × ${reps} rep${reps === 1 ? '' : 's'} × ${testCount} tests of ${seconds} s` +
      `${warmupSeconds > 0 ? `, a ${warmupSeconds} s warm-up each` : ''}, ${planned.length} labs to set up: about ${secondsText(estimateS)} in all`,
  );

  const startedAt = new Date();
  // Every name a run can use: an earlier, interrupted run may have had more labs.
  await Promise.all(Array.from({ length: MAX_LABS }, (_, i) => Lab.destroy(`${prefix}${i}`)));
  const servers: number[] = [];
  const labs = new Map<string, Lab>();
  try {
    log(`setting up ${planned.length} labs (${planned.map((p) => `${p.name}: ${p.variant.label}`).join(', ')})`);
    // In parallel: most of a lab's bring-up is waiting (etcd, agents' first sync).
    const built = await Promise.allSettled(planned.map(async (p) => labs.set(p.name, await p.variant.build(p.name, 'flat', [4]))));
    const failed = built.find((b): b is PromiseRejectedResult => b.status === 'rejected');
    if (failed) throw failed.reason;
    // Every weft backend's equal is among the labs.
    const weft = await Promise.all(planned.filter((p) => p.kind === 'weft').map((p) => podToPod(p, labs.get(p.name)!, HAND_BUILT_EQUAL[p.key as BackendType])));
    const hands = planned.filter((p) => p.kind === 'hand');
    const hand = await Promise.all(hands.map((p) => podToPod(p, labs.get(p.name)!)));
    const runs = [await bare(labs.get(hands[0]!.name)!), ...weft, ...hand];
    for (const run of runs) servers.push(...(await startServers(run)));
    log(`labs up after ${secondsText((Date.now() - startedAt.getTime()) / 1000)}`);

    const steps: Step[] = [
      ...(warmupSeconds > 0 ? runs.map((run) => ({ run, rep: -1, test: 'warmup' as const, estimateS: warmupSeconds + TESTS.tcp1.overheadS() })) : []),
      ...Array.from({ length: reps }, (_, rep) =>
        alternatingOrder(runs, rep).flatMap((run) => (Object.keys(TESTS) as TestKey[]).map((test) => ({ run, rep, test, estimateS: seconds + TESTS[test].overheadS(seconds) }))),
      ).flat(),
    ];
    let estimatedDone = 0;
    const measuringSince = Date.now();
    let agentPids: number[][] = [];
    /** The variant's sockperf run, started during its idle ping. */
    let pingPong: Promise<RepFigures> | undefined;
    for (const [k, step] of steps.entries()) {
      const { run, rep, test } = step;
      const figures = run.raw.reps[rep] ?? {};
      if (rep >= 0 && !run.raw.reps[rep]) {
        // A repetition's first test: who the agent is now, and what memory it holds.
        run.raw.reps[rep] = figures;
        agentPids = run.agents ? await agentProcesses(run.lab) : run.lab.nodes.map(() => []);
        Object.assign(figures, memory(run, agentPids));
      }
      let text: string;
      if (test === 'warmup') {
        text = (await bandwidth(run, [], warmupSeconds, 'tcp1')).text;
      } else if (test === 'tcp1' || test === 'tcp4' || test === 'udp') {
        const r = await bandwidth(run, agentPids.flat(), seconds, test, test === 'tcp1');
        Object.assign(figures, r.figures);
        text = r.text;
      } else if (test === 'pingIdle') {
        pingPong = sleep(Math.max(0, seconds - SOCKPERF_SILENT_S) * 1000).then(() => sockperfPingPong(run, seconds));
        pingPong.catch(() => {}); // awaited by the next step; a failed ping must not leave it unhandled
        const r = await pingRtts(run, seconds);
        put(figures, { 'ping.idle.p50Ms': r.p50, 'ping.idle.p99Ms': r.p99 });
        text = `p50 ${r.p50.toFixed(3)} ms, p99 ${r.p99.toFixed(3)} ms`;
      } else {
        const r = await (pingPong ?? sockperfPingPong(run, seconds));
        pingPong = undefined;
        Object.assign(figures, r);
        text = `${Math.round(r['rr.perSecond'] ?? Number.NaN)}/s, p50 ${r['rr.p50Us']?.toFixed(1)} µs`;
      }
      estimatedDone += step.estimateS;
      // What is left, scaled by how the estimate has held so far.
      const pace = ((Date.now() - measuringSince) / 1000) / estimatedDone;
      const leftS = steps.slice(k + 1).reduce((s, x) => s + x.estimateS, 0) * pace;
      const where = rep < 0 ? 'warm-up' : `rep ${rep + 1}/${reps}`;
      log(`[${k + 1}/${steps.length}] ${where} ${run.raw.label}: ${test === 'warmup' ? 'TCP 1 stream' : TESTS[test].label} ${text} (about ${secondsText(leftS)} left)`);
    }
    const finishedAt = new Date();
    log(`measured in ${secondsText((finishedAt.getTime() - startedAt.getTime()) / 1000)} (estimated ${secondsText(estimateS)})`);
    return {
      startedAt: startedAt.toISOString(),
      finishedAt: finishedAt.toISOString(),
      options: { backends: [...backends], reps, seconds, warmupSeconds },
      host: { cpus: cpus().length, cpuModel: cpus()[0]?.model.trim() ?? 'unknown', kernel: release(), memTotalMiB: Math.round(meminfoMiB('MemTotal')[0]!) },
      variants: runs.map((r) => r.raw),
      notes: [
        `the bare underlay is node to node over the underlay of lab ${hands[0]!.name} (${hands[0]!.variant.label}), whose nodes run no agent`,
        'CPU per Gbit is the whole machine\'s (/proc/stat) during the run, divided by the Gbit received: anything else running on the machine is counted too',
        'agent CPU and RSS count the agent and the processes it runs in the node namespace (the udp loop process); BIRD has its own RSS figure',
        'host memory used is the machine\'s with every lab of the run up: it does not tell the variants apart',
        `UDP datagrams are the MTU less ${IPV4_UDP_HEADERS} bytes of IPv4 and UDP headers, sent at the highest rate (-b 0)`,
        `ping sends every ${PING_INTERVAL_S * 1000} ms; under load it runs during the TCP 1 stream run, from ${LOAD_RAMP_MS} ms after its start to its end (its CPU, a few hundred small packets, is counted in that run's)`,
        'sockperf ping-pong runs over UDP, one message in flight; its figures are round trips',
      ],
    };
  } finally {
    // SIGKILL: sockperf's server ignores SIGTERM and SIGINT, and no server has anything to save.
    await terminate(servers, 1000, 'SIGKILL');
    await Promise.all(planned.map((p) => Lab.destroy(p.name).catch(() => {})));
  }
}
