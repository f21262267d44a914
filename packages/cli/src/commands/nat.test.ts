import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { storeTargets } from '../../../server/src/db/testing.js';
import {
  injectJson,
  onlineTestHost,
  startTestControlPlane,
  type TestControlPlane,
} from '../../../server/src/testing.js';
import { run } from '../program.js';
import { OutputBuffer as Buf } from '../testing.js';

// Floating IPs and port forwards from the CLI against a real control plane, on both stores: what the
// agents are told, quotas, metering and the refusals that say what to do.

for (const t of storeTargets()) {
  describe.skipIf(t.skip !== null)(`floe fip and floe forward on ${t.name}`, () => {
    let cp: TestControlPlane;
    let dir: string;
    let env: Record<string, string>;
    let host: string;

    async function floe(argv: string[]) {
      const out = new Buf();
      const err = new Buf();
      const code = await run(argv, { stdout: out, stderr: err, env, stdinIsTTY: false });
      return { code, out: out.text, err: err.text };
    }
    const ok = async (argv: string[]) => {
      const r = await floe(argv);
      expect(r.code, `${argv.join(' ')}: ${r.err}`).toBe(0);
      return r.out;
    };
    /** The NAT the agent is sent for an instance's first NIC. */
    const natOf = async (name: string) => {
      const inst = (await injectJson(cp, 'GET', `/v1/instances/${name}?project=shop`)).body as { id: string };
      const nic = (await cp.app.services.instances.desiredOne(inst.id))!.nics![0]!;
      return { fip: nic.floating_ipv4 ?? null, forwards: nic.forwards ?? [] };
    };

    /**
     * Runs `work` while a host reports every instance placed on it at the generation and power state
     * it wants, as its agent would once it applied them: operations waited for end.
     */
    async function whileHostApplies<T>(work: Promise<T>): Promise<T> {
      let done = false;
      const result = work.finally(() => (done = true));
      while (!done) {
        const rows = await cp.store.db
          .selectFrom('instances')
          .select(['id', 'generation', 'revision', 'spec'])
          .where('host_id', '=', host)
          .execute();
        for (const r of rows)
          await cp.app.services.instances.applyObserved(host, {
            id: r.id,
            state: (JSON.parse(String(r.spec)) as { power_state: 'running' | 'stopped' }).power_state,
            observed_revision: Number(r.revision),
            observed_generation: Number(r.generation),
            observed_restart_generation: 0,
            reason: null,
            accelerator: 'tcg',
            started_at: null,
            stopped_at: null,
          });
        await new Promise((res) => setTimeout(res, 50));
      }
      return result;
    }

    beforeAll(async () => {
      cp = await startTestControlPlane(await t.open());
      dir = await mkdtemp(join(tmpdir(), 'floe-cli-nat-'));
      await writeFile(join(dir, 'ca.pem'), cp.ca.certPem);
      env = {
        FLOE_CONFIG: join(dir, 'config.json'),
        FLOE_URL: cp.url,
        FLOE_CA: join(dir, 'ca.pem'),
        FLOE_TOKEN: cp.adminToken,
        FLOE_PROJECT: 'shop',
        NO_COLOR: '1',
      };
      host = await onlineTestHost(cp.app, 'node-1');
      expect((await injectJson(cp, 'POST', '/v1/projects', { name: 'shop' })).status).toBe(201);
      expect((await injectJson(cp, 'POST', '/v1/images', { name: 'img', project: 'shop' })).status).toBe(201);
      await ok(['net', 'create', 'lan', '--ipv4', '10.10.0.0/24', '--gateway', 'host']);
      await ok(['net', 'create', 'dark', '--ipv4', '10.20.0.0/24', '--gateway', 'none']);
      await ok([
        'net',
        'create',
        'internet',
        '--public',
        '--ipv4',
        '198.51.100.0/24',
        '--gateway',
        '198.51.100.1',
        '--pool',
        '198.51.100.50-198.51.100.51',
        '--uplink',
        'eth0',
      ]);
      for (const [name, net] of [
        ['web-1', 'lan'],
        ['web-2', 'lan'],
        ['dark-1', 'dark'],
      ] as const)
        await ok(['vm', 'create', name, '--image', 'img', '--vcpus', '1', '--memory-mib', '128', '--network', net]);
    });
    afterAll(async () => {
      await cp?.close();
      await rm(dir, { recursive: true, force: true });
    });

    it('takes a floating IP, attaches it, moves it in one step and gives it back', async () => {
      expect(await ok(['fip', 'create', 'web', '--attach', 'web-1'])).toBe(
        'floating IP web 198.51.100.50 attached to web-1\n',
      );
      expect(await natOf('web-1')).toEqual({ fip: '198.51.100.50', forwards: [] });
      // It waits until the host has the move, showing the operation on web-2 as it goes.
      const moved = await whileHostApplies(ok(['fip', 'attach', 'web', 'web-2']));
      expect(moved).toMatch(/^op_\S+ instance\.floating-ip-attach pending 0% /);
      expect(moved).toMatch(/\nop_\S+ instance\.floating-ip-attach succeeded 100% running\n/);
      expect(moved.endsWith('\nfloating IP web 198.51.100.50 attached to web-2\n')).toBe(true);
      expect(await natOf('web-1')).toEqual({ fip: null, forwards: [] });
      expect(await natOf('web-2')).toEqual({ fip: '198.51.100.50', forwards: [] });
      const ls = await ok(['fip', 'ls']);
      expect(ls).toMatch(/^NAME\s+ADDRESS\s+INSTANCE\s+NIC\s+AGE\nweb\s+198\.51\.100\.50\s+inst_\S+\s+nic_\S+\s+/);
      const history = (await injectJson(cp, 'GET', '/v1/floating-ips/web/history?project=shop')).body.items as {
        action: string;
      }[];
      expect(history.map((h) => h.action)).toEqual(['create', 'attach']);
      // By address too, and without waiting: the answer names the operation to follow.
      const detached = await ok(['fip', 'detach', '198.51.100.50', '--no-wait']);
      const opId = /operation (op_\S+) pending/.exec(detached)?.[1];
      expect(detached).toBe(
        `floating IP web 198.51.100.50 detached: operation ${opId} pending (follow it with "floe operation wait ${opId}")\n`,
      );
      expect(await natOf('web-2')).toEqual({ fip: null, forwards: [] });

      // Metered as a public IPv4 address while held.
      const meters = await cp.store.db
        .selectFrom('meter_ranges')
        .select(['resource_kind', 'dimension', 'ended_at'])
        .where('resource_kind', '=', 'floating_ip')
        .execute();
      expect(meters).toEqual([{ resource_kind: 'floating_ip', dimension: 'public_ipv4', ended_at: null }]);
      await ok(['fip', 'rm', 'web', '--yes']);
      const closed = await cp.store.db
        .selectFrom('meter_ranges')
        .select('ended_at')
        .where('resource_kind', '=', 'floating_ip')
        .execute();
      expect(closed[0]!.ended_at).not.toBeNull();
    });

    it('refuses what NAT cannot do, saying why', async () => {
      const dark = await floe(['fip', 'create', 'dk', '--attach', 'dark-1']);
      expect([dark.code, dark.err]).toEqual([1, expect.stringContaining('private network whose gateway is "host"')]);
      await ok(['fip', 'create', 'one', '--attach', 'web-1']);
      const twice = await floe(['fip', 'create', 'two', '--attach', 'web-1']);
      expect(twice.err).toContain('has floating IP "one" already');
      await ok(['fip', 'create', 'two']);
      const full = await floe(['fip', 'create', 'three']);
      expect(full.err).toContain('no free IPv4 address');
      const taken = await floe(['fip', 'create', 'again', '--address', '198.51.100.50']);
      expect(taken.err).toContain('already used');
      const busy = await floe(['net', 'rm', 'internet', '--yes']);
      expect(busy.err).toContain('still holds floating IP');
      await ok(['fip', 'rm', 'one', '--yes']);
      await ok(['fip', 'rm', 'two', '--yes']);
    });

    it('forwards ports of the host and of a floating IP, one listener each', async () => {
      expect(await ok(['forward', 'create', 'ssh', 'web-1', '--port', '2222', '--to', '22'])).toBe(
        'tcp host:2222 forwarded to web-1 10.10.0.2:22\n',
      );
      const dup = await floe(['forward', 'create', 'ssh2', 'web-2', '--port', '2222']);
      expect([dup.code, dup.err]).toEqual([1, expect.stringContaining('the host already forwards tcp port 2222')]);
      await ok(['forward', 'create', 'dns', 'web-2', '--port', '2222', '--udp']);
      await ok(['fip', 'create', 'shop']);
      await ok(['forward', 'create', 'www', 'web-2', '--fip', 'shop', '--port', '80', '--to', '8080']);
      expect(await natOf('web-1')).toEqual({
        fip: null,
        forwards: [{ protocol: 'tcp', address: null, port: 2222, target_port: 22 }],
      });
      expect((await natOf('web-2')).forwards).toEqual([
        { protocol: 'tcp', address: '198.51.100.50', port: 80, target_port: 8080 },
        { protocol: 'udp', address: null, port: 2222, target_port: 2222 },
      ]);
      // A floating IP with forwards is not attached one to one, nor given back under them.
      expect((await floe(['fip', 'attach', 'shop', 'web-1'])).err).toContain('carries port forward "www"');
      expect((await floe(['fip', 'rm', 'shop', '--yes'])).err).toContain('carries port forward "www"');
      const ls = await ok(['forward', 'ls']);
      expect(ls.split('\n')[0]).toMatch(/^NAME\s+LISTEN\s+PROTO\s+TARGET\s+INSTANCE\s+AGE$/);
      expect(ls).toMatch(/www\s+198\.51\.100\.50:80\s+tcp\s+10\.10\.0\.3:8080/);
      await ok(['forward', 'rm', 'www', '--yes']);
      expect((await natOf('web-2')).forwards).toHaveLength(1);
      await ok(['fip', 'rm', 'shop', '--yes']);
    });

    it('counts floating IPs and port forwards against project limits', async () => {
      await ok(['project', 'limits', 'set', 'shop', '--floating-ips', '1', '--port-forwards', '2']);
      await ok(['fip', 'create', 'q1']);
      const over = await floe(['fip', 'create', 'q2']);
      expect([over.code, over.err]).toEqual([1, expect.stringMatching(/floating_ips/)]);
      const more = await floe(['forward', 'create', 'q3', 'web-1', '--port', '3000']);
      expect([more.code, more.err]).toEqual([1, expect.stringMatching(/port_forwards/)]);
      await ok(['fip', 'rm', 'q1', '--yes']);
      await ok(['project', 'limits', 'set', 'shop', '--floating-ips', 'none', '--port-forwards', 'none']);
    });

    it('a NIC that goes takes its forwards with it and leaves its floating IP detached', async () => {
      await ok(['fip', 'create', 'keep', '--attach', 'web-1']);
      await ok(['forward', 'create', 'gone', 'web-1', '--port', '4000']);
      const nic = (await injectJson(cp, 'GET', '/v1/instances/web-1/nics?project=shop')).body.items[0] as {
        id: string;
      };
      await ok(['net', 'detach', 'web-1', nic.id]);
      const fip = (await injectJson(cp, 'GET', '/v1/floating-ips/keep?project=shop')).body as { instance: unknown };
      expect(fip.instance).toBeNull();
      expect((await injectJson(cp, 'GET', '/v1/port-forwards/gone?project=shop')).status).toBe(404);
    });
  });
}
