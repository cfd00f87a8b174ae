// bgp at scale: one lab of 22 nodes (2 route reflectors, 20 clients), every
// node running its own agent and BIRD 2, a 23rd node joining, and the loss of
// one reflector. Pods only on two clients, for the data path. Needs root and
// a build (`npx tsc -p .`: the lab runs dist/). Lab bs1 (namespaces wl-bs1-*).
import t from 'tap';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { showBgpSessions } from '../../backends/bgp/birdc.js';
import { DEFAULT_NETWORK, type Lab, type LabNode } from '../../src/lab/lab.js';
import { freshLab, routesOf, timeJoin, until, waitUntil } from './support/lab-fixture.js';

const LAB = 'bs1';
const CLIENTS = 20;
/** Short hold time: a reflector that vanishes without a word is noticed after this many seconds. */
const HOLD_TIME = 6;
/** And a lost reflector that comes back is reconnected within this many seconds (keeps the test short). */
const CONNECT_RETRY = 2;

if (process.getuid?.() !== 0) {
  t.fail('the bgp scale test needs root (network namespaces); run it as root');
  process.exit(1);
}

function birdSocket(lab: Lab, node: LabNode): string {
  return join(lab.nodeDir(node), 'run', 'bird', 'bird.ctl');
}

/** The node's BGP sessions as "peer state", sorted: what its BIRD says over the control socket. */
async function sessionsOf(lab: Lab, node: LabNode): Promise<string[]> {
  return (await showBgpSessions(birdSocket(lab, node))).map((s) => `${s.peer} ${s.state}`).sort();
}

/** The sessions each node should have, all Established: a client to both reflectors, a reflector to every other node. */
function expectedSessions(nodes: readonly LabNode[], reflectors: readonly LabNode[]): Record<string, string[]> {
  const want = (node: LabNode): string[] =>
    (reflectors.includes(node) ? nodes.filter((n) => n !== node) : reflectors).map((n) => `${n.underlayIP} Established`).sort();
  return Object.fromEntries(nodes.map((n) => [n.name, want(n)]));
}

async function actualSessions(lab: Lab, nodes: readonly LabNode[]): Promise<Record<string, string[]>> {
  const lists = await Promise.all(nodes.map((n) => sessionsOf(lab, n).catch((err: unknown) => [String(err)])));
  return Object.fromEntries(nodes.map((n, i) => [n.name, lists[i]!]));
}

/** prefix -> next hop of the routes BIRD put into the node's kernel (proto bird). */
async function birdRoutes(lab: Lab, node: LabNode): Promise<Map<string, string | undefined>> {
  return new Map((await routesOf(lab, node)).filter((r) => r.protocol === 'bird').map((r) => [r.dst, r.gateway]));
}

/** "node: subnet" for every subnet of `owners` that `nodes` do not route via its owner (proto bird). */
async function missingRoutes(lab: Lab, nodes: readonly LabNode[], owners: readonly LabNode[]): Promise<string[]> {
  const missing = await Promise.all(
    nodes.map(async (n) => {
      const routes = await birdRoutes(lab, n);
      return owners.filter((o) => o !== n && routes.get(o.subnet!) !== o.underlayIP).map((o) => `${n.name}: ${o.subnet} via ${o.underlayIP}`);
    }),
  );
  return missing.flat();
}

t.test(`2 route reflectors and ${CLIENTS} clients, each with its own BIRD (lab ${LAB})`, async (t) => {
  const started = Date.now();
  const reflectorNames = [`wl-${LAB}-n1`, `wl-${LAB}-n2`];
  const lab = await freshLab(t, {
    name: LAB,
    nodes: 2 + CLIENTS,
    podsPerNode: 0,
    readyTimeoutMs: 180_000,
    netConf: { Network: DEFAULT_NETWORK, Backend: { Type: 'bgp', RouteReflectors: reflectorNames, HoldTime: HOLD_TIME, ConnectRetryTime: CONNECT_RETRY } },
  });
  t.comment(`lab ${LAB} up, ${lab.nodes.length} agents ready: ${Date.now() - started} ms`);
  const [n1, n2, n3, n4] = lab.nodes as [LabNode, LabNode, LabNode, LabNode, ...LabNode[]];
  const reflectors = [n1, n2];
  const [p3, p4] = await Promise.all([lab.addPod(n3), lab.addPod(n4)]);

  await until('every subnet in every kernel', async () => (await missingRoutes(lab, lab.nodes, lab.nodes)).length === 0, 120_000).catch(() => undefined);
  t.same(await missingRoutes(lab, lab.nodes, lab.nodes), [], `every node routes the other ${lab.nodes.length - 1} subnets via their nodes (proto bird)`);

  const want = expectedSessions(lab.nodes, reflectors);
  await waitUntil(async () => JSON.stringify(await actualSessions(lab, lab.nodes)) === JSON.stringify(want), { timeoutMs: 60_000, intervalMs: 500 });
  t.same(await actualSessions(lab, lab.nodes), want, `each client has exactly 2 sessions (the reflectors), each reflector ${lab.nodes.length - 1}, all Established`);

  const ping = await lab.pingMatrix({ pods: [p3!, p4!] });
  t.same(ping.rows.filter((r) => !r.ok).map((r) => `${r.from}->${r.to}`), [], `pod on ${n3.name} and pod on ${n4.name} ping each other`);

  const { node: joined, leaseToRoutesMs } = await timeJoin(lab, () => lab.addNode({ readyTimeoutMs: 120_000 }), { timeoutMs: 60_000 });
  t.comment(`${joined.name} joined: lease in etcd -> its route in all ${lab.nodes.length - 1} other kernels: ${leaseToRoutesMs.get(4) ?? 'not seen everywhere'} ms`);
  const others = lab.nodes.filter((n) => n !== joined);
  await until(`${joined.name}'s subnet everywhere`, async () => (await missingRoutes(lab, others, [joined])).length === 0, 60_000).catch(() => undefined);
  t.same(await missingRoutes(lab, others, [joined]), [], `${joined.name}'s subnet reached every other node's kernel via ${joined.underlayIP}`);

  // Reflector n1 lost: its link to the underlay goes down, as when a machine
  // or its switch port dies. Nothing tells the clients; their sessions to n1
  // end when the hold timer expires, and n2 must carry every route.
  const clients = lab.nodes.filter((n) => !reflectors.includes(n));
  const carried = lab.nodes.filter((n) => n !== n1);
  const lost = new Set<string>();
  let sampling = true;
  const sampler = (async () => {
    while (sampling) {
      for (const m of await missingRoutes(lab, clients, carried)) lost.add(m);
      await sleep(100);
    }
  })();
  try {
    await lab.exec(lab.underlayNs, ['ip', 'link', 'set', n1.name, 'down']);
    const noticed = await waitUntil(
      async () => (await Promise.all(clients.map(async (c) => !(await sessionsOf(lab, c)).includes(`${n1.underlayIP} Established`)))).every(Boolean),
      { timeoutMs: (HOLD_TIME + 30) * 1000, intervalMs: 1000 },
    );
    t.ok(noticed.ok, `every client's session to ${n1.name} ended (${noticed.ms} ms after its link went down)`);
    await sleep(1000); // and the routes stay after the withdrawals
  } finally {
    sampling = false;
    await sampler;
  }
  t.same([...lost], [], `${n1.name} lost: no client lost a route to any other node, sampled continuously (${n2.name} carries them)`);

  await lab.exec(lab.underlayNs, ['ip', 'link', 'set', n1.name, 'up']);
  const back = await waitUntil(
    async () =>
      JSON.stringify(await actualSessions(lab, lab.nodes)) === JSON.stringify(expectedSessions(lab.nodes, reflectors)) &&
      (await missingRoutes(lab, lab.nodes, lab.nodes)).length === 0,
    { timeoutMs: 90_000, intervalMs: 1000 },
  );
  t.ok(back.ok, `${n1.name} back: every session Established and every subnet in every kernel again (${back.ms} ms after its link came up)`);
  t.comment(`bgp scale test: ${Date.now() - started} ms in all`);
});
