import { describe, expect, it } from 'vitest';
import { dhcpDriverContract, firewallDriverContract, networkDriverContract } from '@floe/testkit/net-contracts';
import { FakeDhcpDriver, FakeFirewall, FakeHost, FakeNetworkDriver } from './fake.js';
import { NET } from './spec.fixtures.js';

/** The chain names of one table in a ruleset of ruleset.ts. */
function chainsOf(ruleset: string | null, table: string): string[] {
  const body = ruleset?.split(`table ${table} {\n`)[1]?.split('\n}\n')[0] ?? '';
  return [...body.matchAll(/^\tchain (\S+) \{$/gm)].map((m) => m[1]!);
}

networkDriverContract('fake', () => {
  const host = new FakeHost();
  host.addInterface('eth0', { mac: '52:54:00:aa:bb:01', addrs: ['198.51.100.1/24'] });
  host.addInterface('phys0', { mac: '52:54:00:aa:bb:02', addrs: ['192.0.2.10/24', 'fe80::1/64'] });
  const driver = new FakeNetworkDriver(host, { underlay: '192.0.2.1' });
  return Promise.resolve({
    driver,
    underlay: '192.0.2.1',
    natInterface: 'eth0',
    physical: { name: 'phys0', addrs: ['192.0.2.10/24'] },
    probe: {
      link: (name) => {
        const l = host.links.get(name);
        return Promise.resolve(l === undefined ? null : { ...l, addrs: [...l.addrs] });
      },
      floods: (vx) => Promise.resolve([...(host.links.get(vx)?.floods ?? [])]),
      sysctl: (key) => Promise.resolve(host.sysctls.get(key) ?? '0'),
      deleteLink: (name) => Promise.resolve(void host.deleteLink(name)),
    },
    cleanup: () => Promise.resolve(),
  });
});

dhcpDriverContract('fake', () => {
  const host = new FakeHost();
  const network = new FakeNetworkDriver(host, { underlay: '192.0.2.1' });
  return Promise.resolve({
    driver: new FakeDhcpDriver(host, '/var/lib/floe-agent'),
    prepare: async (net) => void (await network.ensureNetwork(net)),
    kill: (netId) => Promise.resolve(void host.dnsmasq.delete(netId)),
    cleanup: () => Promise.resolve(),
  });
});

firewallDriverContract('fake', () => {
  const host = new FakeHost();
  return Promise.resolve({
    driver: new FakeFirewall(host),
    chains: (table) => Promise.resolve(chainsOf(host.ruleset, table)),
    cleanup: () => Promise.resolve(),
  });
});

describe('FakeHost', () => {
  it('applies the commands of the builders and refuses what ip would refuse', async () => {
    const host = new FakeHost();
    const driver = new FakeNetworkDriver(host, { underlay: '192.0.2.1' });
    await driver.ensureNetwork(NET);
    const ran = host.commands.length;
    await driver.ensureNetwork(NET);
    // An unchanged host gets no commands at all, as from the Linux driver.
    expect(host.commands).toHaveLength(ran);
    expect(() => host.run(['ip', 'link', 'add', 'eth9', 'type', 'bridge'])).not.toThrow();
    expect(() => host.run(['ip', 'link', 'add', 'eth9', 'type', 'bridge'])).toThrow(/exists/);
    expect(() => host.run(['ip', 'link', 'set', 'nope', 'up'])).toThrow(/Cannot find device/);
  });
});
