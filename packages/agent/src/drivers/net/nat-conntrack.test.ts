import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { ExecError } from '../../host/exec.js';
import type { HostExec } from './host-exec.js';
import { NftNat } from './nat-driver.js';
import { conntrackFlushes, natTranslations, nothingToDrop, type NatTranslation } from './nat-conntrack.js';
import type { NatNic } from './nat-rules.js';
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
  ],
};
const lines = (argvs: readonly (readonly string[])[]) => argvs.map((a) => a.join(' '));

describe('dropping the tracked flows of changed NAT', () => {
  it('lists the translations of the NICs in a stable order', () => {
    const t = natTranslations([A, B]);
    expect(natTranslations([B, A])).toEqual(t);
    expect(t).toEqual([
      { kind: 'address', public: '198.51.100.50', private: '10.10.0.5' },
      { kind: 'port', protocol: 'tcp', public: null, port: 2222, private: '10.10.0.6', targetPort: 22 },
      { kind: 'port', protocol: 'udp', public: '198.51.100.51', port: 53, private: '10.10.0.6', targetPort: 5353 },
    ]);
  });

  it('drops nothing when nothing changed', () => {
    expect(conntrackFlushes(natTranslations([A, B]), natTranslations([B, A]))).toEqual([]);
  });

  it('drops the flows to a floating IP that moved, and the outgoing flows of the NIC it left', () => {
    const before = natTranslations([A, { ...B, forwards: [] }]);
    const after = natTranslations([
      { ...A, floatingIpv4: null },
      { ...B, forwards: [], floatingIpv4: '198.51.100.50' },
    ]);
    expect(lines(conntrackFlushes(before, after))).toEqual([
      'conntrack -D --orig-dst 198.51.100.50',
      'conntrack -D --orig-src 10.10.0.5 --reply-dst 198.51.100.50',
    ]);
  });

  it('drops the flows of a detached floating IP and of removed forwards', () => {
    expect(lines(conntrackFlushes(natTranslations([A, B]), []))).toEqual([
      'conntrack -D --orig-dst 198.51.100.50',
      'conntrack -D --orig-src 10.10.0.5 --reply-dst 198.51.100.50',
      'conntrack -D -p tcp --dst-nat --orig-port-dst 2222 --reply-src 10.10.0.6 --reply-port-src 22',
      'conntrack -D -p udp --orig-dst 198.51.100.51 --orig-port-dst 53',
    ]);
  });

  it("drops the flows to a new public address or port, but keeps the NIC's outgoing ones and the host's ports", () => {
    expect(lines(conntrackFlushes([], natTranslations([A, B])))).toEqual([
      'conntrack -D --orig-dst 198.51.100.50',
      'conntrack -D -p udp --orig-dst 198.51.100.51 --orig-port-dst 53',
    ]);
  });

  it('drops the flows of a forward whose target changed once, not once per side', () => {
    const moved = {
      ...B,
      forwards: [{ protocol: 'udp' as const, address: '198.51.100.51', port: 53, target_port: 53 }],
    };
    expect(
      lines(conntrackFlushes(natTranslations([{ ...B, forwards: [B.forwards[0]!] }]), natTranslations([moved]))),
    ).toEqual(['conntrack -D -p udp --orig-dst 198.51.100.51 --orig-port-dst 53']);
  });

  it('refuses translations read back that would change the command', () => {
    const bad = (t: object) => fieldOf(() => conntrackFlushes([t as NatTranslation], []));
    expect(bad({ kind: 'address', public: '198.51.100.50 --any', private: '10.10.0.5' })).toBe(
      'translations[0].public',
    );
    expect(bad({ kind: 'port', protocol: 'icmp', public: null, port: 1, private: '10.10.0.5', targetPort: 1 })).toBe(
      'translations[0].protocol',
    );
    expect(bad({ kind: 'port', protocol: 'tcp', public: null, port: 70000, private: '10.10.0.5', targetPort: 1 })).toBe(
      'translations[0].port',
    );
    expect(bad({ kind: 'other', public: null, private: '10.10.0.5' })).toBe('translations[0].kind');
  });

  it('tells "nothing matched" apart from a failure', () => {
    expect(nothingToDrop('conntrack v1.4.7 (conntrack-tools): 0 flow entries have been deleted.\n')).toBe(true);
    expect(nothingToDrop('conntrack v1.4.7 (conntrack-tools): 10 flow entries have been deleted.\n')).toBe(false);
    expect(nothingToDrop('exec of "conntrack" failed: No such file or directory')).toBe(false);
  });
});

describe('the NAT applier and connection tracking', () => {
  /** An NftNat over a host where nft and ip work and conntrack is as `conntrack` says. */
  async function withHost(conntrack: (argv: readonly string[]) => { code: number; stderr: string }) {
    const dir = await mkdtemp(join(tmpdir(), 'floe-nat-ct-'));
    const ran: string[] = [];
    const warnings: string[] = [];
    const exec: HostExec = (argv) => {
      ran.push(argv.join(' '));
      if (argv[0] !== 'conntrack') return Promise.resolve({ code: 0, stdout: '', stderr: '' });
      const r = conntrack(argv);
      if (r.code === 127) throw new ExecError('conntrack: spawn ENOENT', 'conntrack', argv.slice(1), null, '', true);
      return Promise.resolve({ code: r.code, stdout: '', stderr: r.stderr });
    };
    const logger = pino({ level: 'warn' }, { write: (line: string) => void warnings.push(JSON.parse(line).msg) });
    return { dir, ran, warnings, nat: new NftNat(exec, dir, logger) };
  }

  it('drops the flows of a moved floating IP after the new table is in, and remembers what it applied', async () => {
    const host = await withHost(() => ({ code: 1, stderr: '0 flow entries have been deleted.' }));
    try {
      await host.nat.applyNat([A]);
      host.ran.length = 0;
      await host.nat.applyNat([
        { ...A, floatingIpv4: null },
        { ...B, forwards: [], floatingIpv4: '198.51.100.50' },
      ]);
      expect(host.ran.filter((c) => /^(nft|conntrack)/.test(c))).toEqual([
        'nft -f -',
        'conntrack -D --orig-dst 198.51.100.50',
        'conntrack -D --orig-src 10.10.0.5 --reply-dst 198.51.100.50',
      ]);
      // Nothing matched is no failure.
      expect(host.warnings).toEqual([]);
      expect(JSON.parse(await readFile(join(host.dir, 'nat-translations.json'), 'utf8'))).toEqual([
        { kind: 'address', public: '198.51.100.50', private: '10.10.0.6' },
      ]);
      // A second NftNat (the agent restarted) sees the change from what the first applied.
      host.ran.length = 0;
      const again = new NftNat(
        (argv) => (host.ran.push(argv.join(' ')), Promise.resolve({ code: 0, stdout: '', stderr: '' })),
        host.dir,
      );
      await again.applyNat([]);
      expect(host.ran.filter((c) => c.startsWith('conntrack'))).toEqual([
        'conntrack -D --orig-dst 198.51.100.50',
        'conntrack -D --orig-src 10.10.0.6 --reply-dst 198.51.100.50',
      ]);
    } finally {
      await rm(host.dir, { recursive: true, force: true });
    }
  });

  it('still changes the NAT without the conntrack tool, and warns', async () => {
    const host = await withHost(() => ({ code: 127, stderr: '' }));
    try {
      await host.nat.applyNat([A]);
      expect(host.ran).toContain('nft -f -');
      expect(await host.nat.heldAddresses()).toEqual(['198.51.100.50@eth0']);
      expect(host.warnings).toHaveLength(1);
      expect(host.warnings[0]).toMatch(/cannot drop tracked flows/);
    } finally {
      await rm(host.dir, { recursive: true, force: true });
    }
  });
});
