// The one conversation between weft's CNI plugin and its node's agent about
// pinned addresses (kube mode). The plugin runs per ADD with no API
// credentials; the agent holds the pod watch. Before it wires a pod the plugin
// asks the agent, over a unix socket beside subnet.env, what the pod pins
// (weft.io/ip, weft.io/ip-pool, weft.io/mac) and whether another live pod in
// the cluster holds that address. After an ADD or DEL that took or freed an
// address outside the node's own subnet (a borrowed address) it asks the
// agent to republish its lease at once. This file is the contract: the paths,
// the answers and the socket's place; the client and the server live with
// the plugin and the agent.
import { dirname, join } from 'node:path';

/** The socket's file name, in the directory of the node's subnet.env. */
export const PINS_SOCKET_NAME = 'weft-ipam.sock';

/** Where the agent listens, given the subnet file both already share. */
export function pinsSocketPath(subnetFile: string): string {
  return join(dirname(subnetFile), PINS_SOCKET_NAME);
}

/** GET: what the pod pins. */
export function podPinsPath(namespace: string, name: string): string {
  return `/v1/pods/${encodeURIComponent(namespace)}/${encodeURIComponent(name)}`;
}

/** POST, empty body: re-read the IPAM state and republish borrowed addresses now; answers 204. */
export const SYNC_PATH = '/v1/sync';

/**
 * 200 to GET podPinsPath. `addresses` is empty for a pod that pins nothing
 * (then `mac` is absent too). `mac` is the pod's weft.io/mac, else one derived
 * from its pinned address, so a pinned pod keeps its MAC wherever it runs.
 */
export interface PodPinsAnswer {
  uid: string;
  addresses: string[];
  mac?: string;
}

/** Any other status carries one line: the cause and the fix. */
export interface PinsErrorAnswer {
  error: string;
}

/** What each status means to the plugin. */
export const PINS_STATUS = {
  ok: 200,
  /** The API server does not know the pod: the plugin allocates as for an unpinned pod. */
  unknownPod: 404,
  /** Another live pod holds a pinned address (the error names it): ADD fails, nothing changes. */
  heldElsewhere: 409,
  /** An annotation is malformed or outside the cluster Network: ADD fails naming it. */
  badAnnotation: 422,
  /** The agent has not listed pods yet, or the API server did not answer: the runtime retries. */
  notReady: 503,
} as const;
