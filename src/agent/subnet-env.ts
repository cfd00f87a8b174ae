// subnet.env, the file the CNI plugins read: flannel's keys, written atomically.
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { Cidr } from '../subnet/cidr.js';

export interface SubnetEnv {
  network: Cidr;
  /** This node's pod subnet. */
  subnet: Cidr;
  mtu: number;
  ipMasq: boolean;
}

export function formatSubnetEnv(env: SubnetEnv): string {
  // FLANNEL_SUBNET carries the first usable address (the bridge gateway) with the subnet's length.
  const gateway = env.subnet.ip.add(1);
  return [
    `FLANNEL_NETWORK=${env.network}`,
    `FLANNEL_SUBNET=${gateway}/${env.subnet.prefixLen}`,
    `FLANNEL_MTU=${env.mtu}`,
    `FLANNEL_IPMASQ=${env.ipMasq}`,
    '',
  ].join('\n');
}

export async function writeSubnetEnv(path: string, env: SubnetEnv): Promise<void> {
  await mkdir(dirname(path), { recursive: true });
  const tmp = `${path}.${process.pid}.tmp`;
  await writeFile(tmp, formatSubnetEnv(env), { mode: 0o644 });
  await rename(tmp, path);
}

/** The subnet a previous run recorded, if the file exists and parses. */
export async function readPreviousSubnet(path: string): Promise<Cidr | undefined> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch {
    return undefined;
  }
  const m = /^FLANNEL_SUBNET=(\S+)$/m.exec(text);
  if (!m?.[1]) return undefined;
  try {
    return Cidr.parse(m[1], { loose: true });
  } catch {
    return undefined;
  }
}
