/**
 * A classic MBR (DOS) partition table, built as bytes so that no partitioning
 * tool and no loop device is needed. Pure.
 */

/** Bytes in a disk sector. */
export const SECTOR = 512;
/** Bytes of boot code an MBR has room for (then the disk signature and the table). */
const MBR_BOOT_CODE_MAX = 440;

/** One primary partition. */
export interface MbrPartition {
  /** First sector (LBA). */
  start: number;
  /** Length in sectors. */
  sectors: number;
  /** Partition type byte, e.g. 0x0e for FAT16 (LBA), 0x83 for Linux. */
  type: number;
  bootable?: boolean;
}

const HEADS = 255;
const SECTORS_PER_TRACK = 63;

/** The legacy CHS address of a sector (255 heads, 63 sectors), saturated at 1023/254/63 as tools do. */
export function chs(lba: number): [number, number, number] {
  const cylinder = Math.floor(lba / (HEADS * SECTORS_PER_TRACK));
  if (cylinder > 1023) return [0xfe, 0xff, 0xff];
  const head = Math.floor(lba / SECTORS_PER_TRACK) % HEADS;
  const sector = (lba % SECTORS_PER_TRACK) + 1;
  return [head, (sector & 0x3f) | ((cylinder >> 2) & 0xc0), cylinder & 0xff];
}

/**
 * The first sector of a disk: `bootCode` (at most 440 bytes, e.g. syslinux's
 * mbr.bin), the disk signature, up to four primary partitions and 55 AA.
 */
export function buildMbr(bootCode: Uint8Array, partitions: readonly MbrPartition[], diskSignature: number): Buffer {
  if (bootCode.length > MBR_BOOT_CODE_MAX)
    throw new RangeError(`MBR boot code is ${bootCode.length} bytes; at most ${MBR_BOOT_CODE_MAX} fit`);
  if (partitions.length > 4) throw new RangeError('an MBR holds at most four primary partitions');
  const mbr = Buffer.alloc(SECTOR);
  Buffer.from(bootCode).copy(mbr, 0);
  mbr.writeUInt32LE(diskSignature >>> 0, 440);
  partitions.forEach((p, i) => {
    if (
      !Number.isInteger(p.start) ||
      !Number.isInteger(p.sectors) ||
      p.start < 1 ||
      p.sectors < 1 ||
      p.start + p.sectors > 0x1_0000_0000
    ) {
      throw new RangeError(`partition ${i + 1} does not fit an MBR: start ${p.start}, ${p.sectors} sectors`);
    }
    const at = 446 + i * 16;
    mbr[at] = p.bootable ? 0x80 : 0x00;
    Buffer.from(chs(p.start)).copy(mbr, at + 1);
    mbr[at + 4] = p.type;
    Buffer.from(chs(p.start + p.sectors - 1)).copy(mbr, at + 5);
    mbr.writeUInt32LE(p.start, at + 8);
    mbr.writeUInt32LE(p.sectors, at + 12);
  });
  mbr[510] = 0x55;
  mbr[511] = 0xaa;
  return mbr;
}
