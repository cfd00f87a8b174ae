// What a lab created, on disk, so `weft lab down` can remove it all even
// after the process that built it has crashed.
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { writeFileAtomic } from '../core/atomic-write.js';
import { commandLine, isAlive } from '../core/process.js';
import type { Topology } from './topology.js';

export const LAB_STATE_ROOT = '/run/weft-lab';

export interface LabNode {
  /** Short name, e.g. "n1". */
  name: string;
  /** Network namespace, e.g. "wl-demo-n1"; also the agent's --node-name. */
  ns: string;
  index: number;
  segment: number;
  underlayIP: string;
  /** Pod subnet from subnet.env, e.g. "10.244.3.0/24", once known. */
  subnet?: string;
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
  ip: string;
  /** The CNI network config used for ADD, kept for DEL. */
  cniConfFile: string;
}

/** A namespace on the underlay that is not a node (an attacker, an outside host). */
export interface LabHost {
  name: string;
  ns: string;
  segment: number;
  ip: string;
}

export interface LabState {
  version: 1;
  name: string;
  /** The lab's temp dir: etcd data, per-node subnet.env, logs, CNI state. */
  dir: string;
  topology: Topology;
  netConf: Record<string, unknown>;
  etcdPrefix: string;
  startAgents: boolean;
  agentArgs: string[];
  podsPerNode: number;
  segments: number[];
  etcdPid?: number;
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

/** True when a recorded pid still runs and is the lab's own: pids get reused, so its command line must name the lab dir. */
export function isLabProcess(pid: number | undefined, labDir: string): pid is number {
  return pid !== undefined && isAlive(pid) && !!commandLine(pid)?.includes(labDir);
}
