// The node agent: lease -> backend -> watch peers -> reconcile.
import type { Server } from 'node:http';
import { mkdir, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import type { Backend, ExternalInterface } from '../../backends/backend.js';
import { backendFactory } from '../../backends/registry.js';
import type { NetConf } from '../config/netconf.js';
import { loadNetConfFile } from '../config/parse.js';
import { Reconciler } from '../dataplane/reconciler.js';
import { WeftError, oneLine } from '../errors.js';
import type { Cidr } from '../subnet/cidr.js';
import type { Lease, LeaseEvent } from '../subnet/lease.js';
import { LeaseGoneError, type SubnetManager } from '../subnet/manager.js';
import { Backoff, sleep } from './backoff.js';
import { findExternalInterface, type IfaceSelector } from './extiface.js';
import { serveHealth } from './health.js';
import { readPreviousSubnet, writeSubnetEnv } from './subnet-env.js';

export interface AgentOptions {
  subnetManager: SubnetManager;
  /** net-conf.json on disk; when absent the subnet manager supplies it. */
  netConfFile?: string;
  iface: IfaceSelector;
  subnetFile: string;
  runDir: string;
  healthzAddr?: string;
  nodeName: string;
  ipMasq: boolean;
  /** Periodic full resync of the data plane (backstop for missed events). */
  resyncMs?: number;
  logger: Logger;
}

export interface AgentStatus {
  node: string;
  publicIP: string;
  iface: string;
  backend: string;
  subnet: string;
  ready: boolean;
  peers: { subnet: string; publicIP: string; backend: string; node?: string }[];
  updatedAt: string;
}

export class Agent {
  private readonly log: Logger;
  private readonly peers = new Map<string, Lease>();
  private own?: Lease;
  private backend?: Backend;
  private reconciler?: Reconciler;
  private ext?: ExternalInterface;
  private config?: NetConf;
  private ready = false;
  private subnetEnvWritten = false;
  private lastLoop = Date.now();
  private health?: Server;
  private programming: Promise<void> = Promise.resolve();
  private reacquiring = false;
  private readonly counters = { lease_renewals_total: 0, lease_reacquisitions_total: 0, program_total: 0, program_errors_total: 0 };

  constructor(private readonly opts: AgentOptions) {
    this.log = opts.logger;
  }

  /** Runs until `signal` aborts; leaves the data plane in place on exit. */
  async run(signal: AbortSignal): Promise<void> {
    const started = Date.now();
    if (this.opts.healthzAddr) this.health = await serveHealth(this.opts.healthzAddr, this.healthSource());
    try {
      this.ext = await findExternalInterface(this.opts.iface);
      this.log.info({ iface: this.ext.name, ip: String(this.ext.ip), publicIP: String(this.ext.publicIP), mtu: this.ext.mtu }, 'using external interface');
      this.config = await this.retry('read network config', signal, () => this.loadConfig(signal));
      if (signal.aborted) return;
      const conf = this.config;
      const factory = await backendFactory(conf.backend.type);
      if (!factory) throw new WeftError(`backend "${conf.backend.type}" is not available in this build`, 'choose host-gw in net-conf Backend.Type');
      await mkdir(this.opts.runDir, { recursive: true });
      this.backend = await factory({ config: conf, ext: this.ext, logger: this.log.child({ backend: conf.backend.type }), nodeName: this.opts.nodeName, runDir: this.opts.runDir });

      const prefer = await readPreviousSubnet(this.opts.subnetFile);
      this.own = await this.retry('acquire a subnet lease', signal, () => this.acquire(prefer, signal));
      if (signal.aborted) return;
      this.log.info({ subnet: String(this.own.subnet), expiresAt: this.own.expiresAt }, 'subnet lease acquired');

      this.reconciler = new Reconciler({ logger: this.log.child({ component: 'dataplane' }), resyncMs: this.opts.resyncMs });
      this.reconciler.start(signal);

      const watching = this.opts.subnetManager.watchLeases((events, snapshot) => this.onLeaseEvents(events, snapshot, signal), signal);
      const renewing = this.renewLoop(signal);
      const heartbeat = setInterval(() => (this.lastLoop = Date.now()), 1000);
      try {
        await this.waitReady(signal);
        if (!signal.aborted) this.log.info({ ms: Date.now() - started, peers: this.peers.size }, 'ready');
        await Promise.all([watching, renewing]);
      } finally {
        clearInterval(heartbeat);
      }
    } finally {
      await this.shutdown();
    }
  }

  private async loadConfig(signal: AbortSignal): Promise<NetConf> {
    if (this.opts.netConfFile) return loadNetConfFile(this.opts.netConfFile);
    return this.opts.subnetManager.getNetworkConfig(signal);
  }

  /** Retries `fn` with backoff until it succeeds or the signal aborts; logs each distinct failure once per step. */
  private async retry<T>(what: string, signal: AbortSignal, fn: () => Promise<T>): Promise<T> {
    const backoff = new Backoff(100, 5000);
    for (;;) {
      try {
        return await fn();
      } catch (err) {
        if (signal.aborted) throw new WeftError('stopped', 'none');
        if (!(err instanceof WeftError) && !isTransient(err)) throw err;
        const delay = backoff.step();
        this.log.warn({ retryInMs: delay }, `cannot ${what}: ${oneLine(err)}`);
        await sleep(delay, signal);
        if (signal.aborted) throw new WeftError('stopped', 'none');
      }
    }
  }

  private async acquire(prefer: Cidr | undefined, signal: AbortSignal): Promise<Lease> {
    const ext = this.ext!;
    const backend = this.backend!;
    return this.opts.subnetManager.acquireLease(
      { publicIP: ext.publicIP, backendType: backend.type, backendData: backend.backendData, nodeName: this.opts.nodeName },
      { prefer, signal },
    );
  }

  private onLeaseEvents(events: LeaseEvent[], snapshot: boolean, signal: AbortSignal): void {
    this.lastLoop = Date.now();
    if (snapshot) this.peers.clear();
    let ownLost = false;
    for (const ev of events) {
      const key = ev.lease.subnet.toKey();
      const mine = this.own && ev.lease.subnet.equals(this.own.subnet);
      if (ev.type === 'added') {
        if (mine && !ev.lease.attrs.publicIP.equals(this.own!.attrs.publicIP)) ownLost = true;
        if (!mine) this.peers.set(key, ev.lease);
      } else {
        if (mine) ownLost = true;
        this.peers.delete(key);
      }
    }
    if (snapshot && this.own && !events.some((e) => e.lease.subnet.equals(this.own!.subnet))) ownLost = true;
    if (ownLost) void this.reacquire(signal);
    void this.program();
  }

  /** Recomputes desired state and applies it; serialised so runs never overlap. */
  private program(): Promise<void> {
    this.programming = this.programming.then(async () => {
      const own = this.own;
      if (!own || !this.backend || !this.reconciler) return;
      const peers = [...this.peers.values()];
      try {
        this.reconciler.setDesired(this.backend.desired(own, peers));
        await this.reconciler.reconcileNow();
        await this.backend.sync?.(own, peers);
        if (!this.subnetEnvWritten) {
          await writeSubnetEnv(this.opts.subnetFile, { network: this.config!.network, subnet: own.subnet, mtu: this.backend.mtu, ipMasq: this.opts.ipMasq });
          this.subnetEnvWritten = true;
          this.log.info({ file: this.opts.subnetFile }, 'subnet.env written');
        }
        this.ready = true;
        this.counters.program_total++;
        await this.writeStatus();
      } catch (err) {
        this.counters.program_errors_total++;
        this.log.error(`programming the data plane failed: ${oneLine(err)}`);
      }
    });
    return this.programming;
  }

  private async reacquire(signal: AbortSignal): Promise<void> {
    if (this.reacquiring || signal.aborted || !this.own) return;
    this.reacquiring = true;
    const previous = this.own.subnet;
    this.log.warn({ subnet: String(previous) }, 'own lease vanished; re-acquiring (same subnet preferred)');
    try {
      const lease = await this.retry('re-acquire the subnet lease', signal, () => this.acquire(previous, signal));
      this.counters.lease_reacquisitions_total++;
      if (!lease.subnet.equals(previous)) {
        this.log.warn({ old: String(previous), new: String(lease.subnet) }, 'subnet changed; pods on the old subnet need restarting');
        this.subnetEnvWritten = false;
      }
      this.own = lease;
      this.peers.delete(lease.subnet.toKey());
      await this.program();
    } catch (err) {
      if (!signal.aborted) this.log.error(`re-acquiring the lease failed: ${oneLine(err)}`);
    } finally {
      this.reacquiring = false;
    }
  }

  private async renewLoop(signal: AbortSignal): Promise<void> {
    const backoff = new Backoff(100, 5000);
    while (!signal.aborted) {
      const own = this.own!;
      if (own.expiresAt === undefined) {
        // A reservation never expires; check back now and then in case it becomes a lease.
        await sleep(60_000, signal);
        continue;
      }
      const left = own.expiresAt - Date.now();
      // Renew an hour before expiry, or at two thirds of a short TTL.
      await sleep(Math.max(0, left > 3 * 3600_000 ? left - 3600_000 : (left * 2) / 3), signal);
      if (signal.aborted) return;
      if (this.reacquiring || this.own !== own) continue;
      try {
        this.own = await this.opts.subnetManager.renewLease(own, signal);
        this.counters.lease_renewals_total++;
        backoff.reset();
      } catch (err) {
        if (signal.aborted) return;
        if (err instanceof LeaseGoneError) {
          await this.reacquire(signal);
        } else {
          const delay = backoff.step();
          this.log.warn({ retryInMs: delay }, `lease renewal failed: ${oneLine(err)}`);
          await sleep(delay, signal);
        }
      }
    }
  }

  private async waitReady(signal: AbortSignal): Promise<void> {
    while (!this.ready && !signal.aborted) await sleep(50, signal);
  }

  private async writeStatus(): Promise<void> {
    const own = this.own!;
    const status: AgentStatus = {
      node: this.opts.nodeName,
      publicIP: String(this.ext!.publicIP),
      iface: this.ext!.name,
      backend: this.backend!.type,
      subnet: String(own.subnet),
      ready: this.ready,
      peers: [...this.peers.values()].map((l) => ({ subnet: String(l.subnet), publicIP: String(l.attrs.publicIP), backend: l.attrs.backendType, node: l.attrs.nodeName })),
      updatedAt: new Date().toISOString(),
    };
    const path = join(this.opts.runDir, 'status.json');
    await writeFile(`${path}.tmp`, JSON.stringify(status, null, 2));
    await rename(`${path}.tmp`, path);
  }

  private healthSource() {
    return {
      notReadyReason: (): string | undefined => {
        if (!this.own) return 'no subnet lease yet';
        if (!this.ready) return 'data plane not programmed yet';
        return undefined;
      },
      unhealthyReason: (): string | undefined => (Date.now() - this.lastLoop > 30_000 ? 'event loop stalled' : undefined),
      metrics: (): Record<string, number> => ({ ready: this.ready ? 1 : 0, peers: this.peers.size, ...this.counters }),
    };
  }

  private async shutdown(): Promise<void> {
    // Leave routes and devices in place: pods keep working while the agent restarts.
    await this.reconciler?.stop();
    await this.backend?.stop({ teardown: false }).catch((err) => this.log.warn(`backend stop: ${oneLine(err)}`));
    await this.opts.subnetManager.close().catch(() => undefined);
    await new Promise<void>((resolve) => (this.health ? this.health.close(() => resolve()) : resolve()));
  }
}

/** Network-level failures worth retrying (etcd down, connection reset). */
function isTransient(err: unknown): boolean {
  const text = String((err as Error)?.message ?? err);
  return /unavailable|ECONNREFUSED|ETIMEDOUT|EHOSTUNREACH|deadline|connect|timed out/i.test(text);
}
