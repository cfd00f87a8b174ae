// Dual-stack and IPv6-only end to end, in the namespace lab (real etcd, real
// agents, pods wired by the CNI plugins). One dual-stack lab is switched live
// through every backend, and at each every pod pair is pinged in both
// families; a foreign node that speaks only flannel's dual-stack lease
// format is reached in both families and forgotten when its lease expires;
// --ip-masq takes pods to an IPv6 host outside the cluster. A second lab runs
// IPv6 only on host-gw and vxlan. Waits are conditions with generous
// deadlines; times are reported with t.comment, never asserted.
import t, { type Test } from 'tap';
import type { BackendType } from '../../src/config/netconf.js';
import { Cidr, type Family } from '../../src/core/cidr.js';
import { Lab, labNetConf, type LabNode } from '../../src/lab/lab.js';
import type { PingMatrix } from '../../src/lab/ping.js';
import { nodeSubnet, nodeUnderlayIP } from '../../src/lab/state.js';
import { freshLab, unusedSubnets, waitUntil, weftCli } from './support/lab-fixture.js';
import { seenSource } from './support/vxlan.js';

/** Generous: agents switching backends on a loaded 2-core machine. */
const CONVERGE_MS = 60_000;
const PROBE_PORT = 7777;

/** "IPv6 p1>p2" for every pair that did not answer, in every family. */
function failures(matrices: readonly PingMatrix[]): string[] {
  return matrices.flatMap((m) => m.rows.filter((r) => !r.ok).map((r) => `IPv${m.family} ${r.from}>${r.to}`));
}

/** The device (and gateway) the node's kernel picks for `ip` in its family. */
async function routeGet(lab: Lab, node: LabNode, ip: string): Promise<string> {
  const r = await lab.exec(node, ['ip', '-json', 'route', 'get', ip], { check: false });
  const [route] = JSON.parse(r.stdout || '[{}]') as { dev?: string; gateway?: string }[];
  return `${route?.dev ?? 'none'}${route?.gateway ? ` via ${route.gateway}` : ''}`;
}

/** The first host address of each peer's subnet in `family`: what a route to that peer's pods is looked up with. */
function peerProbe(peer: LabNode, family: Family): string {
  return Cidr.parse(nodeSubnet(peer, family)!).ip.add(1).toString();
}

/** How each backend reaches a peer's pods: the device, and the next hop when it is the peer's underlay address. */
function expectedPath(backend: BackendType, peer: LabNode, family: Family): string {
  const direct = `eth0 via ${nodeUnderlayIP(peer, family)}`;
  if (backend === 'vxlan') return `${family === 4 ? 'weft.1' : 'weft-v6.1'} via ${Cidr.parse(nodeSubnet(peer, family)!).ip}`;
  if (backend === 'udp') return 'weft0';
  return direct; // host-gw, and bgp (BIRD installs the same direct route)
}

/** Every node's path to every peer's pods, in every family the lab runs, that is not the backend's: [] when all are. */
async function wrongPaths(lab: Lab, backend: BackendType): Promise<string[]> {
  const checks = lab.nodes.flatMap((node) =>
    lab.nodes.filter((p) => p !== node).flatMap((peer) => lab.families.map((family) => ({ node, peer, family }))),
  );
  const got = await Promise.all(checks.map(({ node, peer, family }) => routeGet(lab, node, peerProbe(peer, family))));
  return checks.flatMap(({ node, peer, family }, i) => {
    const want = expectedPath(backend, peer, family);
    return got[i] === want ? [] : [`${node.name}->${peer.name} IPv${family}: ${got[i]}, want ${want}`];
  });
}

/** Puts `backend`'s net-conf in etcd and waits until every node routes the backend's way and every pod pair answers in every family. */
async function switchTo(t: Test, lab: Lab, backend: BackendType): Promise<void> {
  const started = Date.now();
  await lab.etcdPut(`${lab.etcdPrefix}/config`, JSON.stringify(labNetConf(backend, lab.families)));
  const done = await waitUntil(async () => (await wrongPaths(lab, backend)).length === 0 && failures(await lab.pingMatrices()).length === 0, {
    timeoutMs: CONVERGE_MS,
    intervalMs: 500,
  });
  t.comment(`${backend}: converged in every family ${Date.now() - started} ms after the config change (${done.ok ? 'ok' : 'timed out'})`);
}

t.test('dual-stack lab: foreign flannel node, --ip-masq, and every backend with every pod pair in both families', async (t) => {
  const lab = await freshLab(t, { name: 'dstack', nodes: 3, podsPerNode: 1, families: [4, 6], backend: 'host-gw', agentArgs: ['--ip-masq'] });
  const converged = await waitUntil(async () => failures(await lab.pingMatrices()).length === 0, { timeoutMs: CONVERGE_MS, intervalMs: 500 });
  t.comment(`host-gw: every pair answers in both families ${converged.ms} ms after lab up`);

  t.test('a foreign node with only a flannel dual-stack lease is reached in both families; its routes go with the lease', async (t) => {
    // The foreign node: an underlay host holding the first address of its two subnets, wired by hand from its lease.
    const host = await lab.addUnderlayHost('flannel');
    const [subnet4] = await unusedSubnets(lab, 1);
    const taken6 = lab.nodes.map((n) => n.ipv6Subnet);
    const subnet6 = ['2001:db8:1000:ff::/64', '2001:db8:1000:fe::/64'].find((s) => !taken6.includes(s))!;
    const pod4 = Cidr.parse(subnet4!).ip.add(1).toString();
    const pod6 = Cidr.parse(subnet6).ip.add(1).toString();
    await lab.exec(host, ['ip', '-batch', '-'], {
      input: [
        `addr add ${pod4}/32 dev lo`,
        `addr add ${pod6}/128 dev lo nodad`,
        ...lab.nodes.flatMap((n) => lab.families.map((f) => `route add ${nodeSubnet(n, f)} via ${nodeUnderlayIP(n, f)}`)),
      ].join('\n') + '\n',
    });
    // flannel's key and field order for a dual-stack host-gw lease, under a 10 s etcd lease.
    const etcdctl = ['etcdctl', `--endpoints=${lab.etcdEndpoint}`, '--dial-timeout=3s', '--command-timeout=10s'];
    const grant = await lab.exec(lab.underlayNs, [...etcdctl, 'lease', 'grant', '10']);
    const leaseId = /lease ([0-9a-f]+) granted/.exec(grant.stdout)?.[1];
    t.ok(leaseId, 'etcd granted a lease', { stdout: grant.stdout });
    const key = `${lab.etcdPrefix}/subnets/${Cidr.parse(subnet4!).toKey()}&${Cidr.parse(subnet6).toKey()}`;
    const value = JSON.stringify({ PublicIP: host.ip, PublicIPv6: host.ipv6, BackendType: 'host-gw' });
    await lab.exec(lab.underlayNs, [...etcdctl, 'put', `--lease=${leaseId}`, key, value]);

    const pingFrom = (family: Family, ip: string) =>
      Promise.all(lab.pods.map(async (p) => (await lab.exec(p.ns, ['ping', `-${family}`, '-c', '1', '-W', '2', ip], { check: false })).code === 0));
    const reached = await waitUntil(async () => (await Promise.all([pingFrom(4, pod4), pingFrom(6, pod6)])).flat().every(Boolean), {
      timeoutMs: CONVERGE_MS,
      intervalMs: 300,
    });
    t.ok(reached.ok, `every pod reaches the foreign node at ${pod4} and ${pod6} (${reached.ms} ms after its lease was written)`);

    // No renewal: etcd drops the key after 10 s, and every node its routes.
    const routesTo = async () =>
      (await Promise.all(lab.nodes.flatMap((n) => [subnet4!, subnet6].map(async (s) => (await lab.exec(n, ['ip', 'route', 'show', 'exact', s])).stdout.trim())))).filter(Boolean);
    const gone = await waitUntil(async () => (await routesTo()).length === 0, { timeoutMs: CONVERGE_MS, intervalMs: 300 });
    t.same(await routesTo(), [], 'the lease expired: no node routes either subnet any more');
    t.comment(`routes gone ${gone.ms} ms after the pods first reached the foreign node`);
  });

  t.test('--ip-masq in IPv6: the outside sees the node, pods see pods', async (t) => {
    const outside = await lab.addUnderlayHost('outside', { segment: 2 });
    const [n1] = lab.nodes as [LabNode];
    const [p1, p2] = [lab.podsOf('n1')[0]!, lab.podsOf('n2')[0]!];
    const seen = await Promise.all([
      seenSource(p1, { ns: outside.ns, ip: outside.ipv6! }, 'to-outside6', PROBE_PORT),
      seenSource(p1, { ns: p2.ns, ip: p2.ipv6! }, 'pod-to-pod6', PROBE_PORT + 1),
    ]);
    t.same(seen, [n1.underlayIPv6, p1.ipv6], 'the outside IPv6 host sees the node\'s IPv6 address; a pod on another node sees the pod\'s own');
    const ping = await lab.exec(p1, ['ping', '-6', '-n', '-c', '2', '-W', '2', outside.ipv6!], { check: false });
    t.equal(ping.code, 0, 'the pod gets IPv6 replies from the outside (the masquerade is undone on the way back)');
  });

  for (const backend of ['host-gw', 'vxlan', 'udp', 'bgp'] as const) {
    t.test(`${backend}: every pod pair in both families, over ${backend}'s own path`, async (t) => {
      if (backend !== 'host-gw') await switchTo(t, lab, backend);
      t.same(await wrongPaths(lab, backend), [], `every node reaches every peer's pods the ${backend} way in IPv4 and IPv6`);
      t.same(failures(await lab.pingMatrices()), [], 'every pod pair answers over IPv4 and IPv6');
    });
  }
});

t.test('IPv6-only lab on host-gw, then vxlan: every pod pair over IPv6', async (t) => {
  const lab = await freshLab(t, { name: 'v6only', nodes: 3, podsPerNode: 1, families: [6], backend: 'host-gw' });
  t.same(lab.nodes.filter((n) => !n.subnet || Cidr.parse(n.subnet).family !== 6).map((n) => n.name), [], 'every node leased an IPv6 subnet as its only one');
  for (const backend of ['host-gw', 'vxlan'] as const) {
    if (backend !== 'host-gw') await switchTo(t, lab, backend);
    else await waitUntil(async () => failures(await lab.pingMatrices()).length === 0, { timeoutMs: CONVERGE_MS, intervalMs: 500 });
    t.same(await wrongPaths(lab, backend), [], `${backend}: every node reaches every peer's pods the ${backend} way`);
    t.same(failures(await lab.pingMatrices()), [], `${backend}: every pod pair answers over IPv6`);
  }
});

t.test('EnableIPv6 on a node whose interface has no IPv6 address: the agent stops with one line', async (t) => {
  const lab = await freshLab(t, { name: 'dsnov6', nodes: 1, families: [4], startAgents: false, netConf: labNetConf('host-gw', [4, 6]) });
  const r = await weftCli(lab, lab.nodes[0]!, ['agent', '--etcd-endpoints', lab.etcdEndpoint, '--etcd-prefix', lab.etcdPrefix, '--iface', 'eth0', '--healthz-addr', '', '--run-dir', `${lab.dir}/nov6`, '--subnet-file', `${lab.dir}/nov6/subnet.env`], { timeoutMs: 30_000 });
  t.same([r.code, r.stderr.trim()], [1, 'weft: EnableIPv6 is set but eth0 has no global IPv6 address; add one to eth0, pick an interface that has one with --iface, or remove EnableIPv6 from the net-conf'], 'exit 1 and one line naming the cause and the fix');
});

