// deploy/: every kustomization rendered (by test/fixtures/kube/kustomize.ts),
// every object validated against the Kubernetes schemas (kubernetes-models)
// and against the API types for unknown fields (@kubernetes/client-node),
// the ConfigMap against weft's own validators, the RBAC rules against the
// API calls the code makes, and the DaemonSet against the demands.
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as k8s from '@kubernetes/client-node';
import { DaemonSet } from 'kubernetes-models/apps/v1/DaemonSet';
import { ClusterRole } from 'kubernetes-models/rbac.authorization.k8s.io/v1/ClusterRole';
import { ClusterRoleBinding } from 'kubernetes-models/rbac.authorization.k8s.io/v1/ClusterRoleBinding';
import { ConfigMap } from 'kubernetes-models/v1/ConfigMap';
import { Namespace } from 'kubernetes-models/v1/Namespace';
import { ServiceAccount } from 'kubernetes-models/v1/ServiceAccount';
import t from 'tap';
import { checkBackendOptions } from '../../backends/registry.js';
import { parseWeftNetConf, SUPPORTED_VERSIONS } from '../../src/cni/plugin.js';
import { parseNetConf } from '../../src/config/parse.js';
import { KUBE_API_CALLS } from '../../src/subnet/kube/api.js';
import { KUBE_NET_CONF_FILE } from '../../src/subnet/kube/manager.js';
import { renderKustomization, type K8sObject } from '../fixtures/kube/kustomize.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const DEPLOY = join(ROOT, 'deploy');
const BACKENDS = ['host-gw', 'vxlan', 'udp', 'bgp'] as const;
const KUBE_DIRS = ['base', ...BACKENDS.map((b) => `overlays/${b}`)];
const ALL_DIRS = ['.', ...KUBE_DIRS, 'overlays/etcd', 'uninstall'];
/** Host paths the agent may mount (the list; /lib/modules read-only if ever needed). */
const ALLOWED_HOST_PATHS = new Set(['/run/weft', '/etc/cni/net.d', '/opt/cni/bin', '/lib/modules', '/var/lib/cni/weft-ipam', '/var/run/netns']);

const MODELS: Record<string, { new (data: any): { validate(): void } }> = {
  'v1/Namespace': Namespace,
  'v1/ServiceAccount': ServiceAccount,
  'v1/ConfigMap': ConfigMap,
  'apps/v1/DaemonSet': DaemonSet,
  'rbac.authorization.k8s.io/v1/ClusterRole': ClusterRole,
  'rbac.authorization.k8s.io/v1/ClusterRoleBinding': ClusterRoleBinding,
};

const rendered = new Map<string, K8sObject[]>();
for (const dir of ALL_DIRS) rendered.set(dir, renderKustomization(join(DEPLOY, dir)));

function find(objects: K8sObject[], kind: string, name?: string): K8sObject | undefined {
  return objects.find((o) => o.kind === kind && (name === undefined || o.metadata?.name === name));
}

function agentOf(objects: K8sObject[]): { ds: K8sObject; pod: K8sObject; agent: K8sObject } {
  const ds = find(objects, 'DaemonSet', 'weft')!;
  const pod = ds.spec.template.spec;
  return { ds, pod, agent: pod.containers.find((c: K8sObject) => c.name === 'weft') };
}

/**
 * Fields the Kubernetes API types do not have, found by walking the object
 * along the client library's type map (kubernetes-models' schemas allow any
 * extra field, so a misspelt key would otherwise pass).
 */
function unknownFields(value: unknown, type: string, path: string): string[] {
  if (value === null || value === undefined) return [];
  const array = /^Array<(.+)>$/.exec(type);
  if (array) return Array.isArray(value) ? value.flatMap((v, i) => unknownFields(v, array[1]!, `${path}[${i}]`)) : [`${path}: not a list`];
  const map = /^\{ \[key: string\]: (.+); \}$/.exec(type);
  if (map) return typeof value === 'object' ? Object.entries(value).flatMap(([k, v]) => unknownFields(v, map[1]!, `${path}.${k}`)) : [`${path}: not a map`];
  if (type === 'string') return typeof value === 'string' ? [] : [`${path}: not a string`];
  if (type === 'number') return typeof value === 'number' ? [] : [`${path}: not a number`];
  if (type === 'boolean') return typeof value === 'boolean' ? [] : [`${path}: not a boolean`];
  if (type === 'IntOrString') return typeof value === 'string' || typeof value === 'number' ? [] : [`${path}: not an int or string`];
  if (type === 'any' || type === 'object' || type === 'Date') return [];
  const model = (k8s as unknown as Record<string, { getAttributeTypeMap?: () => { baseName: string; type: string }[] }>)[type];
  if (!model?.getAttributeTypeMap) return [`${path}: unknown type ${type}`];
  if (typeof value !== 'object' || Array.isArray(value)) return [`${path}: not an object`];
  const attrs = new Map(model.getAttributeTypeMap().map((a) => [a.baseName, a.type]));
  return Object.entries(value).flatMap(([k, v]) =>
    attrs.has(k) ? unknownFields(v, attrs.get(k)!, `${path}.${k}`) : [`${path}.${k}: no such field in ${type}`],
  );
}

function clientType(o: K8sObject): string {
  const version = String(o.apiVersion).split('/').pop()!;
  return `V${version.slice(1)}${o.kind}`;
}

t.test('every kustomization renders to valid Kubernetes objects', async (t) => {
  for (const [dir, objects] of rendered) {
    t.ok(objects.length > 0, `${dir}: renders objects`);
    for (const o of objects) {
      const id = `${dir}: ${o.kind} ${o.metadata?.name}`;
      const Model = MODELS[`${o.apiVersion}/${o.kind}`];
      if (!Model) {
        t.fail(`${id}: no schema model for ${o.apiVersion} ${o.kind}`);
        continue;
      }
      t.doesNotThrow(() => new Model(o).validate(), `${id}: matches the ${o.kind} schema`);
      t.same(unknownFields(o, clientType(o), o.kind), [], `${id}: no unknown fields`);
      t.match(o.metadata?.labels?.['app.kubernetes.io/name'] ?? (o.kind === 'ConfigMap' || o.kind === 'ServiceAccount' ? 'weft' : ''), /^weft/, `${id}: labelled`);
    }
  }
  t.same(rendered.get('.'), rendered.get('overlays/vxlan'), '`kubectl apply -k deploy/` is the vxlan overlay');
});

t.test('the strict field walk catches what the schema lets through', async (t) => {
  const ds = structuredClone(agentOf(rendered.get('base')!).ds);
  ds.spec.template.spec.containers[0].securityContext.capabilitie = { add: ['SYS_ADMIN'] };
  t.doesNotThrow(() => new DaemonSet(ds as any).validate(), 'kubernetes-models accepts the typo');
  t.match(unknownFields(ds, 'V1DaemonSet', 'DaemonSet'), [/securityContext\.capabilitie: no such field/], 'the walk does not');
});

t.test('namespace, service account and RBAC', async (t) => {
  for (const dir of KUBE_DIRS) {
    const objects = rendered.get(dir)!;
    const ns = find(objects, 'Namespace', 'weft-system');
    t.match(ns?.metadata.labels, { 'pod-security.kubernetes.io/enforce': 'privileged' }, `${dir}: Pod Security privileged`);
    const namespaced = objects.filter((o) => !['Namespace', 'ClusterRole', 'ClusterRoleBinding'].includes(o.kind));
    t.ok(namespaced.every((o) => o.metadata.namespace === 'weft-system'), `${dir}: everything in weft-system`);

    const role = find(objects, 'ClusterRole', 'weft')!;
    const granted = role.rules.flatMap((r: K8sObject) =>
      r.apiGroups.flatMap((g: string) => r.resources.flatMap((res: string) => r.verbs.map((v: string) => `${g}|${res}|${v}`))),
    );
    t.notOk(role.rules.some((r: K8sObject) => r.resourceNames || r.nonResourceURLs), `${dir}: plain resource rules only`);
    t.notOk(granted.some((g: string) => g.includes('*')), `${dir}: no wildcards`);
    t.same(
      [...new Set(granted)].sort(),
      KUBE_API_CALLS.map((c) => `${c.apiGroup}|${c.resource}|${c.verb}`).sort(),
      `${dir}: the ClusterRole grants exactly the calls in KUBE_API_CALLS`,
    );
    const binding = find(objects, 'ClusterRoleBinding', 'weft')!;
    t.same(binding.roleRef, { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'weft' });
    t.same(binding.subjects, [{ kind: 'ServiceAccount', name: 'weft', namespace: 'weft-system' }]);
    t.ok(find(objects, 'ServiceAccount', 'weft'), `${dir}: the bound service account exists`);
    t.equal(agentOf(objects).pod.serviceAccountName, 'weft', `${dir}: the agent runs as it`);
  }
});

t.test('the ConfigMap: net-conf.json passes weft\'s validator, the CNI conflist the plugin\'s', async (t) => {
  const networks = new Set<string>();
  for (const dir of KUBE_DIRS) {
    const cm = find(rendered.get(dir)!, 'ConfigMap', 'weft-config')!;
    const conf = checkBackendOptions(parseNetConf(cm.data['net-conf.json']));
    networks.add(conf.network.toString());
    const expected = dir === 'base' ? 'vxlan' : dir.split('/')[1];
    t.equal(conf.backend.type, expected, `${dir}: backend ${expected}`);

    const list = JSON.parse(cm.data['cni-conf.json']);
    t.equal(list.name, 'weft');
    t.ok((SUPPORTED_VERSIONS as readonly string[]).includes(list.cniVersion), `${dir}: conflist cniVersion ${list.cniVersion} is one the plugin speaks`);
    t.equal(list.plugins[0].type, 'weft', 'weft is the first plugin');
    const plugin = parseWeftNetConf({ cniVersion: list.cniVersion, name: list.name, ...list.plugins[0] });
    const { agent } = agentOf(rendered.get(dir)!);
    t.ok(agent.args.includes(`--subnet-file=${plugin.subnetFile}`), `${dir}: the plugin reads the subnet.env the agent writes`);
    t.ok(agent.volumeMounts.some((m: K8sObject) => plugin.subnetFile.startsWith(`${m.mountPath}/`) && m.name === 'run-weft'), 'on the host path the agent mounts');
  }
  t.equal(networks.size, 1, 'every overlay uses the same Network');
  const etcdCm = find(rendered.get('overlays/etcd')!, 'ConfigMap', 'weft-config')!;
  t.notOk('net-conf.json' in etcdCm.data, 'etcd mode: net-conf.json lives in etcd, not here');
  t.ok(etcdCm.data['cni-conf.json'], 'etcd mode keeps the CNI conflist');
});

t.test('the agent DaemonSet', async (t) => {
  const help = spawnSync(process.execPath, [join(ROOT, 'dist/src/cli/main.js'), 'agent', '--help'], { encoding: 'utf8' });
  t.equal(help.status, 0, 'weft agent --help runs (is dist built?)');
  for (const dir of [...KUBE_DIRS, 'overlays/etcd']) {
    const objects = rendered.get(dir)!;
    const { ds, pod, agent } = agentOf(objects);
    const at = (what: string) => `${dir}: ${what}`;
    t.equal(pod.hostNetwork, true, at('hostNetwork'));
    t.equal(pod.priorityClassName, 'system-node-critical', at('system-node-critical'));
    t.same(pod.tolerations, [{ operator: 'Exists' }], at('tolerates every taint'));
    t.same(pod.nodeSelector, { 'kubernetes.io/os': 'linux' }, at('Linux nodes only'));
    t.same(ds.spec.updateStrategy, { type: 'RollingUpdate', rollingUpdate: { maxUnavailable: 1 } }, at('rolling update, one node at a time'));
    t.same(ds.spec.selector.matchLabels, { 'app.kubernetes.io/name': 'weft' });
    t.match(pod.metadata ?? ds.spec.template.metadata, { labels: ds.spec.selector.matchLabels }, at('the template matches the selector'));

    for (const flag of agent.args.filter((a: string) => a.startsWith('--'))) {
      const name = flag.split('=')[0];
      t.ok(help.stdout.includes(`${name} `) || help.stdout.includes(`${name}/`), at(`${name} is a weft agent flag`));
    }
    t.same(agent.command, ['/usr/local/bin/weft'], at('runs the weft CLI'));
    t.equal(agent.args[0], 'agent');
    const nodeName = agent.env.find((e: K8sObject) => e.name === 'NODE_NAME');
    t.same(nodeName?.valueFrom, { fieldRef: { fieldPath: 'spec.nodeName' } }, at('NODE_NAME from the downward API'));
    t.ok(agent.args.includes('--node-name=$(NODE_NAME)'), at('passed as --node-name'));
    const kube = dir !== 'overlays/etcd';
    t.equal(agent.args.includes('--kube-subnet-mgr'), kube, at(kube ? '--kube-subnet-mgr' : 'no --kube-subnet-mgr in etcd mode'));
    if (kube) {
      t.ok(agent.args.includes(`--net-conf=${KUBE_NET_CONF_FILE}`), at('net-conf from the mounted ConfigMap'));
      const cfgMount = agent.volumeMounts.find((m: K8sObject) => m.name === 'weft-config');
      t.equal(`${cfgMount.mountPath}/net-conf.json`, KUBE_NET_CONF_FILE, at('mounted where the agent reads it'));
      t.equal(cfgMount.subPath, undefined, at('mounted whole (a subPath mount never sees ConfigMap edits)'));
    }

    // Probes on the port --healthz-addr serves.
    const healthz = agent.args.find((a: string) => a.startsWith('--healthz-addr='))?.split(':').pop();
    const port = agent.ports.find((p: K8sObject) => p.name === 'healthz');
    t.equal(String(port?.containerPort), healthz, at('the healthz port is the one --healthz-addr serves'));
    t.match(agent.livenessProbe, { httpGet: { path: '/healthz', port: 'healthz' } }, at('liveness /healthz'));
    t.match(agent.readinessProbe, { httpGet: { path: '/readyz', port: 'healthz' } }, at('readiness /readyz'));

    // Privileges: capabilities, privileged only where the backend needs it.
    const sc = agent.securityContext;
    t.ok(['NET_ADMIN', 'NET_RAW'].every((c) => sc.capabilities.add.includes(c)), at('NET_ADMIN and NET_RAW'));
    t.same(sc.capabilities.drop, ['ALL'], at('nothing else'));
    t.equal(sc.privileged, dir === 'overlays/udp', at(dir === 'overlays/udp' ? 'privileged for /dev/net/tun' : 'not privileged'));
    if (dir === 'overlays/bgp') {
      t.ok(sc.capabilities.add.includes('NET_BIND_SERVICE'), at('BIRD may bind port 179'));
      t.ok(agent.ports.some((p: K8sObject) => p.containerPort === 179), at('BGP port declared'));
    }

    // Volumes: only the allowed host paths, each declared volume used, each mount declared.
    const hostPaths = pod.volumes.filter((v: K8sObject) => v.hostPath).map((v: K8sObject) => v.hostPath.path);
    t.ok(hostPaths.every((p: string) => ALLOWED_HOST_PATHS.has(p)), at(`host paths ${hostPaths.join(', ')} are all allowed`));
    const containers = [...pod.initContainers, ...pod.containers];
    const used = new Set(containers.flatMap((c: K8sObject) => (c.volumeMounts ?? []).map((m: K8sObject) => m.name)));
    const declared = new Set(pod.volumes.map((v: K8sObject) => v.name));
    t.same([...used].sort(), [...declared].sort(), at('every volume mounted, every mount declared'));
    for (const c of containers) {
      t.ok(c.resources?.requests?.cpu && c.resources?.requests?.memory, at(`${c.name} has resource requests`));
      t.equal(c.image, agent.image, at(`${c.name} uses the weft image`));
    }
    const install = pod.initContainers.find((c: K8sObject) => c.name === 'install-cni');
    t.same(install?.command, ['/opt/weft/install-cni.sh'], at('an init container installs the CNI plugin'));
    t.same(
      install.volumeMounts.map((m: K8sObject) => `${m.name}:${m.mountPath}`).sort(),
      ['cni-bin:/host/opt/cni/bin', 'cni-conf:/host/etc/cni/net.d', 'weft-config:/etc/weft'],
      at('into the CNI directories, from the ConfigMap'),
    );
    t.notOk(install.securityContext.privileged, at('the installer is not privileged'));

    if (dir === 'overlays/etcd') {
      t.equal(find(objects, 'ClusterRole'), undefined, at('no ClusterRole: no API calls in etcd mode'));
      t.equal(find(objects, 'ClusterRoleBinding'), undefined);
      t.equal(pod.automountServiceAccountToken, false, at('no service account token'));
      const endpoints = agent.env.find((e: K8sObject) => e.name === 'ETCD_ENDPOINTS');
      t.same(endpoints?.valueFrom, { secretKeyRef: { name: 'weft-etcd', key: 'endpoints' } }, at('endpoints from the Secret'));
      t.ok(agent.args.includes('--etcd-endpoints=$(ETCD_ENDPOINTS)'));
      const tls = pod.volumes.find((v: K8sObject) => v.name === 'etcd-tls');
      t.equal(tls?.secret?.secretName, 'weft-etcd', at('TLS files from the Secret'));
      const mount = agent.volumeMounts.find((m: K8sObject) => m.name === 'etcd-tls').mountPath;
      for (const [flag, key] of [['cafile', 'ca.crt'], ['certfile', 'tls.crt'], ['keyfile', 'tls.key']]) {
        t.ok(agent.args.includes(`--etcd-${flag}=${mount}/${key}`), at(`--etcd-${flag} points into the Secret`));
        t.ok(tls.secret.items.some((i: K8sObject) => i.key === key && i.path === key), at(`the Secret provides ${key}`));
      }
      t.notOk(agent.args.some((a: string) => a.startsWith('--net-conf')), at('net-conf from etcd'));
    }
  }
});

t.test('the uninstall DaemonSet runs the cleanup script on every node', async (t) => {
  const objects = rendered.get('uninstall')!;
  const ds = find(objects, 'DaemonSet', 'weft-cleanup')!;
  const pod = ds.spec.template.spec;
  t.equal(pod.hostNetwork, true, 'in the host network namespace, where the devices are');
  t.same(pod.tolerations, [{ operator: 'Exists' }]);
  t.same(pod.initContainers[0].command, ['/opt/weft/cleanup-node.sh']);
  t.ok(existsSync(join(DEPLOY, 'image/cleanup-node.sh')), 'the script is in the image recipe');
  t.same(find(rendered.get('base')!, 'DaemonSet', 'weft')!.spec.template.spec.initContainers[0].image, pod.initContainers[0].image, 'same image as the agent');
});

t.test('the renderer itself: patches apply as kustomize applies them', async (t) => {
  const base = agentOf(rendered.get('base')!).agent;
  const bgp = agentOf(rendered.get('overlays/bgp')!).agent;
  t.same(bgp.ports.map((p: K8sObject) => p.containerPort).sort(), [10270, 179].sort(), 'container ports merge by containerPort');
  t.same(bgp.volumeMounts, base.volumeMounts, 'untouched lists stay');
  const etcd = agentOf(rendered.get('overlays/etcd')!);
  t.ok(etcd.agent.volumeMounts.some((m: K8sObject) => m.name === 'run-weft') && etcd.agent.volumeMounts.some((m: K8sObject) => m.name === 'etcd-tls'), 'volumeMounts merge by mountPath');
  t.ok(etcd.agent.env.length === 2, 'env merges by name');
  const yaml = readFileSync(join(DEPLOY, 'overlays/etcd/etcd-agent.yaml'), 'utf8');
  t.match(yaml, /defaultMode: 256/, 'file modes in decimal: YAML 1.1 and 1.2 read a leading-0 octal differently');
});
