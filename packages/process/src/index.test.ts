import { describe, expect, it } from 'vitest';
import { ExecError, run, startProcess, which } from './index.js';

describe('run', () => {
  it('passes arguments as they are, never through a shell', async () => {
    const r = await run('printf', ['%s|', '$HOME; rm -rf /', '`id`']);
    expect(r.stdout).toBe('$HOME; rm -rf /|`id`|');
    expect(r.code).toBe(0);
  });

  it('feeds stdin and sets the working directory and environment', async () => {
    expect((await run('cat', [], { input: 'hello' })).stdout).toBe('hello');
    expect((await run('pwd', [], { cwd: '/' })).stdout.trim()).toBe('/');
    expect((await run('printenv', ['FLOE_X'], { env: { FLOE_X: 'y' } })).stdout.trim()).toBe('y');
  });

  it('reports failures with their exit code, or returns them when asked', async () => {
    const err = await run('sh', ['-c', 'echo boom >&2; exit 3']).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ExecError);
    expect((err as ExecError).code).toBe(3);
    expect((err as ExecError).message).toContain('boom');
    expect((await run('sh', ['-c', 'exit 4'], { allowFail: true })).code).toBe(4);
  });

  it('says when a command is not installed, and kills one that takes too long', async () => {
    const missing = await run('floe-no-such-command', []).catch((e: unknown) => e);
    expect((missing as ExecError).missing).toBe(true);
    const started = Date.now();
    const slow = await run('sleep', ['10'], { timeoutMs: 200 }).catch((e: unknown) => e);
    expect((slow as ExecError).message).toContain('timed out');
    expect(Date.now() - started).toBeLessThan(5000);
  });

  it('refuses NUL bytes in arguments', async () => {
    await expect(run('echo', ['a\0b'])).rejects.toBeInstanceOf(ExecError);
  });
});

describe('startProcess and which', () => {
  it('starts, watches and kills a long-running process', async () => {
    const p = await startProcess('sleep', ['30']);
    expect(p.hasExited()).toBe(false);
    p.kill('SIGTERM');
    expect((await p.exited).signal).toBe('SIGTERM');
    expect(p.hasExited()).toBe(true);
  });

  it('finds executables on PATH', async () => {
    expect(await which('sh')).toMatch(/\/sh$/);
    expect(await which('floe-no-such-command')).toBeNull();
  });
});
