// The node agent: lease -> backend -> watch peers -> one desired data plane
// (kernel, nftables, backend parts, subnet.env) handed to the Dataplane; and,
// when the net-conf's Backend changes, a switch without a restart.
import type { Server } from 'node:http';
import { mkdir } from 'node:fs/promises';
import { SerialQueue } from '../core/serial-queue.js';
import type { Logger } from 'pino';
import type { Backend, ExternalInterface } from '../../backends/backend.js';
import { AVAILABLE_BACKENDS, backendFactory, checkBackendOptions } from '../../backends/registry.js';
import { confNetworks, type NetConf } from '../config/netconf.js';
import { loadNetConfFile } from '../config/parse.js';
import { Dataplane } from '../dataplane/dataplane.js';
import { WeftError, oneLine } from '../errors.js';
import { leaseFamilies, type Lease, type LeaseAttrs, type LeaseEvent } from '../subnet/lease.js';
import type { SubnetManager } from '../subnet/manager.js';
import { sleep } from '../core/backoff.js';
import { retryUntilDone } from '../core/retry-log.js';
import { BackendDrain, DEFAULT_DRAIN_MS } from './backend-drain.js';
import { mergeInto } from '../dataplane/state.js';
import { classifyConfigChange, refusalLine } from './config-change.js';
import { LeaseKeeper } from './lease-keeper.js';
import { nodeHealthSource, peerStatus, writeAgentStatus, type NodeView } from './node-status.js';
import type { NetConfSource, NetConfUpdate } from '../config/source.js';
import { findExternalInterface, type IfaceSelector } from './extiface.js';
import { firewallRules } from './firewall.js';
import { serveHealth } from './health.js';
import type { AgentCounters } from './metrics.js';
import type { NetworkPolicyEnforcer } from './network-policy.js';
import { NodeIpam } from './ipam.js';
import { syncLentNeighbours } from './ipam-proxy.js';
import { BRIDGE_NAME } from '../cni/delegate.js';
import { pinsSocketPath } from '../ipam/pins-api.js';
import type { IpamPodSource } from '../ipam/pod-source.js';
import { SubnetEnvFile, readPreviousSubnetEnv, type SubnetEnv } from '../subnet/subnet-env.js';

export interface AgentOptions {
  subnetManager: SubnetManager;
  /** net-conf.json on disk; when absent the subnet manager supplies it. */
  netConfFile?: string;
  /** Followed after start: a change of Backend switches backends live. Absent: the config is read once. */
  configSource?: NetConfSource;
  iface: IfaceSelector;
  subnetFile: string;
  runDir: string;
  healthzAddr?: string;
  nodeName: string;
  /** bgp: drive the BIRD behind this control socket instead of running one. */
  birdSocket?: string;
  ipMasq: boolean;
  /** Periodic full resync of the data plane (backstop for missed events). */
  resyncMs?: number;
  /**
   * After a switch to another backend type, how long the old backend keeps
   * serving peers whose leases still name it (default 2 min); it goes as soon
   * as no peer does.
   */
  drainMs?: number;
  /**
   * While the lease is blocked (this node's subnet or PublicIP leased to
   * another node, no free subnet), how long between tries (default 60 s).
   */
  blockedRetryMs?: number;
  /** Kube mode: NetworkPolicy enforced in weft's nftables table (absent: no policy). */
  policy?: NetworkPolicyEnforcer;
  /** weft IPAM's stores on this node, reconciled by the agent (absent: the agent leaves them alone). */
  ipam?: AgentIpamOptions;
  logger: Logger;
}

export interface AgentIpamOptions {
  /** The weft-ipam plugin's dataDir. */
  dir: string;
  reconcileMs: number;
  graceMs: number;
  /** Kube mode: the pod watch (run by the agent) behind the reconcile and the pins socket beside subnet.env. */
  pods?: IpamPodSource & { run(signal: AbortSignal): Promise<void> };
}


export class Agent {
  private readonly log: Logger;
  private readonly peers = new Map<string, Lease>();
  private backend?: Backend;
  private draining?: BackendDrain;
  private dataplane?: Dataplane;
  private ext?: ExternalInterface;
  private config?: NetConf;
  private ready = false;
  /** Rewritten when the subnet, MTU or masquerading changes. */
  private readonly subnetEnv: SubnetEnvFile;
  /** Why the latest config update was refused, until a good one arrives. */
  private configRefused?: string;
  private lastLoop = Date.now();
  private health?: Server;
  /** Data-plane work (programming, backend switches) runs one at a time, in order. */
  private readonly work = new SerialQueue();
  private readonly lease: LeaseKeeper;
  private readonly ipam?: NodeIpam;
  /** A programming pass queued and not started yet: it reads the peers when it starts, so later events join it. */
  private pendingPass?: Promise<void>;
  /** Why the last programming pass failed, so a failure repeated pass after pass is logged once. */
  private programFailure?: string;
  private readonly counters: AgentCounters = {
    lease_renewals_total: 0,
    lease_reacquisitions_total: 0,
    program_total: 0,
    program_errors_total: 0,
    backend_switches_total: 0,
    config_refusals_total: 0,
  };

  constructor(private readonly opts: AgentOptions) {
    this.log = opts.logger;
    this.subnetEnv = new SubnetEnvFile(opts.subnetFile, opts.logger);
    this.lease = new LeaseKeeper({
      subnetManager: opts.subnetManager,
      logger: opts.logger,
      attrs: () => this.attrs(),
      retry: (what, signal, fn) => this.retry(what, signal, fn),
      counters: this.counters,
      blockedRetryMs: opts.blockedRetryMs,
      subnetFile: opts.subnetFile,
      onReacquired: async (lease) => {
        this.peers.delete(lease.subnet.toKey());
        await this.program();
      },
    });
    const ipam = opts.ipam;
    if (ipam) {
      this.ipam = new NodeIpam({
        ipamDir: ipam.dir,
        intervalMs: ipam.reconcileMs,
        graceMs: ipam.graceMs,
        logger: opts.logger,
        socketPath: pinsSocketPath(opts.subnetFile),
        ...(ipam.pods ? { pods: ipam.pods } : {}),
        own: () => this.lease.own,
        config: () => this.config,
        publishBorrowed: (ips, signal) => this.lease.setBorrowedIPs(ips, this.config!, signal),
        lentNeighbours: (lent) => syncLentNeighbours(BRIDGE_NAME, lent),
      });
    }
  }

  /** This node's lease, once taken. */
  private get own(): Lease | undefined {
    return this.lease.own;
  }

  /** Runs until `signal` aborts; leaves the data plane in place on exit. */
  async run(signal: AbortSignal): Promise<void> {
    const started = Date.now();
    if (this.opts.healthzAddr) this.health = await serveHealth(this.opts.healthzAddr, nodeHealthSource(() => this.view()));
    // From the start: waiting for etcd or for a blocked lease is the agent alive and working, not stalled.
    const heartbeat = setInterval(() => (this.lastLoop = Date.now()), 1000);
    try {
      this.config = await this.retry('read network config', signal, () => this.loadConfig(signal));
      if (signal.aborted) return;
      // The config says which families the interface must have: IPv4, IPv6 (IPv6-only) or both.
      this.ext = await findExternalInterface(this.opts.iface, this.config.network.family, Boolean(this.config.ipv6));
      const { name, ip, publicIP, mtu, ipv6 } = this.ext;
      this.log.info({ iface: name, ip: String(ip), publicIP: String(publicIP), mtu, ...(ipv6 ? { ipv6: String(ipv6.ip), publicIPv6: String(ipv6.publicIP) } : {}) }, 'using external interface');
      await mkdir(this.opts.runDir, { recursive: true });
      // Retried: a missing prerequisite (e.g. BIRD not installed) may be fixed while the agent waits.
      this.backend = await this.retry(`start the ${this.config.backend.type} backend`, signal, () => this.createBackend(this.config!));
      if (signal.aborted) return;

      const { subnet, ipv6Subnet } = await readPreviousSubnetEnv(this.opts.subnetFile);
      const own = await this.lease.acquire({ subnet, ipv6Subnet }, signal);
      if (signal.aborted) return;
      this.log.info({ subnet: String(own.subnet), ...(own.ipv6Subnet ? { ipv6Subnet: String(own.ipv6Subnet) } : {}), expiresAt: own.expiresAt }, 'subnet lease acquired');

      this.dataplane = new Dataplane({ logger: this.log, resyncMs: this.opts.resyncMs, requestPass: () => void this.program() });
      this.dataplane.start(signal);

      const watching = this.opts.subnetManager.watchLeases((events, snapshot) => this.onLeaseEvents(events, snapshot, signal), signal);
      const renewing = this.lease.renewLoop(signal);
      const following = this.opts.configSource?.watch((update) => this.onConfigUpdate(update, signal), signal);
      const enforcing = this.opts.policy?.run(signal, () => void this.program());
      const podWatch = this.opts.ipam?.pods?.run(signal);
      const reconciling = this.ipam?.run(signal);
      await this.waitReady(signal);
      if (!signal.aborted) this.log.info({ ms: Date.now() - started, peers: this.peers.size }, 'ready');
      if (!signal.aborted && this.opts.subnetManager.markNetworkAvailable) {
        await this.opts.subnetManager.markNetworkAvailable(signal).catch((err) => this.log.warn(`cannot mark the node's network available: ${oneLine(err)}`));
      }
      await Promise.all([watching, renewing, following, enforcing, podWatch, reconciling]);
    } finally {
      clearInterval(heartbeat);
      await this.shutdown();
    }
  }

  private async loadConfig(signal: AbortSignal): Promise<NetConf> {
    return checkBackendOptions(this.opts.netConfFile ? loadNetConfFile(this.opts.netConfFile) : await this.opts.subnetManager.getNetworkConfig(signal));
  }

  private async createBackend(conf: NetConf): Promise<Backend> {
    const type = conf.backend.type;
    const factory = await backendFactory(type);
    if (!factory) throw new WeftError(`backend "${type}" is not available in this build`, `choose one of ${AVAILABLE_BACKENDS.join(', ')} in net-conf Backend.Type`);
    return factory({ config: conf, ext: this.ext!, logger: this.log.child({ backend: type }), nodeName: this.opts.nodeName, runDir: this.opts.runDir, birdSocket: this.opts.birdSocket });
  }

  /** Retries `fn` with backoff until it succeeds or the signal aborts (core/retry-log.ts). */
  private retry<T>(what: string, signal: AbortSignal, fn: () => Promise<T>): Promise<T> {
    return retryUntilDone(what, signal, this.log, fn);
  }

  /** What this node publishes with the backend it runs now. */
  private attrs(): LeaseAttrs {
    const backend = this.backend!;
    const ipv6 = this.config?.ipv6 && this.ext!.ipv6;
    return {
      publicIP: this.ext!.publicIP,
      ...(ipv6 ? { publicIPv6: ipv6.publicIP, backendV6Data: backend.backendV6Data ?? null } : {}),
      backendType: backend.type,
      backendData: backend.backendData,
      nodeName: this.opts.nodeName,
    };
  }

  /** Queues data-plane work behind what is already queued; errors are the caller's to log inside `fn`. */
  private serial(fn: () => Promise<void>): Promise<void> {
    return this.work.run(fn);
  }

  private onLeaseEvents(events: LeaseEvent[], snapshot: boolean, signal: AbortSignal): void {
    this.lastLoop = Date.now();
    if (snapshot) this.peers.clear();
    // Events arrive in order: a republish of our own lease is "removed" then "added" with our address.
    let ownLost = false;
    for (const ev of events) {
      const key = ev.lease.subnet.toKey();
      const mine = this.own !== undefined && ev.lease.subnet.equals(this.own.subnet);
      if (ev.type === 'added') {
        if (mine) ownLost = !ev.lease.attrs.publicIP.equals(this.own!.attrs.publicIP);
        else this.peers.set(key, ev.lease);
      } else {
        if (mine) ownLost = true;
        this.peers.delete(key);
      }
    }
    if (snapshot && this.own && !events.some((e) => e.type === 'added' && e.lease.subnet.equals(this.own!.subnet))) ownLost = true;
    if (ownLost) void this.lease.reacquire(signal);
    this.ipam?.peersChanged([...this.peers.values()]);
    void this.program();
  }

  /**
   * Recomputes desired state and applies it; serialised so runs never overlap.
   * A burst of lease events while a pass runs costs one more pass, not one per event.
   */
  private program(): Promise<void> {
    if (this.pendingPass) return this.pendingPass;
    const pass = this.serial(async () => {
      this.pendingPass = undefined;
      try {
        await this.programNow();
        this.programFailure = undefined;
      } catch (err) {
        this.counters.program_errors_total++;
        // The Dataplane asks for passes while a part fails: say each failure once, not per pass.
        const why = oneLine(err);
        if (why !== this.programFailure) this.log.error(`programming the data plane failed: ${why}`);
        this.programFailure = why;
      }
    });
    this.pendingPass = pass;
    return pass;
  }

  /**
   * One programming pass: the backends' desired state, weft's nftables rules,
   * the backends' own parts and subnet.env, handed to the Dataplane as one
   * value. Call only from serial work.
   */
  private async programNow(): Promise<void> {
    const own = this.own;
    const backend = this.backend;
    const dataplane = this.dataplane;
    if (!own || !backend || !dataplane) return;
    const peers = [...this.peers.values()];
    await this.endDrainIfDone(peers);
    // While draining, each backend serves the peers whose leases name it; the new one never sees
    // (and never warns about) peers that simply have not switched yet.
    const drain = this.draining;
    const { oldPeers, newPeers } = drain ? drain.split(peers) : { oldPeers: [], newPeers: peers };
    const kernel = backend.desired(own, newPeers);
    if (drain) mergeInto(kernel, drain.backend.desired(own, oldPeers));
    const tunnelPort = backend.tunnelPort ?? drain?.backend.tunnelPort;
    const policy = this.opts.policy;
    const families = leaseFamilies(own);
    const failed = await dataplane.apply({
      kernel,
      nft: firewallRules({ tunnelPort, own, peers, networks: confNetworks(this.config!), ipMasq: this.opts.ipMasq, policy: policy?.nft(families) }),
      extras: [
        // After the table: cuts what the new rules deny, once they are in the kernel.
        ...(policy ? [policy.part(families, () => dataplane.status().find((p) => p.part === 'nftables' && p.state === 'failed')?.reason)] : []),
        {
          name: 'backend',
          apply: async () => {
            await backend.sync?.(own, newPeers);
            if (drain) await drain.backend.sync?.(own, oldPeers);
          },
        },
        { name: 'subnet.env', apply: () => this.subnetEnv.write(this.subnetEnvOf(own, backend)) },
      ],
    });
    this.ready = true;
    this.counters.program_total++;
    await this.writeStatus();
    if (failed.length) throw new Error(failed.join('; '));
  }

  /** subnet.env for this lease: both families' network and subnet on a dual-stack node. */
  private subnetEnvOf(own: Lease, backend: Backend): SubnetEnv {
    const ipv6 = this.config!.ipv6 && own.ipv6Subnet ? { network: this.config!.ipv6.network, subnet: own.ipv6Subnet } : undefined;
    return { network: this.config!.network, subnet: own.subnet, ...(ipv6 ? { ipv6 } : {}), mtu: backend.mtu, ipMasq: this.opts.ipMasq };
  }

  // --- live config changes ------------------------------------------------

  private onConfigUpdate(update: NetConfUpdate, signal: AbortSignal): void {
    this.lastLoop = Date.now();
    void this.serial(async () => {
      try {
        await this.applyConfigUpdate(update, signal);
      } catch (err) {
        this.log.error(`applying the new network config failed: ${oneLine(err)}`);
      }
    });
  }

  private async applyConfigUpdate(update: NetConfUpdate, signal: AbortSignal): Promise<void> {
    if (signal.aborted || !this.config || !this.backend) return;
    const where = this.opts.configSource?.where ?? 'the network config';
    const running = this.backend.type;
    const change = 'unreadable' in update ? undefined : classifyConfigChange(this.config, update.text);
    const refusal = refusalLine(update, change, where, running);
    if (refusal) return this.refuse(refusal);
    if (change?.kind === 'same') {
      if (this.configRefused) this.log.info({ backend: running }, `network config in ${where} is acceptable again; backend ${running} unchanged`);
      this.config = change.conf;
    } else if (change?.kind !== 'backend-changed' || !(await this.switchBackend(change.conf, change.from, change.to, signal))) {
      return;
    }
    this.configRefused = undefined;
    if (change.rangeChanged) {
      this.log.info('SubnetMin/SubnetMax changed; they apply to leases taken from now on, this node keeps its subnet');
    }
  }

  private refuse(line: string): void {
    this.counters.config_refusals_total++;
    this.configRefused = line;
    this.log.error(line);
  }

  /**
   * New backend in, lease republished with the new BackendType/BackendData on
   * the same subnet; peers follow from the lease. A backend of another type
   * keeps serving the peers still on it (they switch within moments, on the
   * same config change), then is stopped with teardown and the reconciler
   * removes its routes and devices. Same type, new options: replaced at once.
   */
  private async switchBackend(next: NetConf, from: string, to: string, signal: AbortSignal): Promise<boolean> {
    const type = next.backend.type;
    if (!(await backendFactory(type))) {
      this.refuse(`new network config refused: backend "${type}" is not available in this build (available: ${AVAILABLE_BACKENDS.join(', ')}); backend ${this.backend!.type} keeps running`);
      return false;
    }
    const started = Date.now();
    const old = this.backend!;
    const oldConf = this.config!;
    const sameType = old.type === type;
    this.log.info({ from, to }, `network config changed the backend from ${from} to ${to}; switching`);
    // Same type: the new instance needs what the old one holds (device name, port).
    if (sameType) await this.stopBackend(old, true);
    let created: Backend;
    try {
      created = await this.createBackend(next);
    } catch (err) {
      this.refuse(`cannot start the ${type} backend (${oneLine(err)}); staying on ${from}`);
      if (sameType) {
        this.backend = await this.createBackend(oldConf).catch((err2: unknown) => {
          this.log.error(`restarting the ${old.type} backend failed too: ${oneLine(err2)}`);
          return old;
        });
        await this.programNow().catch((err2: unknown) => this.log.error(`programming the data plane failed: ${oneLine(err2)}`));
      }
      return false;
    }
    if (this.draining) await this.endDrain('another switch began');
    if (!sameType) {
      this.draining = new BackendDrain(old, this.opts.drainMs ?? DEFAULT_DRAIN_MS, () => void this.program());
    }
    this.backend = created;
    this.config = next;
    try {
      await this.programNow();
    } catch (err) {
      this.counters.program_errors_total++;
      this.log.error(`programming the data plane for the ${created.type} backend failed: ${oneLine(err)}; retrying with the next change or resync`);
    }
    await this.lease.republish(signal);
    this.counters.backend_switches_total++;
    this.log.info({ backend: created.type, ms: Date.now() - started }, `switched to the ${created.type} backend; lease republished`);
    return true;
  }

  /** Ends the drain once no peer's lease names the old backend, or at its deadline. */
  private async endDrainIfDone(peers: readonly Lease[]): Promise<void> {
    const why = this.draining?.over(peers);
    if (why) await this.endDrain(why);
  }

  /** Stops the drained backend with teardown; the next reconcile removes its routes and devices. */
  private async endDrain(why: string): Promise<void> {
    const drain = this.draining;
    if (!drain) return;
    this.draining = undefined;
    drain.cancel();
    await this.stopBackend(drain.backend, true);
    this.log.info({ backend: drain.backend.type }, `${drain.backend.type} backend removed: ${why}`);
  }

  private async stopBackend(backend: Backend, teardown: boolean): Promise<void> {
    await backend.stop({ teardown }).catch((err) => this.log.warn(`stopping the ${backend.type} backend: ${oneLine(err)}`));
  }

  // --- status -----------------------------------------------------------------

  private async waitReady(signal: AbortSignal): Promise<void> {
    while (!this.ready && !signal.aborted) await sleep(50, signal);
  }

  private async writeStatus(): Promise<void> {
    await writeAgentStatus(this.opts.runDir, {
      node: this.opts.nodeName,
      publicIP: String(this.ext!.publicIP),
      iface: this.ext!.name,
      backend: this.backend!.type,
      subnet: String(this.own!.subnet),
      ...(this.own!.ipv6Subnet ? { ipv6Subnet: String(this.own!.ipv6Subnet) } : {}),
      ready: this.ready,
      peers: [...this.peers.values()].map(peerStatus),
      ...(this.opts.policy ? { policy: this.opts.policy.status() } : {}),
      updatedAt: new Date().toISOString(),
    });
  }

  /** What the probes read, at the moment they read it. */
  private view(): NodeView {
    const { own, dataplane, backend, counters, lastLoop } = this;
    const sm = this.opts.subnetManager;
    return { own, dataplane, backend, counters, lastLoop, peers: this.peers.size, leaseBlocked: this.lease.blocked, controlPlane: sm.health?.(), requests: sm.requestCounts?.(), policy: this.opts.policy, ipam: this.ipam };
  }

  private async shutdown(): Promise<void> {
    // Leave routes, devices and the nftables table in place: pods keep working while the agent restarts.
    await this.dataplane?.stop();
    if (this.draining) {
      this.draining.cancel();
      await this.stopBackend(this.draining.backend, false);
    }
    if (this.backend) await this.stopBackend(this.backend, false);
    await this.opts.subnetManager.close().catch(() => undefined);
    await new Promise<void>((resolve) => (this.health ? this.health.close(() => resolve()) : resolve()));
  }
}
