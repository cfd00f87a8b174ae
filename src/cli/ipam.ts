// weft ipam [--ipam-dir DIR] [--network NAME] [--cluster [etcd flags]] [--json]:
// what weft-ipam holds on this node, and the borrowed addresses in the cluster.
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { WeftError } from '../errors.js';
import type { IpamState, PodRef } from '../ipam/state.js';
import { DEFAULT_IPAM_DIR, readState, storePaths } from '../ipam/store.js';
import { etcdFlags, parseCommand } from './flags.js';
import { leasesFromFlags } from './leases.js';

const USAGE = `usage: weft ipam [flags]

Lists what weft-ipam (weft's IPAM plugin) holds on this node, per network:
each allocation (address, MAC, container, interface, pod, since when, pinned
or borrowed), the reservations kept for pinned pods that are away, the
addresses another node borrows from this one, and what the last reconcile
freed and why. With --cluster also every node's borrowed addresses, read
from the leases as "weft leases" reads them.

flags:
  --ipam-dir DIR          weft-ipam's dataDir (default ${DEFAULT_IPAM_DIR})
  --network NAME          only this network (the CNI config's name)
  --cluster               also list borrowed addresses in the cluster (etcd mode)
  --etcd-endpoints URLS   with --cluster: as for "weft leases"
  --etcd-prefix PREFIX    (also --etcd-cafile, --etcd-certfile, --etcd-keyfile)
  --net-conf FILE         with --cluster: validate leases against this file
  --json                  one JSON object instead of tables`;

export interface NetworkView {
  network: string;
  file: string;
  state: IpamState;
}

export interface ClusterBorrowed {
  node: string;
  subnet: string;
  borrowed: string[];
}

/** Every network's state under `dir` (or just `only`); a missing or unreadable store is a WeftError. */
export function readNetworks(dir: string, only?: string): NetworkView[] {
  if (!existsSync(dir)) throw new WeftError(`no weft-ipam store at ${dir}`, 'pass --ipam-dir with the dataDir of the weft-ipam config');
  // A directory without a state.json is not a network's store (nothing was allocated in it yet, or it is not weft's).
  const names = only !== undefined
    ? [only]
    : readdirSync(dir, { withFileTypes: true }).filter((d) => d.isDirectory() && existsSync(join(dir, d.name, 'state.json'))).map((d) => d.name).sort();
  return names.map((network) => {
    const { state: file } = storePaths(dir, network);
    if (only !== undefined && !existsSync(file)) throw new WeftError(`network ${network} has no state in ${dir}`, 'check --network against the CNI config\'s name');
    return { network, file, state: readState(file) };
  });
}

function podText(pod: PodRef | undefined): string {
  return pod ? `${pod.namespace}/${pod.name}` : '-';
}

function columns(rows: string[][]): string[] {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return rows.map((r) => r.map((cell, i) => (i === r.length - 1 ? cell : cell.padEnd(widths[i]!))).join('  '));
}

/** The tables `weft ipam` prints. */
export function formatIpam(networks: NetworkView[], cluster?: ClusterBorrowed[]): string {
  const out: string[] = [];
  for (const { network, file, state } of networks) {
    out.push(`network ${network} (${file})`);
    if (state.allocations.length === 0) out.push('  no allocations');
    else {
      const rows = [['ADDRESS', 'MAC', 'CONTAINER', 'IFNAME', 'POD', 'SINCE', 'KIND']];
      for (const a of state.allocations) {
        const kind = a.borrowed ? 'borrowed' : a.pinned ? 'pinned' : '-';
        rows.push([a.address, a.mac ?? '-', a.containerId.slice(0, 12), a.ifname, podText(a.pod), a.since, kind]);
      }
      out.push(...columns(rows).map((l) => `  ${l}`));
    }
    for (const r of state.reservations) out.push(`  reserved ${r.address} for pod ${podText(r.pod)}${r.mac ? ` (MAC ${r.mac})` : ''} since ${r.since}`);
    if (state.borrowedOut.length) out.push(`  borrowed by other nodes: ${state.borrowedOut.join(', ')}`);
    const last = state.lastReconcile;
    if (!last) out.push('  no reconcile yet');
    else {
      const freed = last.freed.map((f) => `${f.address} (${f.pod ? podText(f.pod) : `container ${f.containerId.slice(0, 12)}`}, ${f.reason})`);
      out.push(`  last reconcile ${last.at}: freed ${freed.length ? freed.join(', ') : 'nothing'}${last.error ? `; error: ${last.error}` : ''}`);
    }
  }
  if (cluster) {
    out.push('borrowed addresses in the cluster');
    out.push(...(cluster.length ? columns([['NODE', 'SUBNET', 'BORROWED'], ...cluster.map((c) => [c.node, c.subnet, c.borrowed.join(', ')])]).map((l) => `  ${l}`) : ['  none']));
  }
  return out.join('\n');
}

/** Each node's borrowed addresses, from the leases in etcd. */
async function clusterBorrowed(values: Record<string, string | boolean | undefined>): Promise<ClusterBorrowed[]> {
  const { leases } = await leasesFromFlags(values);
  const out: ClusterBorrowed[] = [];
  for (const row of leases) {
    if ('invalid' in row || !row.lease.attrs.borrowedIPs?.length) continue;
    const { subnet, attrs } = row.lease;
    out.push({ node: attrs.nodeName ?? attrs.publicIP.toString(), subnet: subnet.toString(), borrowed: attrs.borrowedIPs!.map((c) => c.ip.toString()) });
  }
  return out.sort((a, b) => a.node.localeCompare(b.node, 'en', { numeric: true }));
}

export async function run(argv: string[]): Promise<number> {
  const values = parseCommand(argv, {
    'ipam-dir': { type: 'string', default: DEFAULT_IPAM_DIR },
    network: { type: 'string' },
    cluster: { type: 'boolean', default: false },
    ...etcdFlags,
    'net-conf': { type: 'string' },
    json: { type: 'boolean', default: false },
  }, USAGE);
  if (!values) return 0;
  const networks = readNetworks(values['ipam-dir'], values.network);
  const cluster = values.cluster ? await clusterBorrowed(values) : undefined;
  if (values.json) {
    const doc = { networks: networks.map((n) => ({ network: n.network, file: n.file, ...n.state })), ...(cluster ? { cluster } : {}) };
    process.stdout.write(`${JSON.stringify(doc, null, 2)}\n`);
  } else {
    process.stdout.write(`${networks.length ? formatIpam(networks, cluster) : `no networks in ${values['ipam-dir']}`}\n`);
  }
  return 0;
}
