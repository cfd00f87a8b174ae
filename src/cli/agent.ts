import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { parseArgs } from 'node:util';
import { Agent } from '../agent/agent.js';
import { FileNetConfSource } from '../agent/config-source.js';
import type { NetConfSource } from '../config/source.js';
import { EtcdNetConfSource } from '../subnet/etcd/config-watch.js';
import { WeftError } from '../errors.js';
import { createIpamPodSource, createPolicySource, createSubnetManager } from '../agent/subnet-source.js';
import { DEFAULT_GC_GRACE_MS } from '../ipam/gc.js';
import { DEFAULT_IPAM_DIR } from '../ipam/store.js';
import { NetworkPolicyEnforcer } from '../agent/network-policy.js';
import { teardownNode } from '../agent/teardown.js';
import { etcdFlags, etcdOptionsFrom } from './flags.js';
import { createLogger, parseLogFormat } from './log.js';

const HELP = `usage: weft agent [flags]

  --etcd-endpoints URLS   etcd client URLs, comma-separated (default http://127.0.0.1:2379)
  --etcd-prefix PATH      key prefix (default /weft/network; /coreos.com/network reads flannel's)
  --etcd-cafile/--etcd-certfile/--etcd-keyfile FILE   TLS to etcd
  --kube-subnet-mgr       take the subnet from the Kubernetes node object instead of etcd
  --kubeconfig-file FILE  kubeconfig for --kube-subnet-mgr (default: in-cluster, else $KUBECONFIG)
  --no-network-policy     with --kube-subnet-mgr: do not enforce NetworkPolicy (another agent does)
  --iface NAME|IP         external interface (repeatable, first match wins; default: the default route's)
  --iface-regex RE        external interface by name or address pattern (repeatable)
  --public-ip IP          address published to peers (default: the interface's)
  --public-ipv6 IP        IPv6 address published to peers with EnableIPv6 (default: the interface's)
  --subnet-file PATH      where to write subnet.env (default /run/weft/subnet.env)
  --net-conf FILE         read net-conf.json from FILE instead of etcd
  --ip-masq               masquerade pod traffic leaving the cluster network
  --healthz-addr HOST:PORT  serve /healthz, /readyz, /metrics (default 0.0.0.0:10270; "" disables)
  --node-name NAME        node name (default $NODE_NAME, else the hostname)
  --run-dir DIR           runtime state (default /run/weft)
  --bird-socket PATH      bgp: configure the BIRD 2 listening on this control socket
                          instead of running BIRD under <run-dir>/bird
  --lease-ttl DURATION    subnet lease TTL, e.g. 24h, 90m, 30s (default 24h)
  --resync DURATION       periodic full data-plane resync (default 10s)
  --ipam-dir DIR          weft-ipam's store (the plugin's dataDir; default /var/lib/cni/weft-ipam):
                          the agent reclaims addresses whose network namespace (or, with
                          --kube-subnet-mgr, pod) is gone, and publishes borrowed addresses
  --ipam-reconcile-interval DURATION  how often (default 3m; also at start)
  --ipam-gc-grace DURATION  an allocation younger than this is never reclaimed (default 5m:
                          a pod being created is not in the API yet)
  --log-format text|json  plain log lines or JSON (default: text on a terminal, else json)
  --teardown              remove weft from this node (its routes, devices, udp loop process,
                          nftables table, subnet.env) and exit; the lease in etcd is left to expire

The agent follows net-conf after start (the --net-conf file; with --kube-subnet-mgr and no
--net-conf, /etc/weft/net-conf.json; else <etcd-prefix>/config): a change of Backend switches
backends without a restart; an invalid config, or a change of Network or SubnetLen, is
refused with one log line and the running backend stays.`;

export function parseDuration(text: string, flag: string): number {
  const m = /^(\d+)(ms|s|m|h)?$/.exec(text.trim());
  if (!m) throw new WeftError(`${flag} "${text}" is not a duration`, 'use e.g. 24h, 90m, 30s');
  const unit = { ms: 1, s: 1000, m: 60_000, h: 3600_000 }[(m[2] ?? 's') as 'ms' | 's' | 'm' | 'h'];
  return Number(m[1]) * unit;
}

/** CAP_NET_ADMIN (bit 12) in the effective set: without it nothing below works. */
function hasNetAdmin(): boolean {
  try {
    const m = /^CapEff:\s*([0-9a-f]+)$/m.exec(readFileSync('/proc/self/status', 'utf8'));
    return m ? (BigInt(`0x${m[1]}`) & (1n << 12n)) !== 0n : true;
  } catch {
    return true;
  }
}

export async function run(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      ...etcdFlags,
      'kube-subnet-mgr': { type: 'boolean', default: false },
      'kubeconfig-file': { type: 'string' },
      'no-network-policy': { type: 'boolean', default: false },
      iface: { type: 'string', multiple: true, default: [] },
      'iface-regex': { type: 'string', multiple: true, default: [] },
      'public-ip': { type: 'string' },
      'public-ipv6': { type: 'string' },
      'subnet-file': { type: 'string', default: '/run/weft/subnet.env' },
      'net-conf': { type: 'string' },
      'ip-masq': { type: 'boolean', default: false },
      'healthz-addr': { type: 'string', default: '0.0.0.0:10270' },
      'node-name': { type: 'string' },
      'run-dir': { type: 'string', default: '/run/weft' },
      'bird-socket': { type: 'string' },
      'lease-ttl': { type: 'string', default: '24h' },
      resync: { type: 'string', default: '10s' },
      'ipam-dir': { type: 'string', default: DEFAULT_IPAM_DIR },
      'ipam-reconcile-interval': { type: 'string', default: '3m' },
      'ipam-gc-grace': { type: 'string', default: `${DEFAULT_GC_GRACE_MS / 60_000}m` },
      teardown: { type: 'boolean', default: false },
      'log-format': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
  });
  if (values.help) {
    process.stdout.write(HELP + '\n');
    return 0;
  }
  if (!hasNetAdmin()) {
    throw new WeftError('missing CAP_NET_ADMIN: weft cannot program routes or devices', 'run as root or grant the NET_ADMIN capability');
  }
  const ttlMs = parseDuration(values['lease-ttl'] ?? '24h', '--lease-ttl');
  if (ttlMs < 2000) throw new WeftError(`--lease-ttl ${values['lease-ttl']} is too short`, 'use at least 2s');
  const nodeName = values['node-name'] || process.env.NODE_NAME || hostname();
  const logger = createLogger({ name: 'weft-agent', format: parseLogFormat(values['log-format'] ?? process.env.WEFT_LOG_FORMAT) }).child({ node: nodeName });
  const subnetFile = values['subnet-file'] ?? '/run/weft/subnet.env';
  const runDir = values['run-dir'] ?? '/run/weft';
  if (values.teardown) {
    await teardownNode({ subnetFile, runDir, logger });
    return 0;
  }

  const etcd = etcdOptionsFrom(values);
  const netConfFile = values['net-conf'];
  const subnetManager = await createSubnetManager({
    kube: values['kube-subnet-mgr'] ?? false,
    kubeconfigFile: values['kubeconfig-file'],
    etcd,
    ttlSeconds: Math.round(ttlMs / 1000),
    netConfFile,
    nodeName,
    logger,
  });
  // Followed for live backend switches: the file (in kube mode, the mounted ConfigMap) or <prefix>/config.
  const followedFile = netConfFile ?? (values['kube-subnet-mgr'] ? (await import('../subnet/kube/manager.js')).KUBE_NET_CONF_FILE : undefined);
  const configLogger = logger.child({ component: 'config' });
  const configSource: NetConfSource = followedFile
    ? new FileNetConfSource({ path: followedFile, logger: configLogger })
    : new EtcdNetConfSource({ etcd, logger: configLogger });
  // NetworkPolicy needs pods and policies, which only the Kubernetes API has: etcd mode enforces none.
  const policy = values['kube-subnet-mgr'] && !values['no-network-policy']
    ? new NetworkPolicyEnforcer({ source: await createPolicySource({ kubeconfigFile: values['kubeconfig-file'], logger }), nodeName, logger })
    : undefined;
  const ipamReconcileMs = parseDuration(values['ipam-reconcile-interval'] ?? '3m', '--ipam-reconcile-interval');
  if (ipamReconcileMs < 1000) throw new WeftError(`--ipam-reconcile-interval ${values['ipam-reconcile-interval']} is too short`, 'use at least 1s');
  const ipam = {
    dir: values['ipam-dir'] || DEFAULT_IPAM_DIR,
    reconcileMs: ipamReconcileMs,
    graceMs: parseDuration(values['ipam-gc-grace'] ?? '5m', '--ipam-gc-grace'),
    ...(values['kube-subnet-mgr'] ? { pods: await createIpamPodSource({ kubeconfigFile: values['kubeconfig-file'], nodeName, logger }) } : {}),
  };
  const agent = new Agent({
    subnetManager,
    netConfFile,
    configSource,
    iface: { ifaces: values.iface ?? [], regexes: values['iface-regex'] ?? [], publicIP: values['public-ip'], publicIPv6: values['public-ipv6'] },
    subnetFile,
    runDir,
    healthzAddr: values['healthz-addr'] || undefined,
    nodeName,
    birdSocket: values['bird-socket'] || undefined,
    ipMasq: values['ip-masq'] ?? false,
    resyncMs: parseDuration(values.resync ?? '10s', '--resync'),
    // A lease blocking ours goes at the earliest when it expires: trying more often than a quarter TTL gains nothing.
    blockedRetryMs: Math.min(60_000, Math.max(1000, ttlMs / 4)),
    ...(policy ? { policy } : {}),
    ipam,
    logger,
  });

  const stop = new AbortController();
  const onSignal = (sig: string): void => {
    logger.info({ signal: sig }, 'stopping; routes, devices and the nftables table stay in place');
    stop.abort();
  };
  process.once('SIGTERM', () => onSignal('SIGTERM'));
  process.once('SIGINT', () => onSignal('SIGINT'));
  // A signal during start-up (e.g. while etcd is still unreachable) is a normal stop, not an error.
  await agent.run(stop.signal).catch((err: unknown) => {
    if (!stop.signal.aborted) throw err;
  });
  return 0;
}
