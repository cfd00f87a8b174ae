// A pinned pod away from its subnet, as the e2e tests of borrowed addresses
// need it: a namespace holding one /32 behind a node, and the host route to
// it on that node that the CNI plugin would add. The node answers the pod's
// ARP for anything (proxy ARP), the way a gateway-less pod is reached.
import { runCommand } from '../../../src/lab/command.js';

/**
 * Creates namespace `podNs` with `ip`/32 on its eth0, a veth whose other
 * end is `hostDev` in `nodeNs`, and the /32 route there; the node forwards.
 * The caller removes `podNs` (deleting it removes the veth and the route).
 */
export async function addPinnedPod(nodeNs: string, podNs: string, hostDev: string, ip: string): Promise<void> {
  const run = (argv: string[]) => runCommand(argv);
  await run(['ip', 'netns', 'add', podNs]);
  await run(['ip', '-n', nodeNs, 'link', 'add', hostDev, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', podNs]);
  await run(['ip', '-n', podNs, 'addr', 'add', `${ip}/32`, 'dev', 'eth0']);
  await run(['ip', '-n', podNs, 'link', 'set', 'eth0', 'up']);
  await run(['ip', '-n', podNs, 'route', 'add', 'default', 'dev', 'eth0']);
  await run(['ip', 'netns', 'exec', nodeNs, 'sysctl', '-qw', `net.ipv4.conf.${hostDev}.proxy_arp=1`, 'net.ipv4.ip_forward=1']);
  await run(['ip', '-n', nodeNs, 'link', 'set', hostDev, 'up']);
  await run(['ip', '-n', nodeNs, 'route', 'add', `${ip}/32`, 'dev', hostDev]);
}
