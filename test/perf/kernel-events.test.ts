// Kernel events delivered to JS per second, `ip monitor` text against the
// netlink socket, in one run on the same machine: 10 000 routes added and
// deleted in one `ip -batch` in a scratch namespace (wnl-perf). A
// measurement, not a test: it asserts only that events arrived and reports
// figures with t.comment. Then the time a reconciler takes to restore a
// route deleted by hand, with each event source, alternating in the same
// namespace. Opt-in: npx tap test/perf/kernel-events.test.ts
import { spawn, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import t from 'tap';
import { pino } from 'pino';
import { Iproute } from '../../src/dataplane/iproute.js';
import { KernelMonitor } from '../../src/dataplane/monitor.js';
import { NetlinkMonitor } from '../../src/dataplane/netlink.js';
import { Reconciler } from '../../src/dataplane/reconciler.js';
import type { DesiredState } from '../../src/dataplane/state.js';

const NS = 'wnl-perf';
const ROUTES = Number(process.env.WEFT_EVENTS_PERF_ROUTES ?? 10_000);
const logger = pino({ level: 'silent' });

function ip(args: string[], input?: string): void {
  const r = spawnSync('ip', ['-n', NS, ...args], { encoding: 'utf8', ...(input !== undefined ? { input } : {}) });
  if (r.status !== 0) throw new Error(`ip ${args.join(' ')}: ${r.stderr}`);
}

interface Counted {
  /** CPU milliseconds of a helper process (ip monitor), read before it stops. */
  childCpuMs?: () => number;
  count: number;
  first: number;
  last: number;
  lost: number;
}

/** Runs the batch while `source` counts; resolves once no event came for a second. */
async function measure(start: (c: Counted) => { stop(): void }, blocked: boolean): Promise<Counted & { batchMs: number; cpuMs: number }> {
  const c: Counted = { count: 0, first: 0, last: 0, lost: 0 };
  const source = start(c);
  const cpu0 = process.cpuUsage();
  await new Promise((r) => setTimeout(r, 500)); // let it subscribe
  const adds = Array.from({ length: ROUTES }, (_, i) => `route add 10.${64 + (i >> 16)}.${(i >> 8) & 255}.${i & 255}/32 dev eth0 proto 147`);
  const dels = adds.map((l) => l.replace('route add', 'route del'));
  const t0 = performance.now();
  if (blocked) ip(['-batch', '-'], [...adds, ...dels].join('\n') + '\n');
  else await batch([...adds, ...dels]);
  const batchMs = performance.now() - t0;
  let seen = -1;
  while (seen !== c.count) {
    seen = c.count;
    await new Promise((r) => setTimeout(r, 1000));
  }
  const childMs = c.childCpuMs?.() ?? 0;
  source.stop();
  const cpu = process.cpuUsage(cpu0);
  return { ...c, batchMs, cpuMs: (cpu.user + cpu.system) / 1000 + childMs };
}

/** The batch runs in a child while this process keeps reading events (no spawnSync: it would stall the reader). */
function batch(lines: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn('ip', ['-n', NS, '-batch', '-'], { stdio: ['pipe', 'ignore', 'inherit'] });
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve() : reject(new Error(`ip -batch exited with ${code}`))));
    child.stdin.end(lines.join('\n') + '\n');
  });
}

/** utime + stime of a process from /proc, in ms (USER_HZ 100). */
function processCpuMs(pid: number | undefined): number {
  if (pid === undefined) return 0;
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').replace(/^.*\) /, '').split(' ');
  return (Number(fields[11]) + Number(fields[12])) * 10;
}

const rate = (r: Counted) => (r.count > 1 ? Math.round((r.count / (r.last - r.first)) * 1000) : 0);

if (process.getuid?.() !== 0) {
  t.fail('this measurement needs root (network namespaces)');
} else {
  spawnSync('ip', ['netns', 'del', NS]);
  spawnSync('ip', ['netns', 'add', NS]);
  t.teardown(() => void spawnSync('ip', ['netns', 'del', NS]));
  ip(['link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', 'eth1']);
  ip(['link', 'set', 'eth0', 'up']);

  const textSource = (c: Counted) => {
    const m = new KernelMonitor({
      spawn: () => new Iproute({ netns: NS }).spawnMonitor(),
      onLine: () => {
        const now = performance.now();
        if (!c.count++) c.first = now;
        c.last = now;
      },
      onRestart: () => void c.lost++,
      logger,
    });
    m.start();
    c.childCpuMs = () => processCpuMs(m.pid);
    return m;
  };
  const netlinkSource = (c: Counted) => {
    const m = new NetlinkMonitor({
      netns: NS,
      logger,
      onEvents: (events) => {
        const now = performance.now();
        if (!c.count) c.first = now;
        c.count += events.length;
        c.last = now;
      },
      onLost: () => void c.lost++,
    });
    m.start();
    return m;
  };

  for (const blocked of [false, true]) {
    const title = blocked ? 'while JS is blocked for the whole batch (spawnSync)' : 'while JS keeps reading';
    t.test(`${2 * ROUTES} route events delivered to JS, ${title}`, async (t) => {
      const text = await measure(textSource, blocked);
      const nl = await measure(netlinkSource, blocked);
      for (const [name, r] of [['ip monitor (text lines)', text], ['netlink socket (typed events)', nl]] as const) {
        t.comment(`${name}: ${r.count} of ${2 * ROUTES} events in ${(r.last - r.first).toFixed(0)} ms = ${rate(r)} events/s; ` +
          `losses reported: ${r.lost}; batch ${r.batchMs.toFixed(0)} ms; CPU ${r.cpuMs.toFixed(0)} ms (this process, plus ip monitor's own; includes ~1 s of idle wait)`);
      }
      t.ok(text.count > 0 && nl.count > 0, 'events arrived from both sources');
    });
  }

  t.test('a route deleted by hand: deleted -> restored, each event source', async (t) => {
    ip(['addr', 'add', '10.99.0.1/24', 'dev', 'eth0']);
    let deletedAt: number | undefined;
    let restored: ((ms: number) => void) | undefined;
    // The clock: a netlink observer of its own, the same for both sources.
    const observer = new NetlinkMonitor({
      netns: NS,
      logger,
      onLost: () => undefined,
      onEvents: (events) => {
        for (const ev of events) {
          if (ev.kind !== 'route' || ev.protocol !== 147 || ev.dst !== '10.100.2.0') continue;
          if (ev.op === 'del') deletedAt = performance.now();
          else if (deletedAt !== undefined) restored?.(performance.now() - deletedAt);
        }
      },
    });
    observer.start();
    t.teardown(() => observer.stop());
    const desired: DesiredState = { links: [], addrs: [], neighs: [], fdb: [], routes: [2, 3, 4].map((n) => ({ dst: `10.100.${n}.0/24`, via: `10.99.0.${n}`, dev: 'eth0' })) };
    const times: Record<'netlink' | 'ip-monitor', number[]> = { netlink: [], 'ip-monitor': [] };
    for (let round = 0; round < 8; round++) {
      for (const events of ['netlink', 'ip-monitor'] as const) {
        const r = new Reconciler({ logger, netns: NS, resyncMs: 600_000, events });
        r.setDesired(desired);
        await r.reconcileNow();
        r.start();
        await new Promise((res) => setTimeout(res, 300)); // let ip monitor subscribe
        deletedAt = undefined;
        const back = new Promise<number>((res) => (restored = res));
        ip(['route', 'del', '10.100.2.0/24']);
        times[events].push(await Promise.race([back, new Promise<number>((res) => setTimeout(() => res(NaN), 5000))]));
        await r.stop();
      }
    }
    const median = (a: number[]) => [...a].sort((x, y) => x - y)[a.length >> 1]!;
    for (const [name, ms] of Object.entries(times)) {
      t.comment(`${name}: deleted -> restored median ${median(ms).toFixed(1)} ms (${ms.map((x) => x.toFixed(1)).join(', ')})`);
    }
    t.ok(Object.values(times).every((ms) => ms.some((x) => !Number.isNaN(x))), 'routes came back with both sources');
  });
}
