import { createHash, randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join, resolve } from 'node:path';
import { aptCandidates, resolveKernelPackage, type DebPackage } from '../guest-image/debian.js';
import { runTool, ToolError } from '../guest-image/exec.js';
import { lock, lockState } from '../guest-image/lock.js';
import { buildCloudImage, CLOUD_IMAGE_FILE, CloudImageError } from './build.js';
import { CLOUD_IMAGE_PACKAGES, CLOUD_KERNEL_META_PACKAGE, cloudImageKey } from './recipe.js';

/**
 * floe's real cloud image: Debian 12 with Debian's cloud kernel and Debian's
 * cloud-init, for acceptance tests that boot what users boot. Built once
 * (several minutes) and cached outside the repository, keyed by the package
 * versions apt offers and the recipe (see recipe.ts).
 */

export { CLOUD_KERNEL_CMDLINE, CLOUD_IMAGE_PACKAGES, CLOUD_KERNEL_META_PACKAGE } from './recipe.js';
export { CloudImageError } from './build.js';

/** The built image. */
export interface CloudImage {
  /** The qcow2 file; treat it as read-only (boot an overlay). */
  path: string;
  /** `uname -r` of the guest kernel. */
  kernelVersion: string;
  sha256: string;
  sizeBytes: number;
  /** The packages asked for, at the versions installed. */
  packages: DebPackage[];
  /** Seconds the build took (as recorded when it was built). */
  buildSeconds: number;
}

/** Options of `ensureCloudImage`. */
export interface EnsureCloudImageOptions {
  /** Where images are kept; default `$FLOE_CLOUD_IMAGE_CACHE`, else `${XDG_CACHE_HOME:-~/.cache}/floe/cloud-image`. */
  cacheDir?: string;
  /** Progress lines; silent by default. */
  log?: (line: string) => void;
}

const MANIFEST = 'manifest.json';

interface Manifest extends Omit<CloudImage, 'path'> {
  key: string;
  builtAt: string;
}

/** The cache directory from the environment: FLOE_CLOUD_IMAGE_CACHE, else under XDG_CACHE_HOME or ~/.cache. Pure. */
export function cloudImageCacheDir(env: NodeJS.ProcessEnv = process.env, home = homedir()): string {
  if (env.FLOE_CLOUD_IMAGE_CACHE) return resolve(env.FLOE_CLOUD_IMAGE_CACHE);
  const base = env.XDG_CACHE_HOME && env.XDG_CACHE_HOME.startsWith('/') ? env.XDG_CACHE_HOME : join(home, '.cache');
  return join(base, 'floe', 'cloud-image');
}

async function sha256File(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/** The complete image in `dir`: its manifest, and a file of the recorded size (hashing 200 MB on every test run costs seconds). */
async function cached(dir: string): Promise<(CloudImage & { builtAt: string }) | null> {
  try {
    const m = JSON.parse(await readFile(join(dir, MANIFEST), 'utf8')) as Manifest;
    const path = join(dir, CLOUD_IMAGE_FILE);
    if (typeof m.sha256 !== 'string' || (await stat(path)).size !== m.sizeBytes) return null;
    return {
      path,
      kernelVersion: m.kernelVersion,
      sha256: m.sha256,
      sizeBytes: m.sizeBytes,
      packages: m.packages,
      buildSeconds: m.buildSeconds,
      builtAt: m.builtAt,
    };
  } catch {
    return null;
  }
}

async function newestCached(cacheDir: string): Promise<CloudImage | null> {
  const names = await readdir(cacheDir).catch(() => [] as string[]);
  const found = [];
  for (const name of names) {
    if (name.startsWith('.') || name.endsWith('.lock')) continue;
    const c = await cached(join(cacheDir, name));
    if (c !== null) found.push(c);
  }
  found.sort((a, b) => b.builtAt.localeCompare(a.builtAt));
  return found[0] ?? null;
}

/** The packages at the versions apt offers now; null when apt does not know them (no lists). */
async function lookUpPackages(): Promise<DebPackage[] | null> {
  try {
    const kernel = await resolveKernelPackage(CLOUD_KERNEL_META_PACKAGE);
    const others = await aptCandidates(CLOUD_IMAGE_PACKAGES);
    if (kernel === null || others === null) return null;
    return [kernel, ...CLOUD_IMAGE_PACKAGES.map((name) => ({ name, version: others.get(name)! }))];
  } catch (err) {
    if (err instanceof ToolError && err.missing) return null;
    throw err;
  }
}

async function toolVersion(tool: string): Promise<string> {
  try {
    const r = await runTool(tool, ['--version'], { timeoutMs: 10_000 });
    return `${r.stdout}${r.stderr}`.trim().split('\n')[0]!.trim();
  } catch {
    return 'missing';
  }
}

/** The host's apt sources files, so the image gets what `apt-cache` reports. */
async function aptSources(): Promise<string[]> {
  const dir = '/etc/apt/sources.list.d';
  const names = await readdir(dir).catch(() => [] as string[]);
  const files = names
    .filter((n) => /^[A-Za-z0-9._-]+\.(list|sources)$/.test(n))
    .sort()
    .map((n) => join(dir, n));
  const main = await stat('/etc/apt/sources.list').then(
    (s) => (s.size > 0 ? ['/etc/apt/sources.list'] : []),
    () => [],
  );
  return [...main, ...files];
}

/** Remove older images and leftovers of crashed builds; keep `keep` and what a live build works on. */
async function prune(cacheDir: string, keep: string): Promise<void> {
  for (const name of await readdir(cacheDir)) {
    if (name === keep || name === `${keep}.lock`) continue;
    const key = /^\.build-([0-9a-f]+)-/.exec(name)?.[1] ?? name.replace(/\.lock$/, '');
    if (key !== keep && (await lockState(join(cacheDir, `${key}.lock`))).state === 'held') continue;
    await rm(join(cacheDir, name), { recursive: true, force: true });
  }
}

/**
 * The real cloud image, built on first use and cached until a package
 * version or the recipe changes. When apt cannot say what is current, the
 * newest cached image serves; with none, it throws CloudImageError
 * (`unavailable`). Builds of the same image in several processes wait for
 * each other.
 *
 * @example
 * const image = await ensureCloudImage({ log: console.error });
 */
export async function ensureCloudImage(opts: EnsureCloudImageOptions = {}): Promise<CloudImage> {
  const cacheDir = resolve(opts.cacheDir ?? cloudImageCacheDir());
  const log = opts.log ?? (() => undefined);
  await mkdir(cacheDir, { recursive: true });
  const packages = await lookUpPackages();
  if (packages === null) {
    const newest = await newestCached(cacheDir);
    if (newest !== null) {
      log(`apt cannot tell the current package versions; using the cached image ${newest.path}`);
      return newest;
    }
    throw new CloudImageError(
      `apt does not know ${CLOUD_KERNEL_META_PACKAGE} and ${CLOUD_IMAGE_PACKAGES.join(', ')} (run apt-get update), and no cloud image is cached`,
      'unavailable',
    );
  }
  const tools = {
    mmdebstrap: await toolVersion('mmdebstrap'),
    syslinux: await toolVersion('syslinux'),
    e2fsprogs: await toolVersion('mke2fs'),
  };
  const key = cloudImageKey({ packages, tools });
  const target = join(cacheDir, key);
  const hit = await cached(target);
  if (hit !== null) return hit;
  const unlock = await lock(`${target}.lock`, log, {
    what: 'the cloud image',
    fail: (message) => new CloudImageError(message, 'build'),
  });
  try {
    const again = await cached(target);
    if (again !== null) return again;
    await rm(target, { recursive: true, force: true });
    const work = join(cacheDir, `.build-${key}-${randomBytes(4).toString('hex')}`);
    await mkdir(work);
    try {
      const started = Date.now();
      const built = await buildCloudImage(work, packages, await aptSources(), log);
      const buildSeconds = Math.round((Date.now() - started) / 100) / 10;
      await rename(built.path, join(work, CLOUD_IMAGE_FILE));
      const sizeBytes = (await stat(join(work, CLOUD_IMAGE_FILE))).size;
      const manifest: Manifest = {
        key,
        kernelVersion: built.kernelVersion,
        sha256: await sha256File(join(work, CLOUD_IMAGE_FILE)),
        sizeBytes,
        packages,
        buildSeconds,
        builtAt: new Date().toISOString(),
      };
      await writeFile(
        join(work, MANIFEST),
        `${JSON.stringify({ ...manifest, tools, rootFsMib: built.rootFsMib }, null, 2)}\n`,
      );
      await rename(work, target);
      await prune(cacheDir, key);
      log(
        `built ${join(target, CLOUD_IMAGE_FILE)} (${(sizeBytes / 1024 / 1024).toFixed(1)} MiB, kernel ${built.kernelVersion}) in ${buildSeconds} s`,
      );
      return { path: join(target, CLOUD_IMAGE_FILE), ...manifest };
    } catch (err) {
      if (err instanceof CloudImageError) throw err;
      throw new CloudImageError(`building the cloud image failed: ${(err as Error).message}`, 'build');
    } finally {
      await rm(work, { recursive: true, force: true });
    }
  } finally {
    await unlock();
  }
}
