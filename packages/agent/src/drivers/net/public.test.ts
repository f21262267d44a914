import { randomBytes } from 'node:crypto';
import { access, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { run } from '../../host/exec.js';
import { checkNet } from './checked-spec.js';
import { dnsmasqRunDir } from './dnsmasq.js';
import { HostNetworkDriver } from './driver.js';
import { ipIn, netnsUnavailable, ping, waitFor } from './testing.js';
import { bridgeName, tapName } from './names.js';
import type { NetSpec, NicSpec } from './types.js';
import { takeoverCommands } from './takeover-commands.js';

/*
 * A public network: a "lan" namespace with the router (192.0.2.1/24,
 * 2001:db8::1/64), a "host" namespace whose veth phys0 (192.0.2.10/24,
 * 2001:db8::10/64, default routes via the router, a static route) stands in
 * for the host's physical interface, and a "vm" namespace whose eth0 is wired
 * to a port of the public bridge under the NIC's tap name. Every namespace is
 * created and deleted here; no traffic leaves them.
 */

const reason = await netnsUnavailable('public network tests');

const sfx = randomBytes(3).toString('hex');
const ns = { lan: `floe-t-${sfx}-lan`, host: `floe-t-${sfx}-h`, vm: `floe-t-${sfx}-vm` };

const PUB: NetSpec = {
  id: `net_t${sfx}p`,
  kind: 'public',
  physical: 'phys0',
  vni: 77,
  ipv4: { cidr: '192.0.2.0/24', gateway: '192.0.2.1' },
  ipv6: null,
  mtu: 1500,
  gatewayMode: 'vm',
  dns: false,
  peers: [],
};
const NIC: NicSpec = {
  id: `nic_t${sfx}p`,
  instanceId: `inst_t${sfx}p`,
  networkId: PUB.id,
  mac: '52:54:00:ab:cd:01',
  ipv4: '192.0.2.50',
  ipv6: null,
  hostname: 'pub-1',
};
const BR = bridgeName(PUB.id);

let state: string;
let host: HostNetworkDriver;
let physMac: string;

/** Global addresses of an interface of the host namespace, as `address/prefix`. */
async function globalAddrs(dev: string): Promise<string[]> {
  const { stdout } = await ipIn(ns.host, '-j', 'addr', 'show', 'dev', dev);
  const info =
    (JSON.parse(stdout) as { addr_info: { local: string; prefixlen: number; scope: string }[] }[])[0]?.addr_info ?? [];
  return info
    .filter((a) => a.scope === 'global')
    .map((a) => `${a.local}/${a.prefixlen}`)
    .sort();
}

/** The device of the host namespace's default route of a family. */
async function defaultDev(family: 4 | 6): Promise<string | null> {
  const { stdout } = await ipIn(ns.host, '-j', `-${family}`, 'route', 'show', 'default');
  return (JSON.parse(stdout || '[]') as { dev?: string }[])[0]?.dev ?? null;
}

async function link(dev: string): Promise<{ master?: string; address: string } | null> {
  const out = await run('ip', ['-n', ns.host, '-j', 'link', 'show', 'dev', dev], { allowFail: true });
  return out.code === 0 ? ((JSON.parse(out.stdout) as { master?: string; address: string }[])[0] ?? null) : null;
}

/** Ask for an address like a guest would (busybox udhcpc); null when nobody answers. */
async function dhcp(from: string): Promise<{ ip: string; router: string | null } | null> {
  // The script prints what dnsmasq offered: the address and the router option.
  const out = await run(
    'ip',
    [
      'netns',
      'exec',
      from,
      'busybox',
      'udhcpc',
      '-i',
      'eth0',
      '-f',
      '-q',
      '-n',
      '-t',
      '3',
      '-T',
      '1',
      '-s',
      join(state, 'udhcpc.sh'),
    ],
    { allowFail: true },
  );
  const ip = /OFFER ip=(\S+) router=(\S*)/.exec(out.stdout);
  return ip ? { ip: ip[1]!, router: ip[2] || null } : null;
}

describe.skipIf(reason !== null)('public network in network namespaces', () => {
  beforeAll(async () => {
    state = await mkdtemp(join(tmpdir(), 'floe-pub-'));
    await writeFile(
      join(state, 'udhcpc.sh'),
      '#!/bin/sh\n[ "$1" = bound ] && echo "OFFER ip=$ip router=$router"\nexit 0\n',
      { mode: 0o755 },
    );
    for (const n of Object.values(ns)) await run('ip', ['netns', 'add', n]);
    for (const n of Object.values(ns)) await ipIn(n, 'link', 'set', 'lo', 'up');
    await run('ip', [
      'link',
      'add',
      'phys0',
      'netns',
      ns.host,
      'type',
      'veth',
      'peer',
      'name',
      'eth0',
      'netns',
      ns.lan,
    ]);
    await ipIn(ns.lan, 'addr', 'add', '192.0.2.1/24', 'dev', 'eth0');
    await ipIn(ns.lan, 'addr', 'add', '2001:db8::1/64', 'dev', 'eth0', 'nodad');
    await ipIn(ns.lan, 'addr', 'add', '198.51.100.1/32', 'dev', 'lo');
    await ipIn(ns.lan, 'link', 'set', 'eth0', 'up');
    await ipIn(ns.host, 'addr', 'add', '192.0.2.10/24', 'dev', 'phys0');
    await ipIn(ns.host, 'addr', 'add', '2001:db8::10/64', 'dev', 'phys0', 'nodad');
    await ipIn(ns.host, 'link', 'set', 'phys0', 'up');
    await ipIn(ns.host, 'route', 'add', 'default', 'via', '192.0.2.1', 'dev', 'phys0');
    await ipIn(ns.host, '-6', 'route', 'add', 'default', 'via', '2001:db8::1', 'dev', 'phys0');
    await ipIn(ns.host, 'route', 'add', '198.51.100.0/24', 'via', '192.0.2.1', 'proto', 'static', 'metric', '50');
    physMac = (await link('phys0'))!.address;
    host = new HostNetworkDriver({ stateDir: join(state, 'agent'), underlay: '192.0.2.10', netns: ns.host });
    await waitFor('the host reaching its router', () => ping(ns.host, '192.0.2.1'));
  }, 30_000);

  afterAll(async () => {
    // dnsmasq first: a process inside a namespace keeps it alive after `ip netns del`.
    await host?.stopDhcp(PUB.id).catch(() => undefined);
    for (const n of Object.values(ns)) await run('ip', ['netns', 'del', n], { allowFail: true });
    if (state) await rm(state, { recursive: true, force: true });
    if (state) await rm(dnsmasqRunDir(join(state, 'agent')), { recursive: true, force: true });
  });

  it("moves the host's addresses and routes onto the bridge, keeping its MAC and connectivity", async () => {
    // A ping every 10 ms from the LAN to the host during the takeover counts what is lost.
    const pinger = run(
      'ip',
      ['netns', 'exec', ns.lan, 'ping', '-4', '-i', '0.01', '-c', '150', '-W', '1', '192.0.2.10'],
      { allowFail: true },
    );
    await sleep(400);
    const t0 = performance.now();
    expect(await host.ensureNetwork(PUB)).toBe(BR);
    const took = performance.now() - t0;
    const { stdout: out } = await pinger;
    const m = /(\d+) packets transmitted, (\d+) received/.exec(out);
    expect(m).not.toBeNull();
    const lost = Number(m![1]) - Number(m![2]);
    console.log(`takeover: ensureNetwork ${took.toFixed(0)} ms, ${lost} of ${m![1]} pings (10 ms apart) lost`);
    expect(lost).toBeLessThan(20);

    expect(await globalAddrs(BR)).toEqual(['192.0.2.10/24', '2001:db8::10/64']);
    expect(await globalAddrs('phys0')).toEqual([]);
    expect((await link('phys0'))?.master).toBe(BR);
    expect((await link(BR))?.address).toBe(physMac);
    expect(await defaultDev(4)).toBe(BR);
    expect(await defaultDev(6)).toBe(BR);
    const { stdout } = await ipIn(ns.host, '-j', 'route', 'show', '198.51.100.0/24');
    expect(JSON.parse(stdout)).toEqual([
      expect.objectContaining({ dev: BR, gateway: '192.0.2.1', protocol: 'static', metric: 50 }),
    ]);
    expect(await ping(ns.host, '192.0.2.1')).toBe(true);
    expect(await ping(ns.host, '198.51.100.1')).toBe(true);
    expect(await ping(ns.host, '2001:db8::1', { v6: true })).toBe(true);
  }, 20_000);

  it('is idempotent: a second pass finds nothing left to move', async () => {
    const c = checkNet(PUB);
    expect(takeoverCommands(c, await host.observeTakeover(c))).toEqual([['ip', 'link', 'set', BR, 'up']]);
    await host.ensureNetwork(PUB);
    expect(await globalAddrs(BR)).toEqual(['192.0.2.10/24', '2001:db8::10/64']);
    expect(await defaultDev(4)).toBe(BR);
  });

  it('gives a guest its pool address by DHCP, with the LAN router, and it reaches the LAN', async () => {
    await host.applyFirewall([PUB], [NIC]);
    const d = await host.ensureDhcp(PUB, [NIC]);
    expect(d.started).toBe(true);
    expect(d.pid).not.toBeNull();
    await run('ip', [
      'link',
      'add',
      tapName(NIC.id),
      'netns',
      ns.host,
      'type',
      'veth',
      'peer',
      'name',
      'eth0',
      'netns',
      ns.vm,
    ]);
    await ipIn(ns.vm, 'link', 'set', 'eth0', 'address', NIC.mac, 'up');
    await host.attachPort(tapName(NIC.id), PUB);
    expect(await dhcp(ns.vm)).toEqual({ ip: '192.0.2.50', router: '192.0.2.1' });
    await ipIn(ns.vm, 'addr', 'add', '192.0.2.50/24', 'dev', 'eth0');
    await ipIn(ns.vm, 'route', 'add', 'default', 'via', '192.0.2.1');
    await waitFor('the guest reaching the LAN router', () => ping(ns.vm, '192.0.2.1'));
    expect(await ping(ns.vm, '198.51.100.1')).toBe(true);
    expect(await ping(ns.vm, '192.0.2.10')).toBe(true);
  }, 20_000);

  it("does not answer DHCP for the LAN's own machines", async () => {
    expect(await dhcp(ns.lan)).toBeNull();
  }, 10_000);

  it("drops a guest's spoofed source address; its own keeps working", async () => {
    await ipIn(ns.vm, 'addr', 'add', '192.0.2.99/24', 'dev', 'eth0');
    expect(await ping(ns.vm, '192.0.2.1', { source: '192.0.2.99' })).toBe(false);
    await ipIn(ns.vm, 'addr', 'del', '192.0.2.99/24', 'dev', 'eth0');
    await ipIn(ns.vm, 'neigh', 'flush', 'dev', 'eth0');
    await waitFor('the guest with its own address', () => ping(ns.vm, '192.0.2.1'));
  }, 15_000);

  it("repairs drift: a bridge deleted by hand comes back with the host's addresses", async () => {
    await ipIn(ns.host, 'link', 'del', BR);
    // The host lost its address with the bridge.
    expect(await globalAddrs('phys0')).toEqual([]);
    expect(await ping(ns.host, '192.0.2.1')).toBe(false);
    await host.ensureNetwork(PUB);
    expect(await globalAddrs(BR)).toEqual(['192.0.2.10/24', '2001:db8::10/64']);
    expect(await defaultDev(4)).toBe(BR);
    expect((await link(BR))?.address).toBe(physMac);
    await waitFor('the host reaching its router again', () => ping(ns.host, '192.0.2.1'));
    await host.attachPort(tapName(NIC.id), PUB);
    expect((await host.ensureDhcp(PUB, [NIC])).started).toBe(true);
    await waitFor('the guest reaching the LAN again', () => ping(ns.vm, '192.0.2.1'));
    expect(await dhcp(ns.vm)).toEqual({ ip: '192.0.2.50', router: '192.0.2.1' });
  }, 20_000);

  it("skips DHCP when the host has no address in the network's subnet", async () => {
    const other: NetSpec = { ...PUB, ipv4: { cidr: '203.0.113.0/24', gateway: '203.0.113.1' } };
    const d = await host.ensureDhcp(other, [{ ...NIC, ipv4: '203.0.113.50' }]);
    expect(d).toMatchObject({ pid: null, started: false, skipped: expect.stringContaining('203.0.113.0/24') });
    expect(await host.dhcpPid(PUB.id)).toBeNull();
  });

  it('gives the addresses and routes back to the interface when the network is removed', async () => {
    await host.removeNetwork(PUB.id);
    expect(await link(BR)).toBeNull();
    expect((await link('phys0'))?.master).toBeUndefined();
    expect(await globalAddrs('phys0')).toEqual(['192.0.2.10/24', '2001:db8::10/64']);
    expect(await defaultDev(4)).toBe('phys0');
    expect(await defaultDev(6)).toBe('phys0');
    const { stdout } = await ipIn(ns.host, '-j', 'route', 'show', '198.51.100.0/24');
    expect(JSON.parse(stdout)).toEqual([expect.objectContaining({ dev: 'phys0', protocol: 'static', metric: 50 })]);
    await waitFor('the host reaching its router on phys0', () => ping(ns.host, '192.0.2.1'));
    expect(await ping(ns.host, '2001:db8::1', { v6: true })).toBe(true);
    await expect(access(join(state, 'agent', 'net', PUB.id))).rejects.toThrow();
  }, 15_000);

  it('undoes a takeover that fails halfway, and the next pass completes it', async () => {
    // The batch stops right after phys0 became a port, before the bridge has an address: the worst moment to fail.
    class FailingOnce extends HostNetworkDriver {
      failed = false;
      override async exec(argv: readonly string[], options: Parameters<HostNetworkDriver['exec']>[1] = {}) {
        if (!this.failed && argv.includes('-batch') && !argv.includes('-force') && options.input?.includes('master')) {
          this.failed = true;
          const lines = options.input.split('\n');
          const upTo = lines.findIndex((l) => l.includes(' master '));
          await super.exec(argv, { ...options, input: `${lines.slice(0, upTo + 1).join('\n')}\n` });
          throw new Error('simulated failure after enslaving');
        }
        return super.exec(argv, options);
      }
    }
    const flaky = new FailingOnce({ stateDir: join(state, 'agent'), underlay: '192.0.2.10', netns: ns.host });
    await expect(flaky.ensureNetwork(PUB)).rejects.toThrow(/simulated/);
    expect(flaky.failed).toBe(true);
    expect((await link('phys0'))?.master).toBeUndefined();
    expect(await globalAddrs('phys0')).toEqual(['192.0.2.10/24', '2001:db8::10/64']);
    expect(await defaultDev(4)).toBe('phys0');
    await waitFor('the host reaching its router after the undo', () => ping(ns.host, '192.0.2.1'));
    await flaky.ensureNetwork(PUB);
    expect(await globalAddrs(BR)).toEqual(['192.0.2.10/24', '2001:db8::10/64']);
    expect(await defaultDev(4)).toBe(BR);
    await waitFor('the host reaching its router through the bridge', () => ping(ns.host, '192.0.2.1'));
    await flaky.removeNetwork(PUB.id);
    expect(await globalAddrs('phys0')).toEqual(['192.0.2.10/24', '2001:db8::10/64']);
  }, 20_000);
});
