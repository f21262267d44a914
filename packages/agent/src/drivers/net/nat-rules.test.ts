import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { run, which } from '../../host/exec.js';
import { natAddresses, natScript, type NatNic } from './nat-rules.js';
import { fieldOf } from './testing.js';

const A: NatNic = {
  nicId: 'nic_01JB8X0Q3E6M2T9K4V7W5YB1C4',
  ipv4: '10.10.0.5',
  natInterface: 'eth0',
  floatingIpv4: '198.51.100.50',
  forwards: [],
};
const B: NatNic = {
  nicId: 'nic_01JB8X0Q3E6M2T9K4V7W5YB1C2',
  ipv4: '10.10.0.6',
  natInterface: 'eth0',
  floatingIpv4: null,
  forwards: [
    { protocol: 'udp', address: '198.51.100.51', port: 53, target_port: 5353 },
    { protocol: 'tcp', address: null, port: 2222, target_port: 22 },
    { protocol: 'tcp', address: '198.51.100.51', port: 80, target_port: 8080 },
  ],
};

const GOLDEN = `table ip floe_fwd
delete table ip floe_fwd
table ip floe_fwd {
	chain prerouting {
		type nat hook prerouting priority dstnat - 10; policy accept;
		ip daddr 198.51.100.51 tcp dport 80 dnat to 10.10.0.6:8080
		ip daddr 198.51.100.51 udp dport 53 dnat to 10.10.0.6:5353
		ip daddr 198.51.100.50 dnat to 10.10.0.5
		fib daddr type local ip daddr != { 198.51.100.50, 198.51.100.51 } tcp dport 2222 dnat to 10.10.0.6:22
	}
	chain postrouting {
		type nat hook postrouting priority srcnat - 10; policy accept;
		ip saddr 10.10.0.5 oifname "eth0" snat to 198.51.100.50
	}
}
`;

describe('NAT of floating IPs and forwarded ports', () => {
  it('translates a floating IP both ways and forwarded ports one way, the most specific first', () => {
    expect(natScript([A, B])).toBe(GOLDEN);
    expect(natScript([B, A])).toBe(GOLDEN);
  });

  it('is an empty table without NAT, so that applying it removes every rule', () => {
    expect(natScript([])).toContain(
      'chain prerouting {\n\t\ttype nat hook prerouting priority dstnat - 10; policy accept;\n\t}',
    );
  });

  it('holds each public address once on its NAT interface; host forwards need none', () => {
    expect(
      natAddresses([A, B, { ...A, nicId: 'nic_01JB8X0Q3E6M2T9K4V7W5YB1C9', floatingIpv4: null, forwards: [] }]),
    ).toEqual(['198.51.100.50@eth0', '198.51.100.51@eth0']);
  });

  it('refuses values that would change the script', () => {
    expect(fieldOf(() => natScript([{ ...A, floatingIpv4: '198.51.100.50 accept' }]))).toBe('nat[0].floating_ipv4');
    expect(fieldOf(() => natScript([{ ...A, natInterface: 'eth0" accept' }]))).toBe('nat[0].nat_interface');
    expect(fieldOf(() => natScript([{ ...B, forwards: [{ ...B.forwards[0]!, port: 0 }] }]))).toBe(
      'nat[0].forwards[0].port',
    );
    expect(fieldOf(() => natScript([{ ...B, forwards: [{ ...B.forwards[0]!, protocol: 'sctp' as 'tcp' }] }]))).toBe(
      'nat[0].forwards[0].protocol',
    );
    expect(fieldOf(() => natAddresses([{ ...A, ipv4: 'fd00::5' }]))).toBe('nat[0].ipv4');
  });

  it('is accepted by nft in check mode', async (ctx) => {
    if (process.getuid?.() !== 0 || (await which('nft')) === null) {
      if (process.env.CI) throw new Error('nft check needs root and nft under CI');
      console.log('skipped: nft check mode needs root and nft');
      ctx.skip();
    }
    const ns = `floe-t-${randomBytes(4).toString('hex')}`;
    await run('ip', ['netns', 'add', ns]);
    try {
      await run('ip', ['netns', 'exec', ns, 'nft', '-c', '-f', '-'], { input: GOLDEN });
      await run('ip', ['netns', 'exec', ns, 'nft', '-f', '-'], { input: GOLDEN });
      await run('ip', ['netns', 'exec', ns, 'nft', '-f', '-'], { input: GOLDEN });
      const { stdout } = await run('ip', ['netns', 'exec', ns, 'nft', 'list', 'table', 'ip', 'floe_fwd']);
      expect(stdout).toContain('ip daddr 198.51.100.50 dnat to 10.10.0.5');
      await expect(
        run('ip', ['netns', 'exec', ns, 'nft', '-c', '-f', '-'], { input: GOLDEN.replace('snat to', 'snat too') }),
      ).rejects.toThrow();
    } finally {
      await run('ip', ['netns', 'del', ns]);
    }
  });
});
