import { chmod, copyFile, mkdir, readdir, rm, truncate, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { DebPackage } from '../guest-image/debian.js';
import { buildBootDisk } from '../guest-image/disk.js';
import { runTool, ToolError } from '../guest-image/exec.js';
import { syslinuxConfig } from '../guest-image/guest-files.js';
import {
  CLOUD_KERNEL_CMDLINE,
  ENABLED_UNITS,
  MASKED_UNITS,
  ROOT_FS_UUID,
  ROOTFS_FILES,
  ROOTFS_REMOVE,
  mmdebstrapArgs,
  rootFsMib,
} from './recipe.js';

/**
 * Builds the real cloud image in a scratch directory: mmdebstrap installs the
 * packages into a directory, the recipe's files and units are applied to it,
 * `mkfs.ext4 -d` turns it into a partition image, and the kernel and initramfs
 * go onto a syslinux FAT boot partition in front of it (guest-image/disk.ts).
 * No loop device, no mount on the host.
 */

/** Host tools a build needs, with the Debian package that has each. */
const CLOUD_BUILD_TOOLS: ReadonlyArray<[string, string]> = [
  ['mmdebstrap', 'mmdebstrap'],
  ['mkfs.ext4', 'e2fsprogs'],
  ['mkfs.vfat', 'dosfstools'],
  ['mcopy', 'mtools'],
  ['syslinux', 'syslinux'],
  ['qemu-img', 'qemu-utils'],
  ['systemctl', 'systemd'],
  ['du', 'coreutils'],
];

/** The file name of the image inside its cache directory. */
export const CLOUD_IMAGE_FILE = 'debian-12-floe-cloud.qcow2';

/** A missing host tool (`unavailable`) or a failed step (`build`). */
export class CloudImageError extends Error {
  override readonly name = 'CloudImageError';
  constructor(
    message: string,
    readonly reason: 'unavailable' | 'build',
  ) {
    super(message);
  }
}

/** Check that every build tool can be started. */
async function checkBuildTools(): Promise<void> {
  for (const [tool, pkg] of CLOUD_BUILD_TOOLS) {
    try {
      await runTool(tool, ['--version'], { timeoutMs: 10_000 });
    } catch (err) {
      if (err instanceof ToolError && err.missing)
        throw new CloudImageError(
          `${tool} is not installed (Debian package ${pkg}); ./floe test installs it`,
          'unavailable',
        );
      // Some tools answer --version with a non-zero exit; being there is enough.
    }
  }
}

/** Remove what a ROOTFS_REMOVE entry names below `root` (a `*` matches within one directory level). */
async function removeMatching(root: string, pattern: string): Promise<void> {
  const dir = dirname(pattern);
  const base = pattern.slice(dir.length + 1);
  if (!base.includes('*')) {
    await rm(join(root, pattern), { recursive: true, force: true });
    return;
  }
  const re = new RegExp(
    `^${base
      .split('*')
      .map((s) => s.replace(/[.+?^${}()|[\]\\]/g, '\\$&'))
      .join('.*')}$`,
  );
  let names: string[];
  try {
    names = await readdir(join(root, dir));
  } catch {
    return;
  }
  for (const name of names) if (re.test(name)) await rm(join(root, dir, name), { recursive: true, force: true });
}

/** What a finished build reports. */
export interface BuiltCloudImage {
  /** The qcow2 file in `work`. */
  path: string;
  kernelVersion: string;
  rootFsMib: number;
}

/**
 * Build the image into `work` (an empty directory) from `packages` at their
 * versions, with apt's `sources` files. Leaves only the qcow2 behind.
 */
export async function buildCloudImage(
  work: string,
  packages: readonly DebPackage[],
  sources: readonly string[],
  log: (line: string) => void,
): Promise<BuiltCloudImage> {
  await checkBuildTools();
  const root = join(work, 'rootfs');
  log(`mmdebstrap: ${packages.map((p) => `${p.name}=${p.version}`).join(' ')}`);
  try {
    await runTool('mmdebstrap', mmdebstrapArgs(root, packages, sources), { timeoutMs: 40 * 60_000 });
  } catch (err) {
    const stderr = err instanceof ToolError ? err.stderr.slice(-3000) : '';
    throw new CloudImageError(`mmdebstrap failed: ${(err as Error).message}\n${stderr}`, 'build');
  }

  log('configuring the root file system');
  for (const pattern of ROOTFS_REMOVE) await removeMatching(root, pattern);
  for (const [path, text] of Object.entries(ROOTFS_FILES)) {
    await mkdir(dirname(join(root, path)), { recursive: true });
    await rm(join(root, path), { force: true });
    await writeFile(join(root, path), text);
    await chmod(join(root, path), 0o644);
  }
  await runTool('systemctl', [`--root=${root}`, 'mask', ...MASKED_UNITS]);
  await runTool('systemctl', [`--root=${root}`, 'enable', ...ENABLED_UNITS]);

  const boot = await readdir(join(root, 'boot'));
  const vmlinuz = boot.filter((n) => n.startsWith('vmlinuz-'));
  if (vmlinuz.length !== 1)
    throw new CloudImageError(`expected one kernel in the image, found ${vmlinuz.join(', ') || 'none'}`, 'build');
  const kernelVersion = vmlinuz[0]!.slice('vmlinuz-'.length);
  const kernel = join(work, 'vmlinuz');
  const initrd = join(work, 'initrd.img');
  await copyFile(join(root, 'boot', `vmlinuz-${kernelVersion}`), kernel);
  await copyFile(join(root, 'boot', `initrd.img-${kernelVersion}`), initrd);

  log('making the root file system');
  const used = Number.parseInt((await runTool('du', ['-s', '-x', '--block-size=1M', root])).stdout, 10);
  if (!Number.isInteger(used) || used <= 0)
    throw new CloudImageError(`cannot tell how big the root file system is`, 'build');
  const mib = rootFsMib(used);
  const rootImg = join(work, 'root.ext4');
  await writeFile(rootImg, '');
  await truncate(rootImg, mib * 1024 * 1024);
  await runTool(
    'mkfs.ext4',
    ['-q', '-F', '-L', 'root', '-U', ROOT_FS_UUID, '-m', '1', '-E', 'root_owner=0:0', '-d', root, rootImg],
    { timeoutMs: 20 * 60_000 },
  );
  await rm(root, { recursive: true, force: true });

  log('making the disk');
  const cfg = join(work, 'syslinux.cfg');
  await writeFile(cfg, syslinuxConfig(CLOUD_KERNEL_CMDLINE));
  const raw = join(work, 'disk.raw');
  await buildBootDisk(raw, { vmlinuz: kernel, 'initrd.img': initrd, 'syslinux.cfg': cfg }, work, {
    rootPartition: rootImg,
  });
  for (const f of [rootImg, kernel, initrd, cfg, join(work, 'boot-partition.img')]) await rm(f, { force: true });
  const image = join(work, 'image.qcow2');
  await runTool('qemu-img', ['convert', '-q', '-c', '-f', 'raw', '-O', 'qcow2', raw, image], {
    timeoutMs: 20 * 60_000,
  });
  await rm(raw, { force: true });
  return { path: image, kernelVersion, rootFsMib: mib };
}
