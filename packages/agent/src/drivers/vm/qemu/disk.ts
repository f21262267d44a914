import { randomBytes } from 'node:crypto';
import { open, rename, rm, stat } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { FloeError } from '@floe/api';
import { ExecError, run } from '../../../host/exec.js';
import { checkQemuPath } from './argv.js';
import { qcow2OverlayLayout } from './qcow2.js';

/**
 * A VM's disk is a qcow2 overlay on its base image: creating one is O(1)
 * whatever the image's size (QEMU reads unchanged blocks from the base), and
 * the base is never written. The base must stay where it is while overlays
 * use it; the agent's image cache keeps it by sha256.
 */

/** The tool that creates, inspects and grows disk images. */
export const QEMU_IMG = 'qemu-img';

/** What `qemu-img info` says about an image. */
export interface QemuImageInfo {
  /** `qcow2`, `raw`, ... */
  format: string;
  /** The size the guest sees, in bytes. */
  virtualSize: number;
  /** Bytes the file takes on the host, when reported. */
  actualSize: number | null;
  /** The image this one is an overlay on, if any. */
  backingFile: string | null;
}

/** Options shared by the disk functions. */
export interface DiskOptions {
  /** The qemu-img binary; default `qemu-img` from PATH. */
  qemuImg?: string;
}

function hostError(what: string, err: unknown): unknown {
  if (err instanceof ExecError)
    return new FloeError('host_operation_failed', `${what}: ${err.message}`, { stderr: err.stderr.slice(0, 2000) });
  return err;
}

/** The arguments of `qemu-img create` for an overlay on `base` (pure); ensureOverlay writes the same file itself. */
export function overlayCreateArgs(base: string, baseFormat: string, overlay: string, sizeBytes: number): string[] {
  if (!/^[a-z0-9]+$/.test(baseFormat))
    throw new FloeError('validation_failed', `unknown image format ${JSON.stringify(baseFormat)}`, { field: 'format' });
  if (!Number.isSafeInteger(sizeBytes) || sizeBytes <= 0)
    throw new FloeError('validation_failed', `disk size must be a positive number of bytes, not ${sizeBytes}`, {
      field: 'disk_gib',
    });
  return [
    'create',
    '-q',
    '-f',
    'qcow2',
    '-F',
    baseFormat,
    '-b',
    checkQemuPath('image', base),
    checkQemuPath('disk', overlay),
    String(sizeBytes),
  ];
}

/** `qemu-img info` of an image; works while a VM has it open (`-U`). */
export async function imageInfo(path: string, opts: DiskOptions = {}): Promise<QemuImageInfo> {
  let stdout: string;
  try {
    ({ stdout } = await run(opts.qemuImg ?? QEMU_IMG, ['info', '-U', '--output=json', path], { timeoutMs: 30_000 }));
  } catch (err) {
    throw hostError(`cannot read the image ${path}`, err);
  }
  const info = JSON.parse(stdout) as {
    format?: string;
    'virtual-size'?: number;
    'actual-size'?: number;
    'backing-filename'?: string;
    'full-backing-filename'?: string;
  };
  if (typeof info.format !== 'string' || typeof info['virtual-size'] !== 'number') {
    throw new FloeError('host_operation_failed', `qemu-img info gave no format or size for ${path}`);
  }
  return {
    format: info.format,
    virtualSize: info['virtual-size'],
    actualSize: typeof info['actual-size'] === 'number' ? info['actual-size'] : null,
    backingFile: info['full-backing-filename'] ?? info['backing-filename'] ?? null,
  };
}

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw err;
  }
}

/** What `ensureOverlay` did. */
export interface OverlayResult {
  created: boolean;
  resized: boolean;
  /** The disk's size as the guest sees it now. */
  virtualSize: number;
}

/** What `qemu-img info` said about base images, and which state of the file it said it about. */
const baseInfos = new Map<string, { key: string; info: QemuImageInfo }>();
const BASE_INFOS_MAX = 64;

/**
 * `imageInfo` of a base image, remembered while the file stays the same
 * (device, inode, size, mtime, ctime): bases are not written while VMs use
 * them, and so each new VM on a known base starts one process (the overlay's
 * `qemu-img create`) instead of two. Any change to the file reads it again.
 */
export async function baseImageInfo(path: string, opts: DiskOptions = {}): Promise<QemuImageInfo> {
  const st = await stat(path).catch(() => null);
  // No stat: let imageInfo say what is wrong with the file.
  const key =
    st === null ? null : `${st.dev}:${st.ino}:${st.size}:${st.mtimeMs}:${st.ctimeMs}:${opts.qemuImg ?? QEMU_IMG}`;
  const known = baseInfos.get(path);
  if (key !== null && known?.key === key) return known.info;
  const info = Object.freeze(await imageInfo(path, opts));
  if (key !== null) {
    baseInfos.delete(path);
    if (baseInfos.size >= BASE_INFOS_MAX) baseInfos.delete(baseInfos.keys().next().value!);
    baseInfos.set(path, { key, info });
  }
  return info;
}

/**
 * Make `overlay` a qcow2 overlay on `base` of at least `sizeBytes` (never
 * smaller than the base). Idempotent: an existing overlay is kept and only
 * grown. The file appears atomically, so a crash never leaves half a disk.
 */
export async function ensureOverlay(
  base: string,
  overlay: string,
  sizeBytes: number,
  opts: DiskOptions = {},
): Promise<OverlayResult> {
  if (await exists(overlay)) {
    const grown = await growDisk(overlay, sizeBytes, opts);
    return { created: false, ...grown };
  }
  checkQemuPath('disk', overlay);
  const baseInfo = await baseImageInfo(checkQemuPath('image', base), opts);
  // qcow2 sizes are whole 512-byte sectors (qemu-img rounds up the same way).
  const size = Math.ceil(Math.max(sizeBytes, baseInfo.virtualSize) / 512) * 512;
  // The same file `qemu-img create` (overlayCreateArgs) makes, written directly: no process to spawn on the hot path.
  const layout = qcow2OverlayLayout(base, baseInfo.format, size);
  const partial = join(dirname(overlay), `.${basename(overlay)}.${randomBytes(6).toString('hex')}.tmp`);
  try {
    const fh = await open(partial, 'wx', 0o644);
    try {
      for (const piece of layout.pieces) await fh.write(piece.data, 0, piece.data.length, piece.offset);
      await fh.truncate(layout.length);
    } finally {
      await fh.close();
    }
    await rename(partial, overlay);
  } catch (err) {
    await rm(partial, { force: true });
    throw new FloeError('host_operation_failed', `cannot create the disk of ${overlay}: ${(err as Error).message}`, {
      path: overlay,
    });
  }
  return { created: true, resized: false, virtualSize: size };
}

/** Grow a disk image to `sizeBytes` when it is smaller; never shrinks. Fails while a VM has it open. */
export async function growDisk(
  path: string,
  sizeBytes: number,
  opts: DiskOptions = {},
): Promise<{ resized: boolean; virtualSize: number }> {
  const info = await imageInfo(checkQemuPath('disk', path), opts);
  if (info.virtualSize >= sizeBytes) return { resized: false, virtualSize: info.virtualSize };
  try {
    await run(opts.qemuImg ?? QEMU_IMG, ['resize', '-q', '-f', info.format, path, String(sizeBytes)], {
      timeoutMs: 60_000,
    });
  } catch (err) {
    throw hostError(`cannot grow the disk ${path}`, err);
  }
  return { resized: true, virtualSize: sizeBytes };
}

/** Delete a disk image; a missing one is fine. */
export async function removeDisk(path: string): Promise<void> {
  await rm(path, { force: true });
}
