// Pods on one node talk across the CNI bridge: those frames are switched, not
// routed, and nftables' inet hooks see them only through br_netfilter with
// bridge-nf-call-iptables (and -ip6tables) on. NetworkPolicy between two pods
// of one node depends on it.
import { readFile, writeFile } from 'node:fs/promises';
import type { Family } from '../core/cidr.js';
import { WeftError } from '../errors.js';

const SYSCTL_DIR = '/proc/sys/net/bridge';
const KEY: Record<Family, string> = { 4: 'bridge-nf-call-iptables', 6: 'bridge-nf-call-ip6tables' };

/**
 * Makes bridged traffic of `families` pass nftables' inet hooks. Returns the
 * sysctls it had to turn on (empty when they were on); throws one line when
 * br_netfilter is not loaded.
 */
export async function ensureBridgeNetfilter(families: readonly Family[], dir = SYSCTL_DIR): Promise<string[]> {
  const turnedOn: string[] = [];
  for (const family of families) {
    const file = `${dir}/${KEY[family]}`;
    let value: string;
    try {
      value = (await readFile(file, 'utf8')).trim();
    } catch {
      throw new WeftError(
        'the br_netfilter module is not loaded, so traffic between two pods of this node (switched by the CNI bridge) bypasses NetworkPolicy',
        'load it (modprobe br_netfilter; on the host, add br_netfilter to /etc/modules-load.d/)',
      );
    }
    if (value === '1') continue;
    await writeFile(file, '1').catch((err: NodeJS.ErrnoException) => {
      throw new WeftError(`cannot set net.bridge.${KEY[family]}=1 (${err.code ?? err.message}), so traffic between two pods of this node bypasses NetworkPolicy`, 'run weft with CAP_NET_ADMIN and a writable /proc/sys, or set it on the host');
    });
    turnedOn.push(`net.bridge.${KEY[family]}`);
  }
  return turnedOn;
}
