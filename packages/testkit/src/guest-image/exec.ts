import { spawn } from 'node:child_process';

/**
 * The one place the guest image builder starts processes: an argument array,
 * never a shell. (The agent has its own runner; testkit cannot depend on it.)
 */

/** A host tool that could not start, timed out, or exited non-zero. */
export class ToolError extends Error {
  override readonly name = 'ToolError';
  constructor(
    message: string,
    readonly cmd: string,
    readonly args: readonly string[],
    /** Exit code; null when the tool did not start, timed out or died from a signal. */
    readonly code: number | null,
    readonly stderr: string,
    /** True when the tool is not installed (ENOENT). */
    readonly missing = false,
  ) {
    super(message);
  }
}

/** What a finished tool printed. */
export interface ToolResult {
  stdout: string;
  stderr: string;
}

const MAX_OUTPUT = 4 * 1024 * 1024;

/** Run a host tool to completion; throws ToolError unless it exits 0. */
export function runTool(cmd: string, args: readonly string[], opts: { cwd?: string; timeoutMs?: number } = {}): Promise<ToolResult> {
  const timeoutMs = opts.timeoutMs ?? 120_000;
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, {
      shell: false,
      cwd: opts.cwd,
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, LC_ALL: 'C', DEBIAN_FRONTEND: 'noninteractive' },
    });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    let outSize = 0;
    let errSize = 0;
    child.stdout.on('data', (c: Buffer) => {
      if (outSize < MAX_OUTPUT) out.push(c);
      outSize += c.length;
    });
    child.stderr.on('data', (c: Buffer) => {
      if (errSize < MAX_OUTPUT) err.push(c);
      errSize += c.length;
    });
    let timedOut = false;
    let spawnError: NodeJS.ErrnoException | null = null;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, timeoutMs);
    child.on('error', (e: NodeJS.ErrnoException) => {
      spawnError = e;
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      const stdout = Buffer.concat(out).toString('utf8');
      const stderr = Buffer.concat(err).toString('utf8');
      const failed = (message: string, missing = false): void =>
        reject(new ToolError(message, cmd, args, code, stderr, missing));
      if (spawnError !== null) {
        const e: NodeJS.ErrnoException = spawnError;
        failed(`${cmd}: ${e.message}`, e.code === 'ENOENT');
      } else if (timedOut) failed(`${cmd} timed out after ${timeoutMs} ms`);
      else if (code === null) failed(`${cmd} was killed by ${signal ?? 'a signal'}`);
      else if (code !== 0) {
        const first = stderr.trim().split('\n').filter((l) => !l.startsWith('W: '))[0] ?? '';
        failed(`${cmd} ${args.join(' ')} exited with code ${code}${first ? `: ${first}` : ''}`);
      } else resolve({ stdout, stderr });
    });
  });
}
