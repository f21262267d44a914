import { mkdtemp, open, readFile, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FloeError } from '@floe/api';
import { run, which } from '../../../host/exec.js';
import { qcow2L1Size, qcow2OverlayLayout, QCOW2_CLUSTER, type Qcow2Layout } from './qcow2.js';

const GIB = 1024 ** 3;
const qemuImg = await which('qemu-img');
const qemuIo = await which('qemu-io');
if ((qemuImg === null || qemuIo === null) && process.env.CI)
  throw new Error('qemu-img and qemu-io are required under CI');

async function writeLayout(path: string, layout: Qcow2Layout): Promise<void> {
  const fh = await open(path, 'wx');
  for (const p of layout.pieces) await fh.write(p.data, 0, p.data.length, p.offset);
  await fh.truncate(layout.length);
  await fh.close();
}

describe('qcow2OverlayLayout', () => {
  it('writes the header, backing format and name, refcount table and block, and ends after the L1 table', () => {
    const l = qcow2OverlayLayout('/images/base.qcow2', 'qcow2', GIB);
    expect(l.length).toBe(3 * 65536 + 2 * 8);
    expect(l.pieces.map((p) => [p.offset, p.data.toString('hex')])).toEqual([
      [
        0,
        '514649fb' +
          '00000003' +
          '0000000000000088' +
          '00000012' +
          '00000010' +
          '0000000040000000' +
          '00000000' +
          '00000002' +
          '0000000000030000' +
          '0000000000010000' +
          '00000001' +
          '00000000' +
          '0000000000000000' +
          '0000000000000000' +
          '0000000000000000' +
          '0000000000000000' +
          '00000004' +
          '00000070' +
          '00' +
          '00000000000000' +
          'e2792aca' +
          '00000005' +
          '71636f7732000000' +
          '0000000000000000' +
          Buffer.from('/images/base.qcow2').toString('hex'),
      ],
      [65536, '0000000000020000'],
      [131072, '0001000100010001'],
    ]);
  });

  it('sizes the L1 table by 512 MiB per entry and counts its clusters', () => {
    expect([1, 512 * 1024 * 1024, 512 * 1024 * 1024 + 512, 100 * GIB].map(qcow2L1Size)).toEqual([1, 1, 2, 200]);
    const huge = qcow2OverlayLayout('/b', 'raw', 8 * 1024 * GIB);
    expect(huge.length).toBe(3 * 65536 + 16384 * 8);
    // 3 clusters plus an L1 table of two clusters.
    expect(huge.pieces[2]!.data.toString('hex')).toBe('0001'.repeat(5));
  });

  it('refuses sizes qcow2 cannot have, odd formats and names too long', () => {
    for (const size of [0, -512, 1000, 1.5 * 512, Number.MAX_SAFE_INTEGER + 1])
      expect(() => qcow2OverlayLayout('/b', 'qcow2', size)).toThrow(FloeError);
    expect(() => qcow2OverlayLayout('/b', 'qcow2,x', GIB)).toThrow(FloeError);
    expect(() => qcow2OverlayLayout(`/${'x'.repeat(1023)}`, 'qcow2', GIB)).toThrow(FloeError);
  });
});

describe.skipIf(qemuImg === null || qemuIo === null)('qcow2OverlayLayout read by QEMU', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(os.tmpdir(), 'floe-qcow2-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('is the overlay qemu-img create makes: same fields, same tables, same length', async () => {
    const base = join(dir, 'base.qcow2');
    await run('qemu-img', ['create', '-q', '-f', 'qcow2', base, '300M']);
    for (const size of [GIB, 300 * 1024 * 1024, 100 * GIB]) {
      const ours = join(dir, `ours-${size}.qcow2`);
      const theirs = join(dir, `theirs-${size}.qcow2`);
      await writeLayout(ours, qcow2OverlayLayout(base, 'qcow2', size));
      await run('qemu-img', ['create', '-q', '-f', 'qcow2', '-F', 'qcow2', '-b', base, theirs, String(size)]);
      const [a, b] = [await readFile(ours), await readFile(theirs)];
      expect(a.length).toBe(b.length);
      // Header fields up to the extensions are the same; qemu-img adds a feature name table before the backing name.
      expect(a.subarray(0, 8).equals(b.subarray(0, 8))).toBe(true);
      expect(a.subarray(16, 104).equals(b.subarray(16, 104))).toBe(true);
      expect(a.subarray(QCOW2_CLUSTER).equals(b.subarray(QCOW2_CLUSTER))).toBe(true);
      const info = JSON.parse((await run('qemu-img', ['info', '--output=json', ours])).stdout) as Record<
        string,
        unknown
      >;
      expect(info).toMatchObject({
        format: 'qcow2',
        'virtual-size': size,
        'backing-filename': base,
        'backing-filename-format': 'qcow2',
      });
      expect((await run('qemu-img', ['check', ours])).stdout).toMatch(/No errors were found/);
    }
  });

  it('reads through to the base and takes writes that qemu-img check then finds consistent', async () => {
    const base = join(dir, 'data.raw');
    await writeFile(base, Buffer.alloc(4 * 1024 * 1024, 0x5a));
    const overlay = join(dir, 'rw.qcow2');
    await writeLayout(overlay, qcow2OverlayLayout(base, 'raw', GIB));
    const io = (cmd: string) => run('qemu-io', ['-f', 'qcow2', '-c', cmd, overlay]);
    expect((await io('read -P 0x5a 0 1M')).stdout).toMatch(/read 1048576\/1048576 bytes/);
    await io('write -P 0xa5 512k 128k');
    await io('write -P 0x3c 900M 64k');
    expect((await io('read -P 0xa5 512k 128k')).stdout).toMatch(/read 131072\/131072 bytes/);
    expect((await io('read -P 0x5a 0 512k')).stdout).toMatch(/read 524288\/524288 bytes/);
    expect((await io('read -P 0x3c 900M 64k')).stdout).toMatch(/read 65536\/65536 bytes/);
    expect((await io('read -P 0 1000M 64k')).stdout).toMatch(/read 65536\/65536 bytes/);
    // qemu-img check leaves out corruptions and leaks when there are none.
    const check = JSON.parse((await run('qemu-img', ['check', '--output=json', overlay])).stdout) as Record<
      string,
      unknown
    >;
    expect(check['check-errors']).toBe(0);
    expect(check.corruptions ?? 0).toBe(0);
    expect(check.leaks ?? 0).toBe(0);
    expect(check['allocated-clusters']).toBe(3);
    // The base is only read.
    expect((await readFile(base)).every((b) => b === 0x5a)).toBe(true);
    expect((await stat(overlay)).size).toBeGreaterThan(3 * QCOW2_CLUSTER);
  });
});
