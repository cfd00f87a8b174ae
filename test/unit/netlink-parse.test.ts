// The addon's netlink parser on hand-built messages, truncated ones and
// garbage: every length is checked, so bad input yields fewer events, never
// a crash or an event read past the end. No root, no socket.
import t from 'tap';
import { loadTestAddon } from '../support/native-test-addon.js';

const { parseNetlink } = loadTestAddon();

/** One rtattr: type, payload, padded to 4 bytes. */
function attr(type: number, payload: Buffer): Buffer {
  const len = 4 + payload.length;
  const b = Buffer.alloc((len + 3) & ~3);
  b.writeUInt16LE(len, 0);
  b.writeUInt16LE(type, 2);
  payload.copy(b, 4);
  return b;
}

/** An RTM_NEWROUTE (24) for 10.5.2.0/24 via 192.0.2.2, oif 3, proto 147, main table. */
function newRoute(): Buffer {
  const rtm = Buffer.from([2 /* AF_INET */, 24, 0, 0, 254, 147, 0, 1, 0, 0, 0, 0]);
  const u32 = (n: number) => { const b = Buffer.alloc(4); b.writeUInt32LE(n); return b; };
  const body = Buffer.concat([rtm, attr(1 /* RTA_DST */, Buffer.from([10, 5, 2, 0])), attr(5 /* RTA_GATEWAY */, Buffer.from([192, 0, 2, 2])), attr(4 /* RTA_OIF */, u32(3))]);
  const h = Buffer.alloc(16);
  h.writeUInt32LE(16 + body.length, 0);
  h.writeUInt16LE(24, 4);
  return Buffer.concat([h, body]);
}

t.test('a well-formed route message', async (t) => {
  t.same(parseNetlink(newRoute()), [{ kind: 'route', op: 'new', family: 4, ifindex: 3, dst: '10.5.2.0', prefixLen: 24, table: 254, protocol: 147, type: 1, gateway: '192.0.2.2' }], 'every field typed');
});

t.test('truncated messages are skipped, never read past their end', async (t) => {
  const whole = newRoute();
  const results = Array.from({ length: whole.length }, (_, n) => parseNetlink(whole.subarray(0, n)).length);
  t.same(results.filter((n) => n !== 0), [], 'no prefix of the message parses as an event');
});

t.test('a message whose attribute claims more bytes than there are', async (t) => {
  const bad = newRoute();
  bad.writeUInt16LE(200, 16 + 12); // RTA_DST's length
  t.same(parseNetlink(bad).map((e) => [e.kind, e.ifindex]), [['route', 0]], 'the attributes after the bad one are not read');
});

t.test('garbage: random bytes and random corruptions of a valid message', async (t) => {
  let seed = 42;
  const rand = () => ((seed = (seed * 1103515245 + 12345) >>> 0) >>> 8) & 0xff;
  const kinds = new Set<string>();
  for (let i = 0; i < 3000; i++) {
    const b = i % 2 ? Buffer.from(Array.from({ length: rand() * 2 }, rand)) : newRoute();
    if (i % 2 === 0) for (let k = 0; k < 3; k++) b[rand() % b.length] = rand();
    for (const ev of parseNetlink(b)) kinds.add(ev.kind);
  }
  t.same([...kinds].filter((k) => !['link', 'route', 'neigh', 'fdb'].includes(k)), [], '3000 inputs parsed without a crash, every event of a known kind');
});
