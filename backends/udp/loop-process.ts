// The udp data path as a process of its own: it holds the TUN device and the
// UDP sockets and runs the native loop, so traffic keeps flowing while the
// agent restarts. The agent starts it detached (LoopSupervisor) and drives it
// over <run-dir>/udp-loop.sock (LoopConnection); it keeps its last peer table
// until an agent sets another. Its own startup error is answered to the first
// "status" request, so the agent can explain it.
//
// usage: node loop-process.js --run-dir DIR --options JSON   (UdpLoopOptions)
import { rmSync } from 'node:fs';
import { createServer, type Socket } from 'node:net';
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import { createLogger } from '../../src/cli/log.js';
import { oneLine } from '../../src/errors.js';
import { udpLoopSocket, type LoopStatus, type LoopTable } from './loop-client.js';
import { loadUdpAddon, type UdpLoop, type UdpLoopOptions } from './native.js';

/** A process whose loop failed to start waits this long for the agent to ask why. */
const FAILED_LINGER_MS = 10_000;

const { values } = parseArgs({ options: { 'run-dir': { type: 'string' }, options: { type: 'string' } }, strict: true });
if (!values['run-dir'] || !values.options) {
  process.stderr.write('usage: loop-process --run-dir DIR --options JSON\n');
  process.exit(2);
}
const socketPath = udpLoopSocket(values['run-dir']);
const options = JSON.parse(values.options) as UdpLoopOptions;
const log = createLogger({ name: 'weft-udp-loop' });

function open(): UdpLoop {
  const loop = new (loadUdpAddon().UdpLoop)(options);
  loop.start();
  return loop;
}

function describe(err: unknown): { code?: string; message: string } {
  return { code: (err as { code?: string }).code, message: oneLine(err) };
}

let loop: UdpLoop | undefined;
let startError: { code?: string; message: string } | undefined;
let table: LoopTable = { peers: [], ownSubnet: null };
let entries: number | null = null;
try {
  loop = open();
  const addresses = [options.bindAddress, ...(options.bindAddressV6 ? [options.bindAddressV6] : [])].join(' and ');
  log.info({ options, features: loop.features() }, `udp loop up on ${options.device}, port ${options.port} on ${addresses}`);
} catch (err) {
  startError = describe(err);
  log.error(`udp loop failed to start: ${startError.message}`);
  setTimeout(() => exit(1), FAILED_LINGER_MS);
}

type Request = { id: number; op: string; peers?: LoopTable['peers']; ownSubnet?: LoopTable['ownSubnet']; borrowedIPs?: LoopTable['borrowedIPs']; teardown?: boolean };

/** Answers one request; `after` runs once the answer is written. */
function handle(req: Request): { reply: object; after?: () => void } {
  if (!loop) return { reply: { error: startError ?? { message: 'the udp loop is stopping' } }, after: () => exit(1) };
  switch (req.op) {
    case 'status': {
      const status: LoopStatus = { pid: process.pid, options, counters: loop.counters(), features: loop.features(), entries };
      return { reply: status };
    }
    case 'table':
      return { reply: table };
    case 'setPeers':
      return setPeers({ peers: req.peers ?? [], ownSubnet: req.ownSubnet ?? null, ...(req.borrowedIPs ? { borrowedIPs: req.borrowedIPs } : {}) });
    case 'stop':
      loop.stop(req.teardown === true);
      loop = undefined;
      log.info(req.teardown ? `udp loop stopped, ${options.device} deleted` : 'udp loop stopped');
      return { reply: { pid: process.pid }, after: () => exit(0) };
    default:
      return { reply: { error: { message: `unknown op ${JSON.stringify(req.op)}` } } };
  }
}

function setPeers(next: LoopTable): { reply: object; after?: () => void } {
  let reopened = false;
  if (loop!.deviceLost()) {
    // Someone deleted the device: only a loop can create a TUN device, so reopen;
    // the agent's next reconcile gives it its address and route back.
    log.warn(`${options.device} was deleted under the udp loop; recreating it`);
    loop!.stop(false);
    try {
      loop = open();
    } catch (err) {
      loop = undefined;
      startError = describe(err);
      return { reply: { error: startError }, after: () => exit(1) };
    }
    reopened = true;
  }
  entries = loop!.setPeers(next.peers, next.ownSubnet, next.borrowedIPs ?? null);
  table = next;
  return { reply: { entries, reopened } };
}

function serve(conn: Socket): void {
  conn.on('error', () => undefined);
  const lines = createInterface({ input: conn }).on('error', () => undefined);
  lines.on('line', (line) => {
    let req: Request;
    try {
      req = JSON.parse(line) as Request;
    } catch {
      return;
    }
    let answer: { reply: object; after?: () => void };
    try {
      answer = handle(req);
    } catch (err) {
      answer = { reply: { error: describe(err) } };
    }
    conn.write(`${JSON.stringify({ ...answer.reply, id: req.id })}\n`, answer.after);
  });
}

function exit(code: number): void {
  loop?.stop(false);
  // After a failed start the agent may already have started the next process on this path.
  if (!startError) rmSync(socketPath, { force: true });
  process.exit(code);
}

// The socket is the agent's only way in: nobody else may connect.
process.umask(0o077);
rmSync(socketPath, { force: true });
createServer(serve)
  .on('error', (err) => {
    log.error(`cannot listen on ${socketPath}: ${oneLine(err)}`);
    exit(1);
  })
  .listen(socketPath);
// The agent's signals never reach this process group; these come from an operator or `weft lab down`.
process.once('SIGTERM', () => exit(0));
process.once('SIGINT', () => exit(0));
process.on('SIGHUP', () => undefined);
