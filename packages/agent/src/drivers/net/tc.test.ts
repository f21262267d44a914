import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { run, which } from '../../host/exec.js';
import { NIC } from './spec.fixtures.js';
import { bandwidthSteps, checkRateLimit, parsePps, parseTbfKbps, ppsBurst, ppsScript, tbfBurst } from './tc.js';
import { fieldOf } from './testing.js';

const argv = (steps: ReturnType<typeof bandwidthSteps>) =>
  steps.map((s) => `${s.allowFail === true ? '? ' : ''}${s.argv.join(' ')}`);

const PPS_GOLDEN = `table netdev floe_rl_fltp2b9227216a2
delete table netdev floe_rl_fltp2b9227216a2
table netdev floe_rl_fltp2b9227216a2 {
	chain from_vm {
		type filter hook ingress device "fltp2b9227216a2" priority 0; policy accept;
		limit rate over 4000/second burst 400 packets drop
	}
	chain to_vm {
		type filter hook egress device "fltp2b9227216a2" priority 0; policy accept;
		limit rate over 50/second burst 10 packets drop
	}
}
`;

describe('rate limit commands', () => {
  it('sizes token buckets to 20 ms of traffic, at least 16 KiB, and packet bursts to 100 ms', () => {
    expect(tbfBurst(10_000)).toBe(25_000);
    expect(tbfBurst(1_000)).toBe(16_384);
    expect(tbfBurst(10_000_000)).toBe(25_000_000);
    expect(ppsBurst(4000)).toBe(400);
    expect(ppsBurst(50)).toBe(10);
  });

  it('shapes to the instance on the tap and from it through the NIC’s IFB', () => {
    expect(argv(bandwidthSteps(NIC.id, { ingress_kbps: 10_000, egress_kbps: 20_000 }, false))).toEqual([
      'tc qdisc replace dev fltp2b9227216a2 root tbf rate 10000kbit burst 25000 latency 50ms',
      'ip link add flib2b9227216a2 type ifb',
      'ip link set flib2b9227216a2 up',
      'tc qdisc replace dev flib2b9227216a2 root tbf rate 20000kbit burst 50000 latency 50ms',
      'tc qdisc replace dev fltp2b9227216a2 clsact',
      'tc filter replace dev fltp2b9227216a2 ingress pref 1 handle 800::1 protocol all u32 match u32 0 0 action mirred egress redirect dev flib2b9227216a2',
    ]);
    // The IFB is there already: not made again.
    expect(argv(bandwidthSteps(NIC.id, { egress_kbps: 20_000 }, true))).toEqual([
      '? tc qdisc del dev fltp2b9227216a2 root',
      'ip link set flib2b9227216a2 up',
      'tc qdisc replace dev flib2b9227216a2 root tbf rate 20000kbit burst 50000 latency 50ms',
      'tc qdisc replace dev fltp2b9227216a2 clsact',
      'tc filter replace dev fltp2b9227216a2 ingress pref 1 handle 800::1 protocol all u32 match u32 0 0 action mirred egress redirect dev flib2b9227216a2',
    ]);
  });

  it('takes off what is no longer wanted', () => {
    expect(argv(bandwidthSteps(NIC.id, {}, true))).toEqual([
      '? tc qdisc del dev fltp2b9227216a2 root',
      '? tc qdisc del dev fltp2b9227216a2 clsact',
      'ip link del flib2b9227216a2',
    ]);
    expect(argv(bandwidthSteps(NIC.id, {}, false))).toEqual([
      '? tc qdisc del dev fltp2b9227216a2 root',
      '? tc qdisc del dev fltp2b9227216a2 clsact',
    ]);
  });

  it('polices packet rates in a netdev table of the NIC, removed whole when there are none', () => {
    expect(ppsScript(NIC.id, { egress_pps: 4000, ingress_pps: 50, ingress_kbps: 10 })).toBe(PPS_GOLDEN);
    expect(ppsScript(NIC.id, { egress_kbps: 10 })).toBe(
      'table netdev floe_rl_fltp2b9227216a2\ndelete table netdev floe_rl_fltp2b9227216a2\n',
    );
  });

  it('refuses limits that are not positive integers, and drops absent ones', () => {
    expect(checkRateLimit(null)).toEqual({});
    expect(checkRateLimit({ ingress_kbps: 8, egress_pps: undefined })).toEqual({ ingress_kbps: 8 });
    expect(fieldOf(() => checkRateLimit({ egress_kbps: 0 }))).toBe('egress_kbps');
    expect(fieldOf(() => checkRateLimit({ ingress_pps: 1.5 }))).toBe('ingress_pps');
    expect(fieldOf(() => bandwidthSteps('nic_1; rm', {}, false))).toBe('nic_id');
  });

  it('reads back token buckets and packet rates from tc and nft JSON', () => {
    expect(
      parseTbfKbps(
        '[{"kind":"tbf","handle":"8001:","root":true,"refcnt":3,"options":{"rate":1250000,"burst":32767,"lat":50000}},{"kind":"clsact","handle":"ffff:","parent":"ffff:fff1","options":{}}]',
      ),
    ).toBe(10_000);
    expect(parseTbfKbps('[{"kind":"noqueue","handle":"0:","root":true,"refcnt":2,"options":{}}]')).toBeUndefined();
    expect(parseTbfKbps('not json')).toBeUndefined();
    expect(
      parsePps(
        JSON.stringify({
          nftables: [
            { metainfo: {} },
            { table: { family: 'netdev', name: 'x' } },
            {
              rule: {
                chain: 'from_vm',
                expr: [{ limit: { rate: 4000, burst: 400, per: 'second', inv: true } }, { drop: null }],
              },
            },
            {
              rule: {
                chain: 'to_vm',
                expr: [{ limit: { rate: 50, burst: 10, per: 'second', inv: true } }, { drop: null }],
              },
            },
          ],
        }),
      ),
    ).toEqual({ egress_pps: 4000, ingress_pps: 50 });
    expect(parsePps('')).toEqual({});
  });

  it('is accepted by nft in check mode and by tc on a real device', async (ctx) => {
    if (process.getuid?.() !== 0 || (await which('nft')) === null || (await which('tc')) === null) {
      if (process.env.CI) throw new Error('the rate limit check needs root, nft and tc under CI');
      console.log('skipped: the rate limit check needs root, nft and tc');
      ctx.skip();
    }
    const ns = `floe-t-${randomBytes(4).toString('hex')}`;
    const inNs = (...args: string[]) => run('ip', ['netns', 'exec', ns, ...args]);
    await run('ip', ['netns', 'add', ns]);
    try {
      // A veth named as the NIC's tap: the hooks need the device to exist.
      await inNs('ip', 'link', 'add', 'fltp2b9227216a2', 'type', 'veth', 'peer', 'name', 'peer0');
      await run('ip', ['netns', 'exec', ns, 'nft', '-c', '-f', '-'], { input: PPS_GOLDEN });
      await run('ip', ['netns', 'exec', ns, 'nft', '-f', '-'], { input: PPS_GOLDEN });
      await run('ip', ['netns', 'exec', ns, 'nft', '-f', '-'], { input: PPS_GOLDEN });
      const listed = await inNs('nft', '-j', 'list', 'table', 'netdev', 'floe_rl_fltp2b9227216a2');
      expect(parsePps(listed.stdout)).toEqual({ egress_pps: 4000, ingress_pps: 50 });
      await expect(
        run('ip', ['netns', 'exec', ns, 'nft', '-c', '-f', '-'], { input: PPS_GOLDEN.replace('drop', 'dorp') }),
      ).rejects.toThrow();
      for (const s of bandwidthSteps(NIC.id, { ingress_kbps: 10_000, egress_kbps: 20_000 }, false))
        await inNs(...s.argv);
      expect(parseTbfKbps((await inNs('tc', '-j', 'qdisc', 'show', 'dev', 'fltp2b9227216a2')).stdout)).toBe(10_000);
      expect(parseTbfKbps((await inNs('tc', '-j', 'qdisc', 'show', 'dev', 'flib2b9227216a2')).stdout)).toBe(20_000);
    } finally {
      await run('ip', ['netns', 'del', ns]);
    }
  });
});
