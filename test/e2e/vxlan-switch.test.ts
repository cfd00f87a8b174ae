// Switching a cluster between host-gw and vxlan through the config in etcd:
// afterwards every node runs the new backend completely, and nothing of the
// old one is left: no route, no device, no nftables table.
import t, { type Test } from 'tap';
import type { Lab, LabNode } from '../../src/lab/lab.js';
import { freshLab, routesOf, waitUntil } from './support/lab-fixture.js';
import { PingFlow } from './support/watched-process.js';
import { VXLAN_DEV, labVxlanProblems, leasesOf } from './support/vxlan.js';

const NETWORK = '10.244.0.0/16';

async function weftLinks(lab: Lab, node: LabNode): Promise<string[]> {
  const links = JSON.parse((await lab.exec(node, ['ip', '-j', 'link', 'show'])).stdout) as { ifname: string }[];
  return links.map((l) => l.ifname).filter((n) => n.startsWith('weft'));
}

async function hasNftTable(lab: Lab, node: LabNode): Promise<boolean> {
  return /\btable inet weft\b/.test((await lab.exec(node, ['nft', 'list', 'tables'])).stdout);
}

/** What is missing or left over for host-gw on every node ([] when clean). */
async function hostGwProblems(lab: Lab): Promise<string[]> {
  const leases = await leasesOf(lab);
  const out: string[] = [];
  for (const node of lab.nodes) {
    const routes = (await routesOf(lab, node)).filter((r) => r.protocol === '147');
    for (const peer of leases.filter((l) => l.publicIP !== node.underlayIP)) {
      if (!routes.some((r) => r.dst === peer.subnet && r.gateway === peer.publicIP && r.dev === 'eth0')) out.push(`${node.name}: no host-gw route to ${peer.subnet}`);
    }
    for (const r of routes.filter((r) => r.dev !== 'eth0')) out.push(`${node.name}: leftover route ${r.dst} dev ${r.dev}`);
    for (const link of await weftLinks(lab, node)) out.push(`${node.name}: leftover device ${link}`);
    if (await hasNftTable(lab, node)) out.push(`${node.name}: leftover nftables table inet weft`);
    if (leases.some((l) => l.backendType !== 'host-gw')) out.push('a lease still names another backend');
  }
  return out;
}

/** vxlan complete, and nothing of host-gw left ([] when clean). */
async function vxlanProblems(lab: Lab): Promise<string[]> {
  const out = await labVxlanProblems(lab);
  for (const node of lab.nodes) {
    const routes = (await routesOf(lab, node)).filter((r) => r.protocol === '147');
    for (const r of routes.filter((r) => r.dev !== VXLAN_DEV)) out.push(`${node.name}: leftover route ${r.dst} via ${r.gateway} dev ${r.dev}`);
    if (!(await hasNftTable(lab, node))) out.push(`${node.name}: no nftables table inet weft (the VXLAN port is not locked)`);
  }
  if ((await leasesOf(lab)).some((l) => l.backendType !== 'vxlan')) out.push('a lease still names another backend');
  return out;
}

async function settle(t: Test, what: string, probe: () => Promise<string[]>): Promise<string[]> {
  const w = await waitUntil(async () => (await probe()).length === 0, { timeoutMs: 60_000, intervalMs: 250 });
  t.comment(`${what}: clean after ${w.ms} ms`);
  return w.ok ? [] : probe();
}

async function putConfig(lab: Lab, type: string): Promise<void> {
  await lab.etcdPut(`${lab.etcdPrefix}/config`, JSON.stringify({ Network: NETWORK, Backend: { Type: type } }));
}

t.test('host-gw -> vxlan -> host-gw through the config in etcd', async (t) => {
  const lab = await freshLab(t, { name: 'vx9', nodes: 3, podsPerNode: 1, netConf: { Network: NETWORK, Backend: { Type: 'host-gw' } } });
  t.same(await settle(t, 'host-gw lab', () => hostGwProblems(lab)), [], 'host-gw to start with');
  t.ok((await lab.pingMatrix()).ok, 'every pod reaches every pod on host-gw');

  // Agents down while the config changes: the new backend starts from the old one's kernel state.
  for (const node of lab.nodes) await lab.stopAgent(node, 'SIGTERM');
  await putConfig(lab, 'vxlan');
  await Promise.all(lab.nodes.map((n) => lab.startAgent(n)));
  t.same(await settle(t, 'host-gw -> vxlan (config changed, agents restarted)', () => vxlanProblems(lab)), [],
    'every node runs vxlan completely; no host-gw route is left');
  t.ok((await lab.pingMatrix()).ok, 'every pod reaches every pod on vxlan');

  // Config changed under running agents, then a rolling restart (a DaemonSet rollout).
  await putConfig(lab, 'host-gw');
  for (const node of lab.nodes) {
    await lab.stopAgent(node, 'SIGTERM');
    await lab.startAgent(node);
  }
  t.same(await settle(t, 'vxlan -> host-gw (config changed, rolling restart)', () => hostGwProblems(lab)), [],
    'every node runs host-gw completely; no vxlan device, route or nftables table is left');
  t.ok((await lab.pingMatrix()).ok, 'every pod reaches every pod on host-gw again');
});

// Issue 6: the switch through the config alone — no agent restarts, pods keep
// running — with the full pod matrix after each step. Ping loss during each
// switch is asserted to be zero, never a time.
t.test('live switch, config alone: host-gw -> vxlan -> host-gw with pods running', async (t) => {
  const lab = await freshLab(t, { name: 'vx10', nodes: 3, podsPerNode: 1, netConf: { Network: NETWORK, Backend: { Type: 'host-gw' } } });
  t.same(await settle(t, 'host-gw lab', () => hostGwProblems(lab)), [], 'host-gw to start with');
  const pids = lab.nodes.map((n) => n.agentPid);
  const [a, b] = lab.pods;

  for (const [type, problems] of [['vxlan', vxlanProblems], ['host-gw', hostGwProblems]] as const) {
    const flow = PingFlow.start(a!.ns, b!.ip, { intervalS: 0.02 });
    await waitUntil(() => flow.replies > 5, { timeoutMs: 10_000 });
    await putConfig(lab, type);
    t.same(await settle(t, `live switch to ${type}`, () => problems(lab)), [], `every node runs ${type} completely; nothing of the old backend is left`);
    const result = await flow.stop();
    t.comment(`live switch to ${type}: ${result.lost.length} of ${result.transmitted} pings lost (20 ms apart) from ${a!.name} to ${b!.name}`);
    t.same(result.lost, [], `live switch to ${type}: no ping lost`);
    t.ok((await lab.pingMatrix()).ok, `every pod reaches every pod after the switch to ${type}`);
  }
  t.same(lab.nodes.map((n) => n.agentPid), pids, 'no agent was restarted');
  t.ok(lab.nodes.every((n) => lab.agentRunning(n)), 'every agent still runs');
});
