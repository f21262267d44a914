import { readdir, readFile } from 'node:fs/promises';
import { join, relative } from 'node:path';

/**
 * Kernel modules for the test image's initramfs: which `.ko` files a wanted
 * set of modules needs (their `depends=` from `.modinfo`, transitively, as
 * depmod would find them), and the `modules.dep` busybox modprobe reads. The
 * kernel package ships no modules.dep (depmod writes it when installing), so
 * the builder derives it from the modules themselves.
 */

/** A module's name as the kernel spells it: `-` and `_` are the same. */
export function moduleName(name: string): string {
  return name.replace(/\.ko(\.(xz|zst|gz))?$/, '').replace(/-/g, '_');
}

/** The `key=value` strings of an ELF64 module's `.modinfo` section. Pure. */
export function parseModinfo(elf: Uint8Array): Map<string, string[]> {
  const buf = Buffer.from(elf.buffer, elf.byteOffset, elf.byteLength);
  if (buf.length < 64 || buf.readUInt32BE(0) !== 0x7f454c46) throw new Error('not an ELF file');
  if (buf[4] !== 2 || buf[5] !== 1) throw new Error('not a little-endian ELF64 file');
  const shoff = Number(buf.readBigUInt64LE(0x28));
  const shentsize = buf.readUInt16LE(0x3a);
  const shnum = buf.readUInt16LE(0x3c);
  const shstrndx = buf.readUInt16LE(0x3e);
  const section = (i: number): { name: number; offset: number; size: number } => {
    const at = shoff + i * shentsize;
    if (at + 64 > buf.length) throw new Error('ELF section header out of range');
    return {
      name: buf.readUInt32LE(at),
      offset: Number(buf.readBigUInt64LE(at + 0x18)),
      size: Number(buf.readBigUInt64LE(at + 0x20)),
    };
  };
  const strtab = section(shstrndx);
  const info = new Map<string, string[]>();
  for (let i = 0; i < shnum; i++) {
    const s = section(i);
    const nameAt = strtab.offset + s.name;
    const name = buf.toString('latin1', nameAt, buf.indexOf(0, nameAt));
    if (name !== '.modinfo') continue;
    if (s.offset + s.size > buf.length) throw new Error('.modinfo out of range');
    for (const item of buf.toString('utf8', s.offset, s.offset + s.size).split('\0')) {
      const eq = item.indexOf('=');
      if (eq <= 0) continue;
      const key = item.slice(0, eq);
      info.set(key, [...(info.get(key) ?? []), item.slice(eq + 1)]);
    }
    return info;
  }
  throw new Error('no .modinfo section');
}

/** The modules a module's `.modinfo` says it depends on. */
export function modinfoDepends(info: Map<string, string[]>): string[] {
  return (info.get('depends') ?? [])
    .flatMap((d) => d.split(','))
    .filter((d) => d.length > 0)
    .map(moduleName);
}

/** A module chosen for the image: where it lives below `/lib/modules/<version>/`, and what it needs. */
export interface ResolvedModule {
  name: string;
  /** Path relative to the version directory, e.g. `kernel/drivers/block/virtio_blk.ko`. */
  path: string;
  depends: string[];
}

/**
 * Resolve `wanted` and everything they depend on, dependencies first.
 * `lookup` returns a module's path and dependencies, or null when the kernel
 * has no such module file; `builtin` lists modules compiled into the kernel,
 * which need no file. Pure.
 */
export function resolveModules(
  wanted: readonly string[],
  lookup: (name: string) => { path: string; depends: string[] } | null,
  builtin: ReadonlySet<string>,
): ResolvedModule[] {
  const order: ResolvedModule[] = [];
  const done = new Set<string>();
  const visiting = new Set<string>();
  const visit = (raw: string, chain: string[]): void => {
    const name = moduleName(raw);
    if (done.has(name) || builtin.has(name)) return;
    if (visiting.has(name)) throw new Error(`module dependency cycle: ${[...chain, name].join(' -> ')}`);
    const found = lookup(name);
    if (found === null)
      throw new Error(`kernel module ${name} not found${chain.length ? ` (needed by ${chain.join(' -> ')})` : ''}`);
    visiting.add(name);
    for (const dep of found.depends) visit(dep, [...chain, name]);
    visiting.delete(name);
    done.add(name);
    order.push({ name, path: found.path, depends: found.depends.map(moduleName).filter((d) => !builtin.has(d)) });
  };
  for (const w of wanted) visit(w, []);
  return order;
}

/**
 * `modules.dep` for `modules` (dependencies first, as resolveModules returns
 * them): one line per module with all it needs, directly or not, each listed
 * before what it depends on, since modprobe loads the list from its end, as
 * depmod writes it. Pure.
 */
export function modulesDep(modules: readonly ResolvedModule[]): string {
  const position = new Map(modules.map((m, i) => [m.name, i]));
  const byName = new Map(modules.map((m) => [m.name, m]));
  const lines = modules.map((m) => {
    const needed = new Set<string>();
    const walk = (name: string): void => {
      for (const d of byName.get(name)?.depends ?? []) {
        if (needed.has(d) || !byName.has(d)) continue;
        needed.add(d);
        walk(d);
      }
    };
    walk(m.name);
    // Later in the load order = depends on more of the others: list it first.
    const ordered = [...needed].sort((a, b) => position.get(b)! - position.get(a)!);
    return `${m.path}:${ordered.map((d) => ` ${byName.get(d)!.path}`).join('')}\n`;
  });
  return lines.join('');
}

/** Every `.ko` below `dir`, by module name, as paths relative to `base`. */
async function indexModuleFiles(dir: string, base: string): Promise<Map<string, string>> {
  const found = new Map<string, string>();
  const entries = await readdir(dir, { withFileTypes: true, recursive: true });
  for (const e of entries) {
    if (!e.isFile() || !/\.ko(\.(xz|zst|gz))?$/.test(e.name)) continue;
    const full = join(e.parentPath, e.name);
    found.set(moduleName(e.name), relative(base, full));
  }
  return found;
}

/** Resolve `wanted` against an unpacked kernel's `/lib/modules/<version>` directory. */
export async function resolveKernelModules(versionDir: string, wanted: readonly string[]): Promise<ResolvedModule[]> {
  const files = await indexModuleFiles(join(versionDir, 'kernel'), versionDir);
  let builtinText = '';
  try {
    builtinText = await readFile(join(versionDir, 'modules.builtin'), 'utf8');
  } catch {
    // no list: every module must then be a file
  }
  const builtin = new Set(
    builtinText
      .split('\n')
      .filter((l) => l.length > 0)
      .map((l) => moduleName(l.split('/').pop()!)),
  );
  const cache = new Map<string, { path: string; depends: string[] } | null>();
  // Read each candidate once, up front; lookups in resolveModules stay synchronous.
  const pending = new Set(wanted.map(moduleName));
  while (pending.size > 0) {
    const name = pending.values().next().value as string;
    pending.delete(name);
    if (cache.has(name) || builtin.has(name)) continue;
    const path = files.get(name);
    if (path === undefined) {
      cache.set(name, null);
      continue;
    }
    if (path.endsWith('.xz') || path.endsWith('.zst') || path.endsWith('.gz'))
      throw new Error(`compressed kernel modules are not supported: ${path}`);
    const depends = modinfoDepends(parseModinfo(await readFile(join(versionDir, path))));
    cache.set(name, { path, depends });
    for (const d of depends) if (!cache.has(d)) pending.add(d);
  }
  return resolveModules(wanted, (name) => cache.get(name) ?? null, builtin);
}
