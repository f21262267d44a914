import { describe, expect, it } from 'vitest';
import type { DesiredNetwork } from '@floe/api';
import { desiredInstance } from '@floe/testkit';
import { desiredOf } from './desired-messages.js';

describe('desiredOf', () => {
  const vm = desiredInstance();
  const net = { id: 'net_01A' } as DesiredNetwork;

  it('reads a snapshot as the full desired state of the kinds it carries', () => {
    expect(desiredOf({ type: 'snapshot', desired: { instance: [vm], network: [net] } })).toEqual({
      state: { instance: [vm], network: [net] },
      update: { full: true },
    });
    // Without networks (a control plane that does not manage them), the networks stay as they are.
    expect(desiredOf({ type: 'snapshot', desired: { instance: [] } })).toEqual({
      state: { instance: [] },
      update: { full: true },
    });
  });

  it('reads a full change as all of its kind, and an upsert as a change of the items it carries', () => {
    expect(desiredOf({ type: 'desired', kind: 'network', items: [net], full: true })).toEqual({
      state: { network: [net] },
      update: { full: true },
    });
    expect(desiredOf({ type: 'desired', kind: 'instance', items: [vm], full: false })).toEqual({
      state: { instance: [vm] },
      update: { full: false },
    });
  });

  it('finds no desired state in other messages', () => {
    expect(desiredOf({ type: 'error', code: 'x', message: 'y' })).toBeNull();
    expect(desiredOf({ type: 'welcome', host_id: 'h', host_name: 'n', heartbeat_interval_ms: 1 })).toBeNull();
  });
});
