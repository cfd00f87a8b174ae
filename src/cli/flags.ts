// Flags shared by several commands, named as flannel names them.
import { parseArgs, type ParseArgsConfig } from 'node:util';
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

type Options = NonNullable<ParseArgsConfig['options']>;
/** What parseArgs gives for `options`, strict. */
type Values<O extends Options> = ReturnType<typeof parseArgs<{ args: string[]; options: O; strict: true }>>['values'];

/**
 * A command's flags, strict, with -h/--help: the values, or undefined once
 * `help` has been printed (the command then exits 0).
 */
export function parseCommand<const O extends Options>(argv: string[], options: O, help: string): Values<O> | undefined {
  const { values } = parseArgs({ args: argv, options: { ...options, help: { type: 'boolean', short: 'h' } }, strict: true });
  if ((values as { help?: boolean }).help) {
    process.stdout.write(help + '\n');
    return undefined;
  }
  return values as Values<O>;
}
