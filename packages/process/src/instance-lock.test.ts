import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { acquireInstanceLock, InstanceLockedError, probeInstanceLock } from './instance-lock.js';

const MODULE = fileURLToPath(new URL('./instance-lock.ts', import.meta.url));

/** A process that tries to take the lock, prints won/locked, and holds it for `holdMs`. */
function contender(dir: string, holdMs: number) {
  const code = `
    const { acquireInstanceLock } = await import(${JSON.stringify(MODULE)});
    try { await acquireInstanceLock(${JSON.stringify(dir)}, 'x'); console.log('won'); }
    catch (err) { console.log(err.name === 'InstanceLockedError' ? 'locked' : 'error ' + err.message); }
    setTimeout(() => {}, ${holdMs});`;
  const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', code], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let out = '';
  child.stdout.on('data', (d) => (out += String(d)));
  const said = new Promise<string>((resolve) => {
    child.stdout.on('data', () => {
      if (out.includes('\n')) resolve(out.trim());
    });
    child.once('exit', () => resolve(out.trim()));
  });
  return { child, said };
}

describe('instance lock', () => {
  let dir = '';
  afterEach(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('is held once; a holder answers with its pid; release frees it', async () => {
    dir = await mkdtemp(join(tmpdir(), 'floe-lock-'));
    const lock = await acquireInstanceLock(dir, 'x');
    const err = await acquireInstanceLock(dir, 'x').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(InstanceLockedError);
    expect((err as InstanceLockedError).holder.pid).toBe(process.pid);
    expect((await probeInstanceLock(dir, 'x'))?.pid).toBe(process.pid);
    await lock.release();
    expect(await probeInstanceLock(dir, 'x')).toBeNull();
    await (await acquireInstanceLock(dir, 'x')).release();
  });

  it('a lock left by a process killed -9 goes to exactly one of many processes starting at once', async () => {
    dir = await mkdtemp(join(tmpdir(), 'floe-lock-'));
    const dead = contender(dir, 60_000);
    expect(await dead.said).toBe('won');
    dead.child.kill('SIGKILL');
    await new Promise((r) => dead.child.once('exit', r));
    expect(await probeInstanceLock(dir, 'x')).toBeNull();

    const many = Array.from({ length: 6 }, () => contender(dir, 3000));
    const said = await Promise.all(many.map((c) => c.said));
    expect(said.filter((s) => s === 'won')).toHaveLength(1);
    expect(said.filter((s) => s === 'locked')).toHaveLength(5);
    const winner = many[said.indexOf('won')]!.child.pid;
    expect((await probeInstanceLock(dir, 'x'))?.pid).toBe(winner);
    await Promise.all(
      many.map((c) => new Promise((r) => (c.child.exitCode !== null ? r(null) : c.child.once('exit', r)))),
    );
  }, 30_000);
});
