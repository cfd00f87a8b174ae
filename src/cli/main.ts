#!/usr/bin/env node
// weft's single entry point: dispatches to one module per command. Every
// error ends as one line on stderr and a non-zero exit, never a stack trace
// (set WEFT_DEBUG=1 to see one).
import { ConfigError } from '../config/netconf.js';
import { WeftError, oneLine } from '../errors.js';
import { weftVersion } from '../core/package-root.js';

type Command = { run(argv: string[]): Promise<number> };

const COMMANDS: Record<string, { about: string; load: () => Promise<Command> }> = {
  agent: { about: 'run the node agent', load: () => import('./agent.js') },
  config: { about: 'validate net-conf.json or write it to etcd', load: () => import('./config.js') },
  leases: { about: 'list the subnet leases in etcd', load: () => import('./leases.js') },
  ipam: { about: "list this node's pod addresses (weft-ipam) and borrowed addresses", load: () => import('./ipam.js') },
  status: { about: "show this node's weft state", load: () => import('./status.js') },
  lab: { about: 'namespace clusters on this machine (up, down, status, exec, ping)', load: () => import('./lab.js') },
  bench: { about: 'benchmark a backend against its hand-built equal', load: () => import('./bench.js') },
};

function usage(): string {
  const lines = Object.entries(COMMANDS).map(([name, c]) => `  ${name.padEnd(8)} ${c.about}`);
  return `usage: weft <command> [flags]\n\ncommands:\n${lines.join('\n')}\n\nRun "weft <command> --help" for a command's flags, "weft --version" for the version.`;
}

async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(usage() + '\n');
    return name ? 0 : 2;
  }
  if (name === '--version' || name === '-v' || name === 'version') {
    process.stdout.write(`weft ${weftVersion()}\n`);
    return 0;
  }
  const cmd = COMMANDS[name];
  if (!cmd) {
    process.stderr.write(`weft: unknown command "${name}"; run "weft --help" for the list\n`);
    return 2;
  }
  return (await cmd.load()).run(rest);
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    if (process.env.WEFT_DEBUG && err instanceof Error) process.stderr.write(`${err.stack}\n`);
    // node:util parseArgs reports bad flags with ERR_PARSE_ARGS_* codes: the user's to fix.
    const badFlags = String((err as { code?: unknown })?.code ?? '').startsWith('ERR_PARSE_ARGS');
    if (badFlags) {
      process.stderr.write(`weft: ${oneLine(err)}; see "weft ${process.argv[2] ?? ''} --help"\n`);
      process.exitCode = 2;
      return;
    }
    const known = err instanceof WeftError || err instanceof ConfigError;
    process.stderr.write(`weft: ${oneLine(err)}${known ? '' : ' (unexpected; rerun with WEFT_DEBUG=1 and report it)'}\n`);
    process.exitCode = 1;
  },
);
