// The weft plugin's side of the pins contract: each answer of the agent's
// socket mapped to what ADD does (pins, unpinned, or a CNI error with its code).
import { createServer, type Server } from 'node:http';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { askPodPins } from '../../src/cni/pins-client.js';
import { CniError } from '../../src/cni/errors.js';

const dir = mkdtempSync(join(tmpdir(), 'ic-pins-'));
const socket = join(dir, 'weft-ipam.sock');
const answers: Record<string, [number, string]> = {
  '/v1/pods/db/pg-0': [200, JSON.stringify({ uid: 'u1', addresses: ['10.244.9.17'], mac: '02:00:0a:f4:09:11' })],
  '/v1/pods/db/plain': [200, JSON.stringify({ uid: 'u2', addresses: [] })],
  '/v1/pods/db/held': [409, JSON.stringify({ error: 'address 10.244.9.17 is held by pod db/pg-0 on node n2' })],
  '/v1/pods/db/bad': [422, JSON.stringify({ error: 'weft.io/ip "10.9.9.9" is outside the cluster Network 10.244.0.0/16' })],
  '/v1/pods/db/early': [503, JSON.stringify({ error: 'pods not listed yet' })],
  '/v1/pods/db/garbled': [200, '{"uid": 5}'],
};
const server: Server = createServer((req, res) => {
  const [status, body] = answers[req.url ?? ''] ?? [404, '{"error":"no such pod"}'];
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(body);
});
await new Promise<void>((resolve) => server.listen(socket, resolve));
t.teardown(() => {
  server.close();
  rmSync(dir, { recursive: true, force: true });
});

async function outcome(name: string, path = socket): Promise<unknown> {
  try {
    return await askPodPins(path, { namespace: 'db', name });
  } catch (err) {
    return err instanceof CniError ? [err.code, err.message] : String(err);
  }
}

t.test('200 gives the pins, 404 none; 409 and 422 fail ADD with the agent\'s line; 503, garbage or silence ask the runtime to retry', async (t) => {
  const got = await Promise.all(['pg-0', 'plain', 'unknown', 'held', 'bad', 'early', 'garbled'].map((n) => outcome(n)));
  const absent = await outcome('pg-0', join(dir, 'absent.sock'));
  // What a stopped agent leaves: the path, but nothing listening.
  writeFileSync(join(dir, 'stopped.sock'), '');
  const stopped = await outcome('pg-0', join(dir, 'stopped.sock'));
  t.match([...got, absent, stopped], [
    { uid: 'u1', addresses: ['10.244.9.17'], mac: '02:00:0a:f4:09:11' },
    { uid: 'u2', addresses: [] },
    undefined,
    [110, 'address 10.244.9.17 is held by pod db/pg-0 on node n2'],
    [111, 'weft.io/ip "10.9.9.9" is outside the cluster Network 10.244.0.0/16'],
    [11, /is not ready: pods not listed yet/],
    [11, /gave an unreadable pins answer/],
    [11, /the weft agent did not answer on .*absent\.sock/],
    [11, /the weft agent did not answer on .*stopped\.sock \(connect ECONNREFUSED/],
  ]);
});
