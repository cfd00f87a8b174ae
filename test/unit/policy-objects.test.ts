// Pods, namespaces and NetworkPolicies from API JSON into what policy reads,
// with values no validating API server would store: a wrong-typed value is
// left out, the object is kept when it still says enough, nothing throws.
import t from 'tap';
import { namespaceInfoOf, podInfoOf, policyObjectOf } from '../../src/policy/objects.js';
import { namespaceObject, podObject, type PodSpec } from '../fixtures/kube/pod-object.js';

const NOW = '2026-01-01T00:00:00Z';
const pod = (over: Partial<PodSpec> = {}): Record<string, any> =>
  podObject({ namespace: 'ka-ns', name: 'web-1', labels: { app: 'web' }, nodeName: 'ka-n1', ips: ['10.244.1.5'], ...over }, 'uid-1', NOW);

t.test('a realistic Running pod: labels, node, addresses and ports as declared', async (t) => {
  const info = podInfoOf(
    pod({
      ips: ['10.244.1.5', '2001:db8:0:0::5'],
      ports: [{ name: 'http', containerPort: 8080 }, { containerPort: 53, protocol: 'UDP' }, { name: 'sctp', containerPort: 9, protocol: 'SCTP' }],
    }),
  );
  t.same(info, {
    namespace: 'ka-ns',
    name: 'web-1',
    labels: { app: 'web' },
    nodeName: 'ka-n1',
    ips: ['10.244.1.5', '2001:db8::5'],
    ports: [
      { name: 'http', containerPort: 8080, protocol: 'TCP' },
      { containerPort: 53, protocol: 'UDP' },
      { name: 'sctp', containerPort: 9, protocol: 'SCTP' },
    ],
  });
});

t.test('pods policy leaves out', async (t) => {
  const hostNetwork = pod({ hostNetwork: true });
  const noAddress = pod({ ips: [] });
  const failed = pod({ phase: 'Failed' });
  const succeeded = pod({ phase: 'Succeeded' });
  const noName = pod();
  delete noName.metadata.name;
  const numericNamespace = pod();
  numericNamespace.metadata.namespace = 7;
  const notAnObject = [1, 2];
  const left = [hostNetwork, noAddress, failed, succeeded, noName, numericNamespace, notAnObject, null, 'pod'].map((o) => podInfoOf(o));
  t.same(left, Array(9).fill(undefined), 'host network, no address, Failed, Succeeded, no name, non-string namespace, not an object: all undefined');
});

t.test('pods policy keeps: Pending with an address, terminating', async (t) => {
  const terminating = pod();
  terminating.metadata.deletionTimestamp = NOW;
  const kept = [pod({ phase: 'Pending' }), terminating].map((o) => podInfoOf(o)?.name);
  t.same(kept, ['web-1', 'web-1']);
});

t.test('addresses: valid ones only, canonical, the first of each family', async (t) => {
  const withIps = (podIPs: unknown, podIP?: unknown): string[] | undefined => {
    const p = pod();
    p.status.podIPs = podIPs;
    p.status.podIP = podIP;
    return podInfoOf(p)?.ips as string[] | undefined;
  };
  t.same(
    [
      withIps([{ ip: '10.1' }, { ip: '010.244.1.5' }, { ip: 'fe80::1%eth0' }, { ip: 12 }, 'x', { ip: '10.244.1.6' }]),
      withIps([{ ip: '2001:DB8::0:7' }, { ip: '10.244.1.7' }, { ip: '10.244.1.8' }, { ip: '2001:db8::9' }]),
      withIps(undefined, '10.244.1.9'),
      withIps('10.244.1.10', '10.244.1.10'),
      withIps([{ ip: 'not-an-ip' }], '10.244.1.11'),
    ],
    [['10.244.1.6'], ['2001:db8::7', '10.244.1.7'], ['10.244.1.9'], ['10.244.1.10'], undefined],
    'bad forms dropped; IPv6 in canonical text; podIP used only when podIPs is absent or not a list',
  );
});

t.test('labels: string values only; a __proto__ key stays a plain label', async (t) => {
  const p = pod();
  p.metadata.labels = JSON.parse('{"app":"web","n":1,"b":true,"o":{"x":"y"},"nil":null,"__proto__":"p"}');
  const labels = podInfoOf(p)!.labels;
  t.same({ keys: Object.keys(labels), proto: Object.getPrototypeOf(labels) === Object.prototype }, { keys: ['app', '__proto__'], proto: true });
  const notAMap = pod();
  notAMap.metadata.labels = ['app=web'];
  t.same(podInfoOf(notAMap)!.labels, {}, 'labels that are not a map: none');
});

t.test('ports: invalid entries dropped, protocol TCP by default', async (t) => {
  const p = pod();
  p.spec.containers = [
    {
      name: 'a',
      ports: [
        { containerPort: 80 },
        { containerPort: 0 },
        { containerPort: 65536 },
        { containerPort: '80' },
        { containerPort: 8.5 },
        { containerPort: 81, protocol: 'ICMP' },
        { containerPort: 82, protocol: 'tcp' },
        { containerPort: 83, name: 5 },
        { containerPort: 84, name: '' },
        null,
        'http',
      ],
    },
    { name: 'b', ports: { containerPort: 90 } },
    { name: 'c', ports: [{ containerPort: 91, name: 'metrics', protocol: 'UDP' }] },
    'sidecar',
  ];
  t.same(podInfoOf(p)!.ports, [
    { containerPort: 80, protocol: 'TCP' },
    { name: 'metrics', containerPort: 91, protocol: 'UDP' },
  ]);
});

t.test('namespaces: name and string labels', async (t) => {
  const ns = namespaceObject('ka-ns', { team: 'a' }, 'uid-ns', NOW);
  ns.metadata.labels.bad = 3;
  const noName = namespaceObject('x', {}, 'uid-x', NOW);
  noName.metadata.name = '';
  t.same([namespaceInfoOf(ns), namespaceInfoOf(noName), namespaceInfoOf({})], [
    { name: 'ka-ns', labels: { 'kubernetes.io/metadata.name': 'ka-ns', team: 'a' } },
    undefined,
    undefined,
  ]);
});

t.test('policies: metadata checked, the spec passed exactly as sent', async (t) => {
  const spec = { podSelector: { matchLabels: { app: 7 } }, ingress: [{ from: [{ ipBlock: { cidr: '192.0.2.0/24', except: ['192.0.2.1/32'] } }] }], policyTypes: 'Ingress' };
  const obj = { apiVersion: 'networking.k8s.io/v1', kind: 'NetworkPolicy', metadata: { namespace: 'ka-ns', name: 'deny' }, spec };
  const noNamespace = { metadata: { name: 'x' }, spec };
  const parsed = policyObjectOf(obj);
  t.same([parsed, policyObjectOf(noNamespace), policyObjectOf(undefined)], [{ namespace: 'ka-ns', name: 'deny', spec }, undefined, undefined]);
  t.equal(parsed?.spec, spec, 'the very spec object, unchecked');
});
