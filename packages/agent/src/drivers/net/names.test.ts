import { describe, expect, it } from 'vitest';
import { FloeError } from '@floe/api';
import { checkCidr, checkHostname, checkIfName, checkIp, checkMac, checkNetns } from '../../host/validate.js';
import { eui64Address, inSubnet, ipv4Netmask } from './ip.js';
import { bridgeName, tapName, vxlanName } from './names.js';

function expectInvalid(fn: () => unknown, field: string): void {
  let thrown: unknown;
  try {
    fn();
  } catch (err) {
    thrown = err;
  }
  expect(thrown).toBeInstanceOf(FloeError);
  expect((thrown as FloeError).code).toBe('validation_failed');
  expect((thrown as FloeError).details?.field).toBe(field);
}

describe('interface names', () => {
  it('are deterministic, prefixed and at most 15 characters', () => {
    expect(bridgeName('net_01JB8X0Q3E6M2T9K4V7W5YB1C3')).toBe('flbrad9af9a2ebc');
    expect(vxlanName('net_01JB8X0Q3E6M2T9K4V7W5YB1C3')).toBe('flvxad9af9a2ebc');
    expect(tapName('nic_01JB8X0Q3E6M2T9K4V7W5YB1C4')).toBe('fltp2b9227216a2');
    expect(bridgeName('net_01JB8X0Q3E6M2T9K4V7W5YB1C9')).not.toBe(bridgeName('net_01JB8X0Q3E6M2T9K4V7W5YB1C3'));
    for (const n of [bridgeName('net_a'), vxlanName('net_a'), tapName('nic_a')]) expect(n.length).toBe(15);
  });

  it('refuse ids that are not floe ids', () => {
    expectInvalid(() => bridgeName('../etc'), 'network_id');
    expectInvalid(() => tapName('nic_a b'), 'nic_id');
    expectInvalid(() => vxlanName(''), 'network_id');
  });
});

describe('validators', () => {
  it('accept good values', () => {
    expect(checkIfName('f', 'eth0')).toBe('eth0');
    expect(checkNetns('f', 'floe-t-1a2b')).toBe('floe-t-1a2b');
    expect(checkMac('f', '52:54:00:12:34:56')).toBe('52:54:00:12:34:56');
    expect(checkIp('f', '10.0.0.1', 4)).toBe('10.0.0.1');
    expect(checkIp('f', 'fd00::1')).toBe('fd00::1');
    expect(checkCidr('f', '10.10.0.0/24')).toEqual({ address: '10.10.0.0', prefix: 24, family: 4 });
    expect(checkCidr('f', 'fd00:10::/64', 6)).toEqual({ address: 'fd00:10::', prefix: 64, family: 6 });
    expect(checkHostname('f', 'web-1')).toBe('web-1');
  });

  it('reject what could break ip, nft, dnsmasq or a path', () => {
    expectInvalid(() => checkIfName('f', 'eth0; reboot'), 'f');
    expectInvalid(() => checkIfName('f', 'a'.repeat(16)), 'f');
    expectInvalid(() => checkIfName('f', '-h'), 'f');
    expectInvalid(() => checkNetns('f', '../x'), 'f');
    expectInvalid(() => checkMac('f', '52:54:00:12:34'), 'f');
    expectInvalid(() => checkMac('f', '01:00:5e:00:00:01'), 'f');
    expectInvalid(() => checkMac('f', '52:54:00:12:34:56,x'), 'f');
    expectInvalid(() => checkIp('f', '10.0.0.1', 6), 'f');
    expectInvalid(() => checkIp('f', '10.0.0.1\nx'), 'f');
    expectInvalid(() => checkIp('f', 'fe80::1%eth0'), 'f');
    expectInvalid(() => checkCidr('f', '10.0.0.0'), 'f');
    expectInvalid(() => checkCidr('f', '10.0.0.0/33'), 'f');
    expectInvalid(() => checkCidr('f', '10.0.0.0/31'), 'f');
    expectInvalid(() => checkCidr('f', 'fd00::/64', 4), 'f');
    expectInvalid(() => checkHostname('f', 'Web_1'), 'f');
  });

  it('compute netmasks and SLAAC addresses', () => {
    expect(ipv4Netmask(24)).toBe('255.255.255.0');
    expect(ipv4Netmask(20)).toBe('255.255.240.0');
    expect(ipv4Netmask(8)).toBe('255.0.0.0');
    expect(eui64Address('fd00:10::/64', '52:54:00:12:34:56')).toBe('fd00:10::5054:ff:fe12:3456');
    expect(eui64Address('2001:db8:1:2::/64', '02:00:00:00:00:01')).toBe('2001:db8:1:2:0:ff:fe00:1');
    expectInvalid(() => eui64Address('fd00::/48', '52:54:00:12:34:56'), 'cidr');
    expect(inSubnet('10.10.0.7', '10.10.0.0', 24)).toBe(true);
    expect(inSubnet('10.10.1.7', '10.10.0.0', 24)).toBe(false);
    expect(inSubnet('fd00:10::5', '10.10.0.0', 24)).toBe(false);
    expect(inSubnet('fd00:10::5', 'fd00:10::', 64)).toBe(true);
  });
});
