// What weft's IPAM needs from the API server: every pod in the cluster,
// kept as the little IPAM reads (identity, node, addresses, whether it is
// live), for two questions: which pods run on this node (the reconcile frees
// addresses of pods gone from it) and which live pod holds an address (a
// pinned address is refused while another pod has it). Its own small watch,
// so IPAM works with NetworkPolicy turned off; the list-watch loop is the
// shared one (list-watch.ts).
import type { Logger } from 'pino';
import type { IP } from '../../core/cidr.js';
import { oneLine } from '../../errors.js';
import type { NodePod } from '../../ipam/gc.js';
import type { IpamPod, IpamPodSource } from '../../ipam/pod-source.js';
import { podIps } from '../../policy/objects.js';
import type { KubeApi } from './api.js';
import { listAndWatch } from './list-watch.js';

/** The pod's IPAM view; undefined for a host-network pod (it has no pod address) or unusable metadata. */
export function ipamPodOf(obj: unknown): IpamPod | undefined {
  const o = obj as Record<string, any> | undefined;
  const meta = o?.metadata;
  const { namespace, name, uid } = meta ?? {};
  if (typeof namespace !== 'string' || typeof name !== 'string' || !namespace || !name) return undefined;
  if (o?.spec?.hostNetwork === true) return undefined;
  const phase = o?.status?.phase;
  const status = typeof o?.status === 'object' && o.status !== null ? (o.status as Record<string, unknown>) : undefined;
  return {
    namespace,
    name,
    uid: typeof uid === 'string' ? uid : '',
    nodeName: typeof o?.spec?.nodeName === 'string' ? o.spec.nodeName : '',
    ips: podIps(status),
    live: phase !== 'Succeeded' && phase !== 'Failed',
  };
}

export interface IpamPodWatchOptions {
  api: KubeApi;
  nodeName: string;
  logger: Logger;
  watchTimeoutSeconds?: number;
}

export class IpamPodWatch implements IpamPodSource {
  private readonly pods = new Map<string, IpamPod>();
  private wasListed = false;
  private failure?: unknown;

  constructor(private readonly opts: IpamPodWatchOptions) {}

  /** Lists and watches pods until `signal` aborts. */
  run(signal: AbortSignal): Promise<void> {
    return listAndWatch<Record<string, any>>(
      {
        resource: 'pods',
        logger: this.opts.logger,
        ...(this.opts.watchTimeoutSeconds !== undefined ? { watchTimeoutSeconds: this.opts.watchTimeoutSeconds } : {}),
        source: {
          list: (s) => this.opts.api.listPods(s),
          watch: (rv, o, onEvent) => this.opts.api.watch('pods', rv, o, onEvent),
        },
        onList: (items) => {
          this.pods.clear();
          for (const obj of items) this.apply('ADDED', obj);
          this.wasListed = true;
        },
        onEvent: (event) => {
          if (event.type !== 'BOOKMARK') this.apply(event.type, event.object);
        },
        onError: (err) => (this.failure = err),
        onHealthy: () => (this.failure = undefined),
      },
      signal,
    );
  }

  private apply(type: 'ADDED' | 'MODIFIED' | 'DELETED', obj: Record<string, any>): void {
    const pod = ipamPodOf(obj);
    const ns = obj?.metadata?.namespace;
    const name = obj?.metadata?.name;
    if (typeof ns !== 'string' || typeof name !== 'string') return;
    const key = `${ns}/${name}`;
    if (type === 'DELETED' || !pod) this.pods.delete(key);
    else this.pods.set(key, pod);
  }

  listed(): boolean {
    return this.wasListed;
  }

  nodePods(): NodePod[] | undefined {
    if (!this.wasListed) return undefined;
    const out: NodePod[] = [];
    for (const p of this.pods.values()) if (p.nodeName === this.opts.nodeName) out.push({ namespace: p.namespace, name: p.name, uid: p.uid });
    return out;
  }

  holderOf(ip: IP, except: { namespace: string; name: string }): IpamPod | undefined {
    const text = ip.toString();
    for (const p of this.pods.values()) {
      if (!p.live || (p.namespace === except.namespace && p.name === except.name)) continue;
      if (p.ips.includes(text)) return p;
    }
    return undefined;
  }

  getPod(namespace: string, name: string, signal?: AbortSignal): Promise<Record<string, any> | undefined> {
    return this.opts.api.getPod(namespace, name, signal);
  }

  /** Why the pod watch is failing, or undefined. */
  health(): string | undefined {
    return this.failure === undefined ? undefined : `IPAM pod watch: ${oneLine(this.failure)}`;
  }
}
