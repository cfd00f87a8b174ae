// bgp dual-stack end to end: real BIRD 2 in three node namespaces on an
// underlay with 198.51.100.0/24 and 2001:db8::/64, driven through
// createBgpBackend with dual-stack leases; each family has its own sessions.
// IPv6 pod routes (2001:db8:1000:n::/64) must reach every kernel, pods must
// ping across in both families, and no route of either family may vanish
// while BIRD is killed or the agent restarts. gobgpd plays a dual-stack ToR.
// Needs root. Every namespace starts with wb6-.
import t, { type Test } from 'tap';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { createBgpBackend, type BgpBackend } from '../../backends/bgp/index.js';
import type { BackendContext } from '../../backends/backend.js';
import { Cidr, IP, type Family } from '../../src/core/cidr.js';
import type { Lease } from '../../src/subnet/lease.js';
import { until } from './support/lab-fixture.js';
import { withIPv6 } from '../support/dual-stack.js';
import { BgpNetns, TOR, podAddress, podSubnet, sh, sleep, underlayIP } from './support/bgp-netns.js';

const NS = 'wb6-';
const FAMILIES: Family[] = [4, 6];
const NETWORK = Cidr.parse('10.5.0.0/16');
const NETWORK6 = Cidr.parse('2001:db8:1000::/56');
const MEMBERS = [1, 2, 3];
const logger = pino({ level: process.env.WBG_LOG ?? 'warn' }, pino.destination({ fd: 2, sync: true }));
const net = new BgpNetns(NS, FAMILIES, logger);

if (process.getuid?.() !== 0) {
  t.fail('the bgp dual-stack e2e test needs root (network namespaces); run it as root');
  process.exit(1);
}

/** Node n's lease: dual-stack, or (`v4only`) as a node publishes it before IPv6 is turned on. */
function lease(n: number, v4only = false): Lease {
  const v4: Lease = { subnet: Cidr.parse(podSubnet(n, 4)), attrs: { publicIP: IP.parse(underlayIP(n, 4)), backendType: 'bgp', backendData: null, nodeName: `n${n}` } };
  return v4only ? v4 : withIPv6(v4, podSubnet(n, 6), underlayIP(n, 6));
}

interface Node {
  n: number;
  backend: BgpBackend;
}

let runDir = '';
const nodes: Node[] = [];

async function startNode(n: number, raw: Record<string, unknown>): Promise<Node> {
  const ip = IP.parse(underlayIP(n, 4));
  const ip6 = IP.parse(underlayIP(n, 6));
  const range = (network: Cidr, len: number) => ({ network, subnetLen: len, subnetMin: network.subnet(len, 1n), subnetMax: network.subnet(len, 255n) });
  const ctx: BackendContext = {
    config: { ...range(NETWORK, 24), ipv6: range(NETWORK6, 64), backend: { type: 'bgp', raw } },
    ext: {
      name: net.dev(n),
      ip,
      publicIP: ip,
      mtu: 1500,
      connected: [Cidr.parse('198.51.100.0/24')],
      ipv6: { ip: ip6, publicIP: ip6, connected: [Cidr.parse('2001:db8::/64')] },
    },
    logger: logger.child({ node: `n${n}` }),
    nodeName: `n${n}`,
    runDir: join(runDir, `n${n}`),
  };
  const backend = await createBgpBackend(ctx, { execPrefix: ['ip', 'netns', 'exec', net.nodeNs(n)], readyGraceMs: 5000, pollMs: 500, restartDelayMs: { min: 200, max: 2000 } });
  const node = { n, backend };
  nodes.push(node);
  return node;
}

async function syncAll(members: number[], v4only = false): Promise<void> {
  await Promise.all(nodes.map((node) => node.backend.sync!(lease(node.n, v4only), members.filter((m) => m !== node.n).map((m) => lease(m, v4only)))));
}

async function stopAll(): Promise<void> {
  await Promise.all(nodes.map((n) => n.backend.stop({ teardown: true }).catch(() => undefined)));
  nodes.length = 0;
}

/** "nN:prefix" of every member's expected route (each other member's subnet, each family, via its address) that node n lacks. */
async function missingRoutes(members: number[], families: readonly Family[] = FAMILIES): Promise<string[]> {
  const missing = await Promise.all(
    members.flatMap((n) =>
      families.map(async (family) => {
        const routes = await net.birdRoutes(net.nodeNs(n), family);
        return members.filter((m) => m !== n && routes.get(podSubnet(m, family)) !== underlayIP(m, family)).map((m) => `n${n}:${podSubnet(m, family)}`);
      }),
    ),
  );
  return missing.flat();
}

async function waitConverged(members: number[], families: readonly Family[] = FAMILIES): Promise<void> {
  await until(`IPv${families.join('+IPv')} routes on ${members.map((m) => `n${m}`).join(',')}`, async () => (await missingRoutes(members, families)).length === 0);
}

/** Samples every member's routes (of both families) every 100 ms for `ms`; returns what was ever missing. */
async function watchRoutes(members: number[], ms: number, families: readonly Family[] = FAMILIES): Promise<string[]> {
  const missing = new Set<string>();
  const end = Date.now() + ms;
  while (Date.now() < end) {
    for (const m of await missingRoutes(members, families)) missing.add(m);
    await sleep(100);
  }
  return [...missing];
}

/** Every member pings every other member's pod-side address from its own, in both families, all at once. */
async function pingMatrix(t: Test, members: number[]): Promise<void> {
  const pairs = members.flatMap((a) => members.filter((b) => b !== a).flatMap((b) => FAMILIES.map((family) => ({ a, b, family }))));
  const failed = await Promise.all(
    pairs.map(async ({ a, b, family }) => {
      const r = await sh(net.inNs(a, ['ping', `-${family}`, '-c', '1', '-W', '2', '-I', podAddress(a, family), podAddress(b, family)]), { check: false });
      return r.code === 0 ? [] : [`IPv${family} n${a}->n${b}`];
    }),
  );
  t.same(failed.flat(), [], `pods reach each other in IPv4 and IPv6 among ${members.map((m) => `n${m}`).join(', ')}`);
}

t.before(async () => {
  await net.cleanup();
  runDir = await mkdtemp(join(tmpdir(), `${NS}e2e-`));
  await net.setUp(MEMBERS);
});

t.teardown(async () => {
  await stopAll();
  await net.stopGobgpd();
  await net.cleanup();
});

t.test('IPv6 turned on in a running IPv4 mesh of 3: IPv6 pod routes in every kernel, IPv4 untouched, pods ping across in both families', async (t) => {
  for (const n of MEMBERS) await startNode(n, {});
  await syncAll(MEMBERS, true);
  await waitConverged(MEMBERS, [4]);
  const ipv4Since = async (): Promise<string[]> => (await Promise.all(nodes.map(async (n) => (await n.backend.sessions()).filter((s) => !s.peer.includes(':')).map((s) => `n${n.n} ${s.peer} ${s.since}`)))).flat().sort();
  const before = await ipv4Since();
  // The nodes' leases gain their IPv6 halves, as when each agent restarts with EnableIPv6.
  const watching = watchRoutes(MEMBERS, 4000, [4]);
  const started = Date.now();
  await syncAll(MEMBERS);
  await waitConverged(MEMBERS);
  t.comment(`IPv6 turned on: both families' routes on every node ${Date.now() - started} ms after the apply`);
  t.same(await watching, [], 'no IPv4 route vanished while IPv6 was turned on');
  t.same(await ipv4Since(), before, 'every IPv4 session stayed up (same Since): the IPv4 part of the config did not change');
  await pingMatrix(t, MEMBERS);

  const sessions = await Promise.all(nodes.map(async (node) => ({ n: node.n, list: await node.backend.sessions() })));
  t.same(
    sessions.map(({ n, list }) => [n, list.map((s) => `${s.peer} ${s.state} ${s.importedRoutes}/${s.exportedRoutes}`).sort()]),
    MEMBERS.map((n) => [
      n,
      MEMBERS.filter((m) => m !== n)
        .flatMap((m) => FAMILIES.map((f) => `${underlayIP(m, f)} Established 1/1`))
        .sort(),
    ]),
    'each node: one session per peer and family, between the addresses of that family, one route each way',
  );
  await until('every node ready', async () => nodes.every((n) => n.backend.notReadyReason() === undefined));
  const own = await sh(['ip', '-n', net.nodeNs(1), '-6', 'route', 'show', podSubnet(1, 6)]);
  t.match(own.out, /dev wb6-cni proto kernel/, "the node's own IPv6 subnet stays on its bridge, never a BIRD route");
});

t.test('data path continuity in IPv6: a route deleted by hand comes back; BIRD killed or the agent restarted drops no route', async (t) => {
  // Deleted by hand: the kernel event makes BIRD rescan its IPv6 kernel protocol.
  await sh(net.inNs(1, ['ip', '-6', 'route', 'del', podSubnet(2, 6), 'proto', 'bird']));
  const back = await until('IPv6 route restored', async () => (await net.birdRoutes(net.nodeNs(1), 6)).get(podSubnet(2, 6)) === underlayIP(2, 6), 15_000);
  t.ok(back, `n1's ${podSubnet(2, 6)} is back, proto bird`);

  const pid = await net.birdPid(1);
  process.kill(pid!, 'SIGKILL');
  t.same(await watchRoutes(MEMBERS, 3000), [], 'n1 without BIRD: no route of either family vanished anywhere (persist + graceful restart)');
  await until('n1 BIRD restarted, every session up', async () => {
    const s = await nodes[0]!.backend.sessions();
    return s.length === 4 && s.every((x) => x.state === 'Established');
  });

  const old = nodes.find((n) => n.n === 2)!;
  const pid2 = await net.birdPid(2);
  const watching = watchRoutes(MEMBERS, 5000);
  await old.backend.stop({ teardown: false });
  nodes.splice(nodes.indexOf(old), 1);
  const fresh = await startNode(2, {});
  await fresh.backend.sync!(lease(2), [1, 3].map((m) => lease(m)));
  t.equal(await net.birdPid(2), pid2, 'the restarted agent adopted the running BIRD');
  t.same(await watching, [], 'agent restart: no route of either family vanished');
  await waitConverged(MEMBERS);
  await pingMatrix(t, MEMBERS);

  // Teardown flushes what BIRD kept in both families.
  const leaver = nodes.splice(nodes.findIndex((n) => n.n === 3), 1)[0]!;
  await leaver.backend.stop({ teardown: true });
  const left = await Promise.all(FAMILIES.map(async (f) => (await net.birdRoutes(net.nodeNs(3), f)).size));
  t.same(left, [0, 0], "teardown removed n3's BIRD routes of both families");
  await stopAll();
});

t.test('dual-stack route reflector (n1, named once) carries both families', async (t) => {
  const raw = { Topology: 'reflectors', RouteReflectors: ['n1'] };
  for (const n of MEMBERS) await startNode(n, raw);
  await syncAll(MEMBERS);
  await waitConverged(MEMBERS);
  const counts = await Promise.all(nodes.map(async (node) => `n${node.n}:${(await node.backend.sessions()).length}`));
  t.same(counts, ['n1:4', 'n2:2', 'n3:2'], 'reflector n1: 2 clients x 2 families; each client: n1 in each family');
  await pingMatrix(t, MEMBERS);
  await stopAll();
});

t.test('gobgpd as a dual-stack ToR (eBGP): learns both families, only AllowedPrefixes of each family come back', async (t) => {
  await net.startGobgpd(
    runDir,
    [
      '[global.config]',
      '  as = 65000',
      `  router-id = "198.51.100.${TOR}"`,
      ...MEMBERS.flatMap((n) => FAMILIES.flatMap((f) => ['[[neighbors]]', '  [neighbors.config]', `    neighbor-address = "${underlayIP(n, f)}"`, '    peer-as = 64512'])),
      '',
    ].join('\n'),
  );
  const raw = {
    ASN: 64512,
    ExternalPeers: FAMILIES.map((f) => ({ PeerIP: underlayIP(TOR, f), ASN: 65000 })),
    AllowedPrefixes: ['203.0.113.0/24', '2001:db8:ff::/48'],
  };
  for (const n of MEMBERS) await startNode(n, raw);
  await syncAll(MEMBERS);
  await waitConverged(MEMBERS);
  const rib = await until('ToR RIB with every IPv6 node subnet', async () => {
    const r = await net.torRib(6);
    return MEMBERS.every((n) => r.has(podSubnet(n, 6))) ? r : undefined;
  });
  t.same(MEMBERS.map((n) => rib.get(podSubnet(n, 6))), MEMBERS.map((n) => [underlayIP(n, 6)]), 'ToR: each IPv6 pod subnet via its node (next hop self)');

  const announce = ['2001:db8:ff:1::/64', '2001:db8:ee::/48', '2001:db8:1000:1::/65'];
  const added = await Promise.all(announce.map(async (p) => (await net.gobgp(['global', 'rib', 'add', '-a', 'ipv6', p, 'nexthop', underlayIP(TOR, 6)])).code));
  t.same(added, [0, 0, 0], 'ToR announces three IPv6 prefixes');
  const reached = await until('allowed IPv6 prefix in every kernel', async () =>
    (await Promise.all(MEMBERS.map(async (n) => (await net.birdRoutes(net.nodeNs(n), 6)).get('2001:db8:ff:1::/64') === underlayIP(TOR, 6)))).every(Boolean),
  );
  t.ok(reached, '2001:db8:ff:1::/64 (inside AllowedPrefixes) reached every node via the ToR');
  await sleep(1500);
  const unwanted = await Promise.all(
    MEMBERS.map(async (n) => {
      const routes = await net.birdRoutes(net.nodeNs(n), 6);
      return ['2001:db8:ee::/48', '2001:db8:1000:1::/65'].filter((p) => routes.has(p)).map((p) => `n${n}:${p}`);
    }),
  );
  t.same(unwanted.flat(), [], 'outside AllowedPrefixes, or a more-specific of a pod subnet: rejected on every node');
  await stopAll();
  await net.stopGobgpd();
});
