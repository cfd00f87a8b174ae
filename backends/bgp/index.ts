// bgp: BIRD programs the kernel, so the desired state is empty; the backend's
// work is keeping BIRD's config equal to the lease set and BIRD alive.
import { join } from 'node:path';
import type { Backend, BackendContext } from '../backend.js';
import { NodeFamilies } from '../peers.js';
import { flushProtocolRoutes } from '../../src/dataplane/iproute.js';
import { emptyState } from '../../src/dataplane/state.js';
import { oneLine } from '../../src/errors.js';
import { confNetworks, type NetConf } from '../../src/config/netconf.js';
import type { Cidr } from '../../src/core/cidr.js';
import type { Lease } from '../../src/subnet/lease.js';
import { Bird } from './bird.js';
import { bgpMetrics } from './metrics.js';
import { birdConfig, type BirdFamily, type BirdSession } from './config.js';
import { parseBgpOptions, type BgpOptions } from './options.js';
import { DeletedRouteWatch } from './restore.js';
import type { BgpSession } from './status.js';

export interface BgpRuntimeOptions {
  /** Drive the BIRD behind this control socket instead of running one; default ctx.birdSocket (--bird-socket). */
  birdSocket?: string;
  /** This node reflects routes although RouteReflectors does not list it (published in its lease). */
  routeReflector?: boolean;
  /** Prefix for commands that must run in the node's network namespace (tests, lab). */
  execPrefix?: string[];
  /** After this long, one Established session is enough for readiness. Default 60 s. */
  readyGraceMs?: number;
  /** How often sessions are read for readiness once all are Established. Default 2 s (a quarter of it while some are not). */
  pollMs?: number;
  restartDelayMs?: { min: number; max: number };
}

export interface BgpBackend extends Backend {
  /** Live sessions from `birdc show protocols all`. */
  sessions(): Promise<BgpSession[]>;
  /** Sessions of the config in force (names and peers), for status output. */
  configuredSessions(): readonly BirdSession[];
  /**
   * Undefined when ready: every configured session Established, or, once the
   * grace period after BIRD's start has passed, at least one. Else why not.
   */
  notReadyReason(): string | undefined;
}

const BGP = 'bgp';

export async function createBgpBackend(ctx: BackendContext, opts: BgpRuntimeOptions = {}): Promise<BgpBackend> {
  const options = parseBgpOptions(ctx.config.backend.raw, ctx.config);
  const externalSocket = opts.birdSocket ?? ctx.birdSocket;
  const birdDir = join(ctx.runDir, 'bird');
  const bird = await Bird.open({
    dir: birdDir,
    logger: ctx.logger,
    ...(externalSocket ? { externalSocket } : {}),
    ...(opts.execPrefix ? { execPrefix: opts.execPrefix } : {}),
    ...(opts.restartDelayMs ? { restartDelayMs: opts.restartDelayMs } : {}),
  });
  const families = new NodeFamilies(ctx.logger);
  const networks = confNetworks(ctx.config);
  const graceMs = opts.readyGraceMs ?? 60_000;
  let configured: BirdSession[] = [];
  let applied = false;
  let live: BgpSession[] = [];
  let liveError: string | undefined;
  let poller: NodeJS.Timeout | undefined;
  let stopped = false;
  let kernelProtocols: string[] = [];
  let lastUnresolved = '';
  let lastProblems = '';
  const restorer = new DeletedRouteWatch({
    prefixes: routedPrefixes(ctx.config, options),
    execPrefix: opts.execPrefix ?? [],
    rescan: () => bird.rescanKernel(kernelProtocols),
    logger: ctx.logger,
  });

  const poll = async (): Promise<void> => {
    try {
      live = await bird.sessions();
      liveError = undefined;
    } catch (err) {
      liveError = oneLine(err);
    }
  };

  // Readiness follows sessions closely while some are still connecting, lazily after.
  const schedulePoll = (): void => {
    if (stopped) return;
    const settled = configured.length > 0 && configured.every((c) => live.some((s) => s.name === c.name && s.state === 'Established'));
    const every = opts.pollMs ?? 2000;
    poller = setTimeout(() => void poll().then(schedulePoll), settled ? every : Math.max(100, every / 4));
    poller.unref();
  };

  const sync = async (own: Lease, peers: readonly Lease[]): Promise<void> => {
    // Each family the node runs gets its own sessions, between the nodes' addresses of that family.
    const views = families.views(own, peers, ctx.ext).flatMap((v): (BirdFamily & Pick<typeof v, 'warnings'>)[] => {
      const network = networks.find((n) => n.family === v.family);
      return network ? [{ ...v, network }] : [];
    });
    const cfg = birdConfig({
      nodeName: ctx.nodeName,
      own,
      peers,
      families: views,
      options,
      selfReflector: opts.routeReflector === true,
      controlSocket: bird.socket,
      ...(bird.supervised ? { logFile: join(birdDir, 'bird.log') } : {}),
    });
    for (const view of views) {
      view.warnings.retain(view.peers);
      const skipped = cfg.skipped.filter((s) => s.family === view.family);
      for (const { lease, reason } of skipped) view.warnings.warn(lease, `no IPv${view.family} BGP session for peer ${lease.subnet} at ${lease.attrs.publicIP}: ${reason}`);
      for (const peer of view.peers) if (!skipped.some((s) => s.lease === peer)) view.warnings.clear(peer);
    }
    const unresolved = cfg.unresolvedReflectors.join(', ');
    if (unresolved && unresolved !== lastUnresolved) ctx.logger.warn(`Backend.RouteReflectors names nodes without a lease yet: ${unresolved}`);
    lastUnresolved = unresolved;
    const problems = cfg.familyProblems.join('; ');
    if (problems && problems !== lastProblems) ctx.logger.warn(`not routed over BGP: ${problems}`);
    lastProblems = problems;

    const changed = await bird.apply(cfg.text);
    if (changed) {
      configured = cfg.sessions;
      kernelProtocols = cfg.kernelProtocols;
      ctx.logger.info({ sessions: cfg.sessions.length, topology: options.topology }, 'BIRD config applied');
    }
    const first = !applied;
    applied = true;
    if (first && !stopped) restorer.start();
    // Sessions are read at once only when they may have changed: a lease event
    // that leaves this node's config as it was (any other client joining, for
    // a reflector's client) asks BIRD nothing; the poller keeps readiness fresh.
    if (changed || first) await poll();
    if (first) schedulePoll();
  };

  return {
    type: BGP,
    mtu: ctx.ext.mtu,
    backendData: opts.routeReflector ? { RouteReflector: true } : null,
    desired: () => emptyState(),
    sync,
    sessions: () => bird.sessions(),
    configuredSessions: () => configured,
    metrics: () => bgpMetrics(configured.length, live),
    notReadyReason: () =>
      !applied ? 'BIRD is not configured yet' : liveError ?? sessionReadiness({ configured, live, startedAt: bird.startedAt, graceMs, now: Date.now() }),
    stop: async ({ teardown }) => {
      stopped = true;
      clearTimeout(poller);
      restorer.stop();
      // Without teardown BIRD runs on, sessions and kernel routes untouched,
      // and the next agent adopts it: the data path never notices.
      await bird.stop({ keepRunning: !teardown });
      if (teardown && bird.supervised) await flushBirdRoutes(routedPrefixes(ctx.config, options), opts.execPrefix ?? [], ctx);
    },
  };
}

/**
 * Undefined when every configured session is Established, else why not:
 * while BIRD is younger than `graceMs` the sessions are still coming up;
 * after that a session that is not Established is a failure, named with its
 * state (as Calico's bird-ready check does).
 */
export function sessionReadiness(input: {
  configured: readonly Pick<BirdSession, 'name' | 'peer'>[];
  live: readonly Pick<BgpSession, 'name' | 'state'>[];
  startedAt: number | undefined;
  graceMs: number;
  now: number;
}): string | undefined {
  const { configured } = input;
  const state = new Map(input.live.map((s) => [s.name, s.state]));
  const waiting = configured.filter((s) => state.get(s.name) !== 'Established');
  if (waiting.length === 0) return undefined;
  const list = (describe: (s: Pick<BirdSession, 'name' | 'peer'>) => string): string =>
    waiting.slice(0, 5).map(describe).join(', ') + (waiting.length > 5 ? `, and ${waiting.length - 5} more` : '');
  const graceOver = input.startedAt !== undefined && input.now - input.startedAt >= input.graceMs;
  if (!graceOver) return `${configured.length - waiting.length}/${configured.length} BGP sessions established (waiting for ${list((s) => `${s.peer}`)})`;
  return `BGP sessions not Established after ${Math.round(input.graceMs / 1000)} s: ${list((s) => `${s.peer} (${state.get(s.name) ?? 'not in BIRD'})`)}; check that peer and its BIRD`;
}

/** Every family's Network and the AllowedPrefixes (parseBgpOptions keeps those to the families the net-conf runs). */
function routedPrefixes(config: NetConf, options: BgpOptions): Cidr[] {
  return [...confNetworks(config), ...options.allowedPrefixes];
}

/** Teardown: BIRD's persisted routes (proto bird) inside the prefixes it owned, each family. */
async function flushBirdRoutes(prefixes: Cidr[], prefix: string[], ctx: BackendContext): Promise<void> {
  for (const cidr of prefixes) {
    await flushProtocolRoutes(cidr.toString(), 'bird', prefix).catch((err: unknown) => ctx.logger.warn(`removing BIRD's routes in ${cidr} failed: ${oneLine(err)}`));
  }
}
