// The NetworkPolicy matrix's probes, checked without any policy engine: on a
// plain lab (etcd mode) every TCP, UDP and SCTP probe on ports 80 and 81
// between the nine pods passes, and drop rules written by hand with nft on
// one node are seen as exactly the probes they deny. This is what makes the
// kube-mode matrix (netpol.test.ts) trustworthy when it reports a denial.
import t from 'tap';
import { freshLab } from './support/lab-fixture.js';
import { NetpolWorld } from './support/netpol-cluster.js';
import { MATRIX_PORTS, Reachability, mismatches, renderGrids } from './support/netpol-truth.js';

t.test('probes see every pair allowed, then exactly the pairs a hand-written nft drop denies', async (t) => {
  const lab = await freshLab(t, { name: 'np0', nodes: 3, podsPerNode: 0 });
  const world = await NetpolWorld.create(lab);
  t.teardown(() => world.close());

  const open = new Reachability(world.podIds(), MATRIX_PORTS);
  const at = Date.now();
  const first = await world.probe(open);
  t.comment(`one round of ${open.probes().length} probes: ${Date.now() - at} ms`);
  t.same(mismatches(open, first.observed), [], `no policy: all ${open.probes().length} probes pass (${first.reprobed} re-probed)\n${renderGrids(open, first.observed)}`);

  // On x/a's node: drop what goes to x/a on TCP 80, UDP 81 and SCTP 81, whatever the source.
  const xa = world.pod('x/a');
  const rules = [
    'table inet npdev {',
    ' chain forward {',
    '  type filter hook forward priority 0; policy accept;',
    `  ip daddr ${xa.ip} tcp dport 80 drop`,
    `  ip daddr ${xa.ip} udp dport 81 drop`,
    `  ip daddr ${xa.ip} sctp dport 81 drop`,
    ' }',
    '}',
  ].join('\n');
  await lab.exec(xa.node, ['nft', '-f', '-'], { input: rules + '\n' });
  const dropped = new Reachability(world.podIds(), MATRIX_PORTS).deny('*', 'x/a', ['TCP/80', 'UDP/81', 'SCTP/81']);
  const second = await world.probe(dropped);
  t.same(mismatches(dropped, second.observed), [], `hand-written drops on ${xa.node.name}: exactly TCP/80, UDP/81 and SCTP/81 to x/a fail (${second.reprobed} re-probed)\n${renderGrids(dropped, second.observed)}`);
});
