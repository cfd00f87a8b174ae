// The Kubernetes API calls weft makes, all in one place: KUBE_API_CALLS is
// the table deploy/'s ClusterRole is checked against, and KubeApi's methods
// are the only code that calls the API server.
import { request as httpRequest, type IncomingMessage, type RequestOptions } from 'node:http';
import { request as httpsRequest } from 'node:https';
import {
  ApiException,
  CoreV1Api,
  Observable,
  PatchStrategy,
  Watch,
  type KubeConfig,
  type RequestContext,
  type ResponseContext,
  type V1Node,
} from '@kubernetes/client-node';
import { TransientError, WeftError, oneLine } from '../../errors.js';

export interface KubeApiCall {
  /** "" is the core group. */
  apiGroup: string;
  resource: string;
  verb: string;
}

/** Every API call KubeApi can make: the RBAC rules grant exactly these. */
export const KUBE_API_CALLS: readonly KubeApiCall[] = [
  { apiGroup: '', resource: 'nodes', verb: 'get' },
  { apiGroup: '', resource: 'nodes', verb: 'list' },
  { apiGroup: '', resource: 'nodes', verb: 'watch' },
  { apiGroup: '', resource: 'nodes', verb: 'patch' },
  { apiGroup: '', resource: 'nodes/status', verb: 'patch' },
  // NetworkPolicy enforcement: every pod, namespace and policy, cluster-wide, read only.
  { apiGroup: '', resource: 'pods', verb: 'list' },
  { apiGroup: '', resource: 'pods', verb: 'watch' },
  // IPAM: a fresh read of a pod's pinning annotations when the CNI plugin asks (the watch may lag).
  { apiGroup: '', resource: 'pods', verb: 'get' },
  { apiGroup: '', resource: 'namespaces', verb: 'list' },
  { apiGroup: '', resource: 'namespaces', verb: 'watch' },
  { apiGroup: 'networking.k8s.io', resource: 'networkpolicies', verb: 'list' },
  { apiGroup: 'networking.k8s.io', resource: 'networkpolicies', verb: 'watch' },
];

/** The cluster-wide collection paths weft lists and watches. */
export const KUBE_PATHS = {
  nodes: '/api/v1/nodes',
  pods: '/api/v1/pods',
  namespaces: '/api/v1/namespaces',
  networkpolicies: '/apis/networking.k8s.io/v1/networkpolicies',
} as const;

export type KubeCollection = keyof typeof KUBE_PATHS;

/** A watch event as the API server streams it; objects arrive as plain JSON. */
export interface KubeWatchEvent {
  type: 'ADDED' | 'MODIFIED' | 'DELETED' | 'BOOKMARK' | 'ERROR';
  object: Record<string, any>;
}

export interface KubeWatchOptions {
  /** The server ends the watch after this long. */
  timeoutSeconds: number;
  signal: AbortSignal;
  /** Told once the server has accepted the watch. */
  onOpen?: () => void;
}

/** A list answer: the items as plain JSON and the resourceVersion to watch from. */
export interface KubeList<T = Record<string, any>> {
  items: T[];
  resourceVersion: string;
}

/** An API server answer with an HTTP status (404, 410 Gone, 403, ...). */
export class KubeApiError extends Error {
  /** Server-side trouble or throttling: worth asking again. */
  readonly retryable: boolean;

  constructor(readonly status: number, message: string) {
    super(message);
    this.name = 'KubeApiError';
    this.retryable = status >= 500 || status === 429;
  }
}

/**
 * HTTP 403: weft's credentials are good but its ClusterRole does not grant
 * the call, most often one from an older deploy/ that lacks a newer rule.
 */
export class KubeForbiddenError extends WeftError {
  constructor(message: string) {
    super(`${message}: the API server forbids weft this call`, 'apply deploy/ again (its ClusterRole weft grants every call weft makes) or fix the kubeconfig');
    this.name = 'KubeForbiddenError';
  }
}

export interface NodeCondition {
  type: string;
  status: 'True' | 'False' | 'Unknown';
  reason: string;
  message: string;
}

const DEFAULT_REQUEST_TIMEOUT_MS = 30_000;

export class KubeApi {
  private readonly core: CoreV1Api;
  private readonly watcher: Watch;

  constructor(private readonly kubeConfig: KubeConfig, private readonly requestTimeoutMs = DEFAULT_REQUEST_TIMEOUT_MS) {
    this.core = kubeConfig.makeApiClient(CoreV1Api);
    this.watcher = new Watch(kubeConfig);
  }

  /** get nodes/NAME; undefined when the node does not exist. */
  async getNode(name: string, signal?: AbortSignal): Promise<V1Node | undefined> {
    try {
      return await this.call(`get node ${name}`, signal, (options) => this.core.readNode({ name }, options));
    } catch (err) {
      if (err instanceof KubeApiError && err.status === 404) return undefined;
      throw err;
    }
  }

  /** list nodes: the items and the resourceVersion to watch from. */
  async listNodes(signal?: AbortSignal): Promise<{ items: V1Node[]; resourceVersion: string }> {
    const list = await this.call('list nodes', signal, (options) => this.core.listNode({}, options));
    return { items: list.items, resourceVersion: list.metadata?.resourceVersion ?? '' };
  }

  /** list pods in all namespaces, as plain JSON. */
  listPods(signal?: AbortSignal): Promise<KubeList> {
    return this.listRaw('pods', signal);
  }

  /** get pods/NAME in NAMESPACE, as plain JSON; undefined when the pod does not exist. */
  async getPod(namespace: string, name: string, signal?: AbortSignal): Promise<Record<string, any> | undefined> {
    const path = `/api/v1/namespaces/${encodeURIComponent(namespace)}/pods/${encodeURIComponent(name)}`;
    try {
      const obj = await this.getJson(`get pod ${namespace}/${name}`, path, signal);
      return typeof obj === 'object' && obj !== null && !Array.isArray(obj) ? (obj as Record<string, any>) : undefined;
    } catch (err) {
      if (err instanceof KubeApiError && err.status === 404) return undefined;
      throw err;
    }
  }

  /** list namespaces, as plain JSON. */
  listNamespaces(signal?: AbortSignal): Promise<KubeList> {
    return this.listRaw('namespaces', signal);
  }

  /** list networking.k8s.io/v1 networkpolicies in all namespaces, as plain JSON. */
  listNetworkPolicies(signal?: AbortSignal): Promise<KubeList> {
    return this.listRaw('networkpolicies', signal);
  }

  /**
   * watch a collection from `resourceVersion`, calling `onEvent` for each
   * event, until the server ends the stream (resolves), `signal` aborts
   * (resolves) or the request fails (rejects with KubeApiError for an HTTP
   * status). `onEvent` returning false stops the watch. `opts.onOpen` is
   * told when the server has accepted the watch (HTTP 200).
   */
  watch(
    collection: KubeCollection,
    resourceVersion: string,
    opts: KubeWatchOptions,
    onEvent: (event: KubeWatchEvent) => boolean,
  ): Promise<void> {
    return new Promise((resolve, reject) => {
      let controller: AbortController | undefined;
      let stopped = false;
      const stop = (): void => {
        stopped = true;
        controller?.abort();
      };
      let ended = false;
      const finish = (err: unknown): void => {
        ended = true;
        opts.signal.removeEventListener('abort', stop);
        if (!err || stopped || opts.signal.aborted) resolve();
        else reject(asApiError(`watch ${collection}`, err));
      };
      opts.signal.addEventListener('abort', stop, { once: true });
      const query = { resourceVersion, allowWatchBookmarks: true, timeoutSeconds: opts.timeoutSeconds };
      this.watcher
        .watch(KUBE_PATHS[collection], query, (type: string, object: Record<string, any>) => {
          if (stopped) return;
          // The library swallows what its callback throws; nothing may escape here.
          let keepGoing = false;
          try {
            keepGoing = onEvent({ type: type as KubeWatchEvent['type'], object });
          } finally {
            if (!keepGoing) stop();
          }
        }, finish)
        .then((c) => {
          controller = c;
          if (stopped) c.abort();
          // The library resolves after the response headers, and after calling `finish` on a refusal.
          else if (!ended) opts.onOpen?.();
        }, finish);
    });
  }

  /** patch nodes/NAME with a JSON merge patch of metadata.annotations (null deletes a key). */
  async patchAnnotations(name: string, annotations: Record<string, string | null>, signal?: AbortSignal): Promise<V1Node> {
    const body = { metadata: { annotations } };
    return this.call(`patch node ${name}`, signal, (options) => this.core.patchNode({ name, body }, options), PatchStrategy.MergePatch);
  }

  /** patch nodes/NAME/status: conditions merge by type (strategic merge), as kubelet writes them. */
  async patchConditions(name: string, conditions: NodeCondition[], signal?: AbortSignal): Promise<V1Node> {
    const now = new Date().toISOString();
    const body = { status: { conditions: conditions.map((c) => ({ ...c, lastHeartbeatTime: now, lastTransitionTime: now })) } };
    return this.call(
      `patch node ${name} status`,
      signal,
      (options) => this.core.patchNodeStatus({ name, body }, options),
      PatchStrategy.StrategicMergePatch,
    );
  }

  /**
   * GET a collection as plain JSON, not through the typed client: its
   * models rename and convert fields (dates, IntOrString), and policy
   * specs must reach the compiler exactly as list and watch both send them.
   */
  private async listRaw(collection: KubeCollection, signal?: AbortSignal): Promise<KubeList> {
    const body = (await this.getJson(`list ${collection}`, KUBE_PATHS[collection], signal)) as { items?: unknown; metadata?: { resourceVersion?: unknown } } | null;
    const items = Array.isArray(body?.items) ? body.items.filter((i): i is Record<string, any> => typeof i === 'object' && i !== null) : [];
    const rv = body?.metadata?.resourceVersion;
    return { items, resourceVersion: typeof rv === 'string' ? rv : '' };
  }

  /** One GET of `path` with the kubeconfig's credentials and a deadline; the answer parsed, errors as KubeApiError. */
  private async getJson(what: string, path: string, signal?: AbortSignal): Promise<unknown> {
    const deadline = AbortSignal.timeout(this.requestTimeoutMs);
    const requestSignal = signal ? (AbortSignal as unknown as { any(s: AbortSignal[]): AbortSignal }).any([signal, deadline]) : deadline;
    const server = this.kubeConfig.getCurrentCluster()?.server;
    if (!server) throw new WeftError(`${what}: no API server in the Kubernetes client config`, 'run weft in a pod with its ServiceAccount, or set KUBECONFIG');
    const url = new URL(server.replace(/\/+$/, '') + path);
    const options: RequestOptions = { method: 'GET', headers: { Accept: 'application/json' } };
    await this.kubeConfig.applyToHTTPSOptions(options);
    let status: number;
    let text: string;
    try {
      ({ status, text } = await getText(url, { ...options, signal: requestSignal }));
    } catch (err) {
      if (deadline.aborted && !signal?.aborted) {
        throw new TransientError(`${what}: no answer from the API server in ${this.requestTimeoutMs / 1000} s`, UNREACHABLE_FIX);
      }
      throw asApiError(what, err);
    }
    if (status !== 200) throw asApiError(what, new ApiException(status, `HTTP ${status}`, text, {}));
    try {
      return JSON.parse(text);
    } catch {
      throw new KubeApiError(502, `${what}: the API server's answer is not JSON`);
    }
  }

  /**
   * One request with a deadline and the caller's signal, through a
   * middleware (the client's only hook for both), errors as KubeApiError.
   */
  private async call<T>(what: string, signal: AbortSignal | undefined, send: (options: object) => Promise<T>, contentType?: string): Promise<T> {
    const deadline = AbortSignal.timeout(this.requestTimeoutMs);
    // AbortSignal.any is in Node 20's runtime, not in its @types.
    const requestSignal = signal ? (AbortSignal as unknown as { any(s: AbortSignal[]): AbortSignal }).any([signal, deadline]) : deadline;
    const middleware = {
      pre: (ctx: RequestContext): Observable<RequestContext> => {
        if (contentType) ctx.setHeaderParam('Content-Type', contentType);
        ctx.setSignal(requestSignal as never);
        return new Observable(Promise.resolve(ctx));
      },
      post: (res: ResponseContext): Observable<ResponseContext> => new Observable(Promise.resolve(res)),
    };
    try {
      return await send({ middleware: [middleware], middlewareMergeStrategy: 'append' });
    } catch (err) {
      if (deadline.aborted && !signal?.aborted) {
        throw new TransientError(`${what}: no answer from the API server in ${this.requestTimeoutMs / 1000} s`, UNREACHABLE_FIX);
      }
      throw asApiError(what, err);
    }
  }
}

const UNREACHABLE_FIX = 'check that the Kubernetes API server is up and reachable from this node';

function asApiError(what: string, err: unknown): unknown {
  const status = err instanceof ApiException ? err.code : (err as { statusCode?: unknown })?.statusCode;
  // No HTTP answer at all: refused, reset, unresolvable.
  if (typeof status !== 'number') return new TransientError(`${what}: ${oneLine(err)}`, UNREACHABLE_FIX);
  const body = err instanceof ApiException ? (err.body as { message?: unknown } | string | undefined) : undefined;
  const detail = typeof body === 'string' ? safeMessage(body) : typeof body?.message === 'string' ? body.message : '';
  const message = `${what}: HTTP ${status}${detail ? ` (${detail.slice(0, 200)})` : ''}`;
  if (status === 401) {
    return new WeftError(`${message}: the API server refused weft's credentials`, 'apply deploy/ (ServiceAccount weft and ClusterRole weft) or fix the kubeconfig');
  }
  if (status === 403) return new KubeForbiddenError(message);
  return new KubeApiError(status, message);
}

/** One GET with node's own client (the kubeconfig's agent, headers and TLS options applied). */
function getText(url: URL, options: RequestOptions): Promise<{ status: number; text: string }> {
  const send = url.protocol === 'https:' ? httpsRequest : httpRequest;
  return new Promise((resolve, reject) => {
    const req = send(url, options, (res: IncomingMessage) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
}

function safeMessage(text: string): string {
  try {
    const v = JSON.parse(text) as { message?: unknown };
    return typeof v.message === 'string' ? v.message : '';
  } catch {
    return text;
  }
}
