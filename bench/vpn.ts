import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { run } from '@floe/process';
import { detectWireguard, LinuxVpnDriver } from '../packages/agent/src/drivers/vpn/linux.js';
import { hostExec } from '../packages/agent/src/drivers/net/host-exec.js';
import { VpnReconciler } from '../packages/agent/src/vpn.js';
import { storeTargets } from '../packages/server/src/db/testing.js';
import { injectJson, onlineTestHost, startTestControlPlane } from '../packages/server/src/testing.js';
import { fmt, percentile, sorted, table } from './report.js';

/*
 * WireGuard through a floe gateway, against the same namespaces without it, in one run:
 * 1. handshake to first ping: `wg-quick up` of the file floe printed until the first ping through the
 *    tunnel answers, against the first ping over the plain route (both from a fresh start);
 * 2. throughput: iperf3 from the client to a "VM" behind the gateway through the tunnel, ÷ iperf3 to
 *    the same VM over the plain routed veths (client → gateway → VM).
 * Namespaces are made and removed here; traffic stays inside them.
 */

const ROUNDS = 5;
const SECONDS = 4;
const tag = randomBytes(2).toString('hex');
const made: string[] = [];
const sh = (ns: string, argv: string[], allowFail = false) =>
  run('ip', ['netns', 'exec', ns, ...argv], { allowFail, timeoutMs: 60_000 });

async function addNs(suffix: string): Promise<string> {
  const ns = `fb${tag}${suffix}`;
  await run('ip', ['netns', 'add', ns]);
  made.push(ns);
  await sh(ns, ['ip', 'link', 'set', 'lo', 'up']);
  return ns;
}

async function veth(a: string, an: string, aAddr: string, b: string, bn: string, bAddr: string) {
  const t = `fb${tag}${randomBytes(2).toString('hex')}`;
  await run('ip', ['link', 'add', `${t}a`, 'type', 'veth', 'peer', 'name', `${t}b`]);
  for (const [ns, tmp, name, addr] of [
    [a, `${t}a`, an, aAddr],
    [b, `${t}b`, bn, bAddr],
  ] as const) {
    await run('ip', ['link', 'set', tmp, 'netns', ns]);
    await sh(ns, ['ip', 'link', 'set', tmp, 'name', name]);
    await sh(ns, ['ip', 'addr', 'add', addr, 'dev', name]);
    await sh(ns, ['ip', 'link', 'set', name, 'up']);
  }
}

async function firstPingMs(ns: string, to: string, start: () => Promise<void>): Promise<number> {
  const t0 = performance.now();
  await start();
  for (;;) {
    if ((await sh(ns, ['ping', '-c', '1', '-W', '1', '-i', '0.2', to], true)).code === 0) return performance.now() - t0;
    if (performance.now() - t0 > 30_000) throw new Error(`no ping to ${to} in 30 s`);
  }
}

async function iperf(ns: string, to: string): Promise<number> {
  const r = await sh(ns, ['iperf3', '-c', to, '-t', String(SECONDS), '-J']);
  const j = JSON.parse(r.stdout) as { end: { sum_received: { bits_per_second: number } } };
  return j.end.sum_received.bits_per_second / 1e6;
}

async function main(): Promise<void> {
  const mode = await detectWireguard();
  if (mode === null || process.getuid?.() !== 0) {
    console.log('bench:vpn needs root and WireGuard (the module or wireguard-go)');
    return;
  }
  const dir = await mkdtemp(path.join(os.tmpdir(), 'floe-bench-vpn-'));
  const cp = await startTestControlPlane(await storeTargets()[0]!.open(), { FLOE_LOG_LEVEL: 'silent' });
  const reconciler = { current: null as VpnReconciler | null };
  let server: ReturnType<typeof spawn> | null = null;
  try {
    const c = await addNs('c');
    const g = await addNs('g');
    const v = await addNs('v');
    await veth(c, 'eth0', '198.51.100.2/24', g, 'wan', '198.51.100.1/24');
    await veth(g, 'lan', '10.31.0.1/24', v, 'eth0', '10.31.0.10/24');
    await sh(g, ['sysctl', '-q', '-w', 'net.ipv4.ip_forward=1']);
    await sh(v, ['ip', 'route', 'add', 'default', 'via', '10.31.0.1']);
    server = spawn('ip', ['netns', 'exec', v, 'iperf3', '-s'], { stdio: 'ignore' });
    const host = await onlineTestHost(cp.app, 'gw');
    const call = async (method: 'POST', url: string, body: unknown) => (await injectJson(cp, method, url, body)).body;
    await call('POST', '/v1/networks', { name: 'lan', ipv4: '10.31.0.0/24' });
    await call('POST', '/v1/vpn-pools', {
      name: 'edge',
      ipv6: 'fd50::/40',
      ipv4: '10.250.0.0/16',
      hosts: ['gw'],
      endpoint: '198.51.100.1',
    });
    await call('POST', '/v1/vpn-networks', { name: 'office', pool: 'edge', networks: ['lan'] });
    const peer = await call('POST', '/v1/vpn-peers', { name: 'bench', vpn_network: 'office' });
    const r = new VpnReconciler({ driver: new LinuxVpnDriver(mode, hostExec(g)) });
    reconciler.current = r;
    r.setDesired(await cp.app.services.vpn.desiredForHost(host), { full: true });
    await r.whenIdle();
    const file = path.join(dir, `wg${tag}.conf`);
    await writeFile(file, peer.config as string, { mode: 0o600 });

    // Baseline first ping: the client's route to the VM's network appears, then the first ping answers.
    const plain: number[] = [];
    const tunnel: number[] = [];
    for (let i = 0; i < ROUNDS; i++) {
      plain.push(
        await firstPingMs(c, '10.31.0.10', async () => {
          await sh(c, ['ip', 'route', 'replace', '10.31.0.0/24', 'via', '198.51.100.1']);
        }),
      );
      await sh(c, ['ip', 'route', 'del', '10.31.0.0/24'], true);
      tunnel.push(
        await firstPingMs(c, '10.31.0.10', async () => {
          await sh(c, ['wg-quick', 'up', file]);
        }),
      );
      await sh(c, ['wg-quick', 'down', file]);
    }
    // Throughput: plain routing, then the tunnel, taking turns.
    const plainMbps: number[] = [];
    const tunnelMbps: number[] = [];
    for (let i = 0; i < 2; i++) {
      await sh(c, ['ip', 'route', 'replace', '10.31.0.0/24', 'via', '198.51.100.1']);
      plainMbps.push(await iperf(c, '10.31.0.10'));
      await sh(c, ['ip', 'route', 'del', '10.31.0.0/24'], true);
      await sh(c, ['wg-quick', 'up', file]);
      tunnelMbps.push(await iperf(c, '10.31.0.10'));
      await sh(c, ['wg-quick', 'down', file]);
    }
    const med = (xs: number[]) => percentile(sorted(xs), 0.5);
    console.log(`WireGuard through the floe gateway (${mode}), ${ROUNDS} rounds, iperf3 ${SECONDS} s × 2 each\n`);
    console.log(
      table(
        ['measure', 'floe gateway', 'plain veth', 'ratio'],
        [
          ['up to first ping, ms (median)', fmt(med(tunnel)), fmt(med(plain)), `${fmt(med(tunnel) / med(plain), 2)}×`],
          [
            'throughput, Mbit/s (median)',
            fmt(med(tunnelMbps)),
            fmt(med(plainMbps)),
            `${fmt(med(tunnelMbps) / med(plainMbps), 3)}×`,
          ],
        ],
      ),
    );
  } finally {
    server?.kill('SIGKILL');
    await reconciler.current?.stop();
    // Interfaces go first, so that wireguard-go daemons exit and remove their sockets.
    const g = made.find((n) => n.endsWith('g'));
    if (g !== undefined && mode !== null) {
      const driver = new LinuxVpnDriver(mode, hostExec(g));
      for (const name of await driver.list()) await driver.remove(name);
    }
    await sh(made.find((n) => n.endsWith('c')) ?? '', ['ip', 'link', 'del', `wg${tag}`], true).catch(() => undefined);
    for (const ns of made) {
      const pids = await run('ip', ['netns', 'pids', ns], { allowFail: true });
      for (const pid of pids.stdout.split(/\s+/).filter(Boolean)) {
        try {
          process.kill(Number(pid), 'SIGKILL');
        } catch {
          // gone
        }
      }
    }
    await new Promise((res) => setTimeout(res, 300));
    for (const ns of made) await run('ip', ['netns', 'del', ns], { allowFail: true });
    await cp.close();
    await rm(dir, { recursive: true, force: true });
  }
}

await main();
