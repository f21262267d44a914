import { randomBytes } from 'node:crypto';
import { constants } from 'node:fs';
import { mkdir, open, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { QemuDiskCache } from './argv.js';

/**
 * The disk cache mode for VM disks under `dir`: `none` (O_DIRECT, the safe
 * choice) when its file system supports O_DIRECT, else `writeback` (tmpfs and
 * some others refuse it). Found by opening a probe file with O_DIRECT.
 */
export async function probeDiskCache(dir: string): Promise<QemuDiskCache> {
  await mkdir(dir, { recursive: true });
  const probe = join(dir, `.odirect-probe-${process.pid}-${randomBytes(4).toString('hex')}`);
  try {
    const fh = await open(probe, constants.O_CREAT | constants.O_RDWR | constants.O_DIRECT, 0o600);
    await fh.close();
    return 'none';
  } catch {
    return 'writeback';
  } finally {
    await rm(probe, { force: true });
  }
}
