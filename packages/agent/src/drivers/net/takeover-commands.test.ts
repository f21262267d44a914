import { describe, expect, it } from 'vitest';
import { fieldOf } from './testing.js';
import { FloeError } from '@floe/api';
import { checkNet } from './checked-spec.js';
import { bridgeCommands, toBatch } from './link-commands.js';
import type { NetSpec } from './types.js';
import {
  hostConfig,
  parseIfAddrs,
  parseRoutes,
  releaseCommands,
  routeCommand,
  takeoverCommands,
  type HostAddr,
  type HostRoute,
  type TakeoverObserved,
} from './takeover-commands.js';

const PUB: NetSpec = {
  id: 'net_01JB8X0Q3E6M2T9K4V7W5YB1CB',
  kind: 'public',
  physical: 'eth1',
  vni: 102,
  ipv4: { cidr: '203.0.113.0/24', gateway: '203.0.113.1' },
  ipv6: null,
  mtu: 1500,
  gatewayMode: 'vm',
  dns: false,
  peers: [],
};
const BR = 'flbr079b079bcba';
const MAC = '0c:c4:7a:12:34:56';
const V4: HostAddr = { address: '203.0.113.10', prefix: 24, family: 4 };
const V6: HostAddr = { address: '2001:db8::10', prefix: 64, family: 6 };
const DEF4: HostRoute = {
  family: 4,
  dst: 'default',
  gateway: '203.0.113.1',
  metric: null,
  protocol: null,
  scope: null,
  src: null,
  onlink: false,
};
const DEF6: HostRoute = {
  family: 6,
  dst: 'default',
  gateway: '2001:db8::1',
  metric: 1024,
  protocol: 'static',
  scope: null,
  src: null,
  onlink: false,
};
const STATIC: HostRoute = {
  family: 4,
  dst: '198.51.100.0/24',
  gateway: '203.0.113.1',
  metric: 50,
  protocol: 'static',
  scope: null,
  src: '203.0.113.10',
  onlink: true,
};

/** The host before the takeover: everything on eth1. */
const FRESH: TakeoverObserved = {
  physical: { mac: MAC, master: null },
  bridgeExists: false,
  physAddrs: [V4, V6],
  physRoutes: [DEF4, STATIC, DEF6],
  bridgeAddrs: [],
  bridgeRoutes: [],
  saved: null,
};

describe('takeoverCommands', () => {
  it("moves addresses and routes onto a new bridge with the interface's MAC, removing them from the interface last", () => {
    expect(takeoverCommands(checkNet(PUB), FRESH)).toEqual([
      ['ip', 'link', 'add', BR, 'address', MAC, 'mtu', '1500', 'type', 'bridge'],
      ['ip', 'link', 'set', BR, 'up'],
      ['ip', 'link', 'set', 'eth1', 'master', BR, 'up'],
      ['ip', 'addr', 'replace', '203.0.113.10/24', 'dev', BR],
      ['ip', 'addr', 'replace', '2001:db8::10/64', 'dev', BR, 'nodad'],
      ['ip', 'route', 'replace', '0.0.0.0/0', 'via', '203.0.113.1', 'dev', BR],
      [
        'ip',
        'route',
        'replace',
        '198.51.100.0/24',
        'via',
        '203.0.113.1',
        'dev',
        BR,
        'onlink',
        'proto',
        'static',
        'src',
        '203.0.113.10',
        'metric',
        '50',
      ],
      ['ip', 'route', 'replace', '::/0', 'via', '2001:db8::1', 'dev', BR, 'proto', 'static', 'metric', '1024'],
      ['ip', 'addr', 'del', '203.0.113.10/24', 'dev', 'eth1'],
      ['ip', 'addr', 'del', '2001:db8::10/64', 'dev', 'eth1'],
    ]);
  });

  it('leaves an enslaved interface and what already moved alone', () => {
    const done: TakeoverObserved = {
      ...FRESH,
      physical: { mac: MAC, master: BR },
      bridgeExists: true,
      physAddrs: [],
      physRoutes: [],
      bridgeAddrs: [V4, V6],
      bridgeRoutes: [DEF4, STATIC, DEF6],
    };
    expect(takeoverCommands(checkNet(PUB), done)).toEqual([['ip', 'link', 'set', BR, 'up']]);
  });

  it('finishes a takeover that stopped halfway', () => {
    const half: TakeoverObserved = {
      ...FRESH,
      physical: { mac: MAC, master: BR },
      bridgeExists: true,
      bridgeAddrs: [V4],
      bridgeRoutes: [],
    };
    expect(takeoverCommands(checkNet(PUB), half)).toEqual([
      ['ip', 'link', 'set', BR, 'up'],
      ['ip', 'addr', 'replace', '2001:db8::10/64', 'dev', BR, 'nodad'],
      ['ip', 'route', 'replace', '0.0.0.0/0', 'via', '203.0.113.1', 'dev', BR],
      [
        'ip',
        'route',
        'replace',
        '198.51.100.0/24',
        'via',
        '203.0.113.1',
        'dev',
        BR,
        'onlink',
        'proto',
        'static',
        'src',
        '203.0.113.10',
        'metric',
        '50',
      ],
      ['ip', 'route', 'replace', '::/0', 'via', '2001:db8::1', 'dev', BR, 'proto', 'static', 'metric', '1024'],
      ['ip', 'addr', 'del', '203.0.113.10/24', 'dev', 'eth1'],
      ['ip', 'addr', 'del', '2001:db8::10/64', 'dev', 'eth1'],
    ]);
  });

  it('rebuilds a bridge deleted by hand from the record of the last takeover', () => {
    const gone: TakeoverObserved = {
      ...FRESH,
      physical: { mac: MAC, master: null },
      physAddrs: [],
      physRoutes: [],
      saved: { mac: MAC, addrs: [V4], routes: [DEF4] },
    };
    expect(takeoverCommands(checkNet(PUB), gone)).toEqual([
      ['ip', 'link', 'add', BR, 'address', MAC, 'mtu', '1500', 'type', 'bridge'],
      ['ip', 'link', 'set', BR, 'up'],
      ['ip', 'link', 'set', 'eth1', 'master', BR, 'up'],
      ['ip', 'addr', 'replace', '203.0.113.10/24', 'dev', BR],
      ['ip', 'route', 'replace', '0.0.0.0/0', 'via', '203.0.113.1', 'dev', BR],
    ]);
  });

  it('refuses an interface that is a port of another bridge', () => {
    expect(() => takeoverCommands(checkNet(PUB), { ...FRESH, physical: { mac: MAC, master: 'br0' } })).toThrow(
      /already a port of br0/,
    );
  });
});

describe('releaseCommands', () => {
  it('gives addresses, then routes, back to the interface before releasing it', () => {
    expect(releaseCommands(checkNet(PUB), { mac: MAC, addrs: [V4, V6], routes: [DEF4, DEF6] })).toEqual([
      ['ip', 'addr', 'replace', '203.0.113.10/24', 'dev', 'eth1'],
      ['ip', 'addr', 'replace', '2001:db8::10/64', 'dev', 'eth1', 'nodad'],
      ['ip', 'route', 'replace', '0.0.0.0/0', 'via', '203.0.113.1', 'dev', 'eth1'],
      ['ip', 'route', 'replace', '::/0', 'via', '2001:db8::1', 'dev', 'eth1', 'proto', 'static', 'metric', '1024'],
      ['ip', 'link', 'set', 'eth1', 'nomaster'],
    ]);
  });
});

describe('hostConfig', () => {
  it('takes what is on the interface and the bridge, and the record only when both are empty', () => {
    const saved = { mac: MAC, addrs: [{ ...V4, address: '203.0.113.99' }], routes: [] };
    expect(hostConfig({ ...FRESH, bridgeAddrs: [V4], saved })).toEqual({
      mac: MAC,
      addrs: [V4, V6],
      routes: [DEF4, STATIC, DEF6],
    });
    expect(hostConfig({ ...FRESH, physAddrs: [], physRoutes: [], saved })).toEqual(saved);
  });
});

describe('parsers of ip -j output', () => {
  it('keeps global addresses but SLAAC and temporary IPv6 ones, with MAC and master', () => {
    const json = JSON.stringify([
      {
        ifname: 'eth1',
        address: MAC,
        master: BR,
        addr_info: [
          { family: 'inet', local: '203.0.113.10', prefixlen: 24, scope: 'global' },
          { family: 'inet', local: '203.0.113.77', prefixlen: 24, scope: 'global', dynamic: true },
          { family: 'inet6', local: '2001:db8::10', prefixlen: 64, scope: 'global' },
          {
            family: 'inet6',
            local: '2001:db8::ec4:7aff:fe12:3456',
            prefixlen: 64,
            scope: 'global',
            dynamic: true,
            mngtmpaddr: true,
          },
          {
            family: 'inet6',
            local: '2001:db8::1234:5678:9abc:def0',
            prefixlen: 64,
            scope: 'global',
            dynamic: true,
            temporary: true,
          },
          { family: 'inet6', local: 'fe80::ec4:7aff:fe12:3456', prefixlen: 64, scope: 'link' },
        ],
      },
    ]);
    expect(parseIfAddrs(json)).toEqual({
      mac: MAC,
      master: BR,
      addrs: [V4, { address: '203.0.113.77', prefix: 24, family: 4 }, V6],
    });
    expect(parseIfAddrs('[]')).toBeNull();
  });

  it("keeps routes that are not the kernel's or router advertisements'", () => {
    const v4 = JSON.stringify([
      { dst: 'default', gateway: '203.0.113.1', flags: [] },
      { dst: '203.0.113.0/24', protocol: 'kernel', scope: 'link', prefsrc: '203.0.113.10', flags: [] },
      {
        dst: '198.51.100.0/24',
        gateway: '203.0.113.1',
        protocol: 'static',
        metric: 50,
        prefsrc: '203.0.113.10',
        flags: ['onlink'],
      },
      { type: 'blackhole', dst: '10.0.0.0/8', flags: [] },
      { dst: '192.0.2.7', scope: 'link', flags: [] },
    ]);
    expect(parseRoutes(v4, 4)).toEqual([
      DEF4,
      STATIC,
      {
        family: 4,
        dst: '192.0.2.7/32',
        gateway: null,
        metric: null,
        protocol: null,
        scope: 'link',
        src: null,
        onlink: false,
      },
    ]);
    const v6 = JSON.stringify([
      { dst: '2001:db8::/64', protocol: 'kernel', metric: 256, flags: [], pref: 'medium' },
      { dst: 'fe80::/64', protocol: 'kernel', metric: 256, flags: [], pref: 'medium' },
      { dst: 'default', gateway: 'fe80::1', protocol: 'ra', metric: 1024, flags: [] },
      { dst: 'default', gateway: '2001:db8::1', protocol: 'static', metric: 1024, flags: [], pref: 'medium' },
    ]);
    expect(parseRoutes(v6, 6)).toEqual([DEF6]);
  });

  it('refuses values that do not belong in an ip command', () => {
    expect(() => parseRoutes(JSON.stringify([{ dst: '10.0.0.0/8 dev lo' }]), 4)).toThrow(FloeError);
    expect(() => parseRoutes(JSON.stringify([{ dst: 'default', gateway: '2001:db8::1' }]), 4)).toThrow(/IPv4/);
    expect(fieldOf(() => routeCommand({ ...DEF4, protocol: 'static x' }, BR))).toBe('protocol');
    expect(fieldOf(() => routeCommand(DEF4, 'eth1 x'))).toBe('dev');
  });
});

describe('public networks in checkNet', () => {
  it("needs a physical interface that is not floe's and a router on the LAN", () => {
    expect(checkNet(PUB)).toMatchObject({ bridge: BR, physical: 'eth1' });
    expect(fieldOf(() => checkNet({ ...PUB, physical: undefined }))).toBe('physical');
    expect(fieldOf(() => checkNet({ ...PUB, physical: 'eth1; reboot' }))).toBe('physical');
    expect(fieldOf(() => checkNet({ ...PUB, physical: BR }))).toBe('physical');
    expect(fieldOf(() => checkNet({ ...PUB, gatewayMode: 'host' }))).toBe('gateway_mode');
    expect(fieldOf(() => checkNet({ ...PUB, kind: 'private' }))).toBe('physical');
    expect(fieldOf(() => checkNet({ ...PUB, kind: 'other' as 'public' }))).toBe('kind');
    expect(fieldOf(() => bridgeCommands(PUB, { underlay: '192.0.2.1' }))).toBe('kind');
  });
});

describe('toBatch', () => {
  it('joins ip commands into ip -batch input and refuses anything else', () => {
    expect(
      toBatch([
        ['ip', 'link', 'set', BR, 'up'],
        ['ip', 'route', 'replace', '::/0', 'via', '2001:db8::1', 'dev', BR],
      ]),
    ).toBe(`link set ${BR} up\nroute replace ::/0 via 2001:db8::1 dev ${BR}\n`);
    expect(() => toBatch([['bridge', 'fdb', 'show']])).toThrow(/not an ip command/);
    expect(() => toBatch([['ip', 'link', 'set', 'a b', 'up']])).toThrow(FloeError);
  });
});
