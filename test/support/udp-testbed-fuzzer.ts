// The udp testbed's fuzzer child: sends length-prefixed datagrams from a
// file to the loop's port, paced, and prints how many were sent.
//   udp-testbed-fuzzer.ts FILE BIND TARGET PORT
import { createSocket } from 'node:dgram';
import { readFileSync } from 'node:fs';

const [file, bind, target, port] = process.argv.slice(2) as [string, string, string, string];
const data = readFileSync(file);
const sock = createSocket(bind.includes(':') ? 'udp6' : 'udp4');
sock.bind({ address: bind, port: 0 }, async () => {
  let off = 0;
  let sent = 0;
  let failed = 0;
  while (off < data.length) {
    const len = data.readUInt16BE(off);
    const payload = data.subarray(off + 2, off + 2 + len);
    off += 2 + len;
    await new Promise<void>((res) => sock.send(payload, Number(port), target, (err) => {
      if (err) failed++;
      else sent++;
      res();
    }));
    // Pace the burst so the receiver's socket buffer, not the fuzzer, decides.
    if ((sent + failed) % 200 === 0) await new Promise((res) => setTimeout(res, 2));
  }
  process.stdout.write(JSON.stringify({ sent, failed }) + '\n');
  sock.close();
});
