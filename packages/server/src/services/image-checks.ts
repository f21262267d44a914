import { FloeError } from '@floe/api';

// The checks every image file passes before it is stored: pure functions over its bytes and
// over what qemu-img reports, kept apart from the service that moves files around.

/** qcow2 incompatible-feature bits. */
const QCOW2_INCOMPAT_CORRUPT = 1n << 1n;
const QCOW2_INCOMPAT_DATA_FILE = 1n << 2n;
/** qcow2 header extension naming an external data file ("DATA"). */
const QCOW2_EXT_DATA_FILE = 0x44415441;

/**
 * The disk format of an upload, recognised by its magic bytes the way QEMU's
 * own probes do: "qcow2", "raw", or the name of a format floe does not take.
 * floe never lets `qemu-img` guess: a probed VMDK descriptor makes it open
 * whatever host files its extents name.
 */
export function sniffImageFormat(head: Buffer, tail: Buffer = Buffer.alloc(0)): string {
  const at = (offset: number, text: string) =>
    head.subarray(offset, offset + text.length).equals(Buffer.from(text, 'latin1'));
  if (at(0, 'QFI\xfb')) return head.length >= 8 && head.readUInt32BE(4) >= 2 ? 'qcow2' : 'qcow';
  if (at(0, 'QED\0')) return 'qed';
  if (at(0, 'KDMV') || at(0, 'COWD')) return 'vmdk';
  if (/^#\s*Disk\s*Descriptor\s*File/i.test(head.subarray(0, 64).toString('latin1'))) return 'vmdk';
  if (head.length >= 68 && head.readUInt32LE(64) === 0xbeda107f) return 'vdi';
  if (at(0, 'vhdxfile')) return 'vhdx';
  if (at(0, 'conectix') || tail.subarray(0, 8).equals(Buffer.from('conectix', 'latin1'))) return 'vpc';
  if (at(0, 'LUKS\xba\xbe')) return 'luks';
  if (at(0, 'WithoutFreeSpace') || at(0, 'WithouFreSpacExt')) return 'parallels';
  if (at(0, 'Bochs Virtual HD Image')) return 'bochs';
  if (at(0, '#!/bin/sh\n#V2.0 Format\n')) return 'cloop';
  if (tail.length >= 4 && tail.subarray(0, 4).equals(Buffer.from('koly', 'latin1'))) return 'dmg';
  return 'raw';
}

/** The fields of a qcow2 header floe checks before any tool opens the file. */
export interface Qcow2Header {
  version: number;
  backingFileOffset: bigint;
  backingFileSize: number;
  virtualSize: bigint;
  cryptMethod: number;
  incompatibleFeatures: bigint;
  /** A header extension names an external data file. */
  dataFileExtension: boolean;
}

/** Parse the header (and header extensions) of a qcow2 file from its first bytes. */
export function parseQcow2Header(head: Buffer): Qcow2Header {
  if (head.length < 72 || head.readUInt32BE(0) !== 0x514649fb) {
    throw new FloeError('image_format_unsupported', 'the file is not a qcow2 image: its header is incomplete');
  }
  const version = head.readUInt32BE(4);
  const v3 = version >= 3 && head.length >= 104;
  const incompatibleFeatures = v3 ? head.readBigUInt64BE(72) : 0n;
  const headerLength = v3 ? head.readUInt32BE(100) : 72;
  let dataFileExtension = false;
  // Header extensions follow the header: type, length, data padded to 8 bytes; type 0 ends them.
  for (let off = headerLength; off + 8 <= head.length;) {
    const type = head.readUInt32BE(off);
    const len = head.readUInt32BE(off + 4);
    if (type === 0) break;
    if (type === QCOW2_EXT_DATA_FILE) dataFileExtension = true;
    off += 8 + Math.ceil(len / 8) * 8;
  }
  return {
    version,
    backingFileOffset: head.readBigUInt64BE(8),
    backingFileSize: head.readUInt32BE(16),
    virtualSize: head.readBigUInt64BE(24),
    cryptMethod: head.readUInt32BE(32),
    incompatibleFeatures,
    dataFileExtension,
  };
}

/** Reject a qcow2 header that points outside the file (backing file, data file) or that QEMU could not use. */
export function checkQcow2Header(h: Qcow2Header): void {
  if (h.backingFileOffset !== 0n || h.backingFileSize !== 0) {
    throw new FloeError(
      'image_backing_file_forbidden',
      'the qcow2 image names a backing file; upload a self-contained image (qemu-img convert -O qcow2 merges the chain)',
    );
  }
  if ((h.incompatibleFeatures & QCOW2_INCOMPAT_DATA_FILE) !== 0n || h.dataFileExtension) {
    throw new FloeError(
      'image_backing_file_forbidden',
      'the qcow2 image keeps its data in an external data file; upload a self-contained image',
    );
  }
  if (h.cryptMethod !== 0) throw new FloeError('image_format_unsupported', 'encrypted qcow2 images are not supported');
  if ((h.incompatibleFeatures & QCOW2_INCOMPAT_CORRUPT) !== 0n)
    throw new FloeError('image_format_unsupported', 'the qcow2 image is marked corrupt');
}

/** What floe takes from `qemu-img info --output=json`. */
export interface CheckedImageInfo {
  format: 'qcow2' | 'raw';
  virtualSize: number;
}

/**
 * Check the JSON of `qemu-img info --output=json`: the expected format, no
 * backing file or external data file, not encrypted, a virtual size within
 * `maxVirtualBytes`.
 */
export function checkImageInfo(info: unknown, expected: 'qcow2' | 'raw', maxVirtualBytes: number): CheckedImageInfo {
  const i = (typeof info === 'object' && info !== null ? info : {}) as Record<string, unknown>;
  if (i.format !== expected) {
    throw new FloeError(
      'image_format_unsupported',
      `qemu-img reads the file as ${String(i.format)}, expected ${expected}`,
    );
  }
  const data = (i['format-specific'] as { data?: Record<string, unknown> } | undefined)?.data ?? {};
  if (i['backing-filename'] !== undefined || i['full-backing-filename'] !== undefined) {
    throw new FloeError(
      'image_backing_file_forbidden',
      'the image names a backing file; upload a self-contained image',
    );
  }
  if (data['data-file'] !== undefined) {
    throw new FloeError(
      'image_backing_file_forbidden',
      'the image keeps its data in an external data file; upload a self-contained image',
    );
  }
  if (i.encrypted === true || data.encrypt !== undefined)
    throw new FloeError('image_format_unsupported', 'encrypted images are not supported');
  const virtualSize = i['virtual-size'];
  if (typeof virtualSize !== 'number' || !Number.isSafeInteger(virtualSize) || virtualSize <= 0) {
    throw new FloeError('image_format_unsupported', 'qemu-img reports no virtual size for the image');
  }
  if (virtualSize > maxVirtualBytes) {
    throw new FloeError(
      'image_too_large',
      `the image describes a disk of ${gib(virtualSize)}; this control plane takes at most ${gib(maxVirtualBytes)}`,
      {
        virtual_size_bytes: virtualSize,
        limit_bytes: maxVirtualBytes,
      },
    );
  }
  return { format: expected, virtualSize };
}

function gib(bytes: number): string {
  return `${Math.round((bytes / 1024 ** 3) * 100) / 100} GiB`;
}
