import { readFileSync } from 'node:fs';
import { Etcd3, type IOptions } from 'etcd3';
import { WeftError } from '../../errors.js';

export const DEFAULT_ETCD_PREFIX = '/weft/network';

export interface EtcdOptions {
  /** "http://127.0.0.1:2379" style URLs (comma-separated on the command line). */
  endpoints: string[];
  prefix: string;
  caFile?: string;
  certFile?: string;
  keyFile?: string;
  /** Per-call deadline; keeps an unreachable etcd from hanging a command. */
  dialTimeoutMs?: number;
}

function readPem(path: string, flag: string): Buffer {
  try {
    return readFileSync(path);
  } catch (err) {
    throw new WeftError(`cannot read ${flag} ${path} (${(err as NodeJS.ErrnoException).code ?? err})`, `check the ${flag} path`);
  }
}

export function createEtcdClient(opts: EtcdOptions): Etcd3 {
  if (opts.endpoints.length === 0) throw new WeftError('no etcd endpoints given', 'pass --etcd-endpoints=http://HOST:2379');
  for (const e of opts.endpoints) {
    if (!/^https?:\/\/[^\s/]+(:\d+)?\/?$/.test(e)) {
      throw new WeftError(`bad etcd endpoint "${e}"`, 'use http://HOST:PORT or https://HOST:PORT');
    }
  }
  const options: IOptions = {
    hosts: opts.endpoints,
    dialTimeout: opts.dialTimeoutMs ?? 3000,
    defaultCallOptions: () => ({ deadline: new Date(Date.now() + (opts.dialTimeoutMs ?? 5000)) }),
    // weft runs its own backoff; the library's fault handling retries forever otherwise.
    faultHandling: { global: undefined as never, host: undefined as never },
  };
  if (opts.caFile || opts.certFile || opts.keyFile) {
    options.credentials = {
      rootCertificate: opts.caFile ? readPem(opts.caFile, '--etcd-cafile') : (undefined as never),
      certChain: opts.certFile ? readPem(opts.certFile, '--etcd-certfile') : undefined,
      privateKey: opts.keyFile ? readPem(opts.keyFile, '--etcd-keyfile') : undefined,
    };
  }
  return new Etcd3(options);
}
