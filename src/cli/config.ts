// weft config validate FILE | weft config put [etcd flags] FILE
import { checkBackendOptions } from '../../backends/registry.js';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { readNetConfFile, parseNetConf } from '../config/parse.js';
import type { NetConf } from '../config/netconf.js';
import { WeftError, oneLine } from '../errors.js';
import { createEtcdClient } from '../subnet/etcd/client.js';
import { etcdFlags, etcdOptionsFrom } from './flags.js';

const USAGE = {
  validate: `usage: weft config validate FILE

Checks a net-conf.json file and prints one summary line; exits 1 with the
reason if the file is not valid.`,
  put: `usage: weft config put [flags] FILE

Validates a net-conf.json file, then writes its text to <etcd-prefix>/config.

flags:
  --etcd-endpoints URLS   comma-separated etcd URLs (default http://127.0.0.1:2379)
  --etcd-prefix PREFIX    key prefix (default /weft/network; flannel: /coreos.com/network)
  --etcd-cafile FILE      CA certificate for a TLS etcd
  --etcd-certfile FILE    client certificate
  --etcd-keyfile FILE     client key`,
};

const USAGE_ALL = `usage: weft config <validate|put> [flags] FILE

  validate   check a net-conf.json file and print a summary
  put        validate a net-conf.json file and write it to etcd

Run "weft config <subcommand> --help" for its flags.`;

const helpFlag = { help: { type: 'boolean', short: 'h' } } as const satisfies NonNullable<ParseArgsConfig['options']>;

export async function run(argv: string[]): Promise<number> {
  const [sub, ...rest] = argv;
  if (sub === undefined || sub === '--help' || sub === '-h' || sub === 'help') {
    (sub ? process.stdout : process.stderr).write(`${USAGE_ALL}\n`);
    return sub ? 0 : 2;
  }
  if (sub === 'validate') return validate(rest);
  if (sub === 'put') return put(rest);
  process.stderr.write(`weft config: unknown subcommand "${sub}"; use validate or put\n`);
  return 2;
}

type Flags = { values: Record<string, string | undefined>; file: string };

/** Parses flags; `--help` prints usage (exit 0), a usage mistake is one line on stderr (exit 2). */
function parseFlags(args: string[], options: NonNullable<ParseArgsConfig['options']>, usage: string): Flags | number {
  try {
    const parsed = parseArgs({ args, options, allowPositionals: true, strict: true });
    const values = parsed.values as Record<string, string | boolean | undefined>;
    if (values.help) {
      process.stdout.write(`${usage}\n`);
      return 0;
    }
    if (parsed.positionals.length !== 1) throw new Error(`expected one FILE, got ${parsed.positionals.length}`);
    delete values.help;
    return { values: values as Record<string, string | undefined>, file: parsed.positionals[0] as string };
  } catch (err) {
    process.stderr.write(`weft config: ${oneLine(err)}\n${usage.split('\n')[0]}\n`);
    return 2;
  }
}

async function validate(args: string[]): Promise<number> {
  const flags = parseFlags(args, helpFlag, USAGE.validate);
  if (typeof flags === 'number') return flags;
  const conf = checkBackendOptions(parseNetConf(readNetConfFile(flags.file)));
  process.stdout.write(`${flags.file}: ok: ${summary(conf)}\n`);
  return 0;
}

async function put(args: string[]): Promise<number> {
  const flags = parseFlags(args, { ...helpFlag, ...etcdFlags }, USAGE.put);
  if (typeof flags === 'number') return flags;
  const text = readNetConfFile(flags.file);
  const conf = checkBackendOptions(parseNetConf(text));
  const opts = etcdOptionsFrom(flags.values);
  const key = `${opts.prefix}/config`;
  const client = createEtcdClient(opts);
  try {
    await client.put(key).value(text);
  } catch (err) {
    throw new WeftError(
      `cannot write ${key} to etcd at ${opts.endpoints.join(',')} (${etcdFailure(err)})`,
      'check that etcd is running and --etcd-endpoints (and the --etcd-*file flags for TLS) point at it',
    );
  } finally {
    client.close();
  }
  process.stdout.write(`wrote ${key} to ${opts.endpoints.join(',')}: ${summary(conf)}\n`);
  return 0;
}

/** The part of a gRPC error a person can act on. */
function etcdFailure(err: unknown): string {
  const text = oneLine(err);
  const code = /\b(ECONNREFUSED|ECONNRESET|ETIMEDOUT|EHOSTUNREACH|ENETUNREACH|ENOTFOUND|EAI_AGAIN|DEADLINE_EXCEEDED|Deadline exceeded)\b/.exec(text);
  return code ? code[1]! : text.slice(0, 160);
}

function summary(conf: NetConf): string {
  const leasable = conf.network.indexOf(conf.subnetMax) - conf.network.indexOf(conf.subnetMin) + 1n;
  return (
    `Network ${conf.network}, SubnetLen ${conf.subnetLen}, ` +
    `subnets ${conf.subnetMin}..${conf.subnetMax} (${leasable} leasable), backend ${conf.backend.type}`
  );
}
