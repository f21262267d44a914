import { afterEach, describe, expect, it } from 'vitest';
import type { DesiredInstance, DesiredNetwork } from '@floe/api';
import { desiredInstance } from '@floe/testkit';
import { gatewayMac } from '../drivers/net/checked-spec.js';
import { ReconcilerRegistry } from '../kinds.js';
import { MetadataService } from './service.js';

const NET = 'net_01JB8X0Q3E6M2T9K4V7W5YB1C3';

function withNic(nicId: string): DesiredInstance {
  return {
    ...desiredInstance(),
    nics: [{ id: nicId, index: 0, mac: '52:54:00:12:34:56', network_id: NET, ipv4: null, ipv6: null }],
  } as DesiredInstance;
}

const network = (kind: 'public' | 'private') => ({ id: NET, kind }) as DesiredNetwork;

const services: MetadataService[] = [];
afterEach(async () => {
  for (const s of services.splice(0)) await s.stop();
});

// The metadata service through the registry, as the agent drives it; its rulesets recorded instead of applied.
function setup() {
  const rulesets: string[] = [];
  const service = new MetadataService({
    exec: (_argv, o) => {
      rulesets.push(String(o?.input ?? ''));
      return Promise.resolve({ code: 0, stdout: '', stderr: '' });
    },
    host: '127.0.0.1',
    ports: { first: 47100, last: 47199 },
    resyncIntervalMs: 3_600_000,
  });
  services.push(service);
  const registry = new ReconcilerRegistry();
  registry.register(service);
  return { service, registry, rulesets };
}

describe('MetadataService as a reconciler', () => {
  it('follows the instances and networks the registry hands out, in one pass for one message', async () => {
    const { service, registry, rulesets } = setup();
    const vm = withNic('nic_01JB8X0Q3E6M2T9K4V7W5YB1C3');
    registry.apply({ instance: [vm], network: [network('private')] }, { full: true });
    await registry.whenIdle();
    expect(rulesets).toHaveLength(1);
    expect([...service.listening().keys()]).toEqual(['nic_01JB8X0Q3E6M2T9K4V7W5YB1C3']);
    // On a private network, requests are re-addressed to the bridge's own MAC.
    expect(rulesets[0]).toContain(gatewayMac(NET));

    // A change of one network: now public, the requests keep their MAC.
    registry.setDesired('network', [network('public')], { full: false });
    await registry.whenIdle();
    expect(rulesets).toHaveLength(2);
    expect(rulesets[1]).not.toContain(gatewayMac(NET));

    // The instance being deleted loses its listener.
    registry.setDesired('instance', [{ ...vm, deleting: true }], { full: false });
    await registry.whenIdle();
    expect(service.listening().size).toBe(0);
  });
});
