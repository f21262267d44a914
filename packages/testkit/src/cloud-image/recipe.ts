import { createHash } from 'node:crypto';
import type { DebPackage } from '../guest-image/debian.js';

/**
 * What floe's real cloud image is made of, as data and pure functions: the
 * Debian packages, the mmdebstrap command line, the files written into the
 * root file system, the units masked for a fast first boot, and the cache key.
 * The image is a small Debian 12 (bookworm) system set up the way Debian's
 * own genericcloud images are: the cloud kernel, Debian's cloud-init with its
 * stock data source detection (ds-identify), netplan rendering to
 * systemd-networkd with systemd-resolved, and openssh-server.
 */

/** Bumped whenever the build changes in a way the other inputs of the key do not show. */
const CLOUD_IMAGE_RECIPE_VERSION = 1;

/** The Debian release the image is built from. */
const CLOUD_IMAGE_SUITE = 'bookworm';

/** Debian's cloud kernel: virtio drivers, no AHCI, no sound or graphics (the meta-package). */
export const CLOUD_KERNEL_META_PACKAGE = 'linux-image-cloud-amd64';

/**
 * The packages installed on top of the `apt` variant (Essential + apt), as
 * Debian's bookworm cloud images have them (FAI classes CLOUD and
 * SYSTEM_BOOT): netplan.io with systemd-networkd and systemd-resolved for
 * networking, cloud-guest-utils so cloud-init can grow the root partition.
 */
export const CLOUD_IMAGE_PACKAGES: readonly string[] = [
  'initramfs-tools',
  'systemd-sysv',
  'udev',
  'dbus',
  'libpam-systemd',
  'cloud-init',
  'cloud-guest-utils',
  'openssh-server',
  'netplan.io',
  'systemd-resolved',
  'sudo',
  'iproute2',
  'iputils-ping',
  'netbase',
];

/** Files dpkg leaves out of the image: documentation, manuals, translations. */
const DPKG_PATH_EXCLUDES: readonly string[] = [
  'path-exclude=/usr/share/man/*',
  'path-exclude=/usr/share/info/*',
  'path-exclude=/usr/share/doc/*',
  'path-include=/usr/share/doc/*/copyright',
  'path-exclude=/usr/share/locale/*',
  'path-exclude=/usr/share/lintian/*',
];

/**
 * Units masked because they only cost time on a short-lived guest under TCG:
 * apt's daily runs, e2scrub, fstrim, man-db's cache.
 */
export const MASKED_UNITS: readonly string[] = [
  'apt-daily.timer',
  'apt-daily-upgrade.timer',
  'apt-daily.service',
  'apt-daily-upgrade.service',
  'e2scrub_all.timer',
  'e2scrub_reap.service',
  'fstrim.timer',
  'man-db.timer',
];

/** Units enabled as in Debian's cloud images: netplan renders for networkd, names resolve through resolved. */
export const ENABLED_UNITS: readonly string[] = ['systemd-networkd.service', 'systemd-resolved.service'];

/** The root file system's UUID (fixed, so the kernel command line and fstab can name it). */
export const ROOT_FS_UUID = '6c6f6530-636c-4f75-a400-000000000002';

/**
 * The kernel command line: the root file system by UUID, the serial console
 * last so it is /dev/console (boot messages and cloud-init's output show in
 * floe's console log), as Debian's cloud images boot.
 */
export const CLOUD_KERNEL_CMDLINE = `root=UUID=${ROOT_FS_UUID} ro console=tty0 console=ttyS0,115200 consoleblank=0`;

/** Files written into the root file system after installing (path below the root → contents). */
export const ROOTFS_FILES: Readonly<Record<string, string>> = {
  'etc/fstab': `UUID=${ROOT_FS_UUID} / ext4 rw,discard,errors=remount-ro 0 1\n`,
  'etc/hostname': 'localhost\n',
  // As in Debian's images: cloud-init's locale module then has nothing to generate (en_US.UTF-8 is not built).
  'etc/default/locale': 'LANG=C.UTF-8\n',
  'etc/hosts':
    '127.0.0.1 localhost\n::1 localhost ip6-localhost ip6-loopback\nff02::1 ip6-allnodes\nff02::2 ip6-allrouters\n',
  // Empty: systemd makes a new machine id on first boot, so each instance has its own.
  'etc/machine-id': '',
};

/**
 * Paths removed from the root file system: the build's host keys and machine
 * id (each instance makes its own on first boot), apt's lists and caches, logs.
 * A trailing `/*` empties a directory.
 */
export const ROOTFS_REMOVE: readonly string[] = [
  'etc/ssh/ssh_host_*',
  'var/lib/dbus/machine-id',
  'var/lib/apt/lists/*',
  'var/cache/apt/*',
  'var/cache/debconf/*-old',
  'var/log/*.log',
  'var/log/apt/*',
  'etc/apt/apt.conf.d/99mmdebstrap',
  'boot/System.map-*',
  'boot/config-*',
];

const PACKAGE_RE = /^[a-z0-9][a-z0-9+.-]+$/;
const VERSION_RE = /^[A-Za-z0-9.+~:-]+$/;
const SOURCES_RE = /^\/[A-Za-z0-9._/-]+\.(list|sources)$/;

/**
 * The mmdebstrap arguments that install `packages` (at exactly their
 * versions) into the directory `target`, from the apt sources files `sources`
 * (the host's, so the image gets the versions `apt-cache` reports; none means
 * mmdebstrap's default mirror). Unshare mode: its mounts live in a namespace
 * of their own and vanish with it, even when the build is killed.
 */
export function mmdebstrapArgs(target: string, packages: readonly DebPackage[], sources: readonly string[]): string[] {
  for (const p of packages) {
    if (!PACKAGE_RE.test(p.name) || !VERSION_RE.test(p.version))
      throw new RangeError(`bad Debian package ${p.name}=${p.version}`);
  }
  for (const s of sources) if (!SOURCES_RE.test(s)) throw new RangeError(`bad apt sources file ${s}`);
  if (!target.startsWith('/') || /[\0\n]/.test(target)) throw new RangeError(`bad target directory ${target}`);
  return [
    '--mode=unshare',
    '--variant=apt',
    '--format=directory',
    '--quiet',
    ...DPKG_PATH_EXCLUDES.map((o) => `--dpkgopt=${o}`),
    `--include=${packages.map((p) => `${p.name}=${p.version}`).join(',')}`,
    CLOUD_IMAGE_SUITE,
    target,
    ...sources,
  ];
}

/** Size of the root file system image for `usedMib` of files: room for logs, keys and cloud-init's state, whole MiB. */
export function rootFsMib(usedMib: number): number {
  return Math.ceil(usedMib * 1.15 + 256);
}

/** What the cache key is made of. */
export interface CloudImageKeyInputs {
  /** The packages at the versions apt offers (the kernel resolved from its meta-package). */
  packages: readonly DebPackage[];
  /** `mmdebstrap --version`, `syslinux --version`. */
  tools: Readonly<Record<string, string>>;
}

/**
 * The cache key: a hash of the recipe version, the package versions, the
 * build tools and everything in this file that shapes the image. Pure.
 */
export function cloudImageKey(inputs: CloudImageKeyInputs): string {
  const recipe = JSON.stringify({
    version: CLOUD_IMAGE_RECIPE_VERSION,
    suite: CLOUD_IMAGE_SUITE,
    excludes: DPKG_PATH_EXCLUDES,
    masked: MASKED_UNITS,
    enabled: ENABLED_UNITS,
    cmdline: CLOUD_KERNEL_CMDLINE,
    files: ROOTFS_FILES,
    remove: ROOTFS_REMOVE,
  });
  const packages = [...inputs.packages]
    .sort((a, b) => a.name.localeCompare(b.name))
    .map((p) => `${p.name}=${p.version}`);
  const tools = Object.keys(inputs.tools)
    .sort()
    .map((k) => `${k}=${inputs.tools[k]}`);
  return createHash('sha256').update(JSON.stringify({ recipe, packages, tools })).digest('hex').slice(0, 16);
}
