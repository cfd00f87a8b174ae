// The netlink event socket against a real kernel, in a namespace of its own:
// a link, a route (proto 147), a neighbour and an FDB entry are each seen
// added and deleted as typed events; an overrun is reported as lost events
// and the socket keeps delivering afterwards. Needs root.
import t, { type Test } from 'tap';
import { pino } from 'pino';
import { NetlinkMonitor, type KernelEvent } from '../../src/dataplane/netlink.js';
import { createScratchNamespace, removeNamespaces, sh } from './support/scratch-ns.js';

const NS = 'wnl-ev';

const ip = (...args: string[]) => void sh('ip', ['-n', NS, ...args]);
const bridge = (...args: string[]) => void sh('bridge', ['-n', NS, ...args]);


/** Collects events; `next` waits for the first one after `from` that matches. */
class Recorder {
  events: KernelEvent[] = [];
  lost = 0;
  async next(match: (ev: KernelEvent) => boolean, what: string): Promise<KernelEvent> {
    const end = Date.now() + 5000;
    for (;;) {
      const found = this.events.find(match);
      if (found) return found;
      if (Date.now() > end) throw new Error(`no event: ${what}`);
      await new Promise((r) => setTimeout(r, 10));
    }
  }
}

function watch(t: Test, more: { rcvbuf?: number } = {}): Recorder {
  const rec = new Recorder();
  const m = new NetlinkMonitor({
    netns: NS,
    logger: pino({ level: 'silent' }),
    onEvents: (events) => void rec.events.push(...events),
    onLost: () => void rec.lost++,
    ...more,
  });
  m.start();
  t.teardown(() => m.stop());
  return rec;
}

if (process.getuid?.() !== 0) {
  t.fail('this test needs root (network namespaces); run it as root');
} else {
  createScratchNamespace(NS, 'wnl-');
  t.teardown(() => removeNamespaces('wnl-'));

  t.test('a link, a route, a neighbour and an FDB entry: added and deleted, each typed', async (t) => {
    const rec = watch(t);
    const MAC = '0e:57:00:00:00:09';
    ip('link', 'add', 'weft.7', 'type', 'vxlan', 'id', '7', 'dstport', '8472', 'dev', 'eth0', 'nolearning');
    ip('link', 'set', 'weft.7', 'up');
    ip('route', 'add', '10.7.0.0/24', 'via', '10.99.0.2', 'dev', 'eth0', 'proto', '147');
    ip('neigh', 'add', '10.7.1.0', 'lladdr', MAC, 'dev', 'weft.7', 'nud', 'permanent');
    bridge('fdb', 'append', MAC, 'dev', 'weft.7', 'dst', '10.99.0.2', 'self', 'permanent');

    const link = await rec.next((e) => e.kind === 'link' && e.op === 'new' && e.ifname === 'weft.7', 'link new');
    t.match(link, { kind: 'link', op: 'new', ifname: 'weft.7' }, 'link added');
    const route = await rec.next((e) => e.kind === 'route' && e.op === 'new' && e.dst === '10.7.0.0', 'route new');
    t.same(route, { kind: 'route', op: 'new', family: 4, ifindex: route.ifindex, ifname: 'eth0', dst: '10.7.0.0', prefixLen: 24, table: 254, protocol: 147, type: 1, gateway: '10.99.0.2' }, 'route added, proto 147, device named');
    const neigh = await rec.next((e) => e.kind === 'neigh' && e.op === 'new' && e.dst === '10.7.1.0', 'neigh new');
    t.same(neigh, { kind: 'neigh', op: 'new', family: 4, ifindex: link.ifindex, ifname: 'weft.7', dst: '10.7.1.0', lladdr: MAC, state: 0x80, flags: 0 }, 'permanent neighbour added');
    const fdb = await rec.next((e) => e.kind === 'fdb' && e.op === 'new' && e.lladdr === MAC, 'fdb new');
    t.match(fdb, { kind: 'fdb', op: 'new', family: 'bridge', ifindex: link.ifindex, ifname: 'weft.7', dst: '10.99.0.2', lladdr: MAC }, 'FDB entry added with its remote');
    t.ok((fdb.kind === 'fdb' ? fdb.state : 0) & 0x80, 'the FDB entry is permanent');

    bridge('fdb', 'del', MAC, 'dev', 'weft.7', 'dst', '10.99.0.2', 'self');
    ip('neigh', 'del', '10.7.1.0', 'dev', 'weft.7');
    ip('route', 'del', '10.7.0.0/24');
    ip('link', 'del', 'weft.7');
    t.match(await rec.next((e) => e.kind === 'fdb' && e.op === 'del', 'fdb del'), { family: 'bridge', ifname: 'weft.7', lladdr: MAC }, 'FDB entry deleted');
    t.match(await rec.next((e) => e.kind === 'neigh' && e.op === 'del', 'neigh del'), { dst: '10.7.1.0', ifname: 'weft.7' }, 'neighbour deleted');
    t.match(await rec.next((e) => e.kind === 'route' && e.op === 'del', 'route del'), { dst: '10.7.0.0', prefixLen: 24, protocol: 147 }, 'route deleted');
    t.match(await rec.next((e) => e.kind === 'link' && e.op === 'del', 'link del'), { ifname: 'weft.7', ifindex: link.ifindex }, 'link deleted');
    t.equal(rec.lost, 0, 'nothing lost');
  });

  t.test('an overrun is reported as lost events, and events keep flowing', async (t) => {
    const rec = watch(t, { rcvbuf: 4096 });
    await new Promise((r) => setTimeout(r, 100));
    // 3000 routes in one batch: with a tiny socket buffer the kernel drops some.
    const lines = Array.from({ length: 3000 }, (_, i) => `route add 10.8.${i >> 8}.${i & 255}/32 dev eth0 proto 147`);
    sh('ip', ['-n', NS, '-batch', '-'], { input: lines.join('\n') + '\n' });
    const end = Date.now() + 5000;
    while (rec.lost === 0 && Date.now() < end) await new Promise((r) => setTimeout(r, 10));
    t.ok(rec.lost > 0, `the overrun was reported (${rec.events.length} of 3000 events delivered)`);
    ip('route', 'add', '10.9.0.0/24', 'dev', 'eth0', 'proto', '147');
    t.match(await rec.next((e) => e.kind === 'route' && e.dst === '10.9.0.0', 'an event after the overrun'), { op: 'new', ifname: 'eth0' }, 'the socket delivers after the overrun, devices still named');
  });

  t.test('a namespace that does not exist: one line naming cause and fix', async (t) => {
    const warnings: string[] = [];
    const m = new NetlinkMonitor({
      netns: 'wnl-missing',
      logger: pino({ level: 'warn' }, { write: (s: string) => void warnings.push(String(JSON.parse(s).err)) }),
      onEvents: () => undefined,
      onLost: () => undefined,
    });
    m.start();
    m.stop();
    t.same(warnings, ['network namespace "wnl-missing" does not exist (no /run/netns/wnl-missing); create it (ip netns add) or fix the name'], 'logged once, as one line');
  });
}
