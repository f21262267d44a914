import type { NetSpec, NicSpec } from '@floe/agent/net';
import { testId } from '../factories.js';

/** A private dual-stack network with a host gateway, fresh ids each call. */
export function privateNet(overrides: Partial<NetSpec> = {}): NetSpec {
  return {
    id: testId('net'),
    vni: 4000 + Math.floor(Math.random() * 1000),
    ipv4: { cidr: '10.77.0.0/24', gateway: '10.77.0.1' },
    ipv6: { cidr: 'fd00:77::/64', gateway: 'fd00:77::1' },
    mtu: 1450,
    gatewayMode: 'host',
    dns: true,
    peers: ['192.0.2.2', '192.0.2.3'],
    ...overrides,
  };
}

/** A NIC on `net`, numbered `n` (its MAC and addresses follow). */
export function nicOn(net: NetSpec, n = 5): NicSpec {
  const hex = n.toString(16).padStart(2, '0');
  return {
    id: testId('nic'),
    instanceId: testId('inst'),
    networkId: net.id,
    mac: `52:54:00:00:00:${hex}`,
    ipv4: net.ipv4 === null ? null : net.ipv4.cidr.replace(/0\/\d+$/, String(n)),
    ipv6: null,
    hostname: `vm-${n}`,
  };
}

/** The `field` of the validation error a promise rejects with. */
export async function rejectedField(p: Promise<unknown>): Promise<unknown> {
  try {
    await p;
  } catch (err) {
    return (err as { code?: string; details?: { field?: unknown } }).code === 'validation_failed'
      ? (err as { details?: { field?: unknown } }).details?.field
      : err;
  }
  throw new Error('expected a validation error');
}
