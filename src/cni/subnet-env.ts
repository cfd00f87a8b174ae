// subnet.env as the CNI plugin reads it: flannel's keys, written by the agent.
import { readFileSync } from 'node:fs';
import { Cidr, IP } from '../subnet/cidr.js';
import { CniCode, CniError } from './errors.js';

export interface NodeSubnet {
  /** The whole cluster network (FLANNEL_NETWORK). */
  network: Cidr;
  /** This node's pod subnet, host bits cleared. */
  subnet: Cidr;
  /** FLANNEL_SUBNET's address: the bridge's, every pod's gateway. */
  gateway: IP;
  mtu: number;
  /** True when the agent masquerades, so the bridge plugin must not. */
  ipMasq: boolean;
}

const MAX_BYTES = 4096;

/** Reads and checks subnet.env; every failure is a CniError naming the file and the key. */
export function readNodeSubnet(path: string): NodeSubnet {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') {
      throw new CniError(CniCode.tryAgainLater, `${path} does not exist yet; is the weft agent running on this node?`, 'the agent writes it once the node has a subnet');
    }
    throw new CniError(CniCode.ioFailure, `cannot read ${path} (${code ?? (err as Error).message})`);
  }
  if (text.length > MAX_BYTES) throw new CniError(CniCode.ioFailure, `${path} is larger than ${MAX_BYTES} bytes; it is not a subnet.env`);
  return parseNodeSubnet(text, path);
}

export function parseNodeSubnet(text: string, path: string): NodeSubnet {
  const vars = new Map<string, string>();
  for (const line of text.split('\n')) {
    const m = /^\s*([A-Z_][A-Z0-9_]*)=(.*?)\s*$/.exec(line);
    if (m?.[1]) vars.set(m[1], (m[2] ?? '').replace(/^"(.*)"$/, '$1'));
  }
  const bad = (key: string, why: string): CniError => new CniError(CniCode.ioFailure, `${path}: ${key} ${why}`, 'the weft agent rewrites this file; restart it');
  const get = (key: string): string => {
    const v = vars.get(key);
    if (!v) throw bad(key, 'is missing');
    return v;
  };

  let network: Cidr;
  try {
    network = Cidr.parse(get('FLANNEL_NETWORK'));
  } catch (err) {
    if (err instanceof CniError) throw err;
    throw bad('FLANNEL_NETWORK', `is not a CIDR (${(err as Error).message})`);
  }
  const subnetText = get('FLANNEL_SUBNET');
  let gateway: IP;
  let subnet: Cidr;
  try {
    const slash = subnetText.indexOf('/');
    if (slash < 0) throw new Error('no /prefix');
    gateway = IP.parse(subnetText.slice(0, slash));
    subnet = Cidr.parse(subnetText, { loose: true });
  } catch (err) {
    throw bad('FLANNEL_SUBNET', `"${subnetText.slice(0, 64)}" is not an address/prefix (${(err as Error).message})`);
  }
  if (!network.covers(subnet)) throw bad('FLANNEL_SUBNET', `${subnet} is outside FLANNEL_NETWORK ${network}`);
  if (gateway.equals(subnet.ip) || gateway.equals(subnet.last)) throw bad('FLANNEL_SUBNET', `${gateway} is not a usable host address of ${subnet}`);

  const mtuText = get('FLANNEL_MTU');
  const mtu = /^\d{1,5}$/.test(mtuText) ? Number(mtuText) : NaN;
  const minMtu = network.family === 4 ? 576 : 1280;
  if (!(mtu >= minMtu && mtu <= 65535)) throw bad('FLANNEL_MTU', `"${mtuText.slice(0, 16)}" is not an MTU between ${minMtu} and 65535`);

  const masq = vars.get('FLANNEL_IPMASQ') ?? 'false';
  if (masq !== 'true' && masq !== 'false') throw bad('FLANNEL_IPMASQ', `"${masq.slice(0, 16)}" is neither true nor false`);

  return { network, subnet, gateway, mtu, ipMasq: masq === 'true' };
}
