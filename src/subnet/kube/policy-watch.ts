// What NetworkPolicy enforcement needs from the API server: every pod,
// namespace and networking.k8s.io/v1 NetworkPolicy, listed and watched
// cluster-wide (list-watch.ts), kept as parsed info only (policy/objects.ts)
// and handed on as one PolicyWorld whenever something policy reads changed.
import type { KubeConfig } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import { oneLine } from '../../errors.js';
import { namespaceInfoOf, podInfoOf, policyObjectOf } from '../../policy/objects.js';
import type { NamespaceInfo, NetworkPolicyObject, PodInfo, PolicyWorld } from '../../policy/types.js';
import { KubeApi, KubeForbiddenError, type KubeCollection } from './api.js';
import { listAndWatch, type KubeObjectEvent } from './list-watch.js';

export interface PolicyWorldWatchOptions {
  /** The API server to watch; or `api`, an existing client. */
  kubeConfig?: KubeConfig;
  api?: KubeApi;
  logger: Logger;
  /** The API server ends each watch after about this long and it is resumed (default 300 s). */
  watchTimeoutSeconds?: number;
  /** Changes within this long of each other make one onChange call (default 20 ms). */
  debounceMs?: number;
}

type PolicyCollection = Extract<KubeCollection, 'pods' | 'namespaces' | 'networkpolicies'>;

const COLLECTIONS: readonly PolicyCollection[] = ['pods', 'namespaces', 'networkpolicies'];

/**
 * One collection as policy reads it: parsed info by key, each with its JSON
 * text, so an update that changes nothing policy reads (a pod's status
 * conditions, a policy's annotations) is recognised without a deep compare.
 */
class InfoTable<T> {
  private readonly items = new Map<string, { info: T; text: string }>();

  constructor(
    /** The object's key ("namespace/name", or the name), undefined when its metadata is unusable. */
    private readonly keyOf: (obj: Record<string, any>) => string | undefined,
    /** The info, undefined for an object policy leaves out. */
    private readonly parse: (obj: unknown) => T | undefined,
  ) {}

  get size(): number {
    return this.items.size;
  }

  /** Applies one event; true when what policy reads changed. */
  apply(type: 'ADDED' | 'MODIFIED' | 'DELETED', obj: Record<string, any>): boolean {
    const key = this.keyOf(obj);
    if (key === undefined) return false;
    const info = type === 'DELETED' ? undefined : this.parse(obj);
    const before = this.items.get(key);
    if (info === undefined) return this.items.delete(key);
    const text = JSON.stringify(info);
    if (before?.text === text) return false;
    this.items.set(key, { info, text });
    return true;
  }

  /** Replaces everything with a list's items; true when what policy reads changed. */
  replace(objs: Record<string, any>[]): boolean {
    const next = new InfoTable(this.keyOf, this.parse);
    for (const obj of objs) next.apply('ADDED', obj);
    let changed = next.items.size !== this.items.size;
    for (const [key, { text }] of next.items) if (this.items.get(key)?.text !== text) changed = true;
    this.items.clear();
    for (const [key, entry] of next.items) this.items.set(key, entry);
    return changed;
  }

  /** The infos, sorted by key so equal worlds look equal. */
  values(): T[] {
    return [...this.items.entries()].sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0)).map(([, e]) => e.info);
  }
}

interface CollectionState {
  listed: boolean;
  /** The failure of its last list or watch, until one succeeds again. */
  failure?: unknown;
}

export class PolicyWorldWatch {
  private readonly api: KubeApi;
  private readonly log: Logger;
  private readonly pods = new InfoTable<PodInfo>(namespacedKey, podInfoOf);
  private readonly namespaces = new InfoTable<NamespaceInfo>(clusterKey, namespaceInfoOf);
  private readonly policies = new InfoTable<NetworkPolicyObject>(namespacedKey, policyObjectOf);
  private readonly state: Record<PolicyCollection, CollectionState> = {
    pods: { listed: false },
    namespaces: { listed: false },
    networkpolicies: { listed: false },
  };
  private resourceVersion = '';
  /** The world as last built; dropped at every change. */
  private built: PolicyWorld | undefined;
  /**
   * What the watches have done: watch events received (bookmarks included),
   * and onChange calls made.
   */
  readonly counters = { events: 0, changes: 0 };

  constructor(private readonly opts: PolicyWorldWatchOptions) {
    if (opts.api) this.api = opts.api;
    else if (opts.kubeConfig) this.api = new KubeApi(opts.kubeConfig);
    else throw new Error('PolicyWorldWatch needs kubeConfig or api');
    this.log = opts.logger.child({ watch: 'policy' });
  }

  /**
   * Lists and watches pods, namespaces and networkpolicies until `signal`
   * aborts (then resolves). `onChange` gets the world once all three are
   * listed, then after each burst of changes to what policy reads.
   */
  async run(onChange: (world: PolicyWorld) => void, signal: AbortSignal): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    const flush = (): void => {
      timer = undefined;
      const world = this.world();
      if (!world || signal.aborted) return;
      this.counters.changes++;
      try {
        onChange(world);
      } catch (err) {
        this.log.error({ err: oneLine(err) }, 'policy world handler failed');
      }
    };
    // Changes before all three are listed wait for the last first list, which is a change itself.
    const changed = (): void => {
      this.built = undefined;
      if (!timer && this.synced()) timer = setTimeout(flush, this.opts.debounceMs ?? 20);
    };
    try {
      await Promise.all(
        COLLECTIONS.map((resource) => {
          const table = this.table(resource);
          return listAndWatch<Record<string, any>>(
            {
              resource,
              logger: this.log,
              ...(this.opts.watchTimeoutSeconds !== undefined ? { watchTimeoutSeconds: this.opts.watchTimeoutSeconds } : {}),
              source: {
                list: (s) => this.list(resource, s),
                watch: (rv, o, onEvent) => this.api.watch(resource, rv, o, onEvent),
              },
              onList: (items, rv) => {
                this.seen(rv);
                const first = !this.state[resource].listed;
                this.state[resource].listed = true;
                if (table.replace(items) || first) changed();
              },
              onEvent: (event: KubeObjectEvent) => {
                this.counters.events++;
                const rv = event.object?.metadata?.resourceVersion;
                if (typeof rv === 'string') this.seen(rv);
                if (event.type === 'BOOKMARK') return;
                if (table.apply(event.type, event.object)) changed();
              },
              onError: (err) => {
                this.state[resource].failure = err;
              },
              onHealthy: () => {
                delete this.state[resource].failure;
              },
            },
            signal,
          );
        }),
      );
    } finally {
      clearTimeout(timer);
    }
  }

  /** The cluster as last seen; undefined until pods, namespaces and networkpolicies have each been listed once. */
  world(): PolicyWorld | undefined {
    if (!this.synced()) return undefined;
    return (this.built ??= {
      pods: this.pods.values(),
      namespaces: this.namespaces.values(),
      policies: this.policies.values(),
      resourceVersion: this.resourceVersion,
    });
  }

  /** One line saying why the watch is not synced or is failing (cause and fix), or undefined when all is well. */
  health(): string | undefined {
    for (const resource of COLLECTIONS) {
      const { failure } = this.state[resource];
      if (failure === undefined) continue;
      if (failure instanceof KubeForbiddenError) {
        return `NetworkPolicy watch: ${oneLine(failure).split('; ')[0]}: the ClusterRole weft lacks the rules to list and watch pods, namespaces and networkpolicies; apply deploy/ again`;
      }
      return `NetworkPolicy watch: ${oneLine(failure)}`;
    }
    const waiting = COLLECTIONS.filter((r) => !this.state[r].listed);
    if (waiting.length) return `NetworkPolicy watch: not synced yet, waiting for the first list of ${waiting.join(', ')} from the API server`;
    return undefined;
  }

  private list(resource: PolicyCollection, signal: AbortSignal) {
    if (resource === 'pods') return this.api.listPods(signal);
    if (resource === 'namespaces') return this.api.listNamespaces(signal);
    return this.api.listNetworkPolicies(signal);
  }

  private table(resource: PolicyCollection): InfoTable<unknown> {
    if (resource === 'pods') return this.pods;
    if (resource === 'namespaces') return this.namespaces;
    return this.policies;
  }

  private synced(): boolean {
    return COLLECTIONS.every((r) => this.state[r].listed);
  }

  /** Keeps the newest resourceVersion: numerically when both are numbers (etcd revisions are), else the later one seen. */
  private seen(rv: string): void {
    if (!rv) return;
    const numeric = /^\d+$/;
    if (this.resourceVersion && numeric.test(rv) && numeric.test(this.resourceVersion) && BigInt(rv) <= BigInt(this.resourceVersion)) return;
    if (rv !== this.resourceVersion) {
      this.resourceVersion = rv;
      this.built = undefined;
    }
  }
}

function namespacedKey(obj: Record<string, any>): string | undefined {
  const ns = obj?.metadata?.namespace;
  const name = obj?.metadata?.name;
  return typeof ns === 'string' && typeof name === 'string' ? `${ns}/${name}` : undefined;
}

function clusterKey(obj: Record<string, any>): string | undefined {
  const name = obj?.metadata?.name;
  return typeof name === 'string' ? name : undefined;
}
