import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Instance, Nic } from '@floe/api';
import type { FloeClient } from '@floe/client';
import { run } from '@floe/process';
import { ensureTestImage } from '@floe/testkit/guest-image';
import { dnsmasqRunDir } from '../../packages/agent/src/drivers/net/dnsmasq.js';
import { bridgeName, tapName, vxlanName } from '../../packages/agent/src/drivers/net/names.js';
import type { TestControlPlane } from '../../packages/server/src/testing.js';
import { eventually, kill } from './helpers.js';
import { startTwoHosts } from './vm-host.js';
import { GuestShell, Namespaces, startAgentIn } from './netns.js';

const have = (cmd: string, ...args: string[]) => spawnSync(cmd, args, { stdio: 'ignore' }).status === 0;
const skip =
  process.getuid?.() !== 0
    ? 'needs root (network namespaces)'
    : !have('qemu-system-x86_64', '--version')
      ? 'qemu-system-x86_64 is not installed'
      : !have('dnsmasq', '--version')
        ? 'dnsmasq is not installed'
        : null;
if (skip && !process.env.CI) console.warn(`skipping networking end-to-end tests: ${skip}`);

/**
 * a's user-data: once DHCP has configured eth0, read its own documents from
 * the metadata service and print them on the console, then phone home as
 * cloud-init's phone_home would. `timeout`, because a SYN nobody answers would
 * keep wget waiting for minutes.
 */
const METADATA_SCRIPT = `#!/bin/sh
md() { timeout 5 wget -q -O - "http://169.254.169.254/$1"; }
i=0
until id=$(md latest/meta-data/instance-id); do
  i=$((i + 1)); [ "$i" -ge 60 ] && break; sleep 1
done
echo "MD instance-id $id"
echo "MD hostname $(md latest/meta-data/hostname)"
md meta-data | sed 's/^/MD meta-data /'
md user-data | head -n 1 | sed 's/^/MD user-data /'
timeout 5 wget -q -O - --post-data "instance_id=$id&hostname=$(hostname)" http://169.254.169.254/phone-home >/dev/null && echo "MD phoned home"
`;

/**
 * Networking with real VMs from the test image (QEMU, TCG), end to end: one
 * control plane in this process, two floe-agent processes each in its own
 * network namespace ("h1", "h2") linked by a veth underlay, and a namespace
 * standing in for the internet behind h1. Guests are driven through their
 * serial consoles over the API.
 *
 *   root ── cp link ── h1 ──── underlay veth ──── h2 ── cp link ── root
 *                       └── up0 ── "internet" (198.51.100.2)
 *
 * VMs: a, b (network lan) and c (network other) on h1; d (lan) on h2.
 */
describe.skipIf(skip !== null && !process.env.CI)('networking with real VMs', () => {
  const ns = new Namespaces();
  // A private /16 per run, so a run that died without cleaning up does not collide with this one.
  const base = `10.${200 + (randomBytes(1)[0]! % 50)}`;
  let h1 = '';
  let h2 = '';
  let inet = '';
  let cp: TestControlPlane;
  let client: FloeClient;
  let agents: ReturnType<typeof startAgentIn>[] = [];
  const hostIds: Record<string, string> = {};
  const agentDirs: Record<string, string> = {};
  const vms: Record<string, Instance> = {};
  const nics: Record<string, Nic> = {};
  const shells: Record<string, GuestShell> = {};
  let lanId = '';

  const placeOn = async (host: 'h1' | 'h2') => {
    await client.hosts.update(hostIds.h1!, { spec: { schedulable: host === 'h1' } });
    await client.hosts.update(hostIds.h2!, { spec: { schedulable: host === 'h2' } });
  };
  const logsOf = async (id: string) => {
    const parts: Buffer[] = [];
    for await (const chunk of client.instances.logs(id)) parts.push(chunk);
    return Buffer.concat(parts).toString('utf8');
  };
  // What the agents logged, without the retries of one failure over and over.
  let agentOutput = () => '';
  /** Wait until a guest has booted (its shell takes input only then) and announced `ip` leased by DHCP on eth0. */
  const booted = (name: string, ip: string) =>
    eventually(
      async () => {
        const log = await logsOf(name);
        return log.includes('FLOE-TEST READY') && log.includes(`FLOE-TEST IP eth0 ${ip}/24`);
      },
      `${name} booted with its IPAM address ${ip} by DHCP\n${agentOutput()}`,
      240_000,
    );
  /** Wait for an operation to succeed; on failure say what the instances and agents were doing. */
  const succeeds = async (opId: string, timeoutMs: number) => {
    let status = 'unknown';
    try {
      status = (await client.operations.wait(opId, { timeoutMs })).status;
    } catch (err) {
      status = String(err);
    }
    if (status !== 'succeeded') {
      const states = await Promise.all(
        Object.keys(vms).map(async (n) => `${n}: ${JSON.stringify((await client.instances.get(n)).status)}`),
      );
      expect.fail(`operation ${opId}: ${status}\n${states.join('\n')}\n${agentOutput()}`);
    }
  };

  beforeAll(async () => {
    const hosts = await startTwoHosts(ns, base, {
      prepare: async (one) => {
        inet = await ns.add('in');
        await ns.link(
          { ns: one, name: 'up0', addr: '198.51.100.1/24' },
          { ns: inet, name: 'eth0', addr: '198.51.100.2/24' },
        );
        await ns.exec(one, ['ip', 'route', 'add', 'default', 'via', '198.51.100.2']);
      },
    });
    ({ h1, h2, cp, client, agents, output: agentOutput } = hosts);
    Object.assign(hostIds, hosts.hostIds);
    Object.assign(agentDirs, hosts.agentDirs);

    const image = await ensureTestImage();
    await client.images.create({ name: 'floe-test' });
    await client.images.upload('floe-test', image.path);
    lanId = (await client.networks.create({ name: 'lan', ipv4: '10.10.0.0/24', ipv6: 'auto', gateway: 'host' })).id;
    await client.networks.create({ name: 'other', ipv4: '10.20.0.0/24', ipv6: 'auto', gateway: 'host' });

    const create = async (name: string, network: string, userData?: string) => {
      const { instance, operation } = await client.instances.create({
        name,
        image: 'floe-test',
        machine_type: 'nano',
        networks: [network],
        ...(userData === undefined ? {} : { user_data: userData }),
      });
      vms[name] = instance;
      return operation;
    };
    await placeOn('h1');
    const ops = [await create('a', 'lan', METADATA_SCRIPT), await create('b', 'lan'), await create('c', 'other')];
    await placeOn('h2');
    ops.push(await create('d', 'lan'));
    await client.hosts.update(hostIds.h1!, { spec: { schedulable: true } });
    for (const op of ops) await succeeds(op.id, 180_000);
    for (const name of Object.keys(vms)) {
      const list = await client.instances.nics(name);
      expect(list).toHaveLength(1);
      nics[name] = list[0]!;
      shells[name] = new GuestShell(client, name);
    }
    // Every guest announces its DHCP lease on the console: it must be the address IPAM gave its NIC.
    await Promise.all(Object.keys(vms).map((name) => booted(name, nics[name]!.ipv4!)));
  }, 420_000);

  afterAll(async () => {
    for (const s of Object.values(shells)) s.close();
    // Deleting through the API stops the VMs; the namespace cleanup kills whatever is left.
    if (client) {
      await Promise.all(
        Object.keys(vms).map((name) => client.instances.delete(name, { wait: 30 }).catch(() => undefined)),
      );
    }
    for (const a of agents) await kill(a);
    // FLOE_TEST_AGENT_LOG=<prefix> keeps each agent's whole log as <prefix>.<n>.
    if (process.env.FLOE_TEST_AGENT_LOG)
      agents.forEach((a, i) => writeFileSync(`${process.env.FLOE_TEST_AGENT_LOG}.${i}`, a.output()));
    await cp?.close();
    await ns.cleanup();
    // What the agents' dnsmasq re-read lives under /run, outside their data directories.
    for (const d of Object.values(agentDirs))
      await rm(dnsmasqRunDir(path.resolve(d)), { recursive: true, force: true });
  }, 120_000);

  it('two VMs on one network take their IPAM addresses by DHCP and ping each other over IPv4 and IPv6', async () => {
    expect(nics.a!.ipv4).toMatch(/^10\.10\.0\.\d+$/);
    expect(nics.a!.ipv4).not.toBe(nics.b!.ipv4);
    const v4 = await shells.a!.sh(`ping -c 2 -W 3 ${nics.b!.ipv4}`);
    expect(v4.code, v4.out).toBe(0);
    // SLAAC from the host's router advertisements: the EUI-64 address IPAM recorded.
    for (const name of ['a', 'b']) {
      await shells[name]!.until(
        `ip -6 addr show dev eth0 | grep -v tentative | grep -F ' ${nics[name]!.ipv6}/64'`,
        `${name}'s IPv6 address ${nics[name]!.ipv6}`,
      );
    }
    const v6 = await shells.a!.sh(`ping -6 -c 2 -W 3 ${nics.b!.ipv6}`);
    expect(v6.code, v6.out).toBe(0);
    // Names of the network's instances resolve through the host's dnsmasq.
    const dns = await shells.a!.sh('nslookup b 10.10.0.1');
    expect(dns.out).toContain(nics.b!.ipv4);
  }, 120_000);

  it("the metadata service: a guest reads its own documents at boot and phones home; it gets nothing of another's", async () => {
    const log = await logsOf('a');
    expect(log).toContain(`MD instance-id ${vms.a!.id}`);
    expect(log).toMatch(/MD hostname a\r?\n/);
    expect(log).toContain(`MD meta-data instance-id: ${vms.a!.id}`);
    expect(log).toContain('MD user-data #!/bin/sh');
    expect(log).toContain('MD phoned home');
    // The agent recorded a's first fetch and its phone_home in a's status. (The seed disk may have been seen first.)
    await eventually(
      async () => {
        const fb = (await client.instances.get('a')).status.first_boot;
        return fb.fetched_at !== null && fb.finished_at !== null && fb.result === 'ok';
      },
      `a's first boot in its status: ${JSON.stringify((await client.instances.get('a')).status.first_boot)}`,
      30_000,
    );
    // Each guest gets its own, on either host; the path names no VM, and the ports are out of reach.
    for (const name of ['b', 'd']) {
      const own = await shells[name]!.sh('timeout 5 wget -q -O - http://169.254.169.254/latest/meta-data/instance-id');
      expect(own.out.trim(), own.out).toBe(vms[name]!.id);
    }
    const other = await shells.b!.sh(`timeout 5 wget -q -O - http://169.254.169.254/${vms.a!.id}/meta-data`);
    expect(other.code, other.out).not.toBe(0);
    // h1 has three NICs (a, b, c): their ports are the first three of the range.
    const ports = await shells.b!.sh(
      'for p in 20000 20001 20002; do timeout 2 wget -q -O - http://10.10.0.1:$p/meta-data && echo LEAK; done; true',
    );
    expect(ports.out).not.toContain('LEAK');
    expect(ports.out).not.toContain('instance-id');
  }, 120_000);

  it('a VM on another network cannot reach them', async () => {
    const v4 = await shells.c!.sh(`ping -c 2 -W 2 ${nics.a!.ipv4}`);
    expect(v4.code, v4.out).not.toBe(0);
    const v6 = await shells.c!.sh(`ping -6 -c 2 -W 2 ${nics.a!.ipv6}`);
    expect(v6.code, v6.out).not.toBe(0);
    // c itself is fine: it reaches its own gateway.
    const own = await shells.c!.sh('ping -c 1 -W 3 10.20.0.1');
    expect(own.code, own.out).toBe(0);
  }, 60_000);

  it('with the host gateway a VM reaches an address in the internet namespace (NAT)', async () => {
    const r = await shells.a!.sh('ping -c 2 -W 3 198.51.100.2');
    expect(r.code, r.out).toBe(0);
    // The internet namespace has no route to the private network: only NAT on h1's uplink lets the answer back.
    const back = await ns.exec(inet, ['ip', 'route', 'get', nics.a!.ipv4!], { allowFail: true });
    expect(back.code, back.stdout).not.toBe(0);
  }, 60_000);

  it('two hosts: VMs of one network on different hosts ping each other over VXLAN', async () => {
    expect((await client.instances.get('d')).status.host).toBe(hostIds.h2);
    expect((await client.instances.get('a')).status.host).toBe(hostIds.h1);
    const v4 = await shells.d!.sh(`ping -c 2 -W 3 ${nics.a!.ipv4}`);
    expect(v4.code, v4.out).toBe(0);
    await shells.d!.until(
      `ip -6 addr show dev eth0 | grep -v tentative | grep -F ' ${nics.d!.ipv6}/64'`,
      "d's IPv6 address",
    );
    const v6 = await shells.d!.sh(`ping -6 -c 2 -W 3 ${nics.a!.ipv6}`);
    expect(v6.code, v6.out).toBe(0);
    // The traffic crossed the underlay: h1's VXLAN device for lan has a flood entry towards h2.
    const fdb = await ns.exec(h1, ['bridge', 'fdb', 'show', 'dev', vxlanName(lanId)], { allowFail: true });
    expect(fdb.stdout).toContain(`dst ${base}.0.2`);
  }, 120_000);

  it('a NIC hot-added to a running VM appears in the guest and gets its address; hot-remove takes it away', async () => {
    const { nic, operation } = await client.instances.addNic('a', { network: 'other' });
    await succeeds(operation.id, 120_000);
    expect(nic.ipv4).toMatch(/^10\.20\.0\.\d+$/);
    await shells.a!.until(`ip -4 addr show dev eth1 | grep -F ' ${nic.ipv4}/24'`, `eth1 with ${nic.ipv4}`, 120_000);
    // On the other network now: c is reachable through the new NIC.
    const r = await shells.a!.sh(`ping -c 2 -W 3 ${nics.c!.ipv4}`);
    expect(r.code, r.out).toBe(0);

    await succeeds((await client.instances.removeNic('a', nic.id)).id, 150_000);
    await shells.a!.until('! test -e /sys/class/net/eth1', 'eth1 to disappear', 60_000);
    // The test guest's DHCP client moved its default route to eth1, which took it along: give a its route on lan back.
    const lan = await client.networks.get('lan');
    await shells.a!.sh(`ip route replace default via ${lan.status.gateway4} dev eth0`);
    await shells.a!.until(
      `ip route | grep -q "default via ${lan.status.gateway4} dev eth0"`,
      'a default route on eth0 again',
      10_000,
    );
    // Its tap is gone from the host too.
    const links = await ns.exec(h1, ['ip', '-o', 'link', 'show']);
    expect(links.stdout).not.toContain(`${tapName(nic.id)}:`);
  }, 300_000);

  it('a VM as the gateway: guests route through it, it may forward for others on its network, the host routes nothing', async () => {
    await client.networks.create({ name: 'behind', ipv4: '10.30.0.0/24', gateway: '10.30.0.254' });
    await placeOn('h1');
    const made = await Promise.all([
      client.instances.create({
        name: 'fw',
        image: 'floe-test',
        machine_type: 'nano',
        networks: [{ network: 'behind', ipv4: '10.30.0.254' }],
      }),
      client.instances.create({ name: 'g', image: 'floe-test', machine_type: 'nano', networks: ['behind'] }),
    ]);
    await client.hosts.update(hostIds.h2!, { spec: { schedulable: true } });
    for (const m of made) vms[m.instance.name] = m.instance;
    try {
      for (const m of made) await succeeds(m.operation.id, 180_000);
      const [gNic] = await client.instances.nics('g');
      // Next-free skipped the router's address: only fw, which asked, has it.
      expect(gNic!.ipv4).not.toBe('10.30.0.254');
      // Both booted (their shells take input only then) with their leases.
      await Promise.all([booted('fw', '10.30.0.254'), booted('g', gNic!.ipv4!)]);
      shells.fw = new GuestShell(client, 'fw');
      shells.g = new GuestShell(client, 'g');
      // DHCP named fw as g's router.
      await shells.g.until('ip route | grep -q "default via 10.30.0.254"', 'a default route via fw', 60_000);
      await shells.g.until('ping -c 1 -W 3 10.30.0.254', 'g reaching fw', 30_000);
      // fw answers from an address that is not its own (as a router forwarding for others would), and g hears it;
      // any other VM doing so is dropped (the spoofing test).
      await shells.fw.sh('ip addr add 10.30.0.77/24 dev eth0');
      const forwarded = await shells.fw.sh(`ping -I 10.30.0.77 -c 2 -W 3 ${gNic!.ipv4}`);
      expect(forwarded.code, forwarded.out).toBe(0);
      // The host routes nothing for this network: the internet namespace stays out of reach.
      const out = await shells.g.sh('ping -c 1 -W 2 198.51.100.2');
      expect(out.code, out.out).not.toBe(0);
    } finally {
      for (const n of ['fw', 'g']) {
        shells[n]?.close();
        delete shells[n];
      }
      await Promise.all(['fw', 'g'].map(async (n) => client.instances.delete(n, { wait: 60 }).catch(() => undefined)));
      delete vms.fw;
      delete vms.g;
      await eventually(
        async () =>
          await client.networks.delete('behind').then(
            () => true,
            () => false,
          ),
        'network behind deleted',
        60_000,
      );
    }
  }, 300_000);

  it('a guest that changes its IP or MAC loses connectivity; other VMs are unaffected', async () => {
    // Control: b reaches a with its own addresses.
    expect((await shells.b!.sh(`ping -c 1 -W 3 ${nics.a!.ipv4}`)).code).toBe(0);
    // A second IPv4 address that IPAM never gave b.
    await shells.b!.sh('ip addr add 10.10.0.77/24 dev eth0');
    const spoofIp = await shells.b!.sh(`ping -I 10.10.0.77 -c 2 -W 2 ${nics.a!.ipv4}`);
    await shells.b!.sh('ip addr del 10.10.0.77/24 dev eth0');
    expect(spoofIp.code, spoofIp.out).not.toBe(0);
    // Another MAC on b's NIC.
    const spoofMac = await shells.b!.sh(
      `ip link set eth0 down; ip link set eth0 address 02:00:5e:00:00:99; ip link set eth0 up; ping -c 2 -W 2 ${nics.a!.ipv4}`,
    );
    expect(spoofMac.code, spoofMac.out).not.toBe(0);
    // Others are unaffected: a and d still talk across hosts.
    const others = await shells.a!.sh(`ping -c 2 -W 3 ${nics.d!.ipv4}`);
    expect(others.code, others.out).toBe(0);
    // Back to its own MAC, b works again.
    await shells.b!.sh(`ip link set eth0 down; ip link set eth0 address ${nics.b!.mac}; ip link set eth0 up`);
    await shells.b!.until(`ping -c 1 -W 3 ${nics.a!.ipv4}`, 'b reaching a with its own MAC again');
  }, 180_000);

  it('a rogue DHCP server in a guest reaches nobody', async () => {
    // b serves DHCP on lan (busybox udhcpd, dynamic range, itself as router).
    const conf = [
      'start 10.10.0.150',
      'end 10.10.0.160',
      'interface eth0',
      `option router ${nics.b!.ipv4}`,
      'option subnet 255.255.255.0',
      'lease_file /run/rogue.leases',
    ]
      .map((l) => `echo '${l}' >>/run/rogue.conf`)
      .join('; ');
    await shells.b!.sh(`rm -f /run/rogue.conf; touch /run/rogue.leases; ${conf}; udhcpd /run/rogue.conf`);
    expect((await shells.b!.sh('pidof udhcpd')).code).toBe(0);
    // A client the host's dnsmasq does not know (static leases only): plugged into lan's bridge on h1
    // through a veth that floe does not filter, it would take any offer that reaches it.
    const probe = await ns.add('pr');
    await ns.link({ ns: h1, name: 'probe0' }, { ns: probe, name: 'eth0' });
    await ns.exec(h1, ['ip', 'link', 'set', 'probe0', 'master', bridgeName(lanId), 'up']);
    const dhcp = await ns.exec(
      probe,
      ['busybox', 'udhcpc', '-i', 'eth0', '-f', '-q', '-n', '-t', '4', '-T', '2', '-s', '/bin/true'],
      { allowFail: true, timeoutMs: 30_000 },
    );
    expect(dhcp.code, `${dhcp.stdout}${dhcp.stderr}`).not.toBe(0);
    expect(`${dhcp.stdout}${dhcp.stderr}`).not.toMatch(/lease of 10\.10\.0\.1[56]\d/);
    await shells.b!.sh('killall udhcpd');
    // Control: the probe does take an offer that reaches it, from a DHCP server on an unfiltered port of the same bridge.
    const server = await ns.add('ds');
    await ns.link({ ns: h1, name: 'dhcps0' }, { ns: server, name: 'eth0', addr: '10.10.0.250/24' });
    await ns.exec(h1, ['ip', 'link', 'set', 'dhcps0', 'master', bridgeName(lanId), 'up']);
    const dir = await mkdtemp(path.join(os.tmpdir(), 'floe-dhcpd-'));
    await writeFile(
      path.join(dir, 'udhcpd.conf'),
      `start 10.10.0.240\nend 10.10.0.245\ninterface eth0\nlease_file ${dir}/leases\n`,
    );
    await writeFile(path.join(dir, 'leases'), '');
    // Forks into the background inside the namespace; the namespace cleanup ends it.
    await ns.exec(server, ['busybox', 'udhcpd', path.join(dir, 'udhcpd.conf')]);
    const ok = await ns.exec(
      probe,
      ['busybox', 'udhcpc', '-i', 'eth0', '-f', '-q', '-n', '-t', '4', '-T', '2', '-s', '/bin/true'],
      { allowFail: true, timeoutMs: 30_000 },
    );
    expect(ok.code, `${ok.stdout}${ok.stderr}`).toBe(0);
  }, 120_000);

  it('an agent restart leaves traffic flowing and adopts what runs', async () => {
    const dnsmasqOf = async (netns: string) => {
      const pids = (await run('ip', ['netns', 'pids', netns])).stdout.split(/\s+/).filter(Boolean);
      const named = await Promise.all(
        pids.map(async (p) =>
          (await readFile(`/proc/${p}/comm`, 'utf8').catch(() => '')).trim() === 'dnsmasq' ? p : null,
        ),
      );
      return named.filter((p): p is string => p !== null).sort();
    };
    const before = await dnsmasqOf(h1);
    expect(before.length).toBeGreaterThan(0);
    // The console rides the agent's link, so the guest pings in the background while h1's agent is killed and started again.
    await shells.a!.sh(`(ping -c 20 -i 0.5 -W 2 ${nics.b!.ipv4} >/run/ping.out 2>&1 &)`);
    await new Promise((r) => setTimeout(r, 2000));
    await kill(agents[0]!);
    agents[0] = startAgentIn(h1, cp.url, agentDirs.h1!, `${base}.0.1`);
    await eventually(
      async () => (await client.hosts.get(hostIds.h1!)).status.state === 'online',
      'h1 online again',
      60_000,
    );
    const out = await shells.a!.until(
      'grep -q "packets transmitted" /run/ping.out && cat /run/ping.out',
      'the background ping to end',
      60_000,
    );
    expect(out).toMatch(/20 packets transmitted, 20 (packets )?received/);
    // The same dnsmasq processes, adopted rather than started twice.
    await new Promise((res) => setTimeout(res, 2000));
    expect(await dnsmasqOf(h1)).toEqual(before);
    // The metadata service came back with the agent: the running guest reads its data again.
    const md = await shells.a!.until(
      'timeout 5 wget -q -O - http://169.254.169.254/latest/meta-data/instance-id',
      'a reading its metadata after the agent restart',
      60_000,
    );
    expect(md.trim()).toBe(vms.a!.id);
  }, 120_000);

  it('repairs drift: a bridge deleted by hand comes back with its taps, and the VMs talk again', async () => {
    const ifindex = async () =>
      (
        JSON.parse((await ns.exec(h1, ['ip', '-j', 'link', 'show', 'dev', bridgeName(lanId)])).stdout) as {
          ifindex: number;
        }[]
      )[0]!.ifindex;
    const before = await ifindex();
    await ns.exec(h1, ['ip', 'link', 'del', bridgeName(lanId)]);
    // No message from the control plane: the agent's resync (every 2 s here, faster than a ping through the serial
    // console, so the gap itself is not observed) finds the bridge missing, rebuilds it and plugs a's and b's taps back in.
    await shells.a!.until(`ping -c 1 -W 2 ${nics.b!.ipv4}`, 'a reaching b again', 60_000);
    // A new bridge, not the old one surviving the delete.
    expect(await ifindex()).not.toBe(before);
    const master = await ns.exec(h1, ['ip', '-j', 'link', 'show', 'dev', tapName(nics.b!.id)]);
    expect((JSON.parse(master.stdout) as { master?: string }[])[0]?.master).toBe(bridgeName(lanId));
    // Across hosts too: the VXLAN device came back with its flood entry.
    await shells.a!.until(`ping -c 1 -W 2 ${nics.d!.ipv4}`, 'a reaching d on h2 again', 60_000);
  }, 150_000);

  it('a public network bridged to a host interface: a VM gets a pool address by DHCP and talks with the LAN; removal gives the host its address back', async () => {
    // h2's "physical" interface phys0 with the host's LAN address, and a LAN namespace with the router.
    const lan = await ns.add('ln');
    await ns.link({ ns: h2, name: 'phys0', addr: '192.0.2.10/24' }, { ns: lan, name: 'eth0', addr: '192.0.2.1/24' });
    const physAddrs = async (dev: string) => {
      const out = await ns.exec(h2, ['ip', '-j', '-4', 'addr', 'show', 'dev', dev], { allowFail: true });
      if (out.code !== 0) return null;
      return (
        (JSON.parse(out.stdout || '[]') as { addr_info?: { local: string; prefixlen: number }[] }[])[0]?.addr_info ?? []
      ).map((a) => `${a.local}/${a.prefixlen}`);
    };
    const pub = await client.networks.create({
      name: 'pub',
      kind: 'public',
      ipv4: '192.0.2.0/24',
      gateway: '192.0.2.1',
      pool: { start: '192.0.2.50', end: '192.0.2.59' },
      uplink: 'phys0',
    });
    await placeOn('h2');
    const { instance, operation } = await client.instances.create({
      name: 'e',
      image: 'floe-test',
      machine_type: 'nano',
      networks: ['pub'],
    });
    vms.e = instance;
    await client.hosts.update(hostIds.h1!, { spec: { schedulable: true } });
    await succeeds(operation.id, 180_000);
    const [nic] = await client.instances.nics('e');
    expect(nic!.ipv4).toMatch(/^192\.0\.2\.5\d$/);
    shells.e = new GuestShell(client, 'e');
    // Booted (its shell takes input only then) with its lease.
    await booted('e', nic!.ipv4!);
    // The host's address moved onto the bridge, which carries phys0's MAC.
    expect(await physAddrs(bridgeName(pub.id))).toEqual(['192.0.2.10/24']);
    expect(await physAddrs('phys0')).toEqual([]);
    // The guest reaches the LAN's router and the host; the LAN reaches the guest, with no NAT in between.
    const r = await shells.e.sh('ping -c 2 -W 3 192.0.2.1');
    expect(r.code, r.out).toBe(0);
    expect((await shells.e.sh('ping -c 1 -W 3 192.0.2.10')).code).toBe(0);
    const fromLan = await ns.exec(lan, ['ping', '-c', '2', '-W', '3', nic!.ipv4!], { allowFail: true });
    expect(fromLan.code, fromLan.stdout).toBe(0);
    // The anti-spoofing rules hold on a public bridge too.
    await shells.e.sh('ip addr add 192.0.2.99/24 dev eth0');
    const spoof = await shells.e.sh('ping -I 192.0.2.99 -c 2 -W 2 192.0.2.1');
    expect(spoof.code, spoof.out).not.toBe(0);

    shells.e.close();
    delete shells.e;
    await succeeds((await client.instances.delete('e')).id, 120_000);
    delete vms.e;
    await client.networks.delete('pub');
    // The address goes back to phys0 first, then the bridge is deleted.
    await eventually(
      async () => JSON.stringify(await physAddrs('phys0')) === '["192.0.2.10/24"]',
      "the host's address back on phys0",
      30_000,
    );
    await eventually(
      async () => (await physAddrs(bridgeName(pub.id))) === null,
      'the public bridge gone from h2',
      30_000,
    );
    expect((await ns.exec(lan, ['ping', '-c', '1', '-W', '3', '192.0.2.10'], { allowFail: true })).code).toBe(0);
  }, 300_000);

  it('a network with NICs cannot be deleted; its last member leaving a host takes its bridge away', async () => {
    await expect(client.networks.delete('other')).rejects.toMatchObject({ status: 409 });
    const otherId = (await client.networks.get('other')).id;
    const links = async () => (await ns.exec(h1, ['ip', '-o', 'link', 'show'])).stdout;
    expect(await links()).toContain(`${bridgeName(otherId)}:`);
    await succeeds((await client.instances.delete('c')).id, 120_000);
    delete vms.c;
    await eventually(
      async () => !(await links()).includes(`${bridgeName(otherId)}:`),
      'the bridge of other to go from h1',
      30_000,
    );
    expect(await links()).not.toContain(`${vxlanName(otherId)}:`);
    await client.networks.delete('other');
    await expect(client.networks.get('other')).rejects.toMatchObject({ status: 404 });
  }, 180_000);
});
