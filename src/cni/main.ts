#!/usr/bin/env node
// Entry of the `weft` CNI plugin (/opt/cni/bin/weft): the CNI protocol is
// environment variables plus the network config on stdin; the result or a CNI
// error goes to stdout.
import { runCni } from './plugin.js';
import { readStdin } from './stdin.js';

const outcome = await runCni({ env: process.env, stdin: await readStdin() });
if (outcome.log) process.stderr.write(outcome.log + '\n');
process.stdout.write(outcome.stdout, () => {
  process.exitCode = outcome.exitCode;
});
