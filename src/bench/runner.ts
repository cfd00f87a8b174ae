// `weft bench`: every variant of a plan as its own lab, iperf3 pod to pod
// across the two nodes, repetitions alternating between variants in one run,
// in each address family asked for (both families from the same labs).
// Reports figures, one result per family; asserts nothing.
import { cpus, release } from 'node:os';
import type { BackendType } from '../config/netconf.js';
import { WeftError } from '../errors.js';
import { Lab, agentEntry } from '../lab/lab.js';
import { pingOnce } from '../lab/ping.js';
import { labFamilies, podAddress } from '../lab/state.js';
import type { Family } from '../core/cidr.js';
import { checkLabPrerequisites } from '../lab/prereqs.js';
import type { Topology } from '../lab/topology.js';
import { withCpuCost } from './cpu.js';
import { runIperfClient, startIperfServer } from './iperf.js';
import { alternatingOrder, median, ratio } from './stats.js';
import { benchPlan, type BenchVariant } from './variants.js';

export interface BenchOptions {
  backend: BackendType;
  /** The subject's net-conf; default {Network: 10.244.0.0/16, Backend: {Type: backend}}. */
  netConf?: Record<string, unknown>;
  topology?: Topology;
  /** The families measured and the labs run (default [4]); [4, 6] measures both from the same dual-stack labs. */
  families?: Family[];
  reps?: number;
  seconds?: number;
  /** One unrecorded run per variant first (caches, ARP, TCP metrics). Default 1 s; 0 skips it. */
  warmupSeconds?: number;
  /** Labs are named <prefix>0, <prefix>1, ... (default "bench"). */
  labNamePrefix?: string;
  /** Progress lines. */
  log?: (line: string) => void;
}

export interface BenchSample {
  rep: number;
  gbps: number;
  retransmits: number;
  /** System-wide non-idle CPU seconds during the run, per Gbit transferred. */
  cpuSecondsPerGbit: number;
  softirqSecondsPerGbit: number;
  /** CPU seconds the variant's agents used during the run (0 without agents). */
  agentCpuSeconds: number;
}

export interface VariantSummary {
  label: string;
  medianGbps: number;
  medianCpuSecondsPerGbit: number;
  medianSoftirqSecondsPerGbit: number;
  agentCpuSecondsTotal: number;
  samples: BenchSample[];
}

export interface BenchComparison {
  baseline: string;
  /** subject / baseline median throughput. */
  throughputRatio: number;
  /** subject / baseline median CPU per Gbit (below 1: the subject is cheaper). */
  cpuPerGbitRatio: number;
}

/** One family's figures; a run yields one per family measured. */
export interface BenchResult {
  backend: BackendType;
  /** The family of the pod addresses iperf3 ran between. */
  family: Family;
  topology: Topology;
  reps: number;
  seconds: number;
  startedAt: string;
  host: { cpus: number; kernel: string };
  subject: VariantSummary;
  baselines: VariantSummary[];
  comparisons: BenchComparison[];
  /** Why an expected comparison is missing. */
  notes?: string[];
}

interface Running {
  variant: BenchVariant;
  lab: Lab;
  clientNs: string;
  /** The server pod's address per family measured. */
  serverIp: Map<Family, string>;
  samples: Map<Family, BenchSample[]>;
}

export const BENCH_LAB_PREFIX = 'bench';

async function measure(run: Running, family: Family, seconds: number, rep: number): Promise<BenchSample> {
  const agents = run.lab.nodes.map((n) => n.agentPid).filter((p): p is number => p !== undefined);
  const { result, cpu, pidSeconds } = await withCpuCost(agents, () => runIperfClient(run.clientNs, run.serverIp.get(family)!, seconds));
  const gbit = (result.bytes * 8) / 1e9;
  return {
    rep,
    gbps: result.bitsPerSecond / 1e9,
    retransmits: result.retransmits,
    cpuSecondsPerGbit: ratio(cpu.busy, gbit),
    softirqSecondsPerGbit: ratio(cpu.softirq, gbit),
    agentCpuSeconds: pidSeconds,
  };
}

function summarize(run: Running, family: Family): VariantSummary {
  const s = run.samples.get(family) ?? [];
  return {
    label: run.variant.label,
    medianGbps: median(s.map((x) => x.gbps)),
    medianCpuSecondsPerGbit: median(s.map((x) => x.cpuSecondsPerGbit)),
    medianSoftirqSecondsPerGbit: median(s.map((x) => x.softirqSecondsPerGbit)),
    agentCpuSecondsTotal: s.reduce((sum, x) => sum + x.agentCpuSeconds, 0),
    samples: s,
  };
}

async function start(variant: BenchVariant, labName: string, topology: Topology, families: readonly Family[]): Promise<Running> {
  const lab = await variant.build(labName, topology, [...families]);
  const [client, server] = [lab.podsOf(lab.nodes[0]!)[0], lab.podsOf(lab.nodes[1]!)[0]];
  if (!client || !server) throw new Error(`bench lab ${labName} has no pod on each of its two nodes`);
  const serverIp = new Map<Family, string>();
  for (const family of families) {
    const ip = podAddress(server, family);
    if (!ip) throw new Error(`bench lab ${labName}: the server pod has no IPv${family} address`);
    // Ready agents may still be learning of each other: measure only a working path.
    await waitReachable(client.ns, ip, `${variant.label} (lab ${labName})`);
    serverIp.set(family, ip);
  }
  // iperf3 listens on both families.
  await startIperfServer(server.ns, lab.dir);
  return { variant, lab, clientNs: client.ns, serverIp, samples: new Map(families.map((f) => [f, []])) };
}


/** Pings `ip` from `ns` until it answers: ready agents may still be learning of each other. */
export async function waitReachable(ns: string, ip: string, what: string, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await pingOnce(ns, ip))) {
    if (Date.now() > deadline) throw new WeftError(`${what}: the server pod ${ip} is not reachable from the client pod`, 'bring the same lab up with "weft lab up" and read its agent logs');
  }
}

/** One result per family of `opts.families`, in that order. */
export async function runBench(opts: BenchOptions): Promise<BenchResult[]> {
  const log = opts.log ?? (() => {});
  const topology = opts.topology ?? 'flat';
  const reps = opts.reps ?? 3;
  const seconds = opts.seconds ?? 5;
  checkLabPrerequisites({ needIperf3: true, agentEntry: agentEntry() });
  const families = labFamilies(opts);
  const plan = benchPlan(opts.backend, opts.netConf, topology, families);
  const variants = [plan.subject, ...plan.baselines];
  // A run on dual-stack labs names the family in its progress lines; an IPv4 run's lines stay as they were.
  const tag = (family: Family): string => (families.includes(6) ? ` over IPv${family}` : '');
  const labNames = variants.map((_, i) => `${opts.labNamePrefix ?? BENCH_LAB_PREFIX}${i}`);
  for (const name of labNames) await Lab.destroy(name);
  const startedAt = new Date().toISOString();
  const runs: Running[] = [];
  try {
    for (const [i, variant] of variants.entries()) {
      log(`setting up ${variant.label} (lab ${labNames[i]})`);
      runs.push(await start(variant, labNames[i]!, topology, families));
    }
    if ((opts.warmupSeconds ?? 1) > 0) {
      for (const run of runs) for (const ip of run.serverIp.values()) await runIperfClient(run.clientNs, ip, opts.warmupSeconds ?? 1);
    }
    for (let rep = 0; rep < reps; rep++) {
      for (const family of families) {
        for (const run of alternatingOrder(runs, rep)) {
          const sample = await measure(run, family, seconds, rep);
          run.samples.get(family)!.push(sample);
          log(`rep ${rep + 1}/${reps} ${run.variant.label}${tag(family)}: ${sample.gbps.toFixed(2)} Gbit/s, ${sample.cpuSecondsPerGbit.toFixed(3)} CPU s/Gbit`);
        }
      }
    }
  } finally {
    for (const name of labNames) await Lab.destroy(name).catch(() => {});
  }
  const notes = [...plan.notes, ...(families.length > 1 ? ['IPv4 and IPv6 measured between the same pods of the same dual-stack labs'] : [])];
  return families.map((family) => {
    const [subject, ...baselines] = runs.map((run) => summarize(run, family));
    return {
      backend: opts.backend,
      family,
      topology,
      reps,
      seconds,
      startedAt,
      host: { cpus: cpus().length, kernel: release() },
      subject: subject!,
      baselines,
      comparisons: baselines.map((b) => ({
        baseline: b.label,
        throughputRatio: ratio(subject!.medianGbps, b.medianGbps),
        cpuPerGbitRatio: ratio(subject!.medianCpuSecondsPerGbit, b.medianCpuSecondsPerGbit),
      })),
      ...(notes.length ? { notes } : {}),
    };
  });
}
