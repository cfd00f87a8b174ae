// The measuring tools' output read into figures, from samples captured on
// this machine (test/unit/fixtures/bench-compare/README.md says how).
import { readFileSync } from 'node:fs';
import t from 'tap';
import { parseIperfTcp, parseIperfUdp, parsePing, parseSockperfPingPong } from '../../src/bench/compare/parse.js';

const fixture = (name: string): string => readFileSync(new URL(`fixtures/bench-compare/${name}`, import.meta.url), 'utf8');

t.test('iperf3 TCP', async (t) => {
  t.same(parseIperfTcp(fixture('iperf3-tcp1.json')), { gbps: 15.836766963914724, retransmits: 0, bytes: 1981939712 }, 'one stream: received rate and bytes, sender retransmits');
  t.same(parseIperfTcp(fixture('iperf3-tcp4.json')), { gbps: 11.017297375411415, retransmits: 19, bytes: 1383727104 }, '-P 4: the sums over the streams');
  t.throws(() => parseIperfTcp(fixture('iperf3-error.json')), /^iperf3: unable to connect to server: Connection refused$/, "iperf3's own error report");
  t.throws(() => parseIperfTcp(fixture('iperf3-truncated.json')), /^iperf3 printed no JSON \(empty or cut short\): \{ "start": \{/, 'output cut short');
  t.throws(() => parseIperfTcp(''), /^iperf3 printed no JSON \(empty or cut short\): \(empty output\)$/, 'no output at all');
  t.throws(() => parseIperfTcp(fixture('iperf3-udp.json')), /^iperf3 output is a UDP test where a TCP one was expected \(drop -u\)$/, 'a UDP run');
  t.throws(() => parseIperfTcp('{"start":{},"end":{}}'), /iperf3 JSON has no end\.sum_received/, 'a report without the sums');
});

t.test('iperf3 UDP', async (t) => {
  t.same(
    parseIperfUdp(fixture('iperf3-udp.json')),
    { gbps: 0.34197501329605824, lossPercent: 62.906183607290622, jitterMs: 0.0024703007645742211, bytes: 43241800, packets: 89430, lostPackets: 56257 },
    'received rate and bytes from sum_received; loss, jitter and datagram counts from sum',
  );
  t.throws(() => parseIperfUdp(fixture('iperf3-tcp1.json')), /^iperf3 output is a TCP test where a UDP one was expected \(add -u\)$/, 'a TCP run');
  t.throws(() => parseIperfUdp(fixture('iperf3-error.json')), /^iperf3: unable to connect/, "iperf3's own error report");
  t.throws(() => parseIperfUdp('iperf3: error - unable to'), /^iperf3 printed no JSON \(empty or cut short\): iperf3: error - unable to$/, 'plain text');
  t.throws(
    () => parseIperfUdp('{"start":{"test_start":{"protocol":"UDP"}},"end":{"sum":{"bytes":1}}}'),
    /^iperf3 UDP JSON has no end\.sum_received and no end\.sum loss and jitter: /,
    'a report without the receiver figures names both parts',
  );
});

t.test('ping', async (t) => {
  const loopback = parsePing(fixture('ping-loopback.txt'));
  t.same(
    { sent: loopback.sent, received: loopback.received, n: loopback.rttsMs.length, first: loopback.rttsMs[0], last: loopback.rttsMs.at(-1) },
    { sent: 20, received: 20, n: 20, first: 0.032, last: 0.052 },
    'every reply time, in order, and the summary counts',
  );
  t.same(parsePing(fixture('ping-lossy.txt')), { sent: 5, received: 3, rttsMs: [0.412, 1.08, 0.387] }, 'errors and duplicates are not replies');
  t.same(parsePing(fixture('ping-all-lost.txt')), { sent: 3, received: 0, rttsMs: [] }, 'every probe lost is a result, not an error');
  const cut = fixture('ping-loopback.txt').split('\n').slice(0, 8).join('\n');
  t.throws(() => parsePing(cut), /^ping printed no "packets transmitted" summary \(cut short, or not ping\): PING 127\.0\.0\.1/, 'output cut short');
  t.throws(() => parsePing(''), /^ping printed no "packets transmitted" summary \(cut short, or not ping\): \(empty output\)$/, 'no output');
  const quiet = fixture('ping-loopback.txt').split('\n').filter((l) => !l.includes('time=')).join('\n');
  t.throws(() => parsePing(quiet), /^ping printed no per-reply time= lines for its 20 replies \(run it without -q\)/, 'quiet output has no per-reply times');
});

t.test('sockperf ping-pong', async (t) => {
  t.same(
    parseSockperfPingPong(fixture('sockperf-pp-full-rtt.txt')),
    { perSecond: 25226 / 0.55, p50Us: 19.175, p99Us: 52.648, avgUs: 21.761 },
    '--full-rtt: round trips as printed, rate over the valid duration',
  );
  const half = parseSockperfPingPong(fixture('sockperf-pp.txt'));
  t.same(half, { perSecond: 25991 / 0.55, p50Us: 9.978 * 2, p99Us: 27.451 * 2, avgUs: 10.554 * 2 }, 'without --full-rtt: the halved figures doubled back to round trips');
  t.throws(() => parseSockperfPingPong(fixture('sockperf-pp-noserver.txt')), /^sockperf got no replies from the server: is `sockperf server` listening/, 'no server');
  t.throws(() => parseSockperfPingPong(fixture('sockperf-pp-truncated.txt')), /^sockperf printed no percentile 50 and 99 lines \(cut short\?\): sockperf: == version/, 'cut short, colour codes gone from the excerpt');
  t.throws(() => parseSockperfPingPong(''), /^sockperf printed no "\[Valid Duration\]" line: \(empty output\)$/, 'no output');
  t.throws(() => parseSockperfPingPong('<html>502 Bad Gateway</html>'), /^sockperf printed no "\[Valid Duration\]" line: <html>502/, 'garbage');
  const zero = fixture('sockperf-pp-full-rtt.txt').replace('[Valid Duration] RunTime=0.550', '[Valid Duration] RunTime=0.000');
  t.throws(() => parseSockperfPingPong(zero), /^sockperf's measured duration is 0\.000 s: run it longer than its warm-up/, 'a run no longer than its warm-up');
});
