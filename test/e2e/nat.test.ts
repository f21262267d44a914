import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { rm } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Nic } from '@floe/api';
import type { FloeClient } from '@floe/client';
import { dnsmasqRunDir } from '../../packages/agent/src/drivers/net/dnsmasq.js';
import { echoRequestsIn } from '../../packages/agent/src/drivers/net/testing.js';
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
      : !have('curl', '--version')
        ? 'curl is not installed'
        : null;
if (skip && !process.env.CI) console.warn(`skipping floating IP end-to-end tests: ${skip}`);

/**
 * Floating IPs and port forwards with real VMs from the test image: one
 * control plane, one agent in a namespace standing in for the host, whose
 * uplink leads to a namespace standing in for the internet. Two VMs on a
 * private network serve their own names over HTTP (busybox httpd); the
 * internet asks for them by a floating IP of a public network's pool, and by
 * forwarded ports.
 *
 *   root ── cp link ── h1 ── up0 (198.51.100.1) ── "internet" (198.51.100.2)
 */
describe.skipIf(skip !== null && !process.env.CI)('floating IPs and port forwards with real VMs', () => {
  const ns = new Namespaces();
  const base = `10.${200 + (randomBytes(1)[0]! % 50)}`;
  let h1 = '';
  let inet = '';
  let cp: TestControlPlane;
  let client: FloeClient;
  let agent: ReturnType<typeof startAgentIn> | undefined;
  let agentDir = '';
  const nics: Record<string, Nic> = {};
  const shells: Record<string, GuestShell> = {};

  const logsOf = async (id: string) => {
    const parts: Buffer[] = [];
    for await (const chunk of client.instances.logs(id)) parts.push(chunk);
    return Buffer.concat(parts).toString('utf8');
  };
  /** What the internet gets from `url`, on a new connection; null when nothing answers. */
  const fromInternet = async (url: string): Promise<string | null> => {
    const r = await ns.exec(inet, ['curl', '-s', '--max-time', '2', url], { allowFail: true });
    return r.code === 0 ? r.stdout.trim() : null;
  };
  const answers = (url: string, want: string, what: string) =>
    eventually(
      async () => (await fromInternet(url)) === want,
      `${what}\n${agent?.output().slice(-3000) ?? ''}`,
      30_000,
    );

  beforeAll(async () => {
    inet = await ns.add('in');
    ({
      ns: h1,
      cp,
      client,
      agentDir,
      agent,
    } = await startVmHost(ns, base, {
      name: 'h1',
      prepare: async (h) => {
        await ns.link(
          { ns: h, name: 'up0', addr: '198.51.100.1/24' },
          { ns: inet, name: 'eth0', addr: '198.51.100.2/24' },
        );
        await ns.exec(h, ['ip', 'route', 'add', 'default', 'via', '198.51.100.2']);
      },
    }));
    await client.networks.create({ name: 'lan', ipv4: '10.10.0.0/24', gateway: 'host' });
    // The public network's pool is routed on the uplink's LAN; no instance joins it, so its bridge is never built.
    await client.networks.create({
      name: 'internet',
      kind: 'public',
      ipv4: '198.51.100.0/24',
      gateway: '198.51.100.2',
      pool: { start: '198.51.100.50', end: '198.51.100.59' },
      uplink: 'up0',
    });
    const ops = [];
    for (const name of ['a', 'b']) {
      const { operation } = await client.instances.create({
        name,
        image: 'floe-test',
        machine_type: 'nano',
        networks: ['lan'],
      });
      ops.push(operation);
    }
    for (const op of ops)
      expect((await client.operations.wait(op.id, { timeoutMs: 180_000 })).status).toBe('succeeded');
    for (const name of ['a', 'b']) {
      nics[name] = (await client.instances.nics(name))[0]!;
      shells[name] = new GuestShell(client, name);
      await eventually(
        async () => {
          const log = await logsOf(name);
          return log.includes('FLOE-TEST READY') && log.includes(`FLOE-TEST IP eth0 ${nics[name]!.ipv4}/24`);
        },
        `${name} booted with its address\n${agent?.output().slice(-3000) ?? ''}`,
        240_000,
      );
      const r = await shells[name].sh(
        `mkdir -p /tmp/w && echo vm-${name} > /tmp/w/who && busybox httpd -p 80 -h /tmp/w`,
      );
      expect(r.code, r.out).toBe(0);
    }
  }, 480_000);

  afterAll(async () => {
    for (const s of Object.values(shells)) s.close();
    if (client)
      await Promise.all(['a', 'b'].map((n) => client.instances.delete(n, { wait: 30 }).catch(() => undefined)));
    if (agent) await kill(agent);
    await cp?.close();
    await ns.cleanup();
    if (agentDir !== '') await rm(dnsmasqRunDir(path.resolve(agentDir)), { recursive: true, force: true });
  }, 120_000);

  it('from the internet a floating IP reaches its VM; moved to the second VM, traffic follows', async () => {
    const fip = await client.floatingIps.create({ name: 'web', instance: 'a' });
    expect(fip.address).toBe('198.51.100.50');
    expect(fip.nic).toBe(nics.a!.id);
    // Forwarded traffic meets the NIC's security groups: the project's default group lets ICMP in
    // (so the floating IP answers pings once the host NATs it) but not HTTP, until a rule allows it.
    await eventually(
      async () =>
        (await ns.exec(inet, ['ping', '-c', '1', '-W', '2', '198.51.100.50'], { allowFail: true })).code === 0,
      'the floating IP answering pings',
      30_000,
    );
    expect(await fromInternet('http://198.51.100.50/who')).toBeNull();
    await client.securityGroups.addRule('default', { direction: 'ingress', protocol: 'tcp', port: '80' });
    await answers('http://198.51.100.50/who', 'vm-a', 'the floating IP reaches a');
    // a's own traffic to the internet leaves from its floating IP.
    const out = await shells.a!.sh('ping -c 1 -W 3 198.51.100.2');
    expect(out.code, out.out).toBe(0);
    const ct = await ns.exec(h1, ['cat', '/proc/net/nf_conntrack'], { allowFail: true });
    if (ct.code === 0)
      expect(ct.stdout).toMatch(
        new RegExp(`src=${nics.a!.ipv4!.replaceAll('.', '\\.')} dst=198\\.51\\.100\\.2 .* dst=198\\.51\\.100\\.50 `),
      );

    /** The echo requests a VM's network stack has received so far. */
    const echoes = async (vm: 'a' | 'b') => {
      const r = await shells[vm]!.sh('cat /proc/net/snmp');
      expect(r.code, r.out).toBe(0);
      return echoRequestsIn(r.out);
    };
    // A stream open before the move: one ping process sends every request with one identifier, so the
    // host tracks it as one flow for its whole run (its translation would otherwise outlive the move).
    const stream = spawn('ip', ['netns', 'exec', inet, 'ping', '-i', '0.2', '198.51.100.50'], { stdio: 'ignore' });
    try {
      const a0 = await echoes('a');
      await eventually(async () => (await echoes('a')) >= a0 + 3, 'the open stream reaching a', 30_000);
      const b0 = await echoes('b');
      const started = Date.now();
      const { floating_ip: moved, operation } = await client.floatingIps.attach('web', { instance: 'b' });
      expect(moved.nic).toBe(nics.b!.id);
      expect(operation.kind).toBe('instance.floating-ip-attach');
      expect(operation.resources[0]!.id).toBe(moved.instance);
      const done = await client.operations.wait(operation.id, { timeoutMs: 60_000 });
      expect(done.status, done.message).toBe('succeeded');
      console.log(`floating IP moved: the operation ended after ${Date.now() - started} ms`);
      await eventually(
        async () => (await echoes('b')) >= b0 + 5,
        `the stream open before the move reaching b\n${agent?.output().slice(-3000) ?? ''}`,
        30_000,
      );
      console.log(`floating IP moved: the open stream followed within ${Date.now() - started} ms`);
      // And it no longer reaches a: at most a request in flight during the move still landed there.
      const a1 = await echoes('a');
      const b1 = await echoes('b');
      await eventually(async () => (await echoes('b')) >= b1 + 5, 'more of the stream reaching b', 30_000);
      expect(await echoes('a')).toBeLessThanOrEqual(a1 + 1);
    } finally {
      stream.kill();
    }
    await answers('http://198.51.100.50/who', 'vm-b', 'new connections follow the floating IP to b');

    const detached = await client.floatingIps.detach('web');
    expect(detached.floating_ip.instance).toBeNull();
    expect((await client.operations.wait(detached.operation.id, { timeoutMs: 60_000 })).status).toBe('succeeded');
    await eventually(async () => (await fromInternet('http://198.51.100.50/who')) === null, 'detached', 30_000);
  }, 180_000);

  it('from the internet forwarded ports of the host and of a floating IP reach the VMs', async () => {
    await client.portForwards.create({ name: 'www-a', instance: 'a', port: 8080, target_port: 80 });
    await client.portForwards.create({ name: 'www-b', instance: 'b', floating_ip: 'web', port: 8081, target_port: 80 });
    await answers('http://198.51.100.1:8080/who', 'vm-a', 'the host port reaches a');
    await answers('http://198.51.100.50:8081/who', 'vm-b', "the floating IP's port reaches b");
    // Nothing else of them is forwarded.
    expect(await fromInternet('http://198.51.100.50/who')).toBeNull();
    await client.portForwards.delete('www-a');
    await eventually(async () => (await fromInternet('http://198.51.100.1:8080/who')) === null, 'forward gone', 30_000);
  }, 180_000);
});
