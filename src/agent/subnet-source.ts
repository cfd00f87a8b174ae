// Chooses the control plane: etcd (default) or the Kubernetes API.
import type { Logger } from 'pino';
import { loadNetConfFile } from '../config/parse.js';
import type { EtcdOptions } from '../subnet/etcd/client.js';
import { EtcdSubnetManager } from '../subnet/etcd/manager.js';
import type { SubnetManager } from '../subnet/manager.js';
import { WeftError } from '../errors.js';

export interface SubnetSourceOptions {
  kube: boolean;
  etcd: EtcdOptions;
  ttlSeconds: number;
  netConfFile?: string;
  nodeName: string;
  logger: Logger;
}

export async function createSubnetManager(opts: SubnetSourceOptions): Promise<SubnetManager> {
  const netConf = opts.netConfFile ? loadNetConfFile(opts.netConfFile) : undefined;
  if (opts.kube) {
    throw new WeftError('--kube-subnet-mgr is not available in this build', 'use etcd mode (--etcd-endpoints)');
  }
  return new EtcdSubnetManager({ etcd: opts.etcd, logger: opts.logger.child({ component: 'etcd' }), leaseTtlSeconds: opts.ttlSeconds, netConf });
}
