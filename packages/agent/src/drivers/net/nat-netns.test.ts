import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { run, which } from '../../host/exec.js';
import { dnsmasqRunDir } from './dnsmasq.js';
import { HostNetworkDriver } from './driver.js';
import type { NatNic } from './nat-rules.js';
import { tapName } from './names.js';
import { echoRequestsIn, inNs, ipIn, netnsUnavailable, snmpCounter, waitFor } from './testing.js';
import type { NetSpec } from './types.js';

/*
 * Floating IPs and forwarded ports through the real driver, in namespaces: an
 * "internet" namespace (203.0.113.2) on the host's uplink (203.0.113.1), and
 * two "instances" whose veth ends on the host carry their NICs' tap names in
 * a private host-gateway network. Each instance serves its own name over HTTP;
 * what the internet gets back says where the translation went.
 */

const netReason = await netnsUnavailable('NAT namespace tests');
const reason = netReason ?? ((await which('curl')) === null ? 'curl is not installed' : null);
if (netReason === null && reason !== null) {
  if (process.env.CI) throw new Error(`NAT namespace tests cannot run under CI: ${reason}`);
  console.log(`skipping NAT namespace tests: ${reason}`);
}

const sfx = randomBytes(3).toString('hex');
const ns = { host: `floe-n-${sfx}-h`, inet: `floe-n-${sfx}-i`, a: `floe-n-${sfx}-a`, b: `floe-n-${sfx}-b` };
const NET: NetSpec = {
  id: `net_n${sfx}`,
  vni: 99,
  ipv4: { cidr: '10.77.0.0/24', gateway: '10.77.0.1' },
  ipv6: null,
  mtu: 1500,
  gatewayMode: 'host',
  dns: false,
  peers: [],
  natInterface: 'up0',
};
const NICS = { a: { id: `nic_n${sfx}a`, ipv4: '10.77.0.5' }, b: { id: `nic_n${sfx}b`, ipv4: '10.77.0.6' } };
const FIP = '203.0.113.50';

describe.skipIf(reason !== null)('NAT of floating IPs and forwarded ports (namespaces)', () => {
  let state: string;
  let driver: HostNetworkDriver;
  const pids: string[] = [];

  beforeAll(async () => {
    state = await mkdtemp(join(tmpdir(), 'floe-nat-'));
    for (const n of Object.values(ns)) {
      await run('ip', ['netns', 'add', n]);
      await ipIn(n, 'link', 'set', 'lo', 'up');
    }
    await ipIn(ns.host, 'link', 'add', 'up0', 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns.inet);
    await ipIn(ns.host, 'addr', 'add', '203.0.113.1/24', 'dev', 'up0');
    await ipIn(ns.host, 'link', 'set', 'up0', 'up');
    await ipIn(ns.inet, 'addr', 'add', '203.0.113.2/24', 'dev', 'eth0');
    await ipIn(ns.inet, 'link', 'set', 'eth0', 'up');
    driver = new HostNetworkDriver({ stateDir: state, underlay: '203.0.113.1', netns: ns.host });
    await driver.ensureNetwork(NET);
    for (const k of ['a', 'b'] as const) {
      const vm = ns[k];
      await ipIn(ns.host, 'link', 'add', tapName(NICS[k].id), 'type', 'veth', 'peer', 'name', 'eth0', 'netns', vm);
      await driver.attachPort(tapName(NICS[k].id), NET);
      await ipIn(vm, 'addr', 'add', `${NICS[k].ipv4}/24`, 'dev', 'eth0');
      await ipIn(vm, 'link', 'set', 'eth0', 'up');
      await ipIn(vm, 'route', 'add', 'default', 'via', '10.77.0.1');
      const dir = join(state, k);
      await run('mkdir', ['-p', dir]);
      await writeFile(join(dir, 'who'), `vm-${k}\n`);
      const pidFile = join(state, `${k}.pid`);
      await run('ip', [
        'netns',
        'exec',
        vm,
        'busybox',
        'start-stop-daemon',
        '-S',
        '-b',
        '-m',
        '-p',
        pidFile,
        '-x',
        '/usr/bin/busybox',
        '--',
        'httpd',
        '-f',
        '-p',
        '80',
        '-h',
        dir,
      ]);
      pids.push(pidFile);
    }
    await driver.applyFirewall([NET], []);
  });

  afterAll(async () => {
    for (const f of pids) {
      const pid = (await readFile(f, 'utf8').catch(() => '')).trim();
      if (pid !== '') await run('kill', [pid], { allowFail: true });
    }
    for (const n of Object.values(ns)) await run('ip', ['netns', 'del', n], { allowFail: true });
    await rm(dnsmasqRunDir(state), { recursive: true, force: true });
    await rm(state, { recursive: true, force: true });
  });

  /** What the internet gets from `url` (a fresh connection each time), or null when nothing answers. */
  async function fetchFromInternet(url: string): Promise<string | null> {
    const r = await inNs(ns.inet, 'curl', '-s', '--max-time', '2', url).catch(() => null);
    return r === null || r.code !== 0 ? null : r.stdout.trim();
  }

  const nat = (k: 'a' | 'b', rest: Partial<NatNic>): NatNic => ({
    nicId: NICS[k].id,
    ipv4: NICS[k].ipv4,
    natInterface: 'up0',
    floatingIpv4: null,
    forwards: [],
    ...rest,
  });

  it('a floating IP reaches its instance from the internet, moves to another in one apply, and is given back', async () => {
    expect(await fetchFromInternet(`http://${FIP}/who`)).toBeNull();
    await driver.applyNat([nat('a', { floatingIpv4: FIP })]);
    await waitFor('the floating IP to answer', async () => (await fetchFromInternet(`http://${FIP}/who`)) === 'vm-a');
    // What the instance sends out leaves from its floating IP: the internet sees that address.
    const seen = await inNs(ns.a, 'busybox', 'ping', '-c', '1', '-W', '2', '203.0.113.2');
    expect(seen.code).toBe(0);
    const ct = await inNs(ns.host, 'cat', '/proc/net/nf_conntrack').catch(() => null);
    if (ct !== null)
      expect(ct.stdout).toMatch(
        new RegExp(
          `src=${NICS.a.ipv4} dst=203\\.0\\.113\\.2 .*src=203\\.0\\.113\\.2 dst=${FIP.replaceAll('.', '\\.')}`,
        ),
      );

    await driver.applyNat([nat('a', {}), nat('b', { floatingIpv4: FIP })]);
    await waitFor(
      'traffic to follow the floating IP',
      async () => (await fetchFromInternet(`http://${FIP}/who`)) === 'vm-b',
    );
    expect(await driver.nat.heldAddresses()).toEqual([`${FIP}@up0`]);

    await driver.applyNat([]);
    expect(await fetchFromInternet(`http://${FIP}/who`)).toBeNull();
    expect(await driver.nat.heldAddresses()).toEqual([]);
    const addrs = await ipIn(ns.host, '-4', '-o', 'addr', 'show', 'dev', 'up0');
    expect(addrs.stdout).not.toContain(FIP);
  }, 60_000);

  it('forwards a port of the host and a port of a floating IP to ports of instances', async () => {
    await driver.applyNat([
      nat('a', { forwards: [{ protocol: 'tcp', address: null, port: 8080, target_port: 80 }] }),
      nat('b', { forwards: [{ protocol: 'tcp', address: FIP, port: 8081, target_port: 80 }] }),
    ]);
    await waitFor(
      'the host port to answer',
      async () => (await fetchFromInternet('http://203.0.113.1:8080/who')) === 'vm-a',
    );
    expect(await fetchFromInternet(`http://${FIP}:8081/who`)).toBe('vm-b');
    // Only the ports forwarded: the floating IP's other ports and the host's go nowhere.
    expect(await fetchFromInternet(`http://${FIP}/who`)).toBeNull();
    expect(await fetchFromInternet('http://203.0.113.1:8081/who')).toBeNull();
    await driver.applyNat([]);
    expect(await fetchFromInternet('http://203.0.113.1:8080/who')).toBeNull();
  }, 60_000);

  it('a flow open before a floating IP moves follows it to the new instance', async () => {
    const echoes = async (k: 'a' | 'b') => echoRequestsIn((await inNs(ns[k], 'cat', '/proc/net/snmp')).stdout);
    await driver.applyNat([nat('a', { floatingIpv4: FIP })]);
    await waitFor('the floating IP to answer', async () => (await fetchFromInternet(`http://${FIP}/who`)) === 'vm-a');
    // One ping process sends every request with the same identifier: one tracked flow for its whole run.
    const stream = spawn('ip', ['netns', 'exec', ns.inet, 'ping', '-i', '0.2', FIP], { stdio: 'ignore' });
    try {
      const a0 = await echoes('a');
      await waitFor('the stream to reach a', async () => (await echoes('a')) >= a0 + 3);
      const b0 = await echoes('b');
      await driver.applyNat([nat('a', {}), nat('b', { floatingIpv4: FIP })]);
      await waitFor('the open stream to reach b', async () => (await echoes('b')) >= b0 + 5, 10_000);
      // And no longer a: at most the request in flight during the move still lands there.
      const a1 = await echoes('a');
      const b1 = await echoes('b');
      await waitFor('more of the stream to reach b', async () => (await echoes('b')) >= b1 + 5, 10_000);
      expect(await echoes('a')).toBeLessThanOrEqual(a1 + 1);
    } finally {
      stream.kill();
    }
    await driver.applyNat([]);
  }, 60_000);

  it('a flow open through a forwarded port stops reaching the instance once the forward is removed', async (ctx) => {
    if ((await which('python3')) === null) {
      if (process.env.CI) throw new Error('this test needs python3 under CI');
      ctx.skip();
    }
    // Datagrams to a port nothing listens on: counted as NoPorts by whichever stack they reach.
    const udp = async (n: string) => snmpCounter((await inNs(n, 'cat', '/proc/net/snmp')).stdout, 'Udp', 'NoPorts');
    await driver.applyNat([
      nat('a', { forwards: [{ protocol: 'udp', address: null, port: 5353, target_port: 5353 }] }),
    ]);
    // One source port for the whole run: one tracked flow.
    const sender = [
      'import socket, time',
      's = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)',
      "s.bind(('203.0.113.2', 40053))",
      'while True:',
      "    s.sendto(b'x', ('203.0.113.1', 5353))",
      '    time.sleep(0.1)',
    ].join('\n');
    const stream = spawn('ip', ['netns', 'exec', ns.inet, 'python3', '-c', sender], { stdio: 'ignore' });
    try {
      const a0 = await udp(ns.a);
      await waitFor('the stream to reach a through the forward', async () => (await udp(ns.a)) >= a0 + 3);
      const h0 = await udp(ns.host);
      await driver.applyNat([]);
      await waitFor('the stream to end at the host itself', async () => (await udp(ns.host)) >= h0 + 5, 10_000);
      const a1 = await udp(ns.a);
      const h1 = await udp(ns.host);
      await waitFor('more of the stream at the host', async () => (await udp(ns.host)) >= h1 + 5, 10_000);
      expect(await udp(ns.a)).toBeLessThanOrEqual(a1 + 1);
    } finally {
      stream.kill();
    }
  }, 60_000);
});
