import type { DesiredNic } from '@floe/api';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { networkConfig } from './network-config.js';

const nic = (over: Partial<DesiredNic>): DesiredNic => ({
  id: 'nic_01JB8X0Q3E6M2T9K4V7W5YB1C3',
  network_id: 'net_01JB8X0Q3E6M2T9K4V7W5YB1C3',
  vni: 42,
  index: 0,
  mac: '02:aa:bb:cc:dd:ee',
  ipv4: '10.10.0.2',
  ipv4_prefix: 24,
  ipv6: 'fd12:3456:789a:0:aa:bbff:fecc:ddee',
  ipv6_prefix: 64,
  gateway4: '10.10.0.1',
  gateway6: 'fd12:3456:789a::1',
  mtu: 1450,
  dns_servers: ['10.10.0.1', 'fd12:3456:789a::1'],
  ...over,
});

describe('networkConfig', () => {
  it('has nothing to say without NICs', () => {
    expect(networkConfig([])).toBe(null);
  });

  it('writes static addresses, default routes on the first NIC only, and DNS (golden)', () => {
    const text = networkConfig([
      nic({
        index: 1,
        mac: '02:00:00:00:00:01',
        ipv4: '10.20.0.5',
        ipv6: null,
        ipv6_prefix: null,
        gateway4: '10.20.0.1',
        gateway6: null,
        dns_servers: [],
        mtu: 1500,
      }),
      nic({}),
      nic({
        index: 2,
        mac: '02:00:00:00:00:02',
        ipv4: null,
        ipv4_prefix: null,
        ipv6: null,
        ipv6_prefix: null,
        gateway4: null,
        gateway6: null,
        dns_servers: [],
      }),
    ]);
    expect(text).toBe(
      'version: 2\n' +
        'ethernets:\n' +
        '  eth0:\n' +
        '    match:\n' +
        '      macaddress: "02:aa:bb:cc:dd:ee"\n' +
        '    set-name: eth0\n' +
        '    mtu: 1450\n' +
        '    dhcp4: false\n' +
        '    dhcp6: false\n' +
        '    addresses:\n' +
        '      - "10.10.0.2/24"\n' +
        '      - "fd12:3456:789a:0:aa:bbff:fecc:ddee/64"\n' +
        '    routes:\n' +
        '      - to: "0.0.0.0/0"\n' +
        '        via: "10.10.0.1"\n' +
        '      - to: "::/0"\n' +
        '        via: "fd12:3456:789a::1"\n' +
        '    nameservers:\n' +
        '      addresses:\n' +
        '        - "10.10.0.1"\n' +
        '        - "fd12:3456:789a::1"\n' +
        '  eth1:\n' +
        '    match:\n' +
        '      macaddress: "02:00:00:00:00:01"\n' +
        '    set-name: eth1\n' +
        '    mtu: 1500\n' +
        '    dhcp4: false\n' +
        '    dhcp6: false\n' +
        '    addresses:\n' +
        '      - "10.20.0.5/24"\n' +
        '  eth2:\n' +
        '    match:\n' +
        '      macaddress: "02:00:00:00:00:02"\n' +
        '    set-name: eth2\n' +
        '    mtu: 1450\n' +
        '    dhcp4: false\n' +
        '    dhcp6: false\n',
    );
    // As cloud-init's YAML 1.1 reader takes it: MACs stay strings, the MTU a number.
    const parsed = parse(text!, { version: '1.1' }) as { ethernets: Record<string, Record<string, unknown>> };
    expect(parsed.ethernets.eth1).toEqual({
      match: { macaddress: '02:00:00:00:00:01' },
      'set-name': 'eth1',
      mtu: 1500,
      dhcp4: false,
      dhcp6: false,
      addresses: ['10.20.0.5/24'],
    });
  });

  it('refuses values that would break the YAML', () => {
    expect(() => networkConfig([nic({ mac: '02:aa:bb:cc:dd:ee"\nx: 1' })])).toThrow(/MAC/);
    expect(() => networkConfig([nic({ ipv4: '10.0.0.1\n' })])).toThrow(/IPv4/);
    expect(() => networkConfig([nic({ dns_servers: ['1.1.1.1"'] })])).toThrow(/DNS/);
    expect(() => networkConfig([nic({ gateway6: 'x' })])).toThrow(/gateway/);
  });
});
