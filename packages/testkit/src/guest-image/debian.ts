import { createHash } from 'node:crypto';
import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { runTool, ToolError } from './exec.js';

/**
 * Debian packages for the test image, fetched with `apt-get download` and
 * unpacked with `dpkg-deb -x` into a scratch directory: nothing is installed
 * on the host, least of all a kernel.
 */

/** A package at the exact version the builder uses. */
export interface DebPackage {
  name: string;
  version: string;
}

/** The fields of one `apt-cache show` stanza that the builder reads. Pure. */
export function parseAptShow(text: string): { package: string; version: string; depends: string[] } | null {
  const stanza = text.split(/\n\n/)[0] ?? '';
  const field = (name: string): string | undefined => stanza.match(new RegExp(`^${name}: (.*)$`, 'm'))?.[1]?.trim();
  const pkg = field('Package');
  const version = field('Version');
  if (pkg === undefined || version === undefined) return null;
  const depends = (field('Depends') ?? '')
    .split(',')
    .map((d) => d.split('|')[0]!.trim().split(/\s/)[0]!)
    .filter((d) => d.length > 0);
  return { package: pkg, version, depends };
}

const PACKAGE_RE = /^[a-z0-9][a-z0-9+.-]+$/;
const VERSION_RE = /^[A-Za-z0-9.+~:-]+$/;

function checkPackage(p: DebPackage): void {
  if (!PACKAGE_RE.test(p.name) || !VERSION_RE.test(p.version))
    throw new Error(`bad Debian package ${p.name}=${p.version}`);
}

/** The candidate version of a package (and what it depends on), from apt's lists; null when apt does not know it. */
export async function aptCandidate(name: string): Promise<{ version: string; depends: string[] } | null> {
  if (!PACKAGE_RE.test(name)) throw new Error(`bad Debian package name ${name}`);
  try {
    const { stdout } = await runTool('apt-cache', ['show', '--no-all-versions', name], { timeoutMs: 60_000 });
    const parsed = parseAptShow(stdout);
    return parsed === null ? null : { version: parsed.version, depends: parsed.depends };
  } catch (err) {
    if (err instanceof ToolError && !err.missing) return null;
    throw err;
  }
}

/**
 * The candidate versions of several packages from one `apt-cache` run (apt
 * loads its cache once, not once a package); null when apt does not know one.
 */
export async function aptCandidates(names: readonly string[]): Promise<Map<string, string> | null> {
  for (const name of names) if (!PACKAGE_RE.test(name)) throw new Error(`bad Debian package name ${name}`);
  let stdout: string;
  try {
    ({ stdout } = await runTool('apt-cache', ['show', '--no-all-versions', ...names], { timeoutMs: 5 * 60_000 }));
  } catch (err) {
    if (err instanceof ToolError && !err.missing) return null;
    throw err;
  }
  const found = parseAptShowAll(stdout);
  return names.every((n) => found.has(n)) ? found : null;
}

/** Package → version from the stanzas of one `apt-cache show` (the first stanza of a package counts). Pure. */
export function parseAptShowAll(text: string): Map<string, string> {
  const found = new Map<string, string>();
  for (const stanza of text.split(/\n\n+/)) {
    const parsed = parseAptShow(stanza);
    if (parsed !== null && !found.has(parsed.package)) found.set(parsed.package, parsed.version);
  }
  return found;
}

/**
 * The kernel image package a meta-package such as `linux-image-amd64` points
 * at (`linux-image-6.1.0-56-amd64`), at its candidate version.
 */
export async function resolveKernelPackage(meta: string): Promise<DebPackage | null> {
  const m = await aptCandidate(meta);
  if (m === null) return null;
  const target = m.depends.find((d) => /^linux-image-\d/.test(d));
  if (target === undefined) return { name: meta, version: m.version };
  const t = await aptCandidate(target);
  return t === null ? null : { name: target, version: t.version };
}

/** Download exactly these package versions into `dir`; returns the .deb paths in the same order. */
export async function aptDownload(dir: string, packages: readonly DebPackage[]): Promise<string[]> {
  packages.forEach(checkPackage);
  const args = ['download', ...packages.map((p) => `${p.name}=${p.version}`)];
  // As root, apt drops to the _apt user, who cannot write into a private scratch directory.
  if (process.getuid?.() === 0) args.unshift('-o', 'APT::Sandbox::User=root');
  await runTool('apt-get', args, { cwd: dir, timeoutMs: 10 * 60_000 });
  const files = await readdir(dir);
  return packages.map((p) => {
    const found = files.find((f) => f.endsWith('.deb') && f.startsWith(`${p.name}_`));
    if (found === undefined) throw new Error(`apt-get download left no .deb for ${p.name}`);
    return join(dir, found);
  });
}

/** Unpack a .deb's files (not its scripts) below `dest`. */
export async function debExtract(deb: string, dest: string): Promise<void> {
  await runTool('dpkg-deb', ['-x', deb, dest], { timeoutMs: 5 * 60_000 });
}

/** Where apt keeps its package lists. */
const APT_LISTS = '/var/lib/apt/lists';

/**
 * A fingerprint of apt's package lists (names, sizes, modification times): the
 * same fingerprint means apt would answer version questions the same way, so
 * answers can be reused without asking apt again. Null without lists.
 */
export async function aptListsStamp(dir = APT_LISTS): Promise<string | null> {
  let names: string[];
  try {
    names = (await readdir(dir)).filter((n) => n !== 'lock' && n !== 'partial' && n !== 'auxfiles').sort();
  } catch {
    return null;
  }
  if (names.length === 0) return null;
  const hash = createHash('sha256');
  for (const name of names) {
    try {
      const s = await stat(join(dir, name));
      hash.update(`${name}\0${s.size}\0${s.mtimeMs}\n`);
    } catch {
      // vanished while looking: apt is updating; the stamp changes anyway
    }
  }
  return hash.digest('hex');
}
