// A checked UDP flow between two pods of a testbed: udp-flow.py beside this
// file sends it with UDP GSO (16 datagrams per system call, as QUIC stacks
// do) and verifies every datagram on arrival.
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { inNs, run } from './udp-testbed.js';

export const UDP_FLOW_SCRIPT = fileURLToPath(new URL('./udp-flow.py', import.meta.url));

export interface UdpFlowResult {
  /** Datagrams the receiver got, with their content intact, corrupt, or seen twice. */
  received: number;
  intact: number;
  corrupt: number;
  duplicates: number;
  /** The digest over the intact datagrams equals the one of the flow sent. */
  digestMatches: boolean;
}

/**
 * Sends `count` datagrams of `size` bytes from namespace `fromNs` to
 * `toIp`:`port` in `toNs`, paced (a train per millisecond) so that nothing
 * is lost to a full queue; the receiver keeps the datagram boundaries (no
 * UDP_GRO) and stops once all arrived or none came for a second.
 */
export async function countedUdpFlow(fromNs: string, toNs: string, toIp: string, port: number, count = 3000, size = 1400): Promise<UdpFlowResult> {
  const receiver = spawn('ip', ['netns', 'exec', toNs, 'python3', UDP_FLOW_SCRIPT, 'recv', String(port), '--count', String(count), '--idle-ms', '1000', ...(toIp.includes(':') ? ['--ipv6'] : [])], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  receiver.stdout.on('data', (d: Buffer) => (out += d.toString()));
  receiver.stderr.on('data', (d: Buffer) => (err += d.toString()));
  const exited = new Promise<void>((resolve) => receiver.once('exit', () => resolve()));
  try {
    const listening = await Promise.race([
      new Promise<boolean>((resolve) => receiver.stdout.on('data', () => out.includes('listening') && resolve(true))),
      exited.then(() => false),
    ]);
    if (!listening) throw new Error(`udp-flow receiver did not start: ${err.trim()}`);
    const sender = await inNs(fromNs, 'python3', [UDP_FLOW_SCRIPT, 'send', toIp, String(port), '--count', String(count), '--size', String(size), '--train', '16', '--gap-ms', '1'], 30_000);
    if (sender.code !== 0) throw new Error(`udp-flow sender failed: ${sender.stderr.trim()}`);
    await exited;
    const got = JSON.parse(out.trim().split('\n').pop() ?? '{}');
    const expected = (await run('python3', [UDP_FLOW_SCRIPT, 'digest', '--count', String(count), '--size', String(size)])).stdout.trim();
    return { received: got.received, intact: got.intact, corrupt: got.corrupt, duplicates: got.duplicates, digestMatches: got.digest === expected };
  } finally {
    receiver.kill('SIGKILL');
  }
}
