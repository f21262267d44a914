import { createReadStream, createWriteStream } from 'node:fs';
import { access, open, readFile, stat, truncate, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { runTool } from './exec.js';
import { buildMbr, SECTOR, type MbrPartition } from './mbr.js';

/**
 * The test images' disks: an MBR (syslinux's boot code), one bootable FAT16
 * partition holding the kernel, the initramfs and syslinux, and optionally a
 * root file system partition after it. Built entirely in
 * files with mkfs.vfat, mtools and syslinux's mtools installer: no loop
 * device, no mount, no root.
 */

/** Where the partition starts (sectors): 1 MiB, as partitioning tools align it. */
const PARTITION_START = 2048;
/** MBR type byte of a FAT16 partition addressed by LBA. */
const FAT16_LBA = 0x0e;
/** MBR type byte of a Linux file system partition. */
const LINUX = 0x83;
const MIB = 1024 * 1024;

/** Places Debian and other distributions keep syslinux's MBR boot code. */
const MBR_BIN_CANDIDATES = [
  '/usr/lib/syslinux/mbr/mbr.bin',
  '/usr/share/syslinux/mbr.bin',
  '/usr/lib/syslinux/bios/mbr.bin',
];

/** syslinux's MBR boot code, or null when syslinux-common is not installed. */
async function findMbrBin(): Promise<string | null> {
  for (const path of MBR_BIN_CANDIDATES) {
    try {
      await access(path);
      return path;
    } catch {
      // try the next one
    }
  }
  return null;
}

/** Size of the FAT partition for this much payload: room to spare, whole MiB, at least 16 MiB. */
export function partitionMib(payloadBytes: number): number {
  return Math.max(16, Math.ceil((payloadBytes * 1.1 + 2 * MIB) / MIB));
}

/** Files to put on the boot partition: name on the partition → local path. */
export type BootFiles = Record<string, string>;

/**
 * Build a raw bootable disk at `out` from the files in `files` (which must
 * include `syslinux.cfg`), using `work` as scratch space. `rootPartition`, a
 * file system image of whole MiB, becomes a second (Linux) partition after
 * the boot partition.
 */
export async function buildBootDisk(
  out: string,
  files: BootFiles,
  work: string,
  opts: { rootPartition?: string } = {},
): Promise<void> {
  const mbrBin = await findMbrBin();
  if (mbrBin === null)
    throw new Error('syslinux MBR boot code (mbr.bin) not found; install the Debian package syslinux-common');
  let payload = 0;
  for (const path of Object.values(files)) payload += (await stat(path)).size;
  const mib = partitionMib(payload);
  const sectors = mib * (MIB / SECTOR);

  // The partition first, as a file of its own; then the disk around it.
  const part = join(work, 'boot-partition.img');
  await writeFile(part, '');
  await truncate(part, mib * MIB);
  await runTool('mkfs.vfat', ['-F', '16', '-n', 'FLOEBOOT', '-h', String(PARTITION_START), '--invariant', part]);
  // Fixed modification times keep the partition's contents the same from build to build.
  const when = new Date('2000-01-01T00:00:00Z');
  for (const path of Object.values(files)) await utimes(path, when, when);
  for (const [name, path] of Object.entries(files).sort(([a], [b]) => a.localeCompare(b))) {
    if (!/^[a-z0-9._-]+$/.test(name)) throw new Error(`bad boot file name ${name}`);
    await runTool('mcopy', ['-m', '-i', part, path, `::/${name}`]);
  }
  await runTool('syslinux', ['--install', part]);

  const partitions: MbrPartition[] = [{ start: PARTITION_START, sectors, type: FAT16_LBA, bootable: true }];
  const rootStart = PARTITION_START + sectors;
  let rootSectors = 0;
  if (opts.rootPartition !== undefined) {
    const bytes = (await stat(opts.rootPartition)).size;
    if (bytes === 0 || bytes % MIB !== 0) throw new Error(`root partition image must be whole MiB, not ${bytes} bytes`);
    rootSectors = bytes / SECTOR;
    partitions.push({ start: rootStart, sectors: rootSectors, type: LINUX });
  }
  const mbr = buildMbr(await readFile(mbrBin), partitions, 0x666c6f65);
  const disk = await open(out, 'w');
  try {
    await disk.write(mbr, 0, mbr.length, 0);
  } finally {
    await disk.close();
  }
  await pipeline(createReadStream(part), createWriteStream(out, { flags: 'r+', start: PARTITION_START * SECTOR }));
  if (opts.rootPartition !== undefined) {
    await pipeline(
      createReadStream(opts.rootPartition),
      createWriteStream(out, { flags: 'r+', start: rootStart * SECTOR }),
    );
  }
  await truncate(out, (rootStart + rootSectors) * SECTOR);
}
