// NetworkPolicy as one more part of the node's desired state: the watched
// pods, namespaces and policies are compiled into weft's nftables table (the
// same atomic transaction as the rest of the table), and after the table is
// in place the part "policy" cuts the connections a change newly denies and
// keeps bridged traffic visible to nftables. Readiness, metrics and status
// come from here.
import type { Logger } from 'pino';
import type { Family } from '../core/cidr.js';
import { SaidOnce } from '../core/said-once.js';
import { ensureBridgeNetfilter } from '../dataplane/bridge-netfilter.js';
import { Conntrack, type TrackedFlow } from '../dataplane/conntrack.js';
import type { ExtraPart } from '../dataplane/dataplane.js';
import type { PolicyNft } from '../dataplane/nft.js';
import { compilePolicies, podsToFlush, type CompiledPolicy } from '../policy/compile.js';
import { FlowJudge } from '../policy/evaluate.js';
import type { PolicyWorld } from '../policy/types.js';
import type { FailingPart } from './health.js';
import { single, type MetricFamily } from './metrics.js';

/** Where the pods, namespaces and policies come from (the kube watch). */
export interface PolicyWorldSource {
  /** Calls onChange with the whole world once everything is listed, then after changes; resolves when `signal` aborts. */
  run(onChange: (world: PolicyWorld) => void, signal: AbortSignal): Promise<void>;
  /** Why the watch is not synced or failing now; undefined when it is fine. */
  health(): string | undefined;
}

export interface NetworkPolicyOptions {
  source: PolicyWorldSource;
  nodeName: string;
  logger: Logger;
  /** Default: `conntrack` in the agent's namespace. */
  conntrack?: Pick<Conntrack, 'list' | 'delete'>;
  /** Default: the real sysctls. */
  bridgeNetfilter?: (families: readonly Family[]) => Promise<string[]>;
}

export interface PolicyStatus {
  resourceVersion?: string;
  policies: number;
  isolatedPods: number;
  problems: { policy: string; reason: string }[];
}

export class NetworkPolicyEnforcer {
  private readonly log: Logger;
  private readonly conntrack: Pick<Conntrack, 'list' | 'delete'>;
  private readonly bridgeNetfilter: (families: readonly Family[]) => Promise<string[]>;
  private world?: PolicyWorld;
  /** The compile of `world` for `families`, made once per change, not per pass. */
  private compiled?: { world: PolicyWorld; families: string; result: CompiledPolicy };
  /** What the kernel holds: the last compile whose table and flushes were applied. */
  private applied?: CompiledPolicy;
  private appliedVersion?: string;
  private readonly problemsSaid = new SaidOnce(1000);
  private deletedFlows = 0;
  private changesApplied = 0;
  private lastApplyMs = 0;

  constructor(private readonly opts: NetworkPolicyOptions) {
    this.log = opts.logger.child({ component: 'policy' });
    this.conntrack = opts.conntrack ?? new Conntrack();
    this.bridgeNetfilter = opts.bridgeNetfilter ?? ensureBridgeNetfilter;
  }

  /** Follows the source until `signal` aborts; `onChange` asks the agent for a programming pass. */
  run(signal: AbortSignal, onChange: () => void): Promise<void> {
    return this.opts.source.run((world) => {
      this.world = world;
      onChange();
    }, signal);
  }

  /** The table's policy chains and sets for this pass; undefined until the world is known. */
  nft(families: readonly Family[]): PolicyNft | undefined {
    return this.current(families)?.nft;
  }

  private current(families: readonly Family[]): CompiledPolicy | undefined {
    const world = this.world;
    if (!world) return undefined;
    const key = families.join(',');
    if (this.compiled?.world !== world || this.compiled.families !== key) {
      const result = compilePolicies(world, { nodeName: this.opts.nodeName, families: [...families] });
      this.compiled = { world, families: key, result };
      for (const p of result.problems) {
        if (this.problemsSaid.news(p.policy, p.reason)) this.log.warn({ policy: p.policy }, `NetworkPolicy ${p.policy}: ${p.reason}`);
      }
      this.problemsSaid.retain(new Set(result.problems.map((p) => p.policy)));
    }
    return this.compiled.result;
  }

  /**
   * The part applied after the table: bridged traffic made visible to
   * nftables, then the connections the new rules deny cut. `tableFailed`
   * says whether this pass's table write failed (then nothing is claimed).
   */
  part(families: readonly Family[], tableFailed: () => string | undefined): ExtraPart {
    return {
      name: 'policy',
      apply: async () => {
        const next = this.current(families);
        if (!next) return;
        const why = tableFailed();
        if (why) throw new Error(`the policy rules wait for the nftables table (${why})`);
        if (next === this.applied) return;
        const started = Date.now();
        if (next.stats.isolatedPods > 0) {
          const turnedOn = await this.bridgeNetfilter(families);
          if (turnedOn.length) this.log.info(`turned on ${turnedOn.join(' and ')} so that nftables sees traffic between pods of this node`);
        }
        const world = this.compiled!.world;
        await this.cutDenied(this.applied, next, world);
        this.applied = next;
        this.appliedVersion = world.resourceVersion;
        this.changesApplied++;
        this.lastApplyMs = Date.now() - started;
      },
    };
  }

  /** Deletes the tracked flows of changed pods that the new rules deny. */
  private async cutDenied(prev: CompiledPolicy | undefined, next: CompiledPolicy, world: PolicyWorld): Promise<void> {
    const pods = new Set(podsToFlush(prev, next));
    if (!pods.size) return;
    const judge = new FlowJudge(world, this.opts.nodeName);
    const flows = await this.conntrack.list();
    const denied: TrackedFlow[] = flows.filter((f) => (pods.has(f.src) || pods.has(f.dst)) && !judge.allows(f));
    if (!denied.length) return;
    const n = await this.conntrack.delete(denied);
    this.deletedFlows += n;
    this.log.info({ flows: n }, `cut ${n} connection${n === 1 ? '' : 's'} a NetworkPolicy change denies (conntrack entries deleted)`);
  }

  /** /readyz: not ready until the rules reflect a full listing, or while the watch fails. */
  readiness(): FailingPart | undefined {
    const health = this.opts.source.health();
    if (health) return { part: 'policy', reason: health };
    if (!this.world) return { part: 'policy', reason: 'pods, namespaces and NetworkPolicies not listed yet' };
    return undefined;
  }

  status(): PolicyStatus {
    const c = this.applied;
    return {
      ...(this.appliedVersion ? { resourceVersion: this.appliedVersion } : {}),
      policies: c?.stats.policies ?? 0,
      isolatedPods: c?.stats.isolatedPods ?? 0,
      problems: c?.problems ?? [],
    };
  }

  metrics(): MetricFamily[] {
    const s = this.applied?.stats;
    const rv = Number(this.appliedVersion);
    return [
      single('weft_policy_resource_version', 'gauge', 'The newest Kubernetes resourceVersion (pods, namespaces, NetworkPolicies) whose rules are in the kernel', Number.isFinite(rv) ? rv : 0),
      single('weft_policy_policies', 'gauge', 'NetworkPolicies in the cluster', s?.policies ?? 0),
      single('weft_policy_isolated_pods', 'gauge', "This node's pods that a NetworkPolicy isolates in at least one direction", s?.isolatedPods ?? 0),
      single('weft_policy_rules', 'gauge', 'nftables rules the NetworkPolicies compile to on this node', s?.rules ?? 0),
      single('weft_policy_set_elements', 'gauge', 'Elements of the nftables sets the NetworkPolicies compile to on this node', s?.setElements ?? 0),
      single('weft_policy_problems', 'gauge', 'Parts of NetworkPolicies weft cannot use (each allows nothing; see the log)', this.applied?.problems.length ?? 0),
      single('weft_policy_changes_applied_total', 'counter', 'Policy changes whose rules reached the kernel', this.changesApplied),
      single('weft_policy_connections_cut_total', 'counter', 'Tracked connections deleted because a policy change denied them', this.deletedFlows),
      single('weft_policy_last_apply_seconds', 'gauge', 'How long the last policy change took after the table write (bridge check and connection cuts)', this.lastApplyMs / 1000),
    ];
  }
}
