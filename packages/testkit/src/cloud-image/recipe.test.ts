import { spawnSync } from 'node:child_process';
import { mkdtemp, open, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseAptShowAll } from '../guest-image/debian.js';
import { buildBootDisk } from '../guest-image/disk.js';
import { cloudImageCacheDir } from './index.js';
import { CLOUD_KERNEL_CMDLINE, ROOTFS_FILES, cloudImageKey, mmdebstrapArgs, rootFsMib } from './recipe.js';

describe('cloud image recipe', () => {
  it('asks mmdebstrap for exactly the package versions, in unshare mode, without docs, from the given sources', () => {
    expect(
      mmdebstrapArgs(
        '/cache/.build-1/rootfs',
        [
          { name: 'cloud-init', version: '22.4.2-1+deb12u4' },
          { name: 'openssh-server', version: '1:9.2p1-2+deb12u10' },
        ],
        ['/etc/apt/sources.list.d/debian.sources'],
      ),
    ).toEqual([
      '--mode=unshare',
      '--variant=apt',
      '--format=directory',
      '--quiet',
      '--dpkgopt=path-exclude=/usr/share/man/*',
      '--dpkgopt=path-exclude=/usr/share/info/*',
      '--dpkgopt=path-exclude=/usr/share/doc/*',
      '--dpkgopt=path-include=/usr/share/doc/*/copyright',
      '--dpkgopt=path-exclude=/usr/share/locale/*',
      '--dpkgopt=path-exclude=/usr/share/lintian/*',
      '--include=cloud-init=22.4.2-1+deb12u4,openssh-server=1:9.2p1-2+deb12u10',
      'bookworm',
      '/cache/.build-1/rootfs',
      '/etc/apt/sources.list.d/debian.sources',
    ]);
  });

  it('refuses package names, versions and paths that could become options', () => {
    expect(() => mmdebstrapArgs('/r', [{ name: '--hook', version: '1' }], [])).toThrow(RangeError);
    expect(() => mmdebstrapArgs('/r', [{ name: 'a1', version: '1,b=2' }], [])).toThrow(RangeError);
    expect(() => mmdebstrapArgs('relative', [], [])).toThrow(RangeError);
    expect(() => mmdebstrapArgs('/r', [], ['/etc/apt/sources.list.d/x.disabled'])).toThrow(RangeError);
  });

  it('boots the root file system by its UUID with the serial console last, and fstab names the same UUID', () => {
    expect(CLOUD_KERNEL_CMDLINE).toBe(
      'root=UUID=6c6f6530-636c-4f75-a400-000000000002 ro console=tty0 console=ttyS0,115200 consoleblank=0',
    );
    expect(ROOTFS_FILES['etc/fstab']).toBe(
      'UUID=6c6f6530-636c-4f75-a400-000000000002 / ext4 rw,discard,errors=remount-ro 0 1\n',
    );
    // Each instance makes its own machine id.
    expect(ROOTFS_FILES['etc/machine-id']).toBe('');
  });

  it('keys the cache by every package version and tool, not by their order', () => {
    const a = { name: 'cloud-init', version: '22.4.2-1+deb12u4' };
    const b = { name: 'linux-image-6.1.0-57-cloud-amd64', version: '6.1.192-3' };
    const key = cloudImageKey({ packages: [a, b], tools: { mmdebstrap: 'mmdebstrap 1.3.5' } });
    expect(key).toMatch(/^[0-9a-f]{16}$/);
    expect(cloudImageKey({ packages: [b, a], tools: { mmdebstrap: 'mmdebstrap 1.3.5' } })).toBe(key);
    expect(
      cloudImageKey({ packages: [a, { ...b, version: '6.1.193-1' }], tools: { mmdebstrap: 'mmdebstrap 1.3.5' } }),
    ).not.toBe(key);
    expect(cloudImageKey({ packages: [a, b], tools: { mmdebstrap: 'mmdebstrap 1.3.6' } })).not.toBe(key);
  });

  it('reads the versions of several packages from one apt-cache show', () => {
    const text =
      'Package: cloud-init\nVersion: 22.4.2-1+deb12u4\nDepends: python3\n\nPackage: netbase\nVersion: 6.4\n\nPackage: netbase\nVersion: 6.3\n';
    expect([...parseAptShowAll(text)]).toEqual([
      ['cloud-init', '22.4.2-1+deb12u4'],
      ['netbase', '6.4'],
    ]);
    expect(parseAptShowAll('').size).toBe(0);
  });

  it('sizes the root file system with room to spare, in whole MiB', () => {
    expect(rootFsMib(400)).toBe(716);
    expect(rootFsMib(1)).toBe(258);
  });

  it('caches outside the repository: FLOE_CLOUD_IMAGE_CACHE, else XDG_CACHE_HOME, else ~/.cache', () => {
    expect(cloudImageCacheDir({ FLOE_CLOUD_IMAGE_CACHE: '/srv/images', XDG_CACHE_HOME: '/x' }, '/home/u')).toBe(
      '/srv/images',
    );
    expect(cloudImageCacheDir({ XDG_CACHE_HOME: '/x' }, '/home/u')).toBe('/x/floe/cloud-image');
    expect(cloudImageCacheDir({}, '/home/u')).toBe('/home/u/.cache/floe/cloud-image');
    // A relative XDG_CACHE_HOME is invalid by the spec and ignored.
    expect(cloudImageCacheDir({ XDG_CACHE_HOME: 'rel' }, '/home/u')).toBe('/home/u/.cache/floe/cloud-image');
  });
});

const haveDiskTools = ['mkfs.vfat', 'mcopy', 'syslinux'].every(
  (t) => spawnSync(t, ['--version'], { stdio: 'ignore' }).error === undefined,
);

describe.skipIf(!haveDiskTools)('a boot disk with a root partition', () => {
  it('puts the root image as partition 2 (Linux) right after the boot partition, byte for byte', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'floe-disk-'));
    try {
      await writeFile(join(dir, 'vmlinuz'), 'kernel');
      await writeFile(join(dir, 'syslinux.cfg'), 'DEFAULT x\n');
      const root = join(dir, 'root.img');
      await writeFile(root, '');
      await truncate(root, 2 * 1024 * 1024);
      const fh = await open(root, 'r+');
      await fh.write(Buffer.from('ROOT-START'), 0, 10, 0);
      await fh.write(Buffer.from('ROOT-END'), 0, 8, 2 * 1024 * 1024 - 8);
      await fh.close();
      const out = join(dir, 'disk.raw');
      await buildBootDisk(out, { vmlinuz: join(dir, 'vmlinuz'), 'syslinux.cfg': join(dir, 'syslinux.cfg') }, dir, {
        rootPartition: root,
      });
      const disk = await open(out, 'r');
      const mbr = Buffer.alloc(512);
      await disk.read(mbr, 0, 512, 0);
      const entry = (i: number) => ({
        type: mbr[446 + i * 16 + 4],
        start: mbr.readUInt32LE(446 + i * 16 + 8),
        sectors: mbr.readUInt32LE(446 + i * 16 + 12),
      });
      // The boot partition: FAT16 at 1 MiB, 16 MiB; then root.
      expect(entry(0)).toEqual({ type: 0x0e, start: 2048, sectors: 16 * 2048 });
      expect(entry(1)).toEqual({ type: 0x83, start: 2048 + 16 * 2048, sectors: 2 * 2048 });
      const head = Buffer.alloc(10);
      await disk.read(head, 0, 10, (2048 + 16 * 2048) * 512);
      const tail = Buffer.alloc(8);
      await disk.read(tail, 0, 8, (2048 + 18 * 2048) * 512 - 8);
      const size = (await disk.stat()).size;
      await disk.close();
      expect(head.toString()).toBe('ROOT-START');
      expect(tail.toString()).toBe('ROOT-END');
      expect(size).toBe((2048 + 18 * 2048) * 512);
      // Not whole MiB: refused.
      await truncate(root, 1024 * 1024 + 512);
      await expect(
        buildBootDisk(out, { vmlinuz: join(dir, 'vmlinuz'), 'syslinux.cfg': join(dir, 'syslinux.cfg') }, dir, {
          rootPartition: root,
        }),
      ).rejects.toThrow(/whole MiB/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
