import { randomBytes } from 'node:crypto';
import { access, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { run, startProcess, which, type ProcessHandle } from '../../host/exec.js';
import { dnsmasqRunDir } from './dnsmasq.js';
import { HostNetworkDriver } from './driver.js';
import { inNs, ipIn, netnsUnavailable, ping, waitFor } from './testing.js';
import { eui64Address } from './ip.js';
import { bridgeName, tapName, vxlanName } from './names.js';
import type { NetSpec, NicSpec } from './types.js';

/*
 * Two "hosts" (network namespaces hA, hB) joined by a veth underlay
 * (192.0.2.0/24), an "internet" namespace behind hA's uplink
 * (198.51.100.0/24), and "VMs": namespaces whose eth0 is a veth whose other
 * end sits in the host namespace under the NIC's tap name and is plugged into
 * the bridge, standing in for a tap + QEMU (same bridge port, same firewall
 * rules, no guest image needed). Every namespace is created and deleted here;
 * no traffic leaves them.
 */

const reason = await netnsUnavailable('network namespace tests');

const sfx = randomBytes(3).toString('hex');
const ns = {
  hA: `floe-t-${sfx}-ha`,
  hB: `floe-t-${sfx}-hb`,
  inet: `floe-t-${sfx}-in`,
  vm1: `floe-t-${sfx}-v1`,
  vm2: `floe-t-${sfx}-v2`,
  vm3: `floe-t-${sfx}-v3`,
  vm4: `floe-t-${sfx}-v4`,
};

// A DHCPv6 client for the "VM" of the DHCPv6 test (Debian's dhcpcd-base); under CI it must be there.
const dhcpcd = await which('dhcpcd');
if (dhcpcd === null && reason === null) {
  if (process.env.CI) throw new Error('dhcpcd is not installed: the DHCPv6 test cannot run under CI');
  console.log('skipping the DHCPv6 test: dhcpcd is not installed (apt-get install dhcpcd-base)');
}

const NET1: NetSpec = {
  id: `net_t${sfx}a`,
  vni: 4242,
  ipv4: { cidr: '10.10.0.0/24', gateway: '10.10.0.1' },
  ipv6: { cidr: 'fd00:10::/64', gateway: 'fd00:10::1' },
  mtu: 1450,
  gatewayMode: 'host',
  dns: true,
  peers: [],
};
const NET2: NetSpec = {
  id: `net_t${sfx}b`,
  vni: 4343,
  ipv4: { cidr: '10.20.0.0/24', gateway: '10.20.0.1' },
  ipv6: null,
  mtu: 1450,
  gatewayMode: 'host',
  dns: false,
  peers: [],
};
const NET1_A: NetSpec = { ...NET1, peers: ['192.0.2.2'], natInterface: 'up0' };
const NET1_B: NetSpec = { ...NET1, peers: ['192.0.2.1'] };
const NET2_A: NetSpec = { ...NET2, natInterface: 'up0' };

function nic(n: number, net: NetSpec, ipv4: string, hostname: string): NicSpec {
  const mac = `52:54:00:00:${sfx.slice(0, 2)}:0${n}`;
  return {
    id: `nic_t${sfx}${n}`,
    instanceId: `inst_t${sfx}${n}`,
    networkId: net.id,
    mac,
    ipv4,
    ipv6: net.ipv6 ? eui64Address(net.ipv6.cidr, mac) : null,
    hostname,
  };
}
/** IPv6 only, addresses by stateful DHCPv6, no router. */
const NET3: NetSpec = {
  id: `net_t${sfx}c`,
  vni: 4444,
  ipv4: null,
  ipv6: { cidr: 'fd00:30::/64', gateway: null },
  mtu: 1450,
  gatewayMode: 'none',
  dns: false,
  peers: [],
  dhcpv6: true,
};
const NIC1 = nic(1, NET1, '10.10.0.5', 'web-1');
const NIC2 = nic(2, NET1, '10.10.0.6', 'web-2');
const NIC3 = nic(3, NET2, '10.20.0.5', 'other-1');

let state: string;
let hostA: HostNetworkDriver;
let hostB: HostNetworkDriver;

/** A "VM": namespace `vm` whose eth0 (the NIC's MAC, the network MTU) is wired to `tapName(nic)` in `host`. */
async function plugVm(vm: string, host: string, driver: HostNetworkDriver, n: NicSpec, net: NetSpec): Promise<void> {
  await run('ip', ['link', 'add', tapName(n.id), 'netns', host, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', vm]);
  await ipIn(vm, 'link', 'set', 'lo', 'up');
  await ipIn(vm, 'link', 'set', 'eth0', 'address', n.mac, 'mtu', String(net.mtu), 'up');
  await driver.attachPort(tapName(n.id), net);
}

/** Ask dnsmasq for an address like a guest would (busybox udhcpc), and configure what it offered. */
async function dhcp(vm: string, gateway: string): Promise<string> {
  const out = await inNs(
    vm,
    'busybox',
    'udhcpc',
    '-i',
    'eth0',
    '-f',
    '-q',
    '-n',
    '-t',
    '5',
    '-T',
    '1',
    '-s',
    '/bin/true',
  );
  const m = /lease of (\d+\.\d+\.\d+\.\d+) obtained/.exec(out.stdout + out.stderr);
  if (!m) throw new Error(`udhcpc got no lease: ${out.stdout}${out.stderr}`);
  await ipIn(vm, 'addr', 'add', `${m[1]}/24`, 'dev', 'eth0');
  await ipIn(vm, 'route', 'add', 'default', 'via', gateway);
  return m[1]!;
}

async function hasAddr(vm: string, addr: string): Promise<boolean> {
  const { stdout } = await ipIn(vm, '-j', 'addr', 'show', 'dev', 'eth0');
  const info = (JSON.parse(stdout) as { addr_info: { local: string; tentative?: boolean }[] }[])[0]?.addr_info ?? [];
  return info.some((a) => a.local === addr && !a.tentative);
}

describe.skipIf(reason !== null)('HostNetworkDriver in network namespaces', () => {
  beforeAll(async () => {
    state = await mkdtemp(join(tmpdir(), 'floe-net-'));
    for (const n of Object.values(ns)) await run('ip', ['netns', 'add', n]);
    for (const n of Object.values(ns)) await ipIn(n, 'link', 'set', 'lo', 'up');
    await run('ip', ['link', 'add', 'ua', 'netns', ns.hA, 'type', 'veth', 'peer', 'name', 'ub', 'netns', ns.hB]);
    await ipIn(ns.hA, 'addr', 'add', '192.0.2.1/24', 'dev', 'ua');
    await ipIn(ns.hB, 'addr', 'add', '192.0.2.2/24', 'dev', 'ub');
    await ipIn(ns.hA, 'link', 'set', 'ua', 'up');
    await ipIn(ns.hB, 'link', 'set', 'ub', 'up');
    await run('ip', ['link', 'add', 'up0', 'netns', ns.hA, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns.inet]);
    await ipIn(ns.hA, 'addr', 'add', '198.51.100.1/24', 'dev', 'up0');
    await ipIn(ns.inet, 'addr', 'add', '198.51.100.2/24', 'dev', 'eth0');
    await ipIn(ns.hA, 'link', 'set', 'up0', 'up');
    await ipIn(ns.inet, 'link', 'set', 'eth0', 'up');

    hostA = new HostNetworkDriver({ stateDir: join(state, 'a'), underlay: '192.0.2.1', netns: ns.hA });
    hostB = new HostNetworkDriver({ stateDir: join(state, 'b'), underlay: '192.0.2.2', netns: ns.hB });
    await hostA.ensureNetwork(NET1_A);
    await hostA.ensureNetwork(NET2_A);
    await hostB.ensureNetwork(NET1_B);
    await hostA.applyFirewall([NET1_A, NET2_A], [NIC1, NIC3]);
    await hostB.applyFirewall([NET1_B], [NIC2]);
    await hostA.ensureDhcp(NET1_A, [NIC1], [NIC2]);
    await hostA.ensureDhcp(NET2_A, [NIC3]);
    await hostB.ensureDhcp(NET1_B, [NIC2], [NIC1]);
    await plugVm(ns.vm1, ns.hA, hostA, NIC1, NET1_A);
    await plugVm(ns.vm2, ns.hB, hostB, NIC2, NET1_B);
    await plugVm(ns.vm3, ns.hA, hostA, NIC3, NET2_A);
  }, 40_000);

  afterAll(async () => {
    // dnsmasq first: a process inside a namespace keeps it alive after `ip netns del`.
    for (const [d, id] of [
      [hostA, NET1.id],
      [hostA, NET2.id],
      [hostB, NET1.id],
      [hostA, NET3.id],
    ] as const)
      await d?.stopDhcp(id).catch(() => undefined);
    for (const n of Object.values(ns)) await run('ip', ['netns', 'del', n], { allowFail: true });
    if (state)
      for (const d of [state, join(state, 'a'), join(state, 'b')])
        await rm(dnsmasqRunDir(d), { recursive: true, force: true });
    if (state) await rm(state, { recursive: true, force: true });
  });

  it('builds what it was asked for and is idempotent', async () => {
    const again = await hostA.ensureNetwork(NET1_A);
    expect(again).toBe(bridgeName(NET1.id));
    const o = await hostA.observe();
    expect(o.links.get(bridgeName(NET1.id))).toMatchObject({ kind: 'bridge', mtu: 1450, up: true });
    expect(o.links.get(vxlanName(NET1.id))).toMatchObject({
      kind: 'vxlan',
      vni: 4242,
      local: '192.0.2.1',
      master: bridgeName(NET1.id),
    });
    expect(o.links.get(tapName(NIC1.id))?.master).toBe(bridgeName(NET1.id));
    expect(o.floods.get(vxlanName(NET1.id))).toEqual(['192.0.2.2']);
    expect(o.addrs.get(bridgeName(NET1.id))).toEqual(expect.arrayContaining(['10.10.0.1/24', 'fd00:10::1/64']));
    const pid = await hostA.dhcpPid(NET1.id);
    expect(await hostA.ensureDhcp(NET1_A, [NIC1], [NIC2])).toEqual({ pid, started: false });
    // An agent restart: a new driver finds the running dnsmasq by its pidfile instead of starting a second one.
    const restarted = new HostNetworkDriver({ stateDir: join(state, 'a'), underlay: '192.0.2.1', netns: ns.hA });
    expect(await restarted.ensureDhcp(NET1_A, [NIC1], [NIC2])).toEqual({ pid, started: false });
    expect(pid).not.toBeNull();
  });

  it('hands each VM its pinned address by DHCP from its own host, and SLAAC by RA', async () => {
    expect(await dhcp(ns.vm1, '10.10.0.1')).toBe('10.10.0.5');
    expect(await dhcp(ns.vm2, '10.10.0.1')).toBe('10.10.0.6');
    await waitFor('SLAAC on vm1', () => hasAddr(ns.vm1, NIC1.ipv6!));
    await waitFor('SLAAC on vm2', () => hasAddr(ns.vm2, NIC2.ipv6!));
    await ipIn(ns.vm3, 'addr', 'add', '10.20.0.5/24', 'dev', 'eth0');
    await ipIn(ns.vm3, 'route', 'add', 'default', 'via', '10.20.0.1');
  }, 20_000);

  it('a NIC joining or leaving a network reloads its dnsmasq, never restarts it', async () => {
    const pid = await hostA.dhcpPid(NET1.id);
    const extra = nic(7, NET1, '10.10.0.7', 'web-7');
    expect(await hostA.ensureDhcp(NET1_A, [NIC1, extra], [NIC2])).toEqual({ pid, started: false, reloaded: true });
    // The new lease is served at once by the same process: a client with that MAC gets it.
    const probe = `floe-t-${sfx}-p7`;
    await run('ip', ['netns', 'add', probe]);
    try {
      await plugVm(probe, ns.hA, hostA, { ...extra, id: `nic_t${sfx}7` }, NET1_A);
      expect(await dhcp(probe, '10.10.0.1')).toBe('10.10.0.7');
      // Its name resolves through the same dnsmasq.
      const name = await inNs(ns.vm1, 'busybox', 'nslookup', 'web-7', '10.10.0.1');
      expect(name.stdout).toContain('10.10.0.7');
    } finally {
      await run('ip', ['netns', 'del', probe], { allowFail: true });
    }
    expect(await hostA.ensureDhcp(NET1_A, [NIC1], [NIC2])).toEqual({ pid, started: false, reloaded: true });
    expect(await hostA.ensureDhcp(NET1_A, [NIC1], [NIC2])).toEqual({ pid, started: false });
    expect(await hostA.dhcpPid(NET1.id)).toBe(pid);
  }, 30_000);

  it('connects VMs of one network across hosts over VXLAN, IPv4 and IPv6', async () => {
    expect(await ping(ns.vm1, '10.10.0.6')).toBe(true);
    expect(await ping(ns.vm2, '10.10.0.5')).toBe(true);
    expect(await ping(ns.vm1, NIC2.ipv6!, { v6: true })).toBe(true);
  });

  it('serves the names of the network, local and remote', async () => {
    const out = await inNs(ns.vm1, 'busybox', 'nslookup', 'web-2', '10.10.0.1');
    expect(out.stdout).toContain('10.10.0.6');
  });

  it('isolates networks, even through the host that routes both', async () => {
    expect(await ping(ns.vm3, '10.20.0.1')).toBe(true);
    expect(await ping(ns.vm3, '10.10.0.5')).toBe(false);
    expect(await ping(ns.vm1, '10.20.0.5')).toBe(false);
  });

  it('NATs a host-gateway network to the uplink', async () => {
    expect(await ping(ns.vm1, '198.51.100.2')).toBe(true);
    expect(await ping(ns.vm3, '198.51.100.2')).toBe(true);
    // The "internet" has no route back to 10.10.0.0/24: the reply can only have come through masquerade.
    expect(await ipIn(ns.inet, 'route', 'get', '10.10.0.5').catch(() => null)).toBeNull();
  });

  it('drops frames with a spoofed source IP or MAC; the others keep working', async () => {
    await ipIn(ns.vm1, 'addr', 'add', '10.10.0.99/24', 'dev', 'eth0');
    expect(await ping(ns.vm1, '10.10.0.6', { source: '10.10.0.99' })).toBe(false);
    expect(await ping(ns.vm2, '10.10.0.5')).toBe(true);
    await ipIn(ns.vm1, 'addr', 'del', '10.10.0.99/24', 'dev', 'eth0');
    // The guest's ARP entry may have been resolved with the spoofed source, which was dropped too.
    await ipIn(ns.vm1, 'neigh', 'flush', 'dev', 'eth0');
    await waitFor('vm1 with its own address', () => ping(ns.vm1, '10.10.0.6'));
    await ipIn(ns.vm1, 'link', 'set', 'eth0', 'address', '52:54:00:00:ee:ee');
    expect(await ping(ns.vm1, '10.10.0.6')).toBe(false);
    expect(await ping(ns.vm2, '10.10.0.1')).toBe(true);
    await ipIn(ns.vm1, 'link', 'set', 'eth0', 'address', NIC1.mac);
    await waitFor('vm1 back', () => ping(ns.vm1, '10.10.0.6'));
  }, 20_000);

  it('keeps a rogue DHCP server in a VM from reaching anybody', async () => {
    const out = join(state, 'received');
    // Listens on the DHCP client port and on a control port; writes what arrives.
    const listener = `const d=require('node:dgram'),fs=require('node:fs');for(const p of [68,1068]){const s=d.createSocket({type:'udp4',reuseAddr:true});s.on('message',(m)=>fs.appendFileSync(${JSON.stringify(out)},m+'\\n'));s.bind(p);}setTimeout(()=>process.exit(0),4000);`;
    const sender = `const d=require('node:dgram');const send=(sp,dp,msg)=>new Promise((r)=>{const s=d.createSocket('udp4');s.bind(sp,()=>{s.setBroadcast(true);s.send(msg,dp,process.argv[1],()=>{s.close();r();});});});(async()=>{await send(67,68,'rogue');await send(1067,1068,'control');})();`;
    let handle: ProcessHandle | null = null;
    try {
      handle = await startProcess('ip', ['netns', 'exec', ns.vm2, process.execPath, '-e', listener]);
      await sleep(500);
      for (const dst of ['10.10.0.6', '10.10.0.255']) await inNs(ns.vm1, process.execPath, '-e', sender, dst);
      await waitFor(
        'the control packet',
        async () => (await readFile(out, 'utf8').catch(() => '')).includes('control'),
        3000,
      );
      const got = await readFile(out, 'utf8');
      expect(got).toContain('control');
      expect(got).not.toContain('rogue');
    } finally {
      handle?.kill();
    }
  }, 15_000);

  it('repairs drift: a bridge deleted by hand comes back on the next ensure', async () => {
    await ipIn(ns.hA, 'link', 'del', bridgeName(NET1.id));
    expect(await ping(ns.vm1, '10.10.0.6')).toBe(false);
    // The NIC's port lost its bridge with it: rebuilding the network with its local NICs puts it back.
    expect((await hostA.observe([])).links.get(tapName(NIC1.id))?.master).toBeNull();
    await hostA.ensureNetwork(NET1_A, [NIC1]);
    expect((await hostA.observe([])).links.get(tapName(NIC1.id))?.master).toBe(bridgeName(NET1.id));
    const dhcpState = await hostA.ensureDhcp(NET1_A, [NIC1], [NIC2]);
    expect(dhcpState.started).toBe(true);
    await waitFor('vm1 across hosts again', () => ping(ns.vm1, '10.10.0.6'));
    expect(await ping(ns.vm1, '198.51.100.2')).toBe(true);
    expect((await hostA.observe()).floods.get(vxlanName(NET1.id))).toEqual(['192.0.2.2']);
  }, 15_000);

  it.skipIf(dhcpcd === null)(
    'with DHCPv6 hands a VM its pinned IPv6 address by DHCPv6, in managed RAs without SLAAC',
    async () => {
      // An address IPAM chose, not the EUI-64 one SLAAC would make from the MAC.
      const nic4: NicSpec = {
        id: `nic_t${sfx}4`,
        instanceId: `inst_t${sfx}4`,
        networkId: NET3.id,
        mac: `52:54:00:00:${sfx.slice(0, 2)}:04`,
        ipv4: null,
        ipv6: 'fd00:30::42',
        hostname: 'v6-1',
      };
      await hostA.ensureNetwork(NET3);
      // dnsmasq needs an address of the prefix on its interface to serve it.
      await ipIn(ns.hA, 'addr', 'replace', 'fd00:30::1/64', 'dev', bridgeName(NET3.id), 'nodad');
      await hostA.applyFirewall([NET1_A, NET2_A, NET3], [NIC1, NIC3, nic4]);
      expect((await hostA.ensureDhcp(NET3, [nic4])).started).toBe(true);
      await plugVm(ns.vm4, ns.hA, hostA, nic4, NET3);
      // dhcpcd's test mode asks and prints what it was given, without configuring anything; it keeps a DUID, removed again if it was not there.
      const duid = '/var/lib/dhcpcd/duid';
      const hadDuid = await access(duid).then(
        () => true,
        () => false,
      );
      const ask = () => inNs(ns.vm4, 'dhcpcd', '-6', '-1', '-T', '-t', '20', '--nohook', 'resolv.conf', 'eth0');
      try {
        const out = await ask();
        const vars = Object.fromEntries([...out.stdout.matchAll(/^(\w+)='([^']*)'$/gm)].map((m) => [m[1]!, m[2]!]));
        expect(vars.new_dhcp6_ia_na1_ia_addr1, out.stdout + out.stderr).toBe('fd00:30::42');
        expect(vars.nd1_flags).toContain('M');
        expect(vars.nd1_prefix_information1_flags ?? '').not.toContain('A');
        // Another VM joins: the same dnsmasq re-reads its leases and keeps serving this one.
        const pid = await hostA.dhcpPid(NET3.id);
        const other: NicSpec = {
          ...nic4,
          id: `nic_t${sfx}5`,
          mac: `52:54:00:00:${sfx.slice(0, 2)}:05`,
          ipv6: 'fd00:30::43',
          hostname: 'v6-2',
        };
        expect(await hostA.ensureDhcp(NET3, [nic4, other])).toEqual({ pid, started: false, reloaded: true });
        // The same client (same DUID) asks again.
        const again = await ask();
        expect(again.stdout).toContain("new_dhcp6_ia_na1_ia_addr1='fd00:30::42'");
        expect(await hostA.dhcpPid(NET3.id)).toBe(pid);
      } finally {
        if (!hadDuid) await rm(duid, { force: true });
      }
    },
    40_000,
  );

  it('removes a network with its dnsmasq', async () => {
    const pid = await hostA.dhcpPid(NET2.id);
    expect(pid).not.toBeNull();
    await hostA.removeNetwork(NET2.id);
    expect(await hostA.dhcpPid(NET2.id)).toBeNull();
    const o = await hostA.observe();
    expect(o.links.has(bridgeName(NET2.id))).toBe(false);
    expect(o.links.has(vxlanName(NET2.id))).toBe(false);
  });
});
