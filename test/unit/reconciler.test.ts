// The reconciler's scheduling against a fake kernel: no run before a desired
// state exists, one run at a time, coalescing, events, errors logged once
// and retried, monitor restarts. No root needed.
import { EventEmitter } from 'node:events';
import { PassThrough } from 'node:stream';
import t from 'tap';
import { pino } from 'pino';
import type { Batch, KernelSnapshot } from '../../src/dataplane/diff.js';
import type { ApplyResult, KernelAdapter } from '../../src/dataplane/iproute.js';
import type { KernelEvent } from '../../src/dataplane/netlink.js';
import { Reconciler, type KernelEventSourceFactory } from '../../src/dataplane/reconciler.js';
import { emptyState, type DesiredState } from '../../src/dataplane/state.js';

function memoryLogger() {
  const lines: { level: number; msg: string; [k: string]: unknown }[] = [];
  const logger = pino({ level: 'debug' }, { write: (s: string) => void lines.push(JSON.parse(s)) });
  return { logger, lines };
}

class FakeMonitor extends EventEmitter {
  stdout = new PassThrough();
  stderr = new PassThrough();
  pid = 4242;
  killed = false;
  kill(): boolean {
    this.killed = true;
    this.stdout.end();
    setImmediate(() => this.emit('close', null, 'SIGTERM'));
    return true;
  }
  emitLine(line: string): void {
    this.stdout.write(line + '\n');
  }
}

/** A kernel that becomes exactly what was asked for, and records everything. */
class FakeKernel implements KernelAdapter {
  snap: KernelSnapshot = { links: [{ name: 'eth0', kind: 'veth', mtu: 1500, up: true }], addrs: [], routes: [], neighs: [], fdb: [] };
  snapshots = 0;
  batches: Batch[][] = [];
  active = 0;
  maxActive = 0;
  failSnapshot?: Error;
  monitors: FakeMonitor[] = [];
  delayMs = 0;
  desiredForApply?: () => DesiredState;

  async snapshot(): Promise<KernelSnapshot> {
    this.active++;
    this.maxActive = Math.max(this.maxActive, this.active);
    try {
      await new Promise((r) => setTimeout(r, this.delayMs));
      this.snapshots++;
      if (this.failSnapshot) throw this.failSnapshot;
      return structuredClone(this.snap);
    } finally {
      this.active--;
    }
  }

  async apply(batches: readonly Batch[]): Promise<ApplyResult> {
    this.batches.push([...batches]);
    const ops = batches.flatMap((b) => b.ops);
    // Model just the routes.
    for (const op of ops) {
      if (op.target !== 'route') continue;
      this.snap.routes = this.snap.routes.filter((r) => !(r.owned && r.dst === op.dst));
      if (op.action === 'add') this.snap.routes.push({ dst: op.dst, owned: true, onlink: false, ...(op.via ? { via: op.via } : {}), ...(op.dev ? { dev: op.dev } : {}) });
    }
    return { applied: ops.length, failures: [] };
  }

  spawnMonitor() {
    const m = new FakeMonitor();
    this.monitors.push(m);
    return m as unknown as ReturnType<KernelAdapter['spawnMonitor']>;
  }
}

/** An injected event source: the test hands it typed events, as the netlink socket would. */
class FakeEvents {
  emit: (events: readonly KernelEvent[]) => void = () => undefined;
  lose: () => void = () => undefined;
  running = false;
  readonly factory: KernelEventSourceFactory = (h) => {
    this.emit = h.onEvents;
    this.lose = h.onLost;
    return { start: () => void (this.running = true), stop: () => void (this.running = false) };
  };
}

const routes = (...dsts: string[]): DesiredState => ({ ...emptyState(), routes: dsts.map((dst) => ({ dst, via: '192.0.2.2', dev: 'eth0' })) });

async function until(cond: () => boolean, what: string, deadlineMs = 5000): Promise<void> {
  const end = Date.now() + deadlineMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

t.test('nothing happens before a desired state is known', async (t) => {
  const kernel = new FakeKernel();
  kernel.snap.routes.push({ dst: '10.5.9.0/24', via: '192.0.2.9', dev: 'eth0', onlink: false, owned: true });
  const r = new Reconciler({ logger: memoryLogger().logger, kernel });
  t.same(await r.reconcileNow(), { applied: 0, failed: 0 });
  t.equal(kernel.snapshots, 0, 'the kernel is not even read: a stale route stays until weft knows what it wants');
  t.notOk(r.status().inSync);
});

t.test('applies, then a second run changes nothing', async (t) => {
  const kernel = new FakeKernel();
  const r = new Reconciler({ logger: memoryLogger().logger, kernel });
  r.setDesired(routes('10.5.2.0/24', '10.5.3.0/24'));
  t.same(await r.reconcileNow(), { applied: 2, failed: 0 });
  t.ok(r.status().inSync);
  t.same(await r.reconcileNow(), { applied: 0, failed: 0 });
  t.equal(kernel.batches.length, 1, 'no write the second time');
});

t.test('one run at a time; concurrent callers share the queued run', async (t) => {
  const kernel = new FakeKernel();
  kernel.delayMs = 30;
  const r = new Reconciler({ logger: memoryLogger().logger, kernel });
  r.setDesired(routes('10.5.2.0/24'));
  const first = r.reconcileNow();
  r.setDesired(routes('10.5.2.0/24', '10.5.3.0/24'));
  const [a, b, c] = await Promise.all([first, r.reconcileNow(), r.reconcileNow()]);
  t.equal(kernel.maxActive, 1, 'never two snapshots at once');
  t.equal(kernel.snapshots, 2, 'three calls, two runs');
  t.equal(a.applied, 1);
  t.same(b, c);
  t.same(kernel.snap.routes.map((x) => x.dst).sort(), ['10.5.2.0/24', '10.5.3.0/24'], 'the latest state won');
});

t.test('events: a relevant kernel change triggers a run, churn does not; resync backstops', async (t) => {
  const kernel = new FakeKernel();
  const events = new FakeEvents();
  const r = new Reconciler({ logger: memoryLogger().logger, kernel, resyncMs: 60_000, debounceMs: 5, events: events.factory });
  const ac = new AbortController();
  t.teardown(() => ac.abort());
  r.setDesired(routes('10.5.2.0/24'));
  r.start(ac.signal);
  t.equal(r.eventSource, 'injected');
  await until(() => kernel.batches.length === 1, 'the first apply');
  const runs = kernel.snapshots;
  // Someone deletes the route; the event source reports it.
  kernel.snap.routes = [];
  events.emit([{ kind: 'neigh', op: 'new', family: 4, ifindex: 2, ifname: 'eth0', dst: '192.0.2.9', lladdr: '02:00:00:00:00:09', state: 0x02, flags: 0 }]);
  await new Promise((res) => setTimeout(res, 100));
  t.equal(kernel.snapshots, runs, 'neighbour churn on the underlay is ignored');
  const deleted: KernelEvent = { kind: 'route', op: 'del', family: 4, ifindex: 2, ifname: 'eth0', dst: '10.5.2.0', prefixLen: 24, table: 254, protocol: 147, type: 1, gateway: '192.0.2.2' };
  events.emit([deleted]);
  await until(() => kernel.batches.length === 2, 'the route put back');
  t.same(kernel.snap.routes.map((x) => x.dst), ['10.5.2.0/24']);
  // A burst of events coalesces into few runs.
  const before = kernel.snapshots;
  for (let i = 0; i < 50; i++) events.emit([deleted]);
  await until(() => kernel.snapshots > before, 'a run after the burst');
  await new Promise((res) => setTimeout(res, 100));
  t.ok(kernel.snapshots - before <= 3, `50 events, ${kernel.snapshots - before} run(s)`);
});

t.test('events lost (a socket overrun): a run follows', async (t) => {
  const kernel = new FakeKernel();
  const events = new FakeEvents();
  const r = new Reconciler({ logger: memoryLogger().logger, kernel, resyncMs: 60_000, debounceMs: 5, events: events.factory });
  r.setDesired(routes('10.5.2.0/24'));
  r.start();
  t.teardown(() => r.stop());
  await until(() => kernel.batches.length === 1, 'the first apply');
  const runs = kernel.snapshots;
  events.lose();
  await until(() => kernel.snapshots > runs, 'a run after the loss');
  await r.stop();
  t.notOk(events.running, 'stop() stops the event source');
  t.equal(r.eventSource, undefined);
});

t.test('the netlink socket is the default event source', async (t) => {
  const r = new Reconciler({ logger: memoryLogger().logger, kernel: new FakeKernel(), resyncMs: 60_000 });
  r.start();
  t.teardown(() => r.stop());
  t.equal(r.eventSource, 'netlink');
  t.equal(r.monitorPid, undefined, 'no ip monitor process');
});

t.test('the ip monitor fallback: restarted when it dies, and a run follows', async (t) => {
  const { logger, lines } = memoryLogger();
  const kernel = new FakeKernel();
  const r = new Reconciler({ logger, kernel, resyncMs: 60_000, debounceMs: 5, events: 'ip-monitor' });
  r.setDesired(routes('10.5.2.0/24'));
  r.start();
  t.teardown(() => r.stop());
  await until(() => kernel.batches.length === 1, 'the first apply');
  const runs = kernel.snapshots;
  kernel.monitors[0]!.emit('close', 1, null);
  await until(() => kernel.monitors.length === 2, 'a new monitor');
  await until(() => kernel.snapshots > runs, 'a run after the restart (events may have been missed)');
  t.ok(lines.some((l) => /kernel monitor stopped/.test(l.msg)));
  await r.stop();
  t.ok(kernel.monitors[1]!.killed, 'stop() ends the monitor');
  t.equal(r.monitorPid, undefined);
});

t.test('errors: logged once per distinct error, retried with backoff, never thrown at the event loop', async (t) => {
  const { logger, lines } = memoryLogger();
  const kernel = new FakeKernel();
  kernel.failSnapshot = new Error('ip: boom');
  const r = new Reconciler({ logger, kernel, resyncMs: 60_000, debounceMs: 1 });
  r.setDesired(routes('10.5.2.0/24'));
  r.start();
  t.teardown(() => r.stop());
  await until(() => kernel.snapshots >= 3, 'three retries');
  t.equal(lines.filter((l) => /reconcile failed/.test(l.msg)).length, 1, 'the same error logged once');
  t.equal(r.status().lastError, 'ip: boom');
  t.notOk(r.status().inSync);
  kernel.failSnapshot = undefined;
  await until(() => kernel.batches.length === 1, 'recovery');
  t.ok(r.status().inSync);
  t.equal(r.status().lastError, undefined);
  await t.rejects(async () => {
    kernel.failSnapshot = new Error('ip: direct');
    await r.reconcileNow();
  }, /direct/, 'an awaited reconcileNow does see its error');
  kernel.failSnapshot = undefined;
});

t.test('route conflicts are reported once, and their end', async (t) => {
  const { logger, lines } = memoryLogger();
  const kernel = new FakeKernel();
  kernel.snap.routes.push({ dst: '10.5.2.0/24', via: '192.0.2.50', dev: 'eth0', onlink: false, owned: false });
  const r = new Reconciler({ logger, kernel });
  r.setDesired(routes('10.5.2.0/24'));
  await r.reconcileNow();
  await r.reconcileNow();
  t.same(r.status().conflicts, ['10.5.2.0/24']);
  t.equal(lines.filter((l) => /not weft's/.test(l.msg)).length, 1);
  t.same(kernel.snap.routes.filter((x) => x.dst === '10.5.2.0/24').map((x) => x.via), ['192.0.2.50'], 'the foreign route stays');
  kernel.snap.routes = [];
  await r.reconcileNow();
  t.same(r.status().conflicts, []);
  t.ok(lines.some((l) => /resolved/.test(l.msg)));
  t.same(kernel.snap.routes.map((x) => x.via), ['192.0.2.2']);
});

t.test('teardown removes what weft owns, only that', async (t) => {
  const kernel = new FakeKernel();
  kernel.snap.routes.push({ dst: '10.77.0.0/16', via: '192.0.2.7', dev: 'eth0', onlink: false, owned: false });
  const r = new Reconciler({ logger: memoryLogger().logger, kernel });
  r.setDesired(routes('10.5.2.0/24', '10.5.3.0/24'));
  await r.reconcileNow();
  const res = await r.teardown();
  t.equal(res.applied, 2);
  t.same(kernel.snap.routes.map((x) => x.dst), ['10.77.0.0/16']);
});
