// Finds the node's underlay interface the way flannel does: --iface (name or
// address, first match wins), else --iface-regex, else the default route's.
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
}

/** iproute2's name for an address family. */
const IP_FAMILY: Record<Family, string> = { 4: 'inet', 6: 'inet6' };

function globalAddrs(link: IpLink, family: Family): IpAddrInfo[] {
  return (link.addr_info ?? []).filter((a) => a.family === IP_FAMILY[family] && a.scope === 'global');
}

function describe(link: IpLink, addr: IpAddrInfo, publicIP: string | undefined, family: Family): ExternalInterface {
  const ip = IP.parse(addr.local);
  return {
    name: link.ifname,
    ip,
    publicIP: publicIP ? IP.parse(publicIP) : ip,
    mtu: link.mtu,
    connected: globalAddrs(link, family).map((a) => Cidr.of(IP.parse(a.local), a.prefixlen)),
    mac: link.address,
  };
}

/** The underlay interface and its address of `family` (default IPv4). */
export async function findExternalInterface(sel: IfaceSelector, family: Family = 4): Promise<ExternalInterface> {
  const addrsOf = (link: IpLink): IpAddrInfo[] => globalAddrs(link, family);
  if (sel.publicIP) {
    try {
      IP.parse(sel.publicIP);
    } catch {
      throw new WeftError(`--public-ip "${sel.publicIP}" is not an IP address`, 'pass the address peers should use');
    }
  }
  const links = await ipJson<IpLink[]>(['addr', 'show']);
  const pick = (link: IpLink, addr?: IpAddrInfo): ExternalInterface => {
    const a = addr ?? addrsOf(link)[0];
    if (!a) throw new WeftError(`interface ${link.ifname} has no global IPv${family} address`, 'pick another with --iface');
    return describe(link, a, sel.publicIP, family);
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
