// Who may put packets into the pod network. A crafted VXLAN frame from a host
// on the underlay that is not a peer never reaches a pod, while the very same
// frame from a peer's address does (so it is the source check that drops it,
// not a broken frame or path). With --ip-masq pods reach the outside as their
// node, and pod-to-pod traffic keeps the pod's address.
import t from 'tap';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Lab, LabNode } from '../../src/lab/lab.js';
import { freshLab, waitUntil } from './support/lab-fixture.js';
import { LineRecorder } from './support/watched-process.js';
import { UdpListener, labVxlanProblems, leaseOf, leasesOf, seenSource, sendUdp, sendUntil, vxlanUdpFrame } from './support/vxlan.js';

const VXLAN_PORT = 8472;
const PROBE_PORT = 7777;

async function converged(lab: Lab): Promise<boolean> {
  return (await waitUntil(async () => (await labVxlanProblems(lab)).length === 0, { timeoutMs: 30_000, intervalMs: 200 })).ok;
}

t.test('a crafted VXLAN frame from a non-peer never reaches a pod; the same frame from a peer does', async (t) => {
  const lab = await freshLab(t, { name: 'vx6', nodes: 2, podsPerNode: 1, backend: 'vxlan' });
  t.ok(await converged(lab), 'the tunnel is complete');
  const [n1, n2] = lab.nodes as [LabNode, LabNode];
  const [victim, sender] = [lab.podsOf(n1)[0]!, lab.podsOf(n2)[0]!];
  const attacker = await lab.addUnderlayHost('atk', { segment: 0 });
  const leases = await leasesOf(lab);

  // What n2's kernel would send for n2-p1 -> n1-p1, UDP to the probe port.
  const frame = (tag: string): Buffer => vxlanUdpFrame({
    vni: 1,
    dstMac: leaseOf(leases, n1).vtepMac!,
    srcMac: leaseOf(leases, n2).vtepMac!,
    srcIp: sender.ip,
    dstIp: victim.ip,
    srcPort: 40000,
    dstPort: PROBE_PORT,
    payload: Buffer.from(tag),
  });
  const listener = await UdpListener.start(victim.ns, PROBE_PORT);
  t.teardown(() => listener.stop());
  // Proof that the attacker's packets do arrive at the node, so nothing on the way lost them.
  const arriving = LineRecorder.start(['tcpdump', '-l', '-n', '-i', 'eth0', `udp and dst port ${VXLAN_PORT} and src host ${attacker.ip}`], { netns: n1.ns });
  t.teardown(() => arriving.stop());
  await sleep(1000); // tcpdump needs a moment to attach; the loop below re-sends anyway

  const sentByAttacker = await sendUntil(
    () => sendUdp(attacker.ns, { ip: n1.underlayIP, port: VXLAN_PORT }, frame('from-attacker'), { count: 5 }),
    () => arriving.lines.length >= 5,
  );
  t.ok(sentByAttacker, `the attacker's frames reach ${n1.name}'s underlay interface (tcpdump saw ${arriving.lines.length})`);
  await sleep(1000); // anything that got through would have arrived by now
  t.same(listener.matching('from-attacker'), [], 'the pod received none of the attacker\'s frames');

  const sentByPeer = await sendUntil(
    () => sendUdp(n2.ns, { ip: n1.underlayIP, port: VXLAN_PORT }, frame('from-peer'), { count: 3, bind: n2.underlayIP }),
    () => listener.matching('from-peer').length > 0,
  );
  t.ok(sentByPeer, 'the same frame from the peer\'s PublicIP is decapsulated and delivered to the pod');
  t.equal(listener.matching('from-peer')[0]?.from, sender.ip, 'the pod sees the inner source address');
  t.same(listener.matching('from-attacker'), [], 'still nothing from the attacker');

  // And the frame is no different from what the kernel itself carries: real traffic still flows.
  t.ok((await lab.pingMatrix()).ok, 'pod traffic through the tunnel is unaffected');
});

t.test('--ip-masq: the outside sees the node, pods see pods', async (t) => {
  for (const masq of [false, true]) {
    t.test(masq ? 'with --ip-masq' : 'without --ip-masq (control)', async (t) => {
      const name = masq ? 'vx7' : 'vx8';
      const lab = await freshLab(t, { name, nodes: 2, podsPerNode: 1, backend: 'vxlan', agentArgs: masq ? ['--ip-masq'] : [] });
      t.ok(await converged(lab), 'the tunnel is complete');
      const outside = await lab.addUnderlayHost('out', { segment: 2 });
      t.match(outside.ip, /^203\.0\.113\./, 'the outside host is on 203.0.113.0/24');
      const [n1] = lab.nodes as [LabNode];
      const [p1, p2] = [lab.podsOf('n1')[0]!, lab.podsOf('n2')[0]!];

      const out = await seenSource(p1, outside, `to-outside-${name}`, PROBE_PORT);
      if (masq) {
        t.equal(out, n1.underlayIP, 'the outside host sees the node\'s address');
        const ping = await lab.exec(p1, ['ping', '-n', '-c', '2', '-W', '2', outside.ip], { check: false });
        t.equal(ping.code, 0, 'the pod gets replies from the outside (the masquerade is undone on the way back)');
      } else {
        t.equal(out, p1.ip, 'without --ip-masq the outside host sees the pod\'s own address');
      }
      t.equal(await seenSource(p1, p2, `pod-to-pod-${name}`, PROBE_PORT), p1.ip, 'a pod on another node sees the sending pod\'s own address');
      const nft = await lab.exec(n1, ['nft', 'list', 'table', 'inet', 'weft']);
      if (masq) t.match(nft.stdout, /masquerade/, 'the masquerade rule lives in weft\'s table');
      else t.notMatch(nft.stdout, /masquerade/, 'no masquerade rule without --ip-masq');
    });
  }
  t.end();
});
