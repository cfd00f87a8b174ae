// The addon's gratuitous ARP (sent when the node starts answering for a lent
// address): its argument checks and its one-line failure; the packet itself
// is seen working in e2e ipam-pinned (a pod that knew the moved pod's MAC).
import t from 'tap';
import { loadNativeAddon } from '../../src/core/native-addon.js';

const { garp } = loadNativeAddon<{ garp(ifname: unknown, ipv4: unknown): void }>('the test');

function errorOf(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    return `${(err as Error).name}: ${(err as Error).message}`;
  }
  return 'no error';
}

t.test('garp refuses bad arguments, and names the interface when sending fails', async (t) => {
  const usage = 'TypeError: garp(ifname, ipv4 address as a 4-byte Buffer)';
  t.same(
    [
      errorOf(() => garp('', Buffer.from([10, 0, 0, 1]))),
      errorOf(() => garp('cni0', Buffer.from([10, 0, 0]))),
      errorOf(() => garp('cni0', '10.0.0.1')),
      errorOf(() => garp('x'.repeat(40), Buffer.from([10, 0, 0, 1]))),
      /^Error: gratuitous ARP on nosuchdev0: /.test(errorOf(() => garp('nosuchdev0', Buffer.from([10, 0, 0, 1])))),
    ],
    [usage, usage, usage, usage, true],
  );
});
