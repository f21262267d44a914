import { mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FloeError } from '@floe/api';
import { run, which } from '../../../host/exec.js';
import { baseImageInfo, ensureOverlay, growDisk, imageInfo, overlayCreateArgs, removeDisk } from './disk.js';

const MIB = 1024 ** 2;
const GIB = 1024 ** 3;
const qemuImg = await which('qemu-img');
if (qemuImg === null) {
  if (process.env.CI) throw new Error('qemu-img is required under CI');
  console.warn('skipping disk tests: qemu-img is not installed');
}

describe('overlayCreateArgs', () => {
  it('builds qemu-img create with the backing format', () => {
    expect(overlayCreateArgs('/images/base.qcow2', 'qcow2', '/vms/a/disk.qcow2', 10 * GIB)).toEqual([
      'create',
      '-q',
      '-f',
      'qcow2',
      '-F',
      'qcow2',
      '-b',
      '/images/base.qcow2',
      '/vms/a/disk.qcow2',
      '10737418240',
    ]);
  });

  it('refuses odd formats, sizes and paths', () => {
    expect(() => overlayCreateArgs('/b', 'qcow2,x', '/o', 1)).toThrow(FloeError);
    expect(() => overlayCreateArgs('/b', 'qcow2', '/o', 0)).toThrow(FloeError);
    expect(() => overlayCreateArgs('/b,x', 'qcow2', '/o', 1)).toThrow(FloeError);
    expect(() => overlayCreateArgs('/b', 'qcow2', 'rel/o', 1)).toThrow(FloeError);
  });
});

describe.skipIf(qemuImg === null)('qcow2 overlays', () => {
  let dir: string;
  let base: string;

  beforeAll(async () => {
    dir = await mkdtemp(join(os.tmpdir(), 'floe-disk-'));
    base = join(dir, 'base.qcow2');
    await run('qemu-img', ['create', '-q', '-f', 'qcow2', base, '256M']);
  });

  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('creates an O(1) overlay: tiny, backed by the base, with the requested size', async () => {
    // A raw base with 32 MiB of real data: a copy would be at least that large.
    const rawBase = join(dir, 'data.raw');
    await writeFile(rawBase, Buffer.alloc(32 * MIB, 0x5a));
    const overlay = join(dir, 'vm1.qcow2');
    const result = await ensureOverlay(rawBase, overlay, GIB);
    expect(result).toEqual({ created: true, resized: false, virtualSize: GIB });
    expect((await stat(overlay)).size).toBeLessThan(1 * MIB);
    const info = await imageInfo(overlay);
    expect(info.format).toBe('qcow2');
    expect(info.virtualSize).toBe(GIB);
    expect(info.backingFile).toBe(rawBase);
  });

  it('is idempotent and keeps the existing disk', async () => {
    const overlay = join(dir, 'vm2.qcow2');
    await ensureOverlay(base, overlay, GIB);
    const before = await stat(overlay);
    const again = await ensureOverlay(base, overlay, GIB);
    expect(again).toEqual({ created: false, resized: false, virtualSize: GIB });
    const after = await stat(overlay);
    expect(after.ino).toBe(before.ino);
    expect(after.mtimeMs).toBe(before.mtimeMs);
  });

  it('never makes a disk smaller than its image', async () => {
    const overlay = join(dir, 'vm3.qcow2');
    const result = await ensureOverlay(base, overlay, 64 * MIB);
    expect(result.virtualSize).toBe(256 * MIB);
    expect((await imageInfo(overlay)).virtualSize).toBe(256 * MIB);
  });

  it('grows an existing disk to a bigger request, never shrinks it', async () => {
    const overlay = join(dir, 'vm4.qcow2');
    await ensureOverlay(base, overlay, GIB);
    expect(await ensureOverlay(base, overlay, 2 * GIB)).toEqual({
      created: false,
      resized: true,
      virtualSize: 2 * GIB,
    });
    expect((await imageInfo(overlay)).virtualSize).toBe(2 * GIB);
    expect(await growDisk(overlay, GIB)).toEqual({ resized: false, virtualSize: 2 * GIB });
    expect((await imageInfo(overlay)).virtualSize).toBe(2 * GIB);
  });

  it('reads a base image once while it is unchanged, and again after it changed', async () => {
    const changing = join(dir, 'changing.qcow2');
    await run('qemu-img', ['create', '-q', '-f', 'qcow2', changing, '64M']);
    const first = await baseImageInfo(changing);
    expect(first.virtualSize).toBe(64 * MIB);
    expect(await baseImageInfo(changing)).toBe(first);
    await run('qemu-img', ['resize', '-q', '-f', 'qcow2', changing, '128M']);
    const after = await baseImageInfo(changing);
    expect(after).not.toBe(first);
    expect(after.virtualSize).toBe(128 * MIB);
    // A new overlay sees the base as it is now.
    expect((await ensureOverlay(changing, join(dir, 'vm7.qcow2'), MIB)).virtualSize).toBe(128 * MIB);
  });

  it('reports a missing base as a host failure and leaves no partial file', async () => {
    const overlay = join(dir, 'vm5.qcow2');
    const err = await ensureOverlay(join(dir, 'missing.qcow2'), overlay, GIB).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(FloeError);
    expect((err as FloeError).code).toBe('host_operation_failed');
    await expect(stat(overlay)).rejects.toThrow();
  });

  it('removes a disk, and a missing one is fine', async () => {
    const overlay = join(dir, 'vm6.qcow2');
    await ensureOverlay(base, overlay, GIB);
    await removeDisk(overlay);
    await expect(stat(overlay)).rejects.toThrow();
    await removeDisk(overlay);
  });
});
