import { describe, expect, it } from 'vitest';
import {
  addressCommands,
  checkSpec,
  createCommand,
  dumpCommand,
  nftScript,
  parseDump,
  peerCommand,
  routeCommands,
  setKeyCommand,
  vpnIfName,
  vpnRuleset,
  wantedRoutes,
} from './commands.js';
import type { VpnInterfaceSpec } from './types.js';

// Golden tests of every command and file the VPN area builds.

const K1 = 'YAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk=';
const K2 = 'xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=';
const K3 = 'TrMvSoP4jYQlY6RIzBgbssQqY3vxI2Pi+y71lOWWXX0=';
const PRIV = 'oK56DE9Ue9zK76rAc8pBl6opph+1v36lm7cXXsQKrQM=';

const spec: VpnInterfaceSpec = {
  name: vpnIfName('vnet_01ABC'),
  listenPort: 51820,
  privateKey: PRIV,
  addresses: ['fd50::1/48', '10.250.0.1/24'],
  reach: ['fd50::/48', '10.250.0.0/24', 'fd31::/64', '10.31.0.0/24', '192.168.77.0/24'],
  peers: [
    { publicKey: K1, allowedIps: ['fd50::2/128', '10.250.0.2/32'] },
    { publicKey: K2, allowedIps: ['fd50::3/128', '10.250.0.3/32', '192.168.77.0/24'] },
  ],
};

describe('VPN commands', () => {
  it('names interfaces fv + 11 hex of the id, and checks ids', () => {
    expect(vpnIfName('vnet_01ABC')).toMatch(/^fv[0-9a-f]{11}$/);
    expect(vpnIfName('vnet_01ABC')).toBe(vpnIfName('vnet_01ABC'));
    expect(vpnIfName('vnet_01ABC')).not.toBe(vpnIfName('vnet_01ABD'));
    expect(() => vpnIfName('a b')).toThrow(/malformed/);
  });

  it('creates interfaces in the kernel or with wireguard-go, and sets the key from a file', () => {
    expect(createCommand('kernel', 'fv0123456789a')).toEqual([
      'ip',
      'link',
      'add',
      'fv0123456789a',
      'type',
      'wireguard',
    ]);
    expect(createCommand('wireguard-go', 'fv0123456789a')).toEqual(['wireguard-go', 'fv0123456789a']);
    expect(setKeyCommand('fv0123456789a', 51821, '/tmp/floe-wg-x/key')).toEqual([
      'wg',
      'set',
      'fv0123456789a',
      'listen-port',
      '51821',
      'private-key',
      '/tmp/floe-wg-x/key',
    ]);
    expect(dumpCommand('fv0123456789a')).toEqual(['wg', 'show', 'fv0123456789a', 'dump']);
  });

  it('parses wg show dump without keeping the private key', () => {
    const dump = [
      `${PRIV}\t${K3}\t51820\toff`,
      `${K1}\t(none)\t198.51.100.11:40001\tfd50::2/128,10.250.0.2/32\t1764000000\t1240\t980\t25`,
      `${K2}\t(none)\t(none)\t(none)\t0\t0\t0\toff`,
      '',
    ].join('\n');
    const o = parseDump(dump);
    expect(o).toEqual({
      publicKey: K3,
      listenPort: 51820,
      peers: [
        {
          publicKey: K1,
          endpoint: '198.51.100.11:40001',
          allowedIps: ['fd50::2/128', '10.250.0.2/32'],
          latestHandshake: 1764000000,
          rxBytes: 1240,
          txBytes: 980,
        },
        { publicKey: K2, endpoint: null, allowedIps: [], latestHandshake: 0, rxBytes: 0, txBytes: 0 },
      ],
    });
    expect(JSON.stringify(o)).not.toContain(PRIV);
  });

  it('changes peers in one wg set: removes what went, adds what came, leaves unchanged peers alone', () => {
    const observed = parseDump(
      [
        `${PRIV}\t${K3}\t51820\toff`,
        `${K1}\t(none)\t(none)\t10.250.0.2/32,fd50::2/128\t0\t0\t0\toff`,
        `${K3}\t(none)\t(none)\tfd50::9/128\t0\t0\t0\toff`,
      ].join('\n'),
    );
    expect(peerCommand(spec.name, observed, spec)).toEqual([
      'wg',
      'set',
      spec.name,
      'peer',
      K3,
      'remove',
      'peer',
      K2,
      'allowed-ips',
      'fd50::3/128,10.250.0.3/32,192.168.77.0/24',
    ]);
    const same = parseDump(
      [
        `${PRIV}\t${K3}\t51820\toff`,
        ...spec.peers.map((p) => `${p.publicKey}\t(none)\t(none)\t${p.allowedIps.join(',')}\t0\t0\t0\toff`),
      ].join('\n'),
    );
    expect(peerCommand(spec.name, same, spec)).toBeNull();
    // A site-to-site peer the gateway dials gets its endpoint until wg has one.
    const dialing = { ...spec, peers: [spec.peers[0]!, { ...spec.peers[1]!, endpoint: '203.0.113.2:51820' }] };
    expect(peerCommand(spec.name, same, dialing)).toEqual([
      'wg',
      'set',
      spec.name,
      'peer',
      K2,
      'allowed-ips',
      'fd50::3/128,10.250.0.3/32,192.168.77.0/24',
      'endpoint',
      '203.0.113.2:51820',
      'persistent-keepalive',
      '25',
    ]);
    expect(() => checkSpec({ ...dialing, peers: [{ ...spec.peers[1]!, endpoint: '-o x' }] })).toThrow(/host:port/);
  });

  it('adds and removes addresses and the routes of site-to-site subnets', () => {
    expect(addressCommands('fvx', ['10.250.0.1/24', '10.9.9.9/32'], spec.addresses)).toEqual([
      ['ip', 'address', 'add', 'fd50::1/48', 'dev', 'fvx'],
      ['ip', 'address', 'del', '10.9.9.9/32', 'dev', 'fvx'],
    ]);
    expect(wantedRoutes(spec)).toEqual(['192.168.77.0/24']);
    expect(routeCommands('fvx', ['fd99::/64'], ['192.168.77.0/24', 'fd77::/64'])).toEqual([
      ['ip', 'route', 'replace', '192.168.77.0/24', 'dev', 'fvx', 'proto', 'static'],
      ['ip', '-6', 'route', 'replace', 'fd77::/64', 'dev', 'fvx', 'proto', 'static'],
      ['ip', '-6', 'route', 'del', 'fd99::/64', 'dev', 'fvx'],
    ]);
  });

  it('refuses names, keys and prefixes that must not reach a command', () => {
    expect(checkSpec(spec)).toBe(spec);
    expect(() => checkSpec({ ...spec, name: 'eth0' })).toThrow(/not a floe VPN interface/);
    expect(() => checkSpec({ ...spec, listenPort: 0 })).toThrow(/listen port/);
    expect(() => checkSpec({ ...spec, privateKey: '-x' })).toThrow(/private key/);
    expect(() => checkSpec({ ...spec, peers: [{ publicKey: K1, allowedIps: ['10.0.0.0/33'] }] })).toThrow(/CIDR/);
    expect(() => checkSpec({ ...spec, reach: ['10.0.0.0/8; drop'] })).toThrow(/CIDR/);
  });

  it('builds the filter: each interface to its own reach, the host pingable only', () => {
    const other: VpnInterfaceSpec = {
      ...spec,
      name: 'fv00000000000',
      addresses: ['fd50:0:1::1/48'],
      reach: ['fd50:0:1::/48', '10.32.0.0/24'],
      peers: [],
    };
    const n = spec.name;
    expect(vpnRuleset([spec, other])).toBe(`table inet floe_vpn {
\tchain forward {
\t\ttype filter hook forward priority -10; policy accept;
\t\tiifname "fv00000000000" jump from_fv00000000000
\t\toifname "fv00000000000" jump to_fv00000000000
\t\tiifname "${n}" jump from_${n}
\t\toifname "${n}" jump to_${n}
\t}
\tchain input {
\t\ttype filter hook input priority -10; policy accept;
\t\tiifname "fv00000000000" ct state established,related accept
\t\tiifname "fv00000000000" meta l4proto { icmp, ipv6-icmp } accept
\t\tiifname "fv00000000000" drop
\t\tiifname "${n}" ct state established,related accept
\t\tiifname "${n}" meta l4proto { icmp, ipv6-icmp } accept
\t\tiifname "${n}" drop
\t}
\tchain from_fv00000000000 {
\t\tct state established,related accept
\t\tip6 daddr { fd50:0:1::/48 } accept
\t\tip daddr { 10.32.0.0/24 } accept
\t\tdrop
\t}
\tchain to_fv00000000000 {
\t\tct state established,related accept
\t\tip6 saddr { fd50:0:1::/48 } accept
\t\tip saddr { 10.32.0.0/24 } accept
\t\tdrop
\t}
\tchain from_${n} {
\t\tct state established,related accept
\t\tip6 daddr { fd50::/48, fd31::/64 } accept
\t\tip daddr { 10.250.0.0/24, 10.31.0.0/24, 192.168.77.0/24 } accept
\t\tdrop
\t}
\tchain to_${n} {
\t\tct state established,related accept
\t\tip6 saddr { fd50::/48, fd31::/64 } accept
\t\tip saddr { 10.250.0.0/24, 10.31.0.0/24, 192.168.77.0/24 } accept
\t\tdrop
\t}
}
`);
    expect(nftScript([])).toBe('table inet floe_vpn\ndelete table inet floe_vpn\n');
    expect(
      nftScript([spec]).startsWith('table inet floe_vpn\ndelete table inet floe_vpn\ntable inet floe_vpn {\n'),
    ).toBe(true);
  });
});
