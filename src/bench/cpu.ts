// System-wide CPU time from /proc/stat, so a run can be charged with all the
// CPU it caused (iperf3, softirq packet processing, the agent), not just its own.
import { readFileSync } from 'node:fs';
import { processCpuTicks } from '../core/process.js';

/** USER_HZ: the unit of /proc/stat and /proc/<pid>/stat times (100 on every Linux ABI). */
export const CLOCK_TICKS_PER_SECOND = 100;

export interface CpuTimes {
  /** All non-idle time: user, nice, system, irq, softirq, steal. */
  busy: number;
  softirq: number;
  idle: number;
}

/** Parses the aggregate "cpu" line of /proc/stat (ticks). */
export function parseProcStat(text: string): CpuTimes {
  const line = text.split('\n').find((l) => l.startsWith('cpu '));
  if (!line) throw new Error('/proc/stat has no aggregate cpu line');
  const [user, nice, system, idle, iowait, irq, softirq, steal] = line.trim().split(/\s+/).slice(1).map(Number);
  const n = (v: number | undefined): number => (Number.isFinite(v) ? (v as number) : 0);
  return {
    busy: n(user) + n(nice) + n(system) + n(irq) + n(softirq) + n(steal),
    softirq: n(softirq),
    idle: n(idle) + n(iowait),
  };
}

export function readCpuTimes(): CpuTimes {
  return parseProcStat(readFileSync('/proc/stat', 'utf8'));
}

/** `after - before`, in seconds. */
export function cpuSecondsBetween(before: CpuTimes, after: CpuTimes): CpuTimes {
  const d = (k: keyof CpuTimes): number => (after[k] - before[k]) / CLOCK_TICKS_PER_SECOND;
  return { busy: d('busy'), softirq: d('softirq'), idle: d('idle') };
}

/**
 * Runs `work` and charges it with the CPU the whole machine spent meanwhile
 * (busy and softirq) and with what the processes `pids` spent (utime+stime),
 * all in seconds.
 */
export async function withCpuCost<T>(pids: readonly number[], work: () => Promise<T>): Promise<{ result: T; cpu: CpuTimes; pidSeconds: number }> {
  const pidTicks = (): number => pids.reduce((sum, pid) => sum + processCpuTicks(pid), 0);
  const cpu0 = readCpuTimes();
  const pid0 = pidTicks();
  const result = await work();
  const pid1 = pidTicks();
  const cpu = cpuSecondsBetween(cpu0, readCpuTimes());
  return { result, cpu, pidSeconds: (pid1 - pid0) / CLOCK_TICKS_PER_SECOND };
}
