import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { rm } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Nic, SecurityGroup } from '@floe/api';
import type { FloeClient } from '@floe/client';
import { dnsmasqRunDir } from '../../packages/agent/src/drivers/net/dnsmasq.js';
import type { TestControlPlane } from '../../packages/server/src/testing.js';
import { eventually, kill } from './helpers.js';
import { GuestShell, Namespaces, startAgentIn } from './netns.js';
import { startVmHost } from './vm-host.js';

const have = (cmd: string, ...args: string[]) => spawnSync(cmd, args, { stdio: 'ignore' }).status === 0;
const skip =
  process.getuid?.() !== 0
    ? 'needs root (network namespaces)'
    : !have('qemu-system-x86_64', '--version')
      ? 'qemu-system-x86_64 is not installed'
      : !have('dnsmasq', '--version')
        ? 'dnsmasq is not installed'
        : null;
if (skip && !process.env.CI) console.warn(`skipping security group end-to-end tests: ${skip}`);

/**
 * Security groups with real VMs (QEMU, TCG) on one host namespace: `a` is in
 * `admins`, `b` in `web`, which lets TCP 22 in from `admins` and nothing else.
 * Busybox nc echo servers listen on b's ports 22 and 80; a connects to them.
 */
describe.skipIf(skip !== null && !process.env.CI)('security groups with real VMs', () => {
  const ns = new Namespaces();
  const base = `10.${200 + (randomBytes(1)[0]! % 50)}`;
  let h1 = '';
  let cp: TestControlPlane;
  let client: FloeClient;
  let agent: ReturnType<typeof startAgentIn> | undefined;
  let agentDir = '';
  let web: SecurityGroup;
  const nics: Record<string, Nic> = {};
  const shells: Record<string, GuestShell> = {};

  /** Whether a gets its line echoed by b's server on `port` (a new connection each time). */
  const connects = async (port: number) => {
    const r = await shells.a!.sh(`echo hello-${port} | timeout 6 nc -w 3 ${nics.b!.ipv4} ${port}`, 30_000);
    return r.out.includes(`hello-${port}`);
  };
  /** The rules of web as h1's nftables has them now. */
  const webChain = async () =>
    (await ns.exec(h1, ['nft', 'list', 'chain', 'bridge', 'floe', `sg_${web.id}_in`], { allowFail: true })).stdout;
  /** Milliseconds from `since` until h1's ruleset satisfies `check`. */
  const activeAfter = async (since: number, check: (chain: string) => boolean, what: string) => {
    await eventually(async () => check(await webChain()), what, 30_000);
    return Date.now() - since;
  };

  beforeAll(async () => {
    ({ ns: h1, cp, client, agentDir, agent } = await startVmHost(ns, base, { name: 's1' }));
    await client.networks.create({ name: 'lan', ipv4: '10.10.0.0/24', ipv6: null, gateway: 'none' });
    await client.securityGroups.create({ name: 'admins' });
    web = await client.securityGroups.create({
      name: 'web',
      rules: [{ direction: 'ingress', protocol: 'tcp', port: '22', remote_group: 'admins', description: 'ssh' }],
    });
    const ops = [];
    for (const [name, group] of [
      ['a', 'admins'],
      ['b', 'web'],
    ] as const) {
      const { operation } = await client.instances.create({
        name,
        image: 'floe-test',
        machine_type: 'nano',
        networks: [{ network: 'lan', security_groups: [group] }],
      });
      ops.push(operation);
    }
    for (const op of ops)
      expect((await client.operations.wait(op.id, { timeoutMs: 180_000 })).status).toBe('succeeded');
    for (const name of ['a', 'b']) {
      nics[name] = (await client.instances.nics(name))[0]!;
      shells[name] = new GuestShell(client, name);
    }
    for (const name of ['a', 'b']) {
      await eventually(
        async () => {
          const parts: Buffer[] = [];
          for await (const chunk of client.instances.logs(name)) parts.push(chunk);
          const log = Buffer.concat(parts).toString('utf8');
          return log.includes('FLOE-TEST READY') && log.includes(`FLOE-TEST IP eth0 ${nics[name]!.ipv4}/24`);
        },
        `${name} booted with its address by DHCP (through its security groups)\n${agent?.output().slice(-3000) ?? ''}`,
        240_000,
      );
    }
    // Echo servers on b.
    await shells.b!.sh('(nc -ll -p 22 -e cat &) ; (nc -ll -p 80 -e cat &) ; sleep 1');
  }, 480_000);

  afterAll(async () => {
    for (const s of Object.values(shells)) s.close();
    if (client)
      await Promise.all(['a', 'b'].map((n) => client.instances.delete(n, { wait: 30 }).catch(() => undefined)));
    if (agent) await kill(agent);
    await cp?.close();
    await ns.cleanup();
    if (agentDir) await rm(dnsmasqRunDir(path.resolve(agentDir)), { recursive: true, force: true });
  }, 120_000);

  it('lets TCP 22 in from the admins group but not TCP 80; a rule for 80 opens it while an open connection stays', async () => {
    expect(await connects(22)).toBe(true);
    expect(await connects(80)).toBe(false);

    // An ssh-like session: a connection to 22 held open through a FIFO.
    await shells.a!.sh(`rm -f /tmp/f; mkfifo /tmp/f; (nc ${nics.b!.ipv4} 22 < /tmp/f > /tmp/held &) ; exec 3>/tmp/f`);
    await shells.a!.sh('echo held-1 >&3');
    await shells.a!.until('grep -q held-1 /tmp/held', 'the held connection to echo', 10_000);

    const t0 = Date.now();
    const added = await client.securityGroups.addRule('web', {
      direction: 'ingress',
      protocol: 'tcp',
      port: '80',
      remote_group: 'admins',
    });
    const answered = Date.now();
    const ms = await activeAfter(answered, (c) => c.includes('tcp dport 80 accept'), 'the rule for 80 on the host');
    console.log(
      `security group rule active on the host ${ms} ms after the API answered (${ms + answered - t0} ms after the request)`,
    );
    // The bound: within a second of the change. The agent applies a group change on its own, without
    // waiting for its pass over the networks; this is measured by polling the host's ruleset every 100 ms.
    expect(ms).toBeLessThan(1000);
    // The first connection a makes after that gets through. Its own time is mostly the guest console's round
    // trip (a shell command typed on a serial line of a TCG VM), so it is printed, not held to the second.
    const c0 = Date.now();
    expect(await connects(80)).toBe(true);
    console.log(
      `first connection to 80 succeeded ${Date.now() - answered} ms after the API answered (the attempt took ${Date.now() - c0} ms)`,
    );
    await shells.a!.sh('echo held-2 >&3');
    await shells.a!.until('grep -q held-2 /tmp/held', 'the held connection to echo after the change', 10_000);

    const rule = added.spec.rules.find((r) => r.port_min === 80)!;
    await client.securityGroups.removeRule('web', rule.id);
    const t1 = Date.now();
    const gone = await activeAfter(t1, (c) => c.includes('dport 22') && !c.includes('dport 80'), 'the rule gone');
    console.log(`security group rule removed on the host ${gone} ms after the API answered`);
    expect(gone).toBeLessThan(1000);
    expect(await connects(80)).toBe(false);
    // The ssh-like session allowed throughout is still up.
    await shells.a!.sh('echo held-3 >&3');
    await shells.a!.until('grep -q held-3 /tmp/held', 'the held connection to echo at the end', 10_000);
  }, 300_000);

  it('a NIC with filtering off gets everything in (anti-spoofing stays); back on, 80 is closed again', async () => {
    await client.instances.updateNic('b', nics.b!.id, { filtering: false });
    await eventually(async () => !(await webChain()).includes('dport 22'), 'web off the host', 30_000);
    expect(await connects(80)).toBe(true);
    await client.instances.updateNic('b', nics.b!.id, { filtering: true });
    await eventually(async () => (await webChain()).includes('dport 22'), 'web back on the host', 30_000);
    expect(await connects(80)).toBe(false);
  }, 180_000);
});
