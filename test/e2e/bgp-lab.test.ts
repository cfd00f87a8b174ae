// bgp through the real agent: labs of node namespaces (src/lab) with a real
// etcd, one `weft agent` per node running its own BIRD 2, pods wired by CNI,
// and gobgpd as a BGP speaker nobody here wrote. Needs root and a build
// (`npx tsc -p .`: the lab runs dist/). Labs bg1..bg3 (namespaces wl-bg*-*).
import t, { type Test } from 'tap';
import { until } from './support/lab-fixture.js';
import { spawn, type ChildProcess } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';
import { runCommand, type CommandResult } from '../../src/lab/command.js';
import { DEFAULT_NETWORK, Lab, agentEntry, type LabNode, type LabPod } from '../../src/lab/lab.js';
import { isAlive, waitForExit } from '../../src/core/process.js';

const LABS = ['bg1', 'bg2', 'bg3'];

if (process.getuid?.() !== 0) {
  t.fail('the bgp lab test needs root (network namespaces); run it as root');
  process.exit(1);
}

// --- helpers ------------------------------------------------------------------

/** `weft <args>` from the build, optionally inside a namespace. */
function weft(args: string[], opts: { netns?: string; timeoutMs?: number } = {}): Promise<CommandResult> {
  return runCommand([process.execPath, agentEntry(), ...args], { check: false, timeoutMs: opts.timeoutMs ?? 120_000, ...(opts.netns ? { netns: opts.netns } : {}) });
}

/** prefix -> next hop of the routes BIRD put into a node's kernel (proto bird). */
async function birdRoutes(lab: Lab, node: LabNode): Promise<Map<string, string>> {
  const r = await lab.exec(node, ['ip', '-4', 'route', 'show', 'proto', 'bird']);
  const routes = new Map<string, string>();
  for (const line of r.stdout.split('\n')) {
    const m = /^(\S+)\s+via\s+(\S+)/.exec(line);
    if (m) routes.set(m[1]!, m[2]!);
  }
  return routes;
}

/** True when `node` routes every other member's subnet via that member (proto bird), and not its own. */
async function routesComplete(lab: Lab, node: LabNode, members: readonly LabNode[]): Promise<boolean> {
  const routes = await birdRoutes(lab, node);
  if (routes.has(node.subnet!)) return false;
  return members.filter((m) => m !== node).every((m) => routes.get(m.subnet!) === m.underlayIP);
}

/** Waits until every member holds every other member's subnet (proto bird, next hop the owner); true then, throws on timeout. */
async function waitRoutes(lab: Lab, members: readonly LabNode[], ms = 30_000): Promise<boolean> {
  return until(`routes among ${members.map((m) => m.name).join(',')}`, async () => (await Promise.all(members.map((n) => routesComplete(lab, n, members)))).every(Boolean), ms);
}

/** The members that still hold a BIRD route to `subnet`. */
async function withRoute(lab: Lab, members: readonly LabNode[], subnet: string): Promise<string[]> {
  const holding = await Promise.all(members.map(async (n) => ((await birdRoutes(lab, n)).has(subnet) ? n.name : undefined)));
  return holding.filter((n): n is string => n !== undefined);
}

/** Samples the members' routes for `ms`; returns "node:prefix" for each expected route that was ever missing. */
async function watchRoutes(lab: Lab, members: readonly LabNode[], ms: number): Promise<string[]> {
  const missing = new Set<string>();
  const end = Date.now() + ms;
  while (Date.now() < end) {
    await Promise.all(
      members.map(async (n) => {
        const routes = await birdRoutes(lab, n);
        for (const m of members) if (m !== n && routes.get(m.subnet!) !== m.underlayIP) missing.add(`${n.name}:${m.subnet}`);
      }),
    );
    await sleep(100);
  }
  return [...missing];
}

async function matrixOk(t: Test, lab: Lab, pods: readonly LabPod[], what: string): Promise<void> {
  const m = await lab.pingMatrix({ pods });
  t.same(m.rows.filter((r) => !r.ok).map((r) => `${r.from}->${r.to}`), [], `${what}: ${m.rows.filter((r) => r.ok).length}/${m.rows.length} pod pairs reachable`);
}

interface BgpStatusJson {
  bgp?: { sessions?: { peer: string; state: string; importedRoutes: number; exportedRoutes: number }[]; error?: string };
}

/** The sessions `weft status --json` reports for the node. */
async function statusSessions(lab: Lab, node: LabNode): Promise<NonNullable<NonNullable<BgpStatusJson['bgp']>['sessions']>> {
  const r = await weft(['status', '--json', '--run-dir', join(lab.nodeDir(node), 'run')]);
  if (r.code !== 0) throw new Error(`weft status: ${r.stderr.trim()}`);
  const status = JSON.parse(r.stdout) as BgpStatusJson;
  if (!status.bgp?.sessions) throw new Error(`weft status shows no BGP sessions: ${status.bgp?.error ?? 'no bgp section'}`);
  return status.bgp.sessions;
}

async function allEstablished(lab: Lab, node: LabNode, count: number): Promise<boolean> {
  const s = await statusSessions(lab, node);
  return s.length === count && s.every((x) => x.state === 'Established');
}

function birdSocket(lab: Lab, node: LabNode): string {
  return join(lab.nodeDir(node), 'run', 'bird', 'bird.ctl');
}

/** The pid of the BIRD in the node's namespace. */
async function birdPid(lab: Lab, node: LabNode): Promise<number | undefined> {
  const r = await runCommand(['ip', 'netns', 'pids', node.ns]);
  for (const pid of r.stdout.split(/\s+/).filter(Boolean)) {
    if ((await readFile(`/proc/${pid}/comm`, 'utf8').catch(() => '')).trim() === 'bird') return Number(pid);
  }
  return undefined;
}

/** BIRD's command line in the node (whether it started in graceful-restart recovery, -R). */
async function birdArgs(lab: Lab, node: LabNode): Promise<string[]> {
  const pid = await birdPid(lab, node);
  if (pid === undefined) throw new Error(`no BIRD runs in ${node.name}`);
  return (await readFile(`/proc/${pid}/cmdline`, 'utf8')).split('\0');
}

/** Lines a long-running command prints, each with the time it arrived (etcdctl watch, ip monitor). */
class LineRecorder {
  readonly lines: { at: number; text: string }[] = [];
  private readonly child: ChildProcess;
  private readonly closed: Promise<void>;

  constructor(argv: string[]) {
    this.child = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'pipe', 'ignore'] });
    this.closed = new Promise((r) => this.child.once('close', () => r()));
    createInterface({ input: this.child.stdout! }).on('line', (text) => this.lines.push({ at: Date.now(), text }));
  }

  /** Time of the first line matching `re`, waiting for it up to `ms`. */
  async first(re: RegExp, ms = 30_000): Promise<number> {
    return until(`a line matching ${re}`, async () => this.lines.find((l) => re.test(l.text))?.at, ms);
  }

  async stop(): Promise<void> {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGTERM');
    await Promise.race([this.closed, sleep(5000)]);
  }
}

const recorders = new Set<LineRecorder>();
function record(argv: string[]): LineRecorder {
  const r = new LineRecorder(argv);
  recorders.add(r);
  return r;
}

const subnetKey = (subnet: string): string => subnet.replace('/', '-');

/**
 * Brings `add()`'s new node into the cluster and times it: from its lease
 * appearing in etcd (etcdctl watch) to its subnet in every peer's kernel
 * (ip monitor, proto bird).
 */
async function timeJoin(lab: Lab, add: () => Promise<LabNode>): Promise<{ node: LabNode; leaseToRoutesMs: number }> {
  const peers = [...lab.nodes];
  const etcd = record(['ip', 'netns', 'exec', lab.underlayNs, 'etcdctl', `--endpoints=${lab.etcdEndpoint}`, 'watch', '--prefix', `${lab.etcdPrefix}/subnets/`]);
  const monitors = peers.map((p) => record(['ip', 'netns', 'exec', p.ns, 'ip', '-4', 'monitor', 'route']));
  try {
    await sleep(300); // the watchers are listening
    const node = await add();
    const key = `${lab.etcdPrefix}/subnets/${subnetKey(node.subnet!)}`;
    const leaseAt = await etcd.first(new RegExp(`^${key}$`));
    const routeRe = new RegExp(`^${node.subnet!.replace(/\./g, '\\.')} via ${node.underlayIP.replace(/\./g, '\\.')} .*proto bird`);
    const routeAt = await Promise.all(monitors.map((m) => m.first(routeRe)));
    return { node, leaseToRoutesMs: Math.max(...routeAt) - leaseAt };
  } finally {
    for (const r of [etcd, ...monitors]) {
      await r.stop();
      recorders.delete(r);
    }
  }
}

/** The node leaves: agent stopped with SIGTERM (BIRD stops gracefully), then its lease deleted. */
async function leave(lab: Lab, node: LabNode): Promise<{ deleteToWithdrawnMs: number }> {
  await lab.stopAgent(node, 'SIGTERM');
  const rest = lab.nodes.filter((n) => n !== node && lab.agentRunning(n));
  const deleted = await lab.etcdDel(`${lab.etcdPrefix}/subnets/${subnetKey(node.subnet!)}`);
  if (deleted !== 1) throw new Error(`lease of ${node.name} not found in etcd`);
  const at = Date.now();
  await until(`${node.subnet} withdrawn everywhere`, async () => (await Promise.all(rest.map(async (n) => !(await birdRoutes(lab, n)).has(node.subnet!)))).every(Boolean));
  return { deleteToWithdrawnMs: Date.now() - at };
}

async function destroyLabs(): Promise<void> {
  for (const name of LABS) await Lab.destroy(name).catch(() => undefined);
}

const started: number[] = [];

t.before(destroyLabs);
t.teardown(async () => {
  for (const r of recorders) await r.stop();
  for (const pid of started) {
    if (!isAlive(pid)) continue;
    process.kill(pid, 'SIGKILL');
    await waitForExit(pid, 5000);
  }
  await destroyLabs();
});

// --- full mesh ------------------------------------------------------------------

t.test('full mesh through the agent (lab bg1)', async (t) => {
  const up = Date.now();
  const r = await weft(['lab', 'up', '--name', 'bg1', '--nodes', '4', '--pods', '1', '--backend', 'bgp'], { timeoutMs: 180_000 });
  t.equal(r.code, 0, `weft lab up --backend bgp exits 0${r.code ? `: ${r.stderr.trim()}` : ''}`);
  if (r.code !== 0) return;
  t.comment(`weft lab up --name bg1 --nodes 4 --backend bgp: ${Date.now() - up} ms`);
  const lab = await Lab.attach('bg1');
  const [n1, n2] = lab.nodes as [LabNode, LabNode, ...LabNode[]];

  await t.test('4 nodes, mesh: full matrix, peer subnets in every kernel as proto bird, 3 sessions in weft status', async (t) => {
    await matrixOk(t, lab, lab.pods, 'mesh of 4');
    for (const node of lab.nodes) {
      t.ok(await routesComplete(lab, node, lab.nodes), `${node.name}: the 3 peer subnets via their nodes, proto bird, and not its own`);
    }
    const own = await lab.exec(n1, ['ip', '-4', 'route', 'show', n1.subnet!]);
    t.match(own.stdout, /dev cni0 proto kernel/, "n1's own subnet stays on the CNI bridge");

    const text = await weft(['status', '--run-dir', join(lab.nodeDir(n1), 'run')]);
    t.equal(text.code, 0, 'weft status exits 0');
    t.match(text.stdout, /^bgp +3 sessions, 3 established/m, 'weft status: 3 sessions, 3 established');
    for (const peer of lab.nodes.filter((n) => n !== n1)) {
      t.match(text.stdout, new RegExp(`^  ${peer.underlayIP.replace(/\./g, '\\.')} +64512 +Established .* 1 +1`, 'm'), `weft status lists ${peer.name} Established, 1 route each way`);
    }
    for (const node of lab.nodes) t.ok(await allEstablished(lab, node, 3), `${node.name}: 3 sessions, all Established`);
  });

  await t.test('a node joins, then leaves (SIGTERM + lease deleted)', async (t) => {
    const { node: n5, leaseToRoutesMs } = await timeJoin(lab, () => lab.addNode());
    t.comment(`mesh: ${n5.name}'s lease in etcd -> its route in all 4 peers' kernels: ${leaseToRoutesMs} ms`);
    t.ok(await waitRoutes(lab, lab.nodes), `${n5.name}'s subnet on every node, and every subnet on ${n5.name}`);
    await matrixOk(t, lab, lab.pods, 'mesh of 5');
    t.notOk((await birdArgs(lab, n5)).includes('-R'), `${n5.name}'s first BIRD starts without graceful-restart recovery (which would hold its routes back)`);
    for (const node of lab.nodes) t.ok(await allEstablished(lab, node, 4), `${node.name}: 4 sessions Established`);

    const { deleteToWithdrawnMs } = await leave(lab, n5);
    t.comment(`mesh: ${n5.name}'s lease deleted -> its route gone from every peer: ${deleteToWithdrawnMs} ms`);
    const rest = lab.nodes.filter((n) => n !== n5);
    t.same(await withRoute(lab, rest, n5.subnet!), [], `${n5.name}'s subnet withdrawn from every peer`);
    t.ok(await until('3 sessions again', async () => (await Promise.all(rest.map((n) => allEstablished(lab, n, 3)))).every(Boolean)), 'every remaining node is back to 3 sessions');
    await matrixOk(t, lab, lab.pods.filter((p) => p.node !== n5.name), 'mesh of 4 after the leave');
  });

  await t.test('agent restart (SIGTERM, start): an established ping flow loses no packet', async (t) => {
    const [from] = lab.podsOf(n1);
    const [to] = lab.podsOf(n2);
    const flow = lab.spawn(from!, ['ping', '-n', '-i', '0.02', to!.ip], { logFile: join(lab.dir, 'restart-flow.log') });
    started.push(flow.pid);
    await until('the flow runs', async () => /icmp_seq=5 /.test(await readFile(flow.logFile, 'utf8')));
    const birdBefore = await birdPid(lab, n2);
    const t0 = Date.now();
    await lab.stopAgent(n2, 'SIGTERM');
    const stopped = Date.now();
    const others = lab.nodes.filter((n) => lab.agentRunning(n));
    const missing = await watchRoutes(lab, [...others, n2], 1500);
    t.same(missing, [], 'agent of n2 down: no route vanished on n2 (persist) or its peers (graceful restart)');
    const { readyMs } = await lab.startAgent(n2);
    t.equal(await birdPid(lab, n2), birdBefore, 'the restarted agent adopted the BIRD that ran on through the stop');
    await until('n2 sessions back', () => allEstablished(lab, n2, 3));
    const back = Date.now();
    await sleep(1000);
    process.kill(flow.pid, 'SIGINT');
    await waitForExit(flow.pid, 5000);
    const log = await readFile(flow.logFile, 'utf8');
    const m = /(\d+) packets transmitted, (\d+) received/.exec(log);
    t.ok(m, 'ping printed its summary');
    const [sent, received] = [Number(m?.[1]), Number(m?.[2])];
    t.ok(sent > 0, `${sent} packets sent across the restart`);
    t.equal(received, sent, `no packet lost (${received}/${sent})`);
    t.comment(`restart: agent stop ${stopped - t0} ms, start to ready ${readyMs} ms, all sessions Established ${back - t0} ms after the stop began; ${sent} packets at 20 ms, ${sent - received} lost`);
  });

  await t.test('bad inputs: ASN 0 in net-conf; BIRD missing on one node', async (t) => {
    const bad = join(lab.dir, 'asn0.json');
    await writeFile(bad, JSON.stringify({ Network: DEFAULT_NETWORK, Backend: { Type: 'bgp', ASN: 0 } }));
    const v = await weft(['config', 'validate', bad]);
    const said = (v.stdout + v.stderr).trim();
    t.equal(v.code, 1, 'weft config validate exits 1');
    t.equal(said.split('\n').length, 1, 'one line');
    t.match(said, /Backend\.ASN 0 is reserved; use 1\.\.4294967295/, `names the field and the fix: ${said}`);

    // The same config reaching running agents through etcd: refused, the mesh runs on.
    const configKey = `${lab.etcdPrefix}/config`;
    const good = (await lab.etcdGet(configKey))!;
    const members = lab.nodes.filter((n) => lab.agentRunning(n));
    await lab.etcdPut(configKey, JSON.stringify({ Network: DEFAULT_NETWORK, Backend: { Type: 'bgp', ASN: 0 } }));
    const refused = await until('every agent refused ASN 0', async () =>
      (await Promise.all(members.map(async (n) => /refused: (net-conf: )?Backend\.ASN 0 is reserved/.test(await readFile(lab.agentLogFile(n), 'utf8'))))).every(Boolean),
    );
    t.ok(refused, 'every agent logged the refusal');
    await lab.etcdPut(configKey, good);
    t.same(await watchRoutes(lab, members, 1000), [], 'no route changed');

    // BIRD not installed on one node: PATH without /usr/sbin for its agent.
    const [victim] = lab.nodes.filter((n) => !lab.agentRunning(n)); // n5, which left
    const log = join(lab.nodeDir(victim!), 'agent-nobird.log');
    const agent = lab.spawn(victim!, [
      'env', 'PATH=/usr/local/bin:/usr/bin:/bin', process.execPath, agentEntry(), 'agent',
      '--etcd-endpoints', lab.etcdEndpoint, '--etcd-prefix', lab.etcdPrefix, '--iface', 'eth0', '--node-name', victim!.ns,
      '--subnet-file', lab.subnetFile(victim!), '--run-dir', join(lab.nodeDir(victim!), 'run'), '--healthz-addr', '127.0.0.1:10270',
    ], { logFile: log });
    started.push(agent.pid);
    const attempts = async (): Promise<string[]> =>
      (await readFile(log, 'utf8').catch(() => ''))
        .split('\n')
        .filter((l) => /BIRD is not installed/.test(l))
        .map((l) => (JSON.parse(l) as { msg: string }).msg);
    const lines = await until('two attempts logged', async () => {
      const a = await attempts();
      return a.length >= 2 ? a : undefined;
    });
    t.match(lines[0], /^cannot start the bgp backend: BIRD is not installed \(no `bird` in PATH\); install BIRD 2 \(Debian: apt-get install bird2\)/, `one clear line: ${lines[0]}`);
    t.notOk(lines[0]!.includes('\n'), 'a single line');
    t.ok(isAlive(agent.pid), 'the agent keeps running and retrying');
    t.notOk(await lab.agentReady(victim!), `${victim!.name} is not ready`);
    const leases = [...(await lab.etcdList(`${lab.etcdPrefix}/subnets/`)).values()];
    t.notOk(leases.some((v) => v.includes(`"${victim!.underlayIP}"`)), 'it took no lease');
    t.same(await watchRoutes(lab, members, 500), [], 'the other nodes keep every route');
    await matrixOk(t, lab, lab.pods.filter((p) => p.node !== victim!.name), 'the other nodes');
    process.kill(agent.pid, 'SIGTERM');
    t.ok(await waitForExit(agent.pid, 10_000), 'the agent without BIRD stops on SIGTERM');
  });

  await lab.down();
});

// --- route reflectors -------------------------------------------------------------

t.test('5 nodes with 2 route reflectors (lab bg2)', async (t) => {
  const up = Date.now();
  const lab = await Lab.up({
    name: 'bg2',
    nodes: 5,
    podsPerNode: 1,
    netConf: { Network: DEFAULT_NETWORK, Backend: { Type: 'bgp', RouteReflectors: ['wl-bg2-n1', 'wl-bg2-n2'] } },
  });
  t.comment(`lab bg2 up (5 nodes, reflectors n1 and n2): ${Date.now() - up} ms`);
  const [n1, n2] = lab.nodes as [LabNode, LabNode, ...LabNode[]];
  const reflector = (n: LabNode): boolean => n === n1 || n === n2;

  await matrixOk(t, lab, lab.pods, 'reflectors, 5 nodes');
  for (const node of lab.nodes) {
    const want = reflector(node) ? 4 : 2;
    t.ok(await allEstablished(lab, node, want), `${node.name}: ${want} sessions Established (${reflector(node) ? 'the other reflector + 3 clients' : '2 reflectors'})`);
  }
  t.ok(await waitRoutes(lab, lab.nodes), 'every subnet in every kernel (proto bird, next hop the owner)');

  const { node: n6, leaseToRoutesMs } = await timeJoin(lab, () => lab.addNode());
  t.comment(`reflectors: ${n6.name}'s lease in etcd -> its route in all 5 peers' kernels: ${leaseToRoutesMs} ms`);
  await waitRoutes(lab, lab.nodes);
  t.ok(await allEstablished(lab, n6, 2), `${n6.name} (client) peers with the 2 reflectors only`);
  for (const r of [n1, n2]) t.ok(await allEstablished(lab, r, 5), `${r.name}: 5 sessions now`);
  await matrixOk(t, lab, lab.pods, 'reflectors, 6 nodes');

  // Reflector n2's BIRD killed: routes stay everywhere; its agent restarts BIRD.
  const pid = await birdPid(lab, n2);
  t.ok(pid, 'BIRD runs in n2');
  process.kill(pid!, 'SIGKILL');
  const others = lab.nodes.filter((n) => n !== n2);
  t.same(await watchRoutes(lab, others, 2000), [], "reflector n2's BIRD killed: no route vanished anywhere");
  await matrixOk(t, lab, lab.pods, "reflector n2's BIRD killed");
  await until("n2's BIRD restarted by its agent, sessions back", () => allEstablished(lab, n2, 5));
  t.not(await birdPid(lab, n2), pid, 'a new BIRD runs in n2');

  // Reflector n1 gone for good: agent killed, its BIRD shut down (sessions closed, no graceful restart).
  await lab.stopAgent(n1, 'SIGKILL');
  const down = await runCommand(['birdc', '-s', birdSocket(lab, n1), 'down'], { check: false });
  t.equal(down.code, 0, "n1's BIRD shut down");
  const rest = lab.nodes.filter((n) => n !== n1);
  await until("n1's subnet withdrawn", async () => (await Promise.all(rest.map(async (n) => !(await birdRoutes(lab, n)).has(n1.subnet!)))).every(Boolean));
  t.same(await watchRoutes(lab, rest, 1500), [], 'reflector n1 gone: every route among the others stays (through n2)');
  await matrixOk(t, lab, lab.pods.filter((p) => p.node !== n1.name), 'reflector n1 gone');

  const { deleteToWithdrawnMs } = await leave(lab, n6);
  t.comment(`reflectors: ${n6.name}'s lease deleted -> its route gone from every peer: ${deleteToWithdrawnMs} ms`);
  t.same(await withRoute(lab, lab.nodes.filter((n) => n !== n6 && lab.agentRunning(n)), n6.subnet!), [], `${n6.name} left: its subnet withdrawn everywhere`);
  await lab.down();
});

// --- gobgpd ---------------------------------------------------------------------------

const TOR_AS = 65000;

function gobgpdConf(lines: string[]): string {
  return lines.join('\n') + '\n';
}

async function startGobgpd(t: Test, lab: Lab, host: { name: string; ns: string; ip: string }, conf: string): Promise<void> {
  const file = join(lab.dir, `${host.name}.gobgpd.toml`);
  await writeFile(file, conf);
  const p = lab.spawn(host, ['gobgpd', '-f', file, '-t', 'toml', '--api-hosts', `${host.ip}:50051`, '--pprof-disable', '-l', 'warn', '-p']);
  started.push(p.pid);
  await until(`gobgpd in ${host.name}`, async () => (await gobgp(lab, host, ['global'])).code === 0, 20_000);
  t.teardown(() => {
    if (isAlive(p.pid)) process.kill(p.pid, 'SIGTERM');
  });
}

function gobgp(lab: Lab, host: { ns: string; ip: string }, args: string[]): Promise<CommandResult> {
  return lab.exec(host, ['gobgp', '-u', host.ip, ...args], { check: false });
}

/** prefix -> next hops of gobgpd's global RIB. */
async function gobgpRib(lab: Lab, host: { ns: string; ip: string }): Promise<Map<string, string[]>> {
  const r = await gobgp(lab, host, ['global', 'rib', '-a', 'ipv4', '-j']);
  const rib = JSON.parse(r.stdout || '{}') as Record<string, { attrs: { nexthop?: string }[] }[]>;
  return new Map(Object.entries(rib).map(([prefix, paths]) => [prefix, paths.map((p) => p.attrs.find((a) => a.nexthop !== undefined)?.nexthop ?? '?')]));
}

t.test('gobgpd as ToR (external peer) and as the route reflector (lab bg3)', async (t) => {
  const lab = await Lab.up({ name: 'bg3', nodes: 3, podsPerNode: 1, startAgents: false, netConf: { Network: DEFAULT_NETWORK, Backend: { Type: 'bgp' } } });
  const tor = await lab.addUnderlayHost('tor');
  const rr = await lab.addUnderlayHost('rr');
  const nodeAs = 64512;
  await startGobgpd(t, lab, tor, gobgpdConf([
    '[global.config]', `  as = ${TOR_AS}`, `  router-id = "${tor.ip}"`,
    ...lab.nodes.flatMap((n) => ['[[neighbors]]', '  [neighbors.config]', `    neighbor-address = "${n.underlayIP}"`, `    peer-as = ${nodeAs}`]),
  ]));
  await startGobgpd(t, lab, rr, gobgpdConf([
    '[global.config]', `  as = ${nodeAs}`, `  router-id = "${rr.ip}"`,
    ...lab.nodes.flatMap((n) => [
      '[[neighbors]]', '  [neighbors.config]', `    neighbor-address = "${n.underlayIP}"`, `    peer-as = ${nodeAs}`,
      '  [neighbors.route-reflector.config]', '    route-reflector-client = true', `    route-reflector-cluster-id = "${rr.ip}"`,
    ]),
  ]));
  // The cluster's only reflector is gobgpd; the ToR is every node's external peer.
  await lab.etcdPut(`${lab.etcdPrefix}/config`, JSON.stringify({
    Network: DEFAULT_NETWORK,
    Backend: { Type: 'bgp', ASN: nodeAs, RouteReflectors: [rr.ip], ExternalPeers: [{ PeerIP: tor.ip, ASN: TOR_AS }], AllowedPrefixes: ['203.0.113.0/24'] },
  }));
  const up = Date.now();
  await Promise.all(lab.nodes.map((n) => lab.startAgent(n)));
  t.comment(`3 agents ready (sessions to gobgpd RR and ToR Established) ${Date.now() - up} ms after start`);
  for (const n of lab.nodes) await lab.addPod(n);

  t.ok(await waitRoutes(lab, lab.nodes), 'every node subnet in every kernel, reflected by gobgpd');
  await matrixOk(t, lab, lab.pods, 'gobgpd as route reflector');
  for (const n of lab.nodes) t.ok(await allEstablished(lab, n, 2), `${n.name}: 2 sessions (gobgpd reflector, gobgpd ToR), Established`);

  const rib = await until('ToR RIB with every node subnet', async () => {
    const r = await gobgpRib(lab, tor);
    return lab.nodes.every((n) => r.has(n.subnet!)) ? r : undefined;
  });
  for (const n of lab.nodes) t.same(rib.get(n.subnet!), [n.underlayIP], `ToR: ${n.subnet} via ${n.name} only`);

  const inside = '203.0.113.0/25';
  const outside = ['198.51.100.0/24', '10.99.0.0/16', `${lab.nodes[0]!.subnet!.replace(/\/24$/, '')}/25`];
  for (const prefix of [inside, ...outside]) {
    t.equal((await gobgp(lab, tor, ['global', 'rib', 'add', '-a', 'ipv4', prefix, 'nexthop', tor.ip])).code, 0, `ToR announces ${prefix}`);
  }
  t.ok(await until(`${inside} in every kernel`, async () => (await Promise.all(lab.nodes.map(async (n) => (await birdRoutes(lab, n)).get(inside) === tor.ip))).every(Boolean)),
    `${inside} (inside AllowedPrefixes) reached every node's kernel via the ToR`);
  await sleep(1000);
  for (const n of lab.nodes) {
    const routes = await birdRoutes(lab, n);
    t.same(outside.filter((p) => routes.has(p)), [], `${n.name}: ${outside.join(', ')} (outside AllowedPrefixes) rejected`);
  }
  await lab.down();
});
