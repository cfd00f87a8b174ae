import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import type { AgentStatus } from '../agent/node-status.js';
import type { PolicyStatus } from '../agent/network-policy.js';
import { WeftError } from '../errors.js';
import { backendRegistration } from '../../backends/registry.js';

const HELP = `usage: weft status [--run-dir DIR] [--bird-socket PATH] [--json]

Shows what the agent on this node last programmed: its subnet, backend and peers;
in kube mode the NetworkPolicies it enforces; with the bgp backend also the BGP
sessions of its BIRD (default socket <run-dir>/bird/bird.ctl).`;

/** NetworkPolicy in a few lines: how many, how many of this node's pods they isolate, what cannot be used. */
function policyLines(p: PolicyStatus): string[] {
  return [
    `policy   ${p.policies} NetworkPolicies, ${p.isolatedPods} of this node's pods isolated${p.resourceVersion ? ` (resourceVersion ${p.resourceVersion})` : ''}`,
    ...p.problems.map((x) => `  ${x.policy}: ${x.reason}`),
  ];
}

export async function run(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      'run-dir': { type: 'string', default: '/run/weft' },
      'bird-socket': { type: 'string' },
      json: { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    process.stdout.write(HELP + '\n');
    return 0;
  }
  const path = join(values['run-dir'] ?? '/run/weft', 'status.json');
  let status: AgentStatus;
  try {
    status = JSON.parse(await readFile(path, 'utf8')) as AgentStatus;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new WeftError(
      code === 'ENOENT' ? `no agent status at ${path}` : `cannot read ${path} (${code ?? (err as Error).message})`,
      'is the agent running on this node? pass its --run-dir',
    );
  }
  const node = { runDir: values['run-dir'] ?? '/run/weft', ...(values['bird-socket'] ? { birdSocket: values['bird-socket'] } : {}) };
  const extra = await backendRegistration(status.backend)?.status?.(node);
  if (values.json) {
    process.stdout.write(JSON.stringify(extra ? { ...status, [status.backend]: extra.json } : status, null, 2) + '\n');
    return 0;
  }
  const out = [
    `node     ${status.node} (${status.publicIP} on ${status.iface})`,
    `backend  ${status.backend}`,
    `subnet   ${status.subnet}`,
    `ready    ${status.ready ? 'yes' : 'no'}   (updated ${status.updatedAt})`,
    `peers    ${status.peers.length}`,
    ...status.peers.map((p) => `  ${p.subnet.padEnd(18)} ${p.publicIP.padEnd(15)} ${p.backend}${p.node ? `  ${p.node}` : ''}`),
    ...(status.policy ? policyLines(status.policy) : []),
    ...(extra?.lines ?? []),
  ];
  process.stdout.write(out.join('\n') + '\n');
  return 0;
}
