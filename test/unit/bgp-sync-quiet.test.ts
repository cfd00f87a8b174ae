// A reflector's client at scale: another node joining changes nothing in this
// node's BIRD config, so the sync it triggers must ask BIRD nothing (no
// reconfigure, no session read). Driven against a stand-in control socket
// that answers like BIRD 2 and records every command birdc sends; the config
// itself is checked by the real `bird -p`.
import t from 'tap';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { createBgpBackend } from '../../backends/bgp/index.js';
import type { BackendContext } from '../../backends/backend.js';
import { Cidr, IP } from '../../src/core/cidr.js';
import type { Lease } from '../../src/subnet/lease.js';

const NETWORK = Cidr.parse('10.244.0.0/16');
const UNDERLAY = Cidr.parse('192.0.2.0/24');

/** Replies of BIRD 2's control protocol, by command prefix. */
const REPLIES: [RegExp, string][] = [
  [/^show status/, '1000-BIRD 2.0.12\n0013 Daemon is up and running\n'],
  [/^show protocols/, '2002-Name       Proto      Table      State  Since         Info\n0000 \n'],
  [/^configure/, '0003 Reconfigured\n'],
];

/** A unix socket that greets like BIRD, answers REPLIES and records each command. */
async function fakeBird(path: string): Promise<{ commands: string[]; server: Server }> {
  const commands: string[] = [];
  const server = createServer((conn) => {
    conn.write('0001 BIRD 2.0.12 ready.\n');
    let buffered = '';
    conn.on('data', (chunk) => {
      buffered += chunk.toString();
      let nl: number;
      while ((nl = buffered.indexOf('\n')) >= 0) {
        const command = buffered.slice(0, nl).trim();
        buffered = buffered.slice(nl + 1);
        if (!command) continue;
        commands.push(command);
        conn.write(REPLIES.find(([re]) => re.test(command))?.[1] ?? '0000 \n');
      }
    });
    conn.on('error', () => undefined);
  });
  await new Promise<void>((resolve) => server.listen(path, resolve));
  return { commands, server };
}

function lease(n: number, reflector = false): Lease {
  return {
    subnet: NETWORK.subnet(24, BigInt(n)),
    attrs: { publicIP: IP.parse(`192.0.2.${n}`), backendType: 'bgp', backendData: reflector ? { RouteReflector: true } : null, nodeName: `node-${n}` },
  };
}

t.test('a client syncing a lease set that changes nothing for it asks BIRD nothing', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'wbg-quiet-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const socket = join(dir, 'bird.ctl');
  const { commands, server } = await fakeBird(socket);
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())));
  const ip = IP.parse('192.0.2.10');
  const ctx: BackendContext = {
    config: { network: NETWORK, subnetLen: 24, subnetMin: NETWORK.subnet(24, 1n), subnetMax: NETWORK.subnet(24, 255n), backend: { type: 'bgp', raw: { RouteReflectors: ['node-1', 'node-2'] } } },
    ext: { name: 'eth0', ip, publicIP: ip, mtu: 1500, connected: [UNDERLAY] },
    logger: pino({ level: 'silent' }),
    nodeName: 'node-10',
    runDir: dir,
    birdSocket: socket,
  };
  // Readiness polling far away: only what sync itself sends is counted.
  const backend = await createBgpBackend(ctx, { pollMs: 3_600_000 });
  t.teardown(() => backend.stop({ teardown: false }));
  const own = lease(10);
  const peers = [lease(1), lease(2), ...Array.from({ length: 30 }, (_, i) => lease(11 + i))];

  await backend.sync!(own, peers);
  const afterFirst = commands.length;
  await backend.sync!(own, [...peers, lease(41)]);
  await backend.sync!(own, [...peers, lease(41), lease(42)]);
  const later = commands.slice(afterFirst);
  await backend.sync!(own, [...peers, lease(3, true)]);
  const reflectorJoined = commands.slice(afterFirst + later.length);

  t.same(
    { later, reflectorJoined: reflectorJoined.map((c) => c.replace(/ ".*"$/, '')) },
    { later: [], reflectorJoined: ['configure', 'show protocols all'] },
    'two clients joining: no command at all; a third reflector joining: configure, then the sessions read once',
  );
  t.ok(commands.slice(0, afterFirst).some((c) => c.startsWith('configure')), 'the first sync configured BIRD');
});
