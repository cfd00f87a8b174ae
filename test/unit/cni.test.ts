// The CNI plugin's pure parts: subnet.env parsing with hostile input, the
// delegate config, and the errors runCni answers before any plugin runs.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { bridgeConf } from '../../src/cni/delegate.js';
import { runCni, SUPPORTED_VERSIONS } from '../../src/cni/plugin.js';
import { parseNodeSubnet } from '../../src/cni/subnet-env.js';
import { formatSubnetEnv } from '../../src/subnet/subnet-env.js';

const GOOD = 'FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.7.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n';

t.test('subnet.env parses as the agent writes it', async (t) => {
  const n = parseNodeSubnet(GOOD, 'subnet.env');
  t.equal(n.network.toString(), '10.244.0.0/16');
  t.equal(n.subnet.toString(), '10.244.7.0/24');
  t.equal(n.gateway.toString(), '10.244.7.1');
  t.equal(n.mtu, 1450);
  t.equal(n.ipMasq, true);
  t.equal(parseNodeSubnet(GOOD.replace('FLANNEL_IPMASQ=true\n', ''), 'f').ipMasq, false, 'FLANNEL_IPMASQ defaults to false');
  const v6 = parseNodeSubnet('FLANNEL_NETWORK=fd00:10::/48\nFLANNEL_SUBNET=fd00:10:0:7::1/64\nFLANNEL_MTU=1400\n', 'f');
  t.equal(v6.subnet.toString(), 'fd00:10:0:7::/64');
});

t.test('subnet.env with hostile or broken values is refused naming the key', async (t) => {
  const cases: [string, RegExp][] = [
    ['', /FLANNEL_NETWORK is missing/],
    [GOOD.replace('10.244.0.0/16', '10.244.0.0/99'), /FLANNEL_NETWORK is not a CIDR/],
    [GOOD.replace('10.244.7.1/24', '10.244.7.1'), /FLANNEL_SUBNET .*no \/prefix/],
    [GOOD.replace('10.244.7.1/24', '10.99.7.1/24'), /outside FLANNEL_NETWORK/],
    [GOOD.replace('10.244.7.1/24', '10.244.7.0/24'), /not a usable host address/],
    [GOOD.replace('10.244.7.1/24', '10.244.7.255/24'), /not a usable host address/],
    [GOOD.replace('1450', '99'), /FLANNEL_MTU "99" is not an MTU/],
    [GOOD.replace('1450', '1e4'), /FLANNEL_MTU "1e4"/],
    [GOOD.replace('1450', '70000'), /FLANNEL_MTU "70000"/],
    [GOOD.replace('IPMASQ=true', 'IPMASQ=yes'), /FLANNEL_IPMASQ "yes"/],
    [GOOD.replace('10.244.7.1/24', '$(reboot)'), /FLANNEL_SUBNET "\$\(reboot\)"/],
  ];
  for (const [text, why] of cases) {
    t.throws(() => parseNodeSubnet(text, '/run/weft/subnet.env'), { code: 5, message: why }, why.source);
  }
});

t.test('bridge delegate config', async (t) => {
  const node = parseNodeSubnet(GOOD, 'f');
  const conf = bridgeConf({ cniVersion: '1.0.0', name: 'weft' }, node);
  t.match(conf, {
    type: 'bridge',
    bridge: 'cni0',
    isGateway: true,
    ipMasq: false,
    mtu: 1450,
    hairpinMode: true,
    ipam: {
      type: 'weft-ipam',
      ranges: [[{ subnet: '10.244.7.0/24', gateway: '10.244.7.1' }]],
      routes: [
        { dst: '10.244.0.0/16', gw: '10.244.7.1' },
        { dst: '0.0.0.0/0', gw: '10.244.7.1' },
      ],
      networks: ['10.244.0.0/16'],
    },
  });
  t.equal(bridgeConf({ cniVersion: '1.0.0', name: 'w' }, { ...node, ipMasq: false }).ipMasq, true, 'no agent masquerade: the bridge does it');
  const v6 = bridgeConf({ cniVersion: '1.0.0', name: 'w' }, parseNodeSubnet('FLANNEL_NETWORK=fd00:10::/48\nFLANNEL_SUBNET=fd00:10:0:7::1/64\nFLANNEL_MTU=1400\n', 'f'));
  t.same((v6.ipam as any).routes.map((r: any) => r.dst), ['fd00:10::/48', '::/0']);
  const over = bridgeConf({ cniVersion: '1.0.0', name: 'w' }, node, { bridge: 'br9', hairpinMode: false, ipam: { dataDir: '/x' } });
  t.equal(over.bridge, 'br9');
  t.equal(over.hairpinMode, false);
  t.match(over.ipam, { type: 'weft-ipam', dataDir: '/x', ranges: [[{ subnet: '10.244.7.0/24' }]] }, 'ipam overrides merge');
  const hostLocal = bridgeConf({ cniVersion: '1.0.0', name: 'w' }, node, { ipam: { type: 'host-local', dataDir: '/x' } });
  t.same(hostLocal.ipam, {
    type: 'host-local',
    ranges: [[{ subnet: '10.244.7.0/24', gateway: '10.244.7.1' }]],
    routes: [{ dst: '10.244.0.0/16', gw: '10.244.7.1' }, { dst: '0.0.0.0/0', gw: '10.244.7.1' }],
    dataDir: '/x',
  }, 'a config naming host-local gets exactly the ranges and routes, as before weft-ipam');
});

const DUAL = GOOD.replace('FLANNEL_MTU', 'FLANNEL_IPV6_NETWORK=2001:db8:10::/56\nFLANNEL_IPV6_SUBNET=2001:db8:10:7::1/64\nFLANNEL_MTU');

t.test('dual-stack subnet.env (flannel\'s FLANNEL_IPV6_* keys): both families read, checked by the same rules', async (t) => {
  const n = parseNodeSubnet(DUAL, 'f');
  t.same(
    { subnet: n.subnet.toString(), v6: n.ipv6 && [n.ipv6.network.toString(), n.ipv6.subnet.toString(), n.ipv6.gateway.toString()] },
    { subnet: '10.244.7.0/24', v6: ['2001:db8:10::/56', '2001:db8:10:7::/64', '2001:db8:10:7::1'] },
  );
  const bad: [string, RegExp][] = [
    [DUAL.replace(/FLANNEL_IPV6_SUBNET=.*\n/, ''), /FLANNEL_IPV6_SUBNET is missing/],
    [DUAL.replace('2001:db8:10:7::1/64', '2001:db8:99::1/64'), /FLANNEL_IPV6_SUBNET 2001:db8:99::\/64 is outside FLANNEL_IPV6_NETWORK/],
    [DUAL.replace('2001:db8:10::/56', '10.9.0.0/16'), /FLANNEL_IPV6_NETWORK 10\.9\.0\.0\/16 is not an IPv6 network/],
    [DUAL.replace('1450', '1000'), /FLANNEL_MTU "1000" is not an MTU between 1280/],
  ];
  t.same(bad.map(([text]) => { try { parseNodeSubnet(text, 'f'); return 'accepted'; } catch (err) { return (err as Error).message; } })
    .map((msg, i) => bad[i]![1].test(msg)), [true, true, true, true], 'a missing key, a subnet outside, a non-IPv6 network and an MTU below IPv6\'s minimum are refused by key');
});

t.test('formatSubnetEnv writes the IPv6 keys where flannel does, and reads back', async (t) => {
  const n = parseNodeSubnet(DUAL, 'f');
  t.equal(formatSubnetEnv(n), DUAL);
});

t.test('bridge delegate config on a dual-stack node: two weft-ipam ranges and routes in both families', async (t) => {
  const conf = bridgeConf({ cniVersion: '1.0.0', name: 'weft' }, parseNodeSubnet(DUAL, 'f'));
  t.same((conf.ipam as Record<string, unknown>), {
    type: 'weft-ipam',
    ranges: [[{ subnet: '10.244.7.0/24', gateway: '10.244.7.1' }], [{ subnet: '2001:db8:10:7::/64', gateway: '2001:db8:10:7::1' }]],
    routes: [
      { dst: '10.244.0.0/16', gw: '10.244.7.1' },
      { dst: '0.0.0.0/0', gw: '10.244.7.1' },
      { dst: '2001:db8:10::/56', gw: '2001:db8:10:7::1' },
      { dst: '::/0', gw: '2001:db8:10:7::1' },
    ],
    networks: ['10.244.0.0/16', '2001:db8:10::/56'],
  });
});

t.test('IPv6-only subnet.env (FLANNEL_IPV6_* keys alone): IPv6 is the primary family, one range', async (t) => {
  const only = 'FLANNEL_IPV6_NETWORK=2001:db8:10::/56\nFLANNEL_IPV6_SUBNET=2001:db8:10:7::1/64\nFLANNEL_MTU=1430\nFLANNEL_IPMASQ=false\n';
  const n = parseNodeSubnet(only, 'f');
  t.same([n.network.toString(), n.subnet.toString(), n.gateway.toString(), n.ipv6], ['2001:db8:10::/56', '2001:db8:10:7::/64', '2001:db8:10:7::1', undefined]);
  t.equal(formatSubnetEnv(n), only, 'written back with the IPv6 keys only, as flannel does');
  t.same((bridgeConf({ cniVersion: '1.0.0', name: 'weft' }, n).ipam as Record<string, unknown>).ranges, [[{ subnet: '2001:db8:10:7::/64', gateway: '2001:db8:10:7::1' }]]);
});

t.test('runCni answers protocol errors without running a delegate', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'wk8-cni-unit-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const subnetFile = join(dir, 'subnet.env');
  writeFileSync(subnetFile, GOOD);
  const conf = (extra: Record<string, unknown> = {}) => JSON.stringify({ cniVersion: '0.4.0', name: 'n', type: 'weft', subnetFile, dataDir: dir, ...extra });
  const env = { CNI_CONTAINERID: 'c1', CNI_NETNS: '/var/run/netns/x', CNI_IFNAME: 'eth0', CNI_PATH: join(dir, 'nothing-here') };
  const call = async (command: string | undefined, stdin: string, extraEnv: Record<string, string> = {}) => {
    const r = await runCni({ env: { ...env, ...extraEnv, CNI_COMMAND: command }, stdin });
    return { ...r, json: JSON.parse(r.stdout) };
  };

  const version = await call('VERSION', '');
  t.equal(version.exitCode, 0);
  t.same(version.json, { cniVersion: '1.1.0', supportedVersions: SUPPORTED_VERSIONS });

  const cases: [string | undefined, string, Record<string, string>, number, RegExp][] = [
    ['ADD', 'not json', {}, 6, /not JSON/],
    ['ADD', '[1,2]', {}, 6, /not a JSON object/],
    ['ADD', conf({ cniVersion: '0.2.0' }), {}, 1, /"0\.2\.0" is not supported/],
    ['ADD', conf({ cniVersion: 4 }), {}, 1, /not a string/],
    ['STATUS', conf(), {}, 4, /unknown CNI_COMMAND "STATUS"/],
    ['GC', conf(), {}, 1, /GC needs cniVersion 1\.1\.0/],
    ['ADD', conf(), { CNI_IFNAME: 'a/b' }, 4, /not a valid interface name/],
    ['ADD', conf(), { CNI_IFNAME: 'waytoolonginterface' }, 4, /not a valid interface name/],
    ['ADD', conf(), { CNI_CONTAINERID: '.hidden' }, 4, /not a valid container id/],
    ['ADD', conf({ subnetFile: 'relative.env' }), {}, 7, /subnetFile" must be an absolute path/],
    ['ADD', conf({ delegate: [] }), {}, 7, /"delegate" must be an object/],
    ['ADD', conf({ delegate: { type: 'macvlan' } }), {}, 2, /delegate\.type/],
    ['ADD', conf(), {}, 100, /"bridge" not found/],
  ];
  for (const [command, stdin, extraEnv, code, msg] of cases) {
    const r = await call(command, stdin, extraEnv);
    t.equal(r.exitCode, 1, `${msg.source}: exit 1`);
    t.match(r.json, { code, msg }, `${msg.source}: code ${code}`);
    t.equal(r.json.cniVersion, stdin.includes('"cniVersion":"0.4.0"') ? '0.4.0' : '1.1.0', 'error in the caller\'s version when it is supported');
  }
});
