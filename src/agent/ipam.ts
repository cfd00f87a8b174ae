// The node agent's half of weft IPAM (the CNI plugin allocates; this keeps
// the stores honest): on start and every interval it reclaims addresses whose
// network namespace or pod is gone (ipam-reconcile.ts); it publishes the
// addresses its pinned pods borrowed from other nodes' subnets in its lease;
// it records the addresses peers borrowed from this node's subnet in the
// stores, so the allocator never hands them out; and in kube mode it answers
// the plugin's pins socket (ipam-pins-server.ts). Work runs one pass at a
// time; every change is one log line.
import { rm } from 'node:fs/promises';
import type { Logger } from 'pino';
import { Cidr, IP, type Family } from '../core/cidr.js';
import { SaidOnce } from '../core/said-once.js';
import { SerialQueue } from '../core/serial-queue.js';
import { sleep } from '../core/backoff.js';
import { confNetworks, type NetConf } from '../config/netconf.js';
import { oneLine } from '../errors.js';
import type { GcReason } from '../ipam/gc.js';
import { readState } from '../ipam/store.js';
import { borrowedIPProblem, type Lease } from '../subnet/lease.js';
import type { IpamPodSource } from '../ipam/pod-source.js';
import { servePins, type PinsServer } from './ipam-pins-server.js';
import type { LentNeighbourChange } from './ipam-proxy.js';
import { networkStores, reconcileStore, visibleNetns, type StoreOutcome } from './ipam-reconcile.js';
import { single, type MetricFamily } from './metrics.js';

export const DEFAULT_IPAM_RECONCILE_MS = 3 * 60_000;

const GC_REASONS: readonly GcReason[] = ['not-attached', 'netns-gone', 'pod-gone', 'pod-replaced'];

export interface NodeIpamOptions {
  /** The plugin's dataDir: one store per network under it. */
  ipamDir: string;
  intervalMs: number;
  graceMs: number;
  logger: Logger;
  /** Kube mode: this node's pods, served to the plugin on `socketPath`. */
  pods?: IpamPodSource;
  /** The pins socket's path (beside subnet.env); outside kube mode a placeholder left there is removed. */
  socketPath?: string;
  /** This node's lease and config as the agent holds them now. */
  own: () => Lease | undefined;
  config: () => NetConf | undefined;
  /** Publishes the node's borrowed addresses in its lease (LeaseKeeper.setBorrowedIPs). */
  publishBorrowed: (ips: Cidr[], signal: AbortSignal) => Promise<void>;
  /** Makes the node answer for its lent addresses on the pods' bridge (ipam-proxy.ts); absent: nothing is done. */
  lentNeighbours?: (lent: IP[]) => Promise<LentNeighbourChange>;
  now?: () => Date;
  /** Whether a path exists (tests fake the netns directory). */
  exists?: (path: string) => boolean;
}

export class NodeIpam {
  private readonly log: Logger;
  private readonly work = new SerialQueue();
  private readonly said = new SaidOnce(1000);
  /** The peers' leases; undefined until the agent has its first snapshot (until then borrowedOut is left alone). */
  private peers?: readonly Lease[];
  private lentPending?: Promise<void>;
  /** The agent's, once run() starts; passes run before it (tests) are never cut short. */
  private signal: AbortSignal = new AbortController().signal;
  private pins?: PinsServer;
  private published: string[] = [];
  private readonly reclaimed = new Map<GcReason, number>(GC_REASONS.map((r) => [r, 0]));
  private allocations = new Map<Family, number>([[4, 0], [6, 0]]);
  private lent = 0;
  private lastReconcileMs = 0;
  private placeholderCleared = false;
  private reconcileErrors = 0;

  constructor(private readonly opts: NodeIpamOptions) {
    this.log = opts.logger.child({ component: 'ipam' });
  }

  /** Serves the pins socket (kube mode) and reconciles now and every interval until `signal` aborts; then closes the socket. */
  async run(signal: AbortSignal): Promise<void> {
    this.signal = signal;
    try {
      while (!signal.aborted) {
        await this.listenPins();
        await this.reconcile().catch((err: unknown) => this.log.error(`IPAM reconcile failed: ${oneLine(err)}; retrying in ${this.opts.intervalMs / 1000} s`));
        await sleep(this.opts.intervalMs, signal);
      }
    } finally {
      await this.pins?.close();
    }
  }

  /** Opens the pins socket if it should be and is not open yet; a failure is one line and is tried again next pass. */
  private async listenPins(): Promise<void> {
    const { pods, socketPath } = this.opts;
    if (!pods) {
      // Not kube mode: nothing pins, so a placeholder left from kube mode must not hold pods back.
      if (socketPath && !this.placeholderCleared) await rm(socketPath, { force: true }).catch(() => undefined);
      this.placeholderCleared = true;
      return;
    }
    if (!socketPath || this.pins) return;
    try {
      this.pins = await servePins({
        socketPath,
        pods,
        networks: () => {
          const conf = this.opts.config();
          return conf && confNetworks(conf);
        },
        sync: () => this.sync(),
        logger: this.log,
      });
      this.said.forget('pins');
    } catch (err) {
      if (this.said.news('pins', oneLine(err))) this.log.error(`${oneLine(err)}; pods on this node get no pinned address until it listens (tried again every ${this.opts.intervalMs / 1000} s)`);
    }
  }

  /** One full pass: reclaim, sync borrowedOut, publish borrowed addresses. */
  reconcile(): Promise<void> {
    return this.work.run(async () => {
      const started = Date.now();
      const now = this.opts.now?.() ?? new Date();
      const pods = this.opts.pods?.nodePods();
      if (this.opts.pods && !pods && this.said.news('pods', 'unlisted')) this.log.info('IPAM reconcile: pods not listed yet; this pass checks network namespaces only');
      const lent = this.lentInput();
      const outcomes = this.eachStore({
        now,
        gc: { graceMs: this.opts.graceMs, existingNetns: (paths) => this.existingNetns(paths), ...(pods ? { pods } : {}) },
        ...lent,
      });
      if (lent.borrowedOut) await this.answerForLent(outcomes);
      this.lastReconcileMs = now.getTime();
      const freed = outcomes.reduce((n, o) => n + o.freed.length, 0);
      const kept = outcomes.reduce((n, o) => n + o.state.allocations.length, 0);
      this.log.info({ freed, allocations: kept, networks: outcomes.length, ms: Date.now() - started }, `IPAM reconcile freed ${freed} address${freed === 1 ? '' : 'es'}; ${kept} allocated on this node`);
      await this.publishNow();
    });
  }

  /** POST sync from the plugin: republish borrowed addresses now. */
  sync(): Promise<void> {
    return this.work.run(() => this.publishNow());
  }

  /** The agent's peers changed: the addresses they borrow from this node's subnets go into the stores (coalesced). */
  peersChanged(peers: readonly Lease[]): void {
    this.peers = peers;
    if (this.lentPending) return;
    this.lentPending = this.work.run(async () => {
      this.lentPending = undefined;
      const lent = this.lentInput();
      const outcomes = this.eachStore({ now: this.opts.now?.() ?? new Date(), ...lent });
      if (lent.borrowedOut) await this.answerForLent(outcomes);
    });
    this.lentPending.catch((err: unknown) => this.log.error(`IPAM: recording peers' borrowed addresses failed: ${oneLine(err)}`));
  }

  private lentInput(): { borrowedOut?: IP[] } {
    const own = this.opts.own();
    if (!own || !this.peers) return {};
    const mine = [own.subnet, ...(own.ipv6Subnet ? [own.ipv6Subnet] : [])];
    const out: IP[] = [];
    for (const peer of this.peers) {
      if (peer.subnet.equals(own.subnet)) continue;
      for (const c of peer.attrs.borrowedIPs ?? []) if (mine.some((m) => m.contains(c.ip))) out.push(c.ip);
    }
    return { borrowedOut: out };
  }

  /** Runs one pass over every store; a store that cannot be read is one line (once per cause), the rest go on. */
  private eachStore(inputs: Parameters<typeof reconcileStore>[1]): StoreOutcome[] {
    let stores;
    try {
      stores = networkStores(this.opts.ipamDir);
    } catch (err) {
      this.reconcileErrors++;
      if (this.said.news('dir', oneLine(err))) this.log.error(`cannot list the IPAM directory ${this.opts.ipamDir}: ${oneLine(err)}; pods are left as they are`);
      return [];
    }
    const outcomes: StoreOutcome[] = [];
    for (const store of stores) {
      try {
        const o = reconcileStore(store, inputs);
        this.said.forget(`store ${store.network}`);
        this.report(o);
        outcomes.push(o);
      } catch (err) {
        this.reconcileErrors++;
        if (this.said.news(`store ${store.network}`, oneLine(err))) this.log.error(`IPAM network ${store.network} not reconciled: ${oneLine(err)}; its pods are left as they are`);
      }
    }
    if (inputs.gc) {
      const counts = new Map<Family, number>([[4, 0], [6, 0]]);
      for (const o of outcomes) for (const a of o.state.allocations) counts.set(a.family, (counts.get(a.family) ?? 0) + 1);
      this.allocations = counts;
    }
    if (inputs.borrowedOut) this.lent = outcomes.reduce((n, o) => n + o.state.borrowedOut.length, 0);
    return outcomes;
  }

  private report(o: StoreOutcome): void {
    for (const { allocation: a, reason } of o.freed) {
      this.reclaimed.set(reason, (this.reclaimed.get(reason) ?? 0) + 1);
      const pod = a.pod ? `${a.pod.namespace}/${a.pod.name}` : undefined;
      this.log.info({ address: a.address, container: a.containerId, ...(pod ? { pod } : {}), reason, network: o.network }, `IPAM reclaimed ${a.address} of container ${a.containerId.slice(0, 12)}${pod ? ` (pod ${pod})` : ''}: ${reason}${a.pinned && a.pod ? '; kept as a reservation for the pod' : ''}`);
    }
    for (const ip of o.lent) this.log.info({ address: ip, network: o.network }, `IPAM: ${ip} is borrowed by another node; not handed out here while it is`);
    for (const ip of o.returned) this.log.info({ address: ip, network: o.network }, `IPAM: ${ip} is no longer borrowed by another node; free here again`);
    for (const r of o.moved) this.log.info({ address: r.address, pod: `${r.pod.namespace}/${r.pod.name}`, network: o.network }, `IPAM: reservation of ${r.address} for pod ${r.pod.namespace}/${r.pod.name} dropped: another node holds it for the pod now`);
  }

  /** The bridge answers for every address lent out now (proxy neighbours); a failure is said once and retried next pass. */
  private async answerForLent(outcomes: StoreOutcome[]): Promise<void> {
    if (!this.opts.lentNeighbours) return;
    const lent = [...new Set(outcomes.flatMap((o) => o.state.borrowedOut))].map((a) => IP.parse(a));
    try {
      const { added, removed } = await this.opts.lentNeighbours(lent);
      this.said.forget('proxy');
      for (const a of added) this.log.info({ address: a }, `IPAM: the node answers for ${a} on the pods' bridge (proxy neighbour) while another node holds it`);
      for (const a of removed) this.log.info({ address: a }, `IPAM: proxy neighbour for ${a} removed`);
    } catch (err) {
      if (this.said.news('proxy', oneLine(err))) this.log.error(`IPAM: cannot set proxy neighbours for lent addresses: ${oneLine(err)}; this node's pods may not reach them`);
    }
  }

  /** The stores' netns paths that exist or cannot be seen from here; a directory not visible is said once. */
  private existingNetns(paths: string[]): Set<string> {
    const { existing, hidden } = visibleNetns(paths, this.opts.exists);
    for (const dir of hidden) {
      if (this.said.news(`netns ${dir}`, 'hidden')) {
        this.log.warn(`IPAM reconcile: network namespaces under ${dir} are not visible to the agent, so their allocations are not checked; mount ${dir} into the agent to reclaim them`);
      }
    }
    return existing;
  }

  /** Publishes the allocations outside this node's subnets (the borrowed ones) in the lease; call from serial work. */
  private async publishNow(): Promise<void> {
    const own = this.opts.own();
    const conf = this.opts.config();
    const signal = this.signal;
    if (!own || !conf || signal.aborted) return;
    const mine = [own.subnet, ...(own.ipv6Subnet ? [own.ipv6Subnet] : [])];
    const wanted = new Map<string, Cidr>();
    for (const store of safeStores(this.opts.ipamDir)) {
      let state;
      try {
        state = readState(store.paths.state);
      } catch {
        continue; // said by the reconcile
      }
      for (const a of state.allocations) {
        const ip = IP.parse(a.address);
        if (mine.some((m) => m.contains(ip))) continue;
        const host = Cidr.of(ip, ip.bits);
        const problem = borrowedIPProblem(host, own, conf);
        if (problem) {
          if (this.said.news(`borrow ${host}`, problem)) this.log.warn(`IPAM: not publishing ${a.address} of container ${a.containerId.slice(0, 12)}: ${problem}`);
          continue;
        }
        wanted.set(host.toKey(), host);
      }
    }
    const next = [...wanted.values()].map(String).sort();
    const before = this.published;
    await this.opts.publishBorrowed([...wanted.values()], signal);
    this.published = next;
    if (next.join(',') !== before.join(',')) {
      this.log.info({ borrowed: next }, `IPAM: this node now publishes ${next.length} borrowed address${next.length === 1 ? '' : 'es'}${next.length ? `: ${next.join(', ')}` : ''}`);
    }
  }

  metrics(): MetricFamily[] {
    return [
      {
        name: 'weft_ipam_reclaimed_addresses_total', type: 'counter', help: 'Addresses the agent reclaimed (network namespace or pod gone), by reason',
        samples: GC_REASONS.filter((r) => r !== 'not-attached').map((reason) => ({ labels: { reason }, value: this.reclaimed.get(reason) ?? 0 })),
      },
      {
        name: 'weft_ipam_allocations', type: 'gauge', help: 'Addresses allocated on this node (all networks), by family',
        samples: [...this.allocations].map(([family, value]) => ({ labels: { family: `ipv${family}` }, value })),
      },
      single('weft_ipam_borrowed_addresses', 'gauge', "Addresses of other nodes' subnets this node's pinned pods hold, published in its lease", this.published.length),
      single('weft_ipam_lent_addresses', 'gauge', "Addresses of this node's subnets that other nodes borrow for pinned pods", this.lent),
      single('weft_ipam_last_reconcile_timestamp_seconds', 'gauge', 'When the last IPAM reconcile ran (Unix time; 0 before the first)', this.lastReconcileMs / 1000),
      single('weft_ipam_reconcile_errors_total', 'counter', 'IPAM stores (or the IPAM directory) a reconcile could not read', this.reconcileErrors),
    ];
  }
}

function safeStores(dir: string): ReturnType<typeof networkStores> {
  try {
    return networkStores(dir);
  } catch {
    return [];
  }
}
