// A lab whose agents run in kube mode: the stand-in API server
// (test/fixtures/kube) in the lab's underlay namespace, one Node object per
// lab node with podCIDRs set up front (as kube-controller-manager would
// leave them), a kubeconfig and a net-conf file, then `weft agent
// --kube-subnet-mgr` on every node. No real API server can run here.
import type { Test } from 'tap';
import { readFile, writeFile } from 'node:fs/promises';
import { request } from 'node:http';
import { join } from 'node:path';
import type { BackendType } from '../../../src/config/netconf.js';
import type { Family } from '../../../src/core/cidr.js';
import { Lab, labNetConf, type LabNode } from '../../../src/lab/lab.js';
import { segment } from '../../../src/lab/topology.js';
import { ApiServerProcess } from '../../fixtures/kube/apiserver-process.js';
import { kubeConfigFor } from '../../fixtures/kube/kubeconfig.js';

export const KUBE_API_PORT = 6443;

/** Not what the etcd manager would pick (10.244.1.0/24 up): a node's subnet must come from its Node object. */
export const kubePodCidrOf = (index: number): string => `10.244.${100 + index}.0/24`;
export const kubePodCidr6Of = (index: number): string => `2001:db8:1000:a${index}::/64`;

export interface KubeLabOptions {
  /** Lab name (1–12 lowercase letters/digits). */
  name: string;
  nodes: number;
  /** Default host-gw; ignored when `netConf` is given. */
  backend?: BackendType;
  /** Default [4]. IPv6 gives every node an IPv6 podCIDR too. */
  families?: Family[];
  /** The net-conf every agent reads (--net-conf); default the lab's for `backend` and `families`. */
  netConf?: Record<string, unknown>;
  /** Flags for every agent after the kube ones. */
  agentArgs?: string[];
}

export interface KubeLab {
  lab: Lab;
  api: ApiServerProcess;
  netConf: Record<string, unknown>;
  netConfFile: string;
  kubeconfigFile: string;
  /** The node's podCIDRs as its Node object holds them (IPv4 first). */
  podCidrsOf(node: LabNode): string[];
  /** Each agent's milliseconds from start to ready, in node order. */
  readyMs: number[];
  /** The last `lines` lines of every agent's log and of the API server's, for a failure's diagnostics. */
  logTails(lines?: number): Promise<string>;
}

/**
 * Removes leftovers of lab `opts.name`, registers the teardown (API server
 * stopped, lab removed), then brings the lab up in kube mode and waits for
 * every agent's /readyz. On an agent failure the logs' tails go to the test
 * output before the error is thrown.
 */
export async function startKubeLab(t: Test, opts: KubeLabOptions): Promise<KubeLab> {
  await Lab.destroy(opts.name);
  let api: ApiServerProcess | undefined;
  t.teardown(async () => {
    await api?.stop();
    await Lab.destroy(opts.name);
  });
  const families = opts.families ?? [4];
  const netConf = opts.netConf ?? labNetConf(opts.backend ?? 'host-gw', families);
  const lab = await Lab.up({ name: opts.name, nodes: opts.nodes, families, startAgents: false, netConf });
  const apiLog = join(lab.dir, 'apiserver.log');
  api = await ApiServerProcess.start({ host: segment(0).gateway.toString(), port: KUBE_API_PORT, netns: lab.underlayNs, logFile: apiLog });

  const netConfFile = join(lab.dir, 'net-conf.json');
  await writeFile(netConfFile, JSON.stringify(netConf));
  const kubeconfigFile = join(lab.dir, 'kubeconfig');
  await writeFile(kubeconfigFile, kubeConfigFor(api.url).exportConfig());
  const podCidrsOf = (node: LabNode): string[] => [
    ...(families.includes(4) ? [kubePodCidrOf(node.index)] : []),
    ...(families.includes(6) ? [kubePodCidr6Of(node.index)] : []),
  ];
  for (const node of lab.nodes) await api.addNode(node.ns, podCidrsOf(node));

  const logTails = async (lines = 8): Promise<string> => {
    const parts: string[] = [];
    for (const n of lab.nodes) parts.push(`${n.name} agent log:\n${await tailOf(lab.agentLogFile(n), lines)}`);
    parts.push(`API server log:\n${await tailOf(apiLog, lines)}`);
    return parts.join('\n');
  };
  // The kubeconfig is a flag, not $KUBECONFIG: labs in one test process each have their own API server.
  const args = ['--kube-subnet-mgr', '--net-conf', netConfFile, '--kubeconfig-file', kubeconfigFile, ...(opts.agentArgs ?? [])];
  const ready = await Promise.all(lab.nodes.map((n) => lab.startAgent(n, { args }))).catch(async (err) => {
    t.comment(await logTails());
    throw err;
  });
  return { lab, api, netConf, netConfFile, kubeconfigFile, podCidrsOf, readyMs: ready.map((r) => r.readyMs), logTails };
}

/** The last `lines` lines of a file, or "(no log)". */
export async function tailOf(file: string, lines = 1): Promise<string> {
  return (await readFile(file, 'utf8').catch(() => '(no log)')).trim().split('\n').slice(-lines).join('\n');
}

/** The port every lab agent serves /metrics on, inside its node's namespace (src/lab/agents.ts). */
const AGENT_HTTP_PORT = 10270;

/**
 * A unix socket in `dir` that reaches the node's agent's HTTP port (a socat
 * in the node's namespace): polling /metrics through it starts no process
 * per poll, unlike lab.agentHttp. Returns the socket and the bridge's pid.
 */
export function bridgeAgentMetrics(lab: Lab, node: LabNode, dir: string): { socket: string; pid: number } {
  const socket = join(dir, `${node.name}.metrics.sock`);
  const { pid } = lab.spawn(node, ['socat', `UNIX-LISTEN:${socket},fork`, `TCP4:127.0.0.1:${AGENT_HTTP_PORT}`], { logFile: join(dir, `${node.name}.metrics-bridge.log`) });
  return { socket, pid };
}

/** The agent's unlabelled metric samples (name -> value text) through a bridge; empty when nothing answers. */
export function metricsAt(socketPath: string): Promise<Map<string, string>> {
  return new Promise((resolve) => {
    const out = new Map<string, string>();
    const req = request({ socketPath, path: '/metrics', timeout: 2000 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (body += chunk));
      res.on('end', () => {
        for (const m of body.matchAll(/^([a-z_:][a-z0-9_:]*) (\S+)$/gm)) out.set(m[1]!, m[2]!);
        resolve(out);
      });
      res.on('error', () => resolve(out));
    });
    req.on('error', () => resolve(out));
    req.on('timeout', () => req.destroy());
    req.end();
  });
}
