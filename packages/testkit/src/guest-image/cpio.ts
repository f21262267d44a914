/**
 * A writer for the cpio "newc" format the Linux kernel unpacks as its
 * initramfs. Pure: entries in, bytes out, no clock and no file system, so the
 * same inputs always give the same archive.
 */

/** One member of the archive. Paths are relative (`bin/busybox`), parents listed before children. */
export type CpioEntry =
  | { type: 'dir'; path: string; mode?: number }
  | { type: 'file'; path: string; data: Uint8Array | string; mode?: number }
  | { type: 'symlink'; path: string; target: string }
  | { type: 'char'; path: string; major: number; minor: number; mode?: number };

const S_IFDIR = 0o040000;
const S_IFREG = 0o100000;
const S_IFLNK = 0o120000;
const S_IFCHR = 0o020000;
const TRAILER = 'TRAILER!!!';

function hex8(n: number): string {
  if (!Number.isInteger(n) || n < 0 || n > 0xffffffff) throw new RangeError(`cpio field out of range: ${n}`);
  return n.toString(16).padStart(8, '0');
}

function pad4(n: number): number {
  return (4 - (n % 4)) % 4;
}

function checkPath(path: string): void {
  if (
    path === TRAILER ||
    path.length === 0 ||
    path.startsWith('/') ||
    path.includes('\0') ||
    path.split('/').some((p) => p === '' || p === '.' || p === '..')
  ) {
    throw new RangeError(`bad cpio path: ${JSON.stringify(path)}`);
  }
}

function member(
  ino: number,
  name: string,
  mode: number,
  nlink: number,
  data: Uint8Array,
  rdev: [number, number],
): Buffer[] {
  const nameBytes = Buffer.from(`${name}\0`, 'utf8');
  const header = [
    '070701',
    hex8(ino),
    hex8(mode),
    hex8(0),
    hex8(0),
    hex8(nlink),
    hex8(0),
    hex8(data.length),
    hex8(0),
    hex8(0),
    hex8(rdev[0]),
    hex8(rdev[1]),
    hex8(nameBytes.length),
    hex8(0),
  ].join('');
  return [
    Buffer.from(header, 'ascii'),
    nameBytes,
    Buffer.alloc(pad4(110 + nameBytes.length)),
    Buffer.from(data),
    Buffer.alloc(pad4(data.length)),
  ];
}

/**
 * Build a newc archive (owner root, mtime 0) from `entries`, in order, with
 * the trailer.
 *
 * @example
 * cpioNewc([{ type: 'dir', path: 'bin' }, { type: 'file', path: 'init', data: '#!/bin/sh\n', mode: 0o755 }])
 */
export function cpioNewc(entries: readonly CpioEntry[]): Buffer {
  const parts: Buffer[] = [];
  const seen = new Set<string>();
  let ino = 1;
  for (const e of entries) {
    checkPath(e.path);
    if (seen.has(e.path)) throw new RangeError(`duplicate cpio path: ${e.path}`);
    seen.add(e.path);
    switch (e.type) {
      case 'dir':
        parts.push(...member(ino++, e.path, S_IFDIR | (e.mode ?? 0o755), 2, new Uint8Array(), [0, 0]));
        break;
      case 'file': {
        const data = typeof e.data === 'string' ? Buffer.from(e.data, 'utf8') : e.data;
        parts.push(...member(ino++, e.path, S_IFREG | (e.mode ?? 0o644), 1, data, [0, 0]));
        break;
      }
      case 'symlink':
        parts.push(...member(ino++, e.path, S_IFLNK | 0o777, 1, Buffer.from(e.target, 'utf8'), [0, 0]));
        break;
      case 'char':
        parts.push(...member(ino++, e.path, S_IFCHR | (e.mode ?? 0o600), 1, new Uint8Array(), [e.major, e.minor]));
        break;
    }
  }
  parts.push(...member(0, TRAILER, 0, 1, new Uint8Array(), [0, 0]));
  return Buffer.concat(parts);
}
