import { describe, expect, it } from 'vitest';
import {
  dhcpDriverContract,
  firewallDriverContract,
  networkDriverContract,
  rateLimitDriverContract,
} from '@floe/testkit/net-contracts';
import { FakeDhcpDriver, FakeFirewall, FakeHost, FakeNetworkDriver } from './fake.js';
import { FakeHostNetwork } from './fake-host-network.js';
import { FakeRateLimiter } from './fake-rate-limit.js';
import { bridgeName, tapName } from './names.js';
import { NET, NIC } from './spec.fixtures.js';
import type { NetSpec } from './types.js';

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

rateLimitDriverContract('fake', () => {
  const host = new FakeHost();
  return Promise.resolve({
    driver: new FakeRateLimiter(host),
    makeTap: (nicId) => Promise.resolve(void host.run(['ip', 'tuntap', 'add', 'dev', tapName(nicId), 'mode', 'tap'])),
    deleteTap: (nicId) => Promise.resolve(void host.deleteLink(tapName(nicId))),
    hasLink: (name) => Promise.resolve(host.links.has(name)),
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

describe('FakeHostNetwork', () => {
  const PUB: NetSpec = {
    ...NET,
    id: 'net_01JB8X0Q3E6M2T9K4V7W5YB1D0',
    kind: 'public',
    physical: 'eth1',
    gatewayMode: 'none',
    peers: [],
    ipv4: { cidr: '192.0.2.0/24', gateway: null },
    ipv6: null,
    natInterface: undefined,
  };

  it('answers the default route lookup, through the bridge that took its interface over', async () => {
    const host = new FakeHost();
    host.addInterface('eth1', { mac: '52:54:00:aa:bb:03', addrs: ['192.0.2.10/24'] });
    const fake = new FakeHostNetwork({
      stateDir: '/var/lib/floe-agent',
      underlay: '192.0.2.1',
      defaultRoute: 'eth1',
      host,
    });
    const route = async () => JSON.parse((await fake.exec(['ip', '-j', 'route', 'show', 'default'])).stdout) as unknown;
    expect(await route()).toEqual([{ dst: 'default', dev: 'eth1' }]);
    await fake.ensureNetwork(PUB);
    expect(await route()).toEqual([{ dst: 'default', dev: bridgeName(PUB.id) }]);
    await fake.removeNetwork(PUB.id);
    expect(await route()).toEqual([{ dst: 'default', dev: 'eth1' }]);
    await expect(fake.exec(['ip', 'link', 'show'])).rejects.toThrow(/runs no/);
    expect((await fake.exec(['ip', 'link', 'show'], { allowFail: true })).code).toBe(1);
  });

  it("stops a network's DHCP server when its bridge is rebuilt or removed", async () => {
    const fake = new FakeHostNetwork({ stateDir: '/var/lib/floe-agent', underlay: '192.0.2.1', defaultRoute: 'eth0' });
    await fake.ensureNetwork(NET);
    const first = await fake.ensureDhcp(NET, [NIC]);
    fake.host.deleteLink(bridgeName(NET.id));
    await fake.ensureNetwork(NET, [NIC]);
    expect(await fake.dhcpPid(NET.id)).toBeNull();
    const again = await fake.ensureDhcp(NET, [NIC]);
    expect(again.started).toBe(true);
    expect(again.pid).not.toBe(first.pid);
    await fake.removeNetwork(NET.id);
    expect(await fake.dhcpPid(NET.id)).toBeNull();
    expect(fake.host.links.has(bridgeName(NET.id))).toBe(false);
  });
});
