// The IPAM allocator: pure functions over a state, both families, pinned
// addresses, exhaustion and the small pools.
import t from 'tap';
import { Cidr, IP } from '../../src/core/cidr.js';
import { allocate, IpamError, release, type AllocateRequest, type Range } from '../../src/ipam/allocator.js';
import { emptyState, type IpamState } from '../../src/ipam/state.js';

const NOW = new Date('2026-01-01T00:00:00Z');
const V4: Range = { subnet: Cidr.parse('10.244.3.0/24') };
const V6: Range = { subnet: Cidr.parse('2001:db8:3::/64') };

function req(containerId: string, extra: Partial<AllocateRequest> = {}): AllocateRequest {
  return { containerId, ifname: 'eth0', netns: `/var/run/netns/${containerId}`, now: NOW, ...extra };
}

/** Allocates for each container in turn, returning the final state and each one's addresses. */
function run(ranges: Range[], ids: string[], state: IpamState = emptyState()): { state: IpamState; addrs: string[] } {
  const addrs: string[] = [];
  for (const id of ids) {
    const r = allocate(state, ranges, req(id));
    state = r.state;
    addrs.push(r.allocated.map((a) => a.address).join(','));
  }
  return { state, addrs };
}

function failure(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    return err instanceof IpamError ? `${err.kind}: ${err.message}` : `not an IpamError: ${String(err)}`;
  }
  return 'no error';
}

t.test('addresses start after the gateway and go round, skipping the network and broadcast', async (t) => {
  const small: Range = { subnet: Cidr.parse('192.0.2.0/29') };
  const { state, addrs } = run([small], ['a', 'b', 'c', 'd', 'e']);
  t.same(addrs, ['192.0.2.2', '192.0.2.3', '192.0.2.4', '192.0.2.5', '192.0.2.6'], '.0 network, .1 gateway and .7 broadcast are skipped');
  const freed = release(state, 'b', undefined, NOW).state;
  t.same(run([small], ['f'], freed).addrs, ['192.0.2.3'], 'after the last position wraps to the one free address');
});

t.test('a freed address is not handed out again at once', async (t) => {
  const { state } = run([V4], ['a', 'b']);
  const freed = release(state, 'a', undefined, NOW).state;
  t.same(run([V4], ['c'], freed).addrs, ['10.244.3.4'], 'the next after the last position, not the freed .2');
});

t.test('dual stack: one address per family', async (t) => {
  t.same(run([V4, V6], ['a', 'b']).addrs, ['10.244.3.2,2001:db8:3::2', '10.244.3.3,2001:db8:3::3']);
});

t.test('IPv6: the last address of the subnet is a host', async (t) => {
  const r: Range = { subnet: Cidr.parse('2001:db8:3::/126') };
  t.same(run([r], ['a', 'b']).addrs, ['2001:db8:3::2', '2001:db8:3::3'], 'no broadcast in IPv6');
});

t.test('an explicit gateway is skipped and the first host is handed out', async (t) => {
  const r: Range = { subnet: Cidr.parse('192.0.2.0/29'), gateway: IP.parse('192.0.2.6') };
  t.same(run([r], ['a', 'b', 'c', 'd', 'e']).addrs, ['192.0.2.1', '192.0.2.2', '192.0.2.3', '192.0.2.4', '192.0.2.5']);
});

t.test('ADD is idempotent: the same container and interface get the same address and the state is unchanged', async (t) => {
  const first = allocate(emptyState(), [V4], req('a'));
  const again = allocate(first.state, [V4], req('a'));
  t.same([again.allocated, again.state === first.state], [first.allocated, true]);
});

t.test('a second interface of the same container gets its own address', async (t) => {
  const first = allocate(emptyState(), [V4], req('a'));
  const net1 = allocate(first.state, [V4], req('a', { ifname: 'net1' }));
  t.equal(net1.allocated[0]!.address, '10.244.3.3');
});

t.test('release frees by container; releasing twice changes nothing', async (t) => {
  const { state } = run([V4, V6], ['a', 'b']);
  const once = release(state, 'a', undefined, NOW);
  const twice = release(once.state, 'a', undefined, NOW);
  t.same([once.released.length, once.state.allocations.map((a) => a.containerId), twice.released.length, twice.state === once.state], [2, ['b', 'b'], 0, true]);
});

t.test('reserved and borrowed-out addresses are skipped', async (t) => {
  const state: IpamState = {
    ...emptyState(),
    reservations: [{ address: '10.244.3.2', family: 4, pod: { namespace: 'db', name: 'pg-0' }, since: NOW.toISOString() }],
    borrowedOut: ['10.244.3.3'],
  };
  t.same(run([V4], ['a'], state).addrs, ['10.244.3.4']);
});

t.test('exhaustion names the range, its size and how many are held', async (t) => {
  const r: Range = { subnet: Cidr.parse('192.0.2.0/29') };
  const { state } = run([r], ['a', 'b', 'c', 'd', 'e']);
  t.equal(failure(() => allocate(state, [r], req('f'))), 'exhausted: no free address in 192.0.2.0/29: it has 5 usable addresses and 5 are held');
});

t.test('one-address pools work: a /30 with its gateway, a /32, a /128', async (t) => {
  const pools: Range[] = [{ subnet: Cidr.parse('192.0.2.0/30') }, { subnet: Cidr.parse('192.0.2.9/32') }, { subnet: Cidr.parse('2001:db8::9/128') }];
  const got = pools.map((p) => {
    const one = allocate(emptyState(), [p], req('a'));
    return [one.allocated[0]!.address, failure(() => allocate(one.state, [p], req('b')))];
  });
  t.same(got, [
    ['192.0.2.2', 'exhausted: no free address in 192.0.2.0/30: it has 1 usable address and 1 is held'],
    ['192.0.2.9', 'exhausted: no free address in 192.0.2.9/32: it has 1 usable address and 1 is held'],
    ['2001:db8::9', 'exhausted: no free address in 2001:db8::9/128: it has 1 usable address and 1 is held'],
  ]);
});

t.test('a huge IPv6 range allocates without walking it', async (t) => {
  const r: Range = { subnet: Cidr.parse('2001:db8::/32') };
  t.same(run([r], ['a']).addrs, ['2001:db8::2']);
});

t.test('a pinned address is handed out as requested and marked pinned', async (t) => {
  const r = allocate(emptyState(), [V4, V6], req('a', { requested: [IP.parse('10.244.3.17')], mac: '02:00:00:00:00:17', pod: { namespace: 'db', name: 'pg-0' } }));
  t.same(r.allocated.map((a) => [a.address, a.pinned, a.mac]), [['10.244.3.17', true, '02:00:00:00:00:17'], ['2001:db8:3::2', false, '02:00:00:00:00:17']]);
});

t.test('a pinned address does not move the round-robin position', async (t) => {
  const pinned = allocate(emptyState(), [V4], req('a', { requested: [IP.parse('10.244.3.17')] }));
  t.same(run([V4], ['b'], pinned.state).addrs, ['10.244.3.2']);
});

t.test('requests that can never be met are refused, naming the address', async (t) => {
  const cases: Array<[string, string]> = [['10.244.4.5', 'outside'], ['10.244.3.0', 'network'], ['10.244.3.1', 'gateway'], ['10.244.3.255', 'broadcast']];
  t.same(cases.map(([ip]) => failure(() => allocate(emptyState(), [V4], req('a', { requested: [IP.parse(ip)] })))), [
    "invalid: requested address 10.244.4.5 is outside this node's subnet 10.244.3.0/24",
    'invalid: requested address 10.244.3.0 is the network address of 10.244.3.0/24; pick a host address',
    'invalid: requested address 10.244.3.1 is the gateway of 10.244.3.0/24; pick a host address',
    'invalid: requested address 10.244.3.255 is the broadcast address of 10.244.3.0/24; pick a host address',
  ]);
});

t.test('a second pod asking for a held address gets an error naming the holder', async (t) => {
  const first = allocate(emptyState(), [V4], req('aaaa', { requested: [IP.parse('10.244.3.17')], pod: { namespace: 'db', name: 'pg-0' } }));
  t.equal(failure(() => allocate(first.state, [V4], req('bbbb', { requested: [IP.parse('10.244.3.17')], pod: { namespace: 'db', name: 'pg-1' } }))),
    'conflict: requested address 10.244.3.17 is held by pod db/pg-0 (container aaaa)');
});

t.test('a pinned pod deleted and recreated gets its address and MAC back; another pod cannot take it meanwhile', async (t) => {
  const pod = { namespace: 'db', name: 'pg-0' };
  const first = allocate(emptyState(), [V4], req('old', { requested: [IP.parse('10.244.3.17')], mac: '02:00:00:00:00:17', pod }));
  const gone = release(first.state, 'old', undefined, NOW).state;
  const thief = failure(() => allocate(gone, [V4], req('x', { requested: [IP.parse('10.244.3.17')], pod: { namespace: 'db', name: 'other' } })));
  const back = allocate(gone, [V4], req('new', { requested: [IP.parse('10.244.3.17')], pod }));
  t.same([thief, back.allocated[0]!.mac, back.state.reservations.length], ['conflict: requested address 10.244.3.17 is reserved for pod db/pg-0', '02:00:00:00:00:17', 0]);
});

t.test('a request for a borrowed-out address is refused', async (t) => {
  const state: IpamState = { ...emptyState(), borrowedOut: ['10.244.3.17'] };
  t.equal(failure(() => allocate(state, [V4], req('a', { requested: [IP.parse('10.244.3.17')] }))), 'conflict: requested address 10.244.3.17 is borrowed by another node for a pinned pod there');
});

t.test('a requested family the node lacks, or two of one family, are refused', async (t) => {
  t.same([
    failure(() => allocate(emptyState(), [V4], req('a', { requested: [IP.parse('2001:db8:3::5')] }))),
    failure(() => allocate(emptyState(), [V4], req('a', { requested: [IP.parse('10.244.3.5'), IP.parse('10.244.3.6')] }))),
  ], [
    'invalid: requested address 2001:db8:3::5 is IPv6, but this node has no IPv6 subnet',
    'invalid: two IPv4 addresses requested (10.244.3.5 and 10.244.3.6); give at most one per family',
  ]);
});

t.test('a pinned address of another node\'s subnet inside the cluster Network is borrowed', async (t) => {
  const networks = [Cidr.parse('10.244.0.0/16')];
  const pod = { namespace: 'db', name: 'pg-0' };
  const r = allocate(emptyState(), [V4], req('a', { requested: [IP.parse('10.244.9.17')], networks, pod }));
  const next = run([V4], ['b'], r.state).addrs;
  t.same({ got: r.allocated.map((a) => [a.address, a.pinned, a.borrowed]), next }, { got: [['10.244.9.17', true, true]], next: ['10.244.3.2'] },
    'recorded as pinned and borrowed; the own range is untouched');
});

t.test('a borrowed request is refused outside the Network, on its network address, or when held here', async (t) => {
  const networks = [Cidr.parse('10.244.0.0/16')];
  const held = allocate(emptyState(), [V4], req('aaaa', { requested: [IP.parse('10.244.9.17')], networks, pod: { namespace: 'db', name: 'pg-0' } })).state;
  t.same([
    failure(() => allocate(emptyState(), [V4], req('a', { requested: [IP.parse('10.99.0.5')], networks }))),
    failure(() => allocate(emptyState(), [V4], req('a', { requested: [IP.parse('10.244.0.0')], networks }))),
    failure(() => allocate(held, [V4], req('bbbb', { requested: [IP.parse('10.244.9.17')], networks, pod: { namespace: 'db', name: 'pg-1' } }))),
  ], [
    "invalid: requested address 10.99.0.5 is outside this node's subnet 10.244.3.0/24 and the cluster Network 10.244.0.0/16",
    'invalid: requested address 10.244.0.0 is the network address of the cluster Network 10.244.0.0/16; pick a host address',
    'conflict: requested address 10.244.9.17 is held by pod db/pg-0 (container aaaa)',
  ]);
});

t.test('a borrowed address released by its pinned pod becomes its reservation, and comes back to it', async (t) => {
  const networks = [Cidr.parse('10.244.0.0/16')];
  const pod = { namespace: 'db', name: 'pg-0' };
  const first = allocate(emptyState(), [V4], req('old', { requested: [IP.parse('10.244.9.17')], networks, pod, mac: '02:00:00:00:00:17' }));
  const gone = release(first.state, 'old', undefined, NOW).state;
  const back = allocate(gone, [V4], req('new', { requested: [IP.parse('10.244.9.17')], networks, pod }));
  t.same([gone.reservations.map((r) => r.address), back.allocated.map((a) => [a.borrowed, a.mac]), back.state.reservations.length],
    [['10.244.9.17'], [[true, '02:00:00:00:00:17']], 0]);
});
