// Removing weft from a node (`weft agent --teardown`): every route and device
// weft owns, its nftables table, and the files it wrote. The lease in etcd is
// left to expire, so a node that comes back gets the same subnet.
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { registeredBackends } from '../../backends/registry.js';
import { NftTable } from '../dataplane/nft.js';
import { Reconciler } from '../dataplane/reconciler.js';
import { oneLine } from '../errors.js';
import { readPreviousSubnetEnv } from '../subnet/subnet-env.js';

export interface NodeTeardownOptions {
  subnetFile: string;
  runDir: string;
  logger: Logger;
}

/** Removes everything it can and throws the first failure afterwards (one line). */
export async function teardownNode(opts: NodeTeardownOptions): Promise<void> {
  const failures: unknown[] = [];
  const step = async (what: string, fn: () => Promise<unknown>): Promise<void> => {
    try {
      await fn();
    } catch (err) {
      opts.logger.error(`teardown: ${what} failed: ${oneLine(err)}`);
      failures.push(err);
    }
  };
  const network = (await readPreviousSubnetEnv(opts.subnetFile)).network?.toString();
  // Whatever backend ran here last (or before a switch), each removes its own processes.
  for (const backend of registeredBackends()) {
    if (backend.teardown) await step(`removing the ${backend.type} backend's processes`, () => backend.teardown!({ runDir: opts.runDir, ...(network ? { network } : {}) }));
  }
  await step('removing routes and devices', () => new Reconciler({ logger: opts.logger }).teardown());
  await step('removing the nftables table', () => new NftTable({ logger: opts.logger }).remove());
  await step('removing subnet.env', () => rm(opts.subnetFile, { force: true }));
  await step('removing status.json', () => rm(join(opts.runDir, 'status.json'), { force: true }));
  if (failures.length) throw failures[0];
  opts.logger.info('weft removed from this node: routes, devices, the udp loop process, nftables table and subnet.env');
}
