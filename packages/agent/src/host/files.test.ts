import { mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { readJsonFile, writeFileAtomic, writeJsonAtomic } from './files.js';

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'floe-files-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('atomic files', () => {
  it('writes text or bytes with the mode asked for, leaving no temp file', async () => {
    const file = join(dir, 'a.txt');
    await writeFileAtomic(file, 'one', 0o600);
    await writeFileAtomic(file, Buffer.from('two'), 0o640);
    expect(await readFile(file, 'utf8')).toBe('two');
    expect((await stat(file)).mode & 0o777).toBe(0o640);
    expect(await readdir(dir)).toEqual(['a.txt']);
  });

  it('fails without leaving a temp file when the directory is missing', async () => {
    await expect(writeFileAtomic(join(dir, 'missing', 'x'), 'x')).rejects.toThrow();
    expect(await readdir(dir)).toEqual([]);
  });

  it('round-trips JSON, and reads a missing or cut-short file as null', async () => {
    const file = join(dir, 'v.json');
    expect(await readJsonFile(file)).toBeNull();
    await writeJsonAtomic(file, { a: [1, 'b'] });
    expect(await readFile(file, 'utf8')).toBe('{\n  "a": [\n    1,\n    "b"\n  ]\n}\n');
    expect(await readJsonFile(file)).toEqual({ a: [1, 'b'] });
    await writeFile(file, '{"a": [1');
    expect(await readJsonFile(file)).toBeNull();
  });
});
