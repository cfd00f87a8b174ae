// What a lab created, on disk, so `weft lab down` can remove it all even
// after the process that built it has crashed.
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { writeFileAtomic } from '../core/atomic-write.js';
import { commandLine, isAlive } from '../core/process.js';
import type { Family } from '../core/cidr.js';
import type { Topology } from './topology.js';

export const LAB_STATE_ROOT = '/run/weft-lab';

export interface LabNode {
  /** Short name, e.g. "n1". */
  name: string;
  /** Network namespace, e.g. "wl-demo-n1"; also the agent's --node-name. */
  ns: string;
  index: number;
  segment: number;
  /** The node's address in the lab's first family (IPv4, unless the lab is IPv6-only). */
  underlayIP: string;
  /** The node's IPv6 underlay address, when the lab runs IPv6. */
  underlayIPv6?: string;
  /** Pod subnet from subnet.env, e.g. "10.244.3.0/24", once known. */
  subnet?: string;
  /** IPv6 pod subnet from subnet.env (FLANNEL_IPV6_SUBNET) on a dual-stack node. */
  ipv6Subnet?: string;
  /** The agent's process, while the lab believes it runs. */
  agentPid?: number;
  /** Milliseconds from the agent's last start to its first 200 on /readyz. */
  agentReadyMs?: number;
}

export interface LabPod {
  /** Short name, e.g. "n1-p1". */
  name: string;
  ns: string;
  /** Short name of the node it runs on. */
  node: string;
  /** The pod's address in the lab's first family. */
  ip: string;
  /** The pod's IPv6 address, when the lab runs IPv6. */
  ipv6?: string;
  /** The CNI network config used for ADD, kept for DEL. */
  cniConfFile: string;
}

/** A namespace on the underlay that is not a node (an attacker, an outside host). */
export interface LabHost {
  name: string;
  ns: string;
  segment: number;
  ip: string;
  ipv6?: string;
}

/** One etcd member of a lab. */
export interface LabEtcdMember {
  /** e.g. "e1"; also its namespace's short name (legacy single member: "etcd", in the underlay namespace). */
  name: string;
  ns: string;
  /** Its client URL (https in a TLS lab). */
  endpoint: string;
  /** The etcd process, while the lab believes it runs. */
  pid?: number;
  logFile: string;
  /** The command line it runs with, to restart it from any process. */
  argv: string[];
}

export interface LabState {
  version: 1;
  name: string;
  /** The lab's temp dir: etcd data, per-node subnet.env, logs, CNI state. */
  dir: string;
  topology: Topology;
  /** The underlay's (and the pods') address families; absent in labs from before dual-stack: IPv4. */
  families?: Family[];
  netConf: Record<string, unknown>;
  etcdPrefix: string;
  startAgents: boolean;
  agentArgs: string[];
  podsPerNode: number;
  segments: number[];
  /** The first etcd member's process. */
  etcdPid?: number;
  /** Clients talk TLS to etcd (with client certificates from <dir>/pki). */
  etcdTls?: boolean;
  /** Every etcd member; absent in labs from before members were recorded. */
  etcdMembers?: LabEtcdMember[];
  nodes: LabNode[];
  pods: LabPod[];
  hosts: LabHost[];
  createdAt: string;
}

export function stateDir(name: string): string {
  return join(LAB_STATE_ROOT, name);
}

export function stateFile(name: string): string {
  return join(stateDir(name), 'state.json');
}

export async function writeLabState(state: LabState): Promise<void> {
  await writeFileAtomic(stateFile(state.name), JSON.stringify(state, null, 2) + '\n');
}

/** The recorded state, or undefined when there is none or it is unreadable. */
export async function readLabState(name: string): Promise<LabState | undefined> {
  try {
    const parsed = JSON.parse(await readFile(stateFile(name), 'utf8')) as LabState;
    return parsed && parsed.version === 1 && parsed.name === name ? parsed : undefined;
  } catch {
    return undefined;
  }
}

/** Names of labs with a state directory. */
export async function recordedLabNames(): Promise<string[]> {
  try {
    return (await readdir(LAB_STATE_ROOT, { withFileTypes: true })).filter((d) => d.isDirectory()).map((d) => d.name);
  } catch {
    return [];
  }
}

/** The families a lab runs, IPv4 first, each once. */
export function labFamilies(state: { families?: readonly Family[] }): Family[] {
  const families = ([4, 6] as const).filter((f) => state.families?.includes(f));
  return families.length ? families : [4];
}

/**
 * `ip`/`underlayIP` hold the lab's first family, `ipv6`/`underlayIPv6` the
 * IPv6 address in any lab that runs IPv6: the address in `family`, if any.
 */
function addressIn(family: Family, primary: string, ipv6: string | undefined): string | undefined {
  if (family === 6) return ipv6;
  return primary && !primary.includes(':') ? primary : undefined;
}

/** A pod's (or underlay host's) address in `family`. */
export function podAddress(pod: { ip: string; ipv6?: string }, family: Family): string | undefined {
  return addressIn(family, pod.ip, pod.ipv6);
}

/** A node's underlay address in `family`. */
export function nodeUnderlayIP(node: Pick<LabNode, 'underlayIP' | 'underlayIPv6'>, family: Family): string | undefined {
  return addressIn(family, node.underlayIP, node.underlayIPv6);
}

/** A node's pod subnet in `family`, once known. */
export function nodeSubnet(node: Pick<LabNode, 'subnet' | 'ipv6Subnet'>, family: Family): string | undefined {
  return family === 6 ? node.ipv6Subnet : node.subnet;
}

/** True when a recorded pid still runs and is the lab's own: pids get reused, so its command line must name the lab dir. */
export function isLabProcess(pid: number | undefined, labDir: string): pid is number {
  return pid !== undefined && isAlive(pid) && !!commandLine(pid)?.includes(labDir);
}
