import type { Nic, NicPatch, SecurityGroup, SgRuleCreate } from '@floe/api';
import type { FloeClient } from '@floe/client';
import { describe, expect, it } from 'vitest';
import { runWithClient } from '../testing.js';
import { ruleBody } from './security-group.js';

const T = '2026-01-01T00:00:00.000Z';
const WEB: SecurityGroup = {
  id: 'sg_01JB8X0Q3E6M2T9K4V7W5YB1D1',
  name: 'web',
  project: 'default',
  labels: {},
  metadata: {},
  revision: 2,
  created_at: T,
  updated_at: T,
  description: 'front ends',
  spec: {
    ingress_default: 'deny',
    egress_default: 'allow',
    rules: [
      {
        id: 'r1a2b3c4d5e',
        direction: 'ingress',
        protocol: 'tcp',
        port_min: 22,
        port_max: 22,
        remote_cidr: null,
        remote_group: 'sg_01JB8X0Q3E6M2T9K4V7W5YB1D2',
        description: 'ssh from admins',
      },
      {
        id: 'r00000000001',
        direction: 'ingress',
        protocol: 'tcp',
        port_min: 8000,
        port_max: 8100,
        remote_cidr: '192.0.2.0/24',
        remote_group: null,
        description: '',
      },
    ],
  },
  status: { nics: 3 },
};
const NIC: Nic = {
  id: 'nic_01JB8X0Q3E6M2T9K4V7W5YB1D4',
  instance: 'inst_01JB8X0Q3E6M2T9K4V7W5YB1D5',
  network: 'net_01JB8X0Q3E6M2T9K4V7W5YB1D6',
  network_name: 'lan',
  index: 0,
  mac: '52:54:00:00:00:01',
  ipv4: '10.10.0.5',
  ipv6: null,
  security_groups: ['default'],
  filtering: true,
  rate_limit: null,
  created_at: T,
};

function fake() {
  const rules: Array<{ id: string; rule: SgRuleCreate }> = [];
  const patches: Array<{ nic: string; patch: NicPatch }> = [];
  const client = {
    close: () => undefined,
    securityGroups: {
      list: () => Promise.resolve({ items: [WEB], next_cursor: null }),
      get: (id: string) =>
        id === WEB.id || id === 'web' ? Promise.resolve(WEB) : Promise.resolve({ ...WEB, id, name: 'admins' }),
      addRule: (id: string, rule: SgRuleCreate) => {
        rules.push({ id, rule });
        return Promise.resolve(WEB);
      },
    },
    instances: {
      nics: () => Promise.resolve([NIC, { ...NIC, id: 'nic_01JB8X0Q3E6M2T9K4V7W5YB1D7', index: 1 }]),
      updateNic: (_id: string, nic: string, patch: NicPatch) => {
        patches.push({ nic, patch });
        return Promise.resolve({
          nic: {
            ...NIC,
            id: nic,
            security_groups: patch.security_groups ?? NIC.security_groups,
            filtering: patch.filtering ?? true,
          },
          operation: { id: 'op_1', status: 'succeeded' },
        });
      },
    },
  } as unknown as FloeClient;
  return { client, rules, patches };
}

describe('floe sg', () => {
  it('lists groups and shows one with its rules, remote groups by name', async () => {
    const { client } = fake();
    const ls = await runWithClient(['sg', 'ls'], client);
    expect(ls.code, ls.err).toBe(0);
    expect(ls.out).toMatch(/web\s+deny\s+allow\s+2\s+3\s+front ends/);
    const show = await runWithClient(['sg', 'show', 'web'], client);
    expect(show.code, show.err).toBe(0);
    expect(show.out).toMatch(/r1a2b3c4d5e\s+ingress\s+tcp\s+22\s+group admins\s+ssh from admins/);
    expect(show.out).toMatch(/r00000000001\s+ingress\s+tcp\s+8000-8100\s+192\.0\.2\.0\/24/);
  });

  it('adds rules from flags and refuses flags that do not go together', async () => {
    const { client, rules } = fake();
    const run = await runWithClient(['sg', 'rule', 'add', 'web', '--port', '22', '--group', 'admins'], client);
    expect(run.code, run.err).toBe(0);
    expect(rules).toEqual([
      { id: 'web', rule: { direction: 'ingress', protocol: 'tcp', port: '22', remote_group: 'admins' } },
    ]);
    expect(ruleBody({ egress: true, protocol: 'udp', port: '53', to: '10.0.0.0/8' })).toEqual({
      direction: 'egress',
      protocol: 'udp',
      port: '53',
      remote_cidr: '10.0.0.0/8',
    });
    const bad = await runWithClient(['sg', 'rule', 'add', 'web', '--protocol', 'icmp', '--port', '22'], client);
    expect(bad.code).toBe(2);
    expect(bad.err).toContain('--port goes with --protocol tcp or udp');
    expect((await runWithClient(['sg', 'rule', 'add', 'web', '--to', '10.0.0.0/8'], client)).err).toContain('--egress');
    expect(() => ruleBody({ from: '10.0.0.0/8', group: 'x' })).toThrow(/not both/);
  });
});

describe('floe vm update', () => {
  it("sets the groups of every NIC, or one NIC's filtering", async () => {
    const { client, patches } = fake();
    const run = await runWithClient(
      ['vm', 'update', 'web-1', '--security-group', 'web', '--security-group', 'default'],
      client,
    );
    expect(run.code, run.err).toBe(0);
    expect(patches.map((p) => p.patch)).toEqual([
      { security_groups: ['web', 'default'] },
      { security_groups: ['web', 'default'] },
    ]);
    expect(run.out).toContain(`NIC ${NIC.id}: web, default\n`);

    patches.length = 0;
    const off = await runWithClient(['vm', 'update', 'web-1', '--no-filtering', '--nic', NIC.id], client);
    expect(off.code, off.err).toBe(0);
    expect(patches).toEqual([{ nic: NIC.id, patch: { filtering: false } }]);
    expect(off.out).toContain('(filtering off)');

    const nothing = await runWithClient(['vm', 'update', 'web-1'], client);
    expect(nothing.code).toBe(2);
    expect(nothing.err).toContain('say what to change');
  });
});
