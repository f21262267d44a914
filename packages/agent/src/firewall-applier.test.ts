import type { DesiredInstance, DesiredSecurityGroup } from '@floe/api';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { FakeFirewall, FakeHost } from './drivers/net/fake.js';
import type { FirewallInput } from './drivers/net/ruleset.js';
import { NET, NIC } from './drivers/net/spec.fixtures.js';
import { FirewallApplier, firewallInput } from './firewall-applier.js';

const SG = 'sg_01JB8X0Q3E6M2T9K4V7W5YB1D1';

/** A group whose rule names itself: its members are a named set in the ruleset. */
const group = (members: string[], port = 22): DesiredSecurityGroup => ({
  id: SG,
  name: 'web',
  project: 'default',
  ingress_default: 'deny',
  egress_default: 'allow',
  rules: [
    { direction: 'ingress', protocol: 'tcp', port_min: port, port_max: port, remote_cidr: null, remote_group: SG },
  ],
  members,
});

/** The instance of NIC with the wire's view of it: its groups and filtering. */
const instance = (groups: string[] | undefined, filtering = true): DesiredInstance =>
  ({
    id: NIC.instanceId,
    nics: [{ id: NIC.id, ...(groups === undefined ? {} : { security_groups: groups, filtering }) }],
  }) as unknown as DesiredInstance;

const input = (g: DesiredSecurityGroup, inst = instance([SG])): FirewallInput =>
  firewallInput([NET], [NIC], [inst], new Map([[g.id, g]]));

/** A firewall fake that counts whole rulesets, can hold them (a slow `nft`) and refuse updates in place. */
class Counting extends FakeFirewall {
  whole = 0;
  refuse = false;
  gate: Promise<void> | null = null;
  override async applyFirewall(...args: Parameters<FakeFirewall['applyFirewall']>): Promise<void> {
    this.whole++;
    if (this.gate !== null) await this.gate;
    return super.applyFirewall(...args);
  }
  override async updateFirewallMembers(...args: Parameters<FakeFirewall['updateFirewallMembers']>): Promise<boolean> {
    if (this.refuse) throw new Error('Error: No such file or directory (set sgm4_...)');
    return super.updateFirewallMembers(...args);
  }
}

describe('firewallInput', () => {
  it('gives local NICs the groups of their instance the host was sent, and leaves out NICs no longer here', () => {
    const g = group(['10.10.0.5']);
    const known = new Map([[g.id, g]]);
    expect(firewallInput([NET], [NIC], [instance([SG, 'sg_01UNKNOWN'])], known).nics).toEqual([
      { ...NIC, securityGroups: [SG], filtering: true },
    ]);
    expect(firewallInput([NET], [NIC], [instance([SG], false)], known).nics[0]?.filtering).toBe(false);
    // Older control planes send no groups: the NIC goes in unfiltered.
    expect(firewallInput([NET], [NIC], [instance(undefined)], known).nics).toEqual([NIC]);
    expect(firewallInput([NET], [NIC], [], known).nics).toEqual([]);
  });
});

describe('FirewallApplier', () => {
  const log = pino({ level: 'silent' });

  it('skips the same input, refills sets for members only, and applies the rest whole', async () => {
    const fw = new Counting(new FakeHost());
    const applier = new FirewallApplier(fw, log, 60_000);
    expect(await applier.apply(() => input(group(['10.10.0.5'])))).toBe('ruleset');
    expect(await applier.apply(() => input(group(['10.10.0.5'])))).toBe('unchanged');
    expect(await applier.apply(() => input(group(['10.10.0.5', '10.10.0.6'])))).toBe('members');
    expect(fw.memberUpdates).toHaveLength(1);
    expect(await applier.apply(() => input(group(['10.10.0.5', '10.10.0.6'], 80)))).toBe('ruleset');
    // Refused in place (a set deleted by hand): the whole ruleset instead.
    fw.refuse = true;
    expect(await applier.apply(() => input(group(['10.10.0.5'], 80)))).toBe('ruleset');
    expect(fw.whole).toBe(3);
    expect(fw.host.ruleset).not.toContain('10.10.0.6');
  });

  it('applies the whole ruleset again once a resync interval has passed, changed or not (drift repair)', async () => {
    const fw = new Counting(new FakeHost());
    const applier = new FirewallApplier(fw, log, 30);
    await applier.apply(() => input(group(['10.10.0.5'])));
    await new Promise((r) => setTimeout(r, 50));
    expect(await applier.apply(() => input(group(['10.10.0.5', '10.10.0.6'])))).toBe('ruleset');
    await new Promise((r) => setTimeout(r, 50));
    expect(await applier.apply(() => input(group(['10.10.0.5', '10.10.0.6'])))).toBe('ruleset');
    expect(fw.memberUpdates).toEqual([]);
  });

  it('applies one at a time, each reading its input when its turn comes', async () => {
    const fw = new Counting(new FakeHost());
    const applier = new FirewallApplier(fw, log, 60_000);
    const read: number[] = [];
    let current = group(['10.10.0.5']);
    let release!: () => void;
    fw.gate = new Promise<void>((r) => (release = r));
    const first = applier.apply(() => (read.push(current.rules[0]!.port_min!), input(current)));
    while (fw.whole === 0) await new Promise((r) => setTimeout(r, 1));
    // Asked while the first is with nft, and the groups change meanwhile: it applies what they are when its turn comes.
    const second = applier.apply(() => (read.push(current.rules[0]!.port_min!), input(current)));
    current = group(['10.10.0.5'], 443);
    fw.gate = null;
    release();
    expect(await first).toBe('ruleset');
    expect(await second).toBe('ruleset');
    expect(read).toEqual([22, 443]);
    expect(fw.host.ruleset).toContain('tcp dport 443 accept');
    // A failure does not stop the ones after it.
    const failing = applier.apply(() => {
      throw new Error('bad input');
    });
    await expect(failing).rejects.toThrow('bad input');
    expect(await applier.apply(() => input(current))).toBe('unchanged');
  });
});
