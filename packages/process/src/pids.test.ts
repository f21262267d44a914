import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ownedPid, processHasArg, readPidFile, terminateProcess, waitUntilGone } from './index.js';

let dir: string;
const started: number[] = [];

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'floe-pids-'));
});

afterEach(async () => {
  for (const pid of started.splice(0)) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  await rm(dir, { recursive: true, force: true });
});

/** A shell loop that carries `marker` as its $0 and, with `stubborn`, ignores SIGTERM; resolves once it runs. */
async function loop(marker: string, stubborn = false): Promise<number> {
  const ready = join(dir, `${marker}.ready`);
  const script = `${stubborn ? 'trap "" TERM; ' : ''}: > "$1"; while :; do sleep 0.05; done`;
  const child = spawn('sh', ['-c', script, marker, ready], { stdio: 'ignore' });
  started.push(child.pid!);
  await waitUntilGone(
    () =>
      readFile(ready).then(
        () => false,
        () => true,
      ),
    5000,
  );
  return child.pid!;
}

const marker = () => `floe-pids-test-${randomBytes(4).toString('hex')}`;

describe('pidfiles', () => {
  it('reads a pid, and nothing from a missing, garbled or pid-1 file', async () => {
    const file = join(dir, 'x.pid');
    expect(readPidFile(file)).toBeNull();
    await writeFile(file, 'garbage\n');
    expect(readPidFile(file)).toBeNull();
    await writeFile(file, '1\n');
    expect(readPidFile(file)).toBeNull();
    await writeFile(file, '4242\n');
    expect(readPidFile(file)).toBe(4242);
  });

  it('owns a pid only when the process carries the marker argument', async () => {
    const mark = marker();
    const pid = await loop(mark);
    expect(processHasArg(pid, mark)).toBe(true);
    expect(processHasArg(pid, `${mark}-other`)).toBe(false);
    const file = join(dir, 'x.pid');
    await writeFile(file, `${pid}\n`);
    expect(ownedPid(file, mark)).toBe(pid);
    expect(ownedPid(file, 'something-else')).toBeNull();
  });
});

describe('terminateProcess', () => {
  it('ends a process with SIGTERM when it listens', async () => {
    const mark = marker();
    const pid = await loop(mark);
    expect(await terminateProcess(pid, { alive: () => processHasArg(pid, mark), graceMs: 2000 })).toBe(true);
    expect(processHasArg(pid, mark)).toBe(false);
  });

  it('falls back to SIGKILL after the grace period', async () => {
    const mark = marker();
    const pid = await loop(mark, true);
    const t0 = Date.now();
    const gone = await terminateProcess(pid, { alive: () => processHasArg(pid, mark), graceMs: 300, killWaitMs: 2000 });
    expect(gone).toBe(true);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(300);
  });

  it('signals nothing the owner check disowns, and uses the caller’s way of asking', async () => {
    const mark = marker();
    const pid = await loop(mark);
    expect(await terminateProcess(pid, { alive: () => false, graceMs: 100 })).toBe(true);
    expect(processHasArg(pid, mark)).toBe(true);
    let asked = 0;
    const gone = await terminateProcess(pid, {
      alive: () => processHasArg(pid, mark),
      graceMs: 2000,
      ask: () => {
        asked++;
        process.kill(pid, 'SIGTERM');
      },
    });
    expect(gone).toBe(true);
    expect(asked).toBe(1);
  });
});
