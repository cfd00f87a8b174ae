// The lender's half of an address that followed its pod away: this node's
// pods think every address of the node's subnet is on their link (the pod
// route is the /24 on eth0), so a pod here ARPs for the moved pod's address
// on the bridge. A proxy neighbour entry per lent address on the bridge makes
// the node answer for it (the kernel answers only when its own route for the
// address leaves by another device: the borrowed /32 toward the borrowing
// node), and forward it by that route. IPv6 also needs proxy_ndp on.
import type { IP } from '../core/cidr.js';
import { runCommand } from '../core/command.js';
import { writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';

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
  for (const a of removed) await runCommand(['ip', 'neigh', 'del', 'proxy', a, 'dev', bridge], { check: false });
  return { added, removed };
}
