// Chooses the control plane: etcd (default) or the Kubernetes API.
import type { Logger } from 'pino';
import { loadNetConfFile } from '../config/parse.js';
import type { EtcdOptions } from '../subnet/etcd/client.js';
import { EtcdSubnetManager } from '../subnet/etcd/manager.js';
import type { SubnetManager } from '../subnet/manager.js';
import type { PolicyWorldSource } from './network-policy.js';
import type { AgentIpamOptions } from './agent.js';

export interface SubnetSourceOptions {
  kube: boolean;
  kubeconfigFile?: string;
  etcd: EtcdOptions;
  ttlSeconds: number;
  netConfFile?: string;
  nodeName: string;
  logger: Logger;
}

export async function createSubnetManager(opts: SubnetSourceOptions): Promise<SubnetManager> {
  if (opts.kube) {
    // Loaded only in kube mode: the client library is large.
    const { KubeSubnetManager, loadKubeConfig, KUBE_NET_CONF_FILE } = await import('../subnet/kube/manager.js');
    return new KubeSubnetManager({
      nodeName: opts.nodeName,
      netConfFile: opts.netConfFile ?? KUBE_NET_CONF_FILE,
      kubeConfig: loadKubeConfig(opts.kubeconfigFile),
      logger: opts.logger.child({ component: 'kube' }),
    });
  }
  const netConf = opts.netConfFile ? loadNetConfFile(opts.netConfFile) : undefined;
  return new EtcdSubnetManager({ etcd: opts.etcd, logger: opts.logger.child({ component: 'etcd' }), leaseTtlSeconds: opts.ttlSeconds, netConf });
}

/** Kube mode: the watch of pods, namespaces and NetworkPolicies that policy enforcement follows. */
export async function createPolicySource(opts: { kubeconfigFile?: string; logger: Logger }): Promise<PolicyWorldSource> {
  const { loadKubeConfig } = await import('../subnet/kube/manager.js');
  const { PolicyWorldWatch } = await import('../subnet/kube/policy-watch.js');
  return new PolicyWorldWatch({ kubeConfig: loadKubeConfig(opts.kubeconfigFile), logger: opts.logger.child({ component: 'kube-policy' }) });
}

/** Kube mode: the pod watch behind IPAM's reconcile and pins socket. */
export async function createIpamPodSource(opts: { kubeconfigFile?: string; nodeName: string; logger: Logger }): Promise<NonNullable<AgentIpamOptions['pods']>> {
  const { loadKubeConfig } = await import('../subnet/kube/manager.js');
  const { KubeApi } = await import('../subnet/kube/api.js');
  const { IpamPodWatch } = await import('../subnet/kube/ipam-pod-watch.js');
  return new IpamPodWatch({ api: new KubeApi(loadKubeConfig(opts.kubeconfigFile)), nodeName: opts.nodeName, logger: opts.logger.child({ component: 'kube-ipam' }) });
}
