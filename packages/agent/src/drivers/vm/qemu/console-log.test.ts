import { appendFile, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { LogFollower, readLogTail, trimLog } from './console-log.js';

describe('console log', () => {
  let dir: string;
  let log: string;
  const followers: LogFollower[] = [];

  beforeEach(async () => {
    dir = await mkdtemp(join(os.tmpdir(), 'floe-log-'));
    log = join(dir, 'console.log');
  });

  afterEach(async () => {
    for (const f of followers.splice(0)) f.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it('reads the tail, all of a short log, and nothing before a log exists', async () => {
    expect((await readLogTail(log, 100)).length).toBe(0);
    await writeFile(log, 'line one\nline two\n');
    expect((await readLogTail(log, 9)).toString()).toBe('line two\n');
    expect((await readLogTail(log, 1000)).toString()).toBe('line one\nline two\n');
  });

  it('trims a long log to its tail, starting at a line', async () => {
    const lines = Array.from({ length: 100 }, (_, i) => `line ${String(i).padStart(3, '0')}\n`).join('');
    await writeFile(log, lines);
    expect(await trimLog(log, 10_000)).toBeNull();
    const trimmed = await trimLog(log, 50);
    const text = await readFile(log, 'utf8');
    expect(trimmed?.size).toBe(text.length);
    expect(text.length).toBeLessThanOrEqual(50);
    expect(text.startsWith('line ')).toBe(true);
    expect(text.endsWith('line 099\n')).toBe(true);
  });

  it('follows appended bytes from where following began', async () => {
    await writeFile(log, 'old\n');
    const got: string[] = [];
    followers.push(await LogFollower.start(log, (d) => got.push(d.toString()), { pollMs: 50 }));
    await appendFile(log, 'new 1\n');
    await expect.poll(() => got.join('')).toBe('new 1\n');
    await appendFile(log, 'new 2\n');
    await expect.poll(() => got.join('')).toBe('new 1\nnew 2\n');
  });

  it('follows a log that does not exist yet, and goes on after the log was trimmed', async () => {
    const got: string[] = [];
    const follower = await LogFollower.start(log, (d) => got.push(d.toString()), { pollMs: 50 });
    followers.push(follower);
    await writeFile(log, 'first\n'.repeat(20));
    await expect.poll(() => got.join('')).toBe('first\n'.repeat(20));
    follower.pause();
    const trimmed = await trimLog(log, 30);
    follower.resume(trimmed);
    await appendFile(log, 'after trim\n');
    await expect.poll(() => got.join('')).toBe(`${'first\n'.repeat(20)}after trim\n`);
  });

  it('stops delivering after stop()', async () => {
    await writeFile(log, '');
    const got: string[] = [];
    const follower = await LogFollower.start(log, (d) => got.push(d.toString()), { pollMs: 20 });
    follower.stop();
    await appendFile(log, 'ignored\n');
    await new Promise((r) => setTimeout(r, 100));
    expect(got).toEqual([]);
  });
});
