// Long-running processes (lab agents and iperf3 servers, the udp loop
// process, BIRD): started detached so they outlive whoever started them,
// found again by pid, stopped with a deadline.
import { spawn } from 'node:child_process';
import { closeSync, openSync, readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';

/** Starts argv in its own session with stdout+stderr appended to `logFile`; returns the pid. */
export function spawnDetached(argv: readonly string[], logFile: string, env?: NodeJS.ProcessEnv): number {
  const [file, ...args] = argv;
  if (!file) throw new Error('spawnDetached: empty argv');
  const fd = openSync(logFile, 'a');
  try {
    const child = spawn(file, args, {
      detached: true,
      stdio: ['ignore', fd, fd],
      env: env ? { ...process.env, ...env } : process.env,
    });
    child.on('error', () => {}); // surfaces as a dead pid to whoever waits on it
    child.unref();
    if (child.pid === undefined) throw new Error(`cannot start ${file}`);
    return child.pid;
  } finally {
    closeSync(fd);
  }
}

/** True while the process exists and is not a zombie. */
export function isAlive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
    return state !== 'Z' && state !== 'X';
  } catch {
    return false;
  }
}

/** The process's argv joined with spaces, or undefined if it is gone. */
export function commandLine(pid: number): string | undefined {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ').trim();
  } catch {
    return undefined;
  }
}

/** User+system CPU time of a process in clock ticks (USER_HZ, 100 on Linux), 0 if gone. */
export function processCpuTicks(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // Fields after the command: state is [0], utime is [11], stime is [12].
    return Number(fields[11]) + Number(fields[12]);
  } catch {
    return 0;
  }
}

/** Resident set size of a process in KiB (VmRSS of /proc/<pid>/status), undefined if it is gone. */
export function processRssKiB(pid: number): number | undefined {
  try {
    const m = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : undefined;
  } catch {
    return undefined;
  }
}

export async function waitForExit(pid: number, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (isAlive(pid)) {
    if (Date.now() >= deadline) return false;
    await sleep(50);
  }
  return true;
}

function signal(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch {
    // already gone
  }
}

/** SIGTERM (or `first`), then SIGKILL for whatever is still running after `graceMs`. */
export async function terminate(pids: readonly number[], graceMs = 5000, first: NodeJS.Signals = 'SIGTERM'): Promise<void> {
  const live = [...new Set(pids)].filter(isAlive);
  for (const pid of live) signal(pid, first);
  const stubborn = (await Promise.all(live.map(async (pid) => ((await waitForExit(pid, graceMs)) ? undefined : pid)))).filter(
    (p): p is number => p !== undefined,
  );
  for (const pid of stubborn) signal(pid, 'SIGKILL');
  await Promise.all(stubborn.map((pid) => waitForExit(pid, 5000)));
}

export { signal as sendSignal };
