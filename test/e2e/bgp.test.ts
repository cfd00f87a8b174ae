// bgp backend end to end: real BIRD 2 in network namespaces on a private
// underlay (198.51.100.0/24 behind a bridge in wbg-sw), driven through
// createBgpBackend with generated configs; gobgpd (3.10) as the foreign speaker.
// Needs root. Every namespace starts with wbg-.
import t, { type Test } from 'tap';
import { until } from './support/lab-fixture.js';
import { BgpNetns, TOR, sh, sleep } from './support/bgp-netns.js';
import { addPinnedPod } from './support/pinned-pod.js';
import { spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { Bird } from '../../backends/bgp/bird.js';
import { createBgpBackend, type BgpBackend, type BgpRuntimeOptions } from '../../backends/bgp/index.js';
import type { BackendContext } from '../../backends/backend.js';
import { Cidr, IP } from '../../src/core/cidr.js';
import type { Lease } from '../../src/subnet/lease.js';

const NS = 'wbg-';
const NETWORK = Cidr.parse('10.5.0.0/16');
const UNDERLAY = Cidr.parse('198.51.100.0/24');
const logger = pino({ level: process.env.WBG_LOG ?? 'warn' }, pino.destination({ fd: 2, sync: true }));
const net = new BgpNetns(NS, [4], logger);
const nodeNs = (n: number): string => net.nodeNs(n);
const inNs = (n: number, argv: string[]): string[] => net.inNs(n, argv);
const birdRoutes = (ns: string): Promise<Map<string, string>> => net.birdRoutes(ns);
const birdPid = (n: number): Promise<number | undefined> => net.birdPid(n);
const gobgp = (args: string[]): Promise<{ code: number; out: string }> => net.gobgp(args);

if (process.getuid?.() !== 0) {
  t.fail('the bgp e2e test needs root (network namespaces); run it as root');
  process.exit(1);
}

function lease(n: number): Lease {
  return { subnet: Cidr.parse(`10.5.${n}.0/24`), attrs: { publicIP: IP.parse(`198.51.100.${n}`), backendType: 'bgp', backendData: null, nodeName: `n${n}` } };
}

interface Node {
  n: number;
  backend: BgpBackend;
}

let runDir = '';

async function startNode(n: number, raw: Record<string, unknown>, more: BgpRuntimeOptions = {}): Promise<Node> {
  const ip = IP.parse(`198.51.100.${n}`);
  const ctx: BackendContext = {
    config: { network: NETWORK, subnetLen: 24, subnetMin: NETWORK.subnet(24, 1n), subnetMax: NETWORK.subnet(24, 255n), backend: { type: 'bgp', raw } },
    ext: { name: `${NS}e${n}`, ip, publicIP: ip, mtu: 1500, connected: [UNDERLAY] },
    logger: logger.child({ node: `n${n}` }),
    nodeName: `n${n}`,
    runDir: join(runDir, `n${n}`),
  };
  const backend = await createBgpBackend(ctx, { execPrefix: ['ip', 'netns', 'exec', nodeNs(n)], readyGraceMs: 5000, pollMs: 500, restartDelayMs: { min: 200, max: 2000 }, ...more });
  return { n, backend };
}

/** Each node's BIRD gets the config for the lease set `ns` (all syncs at once, like agents watching etcd). */
async function syncAll(nodes: Node[], members: number[]): Promise<void> {
  await Promise.all(nodes.map((node) => node.backend.sync!(lease(node.n), members.filter((m) => m !== node.n).map(lease))));
}

/** True when node n's kernel routes every other member's subnet via that member (and not its own). */
async function hasMeshRoutes(n: number, members: number[]): Promise<boolean> {
  const routes = await birdRoutes(nodeNs(n));
  if (routes.has(`10.5.${n}.0/24`)) return false;
  return members.filter((m) => m !== n).every((m) => routes.get(`10.5.${m}.0/24`) === `198.51.100.${m}`);
}

async function waitConverged(members: number[], ms = 30_000): Promise<number> {
  const start = Date.now();
  await until(`routes on ${members.map((m) => `n${m}`).join(',')}`, async () => (await Promise.all(members.map((n) => hasMeshRoutes(n, members)))).every(Boolean), ms);
  return Date.now() - start;
}

/** Every member pings every other member's pod-side address from its own. */
async function pingMatrix(t: Test, members: number[]): Promise<void> {
  const failures: string[] = [];
  await Promise.all(
    members.flatMap((a) =>
      members
        .filter((b) => b !== a)
        .map(async (b) => {
          const r = await sh(inNs(a, ['ping', '-c', '1', '-W', '2', '-I', `10.5.${a}.1`, `10.5.${b}.1`]), { check: false });
          if (r.code !== 0) failures.push(`n${a}->n${b}`);
        }),
    ),
  );
  t.same(failures, [], `pod matrix among ${members.map((m) => `n${m}`).join(', ')}`);
}

async function stopAll(nodes: Node[]): Promise<void> {
  await Promise.all(nodes.map((n) => n.backend.stop({ teardown: true }).catch(() => undefined)));
  nodes.length = 0;
}

/** Samples routes every 100 ms for `ms`; returns what went missing, if anything. */
async function watchRoutes(members: number[], expect: (n: number) => string[], ms: number): Promise<string[]> {
  const missing = new Set<string>();
  const end = Date.now() + ms;
  while (Date.now() < end) {
    for (const n of members) {
      const routes = await birdRoutes(nodeNs(n));
      for (const p of expect(n)) if (!routes.has(p)) missing.add(`n${n}:${p}`);
    }
    await sleep(100);
  }
  return [...missing];
}

const nodes: Node[] = [];

t.before(async () => {
  await net.cleanup();
  runDir = await mkdtemp(join(tmpdir(), 'wbg-e2e-'));
  await net.setUp([1, 2, 3, 4, 5]);
});

t.teardown(async () => {
  await stopAll(nodes);
  await net.stopGobgpd();
  await net.cleanup();
});

t.test('full mesh of 4: every node learns every subnet into the kernel (proto bird)', async (t) => {
  const members = [1, 2, 3, 4];
  for (const n of members) nodes.push(await startNode(n, {}));
  const started = Date.now();
  await syncAll(nodes, members);
  const applied = Date.now();
  const converged = await waitConverged(members);
  t.comment(`mesh of 4: config applied on all nodes in ${applied - started} ms (BIRD start included), routes on every peer ${converged} ms later`);
  await pingMatrix(t, members);

  for (const node of nodes) {
    const sessions = await node.backend.sessions();
    t.equal(sessions.length, 3, `n${node.n} has one session per peer`);
    t.ok(sessions.every((s) => s.state === 'Established' && s.importedRoutes === 1 && s.exportedRoutes === 1), `n${node.n}: all Established, 1 route each way`);
  }
  await until('every node ready', async () => nodes.every((n) => n.backend.notReadyReason() === undefined));
  t.same(nodes.map((n) => n.backend.notReadyReason()).filter(Boolean), [], 'readiness: every configured session Established');
  // the own subnet stays on the CNI bridge, never a BIRD route
  const own = await sh(['ip', '-n', nodeNs(1), '-4', 'route', 'show', '10.5.1.0/24']);
  t.match(own.out, /dev wbg-cni proto kernel/);
  t.notMatch(own.out, /bird|blackhole/);

  // A config BIRD rejects never reaches the running BIRD.
  const probe = await Bird.open({ dir: join(runDir, 'probe'), logger, externalSocket: join(runDir, 'n1', 'bird', 'bird.ctl') });
  await t.rejects(probe.apply('protocol bgp broken {\n'), { name: 'WeftError', message: /^BIRD rejected the generated config/ });
  const after = await nodes[0]!.backend.sessions();
  t.ok(after.length === 3 && after.every((s) => s.state === 'Established'), 'n1 runs on with its config and sessions');
});

t.test('a node joins, then leaves: routes appear and are withdrawn everywhere', async (t) => {
  const members = [1, 2, 3, 4];
  nodes.push(await startNode(5, {}));
  const all = [...members, 5];
  const start = Date.now();
  await syncAll(nodes, all);
  const applied = Date.now();
  await waitConverged(all);
  t.comment(`join: lease set applied on 5 nodes in ${applied - start} ms; n5's route on every peer ${Date.now() - applied} ms after the apply`);

  // Same event without a BIRD start: re-announce by removing and re-adding n4 on the peers only.
  const peers = nodes.filter((n) => n.n !== 4);
  await syncAll(peers, [1, 2, 3, 5]);
  await until('n4 withdrawn', async () => (await Promise.all([1, 2, 3, 5].map(async (n) => !(await birdRoutes(nodeNs(n))).has('10.5.4.0/24')))).every(Boolean));
  const again = Date.now();
  await syncAll(peers, all);
  await waitConverged(all);
  t.comment(`re-join (BIRD already running): n4's route on every peer ${Date.now() - again} ms after config apply`);

  const leaver = nodes.find((n) => n.n === 5)!;
  nodes.splice(nodes.indexOf(leaver), 1);
  await leaver.backend.stop({ teardown: true });
  await syncAll(nodes, members);
  const withdrawn = await until('n5 withdrawn everywhere', async () => (await Promise.all(members.map(async (n) => !(await birdRoutes(nodeNs(n))).has('10.5.5.0/24')))).every(Boolean));
  t.ok(withdrawn, "n5's subnet withdrawn from every peer");
  t.equal((await birdRoutes(nodeNs(5))).size, 0, 'teardown removed the routes BIRD persisted on n5');
  await waitConverged(members);
  await pingMatrix(t, members);
});

t.test("BIRD killed: kernel keeps routes, peers keep this node's routes, the supervisor restarts it", async (t) => {
  const members = [1, 2, 3, 4];
  const victim = nodes.find((n) => n.n === 1)!;
  const sessionsBefore = (await victim.backend.sessions()).length;
  const pid = await birdPid(1);
  t.ok(pid, 'BIRD runs in n1');
  process.kill(pid!, 'SIGKILL');
  const missing = await watchRoutes(members, (n) => members.filter((m) => m !== n).map((m) => `10.5.${m}.0/24`), 3000);
  t.same(missing, [], 'no route vanished anywhere while n1 had no BIRD (persist + graceful restart)');
  const back = await until('n1 BIRD restarted with all sessions', async () => {
    const s = await victim.backend.sessions();
    return s.length === sessionsBefore && s.every((x) => x.state === 'Established');
  });
  t.ok(back, 'the supervisor restarted BIRD and every session is Established again');
  await waitConverged(members);
});

t.test('agent restart: BIRD runs on through the stop, the new backend adopts it and still supervises it; no route is lost', async (t) => {
  const members = [1, 2, 3, 4];
  const expected = (n: number): string[] => members.filter((m) => m !== n).map((m) => `10.5.${m}.0/24`);
  const old = nodes.find((n) => n.n === 2)!;
  const pid = await birdPid(2);
  const watching = watchRoutes(members, expected, 6000);
  await old.backend.stop({ teardown: false });
  nodes.splice(nodes.indexOf(old), 1);
  t.equal(await birdPid(2), pid, 'BIRD runs on after a stop without teardown (as when the agent stops or crashes)');
  // As if the BIRD had been started by a weft that wrote no pid file: found by its socket.
  await rm(join(runDir, 'n2', 'bird', 'bird.pid'), { force: true });
  await sleep(1000);
  const fresh = await startNode(2, {});
  nodes.push(fresh);
  await fresh.backend.sync!(lease(2), [1, 3, 4].map(lease));
  t.equal(await birdPid(2), pid, 'the new backend adopted the running BIRD instead of restarting it');
  t.same(await watching, [], 'no route vanished on n2 or its peers through the stop and the adoption');
  t.ok((await fresh.backend.sessions()).every((s) => s.state === 'Established'), "the adopted BIRD's sessions stayed Established");

  process.kill(pid!, 'SIGKILL');
  const next = await until('a new BIRD in n2', async () => {
    const p = await birdPid(2);
    return p !== undefined && p !== pid ? p : undefined;
  });
  t.not(next, pid, 'the adopted BIRD, killed, is restarted by the backend that adopted it');
  await until('n2 sessions back', async () => (await fresh.backend.sessions()).every((s) => s.state === 'Established'));
  await waitConverged(members);
  await pingMatrix(t, members);
  await stopAll(nodes);
});

t.test('5 nodes with 2 route reflectors (named n1, n2)', async (t) => {
  const all = [1, 2, 3, 4, 5];
  const raw = { Topology: 'reflectors', RouteReflectors: ['n1', 'n2'], ClusterID: '10.255.0.1' };
  for (const n of all) nodes.push(await startNode(n, raw));
  const start = Date.now();
  await syncAll(nodes, all);
  const applied = Date.now();
  const converged = await waitConverged(all);
  t.comment(`reflectors, 5 nodes: applied in ${applied - start} ms (BIRD start included), routes on every node ${converged} ms later`);
  for (const node of nodes) {
    const count = (await node.backend.sessions()).length;
    t.equal(count, node.n <= 2 ? 4 : 2, `n${node.n}: ${count} sessions (${node.n <= 2 ? 'reflector: 1 reflector + 3 clients' : 'client: 2 reflectors'})`);
  }
  await pingMatrix(t, all);

  // A node joins behind the reflectors: only the reflectors and the new node get new sessions.
  await nodes.splice(nodes.findIndex((n) => n.n === 5), 1)[0]!.backend.stop({ teardown: true });
  await syncAll(nodes, [1, 2, 3, 4]);
  await until('n5 gone', async () => (await Promise.all([1, 2, 3, 4].map(async (n) => !(await birdRoutes(nodeNs(n))).has('10.5.5.0/24')))).every(Boolean));
  const n5 = await startNode(5, raw);
  nodes.push(n5);
  const joinStart = Date.now();
  await syncAll(nodes, all);
  const joinApplied = Date.now();
  await waitConverged(all);
  t.comment(`reflectors: a joining node's route on every node ${Date.now() - joinApplied} ms after config apply (apply incl. its BIRD start: ${joinApplied - joinStart} ms)`);

  // Kill reflector n2's BIRD outright: routes among the others never vanish.
  const pid = await birdPid(2);
  t.ok(pid, 'BIRD runs in n2');
  process.kill(pid!, 'SIGKILL');
  const others = [1, 3, 4, 5];
  const missingKill = await watchRoutes(others, (n) => all.filter((m) => m !== n).map((m) => `10.5.${m}.0/24`), 2500);
  t.same(missingKill, [], 'reflector n2 killed: every route stays');
  await until('n2 back', async () => (await nodes.find((n) => n.n === 2)!.backend.sessions()).every((s) => s.state === 'Established'));

  // Reflector n1 leaves for good (sessions closed, its routes withdrawn): n2 alone carries every route.
  const r1 = nodes.splice(nodes.findIndex((n) => n.n === 1), 1)[0]!;
  await r1.backend.stop({ teardown: true });
  const rest = [2, 3, 4, 5];
  await until("n1's subnet withdrawn", async () => (await Promise.all(rest.map(async (n) => !(await birdRoutes(nodeNs(n))).has('10.5.1.0/24')))).every(Boolean));
  const missingDown = await watchRoutes(rest, (n) => rest.filter((m) => m !== n).map((m) => `10.5.${m}.0/24`), 2000);
  t.same(missingDown, [], 'reflector n1 gone: routes among the remaining nodes stay (via n2)');
  await pingMatrix(t, rest);
  await stopAll(nodes);
});

t.test('--bird-socket: a BIRD someone else runs is configured, and left running on stop', async (t) => {
  const dir = join(runDir, 'foreign-n2');
  await sh(['mkdir', '-p', dir]);
  const conf = join(dir, 'bird.conf');
  const socket = join(dir, 'bird.ctl');
  await writeFile(conf, 'router id 198.51.100.2;\nprotocol device {}\n');
  const foreign = spawn('ip', ['netns', 'exec', nodeNs(2), 'bird', '-f', '-c', conf, '-s', socket], { stdio: 'ignore' });
  try {
    await until('foreign BIRD up', async () => (await sh(['birdc', '-s', socket, 'show', 'status'], { check: false })).code === 0, 15_000);
    nodes.push(await startNode(1, {}), await startNode(2, {}, { birdSocket: socket }));
    const start = Date.now();
    await syncAll(nodes, [1, 2]);
    const applied = Date.now();
    await waitConverged([1, 2]);
    t.comment(`--bird-socket: applied in ${applied - start} ms, converged ${Date.now() - applied} ms later`);
    await pingMatrix(t, [1, 2]);
    const external = nodes.pop()!;
    await external.backend.stop({ teardown: true });
    t.equal((await sh(['birdc', '-s', socket, 'show', 'status'], { check: false })).code, 0, 'the foreign BIRD still runs after stop');
  } finally {
    const closed = new Promise((r) => foreign.once('close', r));
    foreign.kill('SIGKILL');
    await closed;
    await stopAll(nodes);
    await sh(['ip', '-n', nodeNs(2), 'route', 'flush', 'proto', 'bird'], { check: false });
  }
});

t.test('gobgpd as external ToR peer (eBGP): sees every subnet; only allowed prefixes come back', async (t) => {
  const members = [1, 2, 3];
  await net.startGobgpd(
    runDir,
    [
      '[global.config]',
      '  as = 65000',
      `  router-id = "198.51.100.${TOR}"`,
      ...members.flatMap((n) => ['[[neighbors]]', '  [neighbors.config]', `    neighbor-address = "198.51.100.${n}"`, '    peer-as = 64512']),
      '',
    ].join('\n'),
  );
  const raw = { ASN: 64512, ExternalPeers: [{ PeerIP: `198.51.100.${TOR}`, ASN: 65000 }], AllowedPrefixes: ['203.0.113.0/24'] };
  for (const n of members) nodes.push(await startNode(n, raw));
  await syncAll(nodes, members);
  await waitConverged(members);

  const rib = await until('ToR RIB with every node subnet', async () => {
    const r = await net.torRib();
    return members.every((n) => r.has(`10.5.${n}.0/24`)) ? r : undefined;
  });
  for (const n of members) t.same(rib.get(`10.5.${n}.0/24`), [`198.51.100.${n}`], `ToR: 10.5.${n}.0/24 via n${n} only (nodes export nothing but their own subnet)`);

  for (const prefix of ['203.0.113.0/25', '192.0.2.0/24', '10.5.1.0/25', '10.6.0.0/16']) {
    const r = await gobgp(['global', 'rib', 'add', '-a', 'ipv4', prefix, 'nexthop', `198.51.100.${TOR}`]);
    t.equal(r.code, 0, `ToR announces ${prefix}`);
  }
  const reached = await until('allowed prefix in every kernel', async () => (await Promise.all(members.map(async (n) => (await birdRoutes(nodeNs(n))).get('203.0.113.0/25') === `198.51.100.${TOR}`))).every(Boolean));
  t.ok(reached, '203.0.113.0/25 (inside AllowedPrefixes) reached every node via the ToR');
  await sleep(1500);
  for (const n of members) {
    const routes = await birdRoutes(nodeNs(n));
    t.notOk(routes.has('192.0.2.0/24'), `n${n}: 192.0.2.0/24 (outside AllowedPrefixes) rejected`);
    t.notOk(routes.has('10.6.0.0/16'), `n${n}: 10.6.0.0/16 rejected`);
    t.notOk(routes.has('10.5.1.0/25'), `n${n}: 10.5.1.0/25 (a node subnet's more-specific from outside) rejected`);
  }
  const ext = (await nodes[0]!.backend.sessions()).find((s) => s.name === `ext_198_51_100_${TOR}`);
  t.equal(ext?.state, 'Established');
  t.equal(ext?.importedRoutes, 1, 'n1 imported exactly one route from the ToR');
  t.equal(ext?.exportedRoutes, 1, 'n1 exported exactly its own subnet to the ToR');
  await stopAll(nodes);
  await net.stopGobgpd();
});

t.test('gobgpd as the route reflector of the cluster: full matrix', async (t) => {
  const members = [1, 2, 3, 4];
  await net.startGobgpd(
    runDir,
    [
      '[global.config]',
      '  as = 64512',
      `  router-id = "198.51.100.${TOR}"`,
      ...members.flatMap((n) => [
        '[[neighbors]]',
        '  [neighbors.config]',
        `    neighbor-address = "198.51.100.${n}"`,
        '    peer-as = 64512',
        '  [neighbors.route-reflector.config]',
        '    route-reflector-client = true',
        `    route-reflector-cluster-id = "198.51.100.${TOR}"`,
      ]),
      '',
    ].join('\n'),
  );
  const raw = { Topology: 'reflectors', RouteReflectors: [`198.51.100.${TOR}`] };
  for (const n of members) nodes.push(await startNode(n, raw));
  const start = Date.now();
  await syncAll(nodes, members);
  await waitConverged(members);
  t.comment(`gobgpd reflector, 4 nodes: routes on every node ${Date.now() - start} ms after apply (BIRD start included)`);
  for (const node of nodes) t.equal((await node.backend.sessions()).length, 1, `n${node.n} has one session, to gobgpd`);
  await pingMatrix(t, members);
  await stopAll(nodes);
  await net.stopGobgpd();
});

t.test("a borrowed address: believed only from the node whose lease claims it, then reached through it", async (t) => {
  // n2 holds 10.5.9.200 (in no node's subnet) for a pinned pod in a namespace behind it, and announces it.
  const X = '10.5.9.200';
  const claiming = (n: number): Lease => ({ ...lease(n), attrs: { ...lease(n).attrs, borrowedIPs: [Cidr.parse(`${X}/32`)] } });
  nodes.push(await startNode(1, {}), await startNode(2, {}));
  try {
    await addPinnedPod(nodeNs(2), `${NS}pin`, `${NS}pin`, X);
    // n1 first sees the address claimed by n3 (a lease without a BIRD): n2's announcement is heard and refused.
    await Promise.all([nodes[0]!.backend.sync!(lease(1), [lease(2), claiming(3)]), nodes[1]!.backend.sync!(claiming(2), [lease(1)])]);
    const socket = join(runDir, 'n1', 'bird', 'bird.ctl');
    const filtered = async () => {
      const { out } = await sh(['birdc', '-s', socket, 'show', 'protocols', 'all', 'node_198_51_100_2'], { check: false });
      return Number(/Import updates:\s+\d+\s+\d+\s+(\d+)/.exec(out)?.[1] ?? 0);
    };
    await until('n1 to refuse a route from n2', async () => (await filtered()) >= 1);
    t.notOk((await birdRoutes(nodeNs(1))).has(X), `n1 does not route ${X} via n2 while n3's lease claims it`);

    // n1 sees n2's claim: the route comes in (a reconfigure refreshes the session's routes) and n1 reaches the pod.
    const start = Date.now();
    await nodes[0]!.backend.sync!(lease(1), [claiming(2)]);
    await until(`n1 to route ${X} via n2`, async () => (await birdRoutes(nodeNs(1))).get(X) === '198.51.100.2');
    t.comment(`claim seen to route in the kernel: ${Date.now() - start} ms`);
    const ping = await sh(inNs(1, ['ping', '-c', '1', '-W', '2', '-I', '10.5.1.1', X]), { check: false });
    t.equal(ping.code, 0, `n1 pings ${X} behind n2`);
  } finally {
    await stopAll(nodes);
    await sh(['ip', 'netns', 'del', `${NS}pin`], { check: false });
    await sh(['ip', '-n', nodeNs(1), 'route', 'flush', 'proto', 'bird'], { check: false });
    await sh(['ip', '-n', nodeNs(2), 'route', 'flush', 'proto', 'bird'], { check: false });
  }
});
