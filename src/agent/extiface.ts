// Finds the node's underlay interface the way flannel does: --iface (name or
// address, first match wins), else --iface-regex, else the default route's;
// on a dual-stack node, that interface's IPv6 address too.
import type { ExternalInterface } from '../../backends/backend.js';
import { runCommand } from '../core/command.js';
import { WeftError } from '../errors.js';
import { Cidr, IP, type Family } from '../core/cidr.js';

interface IpAddrInfo { family: string; local: string; prefixlen: number; scope: string }
interface IpLink { ifname: string; mtu: number; address?: string; addr_info?: IpAddrInfo[] }

async function ipJson<T>(args: string[]): Promise<T> {
  const { stdout } = await runCommand(['ip', '-json', ...args]);
  return JSON.parse(stdout || '[]') as T;
}

export interface IfaceSelector {
  /** Names or addresses, in order of preference (--iface, repeatable). */
  ifaces: string[];
  /** Regular expressions matched against names and addresses (--iface-regex). */
  regexes: string[];
  /** Published address override (--public-ip). */
  publicIP?: string;
  /** Published IPv6 address override on a dual-stack node (--public-ipv6). */
  publicIPv6?: string;
}

/** iproute2's name for an address family. */
const IP_FAMILY: Record<Family, string> = { 4: 'inet', 6: 'inet6' };

function globalAddrs(link: IpLink, family: Family): IpAddrInfo[] {
  return (link.addr_info ?? []).filter((a) => a.family === IP_FAMILY[family] && a.scope === 'global');
}

/** One family's side of the interface: the address used, the published one, the connected prefixes. */
function side(link: IpLink, addr: IpAddrInfo, publicIP: string | undefined, family: Family): { ip: IP; publicIP: IP; connected: Cidr[] } {
  const ip = IP.parse(addr.local);
  return {
    ip,
    publicIP: publicIP ? IP.parse(publicIP) : ip,
    connected: globalAddrs(link, family).map((a) => Cidr.of(IP.parse(a.local), a.prefixlen)),
  };
}

/** A --public-ip style flag's value, checked to be an address of `family`. */
function checkPublic(flag: string, value: string | undefined, family: Family): void {
  if (value === undefined) return;
  let ip: IP;
  try {
    ip = IP.parse(value);
  } catch {
    throw new WeftError(`${flag} "${value}" is not an IP address`, 'pass the address peers should use');
  }
  if (ip.family !== family) throw new WeftError(`${flag} ${value} is not an IPv${family} address`, `pass the IPv${family} address peers should use`);
}

/**
 * The underlay interface with its address of `family` (default IPv4) and,
 * with `dualStack`, the same interface's IPv6 side (`ipv6`): the global
 * IPv6 address --iface names or --iface-regex matches, else the first.
 */
export async function findExternalInterface(sel: IfaceSelector, family: Family = 4, dualStack = false): Promise<ExternalInterface> {
  checkPublic(family === 4 ? '--public-ip' : '--public-ipv6', family === 4 ? sel.publicIP : sel.publicIPv6, family);
  if (dualStack) checkPublic('--public-ipv6', sel.publicIPv6, 6);
  const links = await ipJson<IpLink[]>(['addr', 'show']);
  const ext = await pickInterface(sel, links, family);
  if (!dualStack || family === 6) return ext;
  const link = links.find((l) => l.ifname === ext.name)!;
  // An address --iface names, else one an --iface-regex matches, else the first.
  const named = (a: IpAddrInfo): boolean => sel.ifaces.includes(a.local) || sel.regexes.some((r) => safeRegExp(r)?.test(a.local));
  const addr6 = globalAddrs(link, 6).find(named) ?? globalAddrs(link, 6)[0];
  if (!addr6) {
    throw new WeftError(`EnableIPv6 is set but ${ext.name} has no global IPv6 address`, `add one to ${ext.name}, pick an interface that has one with --iface, or remove EnableIPv6 from the net-conf`);
  }
  return { ...ext, ipv6: side(link, addr6, sel.publicIPv6, 6) };
}

/** `text` as a regular expression, or undefined when it is not one (pickInterface reports that). */
function safeRegExp(text: string): RegExp | undefined {
  try {
    return new RegExp(text);
  } catch {
    return undefined;
  }
}

async function pickInterface(sel: IfaceSelector, links: IpLink[], family: Family): Promise<ExternalInterface> {
  const addrsOf = (link: IpLink): IpAddrInfo[] => globalAddrs(link, family);
  const pick = (link: IpLink, addr?: IpAddrInfo): ExternalInterface => {
    const a = addr ?? addrsOf(link)[0];
    if (!a) throw new WeftError(`interface ${link.ifname} has no global IPv${family} address`, 'pick another with --iface');
    return { name: link.ifname, mtu: link.mtu, mac: link.address, ...side(link, a, family === 4 ? sel.publicIP : sel.publicIPv6, family) };
  };

  for (const want of sel.ifaces) {
    for (const link of links) {
      if (link.ifname === want) return pick(link);
      const addr = addrsOf(link).find((a) => a.local === want);
      if (addr) return pick(link, addr);
    }
  }
  if (sel.ifaces.length > 0) {
    throw new WeftError(`no interface matches --iface ${sel.ifaces.join(', ')}`, 'name an existing interface or one of its addresses');
  }
  if (sel.regexes.length > 0) {
    let res: RegExp[];
    try {
      res = sel.regexes.map((r) => new RegExp(r));
    } catch (err) {
      throw new WeftError(`bad --iface-regex (${(err as Error).message})`, 'fix the regular expression');
    }
    for (const re of res) {
      for (const link of links) {
        if (re.test(link.ifname) && addrsOf(link).length > 0) return pick(link);
        const addr = addrsOf(link).find((a) => re.test(a.local));
        if (addr) return pick(link, addr);
      }
    }
    throw new WeftError(`no interface matches --iface-regex ${sel.regexes.join(', ')}`, 'adjust the expression');
  }
  const routes = await ipJson<{ dev?: string }[]>([`-${family}`, 'route', 'show', 'default']);
  const dev = routes.find((r) => r.dev)?.dev;
  const link = links.find((l) => l.ifname === dev);
  if (!dev || !link) {
    throw new WeftError('no default route to pick the external interface from', 'pass --iface NAME or --iface-regex');
  }
  return pick(link);
}
