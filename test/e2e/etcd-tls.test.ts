// etcd over TLS with client certificates, as production runs it: one lab
// whose etcd requires client certificates. The pods reach each other with
// every agent on TLS; five bad inputs given to an extra agent each give one
// line in its log while it stays up and not ready, and fixing the input makes
// it ready; and an agent run with the arguments of deploy/overlays/etcd
// joins the lab with the same certificates.
import t from 'tap';
import { copyFileSync, existsSync, mkdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Lab, LabNode } from '../../src/lab/lab.js';
import { renderKustomization, type K8sObject } from '../fixtures/kube/kustomize.js';
import { freshLab, routesOf, until, waitUntil } from './support/lab-fixture.js';

const DEPLOY = join(resolve(dirname(fileURLToPath(import.meta.url)), '../..'), 'deploy');

/** The agent's log messages (pino JSON lines) written after byte `from`, and any line that looks like a stack frame. */
function logSince(file: string, from: number): { messages: string[]; stackFrames: string[] } {
  const text = existsSync(file) ? readFileSync(file, 'utf8').slice(from) : '';
  const messages: string[] = [];
  const stackFrames: string[] = [];
  for (const line of text.split('\n')) {
    if (/^\s+at /.test(line)) stackFrames.push(line);
    try {
      const rec = JSON.parse(line) as { msg?: string };
      if (rec.msg) messages.push(rec.msg);
    } catch {
      // node's own warnings (e.g. DEP0123 about an IP as TLS server name) are not the agent's lines
    }
  }
  return { messages, stackFrames };
}

function logSize(file: string): number {
  return existsSync(file) ? statSync(file).size : 0;
}

interface BadInput {
  name: string;
  /** Flags for the agent: `etcd` replaces the lab's etcd flags, `args` override some of them. */
  etcd?: (lab: Lab) => string[];
  args?: (lab: Lab, missing: string) => string[];
  line: RegExp;
  /** Fixes the input while the agent runs (else: it is restarted with the lab's good files). */
  fixInPlace?: (lab: Lab, missing: string) => void;
}

const BAD_INPUTS: BadInput[] = [
  {
    name: 'a CA that did not sign etcd\'s certificate',
    args: (lab) => ['--etcd-cafile', lab.etcdTlsFiles!.otherCaFile],
    line: /^cannot read network config: etcd at https:\/\/\S+ presented a certificate not signed by the CA in --etcd-cafile \S+\/other-ca\.crt, while reading the network config; set --etcd-cafile to the CA that signed etcd's server certificate$/,
  },
  {
    name: 'an expired client certificate',
    args: (lab) => ['--etcd-certfile', lab.etcdTlsFiles!.expiredCertFile, '--etcd-keyfile', lab.etcdTlsFiles!.expiredKeyFile],
    line: /^cannot read network config: etcd at https:\/\/\S+ refused the client certificate --etcd-certfile \S+\/expired\.crt: it expired on 2020-01-02T00:00:00\.000Z; issue a new one from etcd's CA and restart the agent$/,
  },
  {
    name: 'a key that is not the certificate\'s',
    args: (lab) => ['--etcd-keyfile', lab.etcdTlsFiles!.strayKeyFile],
    line: /^cannot read network config: --etcd-keyfile \S+\/stray\.key is not the key of --etcd-certfile \S+\/client\.crt; pass the key the certificate was issued for$/,
  },
  {
    name: 'a missing CA file (that appears later)',
    args: (_lab, missing) => ['--etcd-cafile', missing],
    line: /^cannot read network config: --etcd-cafile \S+\/arrives-later\.crt does not exist; create it or point --etcd-cafile at the right file$/,
    fixInPlace: (lab, missing) => copyFileSync(lab.etcdTlsFiles!.caFile, missing),
  },
  {
    name: 'a plaintext endpoint of the TLS etcd',
    etcd: (lab) => ['--etcd-endpoints', lab.etcdEndpoints.map((e) => e.replace(/^https:/, 'http:')).join(',')],
    line: /^cannot read network config: etcd at http:\/\/\S+ closed the connection before gRPC started \(an etcd serving TLS does that to a plaintext client\), while reading the network config; use https:\/\/\S+ in --etcd-endpoints with --etcd-cafile, --etcd-certfile and --etcd-keyfile$/,
  },
];

/**
 * The agent's args from the rendered deploy/overlays/etcd DaemonSet, made
 * runnable in the lab: $(ETCD_ENDPOINTS) and $(NODE_NAME) expanded as the
 * kubelet would, the Secret's mount path rewritten to a lab dir holding the
 * Secret's items (ca.crt, tls.crt, tls.key) copied from the lab's PKI, and
 * the host paths --subnet-file and --run-dir left to the lab's per-node ones.
 * Rewriting rather than bind-mounting over /etc/weft-etcd: a bind mount needs
 * that mount point on this machine's /etc, which the test must not create.
 */
function overlayAgentArgs(lab: Lab, node: LabNode): string[] {
  const objects = renderKustomization(join(DEPLOY, 'overlays/etcd'));
  const ds = objects.find((o: K8sObject) => o.kind === 'DaemonSet')!;
  const pod = ds.spec.template.spec;
  const agent = pod.containers.find((c: K8sObject) => c.name === 'weft');
  const mount = agent.volumeMounts.find((m: K8sObject) => m.name === 'etcd-tls');
  const volume = pod.volumes.find((v: K8sObject) => v.name === 'etcd-tls');
  const secretDir = join(lab.dir, 'etcd-secret');
  mkdirSync(secretDir, { recursive: true });
  const pki = lab.etcdTlsFiles!;
  const fromSecretKey: Record<string, string> = { 'ca.crt': pki.caFile, 'tls.crt': pki.clientCertFile, 'tls.key': pki.clientKeyFile };
  for (const item of volume.secret.items as { key: string; path: string }[]) copyFileSync(fromSecretKey[item.key]!, join(secretDir, item.path));
  const expand = (a: string): string =>
    a.replace('$(ETCD_ENDPOINTS)', lab.etcdEndpoints.join(',')).replace('$(NODE_NAME)', node.ns).split(`${mount.mountPath}/`).join(`${secretDir}/`);
  return (agent.args as string[]).filter((a) => a !== 'agent' && !/^--(subnet-file|run-dir)=/.test(a)).map(expand);
}

t.test('etcd with TLS client certificates: pods, five bad inputs, the deploy overlay', async (t) => {
  const lab = await freshLab(t, { name: 'et1', nodes: 2, podsPerNode: 1, backend: 'host-gw', etcdTls: true });
  t.match(lab.etcdEndpoint, /^https:\/\//, 'etcd serves https');
  t.ok((await lab.pingMatrix()).ok, 'pods reach each other with every agent on TLS etcd');

  const spare = await lab.addNode({ agent: false });
  const missing = join(lab.dir, 'arrives-later.crt');
  const log = lab.agentLogFile(spare);
  for (const bad of BAD_INPUTS) {
    const from = logSize(log);
    await lab.startAgent(spare, { wait: false, ...(bad.etcd ? { etcdArgs: bad.etcd(lab) } : {}), ...(bad.args ? { args: bad.args(lab, missing) } : {}) });
    const line = await until(`the agent's line for ${bad.name}`, async () => logSince(log, from).messages.find((m) => m.includes('cannot read network config')), 60_000).catch(() => undefined);
    t.comment(`${bad.name}: ${line}`);
    t.match(line, bad.line, `${bad.name}: one line naming the file or endpoint and the fix`);
    t.same({ alive: lab.agentRunning(spare), ready: await lab.agentReady(spare), stackFrames: logSince(log, from).stackFrames }, { alive: true, ready: false, stackFrames: [] }, `${bad.name}: the agent stays up, not ready, no stack trace`);
    if (bad.fixInPlace) {
      bad.fixInPlace(lab, missing);
      const ready = await waitUntil(() => lab.agentReady(spare), { timeoutMs: 60_000, intervalMs: 200 });
      t.ok(ready.ok, `${bad.name}: ready once the input is fixed, without a restart`);
      await lab.stopAgent(spare);
    } else {
      await lab.stopAgent(spare);
      const { readyMs } = await lab.startAgent(spare);
      t.ok(readyMs >= 0, `${bad.name}: ready after a restart with the lab's good files`);
      await lab.stopAgent(spare);
    }
  }

  // deploy/overlays/etcd with the same certificates, on a node of its own.
  const deployed = await lab.addNode({ agent: false });
  const args = overlayAgentArgs(lab, deployed);
  t.comment(`overlay args: ${args.join(' ')}`);
  await lab.startAgent(deployed, { etcdArgs: [], args });
  const subnet = deployed.subnet!;
  const others = lab.nodes.filter((n) => n !== deployed && lab.agentRunning(n));
  const routed = await waitUntil(async () => (await Promise.all(others.map((n) => routesOf(lab, n)))).every((routes) => routes.some((r) => r.dst === subnet)), { timeoutMs: 30_000, intervalMs: 200 });
  t.ok(routed.ok, `the overlay's agent is ready and its subnet ${subnet} is in the routes of ${others.map((n) => n.name).join(', ')}`);
});
