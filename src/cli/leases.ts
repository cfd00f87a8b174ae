// weft leases [etcd flags] [--net-conf FILE] [--json]: the subnet leases in etcd.
import { parseArgs } from 'node:util';
import { loadNetConfFile } from '../config/parse.js';
import { oneLine } from '../errors.js';
import { listLeases, type LeaseListing } from '../subnet/etcd/manager.js';
import { createLogger } from './log.js';
import { etcdFlags, etcdOptionsFrom } from './flags.js';

const USAGE = `usage: weft leases [flags]

Lists every subnet lease in etcd: subnet, PublicIP, backend, node and the time
left on its TTL ("reservation" for a key without one). A dual-stack lease shows
both subnets and both addresses, IPv4 first. Entries weft cannot use are listed
as "invalid: <reason>", entries it uses only in part as "partly used: <reason>".

flags:
  --etcd-endpoints URLS   comma-separated etcd URLs (default http://127.0.0.1:2379)
  --etcd-prefix PREFIX    key prefix (default /weft/network; flannel: /coreos.com/network)
  --etcd-cafile FILE      CA certificate for a TLS etcd
  --etcd-certfile FILE    client certificate
  --etcd-keyfile FILE     client key
  --net-conf FILE         validate against this net-conf.json instead of <prefix>/config
  --json                  one JSON array instead of a table`;

/** "23h59m", "4m05s", "12s". */
function formatTtl(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const sec = s % 60;
  if (h > 0) return `${h}h${String(m).padStart(2, '0')}m`;
  if (m > 0) return `${m}m${String(sec).padStart(2, '0')}s`;
  return `${sec}s`;
}

/** Keys and reasons come from etcd: never let them put control characters on a terminal. */
function printable(text: string): string {
  return text.replace(/\p{Cc}/gu, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`);
}

function toJson(row: LeaseListing, now: number): Record<string, unknown> {
  if ('invalid' in row) return { key: row.key, invalid: row.invalid };
  const { subnet, ipv6Subnet, attrs, expiresAt } = row.lease;
  return {
    key: row.key,
    subnet: subnet.toString(),
    publicIP: attrs.publicIP.toString(),
    ...(ipv6Subnet && attrs.publicIPv6 ? { ipv6Subnet: ipv6Subnet.toString(), publicIPv6: attrs.publicIPv6.toString() } : {}),
    backendType: attrs.backendType,
    backendData: attrs.backendData,
    ...(ipv6Subnet ? { backendV6Data: attrs.backendV6Data ?? null } : {}),
    nodeName: attrs.nodeName ?? null,
    ...(attrs.borrowedIPs ? { borrowedIPs: attrs.borrowedIPs.map(String) } : {}),
    reservation: expiresAt === undefined,
    ttlSeconds: expiresAt === undefined ? null : Math.max(0, Math.round((expiresAt - now) / 1000)),
    ...(row.warning ? { partlyUsed: row.warning } : {}),
  };
}

/** "10.244.1.0/24" or, for a dual-stack lease, "10.244.1.0/24,fd00:10:244:1::/64" (Kubernetes' podCIDRs spelling). */
function bothFamilies(v4: { toString(): string }, v6: { toString(): string } | undefined): string {
  return v6 === undefined ? v4.toString() : `${v4},${v6}`;
}

function table(rows: LeaseListing[], now: number): string {
  const lines: string[][] = [['SUBNET', 'PUBLIC-IP', 'BACKEND', 'NODE', 'TTL']];
  const notes: string[] = [];
  for (const row of rows) {
    if ('invalid' in row) {
      notes.push(printable(`${row.key}  invalid: ${row.invalid}`));
      continue;
    }
    if (row.warning) notes.push(printable(`${row.key}  partly used: ${row.warning}`));
    const { subnet, ipv6Subnet, attrs, expiresAt } = row.lease;
    const ttl = expiresAt === undefined ? 'reservation' : formatTtl(expiresAt - now);
    const publicIPs = bothFamilies(attrs.publicIP, ipv6Subnet && attrs.publicIPv6);
    lines.push([bothFamilies(subnet, ipv6Subnet), publicIPs, attrs.backendType, printable(attrs.nodeName ?? '-'), ttl]);
    if (attrs.borrowedIPs) notes.push(`${row.key}  borrows: ${attrs.borrowedIPs.join(', ')}`);
  }
  const widths = lines[0]!.map((_, i) => Math.max(...lines.map((l) => l[i]!.length)));
  const out = lines.map((l) => l.map((cell, i) => (i === l.length - 1 ? cell : cell.padEnd(widths[i]!))).join('  '));
  return [...out, ...notes].join('\n');
}

/** Every lease in etcd, read with the etcd and --net-conf flags `weft leases` takes (weft ipam --cluster too). */
export async function leasesFromFlags(values: Record<string, string | boolean | undefined>) {
  const str = (k: string) => (typeof values[k] === 'string' ? (values[k] as string) : undefined);
  const etcd = etcdOptionsFrom({
    'etcd-endpoints': str('etcd-endpoints'),
    'etcd-prefix': str('etcd-prefix'),
    'etcd-cafile': str('etcd-cafile'),
    'etcd-certfile': str('etcd-certfile'),
    'etcd-keyfile': str('etcd-keyfile'),
  });
  const netConfFile = str('net-conf');
  const { leases } = await listLeases({
    etcd,
    logger: createLogger({ level: 'error' }),
    netConf: netConfFile ? loadNetConfFile(netConfFile) : undefined,
  });
  return { etcd, leases };
}

export async function run(argv: string[]): Promise<number> {
  let values: Record<string, string | boolean | undefined>;
  try {
    values = parseArgs({
      args: argv,
      options: { ...etcdFlags, 'net-conf': { type: 'string' }, json: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } },
      strict: true,
    }).values;
  } catch (err) {
    process.stderr.write(`weft leases: ${oneLine(err)}\n${USAGE.split('\n')[0]}\n`);
    return 2;
  }
  if (values.help) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  const { etcd, leases } = await leasesFromFlags(values);
  const now = Date.now();
  leases.sort((a, b) => a.key.localeCompare(b.key, 'en', { numeric: true }));
  if (values.json) {
    process.stdout.write(`${JSON.stringify(leases.map((r) => toJson(r, now)), null, 2)}\n`);
  } else if (leases.length === 0) {
    process.stdout.write(`no leases under ${etcd.prefix}/subnets/\n`);
  } else {
    process.stdout.write(`${table(leases, now)}\n`);
  }
  return 0;
}
