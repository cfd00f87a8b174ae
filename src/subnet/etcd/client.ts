import { InterceptingCall, type Interceptor } from '@grpc/grpc-js';
import {
  Etcd3,
  GRPCDeadlineExceededError,
  GRPCUnavailableError,
  isRecoverableError,
  type IOptions,
} from 'etcd3';
import { TransientError, WeftError } from '../../errors.js';
import { readTlsCredentials, tlsFailure } from './tls.js';

export const DEFAULT_ETCD_PREFIX = '/weft/network';

export interface EtcdOptions {
  /** "http://127.0.0.1:2379" style URLs (comma-separated on the command line). */
  endpoints: string[];
  prefix: string;
  caFile?: string;
  certFile?: string;
  keyFile?: string;
  /** Deadline of each unary call; keeps an unreachable etcd from hanging a command. */
  dialTimeoutMs?: number;
  /** Told of each request sent (unary calls, each try of one, and stream creations). */
  onRequest?: (call: EtcdCall) => void;
}

/** The etcd calls weft makes, as the request counter labels them: `list` is a range over a prefix (a whole directory), `range` one key. */
export const ETCD_CALLS = ['range', 'list', 'txn', 'lease_grant', 'lease_revoke', 'lease_ttl', 'keepalive', 'watch'] as const;
export type EtcdCall = (typeof ETCD_CALLS)[number];

const CALL_OF: Record<string, EtcdCall> = {
  range: 'range',
  txn: 'txn',
  leaseGrant: 'lease_grant',
  leaseRevoke: 'lease_revoke',
  leaseTimeToLive: 'lease_ttl',
  leaseKeepAlive: 'keepalive',
  watch: 'watch',
};

/**
 * etcd's "require leader" metadata (what clientv3's WithRequireLeader sends):
 * a member without a leader refuses such a call at once ("etcdserver: no
 * leader"), and cancels such a stream once it has had no leader for three
 * election timeouts. Without it a member that lost its quorum keeps an idle
 * watch open and silent, and the agent would never learn etcd is unusable.
 */
const requireLeader: Interceptor = (options, nextCall) =>
  new InterceptingCall(nextCall(options), {
    start(metadata, listener, next) {
      metadata.set('hasleader', 'true');
      next(metadata, listener);
    },
  });

type FaultPolicy = NonNullable<NonNullable<IOptions['faultHandling']>['global']>;

/**
 * A policy that calls straight through, trying at most `attempts` times on
 * connection errors (each try lands on another endpoint). weft runs its own
 * backoff; the library's default circuit breaker would otherwise refuse every
 * call for 5 s after three failures, e.g. right after etcd restarts.
 */
function passThrough(attempts: number): FaultPolicy {
  const noEvent = () => ({ dispose() {} });
  const policy = {
    onSuccess: noEvent,
    onFailure: noEvent,
    async execute<T>(fn: (ctx: { signal: AbortSignal }) => PromiseLike<T> | T, signal?: AbortSignal): Promise<T> {
      const ctx = { signal: signal ?? new AbortController().signal };
      for (let i = 1; ; i++) {
        try {
          return await fn(ctx);
        } catch (err) {
          if (i >= attempts || !(err instanceof Error) || !isRecoverableError(err)) throw err;
        }
      }
    },
  };
  return policy as unknown as FaultPolicy;
}

/** How long a member that failed a connection sits out while others remain. */
const SIT_OUT_MS = 2000;

/**
 * One member's policy when there are several: calls straight through, but a
 * member that just failed with a connection error is passed over for
 * SIT_OUT_MS (its last error stands for it), so etcd3 places the next call
 * or stream on another member. etcd3 puts a stream (lease keepalive, watch)
 * on a random member and never retries it elsewhere: without this, a renewal
 * lands on a dead member one time in three and the lease can run out while
 * two of three members serve.
 */
function sitOutAfterFailure(): FaultPolicy {
  const noEvent = () => ({ dispose() {} });
  let failed: { error: Error; until: number } | undefined;
  const policy = {
    onSuccess: noEvent,
    onFailure: noEvent,
    async execute<T>(fn: (ctx: { signal: AbortSignal }) => PromiseLike<T> | T, signal?: AbortSignal): Promise<T> {
      if (failed && Date.now() < failed.until) throw failed.error;
      try {
        const result = await fn({ signal: signal ?? new AbortController().signal });
        failed = undefined;
        return result;
      } catch (err) {
        if (err instanceof Error && isRecoverableError(err)) failed = { error: err, until: Date.now() + SIT_OUT_MS };
        throw err;
      }
    },
  };
  return policy as unknown as FaultPolicy;
}

/** Refuses an empty or malformed endpoint list (before any client is made: no retry fixes it). */
export function checkEtcdEndpoints(endpoints: readonly string[]): void {
  if (endpoints.length === 0) throw new WeftError('no etcd endpoints given', 'pass --etcd-endpoints=http://HOST:2379');
  for (const e of endpoints) {
    if (!/^https?:\/\/[^\s/]+(:\d+)?\/?$/.test(e)) {
      throw new WeftError(`bad etcd endpoint "${e}"`, 'use http://HOST:PORT or https://HOST:PORT');
    }
  }
}

export function createEtcdClient(opts: EtcdOptions): Etcd3 {
  checkEtcdEndpoints(opts.endpoints);
  const deadlineMs = opts.dialTimeoutMs ?? 5000;
  const options: IOptions = {
    hosts: opts.endpoints,
    // Unary calls get a deadline; streams (watch, keepalive) must not, or they die after it.
    // The factory runs once per request sent, so it is where requests are counted.
    defaultCallOptions: (ctx) => {
      const call = ctx.method === 'range' && ctx.params.range_end?.length ? 'list' : CALL_OF[ctx.method];
      if (call) opts.onRequest?.(call);
      return ctx.isStream ? { interceptors: [requireLeader] } : { deadline: new Date(Date.now() + deadlineMs), interceptors: [requireLeader] };
    },
    faultHandling: { global: passThrough(opts.endpoints.length), host: () => (opts.endpoints.length > 1 ? sitOutAfterFailure() : passThrough(1)) },
    grpcOptions: {
      // grpc's own reconnect backoff grows to 120 s; keep it within weft's 5 s cap.
      'grpc.initial_reconnect_backoff_ms': 100,
      'grpc.max_reconnect_backoff_ms': 5000,
      // Notice a silently dead peer (no RST) on an idle watch stream.
      'grpc.keepalive_time_ms': 15_000,
      'grpc.keepalive_timeout_ms': 5_000,
      // The lease list is one range call; allow thousands of nodes' values in it.
      'grpc.max_receive_message_length': 64 * 1024 * 1024,
    },
  };
  options.credentials = readTlsCredentials(opts.endpoints, opts);
  return new Etcd3(options);
}

/** True for errors that mean "could not talk to etcd" (worth a retry), not "etcd said no". */
export function isEtcdUnreachable(err: unknown): boolean {
  return err instanceof GRPCUnavailableError || err instanceof GRPCDeadlineExceededError;
}

/** etcd could not be reached (refused, timed out): worth retrying with backoff, unlike a refusal. */
export class EtcdUnreachableError extends TransientError {
  constructor(cause: string, fix?: string) {
    super(cause, fix);
    this.name = 'EtcdUnreachableError';
  }
}

/**
 * Turns a failed etcd call into one line that names the endpoints and what
 * weft was doing. WeftErrors pass through unchanged.
 */
export function etcdFailure(err: unknown, endpoints: readonly string[], doing: string): Error {
  if (err instanceof WeftError) return err;
  const tls = tlsFailure(err, endpoints, doing);
  if (tls) return new EtcdUnreachableError(tls.cause, tls.fix);
  const where = endpoints.join(',');
  const detail = String(err instanceof Error ? err.message : err)
    .split('\n')[0]!
    .replace(/^\d+ [A-Z_]+: /, '')
    // grpc-js wraps the cause in boilerplate; keep the cause.
    .replace(/^No connection established\. Last error: (Error: )?/, '')
    .replace(/\.? Resolution note:.*$/, '')
    .slice(0, 160);
  if (isEtcdUnreachable(err) && /no leader/.test(detail)) {
    return new EtcdUnreachableError(`etcd at ${where} has no leader (the member lost its quorum) while ${doing}`, 'bring a majority of the etcd members back');
  }
  if (isEtcdUnreachable(err)) {
    return new EtcdUnreachableError(`etcd at ${where} is unreachable while ${doing} (${detail})`, 'check --etcd-endpoints and that etcd is running');
  }
  return new WeftError(`etcd at ${where} failed while ${doing}: ${detail}`, 'check the etcd server log and its permissions');
}
