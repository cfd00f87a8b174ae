// weft-ipam in a lab node through the real plugins: the `weft` plugin run as
// a runtime runs it, Debian's bridge delegating to weft-ipam. Concurrent
// ADDs, plugins killed mid-ADD, a range full of a crash's leftovers, a pinned
// pod borrowing an address (the agent's socket played by the test), and GC
// called by the lab as a runtime. One lab, one node; needs root.
import { spawn, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:http';
import { readdirSync, readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import t from 'tap';
import { CNI_PATH, labCniBinDir, labIpamDir, weftConf, writeCniLaunchers } from '../../src/lab/cni.js';
import { runCommand } from '../../src/lab/command.js';
import { lockFileSync } from '../../src/ipam/lock.js';
import { pinsSocketPath, podPinsPath, SYNC_PATH } from '../../src/ipam/pins-api.js';
import { readState, storePaths, updateState } from '../../src/ipam/store.js';
import type { Allocation } from '../../src/ipam/state.js';
import { freshLab, until } from './support/lab-fixture.js';

const LAB = 'icipam';
const NS_PREFIX = `wl-${LAB}-`;

interface PluginRun {
  code: number | null;
  stdout: string;
  ms: number;
  child: ChildProcess;
  done: Promise<void>;
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

/** Every process whose CNI_CONTAINERID is `id` and whose command line names `script` (ours: the test made the containers). */
function pluginPids(ids: Set<string>, script: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const pid of readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
    try {
      if (!readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(script)) continue;
      const id = readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0').find((e) => e.startsWith('CNI_CONTAINERID='))?.slice('CNI_CONTAINERID='.length);
      if (id && ids.has(id)) out.set(id, Number(pid));
    } catch {
      // gone meanwhile
    }
  }
  return out;
}

if (process.getuid?.() !== 0) {
  t.fail('this test needs root (network namespaces); run it as root');
} else {
  const lab = await freshLab(t, { name: LAB, nodes: 1, podsPerNode: 0, backend: 'host-gw' });
  const node = lab.nodes[0]!;
  const nodeDir = lab.nodeDir(node);
  const binDir = labCniBinDir(lab.dir);
  const conf = weftConf(nodeDir);
  const store = storePaths(labIpamDir(nodeDir), String(conf.name));
  const subnet = (await lab.readSubnetEnv(node)).subnet;
  await writeCniLaunchers(lab.dir);

  /** One call of the `weft` plugin in the node's namespace, as a runtime makes it. */
  const plugin = (command: 'ADD' | 'DEL', id: string, c: Record<string, unknown> = conf, extraEnv: Record<string, string> = {}): PluginRun => {
    const started = performance.now();
    const child = spawn('ip', ['netns', 'exec', node.ns, join(binDir, 'weft')], {
      env: {
        PATH: process.env.PATH, CNI_COMMAND: command, CNI_CONTAINERID: id, CNI_NETNS: `/var/run/netns/${id}`, CNI_IFNAME: 'eth0', CNI_PATH: `${binDir}:${CNI_PATH}`, ...extraEnv,
      },
      stdio: ['pipe', 'pipe', 'ignore'],
    });
    const run = { code: null, stdout: '', ms: 0, child } as PluginRun;
    child.stdout!.setEncoding('utf8').on('data', (s: string) => (run.stdout += s));
    run.done = new Promise((resolve) => child.on('close', (code) => {
      run.code = code;
      run.ms = performance.now() - started;
      resolve();
    }));
    child.stdin!.on('error', () => undefined); // a plugin killed before it read stdin
    child.stdin!.end(JSON.stringify(c));
    return run;
  };
  const all = async (runs: PluginRun[]): Promise<PluginRun[]> => {
    await Promise.all(runs.map((r) => r.done));
    return runs;
  };
  const makeNetns = (ids: string[]) => Promise.all(ids.map((id) => runCommand(['ip', 'netns', 'add', id])));
  // Removing a pod's namespace takes its veth with it: cheaper than 50 more plugin runs where a DEL is not under test.
  const dropNetns = (ids: string[]) => Promise.all(ids.map((id) => runCommand(['ip', 'netns', 'del', id], { check: false })));
  const podAddress = async (id: string): Promise<string | undefined> => {
    const r = await runCommand(['ip', '-n', id, '-4', '-o', 'addr', 'show', 'dev', 'eth0'], { check: false });
    return /inet (\S+)\//.exec(r.stdout)?.[1];
  };
  const held = () => readState(store.state).allocations;

  const ids = Array.from({ length: 50 }, (_, i) => `${NS_PREFIX}a${i + 1}`);
  await makeNetns(ids);

  t.test('50 concurrent ADDs get 50 distinct addresses, all recorded; 50 DELs leave none', async (t) => {
    const added = await all(ids.map((id) => plugin('ADD', id)));
    const addresses = added.map((r) => (r.code === 0 ? (JSON.parse(r.stdout).ips?.[0]?.address as string) : `failed: ${r.stdout}`));
    const recorded = held().map((a) => a.address).sort();
    const ms = added.map((r) => r.ms).sort((a, b) => a - b);
    t.same(added.filter((r) => r.code !== 0).map((r) => r.stdout), [], 'every ADD succeeds');
    t.equal(new Set(addresses).size, 50, '50 distinct addresses');
    t.same(recorded, addresses.map((a) => a.split('/')[0]).sort(), 'exactly those addresses in state.json');
    await all(ids.map((id) => plugin('DEL', id)));
    t.same(held(), [], 'after 50 DELs no address is held');

    // The same 50 concurrent ADDs with host-local, for the figure only.
    const hostLocal = { ...conf, dataDir: join(nodeDir, 'cni-hl'), delegate: { ipMasq: false, ipam: { type: 'host-local', dataDir: join(nodeDir, 'host-local') } } };
    const hl = await all(ids.map((id) => plugin('ADD', id, hostLocal)));
    const hlMs = hl.map((r) => r.ms).sort((a, b) => a - b);
    // host-local's leases and the records stay in the lab dir, which goes with the lab.
    await dropNetns(ids);
    await makeNetns(ids.slice(0, 24));
    t.comment(`50 concurrent ADDs (2 shared cores, other work running: noisy): weft-ipam p50 ${percentile(ms, 50).toFixed(0)} ms, p99 ${percentile(ms, 99).toFixed(0)} ms; ` +
      `host-local p50 ${percentile(hlMs, 50).toFixed(0)} ms, p99 ${percentile(hlMs, 99).toFixed(0)} ms (${hl.filter((r) => r.code === 0).length}/50 succeeded)`);
  });

  t.test('plugins and the node agent killed with SIGKILL mid-ADD, then re-run and restarted: no address twice, every pod recorded, nothing leaked', async (t) => {
    const waiting = ids.slice(0, 6);
    const burst = ids.slice(6, 10);
    // 1. Six ADDs queue on the store's lock, which the test holds; three of their weft-ipam processes are killed there.
    const lock = lockFileSync(store.lock)!;
    const queued = waiting.map((id) => plugin('ADD', id));
    const victims = new Set(waiting.filter((_, i) => i % 2 === 0));
    let found = new Map<string, number>();
    for (let i = 0; i < 200 && found.size < victims.size; i++) {
      await sleep(50);
      found = pluginPids(victims, 'ipam-main.js');
    }
    for (const pid of found.values()) process.kill(pid, 'SIGKILL');
    lock.release();
    // 2. Four more ADDs, each plugin process tree killed at a different point of its run, and the node's agent with them.
    const bursting = burst.map((id) => plugin('ADD', id));
    const agentKilled = lab.stopAgent(node, 'SIGKILL');
    await Promise.all(bursting.map(async (r, i) => {
      await sleep(90 * i);
      const pids = pluginPids(new Set([burst[i]!]), '/dist/src/cni/');
      for (const pid of pids.values()) process.kill(pid, 'SIGKILL');
      r.child.kill('SIGKILL');
    }));
    const first = await all([...queued, ...bursting]);
    await agentKilled;
    // 3. The runtime's answer to a failed ADD: DEL, then ADD again.
    const failed = [...waiting, ...burst].filter((_, i) => first[i]!.code !== 0);
    await all(failed.map((id) => plugin('DEL', id)));
    const rerun = await all(failed.map((id) => plugin('ADD', id)));
    // The agent back: its reconcile at start must not take a live pod's address.
    const passes = async (): Promise<number> =>
      (await readFile(lab.agentLogFile(node), 'utf8').catch(() => '')).split('\n').filter((l) => l.includes('IPAM reconcile freed')).length;
    const before = await passes();
    await lab.startAgent(node);
    await until("the restarted agent's first IPAM reconcile", async () => ((await passes()) > before ? true : undefined), 60_000);
    const state = readState(store.state);
    const live = await Promise.all([...waiting, ...burst].map(async (id) => [id, await podAddress(id)] as const));
    const byContainer = new Map(state.allocations.map((a) => [a.containerId, a.address]));
    t.comment(`${found.size} weft-ipam processes killed waiting on the lock, ${failed.length} ADDs failed and were re-run`);
    t.ok(found.size === victims.size && failed.length >= found.size, 'the killed ADDs failed (and were re-run)');
    t.same(rerun.filter((r) => r.code !== 0).map((r) => r.stdout), [], 'every re-run ADD succeeds');
    t.equal(new Set(state.allocations.map((a) => a.address)).size, state.allocations.length, 'no address handed out twice');
    t.same(live.filter(([id, ip]) => !ip || byContainer.get(id) !== ip), [], "every pod's address is the one recorded for it");
    t.equal(state.allocations.length, waiting.length + burst.length, 'nothing leaked: one allocation per pod');
    // The next test writes the store whole, as a crash would leave it: these pods go with their namespaces.
    await dropNetns([...waiting, ...burst]);
  });

  t.test('200 stale allocations fill the /24: the next ADD frees them at once and succeeds', async (t) => {
    const gone = (i: number) => `/var/run/netns/${NS_PREFIX}crashed${i}`;
    const usable = Number(subnet.size) - 3; // network, gateway, broadcast
    const since = new Date(Date.now() - 3600_000).toISOString();
    // As a crash leaves it: 200 allocations whose namespaces are gone, the rest held by a namespace that exists.
    updateState(store, (s) => {
      const allocations: Allocation[] = [];
      for (let k = 0; k < usable; k++) {
        const stale = k < 200;
        allocations.push({
          address: subnet.ip.add(2 + k).toString(), family: 4, containerId: `${stale ? 'crashed' : 'alive'}${k}`, ifname: 'eth0',
          netns: stale ? gone(k) : `/var/run/netns/${node.ns}`, since, pinned: false,
        });
      }
      return { state: { ...s, allocations }, result: undefined };
    });
    const started = performance.now();
    const r = plugin('ADD', ids[20]!);
    await r.done;
    const ms = performance.now() - started;
    const after = readState(store.state);
    const freed = after.lastReconcile?.freed ?? [];
    t.comment(`in-ADD reclaim: ${freed.length} stale allocations freed; the ADD took ${ms.toFixed(0)} ms (noisy shared machine)`);
    t.equal(r.code, 0, 'the ADD succeeds', { stdout: r.stdout });
    t.same({ freed: freed.length, reasons: [...new Set(freed.map((f) => f.reason))] }, { freed: 200, reasons: ['netns-gone'] }, 'all 200 stale entries freed, as netns-gone');
    t.same(after.allocations.filter((a) => a.containerId.startsWith('crashed')), [], 'none left');
    await plugin('DEL', ids[20]!).done;
    updateState(store, (s) => ({ state: { ...s, allocations: s.allocations.filter((a) => !a.containerId.startsWith('alive')) }, result: undefined }));
  });

  t.test('kube mode: a pinned pod from another node\'s subnet gets its address as a borrowed /32 and its MAC; a conflict fails ADD with the agent\'s line', async (t) => {
    // The agent's side of the pins contract, played by the test on the node's socket.
    const third = Number((subnet.ip.value >> 8n) & 255n);
    const borrowed = `10.244.${(third + 1) % 256}.17`;
    const mac = '02:00:0a:f4:00:11';
    let syncs = 0;
    const server = createServer((req, res) => {
      if (req.url === SYNC_PATH) syncs += 1;
      const answer: [number, unknown] = req.url === podPinsPath('db', 'pg-0') ? [200, { uid: 'u-pg-0', addresses: [borrowed], mac }]
        : req.url === podPinsPath('db', 'pg-1') ? [409, { error: `address ${borrowed} is held by pod db/pg-0 on node n1` }]
        : req.url === SYNC_PATH ? [204, ''] : [404, { error: 'no such pod' }];
      res.writeHead(answer[0]);
      res.end(answer[0] === 204 ? '' : JSON.stringify(answer[1]));
    });
    const socket = pinsSocketPath(String(conf.subnetFile));
    await new Promise<void>((resolve) => server.listen(socket, resolve));
    t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())));
    const args = (name: string) => ({ CNI_ARGS: `IgnoreUnknown=1;K8S_POD_NAMESPACE=db;K8S_POD_NAME=${name};K8S_POD_INFRA_CONTAINER_ID=x` });
    const pinned = ids[23]!;
    const add = plugin('ADD', pinned, conf, args('pg-0'));
    await add.done;
    const link = await runCommand(['ip', '-n', pinned, '-o', 'link', 'show', 'eth0']);
    const addr = await runCommand(['ip', '-n', pinned, '-4', '-o', 'addr', 'show', 'dev', 'eth0']);
    const nodeRoute = async () => (await runCommand(['ip', '-n', node.ns, '-4', 'route', 'show', `${borrowed}/32`])).stdout.trim();
    const routed = await nodeRoute();
    const ping = await runCommand(['ip', 'netns', 'exec', node.ns, 'ping', '-c1', '-W2', borrowed], { check: false });
    const conflict = plugin('ADD', ids[19]!, conf, args('pg-1'));
    await conflict.done;
    const allocation = held().find((a) => a.containerId === pinned);
    await plugin('DEL', pinned, conf, args('pg-0')).done;
    const afterDel = { route: await nodeRoute(), reserved: readState(store.state).reservations.map((r) => [r.address, r.pod.name, r.mac]) };
    t.same({
      add: add.code, mac: link.stdout.includes(`link/ether ${mac}`), addr: /inet (\S+)/.exec(addr.stdout)?.[1], routed, ping: ping.code,
      allocation: allocation && [allocation.address, allocation.pinned, allocation.borrowed, allocation.mac, allocation.pod], synced: syncs >= 2,
      conflict: [conflict.code, JSON.parse(conflict.stdout || '{}').code, JSON.parse(conflict.stdout || '{}').msg], afterDel,
    }, {
      add: 0, mac: true, addr: `${borrowed}/32`, routed: `${borrowed} dev cni0 scope link`, ping: 0,
      allocation: [borrowed, true, true, mac, { namespace: 'db', name: 'pg-0', uid: 'u-pg-0' }], synced: true,
      conflict: [1, 110, `address ${borrowed} is held by pod db/pg-0 on node n1`],
      afterDel: { route: '', reserved: [[borrowed, 'pg-0', mac]] },
    }, 'MAC on eth0, the /32 on eth0 and on the node, reachable, recorded borrowed, synced; the conflict refused; DEL unroutes and keeps the reservation');
    updateState(store, (s) => ({ state: { ...s, reservations: [] }, result: undefined }));
  });

  t.test('GC through the lab as the runtime: pods it does not list lose their addresses, its own keep theirs', async (t) => {
    const pods = [await lab.addPod(node), await lab.addPod(node)];
    const strays = ids.slice(21, 23);
    const added = await all(strays.map((id) => plugin('ADD', id)));
    const before = held().map((a) => a.containerId).sort();
    const [r] = await lab.cniGc([node]);
    const after = held();
    t.same(added.map((a) => a.code), [0, 0], 'two pods the lab does not track are wired');
    t.same(before, [...pods.map((p) => p.ns), ...strays].sort(), 'all four hold addresses before GC');
    t.same({ kept: after.map((a) => [a.containerId, a.address]).sort(), freed: r!.freed.map((f) => [f.containerId, f.reason]).sort() }, {
      kept: pods.map((p) => [p.ns, p.ip]).sort(),
      freed: strays.map((id) => [id, 'not-attached']),
    }, "the lab's pods keep their addresses; the others are freed as not-attached");
    t.same(readdirSync(join(nodeDir, 'cni')).sort(), pods.map((p) => `${p.ns}-eth0.json`).sort(), "the weft plugin dropped the strays' saved records");
  });
}
