// The README's BGP examples are real: each net-conf JSON block of its `## BGP`
// section passes weft's net-conf validator, and the BIRD config rendered from
// it for a sample lease set passes the real `bird -p`.
import t from 'tap';
import { checkBackendOptions } from '../../backends/registry.js';
import { readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { birdConfig } from '../../backends/bgp/config.js';
import { parseBgpOptions } from '../../backends/bgp/options.js';
import { pino } from 'pino';
import { NodeFamilies } from '../../backends/peers.js';
import { confNetworks, type NetConf } from '../../src/config/netconf.js';
import { parseNetConf } from '../../src/config/parse.js';
import { Cidr, IP } from '../../src/core/cidr.js';
import type { Lease } from '../../src/subnet/lease.js';
import { birdParse } from './support/bird-parse.js';

const README = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'README.md');
const UNDERLAY = Cidr.parse('192.0.2.0/24');
const UNDERLAY6 = Cidr.parse('2001:db8::/64');

/** The ```json blocks between `## BGP` and the next `## ` heading. */
function bgpExamples(readme: string): string[] {
  const start = readme.indexOf('\n## BGP\n');
  if (start < 0) return [];
  const end = readme.indexOf('\n## ', start + 1);
  const section = readme.slice(start, end < 0 ? undefined : end);
  return [...section.matchAll(/```json\n([\s\S]*?)```/g)].map((m) => m[1]!);
}

/** Three nodes named as the examples name them (node-a, node-b reflect), on the underlay of the ToR example; dual-stack when the example enables IPv6. */
function sampleLeases(conf: NetConf): Lease[] {
  return ['node-a', 'node-b', 'node-c'].map((name, i) => ({
    subnet: conf.network.subnet(conf.subnetLen, BigInt(i + 1)),
    ...(conf.ipv6 ? { ipv6Subnet: conf.ipv6.network.subnet(conf.ipv6.subnetLen, BigInt(i + 1)) } : {}),
    attrs: {
      publicIP: IP.parse(`192.0.2.${11 + i}`),
      ...(conf.ipv6 ? { publicIPv6: IP.parse(`2001:db8::${11 + i}`) } : {}),
      backendType: 'bgp',
      backendData: null,
      nodeName: name,
    },
  }));
}

/** Validates one example and renders node-c's BIRD config (a client where reflectors are used); an error is the reason it fails. */
function renderExample(json: string): string {
  const conf = checkBackendOptions(parseNetConf(json));
  const [own, ...peers] = sampleLeases(conf).reverse();
  const ip = own!.attrs.publicIP;
  const ip6 = own!.attrs.publicIPv6;
  const iface = { name: 'eth0', ip, publicIP: ip, mtu: 1500, connected: [UNDERLAY], ...(ip6 ? { ipv6: { ip: ip6, publicIP: ip6, connected: [UNDERLAY6] } } : {}) };
  const families = new NodeFamilies(pino({ level: 'silent' })).views(own!, peers, iface).map((v) => ({ ...v, network: confNetworks(conf).find((n) => n.family === v.family)! }));
  return birdConfig({
    nodeName: own!.attrs.nodeName!,
    own: own!,
    peers,
    families,
    options: parseBgpOptions(conf.backend.raw, conf),
    controlSocket: '/run/weft/bird/bird.ctl',
  }).text;
}

t.test('every BGP example in the README validates and renders a config BIRD accepts', async (t) => {
  const examples = bgpExamples(await readFile(README, 'utf8'));
  t.equal(examples.length, 3, 'the BGP section has three worked examples (mesh, reflectors, top-of-rack)');
  for (const [i, json] of examples.entries()) {
    let result: { ok: boolean; message: string };
    try {
      result = await birdParse(renderExample(json));
    } catch (err) {
      result = { ok: false, message: String((err as Error).message ?? err) };
    }
    t.ok(result.ok, `example ${i + 1} validates and its BIRD config passes bird -p${result.message ? `: ${result.message}` : ''}`);
  }
});

t.test('the top-of-rack example is dual-stack: an IPv6 session to the router, taking only the IPv6 allowed prefix', async (t) => {
  const examples = bgpExamples(await readFile(README, 'utf8'));
  const text = renderExample(examples[2]!);
  t.same(
    [/neighbor 2001:db8::1 as 65000;/.test(text), /function weft_in_allowed6\(\) \{ return net ~ \[ 2001:db8:ff::\/48\+ \]; \}/.test(text)],
    [true, true],
  );
});
