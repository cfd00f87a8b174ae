#!/usr/bin/env node
// Entry of the `weft-ipam` CNI plugin (/opt/cni/bin/weft-ipam), run by the
// bridge plugin as its IPAM: environment variables plus the network config on
// stdin; the result or a CNI error goes to stdout, a log line to stderr.
import { readStdin } from './stdin.js';
import { runIpam } from './ipam-plugin.js';

const outcome = await runIpam({ env: process.env, stdin: await readStdin() });
if (outcome.log) process.stderr.write(outcome.log + '\n');
process.stdout.write(outcome.stdout, () => {
  process.exitCode = outcome.exitCode;
});
