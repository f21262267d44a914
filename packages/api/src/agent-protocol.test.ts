import { describe, expect, it } from 'vitest';
import {
  AGENT_PROTOCOL_VERSION,
  DESIRED_KINDS,
  decodeAgentMessage,
  decodeControlMessage,
  desiredMessage,
  type AgentMessage,
  type ControlMessage,
  type DesiredInstance,
  type DesiredNetwork,
  type ObservedInstance,
} from './index.js';

const instance: DesiredInstance = {
  id: 'inst_01JB8X0Q3E6M2T9K4V7W5YB1C3',
  name: 'vm-1',
  project: 'default',
  revision: 3,
  spec: {
    image: 'img_01JB8X0Q3E6M2T9K4V7W5YB1C3',
    machine_type: null,
    vcpus: 1,
    memory_mib: 128,
    disk_gib: 1,
    user_data: null,
    vendor_data: null,
    config_drive: true,
    ssh_keys: [],
    power_state: 'running',
    restart_policy: 'on-failure',
  },
  image: { id: 'img_01JB8X0Q3E6M2T9K4V7W5YB1C3', name: 'img', sha256: null, size_bytes: null },
  deleting: false,
  generation: 1,
  restart_generation: 0,
  force_stop: false,
};

const network: DesiredNetwork = {
  id: 'net_01JB8X0Q3E6M2T9K4V7W5YB1C3',
  name: 'lan',
  project: 'default',
  kind: 'private',
  vni: 100,
  mtu: 1450,
  ipv4: '10.0.0.0/24',
  ipv6: null,
  gateway: 'host',
  gateway4: '10.0.0.1',
  gateway6: null,
  host_ipv4: '10.0.0.1',
  host_ipv6: null,
  dns: true,
  uplink: null,
  peers: ['192.0.2.1'],
  leases: [],
};

const observed: ObservedInstance = {
  id: instance.id,
  state: 'running',
  observed_revision: 3,
  observed_generation: 1,
  observed_restart_generation: 0,
  reason: null,
  accelerator: 'fake',
  started_at: '2026-01-01T00:00:00.000Z',
  stopped_at: null,
  first_boot: { source: 'metadata' },
};

const json = (v: unknown): string => JSON.stringify(v);

describe('agent messages', () => {
  it('passes every well-formed message through unchanged', () => {
    const messages: AgentMessage[] = [
      {
        type: 'hello',
        protocol: AGENT_PROTOCOL_VERSION,
        facts: {
          hostname: 'h',
          agent_version: '0.1.0',
          arch: 'x86_64',
          kernel: '6.1',
          cpus: 2,
          memory_mib: 1024,
          disk_free_gib: 3.5,
          qemu_version: null,
          kvm: { present: false, usable: false, detail: 'none' },
          accelerator: 'none',
          wireguard_kernel: false,
          vm_driver: 'fake',
        },
        instances: [observed],
      },
      { type: 'heartbeat', time: '2026-01-01T00:00:00.000Z' },
      { type: 'status', instance: { ...observed, state: 'deleted' } },
      { type: 'event', instance_id: instance.id, event: 'restarted', message: 'x', data: { attempt: 2 } },
      { type: 'channel.data', channel: 'ch1', data: '' },
      { type: 'channel.closed', channel: 'ch1', error: { code: 'invalid_state', message: 'not running' } },
      { type: 'stats', request_id: 'rq1', instance_id: instance.id, error: { code: 'x', message: 'y' } },
      {
        type: 'vpn.stats',
        request_id: 'rq2',
        vpn_network_id: 'vnet_1',
        peers: [
          {
            public_key: `${'A'.repeat(43)}=`,
            endpoint: '198.51.100.7:40001',
            latest_handshake: 1764000000,
            rx_bytes: 1240,
            tx_bytes: 980,
          },
        ],
      },
      { type: 'vpn.stats', request_id: 'rq3', vpn_network_id: 'vnet_1', error: { code: 'x', message: 'y' } },
    ];
    for (const m of messages) expect(decodeAgentMessage(json(m))).toEqual({ ok: true, value: m });
  });

  it('names the field that is wrong, and the message type', () => {
    expect(decodeAgentMessage(json({ type: 'status', instance: { ...observed, state: 'flying' } }))).toMatchObject({
      ok: false,
      type: 'status',
      error: expect.stringContaining('/instance/state') as string,
    });
    expect(decodeAgentMessage(json({ type: 'channel.data', channel: 7, data: 'aGk=' }))).toMatchObject({
      ok: false,
      type: 'channel.data',
      error: expect.stringContaining('/channel: must be string') as string,
    });
    const peer = { public_key: `${'A'.repeat(43)}=`, endpoint: null, latest_handshake: 0, rx_bytes: 0, tx_bytes: 0 };
    for (const [bad, field] of [
      [{ ...peer, rx_bytes: -1 }, '/peers/0/rx_bytes'],
      [{ ...peer, latest_handshake: 1.5 }, '/peers/0/latest_handshake'],
      [{ ...peer, public_key: 'x; reboot' }, '/peers/0/public_key'],
    ] as const)
      expect(
        decodeAgentMessage(json({ type: 'vpn.stats', request_id: 'r', vpn_network_id: 'v', peers: [bad] })),
      ).toMatchObject({ ok: false, type: 'vpn.stats', error: expect.stringContaining(field) as string });
    expect(decodeAgentMessage(json({ type: 'heartbeat' }))).toMatchObject({
      ok: false,
      error: expect.stringContaining('time') as string,
    });
  });

  it('refuses what is not a message of the protocol', () => {
    expect(decodeAgentMessage('{"type":')).toEqual({ ok: false, type: null, error: 'not JSON' });
    expect(decodeAgentMessage('[1]')).toEqual({ ok: false, type: null, error: 'not a JSON object' });
    expect(decodeAgentMessage('{}')).toEqual({ ok: false, type: null, error: '/type: must be a string' });
    // A control-plane message type is not an agent message.
    expect(decodeAgentMessage(json({ type: 'stats.get', request_id: 'r', instance_id: 'i' }))).toEqual({
      ok: false,
      type: 'stats.get',
      error: '/type: unknown message type "stats.get"',
    });
  });

  it('lets unknown extra fields through (a newer peer may add optional ones)', () => {
    expect(decodeAgentMessage(json({ type: 'heartbeat', time: 't', load: 3 })).ok).toBe(true);
  });
});

describe('control messages', () => {
  it('passes snapshots, changes of every kind and channel requests', () => {
    const messages: ControlMessage[] = [
      { type: 'welcome', host_id: 'host_1', host_name: 'a', heartbeat_interval_ms: 1000 },
      { type: 'snapshot', desired: { instance: [instance], network: [network] } },
      { type: 'snapshot', desired: { instance: [] } },
      desiredMessage('instance', [{ ...instance, deleting: true }], false),
      desiredMessage('network', [network], true),
      { type: 'console.open', channel: 'ch1', instance_id: instance.id },
      { type: 'logs.open', channel: 'ch2', instance_id: instance.id, tail_bytes: 100, follow: true },
      { type: 'channel.close', channel: 'ch1' },
      { type: 'stats.get', request_id: 'rq1', instance_id: instance.id },
      { type: 'vpn.stats.get', request_id: 'rq2', vpn_network_id: 'vnet_1' },
    ];
    for (const m of messages) expect(decodeControlMessage(json(m))).toEqual({ ok: true, value: m });
  });

  it('checks the items of a change against the schema of their kind', () => {
    expect(decodeControlMessage(json(desiredMessage('network', [instance as never], true)))).toMatchObject({
      ok: false,
      type: 'desired',
      error: expect.stringContaining('/items/0') as string,
    });
    expect(decodeControlMessage(json({ type: 'desired', kind: 'volume', items: [], full: true }))).toEqual({
      ok: false,
      type: 'desired',
      error: '/kind: unknown kind "volume"',
    });
    expect(
      decodeControlMessage(json({ type: 'snapshot', desired: { instance: [{ ...instance, revision: 'x' }] } })),
    ).toMatchObject({ ok: false, error: expect.stringContaining('/desired/instance/0/revision') as string });
  });

  it('refuses channel requests without what they name', () => {
    expect(decodeControlMessage(json({ type: 'console.open', channel: 'ch1' }))).toMatchObject({
      ok: false,
      type: 'console.open',
      error: expect.stringContaining('instance_id') as string,
    });
    expect(decodeControlMessage(json({ type: 'channel.close', channel: '../../x y' }))).toMatchObject({
      ok: false,
      error: expect.stringContaining('/channel') as string,
    });
  });

  it('has a message schema for every kind', () => {
    expect(DESIRED_KINDS).toEqual(['instance', 'network', 'security_group', 'vpn']);
    for (const kind of DESIRED_KINDS)
      expect(decodeControlMessage(json({ type: 'desired', kind, items: [], full: true })).ok).toBe(true);
  });
});
