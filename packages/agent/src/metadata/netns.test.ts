import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DesiredInstance, DesiredNic } from '@floe/api';
import { desiredInstance } from '@floe/testkit';
import { run } from '../host/exec.js';
import { dnsmasqRunDir } from '../drivers/net/dnsmasq.js';
import { HostNetworkDriver } from '../drivers/net/driver.js';
import { inNs, ipIn, netnsUnavailable, waitFor } from '../drivers/net/testing.js';
import { bridgeName, tapName } from '../drivers/net/names.js';
import type { NetSpec, NicSpec } from '../drivers/net/types.js';
import { NOCLOUD_NET_SERIAL } from '../drivers/vm/qemu/argv.js';
import { seedFiles } from '../drivers/vm/seed.js';
import { MetadataService } from './service.js';

/*
 * The metadata service with real nftables in namespaces: a "host" namespace
 * with a floe bridge (built by the host network driver, anti-spoofing rules
 * included) and the service running as a process inside it, two "guests"
 * (namespaces on veths standing in for taps) and a "LAN" namespace on an
 * unfiltered port of the bridge. Everything is made and removed here.
 */

const reason = await netnsUnavailable('metadata namespace tests');
const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../../../..');

/**
 * Real cloud-init (Debian's 22.4 package) for the Python probe: installed, or
 * its files extracted somewhere (`dpkg -x cloud-init_*.deb DIR`, then
 * FLOE_CLOUD_INIT_PYTHONPATH=DIR/usr/lib/python3/dist-packages) with its
 * Python dependencies (python3-yaml, -requests, -jinja2, -jsonschema, -configobj, -oauthlib).
 */
const PYTHON = process.env.FLOE_CLOUD_INIT_PYTHON ?? '/usr/bin/python3';
const PYTHONPATH = process.env.FLOE_CLOUD_INIT_PYTHONPATH ?? '';
const cloudInit =
  reason !== null
    ? null
    : (
        await run(
          'env',
          [`PYTHONPATH=${PYTHONPATH}`, PYTHON, '-c', 'import cloudinit.user_data, cloudinit.config.cc_phone_home'],
          { allowFail: true },
        ).catch(() => null)
      )?.code === 0;
// The acceptance test (test/e2e/cloud-init.test.ts) boots a real image whose cloud-init reads the service; this probe is the quick check without a VM.
if (reason === null && !cloudInit)
  console.log('skipping the cloud-init probe: cloud-init is not importable (see FLOE_CLOUD_INIT_PYTHONPATH)');
const sfx = randomBytes(3).toString('hex');
const ns = {
  host: `floe-m-${sfx}-h`,
  vm1: `floe-m-${sfx}-1`,
  vm2: `floe-m-${sfx}-2`,
  lan: `floe-m-${sfx}-l`,
  router: `floe-m-${sfx}-r`,
};
const PORTS = { first: 21000, last: 21099 };

const NET: NetSpec = {
  id: `net_m${sfx}`,
  vni: 4545,
  ipv4: { cidr: '10.10.0.0/24', gateway: '10.10.0.1' },
  ipv6: { cidr: 'fd00:10::/64', gateway: 'fd00:10::1' },
  mtu: 1450,
  gatewayMode: 'host',
  dns: false,
  peers: [],
};
// Instance ids as the seed wants them (ULID alphabet, upper case).
const ulid = (n: number) =>
  `01JB8X0Q3E6M2T9K4V7W5YB${sfx
    .toUpperCase()
    .replace(/[ILOU]/g, 'X')
    .slice(0, 2)}${n}`;
const nicSpec = (n: number, ipv4: string, ipv6: string | null): NicSpec => ({
  id: `nic_m${sfx}${n}`,
  instanceId: `inst_${ulid(n)}`,
  networkId: NET.id,
  mac: `02:00:00:${sfx.slice(0, 2)}:00:0${n}`,
  ipv4,
  ipv6,
  hostname: `vm-${n}`,
});
const NIC1 = nicSpec(1, '10.10.0.5', 'fd00:10::5');
const NIC2 = nicSpec(2, '10.10.0.6', null);
const desiredNic = (n: NicSpec): DesiredNic => ({
  id: n.id,
  network_id: NET.id,
  vni: NET.vni,
  index: 0,
  mac: n.mac,
  ipv4: n.ipv4,
  ipv4_prefix: 24,
  ipv6: n.ipv6,
  ipv6_prefix: n.ipv6 === null ? null : 64,
  gateway4: '10.10.0.1',
  gateway6: n.ipv6 === null ? null : 'fd00:10::1',
  mtu: NET.mtu,
  dns_servers: [],
});
const VM1 = desiredInstance({
  id: NIC1.instanceId,
  name: 'vm-1',
  nics: [desiredNic(NIC1)],
  spec: { user_data: '#!/bin/sh\necho one\n', ssh_keys: ['ssh-ed25519 AAAAkey1 one@x'] },
});
const VM2 = desiredInstance({
  id: NIC2.instanceId,
  name: 'vm-2',
  nics: [desiredNic(NIC2)],
  spec: { user_data: '#!/bin/sh\necho two\n' },
});

/** The metadata service as a process in the host namespace, fed states on stdin. */
class Service {
  private out = '';
  private readonly child: ChildProcess;
  constructor() {
    this.child = spawn(
      'ip',
      [
        'netns',
        'exec',
        ns.host,
        process.execPath,
        '--conditions=floe-source',
        '--import',
        'tsx',
        join(ROOT, 'packages/agent/src/metadata/netns-fixture.ts'),
      ],
      {
        cwd: ROOT,
        stdio: ['pipe', 'pipe', 'pipe'],
      },
    );
    this.child.stdout!.on('data', (d) => {
      this.out += String(d);
    });
    this.child.stderr!.on('data', (d) => {
      this.out += String(d);
    });
  }

  /** Apply a state; resolves with the NIC ports once applied. */
  async apply(instances: DesiredInstance[], vendorData?: string): Promise<Record<string, number>> {
    const before = this.lines().filter((l) => 'ready' in l).length;
    this.child.stdin!.write(`${JSON.stringify({ instances, ports: PORTS, vendorData })}\n`);
    await waitFor(
      `the metadata service to apply a state\n${this.out}`,
      async () => this.lines().filter((l) => 'ready' in l).length > before,
      20_000,
    );
    return (
      this.lines()
        .filter((l) => 'ready' in l)
        .at(-1) as { ready: Record<string, number> }
    ).ready;
  }

  events(): Array<{ instance: string; event: { type: string; result?: string } }> {
    return this.lines()
      .filter((l) => 'first_boot' in l)
      .map((l) => (l as { first_boot: never }).first_boot);
  }

  private lines(): object[] {
    return this.out
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as object);
  }

  async stop(): Promise<void> {
    if (this.child.exitCode !== null) return;
    const exited = new Promise((r) => this.child.once('exit', r));
    this.child.kill('SIGTERM');
    await Promise.race([exited, new Promise((r) => setTimeout(r, 5000))]);
    this.child.kill('SIGKILL');
  }
}

/**
 * GET (or POST a form) from inside a namespace with busybox wget, given 3 s;
 * the body, or null when it failed. (wget's own -T crashes Debian's busybox 1.35.)
 */
async function get(from: string, url: string, form?: string): Promise<string | null> {
  const args = [
    'netns',
    'exec',
    from,
    'busybox',
    'wget',
    '-q',
    '-O',
    '-',
    ...(form === undefined ? [] : ['--post-data', form]),
    url,
  ];
  const r = await run('ip', args, { allowFail: true, timeoutMs: 3000 }).catch(() => null);
  return r === null || r.code !== 0 ? null : r.stdout;
}

let state: string;
let host: HostNetworkDriver;
let service: Service | null = null;
let ports: Record<string, number> = {};
let routerHttp: ChildProcess | null = null;

describe.skipIf(reason !== null)('metadata service in network namespaces', () => {
  beforeAll(async () => {
    state = await mkdtemp(join(tmpdir(), 'floe-meta-'));
    for (const n of Object.values(ns)) await run('ip', ['netns', 'add', n]);
    for (const n of Object.values(ns)) await ipIn(n, 'link', 'set', 'lo', 'up');
    host = new HostNetworkDriver({ stateDir: join(state, 'h'), underlay: '192.0.2.1', netns: ns.host });
    await host.ensureNetwork(NET);
    await host.applyFirewall([NET], [NIC1, NIC2]);
    for (const [vm, n] of [
      [ns.vm1, NIC1],
      [ns.vm2, NIC2],
    ] as const) {
      await run('ip', [
        'link',
        'add',
        tapName(n.id),
        'netns',
        ns.host,
        'type',
        'veth',
        'peer',
        'name',
        'eth0',
        'netns',
        vm,
      ]);
      await ipIn(vm, 'link', 'set', 'eth0', 'address', n.mac, 'mtu', String(NET.mtu), 'up');
      await ipIn(vm, 'addr', 'add', `${n.ipv4}/24`, 'dev', 'eth0');
      if (n.ipv6 !== null) await ipIn(vm, 'addr', 'add', `${n.ipv6}/64`, 'dev', 'eth0', 'nodad');
      await host.attachPort(tapName(n.id), NET);
    }
    // vm1 routes through the host; vm2 through a router VM that is not even there (its MAC is all the guest knows).
    await ipIn(ns.vm1, 'route', 'add', 'default', 'via', '10.10.0.1');
    await ipIn(ns.vm1, '-6', 'route', 'add', 'default', 'via', 'fd00:10::1');
    await ipIn(ns.vm2, 'neigh', 'add', '10.10.0.254', 'lladdr', '02:00:00:00:00:fe', 'nud', 'permanent', 'dev', 'eth0');
    await ipIn(ns.vm2, 'route', 'add', 'default', 'via', '10.10.0.254');
    // The LAN side: a port of the bridge floe does not filter, with a route to the metadata address via the host.
    await run('ip', ['link', 'add', 'lan0', 'netns', ns.host, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns.lan]);
    await ipIn(ns.host, 'link', 'set', 'lan0', 'master', bridgeName(NET.id), 'up');
    await ipIn(ns.lan, 'addr', 'add', '10.10.0.50/24', 'dev', 'eth0');
    await ipIn(ns.lan, 'link', 'set', 'eth0', 'up');
    await ipIn(ns.lan, 'route', 'add', '169.254.169.254/32', 'via', '10.10.0.1');
    // vm2's router: a namespace with its MAC on another unfiltered port, holding 169.254.169.254 itself and serving
    // HTTP on it (ports 80 and 8080), as a cloud's own metadata service behind a host would.
    await run('ip', [
      'link',
      'add',
      'rt0',
      'netns',
      ns.host,
      'type',
      'veth',
      'peer',
      'name',
      'eth0',
      'netns',
      ns.router,
    ]);
    await ipIn(ns.host, 'link', 'set', 'rt0', 'master', bridgeName(NET.id), 'up');
    await ipIn(ns.router, 'link', 'set', 'eth0', 'address', '02:00:00:00:00:fe', 'up');
    await ipIn(ns.router, 'addr', 'add', '10.10.0.254/24', 'dev', 'eth0');
    await ipIn(ns.router, 'addr', 'add', '169.254.169.254/32', 'dev', 'lo');
    routerHttp = spawn(
      'ip',
      [
        'netns',
        'exec',
        ns.router,
        process.execPath,
        '-e',
        "const h=require('http');for(const p of [80,8080])h.createServer((q,r)=>r.end('router\\n')).listen(p)",
      ],
      { stdio: 'ignore' },
    );
    await waitFor(
      "the router's HTTP server",
      async () => (await get(ns.vm2, 'http://10.10.0.254:8080/')) === 'router\n',
    );
    service = new Service();
    ports = await service.apply([VM1, VM2]);
  }, 60_000);

  afterAll(async () => {
    await service?.stop();
    routerHttp?.kill('SIGKILL');
    for (const n of Object.values(ns)) await run('ip', ['netns', 'del', n], { allowFail: true });
    if (state) {
      await rm(state, { recursive: true, force: true });
      await rm(dnsmasqRunDir(join(state, 'h')), { recursive: true, force: true });
    }
  }, 30_000);

  it('a guest reads its own documents over IPv4 and IPv6, through the host or a router VM', async () => {
    expect(Object.keys(ports).sort()).toEqual([NIC1.id, NIC2.id].sort());
    expect(await get(ns.vm1, 'http://169.254.169.254/meta-data')).toBe(seedFiles(VM1)['meta-data']);
    expect(await get(ns.vm1, 'http://169.254.169.254/latest/meta-data/instance-id')).toBe(VM1.id);
    expect(await get(ns.vm1, 'http://169.254.169.254/2009-04-04/meta-data/public-keys/0/openssh-key')).toBe(
      'ssh-ed25519 AAAAkey1 one@x\n',
    );
    expect(await get(ns.vm1, 'http://[fd00:ec2::254]/latest/meta-data/local-ipv4')).toBe('10.10.0.5');
    // vm2 sent it to its router's MAC: the bridge handed it to the host all the same, and it is vm2's data.
    expect(await get(ns.vm2, 'http://169.254.169.254/latest/meta-data/instance-id')).toBe(VM2.id);
    expect(await get(ns.vm2, 'http://169.254.169.254/user-data')).toBe('#!/bin/sh\necho two\n');
  }, 60_000);

  it('records the first fetch and the phone_home report of the guest it came from', async () => {
    expect(await get(ns.vm1, 'http://169.254.169.254/phone-home', `instance_id=${VM2.id}&hostname=vm-2`)).toBe('ok\n');
    const events = service!.events();
    expect(
      events
        .filter((e) => e.event.type === 'fetched')
        .map((e) => e.instance)
        .sort(),
    ).toEqual([VM1.id, VM2.id].sort());
    // The form claimed to be vm2; the tap says vm1.
    expect(events.filter((e) => e.event.type === 'finished')).toEqual([
      { instance: VM1.id, event: expect.objectContaining({ type: 'finished', result: 'ok' }) as object },
    ]);
  }, 30_000);

  it("another guest gets nothing of the first's: not by path, not by spoofing its IP or MAC, not by its port", async () => {
    expect(await get(ns.vm2, `http://169.254.169.254/${VM1.id}/meta-data`)).toBeNull();
    expect(await get(ns.vm2, `http://169.254.169.254/latest/meta-data/${VM1.id}`)).toBeNull();
    // Directly at the ports on the host's address: its own and vm1's.
    expect(await get(ns.vm2, `http://10.10.0.1:${ports[NIC1.id]}/meta-data`)).toBeNull();
    expect(await get(ns.vm2, `http://10.10.0.1:${ports[NIC2.id]}/meta-data`)).toBeNull();
    // vm1's address on vm2: the anti-spoofing rules drop it before anything else.
    await ipIn(ns.vm2, 'addr', 'add', '10.10.0.5/32', 'dev', 'eth0');
    await ipIn(ns.vm2, 'route', 'replace', '169.254.169.254/32', 'via', '10.10.0.1', 'src', '10.10.0.5');
    expect(await get(ns.vm2, 'http://169.254.169.254/meta-data')).toBeNull();
    await ipIn(ns.vm2, 'route', 'del', '169.254.169.254/32');
    await ipIn(ns.vm2, 'addr', 'del', '10.10.0.5/32', 'dev', 'eth0');
    // vm1's MAC on vm2.
    await ipIn(ns.vm2, 'link', 'set', 'eth0', 'address', NIC1.mac);
    expect(await get(ns.vm2, 'http://169.254.169.254/meta-data')).toBeNull();
    await ipIn(ns.vm2, 'link', 'set', 'eth0', 'address', NIC2.mac);
    // A new MAC flushes the guest's neighbours, its router's with them.
    await ipIn(
      ns.vm2,
      'neigh',
      'replace',
      '10.10.0.254',
      'lladdr',
      '02:00:00:00:00:fe',
      'nud',
      'permanent',
      'dev',
      'eth0',
    );
    // Control: back to itself, vm2 is served again.
    expect(await get(ns.vm2, 'http://169.254.169.254/latest/meta-data/instance-id')).toBe(VM2.id);
  }, 60_000);

  it("a guest's request goes to floe's service, not to a 169.254.169.254 its router has; other ports to it go nowhere", async () => {
    // vm2's next hop holds the address and answers on port 80: floe's service answers first, with vm2's own data.
    expect(await get(ns.vm2, 'http://169.254.169.254/latest/meta-data/instance-id')).toBe(VM2.id);
    // Another port of the metadata address is dropped on the bridge, though the router serves it (control: by its own address).
    expect(await get(ns.vm2, 'http://10.10.0.254:8080/')).toBe('router\n');
    expect(await get(ns.vm2, 'http://169.254.169.254:8080/')).toBeNull();
  }, 30_000);

  it('the LAN side and the host itself cannot reach the service or its ports', async () => {
    expect(await get(ns.lan, 'http://169.254.169.254/meta-data')).toBeNull();
    expect(await get(ns.lan, `http://10.10.0.1:${ports[NIC1.id]}/meta-data`)).toBeNull();
    expect(await get(ns.host, `http://127.0.0.1:${ports[NIC1.id]}/meta-data`)).toBeNull();
    expect(await get(ns.host, `http://10.10.0.1:${ports[NIC1.id]}/meta-data`)).toBeNull();
  }, 60_000);

  it.skipIf(!cloudInit)(
    "real cloud-init selects NoCloud from the SMBIOS serial, reads the seed, runs floe's vendor-data: phone_home and the webhook's result",
    async () => {
      const before = service!.events().length;
      // The operator's own vendor-data goes in as a second part.
      await service!.apply([VM1, VM2], '#!/bin/sh\necho vendor\n');
      const probe = join(ROOT, 'packages/agent/src/metadata/cloud-init-probe.py');
      const r = await run(
        'ip',
        ['netns', 'exec', ns.vm1, 'env', `PYTHONPATH=${PYTHONPATH}`, PYTHON, probe, NOCLOUD_NET_SERIAL, 'FAIL'],
        { timeoutMs: 60_000 },
      );
      const out = JSON.parse(r.stdout) as Record<string, unknown>;
      expect(out).toEqual({
        seedfrom: 'http://169.254.169.254/',
        dsmode: 'net',
        meta: { 'instance-id': VM1.id, 'local-hostname': 'vm-1', 'public-keys': ['ssh-ed25519 AAAAkey1 one@x'] },
        user: '#!/bin/sh\necho one\n',
        parts: [
          ['text/cloud-config', '#cloud-config'],
          ['text/x-shellscript', '#!/bin/sh'],
        ],
        cfg: ['phone_home', 'reporting'],
      });
      // cloud-init's phone_home posted, then its webhook reporter sent the FAIL of modules-final; both from vm1's tap.
      const finished = () =>
        service!
          .events()
          .slice(before)
          .filter((e) => e.event.type === 'finished');
      await waitFor(`the reports of the probe\n${r.stderr.slice(-3000)}`, async () => finished().length >= 2);
      expect(finished().map((e) => [e.instance, e.event.type, e.event.result])).toEqual([
        [VM1.id, 'finished', 'ok'],
        [VM1.id, 'finished', 'failed'],
      ]);
    },
    90_000,
  );

  it('a NIC that goes loses its rules and listener; a restarted service serves the running guests again', async () => {
    const left = await service!.apply([VM1]);
    expect(Object.keys(left)).toEqual([NIC1.id]);
    const rules = await inNs(ns.host, 'nft', 'list', 'table', 'bridge', 'floe_meta');
    expect(rules.stdout).not.toContain(tapName(NIC2.id));
    expect(rules.stdout).toContain(tapName(NIC1.id));
    expect(await get(ns.vm2, 'http://169.254.169.254/meta-data')).toBeNull();
    await service!.stop();
    // Stopped: the rules stay, nobody listens.
    expect(await get(ns.vm1, 'http://169.254.169.254/meta-data')).toBeNull();
    service = new Service();
    await service.apply([VM1, VM2]);
    expect(await get(ns.vm1, 'http://169.254.169.254/latest/meta-data/instance-id')).toBe(VM1.id);
    expect(await get(ns.vm2, 'http://169.254.169.254/latest/meta-data/instance-id')).toBe(VM2.id);
  }, 60_000);

  it('--metadata off removes both tables, also when they are already gone', async () => {
    await service!.stop();
    expect((await inNs(ns.host, 'nft', 'list', 'tables')).stdout).toContain('table inet floe_meta');
    const exec = (argv: readonly string[], o?: { input?: string }) => run('ip', ['netns', 'exec', ns.host, ...argv], o);
    await MetadataService.removeRules(exec);
    await MetadataService.removeRules(exec);
    const tables = (await inNs(ns.host, 'nft', 'list', 'tables')).stdout;
    expect(tables).not.toContain('floe_meta');
    // floe's own tables stay.
    expect(tables).toContain('table bridge floe');
  }, 30_000);
});
