// The Dataplane against a fake kernel and a fake table: one pass applies
// every part even past a failure, one status per part, another pass asked
// for while a part outside the kernel fails, and quiet once all apply.
// No root needed.
import t from 'tap';
import { pino } from 'pino';
import { Dataplane, type KernelPart, type NodeDesired, type TablePart } from '../../src/dataplane/dataplane.js';
import type { NftRules } from '../../src/dataplane/nft.js';
import type { ReconcilerStatus } from '../../src/dataplane/reconciler.js';
import { emptyState } from '../../src/dataplane/state.js';

function memoryLogger() {
  const lines: { level: number; msg: string }[] = [];
  const logger = pino({ level: 'debug' }, { write: (s: string) => void lines.push(JSON.parse(s)) });
  return { logger, lines };
}

class FakeKernel implements KernelPart {
  kernelStatus: ReconcilerStatus = { inSync: true, conflicts: [], failures: [], missingLinks: [], runs: 0 };
  fail?: Error;
  setDesired(): void {}
  async reconcileNow() {
    if (this.fail) throw this.fail;
    return { applied: 0, failed: 0 };
  }
  status(): ReconcilerStatus {
    return this.kernelStatus;
  }
  start(): void {}
  async stop(): Promise<void> {}
}

class FakeTable implements TablePart {
  applied: NftRules[] = [];
  removed = 0;
  fail?: Error;
  error: string | undefined;
  async apply(rules: NftRules) {
    if (this.fail) throw this.fail;
    this.applied.push(rules);
    return { written: true };
  }
  async remove(): Promise<void> {
    this.removed++;
  }
  start(): void {}
  async stop(): Promise<void> {}
}

function setup() {
  const { logger, lines } = memoryLogger();
  const kernel = new FakeKernel();
  const table = new FakeTable();
  let requested = 0;
  const dp = new Dataplane({ logger, kernel, table, requestPass: () => void requested++ });
  const ac = new AbortController();
  dp.start(ac.signal);
  t.teardown(() => {
    ac.abort();
    return dp.stop();
  });
  return { dp, kernel, table, lines, requests: () => requested };
}

const desired = (extras: NodeDesired['extras'], nft?: NftRules): NodeDesired => ({ kernel: emptyState(), nft, extras });
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

t.test('before the first pass the data plane is pending; after it every part is in sync', async (t) => {
  const { dp } = setup();
  t.same(dp.status(), [{ part: 'dataplane', state: 'pending', reason: 'data plane not programmed yet' }]);
  const failed = await dp.apply(desired([{ name: 'backend', apply: async () => {} }, { name: 'subnet.env', apply: async () => {} }]));
  t.same({ failed, status: dp.status() }, {
    failed: [],
    status: [
      { part: 'routes', state: 'in-sync' },
      { part: 'nftables', state: 'in-sync' },
      { part: 'backend', state: 'in-sync' },
      { part: 'subnet.env', state: 'in-sync' },
    ],
  });
});

t.test('a failing part does not stop the parts after it, and is reported by name', async (t) => {
  const { dp, kernel, table } = setup();
  kernel.fail = new Error('ip: Operation not permitted');
  const order: string[] = [];
  const failed = await dp.apply(desired([
    { name: 'backend', apply: async () => { order.push('backend'); throw new Error('cannot write bird.conf'); } },
    { name: 'subnet.env', apply: async () => void order.push('subnet.env') },
  ], { allowedPeers: [], vxlanPort: 8472 }));
  t.same(failed, ['routes: ip: Operation not permitted', 'backend: cannot write bird.conf']);
  t.same({ order, tables: table.applied.length }, { order: ['backend', 'subnet.env'], tables: 1 }, 'the table and both extras were still applied');
  t.same(dp.status().find((p) => p.part === 'backend'), { part: 'backend', state: 'failed', reason: 'cannot write bird.conf' });
});

t.test('routes: conflicts, refusals and missing links fail readiness; a change in flight is pending', async (t) => {
  const { dp, kernel } = setup();
  await dp.apply(desired([]));
  kernel.kernelStatus = { inSync: false, conflicts: [], failures: [], missingLinks: [], runs: 1 };
  t.same(dp.status()[0], { part: 'routes', state: 'pending', reason: 'a change is being applied' });
  kernel.kernelStatus = { inSync: false, conflicts: ['10.5.2.0/24'], failures: ['route replace x: File exists'], missingLinks: ['weft0'], runs: 2 };
  t.same(dp.status().filter((p) => p.state === 'failed').map((p) => p.part), ['routes', 'links', 'routes']);
});

t.test('no rules: the table is removed once, not on every pass', async (t) => {
  const { dp, table } = setup();
  await dp.apply(desired([]));
  await dp.apply(desired([]));
  t.equal(table.removed, 1);
});

t.test('while a part outside the kernel fails, another pass is asked for; none once it applies', async (t) => {
  const { dp, lines, requests } = setup();
  let broken = true;
  const extras = [{ name: 'backend', apply: async () => { if (broken) throw new Error('birdc: connection refused'); } }];
  await dp.apply(desired(extras));
  await sleep(700); // the first retry waits 200 ms
  t.equal(requests(), 1, 'one pass asked for after the first backoff step');
  t.match(lines.map((l) => l.msg), [/data plane not fully applied \(backend: birdc: connection refused\); another pass follows/]);
  broken = false;
  await dp.apply(desired(extras));
  await sleep(700);
  t.equal(requests(), 1, 'no further pass once every part applied');
  t.match(lines.at(-1)!.msg, /every part of the data plane is applied again/);
});

t.test('a kernel failure is the reconciler\'s to retry: no extra pass is asked for', async (t) => {
  const { dp, kernel, requests } = setup();
  kernel.fail = new Error('ip: Operation not permitted');
  await dp.apply(desired([]));
  await sleep(700);
  t.equal(requests(), 0);
});
