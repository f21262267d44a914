import { createHash } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { run, which } from '../../host/exec.js';
import { buildIso, ISO_PAD_SECTORS, ISO_SECTOR, isoLevel1Name } from './iso9660.js';

const DATE = new Date('2026-01-02T03:04:05Z');
const FILES = [
  { name: 'user-data', data: Buffer.from('#cloud-config\n') },
  { name: 'meta-data', data: Buffer.from('instance-id: i-1\n') },
];

const sector = (iso: Buffer, n: number) => iso.subarray(n * ISO_SECTOR, (n + 1) * ISO_SECTOR);
/** A sector's bytes up to its last non-zero one, as hex. */
function used(iso: Buffer, n: number): string {
  const s = sector(iso, n);
  let end = s.length;
  while (end > 0 && s[end - 1] === 0) end--;
  return s.subarray(0, end).toString('hex');
}

describe('buildIso', () => {
  const iso = buildIso({ label: 'cidata', date: DATE, files: FILES });

  it('lays out descriptors, path tables, both root directories and the files sector by sector', () => {
    // 16 system sectors, PVD, SVD, terminator, 4 path tables, primary root, RR continuation, Joliet root, 2 files, padding.
    expect(iso.length).toBe((28 + ISO_PAD_SECTORS) * ISO_SECTOR);
    expect(iso.subarray(0, 16 * ISO_SECTOR).every((b) => b === 0)).toBe(true);
    // Primary volume descriptor: type 1, CD001, label, 178 sectors, block size, path table at 19 (L) and 20 (M), root at 23.
    const pvd = sector(iso, 16);
    expect(pvd.subarray(0, 7).toString('latin1')).toBe('\u0001CD001\u0001');
    expect(pvd.subarray(8, 72).toString('latin1')).toBe(`${'LINUX'.padEnd(32)}${'cidata'.padEnd(32)}`);
    expect(pvd.subarray(80, 190).toString('hex')).toBe(
      'b2000000000000b2' +
        '00'.repeat(32) +
        '0100000101000001000808000a0000000000000a' +
        '130000000000000000000014' +
        '00000000' +
        '2200170000000000001700080000000008007e010203040500020000010000010100',
    );
    expect(pvd.subarray(813, 882).toString('latin1')).toBe(
      '2026010203040500\u00002026010203040500\u00000000000000000000\u00000000000000000000\u0000\u0001',
    );
    // Joliet: type 2, UCS-2 label, escape %/E, its own path tables (21, 22) and root (25).
    const svd = sector(iso, 17);
    expect(svd.subarray(0, 7).toString('latin1')).toBe('\u0002CD001\u0001');
    expect(svd.subarray(40, 72).toString('hex')).toBe('006300690064006100740061' + '0020'.repeat(10));
    expect(svd.subarray(88, 91).toString('latin1')).toBe('%/E');
    expect(svd.subarray(156, 190).toString('hex')).toBe(
      '2200190000000000001900080000000008007e010203040500020000010000010100',
    );
    expect(used(iso, 18)).toBe('ff4344303031' + '01');
    expect([19, 20, 21, 22].map((n) => used(iso, n))).toEqual([
      '01001700000001',
      '0100000000170001',
      '01001900000001',
      '0100000000190001',
    ]);
    // Primary root: "." with SP, PX, TF and CE (pointing at sector 24); ".."; META_DAT.;1 (sector 27) and USER_DAT.;1 (26) in ISO order, with NM.
    const tf = '54461301067e0102030405007e010203040500';
    const dirPx = '50582401ed410000000041ed020000000000000200000000000000000000000000000000';
    const filePx = '50582401a4810000000081a40100000000000001000000000000000000000000000000000';
    expect(used(iso, 23)).toBe(
      '7c00170000000000001700080000000008007e010203040500020000010000010100' +
        '53500701beef00' +
        dirPx +
        tf +
        '43451c0118000000000000180000000000000000ed000000000000ed' +
        '5a00170000000000001700080000000008007e010203040500020000010000010101' +
        dirPx +
        tf +
        '00' +
        '72001b0000000000001b11000000000000117e010203040500000000010000010b4d4554415f4441542e3b31' +
        filePx.slice(0, -1) +
        tf +
        '4e4d0e01006d6574612d64617461' +
        '00' +
        '72001a0000000000001a0e0000000000000e7e010203040500000000010000010b555345525f4441542e3b31' +
        filePx.slice(0, -1) +
        tf +
        '4e4d0e0100757365722d64617461',
    );
    // The Rock Ridge ER entry in the continuation area.
    expect(sector(iso, 24).subarray(0, 18).toString('latin1')).toBe('ER\u00ed\u0001\n\u0054\u0087\u0001RRIP_1991A');
    // Joliet root: ".", "..", meta-data, user-data in UCS-2, no version suffix.
    expect(used(iso, 25)).toBe(
      '2200190000000000001900080000000008007e010203040500020000010000010100' +
        '2200190000000000001900080000000008007e010203040500020000010000010101' +
        '34001b0000000000001b11000000000000117e0102030405000000000100000112006d006500740061002d0064006100740061' +
        '00' +
        '34001a0000000000001a0e0000000000000e7e01020304050000000001000001120075007300650072002d0064006100740061',
    );
    expect(sector(iso, 26).toString('latin1').replace(/\0+$/, '')).toBe('#cloud-config\n');
    expect(sector(iso, 27).toString('latin1').replace(/\0+$/, '')).toBe('instance-id: i-1\n');
    expect(iso.subarray(28 * ISO_SECTOR).every((b) => b === 0)).toBe(true);
  });

  it('gives the same bytes for the same input', () => {
    const hash = (b: Buffer) => createHash('sha256').update(b).digest('hex');
    expect(hash(buildIso({ label: 'cidata', date: DATE, files: FILES }))).toBe(
      '1be3cce6e7c45d1f76f49def39e75070f9c0d6c22aa16b831eb06c1140f00572',
    );
    expect(hash(iso)).toBe('1be3cce6e7c45d1f76f49def39e75070f9c0d6c22aa16b831eb06c1140f00572');
  });

  it('spreads a large file over consecutive sectors and gives an empty one no sector', () => {
    const big = buildIso({
      label: 'cidata',
      date: DATE,
      files: [
        { name: 'a', data: Buffer.alloc(5000, 0x41) },
        { name: 'b', data: Buffer.alloc(0) },
      ],
    });
    expect(big.length).toBe((26 + 3 + ISO_PAD_SECTORS) * ISO_SECTOR);
    expect(sector(big, 26).every((b) => b === 0x41)).toBe(true);
    expect(
      sector(big, 28)
        .subarray(0, 904)
        .every((b) => b === 0x41),
    ).toBe(true);
    expect(sector(big, 28)[904]).toBe(0);
  });

  it('names files 8.3 in the primary tree as genisoimage does', () => {
    expect(['meta-data', 'user-data', 'vendor-data', 'network-config', 'a.b.txt', 'x'].map(isoLevel1Name)).toEqual([
      'META_DAT.;1',
      'USER_DAT.;1',
      'VENDOR_D.;1',
      'NETWORK_.;1',
      'A_B.TXT;1',
      'X.;1',
    ]);
  });

  it('refuses labels, names and dates it cannot write, and names that collide', () => {
    const file = { name: 'a', data: Buffer.alloc(1) };
    expect(() => buildIso({ label: 'ci data', date: DATE, files: [file] })).toThrow(RangeError);
    expect(() => buildIso({ label: 'x'.repeat(17), date: DATE, files: [file] })).toThrow(RangeError);
    expect(() => buildIso({ label: 'cidata', date: DATE, files: [{ name: '../a', data: Buffer.alloc(1) }] })).toThrow(
      RangeError,
    );
    expect(() => buildIso({ label: 'cidata', date: DATE, files: [{ name: 'a/b', data: Buffer.alloc(1) }] })).toThrow(
      RangeError,
    );
    expect(() => buildIso({ label: 'cidata', date: DATE, files: [file, file] })).toThrow(/two files with the name a/);
    expect(() =>
      buildIso({
        label: 'cidata',
        date: DATE,
        files: [
          { name: 'long-name-1', data: Buffer.alloc(1) },
          { name: 'long-name-2', data: Buffer.alloc(1) },
        ],
      }),
    ).toThrow(/8\.3 name LONG_NAM/);
    expect(() => buildIso({ label: 'cidata', date: new Date(Number.NaN), files: [file] })).toThrow(RangeError);
  });
});

describe('buildIso read back by isoinfo', () => {
  let dir: string | null = null;
  afterEach(async () => {
    if (dir !== null) await rm(dir, { recursive: true, force: true });
    dir = null;
  });

  it('reads the label, both trees and every file, like an ISO genisoimage made from the same files', async (ctx) => {
    if ((await which('isoinfo')) === null || (await which('genisoimage')) === null) {
      ctx.skip('isoinfo/genisoimage are not installed (Debian package genisoimage)');
      return;
    }
    dir = await mkdtemp(join(tmpdir(), 'floe-iso-'));
    const files = [
      ...FILES,
      { name: 'network-config', data: Buffer.from(`version: 2\n${'#'.repeat(3000)}\n`) },
      { name: 'vendor-data', data: Buffer.alloc(0) },
    ];
    const ours = join(dir, 'ours.iso');
    await writeFile(ours, buildIso({ label: 'cidata', date: DATE, files }));
    for (const f of files) await writeFile(join(dir, f.name), f.data);
    const theirs = join(dir, 'theirs.iso');
    await run('genisoimage', [
      '-output',
      theirs,
      '-volid',
      'cidata',
      '-joliet',
      '-rock',
      '-quiet',
      ...files.map((f) => join(dir!, f.name)),
    ]);

    const info = (await run('isoinfo', ['-d', '-i', ours])).stdout;
    expect(info).toMatch(/^Volume id: cidata$/m);
    expect(info).toMatch(/^Joliet with UCS level 3 found$/m);
    expect(info).toMatch(/^Rock Ridge signatures version 1 found$/m);
    for (const tree of [[], ['-R'], ['-J']]) {
      const list = async (iso: string) =>
        (await run('isoinfo', [...tree, '-f', '-i', iso])).stdout.trim().split('\n').sort();
      expect(await list(ours)).toEqual(await list(theirs));
    }
    expect((await run('isoinfo', ['-R', '-f', '-i', ours])).stdout.trim().split('\n').sort()).toEqual([
      '/meta-data',
      '/network-config',
      '/user-data',
      '/vendor-data',
    ]);
    for (const f of files) {
      for (const tree of ['-R', '-J'])
        expect((await run('isoinfo', [tree, '-x', `/${f.name}`, '-i', ours])).stdout).toBe(f.data.toString());
    }
    // Rock Ridge modes as the files had them (0644), as in genisoimage's.
    const modes = (listing: string) =>
      listing
        .split('\n')
        .filter((l) => /-data|-config/.test(l))
        .map((l) => l.trim().split(/\s+/)[0]);
    expect(modes((await run('isoinfo', ['-R', '-l', '-i', ours])).stdout)).toEqual([
      '-rw-r--r--',
      '-rw-r--r--',
      '-rw-r--r--',
      '-rw-r--r--',
    ]);
  });
});
