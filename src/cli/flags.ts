// Flags shared by several commands, named as flannel names them.
import type { ParseArgsConfig } from 'node:util';
import { DEFAULT_ETCD_PREFIX, checkEtcdEndpoints, type EtcdOptions } from '../subnet/etcd/client.js';

export const etcdFlags = {
  'etcd-endpoints': { type: 'string', default: 'http://127.0.0.1:2379' },
  'etcd-prefix': { type: 'string', default: DEFAULT_ETCD_PREFIX },
  'etcd-cafile': { type: 'string' },
  'etcd-certfile': { type: 'string' },
  'etcd-keyfile': { type: 'string' },
} as const satisfies NonNullable<ParseArgsConfig['options']>;

type FlagValues = { [K in keyof typeof etcdFlags]?: string | undefined };

export function etcdOptionsFrom(values: FlagValues): EtcdOptions {
  const endpoints = (values['etcd-endpoints'] ?? '').split(',').map((s) => s.trim()).filter(Boolean);
  checkEtcdEndpoints(endpoints);
  return {
    endpoints,
    prefix: (values['etcd-prefix'] ?? DEFAULT_ETCD_PREFIX).replace(/\/+$/, ''),
    caFile: values['etcd-cafile'],
    certFile: values['etcd-certfile'],
    keyFile: values['etcd-keyfile'],
  };
}
