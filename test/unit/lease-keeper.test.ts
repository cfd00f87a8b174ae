// LeaseKeeper with a fake subnet manager: a vanished lease is taken again on
// the same subnet or not at all; a blocked lease (subnet or PublicIP leased to
// another node, no free subnet) is said once, keeps the old lease in place,
// and is tried again only when woken or after the slow period. Counted, not timed.
import { pino } from 'pino';
import t from 'tap';
import { LeaseKeeper } from '../../src/agent/lease-keeper.js';
import { Cidr, IP } from '../../src/core/cidr.js';
import type { Lease, LeaseAttrs } from '../../src/subnet/lease.js';
import { LeaseGoneError, NoFreeSubnetError, PublicIPTakenError, SubnetTakenError, type SubnetManager } from '../../src/subnet/manager.js';

const HOUR = 3600_000;
const MINE = Cidr.parse('10.244.3.0/24');
const attrs: LeaseAttrs = { publicIP: IP.parse('192.0.2.11'), backendType: 'host-gw', backendData: null, nodeName: 'n1' };
const holder: LeaseAttrs = { publicIP: IP.parse('192.0.2.12'), backendType: 'host-gw', backendData: null, nodeName: 'n2' };

type AcquireOpts = Parameters<SubnetManager['acquireLease']>[1];

/** A subnet manager whose acquireLease answers from a script, one answer per call (the last repeats). */
function fakeManager(answers: (() => Lease)[]): { sm: SubnetManager; calls: AcquireOpts[] } {
  const calls: AcquireOpts[] = [];
  const sm: SubnetManager = {
    getNetworkConfig: () => Promise.reject(new Error('not used')),
    acquireLease: async (_attrs, opts) => {
      calls.push(opts);
      return answers[Math.min(calls.length - 1, answers.length - 1)]!();
    },
    renewLease: (lease) => Promise.reject(new LeaseGoneError(lease.subnet)),
    watchLeases: () => Promise.resolve(),
    close: () => Promise.resolve(),
  };
  return { sm, calls };
}

function keeper(sm: SubnetManager, published: () => LeaseAttrs = () => attrs) {
  const lines: { level: number; msg: string }[] = [];
  const logger = pino({ level: 'info' }, { write: (s: string) => void lines.push(JSON.parse(s)) });
  const reacquired: Lease[] = [];
  const k = new LeaseKeeper({
    subnetManager: sm,
    logger,
    attrs: published,
    retry: (_what, _signal, fn) => fn(),
    counters: { lease_renewals_total: 0, lease_reacquisitions_total: 0 },
    onReacquired: async (lease) => void reacquired.push(lease),
    blockedRetryMs: HOUR, // only a wake-up retries within a test
    subnetFile: '/run/weft/subnet.env',
  });
  return { k, lines, reacquired };
}

const lease = (subnet = MINE): Lease => ({ subnet, attrs, expiresAt: Date.now() + HOUR });
const taken = (): Lease => {
  throw new SubnetTakenError(MINE, holder);
};

/** Resolves once `cond` holds, checking after each turn of the event loop. */
async function until(cond: () => boolean): Promise<void> {
  while (!cond()) await new Promise((r) => setImmediate(r));
}

t.test('a vanished lease is taken again on the same subnet, asked for as the one to keep', async (t) => {
  const { sm, calls } = fakeManager([() => lease(), () => lease()]);
  const { k, reacquired } = keeper(sm);
  const ac = new AbortController();
  await k.acquire({}, ac.signal);
  await k.reacquire(ac.signal);
  t.same(
    calls.map((c) => ({ prefer: c?.prefer?.toString(), keep: c?.keepPrefer })),
    [{ prefer: undefined, keep: false }, { prefer: '10.244.3.0/24', keep: true }],
    'first start picks freely; the re-acquisition insists on the old subnet',
  );
  t.same(reacquired.map((l) => String(l.subnet)), ['10.244.3.0/24'], 'reprogrammed once, same subnet');
  t.equal(k.blocked, undefined, 'not blocked');
});

t.test('a subnet taken by another node blocks: one line, the old lease kept, retried when woken', async (t) => {
  const { sm, calls } = fakeManager([() => lease(), taken, taken, taken, () => lease()]);
  let backendType = 'host-gw';
  const { k, lines, reacquired } = keeper(sm, () => ({ ...attrs, backendType }));
  const ac = new AbortController();
  t.teardown(() => ac.abort());
  await k.acquire({}, ac.signal);
  const before = k.own;
  const running = k.reacquire(ac.signal);
  await until(() => calls.length === 2);
  // Lease events during the block wake it; each wake is one try, and the line is not repeated.
  await k.reacquire(ac.signal);
  await until(() => calls.length === 3);
  k.retryBlockedNow();
  await until(() => calls.length === 4);
  const blocked = k.blocked;
  t.equal(k.own, before, 'the old lease stays in place while blocked (the data plane keeps it)');
  t.same(reacquired, [], 'nothing reprogrammed while blocked');
  const errors = lines.filter((l) => l.level === 50).map((l) => l.msg);
  t.same(errors, [blocked], 'said once, as the readiness reason says it');
  t.equal(
    blocked,
    "this node's subnet 10.244.3.0/24 is leased to node n2 (PublicIP 192.0.2.12); routes, pods and /run/weft/subnet.env are left as they are and weft retries every 3600s: " +
      'to give this node a new subnet, drain it, delete /run/weft/subnet.env and restart weft (or delete the other lease if that node is gone)',
    'the line names the subnet, the holder and the fix',
  );
  // A backend switch while blocked returns at once instead of queueing behind the block.
  let republished = false;
  sm.renewLease = async (l) => ((republished = true), l);
  backendType = 'vxlan';
  const republishing = k.republish(ac.signal);
  k.retryBlockedNow();
  await running;
  await republishing;
  t.equal(republished, false, 'a switch while blocked leaves publishing to the re-acquisition');
  t.same({ calls: calls.length, blocked: k.blocked, reacquired: reacquired.map((l) => String(l.subnet)) }, { calls: 5, blocked: undefined, reacquired: ['10.244.3.0/24'] }, 'once the other lease is gone, the same subnet is taken back');
});

t.test('at start, a subnet.env subnet leased to another node blocks the first lease too', async (t) => {
  const { sm, calls } = fakeManager([taken, () => lease()]);
  const { k } = keeper(sm);
  const ac = new AbortController();
  t.teardown(() => ac.abort());
  const acquiring = k.acquire({ subnet: MINE }, ac.signal);
  await until(() => k.blocked !== undefined);
  t.same({ own: k.own, keep: calls[0]?.keepPrefer, reason: /^this node's subnet 10\.244\.3\.0\/24 is leased to node n2/.test(k.blocked!) }, { own: undefined, keep: true, reason: true }, 'no lease, blocked, nothing picked instead');
  k.retryBlockedNow();
  t.equal(String((await acquiring).subnet), '10.244.3.0/24', 'taken once free');
});

t.test('PublicIP held by another node, and no free subnet: blocked with the manager\'s line, one try per wake-up', async (t) => {
  const other: Lease = { subnet: Cidr.parse('10.244.7.0/24'), attrs: { ...attrs, nodeName: 'n9' } };
  for (const [name, err] of [
    ['PublicIP', new PublicIPTakenError(attrs.publicIP, 'n1', other)],
    ['exhausted', new NoFreeSubnetError('no free subnet for this node: SubnetMin 10.244.1.0 and SubnetMax 10.244.2.0 allow 2 /24 subnets and all are leased or reserved; widen SubnetMin/SubnetMax (or Network) in net-conf, or delete stale leases')],
  ] as const) {
    const { sm, calls } = fakeManager([
      () => {
        throw err;
      },
    ]);
    const { k, lines } = keeper(sm);
    const ac = new AbortController();
    const acquiring = k.acquire({}, ac.signal).catch((e: unknown) => e);
    for (let wakes = 0; wakes < 3; wakes++) {
      await until(() => calls.length === wakes + 1 && k.blocked !== undefined);
      k.retryBlockedNow();
    }
    await until(() => calls.length === 4);
    ac.abort();
    await acquiring;
    t.same(
      { tries: calls.length, said: lines.filter((l) => l.level === 50).length, reason: k.blocked },
      { tries: 4, said: 1, reason: `${err.message} (retrying every 3600s)` },
      `${name}: one try per wake-up, said once, the reason names it`,
    );
  }
  t.match(
    new PublicIPTakenError(attrs.publicIP, 'n1', other).message,
    /^PublicIP 192\.0\.2\.11 is already leased to node n9 \(subnet 10\.244\.7\.0\/24\); this node \(n1\) cannot share it: pass --public-ip \(or --iface\)/,
    'the PublicIP line names the address, the holder and the flags',
  );
});
