// What the bgp backend leaves on a node outside the kernel state the
// reconciler owns: its BIRD. For `weft agent --teardown` and `weft status`.
import { join } from 'node:path';
import { oneLine } from '../../src/errors.js';
import type { NodeContext } from '../registry.js';
import { birdSocketPath, removeOwnBird, showBgpSessions } from './birdc.js';
import type { BgpSession } from './status.js';

/** Stops the node's own BIRD (never one behind --bird-socket) and flushes the routes it kept. */
export function removeNodeBird(node: NodeContext): Promise<boolean> {
  return removeOwnBird(join(node.runDir, 'bird'), node.network);
}

/** The BGP sessions of the node's BIRD, as JSON and as lines for `weft status`. */
export async function bgpNodeStatus(node: NodeContext): Promise<{ json: BgpStatus; lines: string[] }> {
  const bgp = await bgpSessions(node.birdSocket ?? birdSocketPath(join(node.runDir, 'bird')));
  return { json: bgp, lines: formatBgpSessions(bgp) };
}

interface BgpStatus {
  socket: string;
  sessions?: BgpSession[];
  /** Why BIRD could not be asked. */
  error?: string;
}

async function bgpSessions(socket: string): Promise<BgpStatus> {
  try {
    return { socket, sessions: await showBgpSessions(socket) };
  } catch (err) {
    return { socket, error: oneLine(err) };
  }
}

function formatBgpSessions(bgp: BgpStatus): string[] {
  if (!bgp.sessions) return [`bgp      ${bgp.error}`];
  const up = bgp.sessions.filter((s) => s.state === 'Established').length;
  const rows = [
    ['PEER', 'AS', 'STATE', 'SINCE', 'IMPORTED', 'EXPORTED', 'INFO'],
    ...bgp.sessions.map((s) => [s.peer || s.name, String(s.asn ?? '-'), s.state, s.since, String(s.importedRoutes), String(s.exportedRoutes), s.info]),
  ];
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return [
    `bgp      ${bgp.sessions.length} sessions, ${up} established (birdc -s ${bgp.socket})`,
    ...rows.map((r) => `  ${r.map((c, i) => c.padEnd(widths[i]! + 2)).join('').trimEnd()}`),
  ];
}
