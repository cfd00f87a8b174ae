// SubnetManager on the Kubernetes API (--kube-subnet-mgr): the node's subnets
// are spec.podCIDRs (allocated by kube-controller-manager; the IPv6 one is
// the IPv6 half of a dual-stack lease), this node's lease
// attributes are published as annotations, peers come from a node watch.
import { hostname } from 'node:os';
import { KubeConfig } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import type { NetConf } from '../../config/netconf.js';
import { loadNetConfFile } from '../../config/parse.js';
import { WeftError, oneLine } from '../../errors.js';
import { Backoff, sleep } from '../../core/backoff.js';
import { SaidOnce } from '../../core/said-once.js';
import { loggedSteps } from '../../core/retry-log.js';
import { sameSubnets, withoutIPv6, type Lease, type LeaseAttrs, type LeaseEvent } from '../lease.js';
import { LeaseGoneError, type SubnetManager } from '../manager.js';
import { KubeApi } from './api.js';
import { listAndWatch } from './list-watch.js';
import { NodeLeaseTable } from './lease-table.js';
import { leaseAnnotations, nodeLease, podCidrsOf, podCidrsText, type NodeObject, type PodCidrs } from './node-lease.js';

/** Where the DaemonSet mounts the weft-config ConfigMap's net-conf.json. */
export const KUBE_NET_CONF_FILE = '/etc/weft/net-conf.json';

export interface KubeSubnetManagerOptions {
  nodeName: string;
  /** net-conf.json, normally the mounted ConfigMap; read again on every getNetworkConfig. */
  netConfFile: string;
  kubeConfig: KubeConfig;
  logger: Logger;
  /** The API server ends each watch after this long and weft resumes it (default 300 s). */
  watchTimeoutSeconds?: number;
  /** Deadline of one non-watch request (default 30 s). */
  requestTimeoutMs?: number;
}

/** The node name: NODE_NAME (downward API) if set, else the hostname. */
export function kubeNodeName(env: NodeJS.ProcessEnv = process.env, host: string = hostname()): string {
  return env.NODE_NAME?.trim() || host;
}

/**
 * The API server to talk to: a kubeconfig file if given, else the pod's
 * service account when running in a cluster, else $KUBECONFIG / ~/.kube/config.
 */
export function loadKubeConfig(path?: string): KubeConfig {
  const kc = new KubeConfig();
  try {
    if (path) kc.loadFromFile(path);
    else if (process.env.KUBERNETES_SERVICE_HOST) kc.loadFromCluster();
    else kc.loadFromDefault();
  } catch (err) {
    throw new WeftError(`cannot load the Kubernetes client config${path ? ` ${path}` : ''} (${oneLine(err)})`, 'run weft in a pod with its ServiceAccount, or set KUBECONFIG');
  }
  if (!kc.getCurrentCluster()) {
    throw new WeftError('no Kubernetes API server configured', 'run weft in a pod with its ServiceAccount, or set KUBECONFIG');
  }
  return kc;
}

export class KubeSubnetManager implements SubnetManager {
  private readonly api: KubeApi;
  private readonly log: Logger;
  private netConf: NetConf | undefined;
  /** node name -> the warning already logged for it, so each bad node is reported once. */
  private readonly warned = new SaidOnce();
  private readonly closing = new AbortController();
  /**
   * What the node watch has done: watch events received (bookmarks
   * included), node objects parsed into leases, and batches of lease events
   * handed to the agent (each one a data-plane programming pass there).
   */
  readonly watchCounters = { events: 0, parses: 0, leaseBatches: 0 };

  constructor(private readonly opts: KubeSubnetManagerOptions) {
    this.api = new KubeApi(opts.kubeConfig, opts.requestTimeoutMs);
    this.log = opts.logger.child({ subnetManager: 'kube' });
  }

  async getNetworkConfig(): Promise<NetConf> {
    this.netConf = loadNetConfFile(this.opts.netConfFile);
    return this.netConf;
  }

  /**
   * This node's podCIDR, waiting for kube-controller-manager to assign one,
   * with its IPv6 podCIDR as the IPv6 half when the net-conf has an IPv6
   * range and attrs.publicIPv6 is set; publishes attrs. `prefer` does not
   * apply: the podCIDRs are authoritative.
   */
  async acquireLease(attrs: LeaseAttrs, opts: { signal?: AbortSignal } = {}): Promise<Lease> {
    const name = this.opts.nodeName;
    const net = this.netConf ?? (await this.getNetworkConfig());
    const backoff = new Backoff({ maxMs: 5000, ...loggedSteps(`reading node ${name}`, this.log) });
    let waitLogged = false;
    for (;;) {
      opts.signal?.throwIfAborted();
      let node;
      try {
        node = await this.api.getNode(name, opts.signal);
      } catch (err) {
        if (err instanceof WeftError) throw err;
        if (!(await backoff.wait(err, opts.signal))) opts.signal?.throwIfAborted();
        continue;
      }
      if (!node) {
        throw new WeftError(`node "${name}" does not exist in the API server`, 'set NODE_NAME from the downward API (spec.nodeName) or pass --node-name');
      }
      const lease = this.ownLease(node, net, attrs);
      if (!lease) {
        if (!waitLogged) this.log.info({ node: name }, 'waiting for kube-controller-manager to assign spec.podCIDR (--allocate-node-cidrs)');
        waitLogged = true;
        if (!(await sleep(1000, opts.signal))) opts.signal?.throwIfAborted();
        continue;
      }
      await this.publish(node, lease.attrs, opts.signal);
      this.log.info({ subnet: lease.subnet.toString(), ...(lease.ipv6Subnet ? { ipv6Subnet: lease.ipv6Subnet.toString() } : {}) }, 'using the node podCIDR');
      return lease;
    }
  }

  /**
   * Re-reads the node: gone or re-addressed (either family, or an IPv6 half
   * gained or lost) means the lease is gone; republishes attrs of both halves.
   */
  async renewLease(lease: Lease, signal?: AbortSignal): Promise<Lease> {
    const net = this.netConf ?? (await this.getNetworkConfig());
    const node = await this.api.getNode(this.opts.nodeName, signal);
    const now = node && this.ownLease(node, net, lease.attrs);
    if (!node || !now || !sameSubnets(now, lease)) throw new LeaseGoneError(lease.subnet);
    await this.publish(node, now.attrs, signal);
    return now;
  }

  /** Sets the node condition NetworkUnavailable=False; the agent calls it once pods can be wired. */
  async markNetworkAvailable(signal?: AbortSignal): Promise<void> {
    await this.api.patchConditions(
      this.opts.nodeName,
      [{ type: 'NetworkUnavailable', status: 'False', reason: 'WeftIsUp', message: 'weft is running on this node' }],
      signal,
    );
  }

  async watchLeases(onEvents: (events: LeaseEvent[], snapshot: boolean) => void, signal: AbortSignal): Promise<void> {
    const stop = anySignal(signal, this.closing.signal);
    const known = new NodeLeaseTable((node, net) => this.leaseOf(node, net));
    let net: NetConf | undefined;
    let snapshotSent = false;
    await listAndWatch<NodeObject>(
      {
        resource: 'nodes',
        logger: this.log,
        ...(this.opts.watchTimeoutSeconds !== undefined ? { watchTimeoutSeconds: this.opts.watchTimeoutSeconds } : {}),
        source: {
          list: async (s) => {
            net = this.netConf ?? (await this.getNetworkConfig());
            const list = await this.api.listNodes(s);
            return { items: list.items as NodeObject[], resourceVersion: list.resourceVersion };
          },
          watch: (rv, o, onEvent) => this.api.watch('nodes', rv, o, onEvent),
        },
        onList: (items) => {
          // The first list's events are every lease, "added"; a later one's what changed meanwhile.
          const events = known.replace(items, net!);
          this.forgetWarnings(new Set(items.map((n) => n.metadata?.name ?? '')));
          if (!snapshotSent || events.length) {
            this.watchCounters.leaseBatches++;
            onEvents(events, !snapshotSent);
          }
          snapshotSent = true;
        },
        onEvent: (event) => {
          this.watchCounters.events++;
          if (event.type === 'BOOKMARK') return;
          const node = event.object as NodeObject;
          if (event.type === 'DELETED') this.warned.forget(String(node?.metadata?.name ?? ''));
          // Heartbeats (status only) stop here, before any parsing: nothing weft reads changed.
          const events = known.apply(event.type, node, this.netConf ?? net!);
          if (events.length) {
            this.watchCounters.leaseBatches++;
            try {
              onEvents(events, false);
            } catch (err) {
              this.log.error({ err: oneLine(err) }, 'lease event handler failed');
            }
          }
        },
      },
      stop,
    );
  }

  async close(): Promise<void> {
    this.closing.abort();
  }

  private podCidrs(node: NodeObject): PodCidrs {
    try {
      return podCidrsOf(node);
    } catch (err) {
      throw new WeftError(`node ${this.opts.nodeName}: ${(err as Error).message}`, 'fix the node object or the controller-manager that assigned it');
    }
  }

  /**
   * This node's lease from its node object, or undefined before it has a
   * podCIDR. Dual-stack when the net-conf has an IPv6 range and attrs carry
   * PublicIPv6; throws one line when the podCIDRs cannot serve that.
   */
  private ownLease(node: NodeObject, net: NetConf, attrs: LeaseAttrs): Lease | undefined {
    const name = this.opts.nodeName;
    const cidrs = this.podCidrs(node);
    const { subnet, ipv6Subnet } = cidrs;
    if (!subnet) return undefined;
    if (!net.network.covers(subnet)) {
      throw new WeftError(
        `node ${name} has podCIDR ${subnet}, outside the net-conf Network ${net.network}`,
        "make net-conf Network match kube-controller-manager's --cluster-cidr",
      );
    }
    if (!net.ipv6 || !attrs.publicIPv6) return { subnet, attrs: { ...withoutIPv6(attrs), nodeName: name } };
    if (!ipv6Subnet) {
      throw new WeftError(
        `node ${name} has no IPv6 range in spec.podCIDRs (${podCidrsText(cidrs)}), but net-conf has EnableIPv6`,
        'give kube-controller-manager a dual-stack --cluster-cidr (IPv4,IPv6) so nodes get an IPv6 podCIDR, or set EnableIPv6 false',
      );
    }
    if (!net.ipv6.network.covers(ipv6Subnet)) {
      throw new WeftError(
        `node ${name} has IPv6 podCIDR ${ipv6Subnet}, outside the net-conf IPv6Network ${net.ipv6.network}`,
        "make net-conf IPv6Network match the IPv6 part of kube-controller-manager's --cluster-cidr",
      );
    }
    return { subnet, ipv6Subnet, attrs: { ...attrs, nodeName: name } };
  }

  private async publish(node: NodeObject, attrs: LeaseAttrs, signal?: AbortSignal): Promise<void> {
    const want = leaseAnnotations(attrs);
    const have = node.metadata?.annotations ?? {};
    const changed = Object.fromEntries(Object.entries(want).filter(([k, v]) => (have[k] ?? null) !== v));
    if (Object.keys(changed).length === 0) return;
    await this.api.patchAnnotations(this.opts.nodeName, changed, signal);
  }

  private leaseOf(node: NodeObject, net: NetConf): Lease | undefined {
    const name = node.metadata?.name ?? '';
    this.watchCounters.parses++;
    const result = nodeLease(node, net);
    if (result.kind === 'invalid') {
      if (this.warned.news(name, result.reason)) {
        this.log.warn({ node: name.slice(0, 253), reason: result.reason }, 'ignoring node with an invalid weft lease');
      }
      return undefined;
    }
    if (result.kind === 'lease' && result.warning) {
      if (this.warned.news(name, result.warning)) {
        this.log.warn({ node: name.slice(0, 253), reason: result.warning }, 'using only part of a node lease');
      }
    } else {
      this.warned.forget(name);
    }
    return result.kind === 'lease' ? result.lease : undefined;
  }

  private forgetWarnings(present: Set<string>): void {
    this.warned.retain(present);
  }
}

function anySignal(a: AbortSignal, b: AbortSignal): AbortSignal {
  return (AbortSignal as unknown as { any(s: AbortSignal[]): AbortSignal }).any([a, b]);
}
