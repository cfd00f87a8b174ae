// conntrack -L parsing and exact deletes; the br_netfilter sysctls NetworkPolicy needs.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { deleteArgs, parseConntrackList } from '../../src/dataplane/conntrack.js';
import { ensureBridgeNetfilter } from '../../src/dataplane/bridge-netfilter.js';

const LISTING = [
  'icmp     1 29 src=10.244.1.2 dst=10.244.2.3 type=8 code=0 id=32149 src=10.244.2.3 dst=10.244.1.2 type=0 code=0 id=32149 mark=0 use=1',
  'udp      17 29 src=10.244.1.2 dst=10.244.2.3 sport=58382 dport=53 [UNREPLIED] src=10.244.2.3 dst=10.244.1.2 sport=53 dport=58382 mark=0 use=1',
  'tcp      6 119 ESTABLISHED src=10.244.1.2 dst=10.244.2.3 sport=44622 dport=80 src=10.244.2.3 dst=10.244.1.2 sport=80 dport=44622 [ASSURED] mark=0 use=1',
  'icmpv6   58 29 src=2001:db8:1000:0a1::2 dst=2001:db8:1000:a2::3 type=128 code=0 id=7 src=2001:db8:1000:a2::3 dst=2001:db8:1000:a1::2 type=129 code=0 id=7 mark=0 use=1',
  'conntrack v1.4.7 (conntrack-tools): 4 flow entries have been shown.',
  'garbage src=not-an-ip dst=10.0.0.1',
  'tcp 6 1 src=10.0.0.1 dst=10.0.0.2 sport=99999 dport=80',
  '',
].join('\n');

t.test('conntrack -L: the original direction of each flow, canonical addresses, garbage skipped', async (t) => {
  t.same(parseConntrackList(LISTING), [
    { proto: 'icmp', src: '10.244.1.2', dst: '10.244.2.3' },
    { proto: 'udp', src: '10.244.1.2', dst: '10.244.2.3', sport: 58382, dport: 53 },
    { proto: 'tcp', src: '10.244.1.2', dst: '10.244.2.3', sport: 44622, dport: 80 },
    { proto: 'icmpv6', src: '2001:db8:1000:a1::2', dst: '2001:db8:1000:a2::3' },
    { proto: 'tcp', src: '10.0.0.1', dst: '10.0.0.2', dport: 80 },
  ]);
});

t.test('conntrack -D arguments name exactly one flow, with the family for IPv6', async (t) => {
  t.same(
    [
      deleteArgs({ proto: 'tcp', src: '10.244.1.2', dst: '10.244.2.3', sport: 44622, dport: 80 }),
      deleteArgs({ proto: 'icmpv6', src: '2001:db8::1', dst: '2001:db8::2' }),
    ],
    [
      ['conntrack', '-D', '-p', 'tcp', '-s', '10.244.1.2', '-d', '10.244.2.3', '--sport', '44622', '--dport', '80'],
      ['conntrack', '-D', '-f', 'ipv6', '-p', 'icmpv6', '-s', '2001:db8::1', '-d', '2001:db8::2'],
    ],
  );
});

t.test('br_netfilter: sysctls turned on when off, left alone when on, one line when the module is absent', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'weft-brnf-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, 'bridge-nf-call-iptables'), '0\n');
  writeFileSync(join(dir, 'bridge-nf-call-ip6tables'), '1\n');
  t.same(await ensureBridgeNetfilter([4, 6], dir), ['net.bridge.bridge-nf-call-iptables'], 'only the one that was off is reported');
  t.equal(readFileSync(join(dir, 'bridge-nf-call-iptables'), 'utf8'), '1', 'and it is on now');
  await t.rejects(ensureBridgeNetfilter([4], join(dir, 'absent')), { message: /br_netfilter module is not loaded.*modprobe br_netfilter/s });
});
