// `weft lab`: namespace clusters on this machine.
import { checkBackendOptions } from '../../backends/registry.js';
import { spawn } from 'node:child_process';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { BACKEND_TYPES, ConfigError, confNetworks, type BackendType, type NetConf } from '../config/netconf.js';
import { parseNetConf, readNetConfFile } from '../config/parse.js';
import type { Family } from '../core/cidr.js';
import { WeftError } from '../errors.js';
import { DEFAULT_LAB_NAME, ETCD_MEMBER_COUNTS, Lab, labNetConf } from '../lab/lab.js';
import { formatPingMatrix } from '../lab/ping.js';
import { labFamilies, readLabState, recordedLabNames } from '../lab/state.js';
import { TOPOLOGIES, ipFamilyName, parseIpFamily, type Topology } from '../lab/topology.js';

const HELP = `usage: weft lab <command> [flags]

  up      [--name N] [--nodes 3] [--pods 2] [--backend host-gw|vxlan|udp|bgp]
          [--ip-family ipv4|dual|ipv6] [--net-conf FILE] [--topology flat|routed]
          [--agent-arg ARG]... [--etcd-tls] [--etcd-members 1|3|5]
  down    [--name N | --all]
  status  [--name N]            (all labs when no name is given)
  exec    [--name N] <ns> -- <command...>   ns: n1, n1-p2, ul or a full wl-... name
  ping    [--name N] [--json]   pod-to-pod matrix per address family; exit 1 if any pair fails
  gc      [--name N] [--node n1]... CNI GC on each node as a runtime calls it, the lab's
                                pods there the valid attachments; prints what was freed

--ip-family gives the underlay and the pods IPv4 (the default), both (dual:
an IPv6 /64 per segment in 2001:db8::/48, pods in 2001:db8:1000::/56) or
IPv6 only. With --net-conf the file decides (EnableIPv4, EnableIPv6).
--etcd-tls serves etcd over TLS with client certificates (a CA and
certificates made with openssl in <lab dir>/pki); --etcd-members runs an etcd
cluster of 3 or 5 members, each in its own namespace (e1, e2, ...) on the
underlay. Agents get every endpoint and, with TLS, the client certificate.
The lab name defaults to "${DEFAULT_LAB_NAME}"; its namespaces are wl-<name>-*.`;

const COMMON = { name: { type: 'string', default: DEFAULT_LAB_NAME }, help: { type: 'boolean', short: 'h' } } as const;

function parse(argv: string[]) {
  return parseArgs({ args: argv, options: COMMON, allowPositionals: true, strict: true });
}

function positiveInt(text: string | undefined, flag: string, min: number): number {
  const n = Number(text);
  if (!Number.isInteger(n) || n < min) throw new WeftError(`${flag} "${text}" is not a whole number >= ${min}`, `pass e.g. ${flag} ${min + 1}`);
  return n;
}

/** The flags by which `weft lab up` and `weft bench` choose the weft side's net-conf. */
export const labNetConfFlags = {
  backend: { type: 'string' },
  'net-conf': { type: 'string' },
  'ip-family': { type: 'string' },
} as const satisfies NonNullable<ParseArgsConfig['options']>;

const LAB_KIND: Record<ReturnType<typeof ipFamilyName>, string> = { ipv4: 'an IPv4', ipv6: 'an IPv6-only', dual: 'a dual-stack' };

/**
 * The net-conf a lab runs and the address families its underlay needs:
 * `file` (--net-conf) as written, else the lab's default for `backend`
 * (host-gw) in `families` (IPv4). Checked as the agent checks it, so what
 * every agent would refuse ends here, at once, in the agent's one line. A
 * flag that contradicts the file is an error, not ignored.
 */
export function labNetConfFrom(opts: { backend?: string; file?: string; families?: Family[] }): { netConf: Record<string, unknown>; families: Family[] } {
  const { backend, file } = opts;
  if (backend !== undefined && !(BACKEND_TYPES as readonly string[]).includes(backend)) {
    throw new WeftError(`unknown backend "${backend}"`, `use one of ${BACKEND_TYPES.join(', ')}`);
  }
  // The lab writes the operator's file as they wrote it.
  const text = file ? readNetConfFile(file) : JSON.stringify(labNetConf((backend ?? 'host-gw') as BackendType, opts.families));
  let conf: NetConf;
  try {
    conf = checkBackendOptions(parseNetConf(text));
  } catch (err) {
    if (file || !(err instanceof ConfigError)) throw err;
    // The flags built this config: say which lab, with the agent's own reason.
    throw new WeftError(`the agent refuses ${LAB_KIND[ipFamilyName(opts.families ?? [4])]} ${backend ?? 'host-gw'} lab (${err.message})`, 'choose another --ip-family or --backend');
  }
  const families = labFamilies({ families: confNetworks(conf).map((n) => n.family) });
  if (file && backend !== undefined && conf.backend.type !== backend) {
    throw new WeftError(`--net-conf has backend ${conf.backend.type} but --backend is ${backend}`, 'make them agree, or leave --backend out');
  }
  if (file && opts.families && ipFamilyName(labFamilies(opts)) !== ipFamilyName(families)) {
    throw new WeftError(`${file} runs ${ipFamilyName(families)} but --ip-family asks for ${ipFamilyName(labFamilies(opts))}`, 'make them agree (EnableIPv4, EnableIPv6 in the file), or leave --ip-family out');
  }
  return { netConf: JSON.parse(text) as Record<string, unknown>, families };
}

async function up(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      ...COMMON,
      ...labNetConfFlags,
      nodes: { type: 'string', default: '3' },
      pods: { type: 'string', default: '2' },
      topology: { type: 'string', default: 'flat' },
      'agent-arg': { type: 'string', multiple: true, default: [] },
      'etcd-tls': { type: 'boolean', default: false },
      'etcd-members': { type: 'string', default: '1' },
    },
    strict: true,
  });
  const etcdMembers = Number(values['etcd-members']);
  if (!(ETCD_MEMBER_COUNTS as readonly number[]).includes(etcdMembers)) {
    throw new WeftError(`--etcd-members "${values['etcd-members']}" is not 1, 3 or 5`, 'use 1, 3 or 5 (an odd count keeps a majority when one member is lost)');
  }
  const topology = String(values.topology);
  if (!(TOPOLOGIES as readonly string[]).includes(topology)) throw new WeftError(`unknown topology "${topology}"`, `use ${TOPOLOGIES.join(' or ')}`);
  const started = Date.now();
  const name = values.name ?? DEFAULT_LAB_NAME;
  const { netConf, families } = labNetConfFrom({
    backend: values.backend,
    file: values['net-conf'],
    families: values['ip-family'] === undefined ? undefined : parseIpFamily(values['ip-family']),
  });
  const lab = await Lab.up({
    name,
    nodes: positiveInt(values.nodes, '--nodes', 1),
    podsPerNode: positiveInt(values.pods, '--pods', 0),
    netConf,
    families,
    topology: topology as Topology,
    agentArgs: values['agent-arg'],
    etcdTls: values['etcd-tls'],
    etcdMembers,
    keepOnFailure: true, // its logs explain the failure
  }).catch(async (err: unknown) => {
    const halfBuilt = err instanceof WeftError && !/already up/.test(err.message) && (await readLabState(name)) !== undefined;
    if (!halfBuilt) throw err;
    throw new WeftError(err.message, `the half-built lab stays for inspection; remove it with "weft lab down --name ${name}"`);
  });
  process.stdout.write(`lab ${lab.name} is up in ${((Date.now() - started) / 1000).toFixed(1)} s (dir ${lab.dir})\n`);
  process.stdout.write(describe(lab) + '\n');
  return 0;
}

function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  return rows.map((r) => r.map((c, i) => c.padEnd(widths[i]! + 2)).join('').trimEnd()).join('\n');
}

function describe(lab: Lab, readiness?: Map<string, string>, leader?: string): string {
  const backend = (lab.netConf.Backend as { Type?: string } | undefined)?.Type ?? '?';
  // A dual-stack lab adds the IPv6 side in columns of its own; single-stack tables keep their shape.
  const dual = lab.families.length > 1;
  const nodes = [['NODE', 'NAMESPACE', 'UNDERLAY', ...(dual ? ['UNDERLAY-V6'] : []), 'SUBNET', ...(dual ? ['SUBNET-V6'] : []), 'AGENT', 'READY-MS']];
  for (const n of lab.nodes) {
    const agent = n.agentPid === undefined ? 'not running' : `pid ${n.agentPid}${readiness ? ` ${readiness.get(n.name)}` : ''}`;
    const v6 = (value: string | undefined): string[] => (dual ? [value ?? '-'] : []);
    nodes.push([n.name, n.ns, n.underlayIP, ...v6(n.underlayIPv6), n.subnet ?? '-', ...v6(n.ipv6Subnet), agent, n.agentReadyMs === undefined ? '-' : String(n.agentReadyMs)]);
  }
  const pods = [['POD', 'NAMESPACE', 'NODE', 'IP', ...(dual ? ['IPV6'] : [])], ...lab.pods.map((p) => [p.name, p.ns, p.node, p.ip, ...(dual ? [p.ipv6 ?? '-'] : [])])];
  const members = lab.etcdMembers;
  const etcd = members.length > 1 || lab.etcdTlsFiles ? `etcd ${members.length} member${members.length > 1 ? 's' : ''}${lab.etcdTlsFiles ? ' over TLS' : ''}` : `etcd ${lab.etcdEndpoint} (in ${lab.underlayNs})`;
  const memberRows = [['MEMBER', 'NAMESPACE', 'ENDPOINT', 'STATE'], ...members.map((m) => [m.name, m.ns, m.endpoint, !m.running ? 'stopped' : m.name === leader ? 'running (leader)' : 'running'])];
  return [
    `lab ${lab.name}: ${lab.topology} topology, ${ipFamilyName(lab.families)}, backend ${backend}, ${etcd}`,
    ...(members.length > 1 || lab.etcdTlsFiles ? [table(memberRows), ...(lab.etcdTlsFiles ? [`TLS files in ${lab.etcdTlsFiles.dir}`] : []), ''] : []),
    table(nodes),
    ...(lab.pods.length ? ['', table(pods)] : []),
  ].join('\n');
}

async function status(argv: string[]): Promise<number> {
  const { values } = parse(argv);
  const explicit = argv.some((a) => a === '--name' || a.startsWith('--name='));
  const names = explicit ? [String(values.name)] : await recordedLabNames();
  if (names.length === 0) {
    process.stdout.write('no lab is up\n');
    return 0;
  }
  for (const name of names) {
    if (!(await readLabState(name))) {
      if (explicit) throw new WeftError(`no lab "${name}" is up`, `start one with "weft lab up --name ${name}"`);
      continue;
    }
    const lab = await Lab.attach(name);
    const readiness = new Map<string, string>();
    await Promise.all(
      lab.nodes.map(async (n) => {
        readiness.set(n.name, !lab.agentRunning(n) ? '(exited)' : (await lab.agentReady(n)) ? '(ready)' : '(not ready)');
      }),
    );
    const leader = lab.etcdMembers.length > 1 ? (await lab.etcdLeader())?.name : undefined;
    process.stdout.write(describe(lab, readiness, leader) + '\n');
  }
  return 0;
}

async function down(argv: string[]): Promise<number> {
  const { values } = parseArgs({ args: argv, options: { ...COMMON, all: { type: 'boolean', default: false } }, strict: true });
  if (values.all) {
    const names = await Lab.destroyAll();
    process.stdout.write(names.length ? `removed labs: ${names.join(', ')}\n` : 'no lab found\n');
  } else {
    await Lab.destroy(String(values.name));
    process.stdout.write(`lab ${values.name} removed\n`);
  }
  return 0;
}

async function exec(argv: string[]): Promise<number> {
  const sep = argv.indexOf('--');
  const { values, positionals } = parse(sep < 0 ? argv : argv.slice(0, sep));
  const command = sep < 0 ? positionals.slice(1) : argv.slice(sep + 1);
  const target = positionals[0];
  if (!target || command.length === 0) throw new WeftError('weft lab exec needs a namespace and a command', 'e.g. weft lab exec n1 -- ip route');
  const lab = await Lab.attach(String(values.name));
  const child = spawn('ip', ['netns', 'exec', lab.nsOf(target), ...command], { stdio: 'inherit' });
  return new Promise((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code, signal) => resolve(code ?? (signal ? 128 : 1)));
  });
}

async function ping(argv: string[]): Promise<number> {
  const { values } = parseArgs({ args: argv, options: { ...COMMON, json: { type: 'boolean', default: false } }, strict: true });
  const lab = await Lab.attach(String(values.name));
  if (lab.pods.length < 2) throw new WeftError(`lab ${lab.name} has fewer than 2 pods`, 'bring it up with --pods 1 or more on 2+ nodes');
  const matrices = await lab.pingMatrices();
  process.stdout.write(values.json ? JSON.stringify(matrices) + '\n' : matrices.map(formatPingMatrix).join('\n\n') + '\n');
  return matrices.every((m) => m.ok) ? 0 : 1;
}

async function gc(argv: string[]): Promise<number> {
  const { values } = parseArgs({ args: argv, options: { ...COMMON, node: { type: 'string', multiple: true } }, strict: true });
  const lab = await Lab.attach(String(values.name));
  const nodes = values.node?.length ? values.node : lab.nodes.map((n) => n.name);
  for (const r of await lab.cniGc(nodes)) {
    const freed = r.freed.map((f) => `${f.address} (${f.pod ? `${f.pod.namespace}/${f.pod.name}` : f.containerId}, ${f.reason})`);
    process.stdout.write(`${r.node}: ${r.valid} pod${r.valid === 1 ? '' : 's'} valid; freed ${freed.length ? freed.join(', ') : 'nothing'}\n`);
  }
  return 0;
}

const SUBCOMMANDS: Record<string, (argv: string[]) => Promise<number>> = { up, down, status, exec, ping, gc };

export async function run(argv: string[]): Promise<number> {
  const [sub, ...rest] = argv;
  const sep = rest.indexOf('--');
  const flags = sep < 0 ? rest : rest.slice(0, sep);
  if (!sub || sub === '--help' || sub === '-h' || flags.includes('--help') || flags.includes('-h')) {
    process.stdout.write(HELP + '\n');
    return sub ? 0 : 2;
  }
  const fn = SUBCOMMANDS[sub];
  if (!fn) throw new WeftError(`unknown lab command "${sub}"`, `use one of ${Object.keys(SUBCOMMANDS).join(', ')}`);
  return fn(rest);
}
