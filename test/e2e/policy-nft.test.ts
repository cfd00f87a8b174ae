// Compiled NetworkPolicy in weft's nftables table against a real kernel, in
// scratch namespaces: the table applies in one transaction and reads back
// with the same shape (so the 10 s check leaves it alone), a deleted set
// element, map element or rule is noticed and restored, traffic between two
// routed pod namespaces is filtered in both directions, and the figures for
// 1000 pods and 200 policies. Needs root.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { performance } from 'node:perf_hooks';
import t from 'tap';
import { pino } from 'pino';
import { NftTable } from '../../src/dataplane/nft.js';
import { compilePolicies } from '../../src/policy/compile.js';
import type { NamespaceInfo, NetworkPolicyObject, PodInfo, PolicyWorld } from '../../src/policy/types.js';
import { removeNamespaces, sh } from './support/scratch-ns.js';

const PREFIX = 'pc-';
const NODE = 'pc-node';
const POD_A = 'pc-pa';
const POD_B = 'pc-pb';
const SCALE = 'pc-scale';

const nft = (ns: string, ...args: string[]) => spawnSync('ip', ['netns', 'exec', ns, 'nft', ...args], { encoding: 'utf8' });
const logger = pino({ level: process.env.WDP_LOG ?? 'silent' });

/** The handle of the first rule in `chain` containing `text`. */
function ruleHandle(ns: string, chain: string, text: string): string {
  const line = nft(ns, '-a', 'list', 'chain', 'inet', 'weft', chain).stdout.split('\n').find((l) => l.includes(text));
  const handle = /# handle (\d+)/.exec(line ?? '')?.[1];
  if (!handle) throw new Error(`no rule with ${text} in ${chain}`);
  return handle;
}

/** Opens a TCP connection from `ns` to host:port; true when the listener answered. */
function connects(ns: string, host: string, port: number): boolean {
  const r = spawnSync('ip', ['netns', 'exec', ns, 'ncat', '-w', '1', '--recv-only', host, String(port)], { encoding: 'utf8', timeout: 5000 });
  return r.stdout.includes('hello');
}

const pod = (namespace: string, name: string, ips: string[], nodeName: string, labels: Record<string, string>, ports: PodInfo['ports'] = []): PodInfo =>
  ({ namespace, name, ips, nodeName, labels, ports });

if (process.getuid?.() !== 0) {
  t.fail('this test needs root (network namespaces); run it as root');
} else {
  removeNamespaces(PREFIX);
  const children: ChildProcess[] = [];
  t.teardown(() => {
    for (const c of children) c.kill();
    removeNamespaces(PREFIX);
  });

  // Two routed pods behind a node namespace, as host-gw wires them.
  sh('ip', ['netns', 'add', NODE]);
  sh('ip', ['-n', NODE, 'link', 'set', 'lo', 'up']);
  for (const [ns, dev, net] of [[POD_A, 'to-pa', '1'], [POD_B, 'to-pb', '2']] as const) {
    sh('ip', ['netns', 'add', ns]);
    sh('ip', ['-n', NODE, 'link', 'add', dev, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns]);
    sh('ip', ['-n', NODE, 'addr', 'add', `10.77.${net}.1/24`, 'dev', dev]);
    sh('ip', ['-n', NODE, 'link', 'set', dev, 'up']);
    sh('ip', ['-n', ns, 'addr', 'add', `10.77.${net}.2/24`, 'dev', 'eth0']);
    sh('ip', ['-n', ns, 'link', 'set', 'eth0', 'up']);
    sh('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
    sh('ip', ['-n', ns, 'route', 'add', 'default', 'via', `10.77.${net}.1`]);
  }
  sh('ip', ['netns', 'exec', NODE, 'sysctl', '-qw', 'net.ipv4.ip_forward=1']);

  const namespaces: NamespaceInfo[] = [{ name: 'x', labels: { ns: 'x' } }, { name: 'y', labels: { ns: 'y' } }];
  const pods = [
    pod('x', 'a', ['10.77.1.2', '2001:db8:77:1::2'], 'n1', { pod: 'a' }),
    pod('x', 'b', ['10.77.2.2', '2001:db8:77:2::2'], 'n1', { pod: 'b' }, [{ name: 'web', containerPort: 80, protocol: 'TCP' }]),
    pod('y', 'c', ['10.77.3.2', '2001:db8:77:3::2'], 'n2', { pod: 'c' }),
  ];
  const policies: NetworkPolicyObject[] = [
    // b takes its named port from a and from 203.0.113.0/24 but its upper half.
    { namespace: 'x', name: 'b-in', spec: { podSelector: { matchLabels: { pod: 'b' } }, ingress: [{ from: [{ podSelector: { matchLabels: { pod: 'a' } } }, { ipBlock: { cidr: '203.0.113.0/24', except: ['203.0.113.128/25'] } }], ports: [{ port: 'web' }] }] } },
    // a may open connections to b on 80-81 only (so its replies from port 80 to b pass by conntrack alone),
    // DNS anywhere, and HTTPS outside the cluster (intervals reaching the ends of both address spaces).
    { namespace: 'x', name: 'a-out', spec: { podSelector: { matchLabels: { pod: 'a' } }, policyTypes: ['Egress'], egress: [
      { to: [{ podSelector: { matchLabels: { pod: 'b' } } }], ports: [{ port: 80, endPort: 81 }] },
      { ports: [{ port: 53, protocol: 'UDP' }, { port: 53 }] },
      { to: [{ ipBlock: { cidr: '0.0.0.0/0', except: ['10.0.0.0/8'] } }, { ipBlock: { cidr: '::/0', except: ['2001:db8::/32'] } }], ports: [{ port: 443 }] },
    ] } },
  ];
  const world: PolicyWorld = { pods, namespaces, policies, resourceVersion: '1' };
  const compiled = compilePolicies(world, { nodeName: 'n1', families: [4, 6] });
  const table = new NftTable({ logger, netns: NODE });
  t.teardown(() => table.remove());

  t.test('a compiled policy applies in one transaction and reads back with the same shape', async (t) => {
    t.same(compiled.problems, []);
    // Beside the rest of the table, as the agent writes it.
    const rules = { vxlanPort: 8472, allowedPeers: ['192.0.2.2', '2001:db8::2'], forwardNetworks: ['10.77.0.0/16'], masquerade: [{ network: '10.77.0.0/16', podSubnet: '10.77.0.0/16' }], policy: compiled.nft };
    t.same(await table.apply(rules), { written: true });
    t.same(await table.check(), { restored: false }, 'the listing has the shape that was written');
  });

  t.test('a deleted set element, map element or rule is noticed and restored', async (t) => {
    const set = compiled.nft.sets.find((s) => s.elements.includes('203.0.113.0/25'))!;
    const podChain = compiled.nft.chains.find((c) => !c.head && c.rules.some((r) => r.includes('udp th dport 53')))!;
    const edits = {
      setElement: () => nft(NODE, 'delete', 'element', 'inet', 'weft', set.name, '{ 203.0.113.0/25 }'),
      mapElement: () => nft(NODE, 'delete', 'element', 'inet', 'weft', 'ingress6', '{ 2001:db8:77:2::2 }'),
      podRule: () => nft(NODE, 'delete', 'rule', 'inet', 'weft', podChain.name, 'handle', ruleHandle(NODE, podChain.name, 'udp')),
      baseRule: () => nft(NODE, 'delete', 'rule', 'inet', 'weft', 'policy_egress', 'handle', ruleHandle(NODE, 'policy_egress', 'ip6 saddr vmap')),
    };
    const outcome: Record<string, unknown> = {};
    for (const [name, edit] of Object.entries(edits)) {
      const done = edit();
      outcome[name] = [done.status === 0 ? 'edited' : done.stderr.trim(), await table.check(), await table.check()];
    }
    const again = [{ restored: true }, { restored: false }];
    t.same(outcome, { setElement: ['edited', ...again], mapElement: ['edited', ...again], podRule: ['edited', ...again], baseRule: ['edited', ...again] });
  });

  t.test('traffic: egress allowed still meets the destination ingress chain; replies pass by conntrack', async (t) => {
    // A listener on two ports in b and one in a, each greeting whoever connects.
    for (const [ns, port] of [[POD_B, 80], [POD_B, 81], [POD_A, 80]] as const) {
      const child = spawn('ip', ['netns', 'exec', ns, 'socat', `TCP-LISTEN:${port},fork,reuseaddr`, 'SYSTEM:echo hello'], { stdio: 'ignore' });
      children.push(child);
    }
    await new Promise((r) => setTimeout(r, 300));
    t.same({
      aToBNamedPort: connects(POD_A, '10.77.2.2', 80),
      aToBOtherPort: connects(POD_A, '10.77.2.2', 81),
      bToA: connects(POD_B, '10.77.1.2', 80),
      nodeToBOtherPort: connects(NODE, '10.77.2.2', 81),
      aPingsB: spawnSync('ip', ['netns', 'exec', POD_A, 'ping', '-c1', '-W1', '10.77.2.2']).status === 0,
      bPingsA: spawnSync('ip', ['netns', 'exec', POD_B, 'ping', '-c1', '-W1', '10.77.1.2']).status === 0,
    }, { aToBNamedPort: true, aToBOtherPort: false, bToA: true, nodeToBOtherPort: true, aPingsB: false, bPingsA: true },
    'a to b: 80 passes both chains, 81 passes a egress but not b ingress, ICMP is no port a rule names; b to a (neither isolated that way): TCP, whose replies from a pass as established, and ICMP; the node itself is never filtered');
  });

  t.test('scale: 1000 pods (100 on this node), 200 policies', async (t) => {
    const scaleWorld = scaleCase();
    let start = performance.now();
    const big = compilePolicies(scaleWorld, { nodeName: 'n0', families: [4, 6] });
    const compileMs = performance.now() - start;
    sh('ip', ['netns', 'add', SCALE]);
    const scaleTable = new NftTable({ logger, netns: SCALE });
    t.teardown(() => scaleTable.remove());
    start = performance.now();
    await scaleTable.apply({ allowedPeers: [], policy: big.nft });
    const applyMs = performance.now() - start;
    start = performance.now();
    const check = await scaleTable.check();
    const checkMs = performance.now() - start;
    const text = nft(SCALE, 'list', 'table', 'inet', 'weft').stdout;
    t.comment(`compile ${compileMs.toFixed(0)} ms; nft -f ${applyMs.toFixed(0)} ms (${(text.length / 1024).toFixed(0)} KiB listed); shape check ${checkMs.toFixed(0)} ms`);
    t.comment(`stats ${JSON.stringify(big.stats)}`);
    t.same({ problems: big.problems, isolatedPods: big.stats.isolatedPods, check }, { problems: [], isolatedPods: 100, check: { restored: false } });
  });
}

/**
 * Ten namespaces of 100 pods each over ten nodes (this node: n0), labelled by
 * app, tier and team, dual stack; 20 policies per namespace with selectors
 * of every kind, named ports, endPort ranges, ipBlocks with except and egress.
 */
function scaleCase(): PolicyWorld {
  const tiers = ['web', 'api', 'db'];
  const namespaces: NamespaceInfo[] = Array.from({ length: 10 }, (_, n) => ({ name: `ns${n}`, labels: { team: `t${n % 3}`, 'kubernetes.io/metadata.name': `ns${n}` } }));
  const pods: PodInfo[] = Array.from({ length: 1000 }, (_, k) => pod(
    `ns${Math.floor(k / 100)}`, `pod${k}`,
    [`10.244.${Math.floor(k / 50)}.${(k % 50) * 2 + 2}`, `2001:db8:244::${(k * 2 + 2).toString(16)}`],
    `n${k % 10}`,
    { app: `app${k % 25}`, tier: tiers[k % 3]! },
    [{ name: 'http', containerPort: 8080 + (k % 4), protocol: 'TCP' }, { name: 'metrics', containerPort: 9100, protocol: 'TCP' }],
  ));
  const policies: NetworkPolicyObject[] = [];
  for (let n = 0; n < 10; n++) {
    for (let j = 0; j < 20; j++) {
      const ingress = [
        {
          from: [
            { podSelector: { matchLabels: { tier: tiers[j % 3] } } },
            { namespaceSelector: { matchLabels: { team: `t${j % 3}` } }, podSelector: { matchExpressions: [{ key: 'app', operator: 'In', values: [`app${j}`, `app${j + 1}`] }] } },
          ],
          ports: [{ port: 'http' }, { port: 9000, endPort: 9100 }],
        },
        { from: [{ ipBlock: { cidr: `192.0.2.0/24`, except: [`192.0.2.${(j % 8) * 32}/27`] } }], ports: [{ port: 443 }] },
      ];
      const egress = j % 2 ? [
        { to: [{ namespaceSelector: {}, podSelector: { matchLabels: { tier: 'db' } } }], ports: [{ port: 5432 }, { port: 'metrics' }] },
        { ports: [{ port: 53, protocol: 'UDP' }, { port: 53 }] },
      ] : [];
      // The first policy of each namespace covers all its pods, as a namespace's baseline would.
      const podSelector = j === 0 ? {} : { matchLabels: { app: `app${(j + n) % 25}` } };
      policies.push({ namespace: `ns${n}`, name: `pol${j}`, spec: { podSelector, ingress, ...(egress.length ? { egress } : {}) } });
    }
  }
  return { pods, namespaces, policies, resourceVersion: '1' };
}
