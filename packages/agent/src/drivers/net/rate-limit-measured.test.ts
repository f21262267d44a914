import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { run, which } from '../../host/exec.js';
import { HostNetworkDriver } from './driver.js';
import { tapName } from './names.js';
import { inNs, ipIn, netnsUnavailable, waitFor } from './testing.js';

/*
 * Rate limits measured with iperf3. Three namespaces: a host with a bridge,
 * an "instance" whose veth end on the host is named as its NIC's tap (tc and
 * nftables see the same device a QEMU tap would be), and a peer on the same
 * bridge. The limits are put on by the real driver; throughput is what the
 * receiving iperf3 counted.
 */

const netReason = await netnsUnavailable('rate limit measurements');
const reason = netReason ?? ((await which('iperf3')) === null ? 'iperf3 is not installed' : null);
if (netReason === null && reason !== null) {
  if (process.env.CI) throw new Error(`rate limit measurements cannot run under CI: ${reason}`);
  console.log(`skipping rate limit measurements: ${reason}`);
}

const NIC_ID = `nic_${randomBytes(8).toString('hex')}`;
const SECONDS = 4;
/** 10 Mbit/s, the figure the limit is measured against. */
const LIMIT_KBPS = 10_000;

interface IperfEnd {
  end: { sum_received?: { bits_per_second: number }; sum?: { packets: number; lost_packets: number; seconds: number } };
}

describe.skipIf(reason !== null)('rate limits measured with iperf3', () => {
  const id = randomBytes(3).toString('hex');
  const ns = { host: `floe-rl-h${id}`, vm: `floe-rl-v${id}`, peer: `floe-rl-p${id}` };
  let state: string;
  let driver: HostNetworkDriver;

  beforeAll(async () => {
    state = await mkdtemp(join(tmpdir(), 'floe-rl-'));
    for (const n of Object.values(ns)) {
      await run('ip', ['netns', 'add', n]);
      await ipIn(n, 'link', 'set', 'lo', 'up');
    }
    await ipIn(ns.host, 'link', 'add', 'br0', 'type', 'bridge');
    await ipIn(ns.host, 'link', 'set', 'br0', 'up');
    for (const [dev, other, addr] of [
      [tapName(NIC_ID), ns.vm, '10.66.0.2/24'],
      ['peer0', ns.peer, '10.66.0.3/24'],
    ] as const) {
      await ipIn(ns.host, 'link', 'add', dev, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', other);
      await ipIn(ns.host, 'link', 'set', dev, 'master', 'br0', 'up');
      await ipIn(other, 'addr', 'add', addr, 'dev', 'eth0');
      await ipIn(other, 'link', 'set', 'eth0', 'up');
    }
    driver = new HostNetworkDriver({ stateDir: state, underlay: '192.0.2.1', netns: ns.host });
  });

  afterAll(async () => {
    for (const n of Object.values(ns)) await run('ip', ['netns', 'del', n], { allowFail: true });
    await rm(state, { recursive: true, force: true });
  });

  /** One iperf3 run from the instance to the peer (`reverse`: the peer sends); the receiver's report. */
  async function iperf(args: string[], reverse = false): Promise<IperfEnd> {
    const port = String(20_000 + Math.floor(Math.random() * 10_000));
    const pidFile = join(state, `iperf-${port}.pid`);
    await inNs(ns.peer, 'iperf3', '-s', '-1', '-D', '-B', '10.66.0.3', '-p', port, '-I', pidFile);
    try {
      await waitFor('iperf3 to listen', async () => {
        const ss = await inNs(ns.peer, 'ss', '-ltn', `sport = :${port}`);
        return ss.stdout.includes(`:${port}`);
      });
      const out = await inNs(
        ns.vm,
        'iperf3',
        '-c',
        '10.66.0.3',
        '-p',
        port,
        '-t',
        String(SECONDS),
        '-J',
        ...(reverse ? ['-R'] : []),
        ...args,
      );
      return JSON.parse(out.stdout) as IperfEnd;
    } finally {
      const pid = Number((await readFile(pidFile, 'utf8').catch(() => '')).trim());
      if (pid > 0) await run('kill', [String(pid)], { allowFail: true });
    }
  }

  const mbits = (r: IperfEnd) => r.end.sum_received!.bits_per_second / 1e6;

  it('holds TCP to 10 Mbit/s within 20%, both ways, where it ran much faster without', async () => {
    const free = mbits(await iperf([]));
    console.log(`without limits: ${free.toFixed(1)} Mbit/s`);
    expect(free).toBeGreaterThan(30);

    expect(await driver.rates.applyRateLimit(NIC_ID, { ingress_kbps: LIMIT_KBPS, egress_kbps: LIMIT_KBPS })).toBe(true);
    const fromVm = mbits(await iperf([]));
    const toVm = mbits(await iperf([], true));
    console.log(`limit 10 Mbit/s: from the instance ${fromVm.toFixed(2)}, to it ${toVm.toFixed(2)} Mbit/s`);
    for (const got of [fromVm, toVm]) {
      expect(got).toBeGreaterThan(8);
      expect(got).toBeLessThan(12);
    }

    // Changed in place on the running tap: 10 Mbit/s to the instance only.
    await driver.rates.applyRateLimit(NIC_ID, { ingress_kbps: LIMIT_KBPS });
    const freed = mbits(await iperf([]));
    console.log(`egress limit removed: from the instance ${freed.toFixed(1)} Mbit/s`);
    expect(freed).toBeGreaterThan(30);
  }, 60_000);

  it('holds UDP packets from the instance to 1,000 per second within 20%', async () => {
    await driver.rates.applyRateLimit(NIC_ID, { egress_pps: 1000 });
    // 3,000 packets per second of 100 bytes offered.
    const r = await iperf(['-u', '-l', '100', '-b', String(3000 * 100 * 8)]);
    const sum = r.end.sum!;
    const pps = (sum.packets - sum.lost_packets) / sum.seconds;
    console.log(
      `limit 1,000 packets/s: ${pps.toFixed(0)} received per second of ${(sum.packets / sum.seconds).toFixed(0)} sent`,
    );
    expect(pps).toBeGreaterThan(800);
    expect(pps).toBeLessThan(1200);
    await driver.rates.applyRateLimit(NIC_ID, null);
    expect(await driver.rates.observeRateLimit(NIC_ID)).toEqual({});
  }, 60_000);
});
