// subnet.env, the file between the agent and the CNI plugins: flannel's keys
// (FLANNEL_NETWORK, FLANNEL_SUBNET, FLANNEL_MTU, FLANNEL_IPMASQ, and for a
// dual-stack node FLANNEL_IPV6_NETWORK and FLANNEL_IPV6_SUBNET), so the
// standard bridge + host-local plugins and flannel's own plugin read it
// unchanged. One format and one parser, for the agent, the CNI plugin and the lab.
import { readFile } from 'node:fs/promises';
import type { Logger } from 'pino';
import { writeFileAtomic } from '../core/atomic-write.js';
import { Cidr, IP } from '../core/cidr.js';

export interface SubnetEnv {
  /** The whole cluster network (FLANNEL_NETWORK). */
  network: Cidr;
  /** This node's pod subnet, host bits cleared. */
  subnet: Cidr;
  /** A dual-stack node's IPv6 network and subnet (FLANNEL_IPV6_NETWORK, FLANNEL_IPV6_SUBNET). */
  ipv6?: { network: Cidr; subnet: Cidr };
  mtu: number;
  /** True when the agent masquerades, so the bridge plugin must not. */
  ipMasq: boolean;
}

export interface ParsedSubnetEnv extends SubnetEnv {
  /** FLANNEL_SUBNET's address: the bridge's, every pod's gateway. */
  gateway: IP;
  ipv6?: { network: Cidr; subnet: Cidr; gateway: IP };
}

/** The two keys of one address family: the network, and the subnet written as its gateway/length. */
const KEYS = {
  primary: { network: 'FLANNEL_NETWORK', subnet: 'FLANNEL_SUBNET' },
  ipv6: { network: 'FLANNEL_IPV6_NETWORK', subnet: 'FLANNEL_IPV6_SUBNET' },
} as const;
type FamilyKeys = (typeof KEYS)[keyof typeof KEYS];

/** The primary family's keys: the IPv6 ones on an IPv6-only node (IPv6 keys and no IPv4 ones), else the IPv4 ones. */
function primaryKeys(vars: Map<string, string>): FamilyKeys {
  const has = (keys: FamilyKeys): boolean => vars.has(keys.network) || vars.has(keys.subnet);
  return !has(KEYS.primary) && has(KEYS.ipv6) ? KEYS.ipv6 : KEYS.primary;
}

/** A subnet.env that does not hold what it must: names the key and why. */
export class SubnetEnvError extends Error {
  constructor(readonly key: string, readonly why: string) {
    super(`${key} ${why}`);
    this.name = 'SubnetEnvError';
  }
}

export function formatSubnetEnv(env: SubnetEnv): string {
  // A subnet is written as its first usable address (the bridge gateway) with the subnet's length.
  const family = (keys: FamilyKeys, part: { network: Cidr; subnet: Cidr }): string[] =>
    [`${keys.network}=${part.network}`, `${keys.subnet}=${part.subnet.ip.add(1)}/${part.subnet.prefixLen}`];
  // IPv6-only (the primary family is IPv6): flannel writes the IPv6 keys alone.
  return [
    ...family(env.network.family === 6 ? KEYS.ipv6 : KEYS.primary, env),
    ...(env.ipv6 ? family(KEYS.ipv6, env.ipv6) : []),
    `FLANNEL_MTU=${env.mtu}`,
    `FLANNEL_IPMASQ=${env.ipMasq}`,
    '',
  ].join('\n');
}

/** KEY=value lines, as a shell would source them (quotes around a value dropped). */
function variables(text: string): Map<string, string> {
  const vars = new Map<string, string>();
  for (const line of text.split('\n')) {
    const m = /^\s*([A-Z_][A-Z0-9_]*)=(.*?)\s*$/.exec(line);
    if (m?.[1]) vars.set(m[1], (m[2] ?? '').replace(/^"(.*)"$/, '$1'));
  }
  return vars;
}

/** Parses and checks every key; throws SubnetEnvError naming the first bad one. */
export function parseSubnetEnv(text: string): ParsedSubnetEnv {
  const vars = variables(text);
  const get = (key: string): string => {
    const v = vars.get(key);
    if (!v) throw new SubnetEnvError(key, 'is missing');
    return v;
  };

  const keys = primaryKeys(vars);
  const primary = keys === KEYS.ipv6 ? familyPart(get, keys, 6) : familyPart(get, keys);
  const { network } = primary;
  let ipv6: ParsedSubnetEnv['ipv6'];
  if (keys !== KEYS.ipv6 && (vars.has(KEYS.ipv6.network) || vars.has(KEYS.ipv6.subnet))) {
    ipv6 = familyPart(get, KEYS.ipv6, 6);
  }

  const mtuText = get('FLANNEL_MTU');
  const mtu = /^\d{1,5}$/.test(mtuText) ? Number(mtuText) : NaN;
  const minMtu = network.family === 4 && !ipv6 ? 576 : 1280;
  if (!(mtu >= minMtu && mtu <= 65535)) throw new SubnetEnvError('FLANNEL_MTU', `"${mtuText.slice(0, 16)}" is not an MTU between ${minMtu} and 65535`);

  const masq = vars.get('FLANNEL_IPMASQ') ?? 'false';
  if (masq !== 'true' && masq !== 'false') throw new SubnetEnvError('FLANNEL_IPMASQ', `"${masq.slice(0, 16)}" is neither true nor false`);

  return { ...primary, ...(ipv6 ? { ipv6 } : {}), mtu, ipMasq: masq === 'true' };
}

/** One family's network and subnet, checked: the subnet inside the network, its gateway a usable host. */
function familyPart(get: (key: string) => string, keys: FamilyKeys, family?: 4 | 6): { network: Cidr; subnet: Cidr; gateway: IP } {
  let network: Cidr;
  try {
    network = Cidr.parse(get(keys.network));
  } catch (err) {
    if (err instanceof SubnetEnvError) throw err;
    throw new SubnetEnvError(keys.network, `is not a CIDR (${(err as Error).message})`);
  }
  if (family && network.family !== family) throw new SubnetEnvError(keys.network, `${network} is not an IPv${family} network`);
  const { subnet, gateway } = subnetOf(get(keys.subnet), keys.subnet);
  if (!network.covers(subnet)) throw new SubnetEnvError(keys.subnet, `${subnet} is outside ${keys.network} ${network}`);
  if (gateway.equals(subnet.ip) || gateway.equals(subnet.last)) throw new SubnetEnvError(keys.subnet, `${gateway} is not a usable host address of ${subnet}`);
  return { network, subnet, gateway };
}

function subnetOf(text: string, key: string): { subnet: Cidr; gateway: IP } {
  try {
    const slash = text.indexOf('/');
    if (slash < 0) throw new Error('no /prefix');
    return { gateway: IP.parse(text.slice(0, slash)), subnet: Cidr.parse(text, { loose: true }) };
  } catch (err) {
    throw new SubnetEnvError(key, `"${text.slice(0, 64)}" is not an address/prefix (${(err as Error).message})`);
  }
}

export async function writeSubnetEnv(path: string, env: SubnetEnv): Promise<void> {
  await writeFileAtomic(path, formatSubnetEnv(env), { mode: 0o644 });
}

/** The agent's subnet.env: rewritten only when its text changes, with a warning when the pod MTU does. */
export class SubnetEnvFile {
  private last?: { env: SubnetEnv; text: string };

  constructor(readonly path: string, private readonly logger: Logger) {}

  async write(env: SubnetEnv): Promise<void> {
    const text = formatSubnetEnv(env);
    const previous = this.last?.env;
    if (text === this.last?.text) return;
    await writeSubnetEnv(this.path, env);
    this.last = { env, text };
    if (previous && previous.mtu !== env.mtu) {
      this.logger.warn({ file: this.path, oldMtu: previous.mtu, mtu: env.mtu },
        `subnet.env rewritten: pod MTU is now ${env.mtu}; running pods keep MTU ${previous.mtu} until they are recreated`);
    } else {
      this.logger.info({ file: this.path }, 'subnet.env written');
    }
  }
}

/**
 * What an earlier run left in subnet.env, key by key: a file that is missing,
 * unreadable or partly damaged still yields the keys that parse (a restarted
 * agent prefers its old subnet; teardown needs the old network).
 */
export async function readPreviousSubnetEnv(path: string): Promise<{ network?: Cidr; subnet?: Cidr; ipv6Subnet?: Cidr; mtu?: number }> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch {
    return {};
  }
  const vars = variables(text);
  const attempt = <T>(fn: () => T): T | undefined => {
    try {
      return fn();
    } catch {
      return undefined;
    }
  };
  const keys = primaryKeys(vars);
  const network = attempt(() => Cidr.parse(vars.get(keys.network) ?? ''));
  const subnet = attempt(() => subnetOf(vars.get(keys.subnet) ?? '', keys.subnet).subnet);
  const ipv6Subnet = keys === KEYS.ipv6 ? undefined : attempt(() => subnetOf(vars.get(KEYS.ipv6.subnet) ?? '', KEYS.ipv6.subnet).subnet);
  const mtu = /^\d{1,5}$/.test(vars.get('FLANNEL_MTU') ?? '') ? Number(vars.get('FLANNEL_MTU')) : undefined;
  return {
    ...(network ? { network } : {}),
    ...(subnet ? { subnet } : {}),
    ...(ipv6Subnet?.family === 6 ? { ipv6Subnet } : {}),
    ...(mtu !== undefined ? { mtu } : {}),
  };
}
