import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { run } from '../../host/exec.js';
import { HostNetworkDriver } from './driver.js';
import { bridgeName, tapName } from './names.js';
import { GROUPS, NET, SG_ADMIN, SG_NICS, SG_WEB } from './sg-ruleset.fixtures.js';
import { inNs, ipIn, netnsUnavailable, waitFor } from './testing.js';
import type { NicSpec, SecurityGroupSpec } from './types.js';

/*
 * Security groups applied by the Linux firewall driver to real traffic: a
 * host namespace with NET's bridge and two guest namespaces on it, each
 * behind a veth named as its NIC's tap. `web` (guest B) lets TCP 22 in from
 * the `admin` group (guest A) and nothing else from A; a rule added for TCP
 * 80 opens it while an open connection on 22 stays up; taking it away closes
 * 80 to new connections.
 */

const reason = await netnsUnavailable('security group traffic tests');

/** A TCP echo server on the given ports, and a client that prints OK when its connection echoes. */
const SERVER = `const net = require('node:net');
for (const p of process.argv.slice(1)) net.createServer((s) => s.pipe(s)).listen(Number(p), () => console.log('listening ' + p));`;
const PROBE = `const s = require('node:net').connect({ host: process.argv[1], port: Number(process.argv[2]) });
s.setTimeout(800, () => process.exit(1)); s.on('error', () => process.exit(1));
s.on('connect', () => s.write('x')); s.on('data', () => { console.log('OK'); process.exit(0); });`;
/** A connection kept open: each line on stdin goes out, what comes back is printed. */
const HOLD = `const s = require('node:net').connect({ host: process.argv[1], port: Number(process.argv[2]) });
s.on('error', (e) => { console.log('ERR ' + e.message); process.exit(1); });
s.on('connect', () => console.log('CONNECTED')); s.on('data', (d) => process.stdout.write(d));
process.stdin.on('data', (d) => s.write(d));`;

describe.skipIf(reason !== null)('security groups on real traffic', () => {
  const id = randomBytes(3).toString('hex');
  const [hostNs, nsA, nsB] = [`floe-sgh-${id}`, `floe-sga-${id}`, `floe-sgb-${id}`];
  const nicB = SG_NICS[0]!; // web, 10.10.0.5
  const nicA = SG_NICS[1]!; // admin + default, 10.10.0.6
  const procs: ChildProcess[] = [];
  let driver: HostNetworkDriver;

  const probe = async (port: number) =>
    (
      await run('ip', ['netns', 'exec', nsA, process.execPath, '-e', PROBE, nicB.ipv4!, String(port)], {
        allowFail: true,
        timeoutMs: 5000,
      }).catch(() => ({ code: 1 }))
    ).code === 0;
  const apply = (groups: readonly SecurityGroupSpec[], nics: readonly NicSpec[] = [nicB, nicA]) =>
    driver.applyFirewall([NET], nics, groups);
  const withRule80 = GROUPS.map((g) =>
    g.id === SG_WEB
      ? {
          ...g,
          rules: [
            ...g.rules,
            {
              direction: 'ingress' as const,
              protocol: 'tcp' as const,
              portMin: 80,
              portMax: 80,
              remoteCidr: null,
              remoteGroup: SG_ADMIN,
            },
          ],
        }
      : g,
  );

  beforeAll(async () => {
    for (const ns of [hostNs, nsA, nsB]) {
      await run('ip', ['netns', 'add', ns]);
      await ipIn(ns, 'link', 'set', 'lo', 'up');
    }
    const br = bridgeName(NET.id);
    await ipIn(hostNs, 'link', 'add', br, 'type', 'bridge');
    await ipIn(hostNs, 'link', 'set', br, 'up');
    for (const [ns, nic] of [
      [nsA, nicA],
      [nsB, nicB],
    ] as const) {
      const tap = tapName(nic.id);
      await ipIn(hostNs, 'link', 'add', tap, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns);
      await ipIn(hostNs, 'link', 'set', tap, 'master', br, 'up');
      await ipIn(ns, 'link', 'set', 'eth0', 'address', nic.mac);
      await ipIn(ns, 'addr', 'add', `${nic.ipv4}/24`, 'dev', 'eth0');
      await ipIn(ns, 'link', 'set', 'eth0', 'up');
    }
    // Bridged IP packets go through the inet hooks (connection tracking): what the agent's hosts have.
    await inNs(hostNs, 'sysctl', '-q', '-w', 'net.bridge.bridge-nf-call-iptables=1');
    driver = new HostNetworkDriver({ stateDir: '/nonexistent', underlay: '192.0.2.1', netns: hostNs });
    const server = spawn('ip', ['netns', 'exec', nsB, process.execPath, '-e', SERVER, '22', '80'], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    procs.push(server);
    let out = '';
    server.stdout.on('data', (d: Buffer) => (out += d.toString()));
    await waitFor('the echo server', () => Promise.resolve(out.includes('listening 80')));
  }, 30_000);

  afterAll(async () => {
    for (const p of procs) p.kill();
    for (const ns of [hostNs, nsA, nsB]) await run('ip', ['netns', 'del', ns], { allowFail: true });
  });

  it('lets in what a group allows from its remote group, and a new rule opens a port while open connections stay', async () => {
    // Without groups (filtering off) everything passes.
    await apply(
      GROUPS,
      [nicB, nicA].map((n) => ({ ...n, filtering: false })),
    );
    expect(await probe(80)).toBe(true);

    await apply(GROUPS);
    expect(await probe(22)).toBe(true);
    expect(await probe(80)).toBe(false);

    // An ssh-like session stays open across the changes below.
    const hold = spawn('ip', ['netns', 'exec', nsA, process.execPath, '-e', HOLD, nicB.ipv4!, '22'], {
      stdio: ['pipe', 'pipe', 'inherit'],
    });
    procs.push(hold);
    let held = '';
    hold.stdout.on('data', (d: Buffer) => (held += d.toString()));
    await waitFor('the held connection', () => Promise.resolve(held.includes('CONNECTED')));

    await apply(withRule80);
    expect(await probe(80)).toBe(true);
    hold.stdin.write('ping-1\n');
    await waitFor('the held connection to echo', () => Promise.resolve(held.includes('ping-1')), 3000);

    await apply(GROUPS);
    expect(await probe(80)).toBe(false);
    expect(await probe(22)).toBe(true);
    hold.stdin.write('ping-2\n');
    await waitFor('the held connection to echo again', () => Promise.resolve(held.includes('ping-2')), 3000);

    // A's membership of `admin` is what lets it in: without A's address in the set, 22 closes to new connections.
    await apply(GROUPS.map((g) => (g.id === SG_ADMIN ? { ...g, members: [] } : g)));
    expect(await probe(22)).toBe(false);
  }, 60_000);
});
