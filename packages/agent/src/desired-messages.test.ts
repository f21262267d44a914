import { describe, expect, it } from 'vitest';
import type { DesiredNetwork } from '@floe/api';
import { desiredInstance } from '@floe/testkit';
import { desiredOf } from './desired-messages.js';

describe('desiredOf', () => {
  const vm = desiredInstance();
  const net = { id: 'net_01A' } as DesiredNetwork;

  it('reads a snapshot as the full desired state of the kinds it carries', () => {
    expect(desiredOf({ type: 'snapshot', instances: [vm], networks: [net] })).toEqual({
      state: { instance: [vm], network: [net] },
      update: { full: true },
    });
    // Without networks (an older control plane), the networks stay as they are.
    expect(desiredOf({ type: 'snapshot', instances: [] })).toEqual({ state: { instance: [] }, update: { full: true } });
  });

  it('reads networks as all networks, and an instance as a change of one', () => {
    expect(desiredOf({ type: 'networks', networks: [net] })).toEqual({
      state: { network: [net] },
      update: { full: true },
    });
    expect(desiredOf({ type: 'instance', instance: vm })).toEqual({
      state: { instance: [vm] },
      update: { full: false },
    });
  });

  it('finds no desired state in other messages', () => {
    expect(desiredOf({ type: 'error', code: 'x', message: 'y' })).toBeNull();
    expect(desiredOf({ type: 'welcome', host_id: 'h', host_name: 'n', heartbeat_interval_ms: 1 })).toBeNull();
  });
});
