// The lender's half of an address that followed its pod away: this node's
// pods think every address of the node's subnet is on their link (the pod
// route is the /24 on eth0), so a pod here ARPs for the moved pod's address
// on the bridge. A proxy neighbour entry per lent address on the bridge makes
// the node answer for it (the kernel answers only when its own route for the
// address leaves by another device: the borrowed /32 toward the borrowing
// node), and forward it by that route. IPv6 also needs proxy_ndp on. A pod
// that talked to the address before its move still holds the pod's old MAC
// for it: a gratuitous ARP from the bridge moves its entry to the bridge at
// once (IPv4; IPv6 pods re-resolve when their entry goes stale).
import { IP } from '../core/cidr.js';
import { runCommand } from '../core/command.js';
import { loadNativeAddon } from '../core/native-addon.js';
import { writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';

interface GarpAddon {
  garp(ifname: string, ipv4: Buffer): void;
}

export interface LentNeighbourChange {
  added: string[];
  removed: string[];
}

/**
 * Makes the bridge's proxy neighbour entries exactly `lent`; nothing to do
 * (and nothing done) while the bridge does not exist yet: the plugin makes
 * it at the node's first pod, and the next pass adds the entries.
 */
export async function syncLentNeighbours(bridge: string, lent: readonly IP[]): Promise<LentNeighbourChange> {
  if (!existsSync(`/sys/class/net/${bridge}`)) return { added: [], removed: [] };
  const shown = await runCommand(['ip', '-j', 'neigh', 'show', 'proxy', 'dev', bridge]);
  const have = new Set((JSON.parse(shown.stdout || '[]') as { dst?: string }[]).map((e) => e.dst).filter((d): d is string => typeof d === 'string'));
  const want = new Set(lent.map(String));
  const added = [...want].filter((a) => !have.has(a));
  const removed = [...have].filter((a) => !want.has(a));
  if (lent.some((ip) => ip.family === 6)) await writeFile(`/proc/sys/net/ipv6/conf/${bridge}/proxy_ndp`, '1');
  for (const a of added) await runCommand(['ip', 'neigh', 'replace', 'proxy', a, 'dev', bridge]);
  const garp = loadNativeAddon<GarpAddon>('the IPAM proxy neighbours').garp;
  for (const a of added.map((text) => IP.parse(text)).filter((ip) => ip.family === 4)) garp(bridge, Buffer.from(a.toBytes()));
  for (const a of removed) await runCommand(['ip', 'neigh', 'del', 'proxy', a, 'dev', bridge], { check: false });
  return { added, removed };
}
