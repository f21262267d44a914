import { createHash, randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import { cpioNewc, type CpioEntry } from './cpio.js';
import {
  aptCandidate,
  aptDownload,
  aptListsStamp,
  debExtract,
  resolveKernelPackage,
  type DebPackage,
} from './debian.js';
import { buildBootDisk } from './disk.js';
import { runTool, ToolError } from './exec.js';
import { lock, lockState } from './lock.js';
import {
  CONSOLE_SCRIPT,
  ETC_FILES,
  FIRSTBOOT_SCRIPT,
  GUEST_APPLETS,
  GUEST_KERNEL_CMDLINE,
  GUEST_MODULES,
  INITTAB,
  POWER_BUTTON_SCRIPT,
  SHUTDOWN_SCRIPT,
  UDHCPC_SCRIPT,
  initScript,
  syslinuxConfig,
} from './guest-files.js';
import { modulesDep, resolveKernelModules } from './modules.js';

/**
 * floe's test guest image: Debian's cloud kernel, the few modules it needs and a
 * busybox initramfs on a small MBR + FAT disk that syslinux boots, as qcow2.
 * It boots in seconds under TCG, reads the NoCloud seed and prints markers on
 * its serial console (see guest-files.ts). Built once and cached, keyed by the
 * Debian package versions and the guest's files.
 */

export { DEFAULT_GUEST_HOSTNAME, IP_MARKER, READY_MARKER } from './guest-files.js';

/** The built image. */
export interface TestImage {
  /** The qcow2 file; treat it as read-only (use an overlay to boot it). */
  path: string;
  /** `uname -r` of the guest kernel. */
  kernelVersion: string;
  /** sha256 of the qcow2 file. */
  sha256: string;
}

/** Options of `ensureTestImage`. */
export interface EnsureTestImageOptions {
  /** Where built images are kept; default `<repository>/.cache/test-image`. */
  cacheDir?: string;
  /** Progress lines (download, build steps); silent by default. */
  log?: (line: string) => void;
}

/** Why the test image could not be had: `unavailable` when a package or host tool is missing, `build` when building failed. */
export class TestImageError extends Error {
  override readonly name = 'TestImageError';
  constructor(
    message: string,
    readonly reason: 'unavailable' | 'build',
  ) {
    super(message);
  }
}

/**
 * Debian's cloud kernel, the flavour distribution cloud images boot: virtio,
 * but no AHCI, so a seed on q35's own CD-ROM controller stays invisible to it
 * just as it does to a real cloud image. The guest sees what such an image
 * sees.
 */
export const KERNEL_META_PACKAGE = 'linux-image-cloud-amd64';
/** A statically linked busybox: the guest's whole userland. */
export const BUSYBOX_PACKAGE = 'busybox-static';
/** Name of the image file inside its cache directory. */
export const TEST_IMAGE_FILE = 'floe-test.qcow2';
/** Bumped whenever the build changes in a way the other inputs of the key do not show. */
const RECIPE_VERSION = 5;
const MANIFEST = 'manifest.json';
const APT_MEMO = 'apt-versions.json';

/** Host tools a build needs, with the Debian package that has each. */
const BUILD_TOOLS: ReadonlyArray<[string, string]> = [
  ['apt-get', 'apt'],
  ['dpkg-deb', 'dpkg'],
  ['mkfs.vfat', 'dosfstools'],
  ['mcopy', 'mtools'],
  ['syslinux', 'syslinux'],
  ['qemu-img', 'qemu-utils'],
];

interface Manifest {
  key: string;
  kernelVersion: string;
  sha256: string;
  sizeBytes: number;
  packages: DebPackage[];
  syslinux: string;
  builtAt: string;
}

/** `<repository>/.cache/test-image` (the same from src/ and dist/). */
export function defaultTestImageCacheDir(): string {
  return resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..', '..', '.cache', 'test-image');
}

async function sha256File(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

async function readManifest(dir: string): Promise<Manifest | null> {
  try {
    const m = JSON.parse(await readFile(join(dir, MANIFEST), 'utf8')) as Manifest;
    return typeof m.sha256 === 'string' && typeof m.kernelVersion === 'string' ? m : null;
  } catch {
    return null;
  }
}

/** The cached image in `dir`, if it is complete and its file still has the recorded checksum. */
async function cachedImage(dir: string): Promise<TestImage | null> {
  const m = await readManifest(dir);
  if (m === null) return null;
  const path = join(dir, TEST_IMAGE_FILE);
  try {
    if ((await sha256File(path)) !== m.sha256) return null;
  } catch {
    return null;
  }
  return { path, kernelVersion: m.kernelVersion, sha256: m.sha256 };
}

/** The newest complete image in the cache, whatever its key (used when apt cannot say what is current). */
async function newestCached(cacheDir: string): Promise<TestImage | null> {
  let names: string[];
  try {
    names = await readdir(cacheDir);
  } catch {
    return null;
  }
  const found: Array<{ image: TestImage; builtAt: string }> = [];
  for (const name of names) {
    if (name.startsWith('.') || name.endsWith('.lock') || name === APT_MEMO) continue;
    const m = await readManifest(join(cacheDir, name));
    const image = m === null ? null : await cachedImage(join(cacheDir, name));
    if (m !== null && image !== null) found.push({ image, builtAt: m.builtAt });
  }
  found.sort((a, b) => b.builtAt.localeCompare(a.builtAt));
  return found[0]?.image ?? null;
}

interface Inputs {
  kernel: DebPackage;
  busybox: DebPackage;
  syslinux: string;
  key: string;
}

/** The package versions apt offers, reused from the last answer while apt's lists are unchanged. */
async function lookUpPackages(cacheDir: string, log: (line: string) => void): Promise<[DebPackage, DebPackage] | null> {
  const memoPath = join(cacheDir, APT_MEMO);
  const stamp = await aptListsStamp();
  if (stamp !== null) {
    try {
      const memo = JSON.parse(await readFile(memoPath, 'utf8')) as {
        stamp: string;
        meta?: string;
        kernel: DebPackage;
        busybox: DebPackage;
      };
      // The answer holds for the same lists and the same kernel flavour only.
      if (memo.stamp === stamp && memo.meta === KERNEL_META_PACKAGE) return [memo.kernel, memo.busybox];
    } catch {
      // no memo yet
    }
  }
  const lookUp = async (): Promise<[DebPackage, DebPackage] | null> => {
    const [kernel, busybox] = await Promise.all([
      resolveKernelPackage(KERNEL_META_PACKAGE),
      aptCandidate(BUSYBOX_PACKAGE),
    ]);
    return kernel === null || busybox === null ? null : [kernel, { name: BUSYBOX_PACKAGE, version: busybox.version }];
  };
  let found: [DebPackage, DebPackage] | null;
  try {
    found = await lookUp();
    if (found === null && process.getuid?.() === 0) {
      log('apt does not know the packages; running apt-get update');
      await runTool('apt-get', ['update', '-q'], { timeoutMs: 10 * 60_000 }).catch((err: unknown) =>
        log(`apt-get update failed: ${(err as Error).message}`),
      );
      found = await lookUp();
    }
  } catch (err) {
    if (err instanceof ToolError && err.missing) return null;
    throw err;
  }
  const fresh = await aptListsStamp();
  if (found !== null && fresh !== null) {
    const tmp = `${memoPath}.${randomBytes(4).toString('hex')}.tmp`;
    await writeFile(
      tmp,
      `${JSON.stringify({ stamp: fresh, meta: KERNEL_META_PACKAGE, kernel: found[0], busybox: found[1] })}\n`,
    );
    await rename(tmp, memoPath);
  }
  return found;
}

async function lookUpInputs(cacheDir: string, log: (line: string) => void): Promise<Inputs | null> {
  const found = await lookUpPackages(cacheDir, log);
  if (found === null) return null;
  const [kernel, busybox] = found;
  let syslinux = 'unknown';
  try {
    const r = await runTool('syslinux', ['--version'], { timeoutMs: 10_000 });
    syslinux = `${r.stdout}${r.stderr}`.trim().split(/\s+/).slice(0, 2).join(' ');
  } catch {
    // not installed: the build will say so
  }
  const recipe = [
    initScript(GUEST_MODULES),
    FIRSTBOOT_SCRIPT,
    CONSOLE_SCRIPT,
    INITTAB,
    SHUTDOWN_SCRIPT,
    POWER_BUTTON_SCRIPT,
    UDHCPC_SCRIPT,
    JSON.stringify(ETC_FILES),
    syslinuxConfig(GUEST_KERNEL_CMDLINE),
  ].join('\0');
  const key = createHash('sha256')
    .update(
      JSON.stringify({
        recipe: RECIPE_VERSION,
        kernel,
        busybox,
        syslinux,
        files: createHash('sha256').update(recipe).digest('hex'),
      }),
    )
    .digest('hex')
    .slice(0, 16);
  return { kernel, busybox, syslinux, key };
}

/** Parents of `path` (a/b/c → a, a/b), outermost first. */
function parents(path: string): string[] {
  const parts = path.split('/');
  return parts.slice(0, -1).map((_, i) => parts.slice(0, i + 1).join('/'));
}

/** The initramfs: busybox, /init and friends, the modules with their modules.dep. */
async function buildInitramfs(
  kernelRoot: string,
  kernelVersion: string,
  busybox: string,
  log: (line: string) => void,
): Promise<{ cpio: Buffer; modules: number }> {
  const versionDir = join(kernelRoot, 'lib', 'modules', kernelVersion);
  const modules = await resolveKernelModules(versionDir, GUEST_MODULES);
  const loaded = new Set(modules.map((m) => m.name));
  const toLoad = GUEST_MODULES.filter((m) => loaded.has(m));
  log(`initramfs: ${modules.length} modules (${modules.map((m) => m.name).join(' ')})`);

  const entries: CpioEntry[] = [];
  const dirs = new Set<string>();
  const dir = (path: string, mode?: number): void => {
    for (const p of [...parents(path), path]) {
      if (dirs.has(p)) continue;
      dirs.add(p);
      entries.push(p === path && mode !== undefined ? { type: 'dir', path: p, mode } : { type: 'dir', path: p });
    }
  };
  for (const d of [
    'bin',
    'sbin',
    'usr/bin',
    'usr/sbin',
    'etc/acpi/PWRF',
    'etc/udhcpc',
    'proc',
    'sys',
    'dev',
    'run',
    'mnt/seed',
    'var/log',
  ])
    dir(d);
  dir('tmp', 0o1777);
  dir('root', 0o700);
  entries.push({ type: 'char', path: 'dev/console', major: 5, minor: 1, mode: 0o600 });
  entries.push({ type: 'symlink', path: 'var/run', target: '../run' });
  entries.push({ type: 'file', path: 'bin/busybox', data: await readFile(busybox), mode: 0o755 });
  entries.push({ type: 'symlink', path: 'bin/sh', target: 'busybox' });
  entries.push({ type: 'file', path: 'init', data: initScript(toLoad), mode: 0o755 });
  entries.push({ type: 'file', path: 'etc/inittab', data: INITTAB });
  entries.push({ type: 'file', path: 'etc/floe-firstboot', data: FIRSTBOOT_SCRIPT, mode: 0o755 });
  entries.push({ type: 'file', path: 'etc/floe-console', data: CONSOLE_SCRIPT, mode: 0o755 });
  entries.push({ type: 'file', path: 'etc/floe-shutdown', data: SHUTDOWN_SCRIPT, mode: 0o755 });
  entries.push({ type: 'file', path: 'etc/acpi/PWRF/00000080', data: POWER_BUTTON_SCRIPT, mode: 0o755 });
  entries.push({ type: 'file', path: 'etc/udhcpc/default.script', data: UDHCPC_SCRIPT, mode: 0o755 });
  for (const [name, text] of Object.entries(ETC_FILES)) entries.push({ type: 'file', path: `etc/${name}`, data: text });
  const modRoot = `lib/modules/${kernelVersion}`;
  dir(modRoot);
  for (const m of modules) {
    const path = `${modRoot}/${m.path}`;
    for (const p of parents(path)) dir(p);
    entries.push({ type: 'file', path, data: await readFile(join(versionDir, m.path)) });
  }
  entries.push({ type: 'file', path: `${modRoot}/modules.dep`, data: modulesDep(modules) });
  return { cpio: cpioNewc(entries), modules: modules.length };
}

async function build(work: string, inputs: Inputs, log: (line: string) => void): Promise<Manifest> {
  for (const [tool, pkg] of BUILD_TOOLS) {
    try {
      await runTool(tool, ['--version'], { timeoutMs: 10_000 });
    } catch (err) {
      if (err instanceof ToolError && err.missing)
        throw new TestImageError(
          `${tool} is not installed (Debian package ${pkg}); ./floe test installs it`,
          'unavailable',
        );
      // Some tools answer --version with a non-zero exit; being there is enough.
    }
  }
  const debs = join(work, 'debs');
  await mkdir(debs);
  log(`downloading ${inputs.kernel.name}=${inputs.kernel.version} ${inputs.busybox.name}=${inputs.busybox.version}`);
  let kernelDeb: string;
  let busyboxDeb: string;
  try {
    [kernelDeb, busyboxDeb] = (await aptDownload(debs, [inputs.kernel, inputs.busybox])) as [string, string];
  } catch (err) {
    throw new TestImageError(`cannot download the test image's packages: ${(err as Error).message}`, 'unavailable');
  }
  const kernelRoot = join(work, 'kernel');
  const busyboxRoot = join(work, 'busybox');
  await debExtract(kernelDeb, kernelRoot);
  await debExtract(busyboxDeb, busyboxRoot);
  await rm(debs, { recursive: true, force: true });

  const applets = new Set(
    (await runTool(join(busyboxRoot, 'bin', 'busybox'), ['--list'], { timeoutMs: 10_000 })).stdout.split('\n'),
  );
  const missing = GUEST_APPLETS.filter((a) => !applets.has(a));
  if (missing.length > 0)
    throw new TestImageError(`${inputs.busybox.name} lacks the applets ${missing.join(', ')} the guest uses`, 'build');

  const versions = await readdir(join(kernelRoot, 'lib', 'modules'));
  if (versions.length !== 1)
    throw new TestImageError(`expected one kernel in ${inputs.kernel.name}, found ${versions.join(', ')}`, 'build');
  const kernelVersion = versions[0]!;
  const { cpio } = await buildInitramfs(kernelRoot, kernelVersion, join(busyboxRoot, 'bin', 'busybox'), log);
  const initrd = join(work, 'initrd.img');
  await writeFile(initrd, gzipSync(cpio, { level: 9 }));
  const cfg = join(work, 'syslinux.cfg');
  await writeFile(cfg, syslinuxConfig(GUEST_KERNEL_CMDLINE));

  log('building the boot disk');
  const raw = join(work, 'disk.raw');
  await buildBootDisk(
    raw,
    { vmlinuz: join(kernelRoot, 'boot', `vmlinuz-${kernelVersion}`), 'initrd.img': initrd, 'syslinux.cfg': cfg },
    work,
  );
  await rm(kernelRoot, { recursive: true, force: true });
  await rm(busyboxRoot, { recursive: true, force: true });

  const image = join(work, TEST_IMAGE_FILE);
  await runTool('qemu-img', ['convert', '-q', '-f', 'raw', '-O', 'qcow2', raw, image]);
  for (const f of [raw, initrd, cfg, join(work, 'boot-partition.img')]) await rm(f, { force: true });
  const manifest: Manifest = {
    key: inputs.key,
    kernelVersion,
    sha256: await sha256File(image),
    sizeBytes: (await stat(image)).size,
    packages: [inputs.kernel, inputs.busybox],
    syslinux: inputs.syslinux,
    builtAt: new Date().toISOString(),
  };
  await writeFile(join(work, MANIFEST), `${JSON.stringify(manifest, null, 2)}\n`);
  return manifest;
}

/** Remove older images and leftovers of crashed builds; keep `keep` and whatever a live build works on. */
async function prune(cacheDir: string, keep: string): Promise<void> {
  for (const name of await readdir(cacheDir)) {
    if (name === keep || name === APT_MEMO || name === `${keep}.lock`) continue;
    const key = /^\.build-([0-9a-f]+)-/.exec(name)?.[1] ?? name.replace(/\.lock$/, '');
    // We hold the lock of `keep`, so its other build directories are leftovers.
    if (key !== keep && (await lockState(join(cacheDir, `${key}.lock`))).state === 'held') continue;
    await rm(join(cacheDir, name), { recursive: true, force: true });
  }
}

const inFlight = new Map<string, Promise<TestImage>>();

/**
 * The test guest image, built on first use and cached until a Debian package
 * it is made of (or the guest's files) changes. When apt cannot tell the
 * current versions or download them (no package lists, no network) the newest
 * cached image is used; with none, it throws TestImageError with reason
 * `unavailable`. Concurrent callers (in this process or others) share one build.
 *
 * @example
 * const { path, sha256 } = await ensureTestImage({ log: console.log });
 */
export async function ensureTestImage(opts: EnsureTestImageOptions = {}): Promise<TestImage> {
  const cacheDir = resolve(opts.cacheDir ?? defaultTestImageCacheDir());
  const log = opts.log ?? (() => undefined);
  await mkdir(cacheDir, { recursive: true });
  const inputs = await lookUpInputs(cacheDir, log);
  if (inputs === null) {
    const newest = await newestCached(cacheDir);
    if (newest !== null) {
      log(`apt cannot tell the current package versions; using the cached image ${newest.path}`);
      return newest;
    }
    throw new TestImageError(
      `apt does not know ${KERNEL_META_PACKAGE} or ${BUSYBOX_PACKAGE} (no package lists or no network), and no test image is cached`,
      'unavailable',
    );
  }
  const target = join(cacheDir, inputs.key);
  const running = inFlight.get(target);
  if (running !== undefined) return running;
  const p = (async (): Promise<TestImage> => {
    const hit = await cachedImage(target);
    if (hit !== null) return hit;
    const unlock = await lock(`${target}.lock`, log, {
      what: 'the test image',
      fail: (message) => new TestImageError(message, 'build'),
    });
    try {
      const again = await cachedImage(target);
      if (again !== null) return again;
      await rm(target, { recursive: true, force: true });
      const work = join(cacheDir, `.build-${inputs.key}-${randomBytes(4).toString('hex')}`);
      await mkdir(work);
      try {
        const started = Date.now();
        const m = await build(work, inputs, log);
        try {
          await rename(work, target);
        } catch (err) {
          // Someone else finished the same image first (only after a stale lock was broken twice).
          const theirs = await cachedImage(target);
          if (theirs !== null) return theirs;
          throw err;
        }
        await prune(cacheDir, inputs.key);
        log(
          `built ${join(target, TEST_IMAGE_FILE)} (${(m.sizeBytes / 1024 / 1024).toFixed(1)} MiB, kernel ${m.kernelVersion}) in ${((Date.now() - started) / 1000).toFixed(1)} s`,
        );
        return { path: join(target, TEST_IMAGE_FILE), kernelVersion: m.kernelVersion, sha256: m.sha256 };
      } catch (err) {
        if (err instanceof TestImageError) throw err;
        throw new TestImageError(`building the test image failed: ${(err as Error).message}`, 'build');
      } finally {
        await rm(work, { recursive: true, force: true });
      }
    } finally {
      await unlock();
    }
  })();
  inFlight.set(target, p);
  try {
    return await p;
  } catch (err) {
    // Newer packages that cannot be downloaded (offline): an older image still serves.
    if (err instanceof TestImageError && err.reason === 'unavailable') {
      const newest = await newestCached(cacheDir);
      if (newest !== null) {
        log(`${err.message}; using the cached image ${newest.path}`);
        return newest;
      }
    }
    throw err;
  } finally {
    inFlight.delete(target);
  }
}
