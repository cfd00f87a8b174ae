// Pods of a kube lab made as kubelet makes them: the Pod object first
// (scheduled to a node, no address yet), then a sandbox namespace wired by
// the node's `weft` CNI plugin with kubelet's CNI_ARGS (K8S_POD_*), then the
// pod's status.podIPs; deletion runs CNI DEL, removes the sandbox and the
// object. The lab's own addPod knows nothing of pods' names, which pinned
// addresses need.
import { join } from 'node:path';
import { labCniBinDir, writePodConf, CNI_PATH } from '../../../src/lab/cni.js';
import { ipBatch, runCommand } from '../../../src/lab/command.js';
import { labNs } from '../../../src/lab/topology.js';
import type { LabNode } from '../../../src/lab/lab.js';
import type { KubeLab } from './kube-lab.js';

export interface KubeletPod {
  namespace: string;
  name: string;
  node: LabNode;
  /** The sandbox's network namespace (lab-prefixed, so Lab.destroy removes it). */
  ns: string;
  containerId: string;
  confFile: string;
  /** The addresses ADD returned, without prefix length; the MAC of its eth0. */
  ips: string[];
  mac?: string;
}

/** A CNI ADD that failed: the plugin's error line. */
export class CniAddError extends Error {}

let sandboxes = 0;

/** The Pod object as the scheduler leaves it, then CNI ADD as kubelet runs it, then the pod's status; throws CniAddError when ADD fails (the object stays, as in a cluster). */
export async function runPod(kl: KubeLab, node: LabNode, spec: { namespace: string; name: string; annotations?: Record<string, string> }): Promise<KubeletPod> {
  const { lab, api } = kl;
  await api.upsertPod({ namespace: spec.namespace, name: spec.name, nodeName: node.ns, ips: [], ...(spec.annotations ? { annotations: spec.annotations } : {}) });
  const uid = String((await api.pod(spec.namespace, spec.name))?.metadata?.uid ?? '');
  const short = `k${++sandboxes}`;
  const pod: KubeletPod = {
    namespace: spec.namespace,
    name: spec.name,
    node,
    ns: labNs(lab.name, short),
    containerId: `sandbox-${lab.name}-${short}`,
    confFile: join(lab.nodeDir(node), `${short}.cni.json`),
    ips: [],
  };
  const conf = await writePodConf(lab.dir, lab.nodeDir(node), pod.confFile);
  await runCommand(['ip', 'netns', 'add', pod.ns]);
  await ipBatch(pod.ns, ['link set lo up']);
  const r = await cni(kl, pod, 'ADD', JSON.stringify(conf), uid);
  if (r.code !== 0) {
    await runCommand(['ip', 'netns', 'del', pod.ns], { check: false });
    throw new CniAddError(errorLine(r.stdout, r.stderr));
  }
  const result = JSON.parse(r.stdout) as { ips?: { address: string }[]; interfaces?: { name: string; mac?: string; sandbox?: string }[] };
  pod.ips = (result.ips ?? []).map((i) => i.address.split('/')[0]!);
  pod.mac = (await runCommand(['cat', '/sys/class/net/eth0/address'], { netns: pod.ns })).stdout.trim();
  await api.upsertPod({ namespace: spec.namespace, name: spec.name, nodeName: node.ns, ips: pod.ips, ...(spec.annotations ? { annotations: spec.annotations } : {}) });
  return pod;
}

/** CNI DEL, the sandbox removed, then the Pod object deleted. */
export async function deletePod(kl: KubeLab, pod: KubeletPod): Promise<void> {
  const { readFile } = await import('node:fs/promises');
  const r = await cni(kl, pod, 'DEL', await readFile(pod.confFile, 'utf8'), '');
  if (r.code !== 0) throw new Error(`CNI DEL of ${pod.namespace}/${pod.name} failed: ${errorLine(r.stdout, r.stderr)}`);
  await runCommand(['ip', 'netns', 'del', pod.ns], { check: false });
  await kl.api.deletePod(pod.namespace, pod.name);
}

function cni(kl: KubeLab, pod: KubeletPod, command: 'ADD' | 'DEL', conf: string, uid: string) {
  const binDir = labCniBinDir(kl.lab.dir);
  return runCommand([join(binDir, 'weft')], {
    netns: pod.node.ns,
    input: conf,
    check: false,
    env: {
      CNI_COMMAND: command,
      CNI_CONTAINERID: pod.containerId,
      CNI_NETNS: `/var/run/netns/${pod.ns}`,
      CNI_IFNAME: 'eth0',
      CNI_PATH: `${binDir}:${CNI_PATH}`,
      CNI_ARGS: `IgnoreUnknown=1;K8S_POD_NAMESPACE=${pod.namespace};K8S_POD_NAME=${pod.name};K8S_POD_INFRA_CONTAINER_ID=${pod.containerId}${uid ? `;K8S_POD_UID=${uid}` : ''}`,
    },
  });
}

function errorLine(stdout: string, stderr: string): string {
  try {
    const e = JSON.parse(stdout) as { msg?: string; details?: string };
    return [e.msg, e.details].filter(Boolean).join(': ');
  } catch {
    return (stderr || stdout).trim();
  }
}
