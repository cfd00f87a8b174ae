// vxlan on a flat and on a routed underlay: every pod reaches every pod, the
// kernel holds exactly the device, neighbours, FDB entries and routes the
// leases call for; host-gw on the routed underlay refuses the peers it cannot
// reach; DirectRouting routes same-segment peers directly and tunnels the rest.
import t, { type Test } from 'tap';
import { readFile } from 'node:fs/promises';
import type { Lab, LabNode } from '../../src/lab/lab.js';
import { freshLab, routesOf, waitUntil } from './support/lab-fixture.js';
import { VXLAN_DEV, labVxlanProblems, leaseOf, leasesOf } from './support/vxlan.js';

const sameSegment = (a: LabNode, b: LabNode): boolean => a.segment === b.segment;

/** Waits (generously) until every node's tunnel matches the leases; returns what is still wrong. */
async function converged(t: Test, lab: Lab, opts: { direct?: (a: LabNode, b: LabNode) => boolean } = {}): Promise<string[]> {
  const w = await waitUntil(async () => (await labVxlanProblems(lab, opts)).length === 0, { timeoutMs: 30_000, intervalMs: 200 });
  t.comment(`${lab.name}: tunnel state complete on every node ${w.ms} ms after the lab was up`);
  return w.ok ? [] : labVxlanProblems(lab, opts);
}

async function nftPeerSet(lab: Lab, node: LabNode): Promise<string[]> {
  const r = await lab.exec(node, ['nft', '-j', 'list', 'set', 'inet', 'weft', 'vxlan_peers4'], { check: false });
  if (r.code !== 0) return [`(no set: ${r.stderr.trim()})`];
  const doc = JSON.parse(r.stdout) as { nftables: { set?: { elem?: string[] } }[] };
  return (doc.nftables.find((i) => i.set)?.set?.elem ?? []).map(String).sort();
}

function matrixFailures(rows: readonly { from: string; to: string; ok: boolean }[]): string[] {
  return rows.filter((r) => !r.ok).map((r) => `${r.from}>${r.to}`);
}

t.test('vxlan, 3 nodes on one segment: device, entries, MTU, firewall set, full pod matrix', async (t) => {
  const lab = await freshLab(t, { name: 'vx1', nodes: 3, podsPerNode: 2, backend: 'vxlan' });
  t.same(await converged(t, lab), [], 'every node holds the device and every peer\'s neighbour, FDB entry and onlink route');

  const leases = await leasesOf(lab);
  t.equal(leases.length, 3, 'one lease per node');
  for (const lease of leases) {
    t.equal(lease.backendType, 'vxlan', `${lease.node}: lease says vxlan`);
    t.equal(lease.vni, 1, `${lease.node}: BackendData.VNI`);
    t.match(lease.vtepMac, /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/, `${lease.node}: BackendData.VtepMAC is a MAC`);
    const first = parseInt(lease.vtepMac!.slice(0, 2), 16);
    t.equal(first & 0x03, 0x02, `${lease.node}: VtepMAC is locally administered and unicast`);
  }
  t.equal(new Set(leases.map((l) => l.vtepMac)).size, 3, 'VtepMACs are distinct');

  for (const node of lab.nodes) {
    const own = leaseOf(leases, node);
    const addrs = await lab.exec(node, ['ip', '-4', '-o', 'addr', 'show', 'dev', VXLAN_DEV]);
    t.match(addrs.stdout, new RegExp(`inet ${own.gateway.replace(/\./g, '\\.')}/32 `), `${node.name}: ${VXLAN_DEV} holds ${own.gateway}/32`);
    const mtu = /mtu (\d+)/.exec((await lab.exec(node, ['ip', '-o', 'link', 'show', VXLAN_DEV])).stdout)?.[1];
    t.equal(mtu, '1450', `${node.name}: device MTU is the underlay's 1500 - 50`);
    t.match(await readFile(lab.subnetFile(node), 'utf8'), /^FLANNEL_MTU=1450$/m, `${node.name}: subnet.env FLANNEL_MTU matches the device`);
    const peers = lab.nodes.filter((n) => n !== node).map((n) => n.underlayIP).sort();
    t.same(await nftPeerSet(lab, node), peers, `${node.name}: the VXLAN port is open to exactly the peers`);
  }
  const podMtu = /mtu (\d+)/.exec((await lab.exec(lab.pods[0]!, ['ip', '-o', 'link', 'show', 'eth0'])).stdout)?.[1];
  t.equal(podMtu, '1450', 'pods got the tunnel MTU through CNI');

  const matrix = await lab.pingMatrix();
  t.equal(matrix.rows.length, 30);
  t.same(matrixFailures(matrix.rows), [], 'every pod reaches every pod');
  // Big packets, too: a wrong MTU shows here, not in a 64-byte ping.
  const [a, b] = [lab.podsOf('n1')[0]!, lab.podsOf('n3')[0]!];
  const big = await lab.exec(a, ['ping', '-n', '-c', '2', '-W', '2', '-M', 'do', '-s', String(1450 - 28), b.ip], { check: false });
  t.equal(big.code, 0, 'a full-MTU packet with DF set crosses the tunnel');
});

t.test('routed underlay, 4 nodes on two segments', async (t) => {
  t.test('vxlan connects every node, across the router too', async (t) => {
    const lab = await freshLab(t, { name: 'vx2', nodes: 4, podsPerNode: 1, backend: 'vxlan', topology: 'routed' });
    t.same(lab.nodes.map((n) => n.segment), [0, 1, 0, 1], 'nodes alternate between the two segments');
    t.same(await converged(t, lab), [], 'every peer, on either segment, is reached through the tunnel');
    const matrix = await lab.pingMatrix();
    t.equal(matrix.rows.length, 12);
    t.same(matrixFailures(matrix.rows), [], 'every pod reaches every pod');
  });

  t.test('host-gw refuses the peers behind the router, with its warning, and serves the others', async (t) => {
    const lab = await freshLab(t, { name: 'vx3', nodes: 4, podsPerNode: 1, backend: 'host-gw', topology: 'routed' });
    const leases = await leasesOf(lab);
    const subnet = (n: LabNode): string => leaseOf(leases, n).subnet;
    const wanted = async (): Promise<string[]> => {
      const problems: string[] = [];
      for (const node of lab.nodes) {
        const routes = (await routesOf(lab, node)).filter((r) => r.protocol === '147');
        const log = await readFile(lab.agentLogFile(node), 'utf8');
        for (const peer of lab.nodes.filter((p) => p !== node)) {
          const route = routes.find((r) => r.dst === subnet(peer));
          if (sameSegment(node, peer)) {
            if (route?.gateway !== peer.underlayIP || route.dev !== 'eth0') problems.push(`${node.name}: no route to ${peer.name} via ${peer.underlayIP}`);
          } else {
            if (route) problems.push(`${node.name}: has a route to ${peer.name} behind the router: ${JSON.stringify(route)}`);
            if (!log.includes(`host-gw cannot reach peer ${subnet(peer)} at ${peer.underlayIP}: not on a network directly connected to eth0`)) {
              problems.push(`${node.name}: no warning about ${peer.name}`);
            }
          }
        }
      }
      return problems;
    };
    const w = await waitUntil(async () => (await wanted()).length === 0, { timeoutMs: 30_000, intervalMs: 200 });
    t.same(w.ok ? [] : await wanted(), [], 'same-segment peers are routed; cross-segment peers get no route and one warning');
    for (const node of lab.nodes) {
      const log = await readFile(lab.agentLogFile(node), 'utf8');
      const warnings = log.split('\n').filter((l) => l.includes('host-gw cannot reach peer'));
      t.equal(warnings.length, 2, `${node.name}: one warning per unreachable peer, not one per pass`);
    }
    const matrix = await lab.pingMatrix();
    const expected = matrix.rows.filter((r) => sameSegment(lab.node(r.from.split('-')[0]!), lab.node(r.to.split('-')[0]!)));
    t.same(matrix.rows.filter((r) => r.ok).map((r) => `${r.from}>${r.to}`), expected.map((r) => `${r.from}>${r.to}`), 'exactly the same-segment pairs reach each other');
  });

  t.test('vxlan with DirectRouting: direct routes inside a segment, the tunnel across', async (t) => {
    const lab = await freshLab(t, {
      name: 'vx4',
      nodes: 4,
      podsPerNode: 1,
      topology: 'routed',
      netConf: { Network: '10.244.0.0/16', Backend: { Type: 'vxlan', DirectRouting: true } },
    });
    t.same(await converged(t, lab, { direct: sameSegment }), [],
      'same-segment peers: route via the peer\'s underlay address, no neighbour or FDB entry; others: the tunnel');
    const matrix = await lab.pingMatrix();
    t.same(matrixFailures(matrix.rows), [], 'every pod reaches every pod');
  });
  t.end();
});
