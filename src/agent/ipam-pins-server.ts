// The agent's side of src/ipam/pins-api.ts: a unix socket beside subnet.env
// (mode 0600: only root's CNI plugin asks) answering what a pod pins and
// taking the plugin's "republish borrowed addresses now". The pod is read
// fresh from the API server (its annotations may have changed since the
// watch last saw it); who else holds an address comes from the pod watch.
import { chmod, rm, writeFile } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import type { Cidr } from '../core/cidr.js';
import { oneLine, WeftError } from '../errors.js';
import { AnnotationError, derivedMac, podPins } from '../ipam/annotations.js';
import { PINS_STATUS, SYNC_PATH, type PinsErrorAnswer, type PodPinsAnswer } from '../ipam/pins-api.js';
import type { IpamPodSource } from '../ipam/pod-source.js';

export interface PinsServerOptions {
  socketPath: string;
  pods: IpamPodSource;
  /** The cluster Network(s); undefined before the config is read. */
  networks: () => Cidr[] | undefined;
  /** Republishes the node's borrowed addresses (POST SYNC_PATH). */
  sync: () => Promise<void>;
  logger: Logger;
}

type Answer = { status: number; body?: PodPinsAnswer | PinsErrorAnswer };

const POD_PATH = /^\/v1\/pods\/([^/]+)\/([^/]+)$/;

/** What the socket answers one request (the server below is only transport). */
export async function answerPins(opts: PinsServerOptions, method: string, path: string): Promise<Answer> {
  if (method === 'POST' && path === SYNC_PATH) {
    await opts.sync();
    return { status: 204 };
  }
  const m = POD_PATH.exec(path);
  if (method !== 'GET' || !m) return { status: 404, body: { error: `no such call: ${method} ${path.slice(0, 100)}; the plugin and agent are of different weft versions` } };
  let namespace: string;
  let name: string;
  try {
    namespace = decodeURIComponent(m[1]!);
    name = decodeURIComponent(m[2]!);
  } catch {
    return { status: 404, body: { error: `bad pod path ${path.slice(0, 100)}` } };
  }
  const networks = opts.networks();
  if (!networks || !opts.pods.listed()) {
    return { status: PINS_STATUS.notReady, body: { error: 'the weft agent has not listed pods yet; the runtime retries the pod' } };
  }
  let pod: Record<string, any> | undefined;
  try {
    pod = await opts.pods.getPod(namespace, name);
  } catch (err) {
    return { status: PINS_STATUS.notReady, body: { error: `cannot read pod ${namespace}/${name} from the API server (${oneLine(err)}); the runtime retries the pod` } };
  }
  if (!pod) return { status: PINS_STATUS.unknownPod, body: { error: `the API server has no pod ${namespace}/${name}` } };
  const meta = pod.metadata ?? {};
  let pins;
  try {
    pins = podPins({ name, annotations: stringMap(meta.annotations), labels: stringMap(meta.labels) }, networks);
  } catch (err) {
    if (err instanceof AnnotationError) return { status: PINS_STATUS.badAnnotation, body: { error: `pod ${namespace}/${name}: ${err.message}` } };
    throw err;
  }
  for (const ip of pins.addresses) {
    const holder = opts.pods.holderOf(ip, { namespace, name });
    if (holder) {
      return {
        status: PINS_STATUS.heldElsewhere,
        body: { error: `pinned address ${ip} of pod ${namespace}/${name} is held by pod ${holder.namespace}/${holder.name}${holder.nodeName ? ` on node ${holder.nodeName}` : ''}; delete that pod or pin another address` },
      };
    }
  }
  const mac = pins.mac ?? derivedMac(pins.addresses);
  return { status: PINS_STATUS.ok, body: { uid: typeof meta.uid === 'string' ? meta.uid : '', addresses: pins.addresses.map(String), ...(mac ? { mac } : {}) } };
}

/** Only string values: annotations and labels from the API are hostile input like any other. */
function stringMap(v: unknown): Record<string, string> {
  const out: Record<string, string> = {};
  if (typeof v !== 'object' || v === null) return out;
  for (const [k, val] of Object.entries(v)) if (typeof val === 'string') out[k] = val;
  return out;
}

/**
 * A listening pins server. close() stops it and leaves an empty file (not a
 * socket) in its place: a plugin that finds the path but cannot connect
 * answers "try again later", so a pinned pod created while the agent is away
 * (an upgrade, a restart) waits for it instead of being wired with an
 * ordinary address. Only an agent that is not in kube mode removes the path.
 */
export interface PinsServer {
  close(): Promise<void>;
}

/** Listens on `opts.socketPath`, replacing a stale socket or placeholder left by an agent before it. */
export async function servePins(opts: PinsServerOptions): Promise<PinsServer> {
  const log = opts.logger;
  const server: Server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const path = (req.url ?? '/').split('?')[0]!;
    req.resume();
    answerPins(opts, req.method ?? 'GET', path)
      .catch((err: unknown): Answer => {
        log.error(`IPAM pins socket: ${req.method} ${path}: ${oneLine(err)}`);
        return { status: 500, body: { error: oneLine(err) } };
      })
      .then(({ status, body }) => {
        if (body === undefined) return void res.writeHead(status).end();
        res.writeHead(status, { 'content-type': 'application/json' });
        res.end(JSON.stringify(body) + '\n');
      });
  });
  await rm(opts.socketPath, { force: true });
  await new Promise<void>((resolve, reject) => {
    server.once('error', (err: NodeJS.ErrnoException) =>
      reject(new WeftError(`cannot listen on the IPAM socket ${opts.socketPath} (${err.code ?? err.message})`, 'check that the directory of --subnet-file exists and is writable by root')),
    );
    server.listen(opts.socketPath, () => resolve());
  });
  await chmod(opts.socketPath, 0o600);
  return {
    async close() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await writeFile(opts.socketPath, '', { mode: 0o600 });
    },
  };
}
