// The pins socket over a real unix socket: each answer of the contract in
// src/ipam/pins-api.ts, the sync call, the socket's mode and a stale socket.
import t, { type Test } from 'tap';
import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { Cidr, IP } from '../../src/core/cidr.js';
import { servePins } from '../../src/agent/ipam-pins-server.js';
import { PINS_SOCKET_NAME, SYNC_PATH, podPinsPath } from '../../src/ipam/pins-api.js';
import type { IpamPod, IpamPodSource } from '../../src/ipam/pod-source.js';
import { ipamPodOf } from '../../src/subnet/kube/ipam-pod-watch.js';
import { podObject } from '../fixtures/kube/pod-object.js';

const NETS = [Cidr.parse('10.244.0.0/16')];

function ask(socketPath: string, method: string, path: string): Promise<{ status: number; body: unknown }> {
  return new Promise((resolve, reject) => {
    const req = request({ socketPath, method, path }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (text += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text ? JSON.parse(text) : undefined }));
    });
    req.on('error', reject);
    req.end();
  });
}

interface World {
  listed: boolean;
  pods: Record<string, Record<string, any>>;
  holders: IpamPod[];
  apiDown?: boolean;
}

async function pinsServer(t: Test, world: World, configRead = true) {
  const dir = mkdtempSync(join(tmpdir(), 'ia-pins-'));
  const socketPath = join(dir, PINS_SOCKET_NAME);
  writeFileSync(socketPath, 'a stale socket left by a killed agent');
  let syncs = 0;
  const pods: IpamPodSource = {
    listed: () => world.listed,
    nodePods: () => [],
    holderOf: (ip: IP, except) => world.holders.find((h) => h.ips.includes(ip.toString()) && !(h.namespace === except.namespace && h.name === except.name)),
    getPod: async (ns, name) => {
      if (world.apiDown) throw new Error('connect ECONNREFUSED 192.0.2.1:6443');
      return world.pods[`${ns}/${name}`];
    },
  };
  const server = await servePins({ socketPath, pods, networks: () => (configRead ? NETS : undefined), sync: async () => void syncs++, logger: pino({ level: 'silent' }) });
  t.teardown(async () => {
    await server.close();
    rmSync(dir, { recursive: true, force: true });
  });
  return { socketPath, syncs: () => syncs, server };
}

const pod = (name: string, annotations: Record<string, string> = {}, ips: string[] = [], nodeName = 'n1') =>
  podObject({ namespace: 'app', name, nodeName, ips, annotations }, `uid-${name}`, '2026-01-01T00:00:00Z');

t.test('GET pod pins: 200 with the addresses and MAC, the derived MAC, and none for an unpinned pod', async (t) => {
  const { socketPath } = await pinsServer(t, {
    listed: true,
    holders: [],
    pods: {
      'app/db-0': pod('db-0', { 'weft.io/ip': '10.244.3.17', 'weft.io/mac': '02:42:0A:F4:03:11' }),
      'app/db-1': pod('db-1', { 'weft.io/ip': '10.244.3.18' }),
      'app/web': pod('web'),
    },
  });
  const got = await Promise.all(['db-0', 'db-1', 'web'].map((n) => ask(socketPath, 'GET', podPinsPath('app', n))));
  t.same(got, [
    { status: 200, body: { uid: 'uid-db-0', addresses: ['10.244.3.17'], mac: '02:42:0a:f4:03:11' } },
    { status: 200, body: { uid: 'uid-db-1', addresses: ['10.244.3.18'], mac: '0a:58:0a:f4:03:12' } },
    { status: 200, body: { uid: 'uid-web', addresses: [] } },
  ]);
});

t.test('GET pod pins: 404 unknown pod, 422 bad annotation, 409 held by another live pod (named), 503 before the list or when the API fails', async (t) => {
  const world: World = {
    listed: true,
    holders: [ipamPodOf(pod('old', {}, ['10.244.3.17'], 'n2'))!, ipamPodOf(pod('db-0', {}, ['10.244.3.18']))!],
    pods: {
      'app/db-0': pod('db-0', { 'weft.io/ip': '10.244.3.17' }),
      'app/bad': pod('bad', { 'weft.io/ip': '10.9.9.9' }),
    },
  };
  const { socketPath } = await pinsServer(t, world);
  const got = [];
  for (const n of ['nope', 'bad', 'db-0']) got.push(await ask(socketPath, 'GET', podPinsPath('app', n)));
  world.apiDown = true;
  got.push(await ask(socketPath, 'GET', podPinsPath('app', 'db-0')));
  world.listed = false;
  got.push(await ask(socketPath, 'GET', podPinsPath('app', 'db-0')));
  t.same(got, [
    { status: 404, body: { error: 'the API server has no pod app/nope' } },
    { status: 422, body: { error: 'pod app/bad: weft.io/ip "10.9.9.9": 10.9.9.9 is outside the cluster network 10.244.0.0/16; give one address per family inside the cluster network, e.g. 10.244.3.17 or 10.244.3.17,2001:db8:3::17' } },
    { status: 409, body: { error: 'pinned address 10.244.3.17 of pod app/db-0 is held by pod app/old on node n2; delete that pod or pin another address' } },
    { status: 503, body: { error: 'cannot read pod app/db-0 from the API server (connect ECONNREFUSED 192.0.2.1:6443); the runtime retries the pod' } },
    { status: 503, body: { error: 'the weft agent has not listed pods yet; the runtime retries the pod' } },
  ]);
});

t.test('a pod holding its own pinned address (its status after a restart) is not a conflict', async (t) => {
  const { socketPath } = await pinsServer(t, { listed: true, holders: [ipamPodOf(pod('db-0', {}, ['10.244.3.17']))!], pods: { 'app/db-0': pod('db-0', { 'weft.io/ip': '10.244.3.17' }) } });
  t.equal((await ask(socketPath, 'GET', podPinsPath('app', 'db-0'))).status, 200);
});

t.test('503 before the config is read', async (t) => {
  const { socketPath } = await pinsServer(t, { listed: true, holders: [], pods: {} }, false);
  t.equal((await ask(socketPath, 'GET', podPinsPath('app', 'x'))).status, 503);
});

t.test('POST sync republishes (204); other calls are 404; the socket is 0600, replaces a stale file and leaves a placeholder that is not a socket on close', async (t) => {
  const { socketPath, syncs, server } = await pinsServer(t, { listed: true, holders: [], pods: {} });
  const sync = await ask(socketPath, 'POST', SYNC_PATH);
  const other = await ask(socketPath, 'GET', '/v2/anything');
  const mode = statSync(socketPath).mode & 0o777;
  await server.close();
  const after = statSync(socketPath);
  const placeholder = { socket: after.isSocket(), size: after.size, mode: (after.mode & 0o777).toString(8) };
  t.same({ sync: sync.status, syncs: syncs(), other: other.status, mode: mode.toString(8), placeholder }, { sync: 204, syncs: 1, other: 404, mode: '600', placeholder: { socket: false, size: 0, mode: '600' } });
});

t.test('ipamPodOf: identity, node, addresses, liveness; host-network pods and unusable metadata are left out', async (t) => {
  const done = pod('job', {}, ['10.244.3.9']);
  done.status.phase = 'Succeeded';
  const host = pod('host');
  host.spec.hostNetwork = true;
  t.same([ipamPodOf(pod('a', {}, ['10.244.3.9'])), ipamPodOf(done)?.live, ipamPodOf(host), ipamPodOf({ metadata: { name: 7 } }), ipamPodOf(null)], [
    { namespace: 'app', name: 'a', uid: 'uid-a', nodeName: 'n1', ips: ['10.244.3.9'], live: true },
    false,
    undefined,
    undefined,
    undefined,
  ]);
});
