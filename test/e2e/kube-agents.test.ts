// Three real agents with --kube-subnet-mgr in a dual-stack lab, against the
// stand-in API server (test/fixtures/kube/apiserver.ts) running in the lab's
// underlay namespace: no real API server can run on this machine. The nodes
// exist up front with an IPv4 and an IPv6 podCIDR each, as
// kube-controller-manager with a dual-stack --cluster-cidr would leave them.
import t from 'tap';
import { pingOnce } from '../../src/lab/ping.js';
import { segment } from '../../src/lab/topology.js';
import { WEFT_ROUTE_PROTO } from '../../src/dataplane/state.js';
import { KUBE_API_CALLS } from '../../src/subnet/kube/api.js';
import { KUBE_API_PORT, kubePodCidr6Of, kubePodCidrOf, startKubeLab, tailOf } from './support/kube-lab.js';
import { until } from './support/lab-fixture.js';

const LAB = 'kb1';
const NETWORK = '10.244.0.0/16';
const NETWORK6 = '2001:db8:1000::/56';
const NET_CONF = { Network: NETWORK, EnableIPv6: true, IPv6Network: NETWORK6, Backend: { Type: 'host-gw' } };

t.test('three agents on the Kubernetes API: podCIDRs, peers, annotations, condition, node deletion', async (t) => {
  const started = Date.now();
  const { lab, api, readyMs } = await startKubeLab(t, { name: LAB, nodes: 3, families: [4, 6], netConf: NET_CONF });
  const apiHost = segment(0).gateway.toString();
  t.equal(api.url, `http://${apiHost}:${KUBE_API_PORT}`, 'the API server listens on the underlay');
  t.comment(`lab, API server and 3 agents ready in ${Date.now() - started} ms (each agent: ${readyMs.join(', ')} ms)`);

  for (const node of lab.nodes) {
    const env = await lab.readSubnetEnv(node);
    t.same(
      [env.network, env.subnet, env.ipv6?.network, env.ipv6?.subnet].map(String),
      [NETWORK, kubePodCidrOf(node.index), NETWORK6, kubePodCidr6Of(node.index)],
      `${node.name}: subnet.env holds the node's podCIDRs in both families`,
    );
  }

  // Annotations and the condition, as the API server holds them.
  for (const node of lab.nodes) {
    const obj = await until(`${node.name}'s NetworkUnavailable condition`, async () => {
      const o = await api.node(node.ns);
      const cond = (o?.status?.conditions ?? []).find((c: { type: string }) => c.type === 'NetworkUnavailable');
      return cond ? o! : undefined;
    }, 60_000);
    const ann = obj.metadata?.annotations ?? {};
    t.equal(ann['weft.io/public-ip'], node.underlayIP, `${node.name}: public IP annotation`);
    t.equal(ann['weft.io/public-ipv6'], node.underlayIPv6, `${node.name}: public IPv6 annotation`);
    t.equal(ann['weft.io/backend-type'], 'host-gw', `${node.name}: backend type annotation`);
    t.equal(ann['weft.io/kube-subnet-manager'], 'true', `${node.name}: marked as managed by weft`);
    const cond = obj.status.conditions.find((c: { type: string }) => c.type === 'NetworkUnavailable');
    t.match(cond, { status: 'False', reason: 'WeftIsUp' }, `${node.name}: NetworkUnavailable=False`);
    t.match(obj.status.conditions.find((c: { type: string }) => c.type === 'Ready'), { status: 'True' }, `${node.name}: the kubelet's condition is kept`);
  }

  // Every node routes to both peers' podCIDRs via their underlay address.
  const weftRoutes = async (ref: string): Promise<string> =>
    (await lab.exec(ref, ['ip', '-4', 'route', 'show', 'proto', String(WEFT_ROUTE_PROTO)])).stdout;
  for (const node of lab.nodes) {
    const want = lab.nodes.filter((p) => p !== node).map((p) => `${kubePodCidrOf(p.index)} via ${p.underlayIP}`);
    const routes = await until(`${node.name}'s routes to its peers`, async () => {
      const text = await weftRoutes(node.name);
      return want.every((w) => text.includes(w)) ? text : undefined;
    }, 60_000);
    t.equal(routes.trim().split('\n').length, 2, `${node.name}: one route per peer: ${want.join(', ')}`);
  }

  // Pods through the weft CNI plugin, then every pod pair.
  for (const node of lab.nodes) for (let k = 0; k < 2; k++) await lab.addPod(node);
  for (const pod of lab.pods) {
    const node = lab.node(pod.node);
    t.ok(pod.ip.startsWith(kubePodCidrOf(node.index).replace(/0\/24$/, '')), `${pod.name} ${pod.ip} is in ${kubePodCidrOf(node.index)}`);
  }
  const matrices = await lab.pingMatrices();
  t.same(matrices.map((m) => [m.family, m.rows.filter((r) => r.ok).length]), [[4, 30], [6, 30]], '6 pods: all 30 ordered pairs answer in IPv4 and in IPv6');

  // What the agents asked of the API server: only what the ClusterRole grants.
  const allowed = new Set(KUBE_API_CALLS.map((c) => `${c.verb} ${c.resource}`));
  const calls = await api.calls();
  const made = [...new Set(calls.map((c) => `${c.verb} ${c.resource}`))].sort();
  t.same(made.filter((c) => !allowed.has(c)), [], `every call is in KUBE_API_CALLS (made: ${made.join(', ')})`);
  t.ok(made.includes('watch nodes') && made.includes('patch nodes/status'), 'the agents watch nodes and patch the status');
  t.same(await api.unexpected(), [], 'no request to an endpoint the agents should not use');

  // A node deleted from the API: its route goes away on the others.
  const gone = lab.node('n3');
  const goneCidr = kubePodCidrOf(gone.index);
  const deletedAt = Date.now();
  await api.deleteNode(gone.ns);
  for (const name of ['n1', 'n2']) {
    await until(`${name} to drop the route to ${goneCidr}`, async () => ((await weftRoutes(name)).includes(goneCidr) ? undefined : true), 30_000);
    t.notOk((await weftRoutes(name)).includes(goneCidr), `${name}: route to ${goneCidr} removed`);
  }
  t.comment(`routes to the deleted node removed ${Date.now() - deletedAt} ms after the delete`);
  for (const name of ['n1', 'n2']) {
    const other = name === 'n1' ? 'n2' : 'n1';
    t.match(await weftRoutes(name), kubePodCidrOf(lab.node(other).index), `${name}: the route to ${other} stays`);
  }
  const remaining = lab.pods.filter((p) => p.node !== 'n3');
  const after = await lab.pingMatrix({ pods: remaining });
  t.ok(after.ok, `pods on the remaining nodes still reach each other (${after.rows.filter((r) => r.ok).length}/${after.rows.length})`);
  const n3pod = lab.podsOf('n3')[0]!;
  t.notOk(await pingOnce(lab.podsOf('n1')[0]!.ns, n3pod.ip), `n1's pods no longer reach ${n3pod.name}`);
  t.comment(`the agent on the deleted node is ${lab.agentRunning(gone) ? 'still running' : 'gone'}; last log: ${(await tailOf(lab.agentLogFile(gone))).slice(0, 300)}`);
});
