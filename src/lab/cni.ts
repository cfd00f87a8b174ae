// Pods wired exactly as kubelet would wire them: the standard CNI `bridge`
// plugin with `host-local` IPAM, configured from the node's subnet.env and run
// inside the node's namespace.
import { Cidr, IP } from '../subnet/cidr.js';
import { runCommand } from './command.js';

export const CNI_PATH = '/usr/lib/cni';

/** subnet.env as the CNI side reads it (flannel's keys). */
export interface NodeSubnetEnv {
  network: Cidr;
  /** The node's pod subnet (host bits cleared). */
  subnet: Cidr;
  /** FLANNEL_SUBNET's address: the bridge's, the pods' gateway. */
  gateway: IP;
  mtu: number;
  ipMasq: boolean;
}

/** Parses subnet.env text; throws naming the key that is missing or bad. */
export function parseSubnetEnv(text: string): NodeSubnetEnv {
  const vars = new Map<string, string>();
  for (const line of text.split('\n')) {
    const m = /^\s*([A-Z_][A-Z0-9_]*)=(.*?)\s*$/.exec(line);
    if (m?.[1]) vars.set(m[1], (m[2] ?? '').replace(/^"(.*)"$/, '$1'));
  }
  const get = (key: string): string => {
    const v = vars.get(key);
    if (v === undefined || v === '') throw new Error(`subnet.env has no ${key}`);
    return v;
  };
  const subnetText = get('FLANNEL_SUBNET');
  const slash = subnetText.indexOf('/');
  const gateway = IP.parse(slash < 0 ? subnetText : subnetText.slice(0, slash));
  const mtu = Number(get('FLANNEL_MTU'));
  if (!Number.isInteger(mtu) || mtu < 576 || mtu > 65535) throw new Error(`subnet.env FLANNEL_MTU "${vars.get('FLANNEL_MTU')}" is not an MTU`);
  return {
    network: Cidr.parse(get('FLANNEL_NETWORK')),
    subnet: Cidr.parse(subnetText, { loose: true }),
    gateway,
    mtu,
    ipMasq: vars.get('FLANNEL_IPMASQ') === 'true',
  };
}

/** The bridge plugin's network config for one node, as flannel's CNI plugin would delegate it. */
export function bridgeConf(env: NodeSubnetEnv, ipamDataDir: string): Record<string, unknown> {
  return {
    cniVersion: '1.0.0',
    name: 'weft',
    type: 'bridge',
    bridge: 'cni0',
    isGateway: true,
    ipMasq: false,
    mtu: env.mtu,
    ipam: {
      type: 'host-local',
      dataDir: ipamDataDir,
      ranges: [[{ subnet: env.subnet.toString(), gateway: env.gateway.toString() }]],
      routes: [{ dst: env.subnet.family === 4 ? '0.0.0.0/0' : '::/0' }],
    },
  };
}

export interface CniCall {
  command: 'ADD' | 'DEL';
  /** Namespace the plugin runs in: the node's. */
  nodeNs: string;
  /** The pod's namespace name (also used as the container id). */
  podNs: string;
  conf: Record<string, unknown>;
}

/** Runs the plugin; for ADD returns the pod's address (CIDR form, e.g. "10.244.3.2/24"). */
export async function runCni(call: CniCall): Promise<string | undefined> {
  const type = String(call.conf.type);
  const result = await runCommand([`${CNI_PATH}/${type}`], {
    netns: call.nodeNs,
    input: JSON.stringify(call.conf),
    check: false,
    env: {
      CNI_COMMAND: call.command,
      CNI_CONTAINERID: call.podNs,
      CNI_NETNS: `/var/run/netns/${call.podNs}`,
      CNI_IFNAME: 'eth0',
      CNI_PATH,
    },
  });
  if (result.code !== 0) {
    let msg = (result.stderr || result.stdout).trim();
    try {
      const err = JSON.parse(result.stdout) as { msg?: string; details?: string };
      msg = [err.msg, err.details].filter(Boolean).join(': ') || msg;
    } catch {
      // not a CNI error object
    }
    throw new Error(`CNI ${type} ${call.command} for ${call.podNs} failed: ${msg}`);
  }
  if (call.command === 'DEL') return undefined;
  const parsed = JSON.parse(result.stdout) as { ips?: Array<{ address?: string }> };
  const address = parsed.ips?.[0]?.address;
  if (!address) throw new Error(`CNI ${type} ADD for ${call.podNs} returned no address`);
  return address;
}
