import { spawn } from 'node:child_process';

/**
 * The only place in the control plane that starts processes (qemu-img for
 * image uploads). Always an argument array, never a shell; callers pass
 * paths they made themselves.
 */

/** How long `run` waits for a command unless told otherwise. */
export const DEFAULT_TIMEOUT_MS = 60_000;
/** Output kept per stream; more is dropped so a chatty command cannot exhaust memory. */
const MAX_OUTPUT_BYTES = 4 * 1024 * 1024;

/** A command that could not be started, timed out, or exited non-zero. */
export class ExecError extends Error {
  override readonly name = 'ExecError';
  constructor(
    message: string,
    readonly cmd: string,
    readonly args: readonly string[],
    /** Exit code; null when the process did not start, timed out or died from a signal. */
    readonly code: number | null,
    readonly stderr: string,
  ) {
    super(message);
  }
}

/** What a finished command printed. */
export interface RunResult {
  stdout: string;
  stderr: string;
}

function collect(stream: NodeJS.ReadableStream | null): () => string {
  const chunks: Buffer[] = [];
  let size = 0;
  stream?.on('data', (chunk: Buffer) => {
    if (size >= MAX_OUTPUT_BYTES) return;
    chunks.push(chunk);
    size += chunk.length;
  });
  return () => Buffer.concat(chunks).toString('utf8');
}

/**
 * Run a command to completion (stdin closed) and capture its output; throws
 * ExecError unless it exits 0 within `timeoutMs`.
 *
 * @example
 * const { stdout } = await run('qemu-img', ['info', '--output=json', '-f', 'qcow2', file]);
 */
export async function run(cmd: string, args: readonly string[], opts: { timeoutMs?: number } = {}): Promise<RunResult> {
  if (cmd.length === 0 || cmd.includes('\0') || args.some((a) => typeof a !== 'string' || a.includes('\0'))) {
    throw new ExecError('command and arguments must be strings without NUL bytes', cmd, args, null, '');
  }
  const timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { shell: false, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, LC_ALL: 'C' } });
    const stdout = collect(child.stdout);
    const stderr = collect(child.stderr);
    let timedOut = false;
    let spawnError: Error | null = null;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, timeoutMs);
    child.on('error', (err) => {
      // ENOENT and friends; 'close' still follows.
      spawnError = err;
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      const err = stderr();
      if (spawnError !== null) reject(new ExecError(`${cmd}: ${spawnError.message}`, cmd, args, null, err));
      else if (timedOut) reject(new ExecError(`${cmd} timed out after ${timeoutMs} ms`, cmd, args, null, err));
      else if (code === null) reject(new ExecError(`${cmd} was killed by ${signal ?? 'a signal'}`, cmd, args, null, err));
      else if (code !== 0) {
        const firstLine = err.trim().split('\n')[0] ?? '';
        reject(new ExecError(`${cmd} exited with code ${code}${firstLine ? `: ${firstLine}` : ''}`, cmd, args, code, err));
      } else resolve({ stdout: stdout(), stderr: err });
    });
  });
}
