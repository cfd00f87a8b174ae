#!/usr/bin/env node
// Entry of the `weft` CNI plugin (/opt/cni/bin/weft): the CNI protocol is
// environment variables plus the network config on stdin; the result or a CNI
// error goes to stdout.
import { runCni } from './plugin.js';

async function readStdin(): Promise<string> {
  if (process.stdin.isTTY) return '';
  process.stdin.setEncoding('utf8');
  let text = '';
  for await (const chunk of process.stdin) text += chunk as string;
  return text;
}

const outcome = await runCni({ env: process.env, stdin: await readStdin() });
process.stdout.write(outcome.stdout, () => {
  process.exitCode = outcome.exitCode;
});
