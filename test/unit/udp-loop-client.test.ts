// The agent's side of the udp loop process's socket, against a stand-in
// server: answers matched by id whatever their order, errors carrying the
// addon's errno code, nobody listening, and a process that goes away.
import t from 'tap';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { LoopConnection, udpLoopSocket } from '../../backends/udp/loop-client.js';

const dir = mkdtempSync(join(tmpdir(), 'weft-loop-client-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));

/** A server answering each request line with `answer(request)`; undefined holds the answer back. */
async function standIn(answer: (req: { id: number; op: string }, conn: Socket) => object | undefined): Promise<Server> {
  const server = createServer((conn) => {
    createInterface({ input: conn }).on('line', (line) => {
      const req = JSON.parse(line) as { id: number; op: string };
      const reply = answer(req, conn);
      if (reply) conn.write(`${JSON.stringify({ ...reply, id: req.id })}\n`);
    });
  });
  await new Promise<void>((resolve) => server.listen(udpLoopSocket(dir), resolve));
  return server;
}

t.test('nobody listening: no connection', async (t) => {
  t.equal(await LoopConnection.open(join(dir, 'nothing.sock')), undefined);
});

t.test('answers are matched by id, not by order', async (t) => {
  let held: { conn: Socket; id: number } | undefined;
  const server = await standIn((req, conn) => {
    if (req.op === 'table') {
      held = { conn, id: req.id };
      return undefined;
    }
    // Answer the held request after this one.
    setImmediate(() => held && held.conn.write(`${JSON.stringify({ peers: [], ownSubnet: '10.5.1.0/24', id: held.id })}\n`));
    return { entries: 2, reopened: false };
  });
  t.teardown(() => server.close());
  const conn = (await LoopConnection.open(udpLoopSocket(dir)))!;
  t.teardown(() => conn.close());
  const [table, set] = await Promise.all([conn.table(), conn.setPeers({ peers: [], ownSubnet: null })]);
  t.same([table.ownSubnet, set.entries], ['10.5.1.0/24', 2]);
});

t.test("an error answer rejects with the loop's errno code", async (t) => {
  const server = await standIn(() => ({ error: { code: 'EADDRINUSE', message: 'cannot bind 192.0.2.1:8285: Address already in use' } }));
  t.teardown(() => server.close());
  const conn = (await LoopConnection.open(udpLoopSocket(dir)))!;
  t.teardown(() => conn.close());
  await t.rejects(conn.status(), { name: 'LoopError', code: 'EADDRINUSE', message: /Address already in use/ });
});

t.test('a process that goes away fails the pending request and settles closed', async (t) => {
  const server = await standIn((_req, conn) => {
    conn.destroy();
    return undefined;
  });
  t.teardown(() => server.close());
  const conn = (await LoopConnection.open(udpLoopSocket(dir)))!;
  await t.rejects(conn.status(), { name: 'LoopError', message: /closed its socket/ });
  await conn.closed;
});
