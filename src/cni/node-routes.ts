// The node-side wiring of a borrowed address, which the bridge plugin knows
// nothing of: the lender's subnet is routed to the lender, so this node needs
// a /32 (/128) to the pod on the bridge, and the bridge its gateway address.
import { execFile } from 'node:child_process';
import { CniCode, CniError } from './errors.js';

function ip(args: string[], netns?: string): Promise<void> {
  // nsenter: the runtime gives the pod's namespace as a path, which `ip -n` does not take.
  const [file, argv] = netns ? ['nsenter', [`--net=${netns}`, 'ip', ...args]] : ['ip', args];
  return new Promise((resolve, reject) => {
    execFile(file, argv, { timeout: 5000 }, (err, _stdout, stderr) => {
      if (err) reject(new CniError(CniCode.ioFailure, `ip ${args.join(' ')} failed: ${(stderr || err.message).trim().split('\n')[0]}`));
      else resolve();
    });
  });
}

/**
 * The pod side of a borrowed address: its gateway on-link (scope link, which
 * the bridge plugin's routes never have, so the kernel refuses any route via
 * it), then the usual routes through it.
 */
export async function routePodVia(netns: string, ifname: string, gateway: string, routes: Array<{ dst: string; gw?: string }>): Promise<void> {
  await ip(['route', 'replace', hostCidr(gateway), 'dev', ifname, 'scope', 'link'], netns);
  for (const r of routes) await ip(['route', 'replace', r.dst, 'via', r.gw ?? gateway, 'dev', ifname], netns);
}

/** Gives the bridge its gateway address (e.g. 10.244.7.1/24): the bridge plugin does not when told isGateway false. */
export async function ensureBridgeAddress(bridge: string, gatewayCidr: string): Promise<void> {
  await ip(['addr', 'replace', gatewayCidr, 'dev', bridge]);
}

/** Routes a borrowed address to the pod behind the bridge. */
export async function routeBorrowed(bridge: string, address: string): Promise<void> {
  await ip(['route', 'replace', hostCidr(address), 'dev', bridge]);
}

/** Removes a borrowed address's route; gone already is fine (DEL is idempotent). */
export async function unrouteBorrowed(bridge: string, address: string): Promise<void> {
  await ip(['route', 'del', hostCidr(address), 'dev', bridge]).catch(() => undefined);
}

function hostCidr(address: string): string {
  return address.includes(':') ? `${address}/128` : `${address}/32`;
}
