import type { Command } from 'commander';
import { describe, expect, it } from 'vitest';
import { buildProgram, run } from '../program.js';
import { OutputBuffer as Buf } from '../testing.js';

/** The machine types every installation has (seeded by the control plane's catalog, services/catalog.ts). */
const BUILTIN_TYPES = new Map([
  ['nano', [1, 256]],
  ['micro', [1, 512]],
  ['small', [1, 1024]],
  ['medium', [2, 2048]],
  ['large', [2, 4096]],
  ['xlarge', [4, 8192]],
  ['2xlarge', [8, 16384]],
]);

/** Every command path of the program, e.g. ['vm', 'create']. */
function commandPaths(cmd: Command, prefix: string[] = []): string[][] {
  return cmd.commands.flatMap((c) => [[...prefix, c.name()], ...commandPaths(c, [...prefix, c.name()])]);
}

/** The `$ floe ...` example lines of every help text. */
async function exampleLines(): Promise<string[]> {
  const { program } = buildProgram();
  const lines: string[] = [];
  for (const path of [[], ...commandPaths(program)]) {
    const out = new Buf();
    await run([...path, '--help'], { stdout: out, stderr: new Buf(), env: { NO_COLOR: '1' }, stdinIsTTY: false });
    for (const line of out.text.split('\n')) if (/^\s*\$ floe /.test(line)) lines.push(line.trim().slice(2));
  }
  return lines;
}

describe('help examples', () => {
  it('name only machine types that exist: the catalog, or one an example creates (not a copy of a catalog size)', async () => {
    const lines = await exampleLines();
    expect(lines.length).toBeGreaterThan(20);
    const created = new Map<string, [number, number]>();
    for (const line of lines) {
      const m = /^floe type create (\S+) --vcpus (\d+) --memory-mib (\d+)/.exec(line);
      if (m) created.set(m[1]!, [Number(m[2]), Number(m[3])]);
    }
    for (const [name, size] of created) {
      expect(BUILTIN_TYPES.has(name), `${name} is already in the catalog`).toBe(false);
      const twin = [...BUILTIN_TYPES].find(([, s]) => s[0] === size[0] && s[1] === size[1]);
      expect(twin?.[0], `floe type create ${name} copies the size of the catalog's ${twin?.[0]}`).toBeUndefined();
    }
    const used = lines.flatMap((l) => [...l.matchAll(/--type (\S+)/g)].map((m) => m[1]!));
    expect(used.length).toBeGreaterThan(0);
    for (const name of used) expect(BUILTIN_TYPES.has(name) || created.has(name), `--type ${name}`).toBe(true);
  });
});
