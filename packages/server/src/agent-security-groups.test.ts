import { FloeError } from '@floe/api';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { storeTargets } from './db/testing.js';
import { FakeAgent } from './testing-agent.js';
import { startTestControlPlane, type TestControlPlane } from './testing.js';

// Security groups as the agents hear of them: the groups a host's NICs use and the groups
// their rules name, with the members' addresses on every host, pushed again when a rule,
// a NIC's groups or the members change.

const codeOf = async (p: Promise<unknown>) => {
  try {
    await p;
  } catch (err) {
    return err instanceof FloeError ? err.code : String(err);
  }
  return 'ok';
};

for (const t of storeTargets()) {
  describe.skipIf(t.skip)(`security groups on the agent link on ${t.name}`, () => {
    let cp: TestControlPlane;
    let a: FakeAgent;
    let b: FakeAgent;
    beforeAll(async () => {
      cp = await startTestControlPlane(await t.open());
      a = await FakeAgent.connect(cp, 'node-a', '192.0.2.10');
      b = await FakeAgent.connect(cp, 'node-b', '192.0.2.11');
      await cp.app.services.images.create(cp.admin, { name: 'img' });
      await cp.app.services.networks.create(cp.admin, { name: 'lan', ipv4: '10.10.0.0/24' });
    });
    afterAll(async () => {
      a?.close();
      b?.close();
      await cp?.close();
    });

    const place = async (name: string, host: FakeAgent, nic: unknown) => {
      const other = host === a ? b : a;
      await cp.app.services.hosts.update(cp.admin, other.hostId, { spec: { schedulable: false } });
      try {
        const created = await cp.app.services.instances.create(cp.admin, {
          name,
          image: 'img',
          vcpus: 1,
          memory_mib: 128,
          networks: [nic as string],
        });
        expect(created.instance.status.host).toBe(host.hostId);
        return created.instance;
      } finally {
        await cp.app.services.hosts.update(cp.admin, other.hostId, { spec: { schedulable: true } });
      }
    };

    it('sends each host the groups of its NICs with members on every host, and pushes changes', async () => {
      const sg = cp.app.services.securityGroups;
      const admins = await sg.create(cp.admin, { name: 'admins' });
      const web = await sg.create(cp.admin, {
        name: 'web',
        description: 'front ends',
        rules: [{ direction: 'ingress', protocol: 'tcp', port: '22', remote_group: 'admins' }],
      });
      expect(web.spec.rules[0]).toMatchObject({ port_min: 22, port_max: 22, remote_group: admins.id });

      const one = await place('one', a, { network: 'lan', security_groups: ['web'] });
      const two = await place('two', b, { network: 'lan', security_groups: ['admins'] });
      const [nicTwo] = await cp.app.services.instances.nics(cp.admin, 'two', 'default');
      expect(nicTwo).toMatchObject({ security_groups: ['admins'], filtering: true });

      // Host a: its NIC's group `web`, and `admins` that web's rule names, whose member runs on b.
      const onA = await a.latest('security_group', (l) => l.some((g) => g.id === admins.id && g.members.length > 0));
      expect(onA.map((g) => g.name).sort()).toEqual(['admins', 'web']);
      expect(onA.find((g) => g.id === admins.id)!.members).toEqual([nicTwo!.ipv4]);
      expect(onA.find((g) => g.id === web.id)).toMatchObject({
        ingress_default: 'deny',
        egress_default: 'allow',
        rules: [{ direction: 'ingress', protocol: 'tcp', port_min: 22, remote_group: admins.id, remote_cidr: null }],
      });
      const desiredOne = await cp.app.services.instances.desiredOne(one.id);
      expect(desiredOne!.nics![0]).toMatchObject({ security_groups: [web.id], filtering: true });

      // A rule added reaches the host of the group's NICs.
      await sg.addRule(cp.admin, 'web', 'default', {
        direction: 'ingress',
        protocol: 'tcp',
        port: '80-81',
        remote_cidr: '198.51.100.7/24',
      });
      await a.latest('security_group', (l) =>
        l.some((g) => g.id === web.id && g.rules.some((r) => r.port_min === 80 && r.remote_cidr === '198.51.100.0/24')),
      );

      // Two leaves `admins` for the default group: admins has no members any more.
      await cp.app.services.instances.updateNic(cp.admin, 'two', 'default', nicTwo!.id, { security_groups: [] });
      await a.latest('security_group', (l) => l.find((g) => g.id === admins.id)?.members.length === 0);
      const onB = await b.latest('security_group', (l) => l.some((g) => g.name === 'default'));
      expect(onB.find((g) => g.name === 'default')!.rules).toHaveLength(4);

      // Filtering off is sent with the NIC; the groups stay.
      const { nic: off } = await cp.app.services.instances.updateNic(cp.admin, 'two', 'default', nicTwo!.id, {
        filtering: false,
      });
      expect(off).toMatchObject({ security_groups: ['default'], filtering: false });
      expect((await cp.app.services.instances.desiredOne(two.id))!.nics![0]!.filtering).toBe(false);

      // In use: refused; the default group always.
      expect(await codeOf(sg.delete(cp.admin, 'web', 'default'))).toBe('in_use');
      expect(await codeOf(sg.delete(cp.admin, 'admins', 'default'))).toBe('in_use');
      expect(await codeOf(sg.delete(cp.admin, 'default', 'default'))).toBe('in_use');
      expect(
        await codeOf(
          cp.app.services.instances.updateNic(cp.admin, 'one', 'default', desiredOne!.nics![0]!.id, {
            security_groups: ['nope'],
          }),
        ),
      ).toBe('security_group_not_found');
      const history = await cp.app.services.securityGroups.get(cp.admin, 'web', 'default');
      expect(history.revision).toBe(2);
    });

    it('keeps every rule of a burst of changes and pushes them to the host in order, the newest last', async () => {
      const sg = cp.app.services.securityGroups;
      const isGroups = (m: (typeof a.messages)[number]) => m.type === 'desired' && m.kind === 'security_group';
      const from = a.messages.length;
      // Twenty rules added at once, each announced to the hosts of the project as it commits.
      await Promise.all(
        Array.from({ length: 20 }, (_, i) =>
          sg.addRule(cp.admin, 'web', 'default', { direction: 'ingress', protocol: 'udp', port: String(5000 + i) }),
        ),
      );
      const udp = (m: (typeof a.messages)[number]) =>
        m.type === 'desired'
          ? (m.items as { rules: { protocol: string }[] }[]).flatMap((g) => g.rules).filter((r) => r.protocol === 'udp')
              .length
          : 0;
      await a.latest('security_group', (l) => l.some((g) => g.rules.filter((r) => r.protocol === 'udp').length === 20));
      await new Promise((r) => setTimeout(r, 300));
      const pushed = a.messages.slice(from).filter(isGroups);
      console.log(
        `${t.name}: 20 changes, ${pushed.length} pushes of the groups, with ${pushed.map(udp).join(' ')} rules`,
      );
      // In the order they were read: never an older set after a newer one.
      const counts = pushed.map(udp);
      expect(counts).toEqual([...counts].sort((x, y) => x - y));
      expect(counts.at(-1)).toBe(20);
    });

    it('refuses rules that do not make sense', async () => {
      const sg = cp.app.services.securityGroups;
      const bad = (rule: object) =>
        codeOf(sg.create(cp.admin, { name: 'bad', rules: [{ direction: 'ingress', protocol: 'tcp', ...rule }] }));
      expect(await bad({ port: '90-80' })).toBe('validation_failed');
      expect(await bad({ protocol: 'icmp', port: '22' })).toBe('validation_failed');
      expect(await bad({ remote_cidr: '10.0.0.0/40' })).toBe('validation_failed');
      expect(await bad({ protocol: 'icmp', remote_cidr: 'fd00::/8' })).toBe('validation_failed');
      expect(await bad({ remote_cidr: '10.0.0.0/8', remote_group: 'default' })).toBe('validation_failed');
      expect(await bad({ remote_group: 'nope' })).toBe('security_group_not_found');
      expect(await codeOf(sg.create(cp.admin, { name: 'admins' }))).toBe('name_conflict');
    });
  });
}
