// The plugin's side of the pins contract (src/ipam/pins-api.ts): ask the
// node's agent what a pod pins before wiring it, and ask it to republish
// borrowed addresses after. Plain HTTP over the agent's unix socket.
import { request } from 'node:http';
import { PINS_STATUS, podPinsPath, SYNC_PATH, type PodPinsAnswer } from '../ipam/pins-api.js';
import { CniCode, CniError } from './errors.js';

const ASK_TIMEOUT_MS = 3000;
const SYNC_TIMEOUT_MS = 1000;
const MAX_ANSWER = 64 << 10;

interface Reply {
  status: number;
  body: string;
}

function call(socketPath: string, method: 'GET' | 'POST', path: string, timeoutMs: number): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = request({ socketPath, method, path, timeout: timeoutMs, headers: method === 'POST' ? { 'content-length': 0 } : {} }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (s: string) => {
        body += s;
        if (body.length > MAX_ANSWER) req.destroy(new Error(`answer larger than ${MAX_ANSWER} bytes`));
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`no answer within ${timeoutMs / 1000} s`)));
    req.on('error', reject);
    req.end();
  });
}

/** The first line of an agent's error answer ({error}), else the raw text. */
function errorLine(body: string): string {
  try {
    const v = JSON.parse(body) as { error?: unknown };
    if (typeof v.error === 'string') return v.error.split('\n')[0]!.slice(0, 512);
  } catch {
    // not JSON: show it as text
  }
  return body.split('\n')[0]!.slice(0, 512) || 'no reason given';
}

/**
 * What the pod pins, or undefined when the agent does not know the pod
 * (it is then wired as an unpinned pod). Refusals and an agent that does not
 * answer are CniErrors: conflict (110), invalid (111), try again later (11).
 */
export async function askPodPins(socketPath: string, pod: { namespace: string; name: string }): Promise<PodPinsAnswer | undefined> {
  let reply: Reply;
  try {
    reply = await call(socketPath, 'GET', podPinsPath(pod.namespace, pod.name), ASK_TIMEOUT_MS);
  } catch (err) {
    throw new CniError(CniCode.tryAgainLater, `the weft agent did not answer on ${socketPath} (${(err as Error).message})`, 'check that the weft agent runs on this node');
  }
  switch (reply.status) {
    case PINS_STATUS.ok:
      return parseAnswer(reply.body, socketPath);
    case PINS_STATUS.unknownPod:
      return undefined;
    case PINS_STATUS.heldElsewhere:
      throw new CniError(CniCode.addressConflict, errorLine(reply.body));
    case PINS_STATUS.badAnnotation:
      throw new CniError(CniCode.invalidAddress, errorLine(reply.body));
    case PINS_STATUS.notReady:
      throw new CniError(CniCode.tryAgainLater, `the weft agent on ${socketPath} is not ready: ${errorLine(reply.body)}`);
    default:
      throw new CniError(CniCode.tryAgainLater, `the weft agent on ${socketPath} answered ${reply.status}: ${errorLine(reply.body)}`);
  }
}

function parseAnswer(body: string, socketPath: string): PodPinsAnswer {
  const bad = (): CniError => new CniError(CniCode.tryAgainLater, `the weft agent on ${socketPath} gave an unreadable pins answer`, 'restart the weft agent');
  let v: unknown;
  try {
    v = JSON.parse(body);
  } catch {
    throw bad();
  }
  const a = v as Partial<PodPinsAnswer>;
  if (typeof a !== 'object' || a === null || typeof a.uid !== 'string' || !Array.isArray(a.addresses) || !a.addresses.every((x) => typeof x === 'string')) throw bad();
  if (a.mac !== undefined && typeof a.mac !== 'string') throw bad();
  return { uid: a.uid, addresses: a.addresses, ...(a.mac ? { mac: a.mac } : {}) };
}

/** Best effort: asks the agent to republish borrowed addresses now; its own reconcile catches up otherwise. */
export async function requestSync(socketPath: string): Promise<void> {
  await call(socketPath, 'POST', SYNC_PATH, SYNC_TIMEOUT_MS).catch(() => undefined);
}
