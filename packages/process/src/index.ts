import { spawn, type ChildProcess } from 'node:child_process';
import { constants } from 'node:fs';
import { access, stat } from 'node:fs/promises';
import { delimiter, isAbsolute, join } from 'node:path';

/**
 * How floe starts host processes (qemu, qemu-img, genisoimage, ip, ...).
 * Always an argument array, never a shell; callers validate every name
 * before it gets here.
 */

/** How long `run` waits for a command unless told otherwise. */
export const DEFAULT_TIMEOUT_MS = 30_000;
/** Output kept per stream; more is dropped so a chatty command cannot exhaust memory. */
const MAX_OUTPUT_BYTES = 8 * 1024 * 1024;

/** A command that could not be started, timed out, or (without `allowFail`) exited non-zero. */
export class ExecError extends Error {
  override readonly name = 'ExecError';
  constructor(
    message: string,
    readonly cmd: string,
    readonly args: readonly string[],
    /** Exit code; null when the process did not start, timed out or died from a signal. */
    readonly code: number | null,
    readonly stderr: string,
    /** True when the command is not installed (ENOENT). */
    readonly missing = false,
  ) {
    super(message);
  }
}

/** What a finished command printed and how it exited. */
export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Options of `run`. */
export interface RunOptions {
  /** Kill the command (SIGKILL) after this long; default 30 s. */
  timeoutMs?: number;
  /** Written to the command's stdin, which is then closed. */
  input?: string;
  /** Return non-zero exits instead of throwing. */
  allowFail?: boolean;
  /** Working directory. */
  cwd?: string;
  /** Extra environment variables (the rest is inherited, with LC_ALL=C). */
  env?: Record<string, string>;
}

function checkCommand(cmd: string, args: readonly string[]): void {
  if (cmd.length === 0 || cmd.includes('\0')) throw new ExecError('invalid command name', cmd, args, null, '');
  if (args.some((a) => typeof a !== 'string' || a.includes('\0'))) {
    throw new ExecError('command arguments must be strings without NUL bytes', cmd, args, null, '');
  }
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
 * Run a command to completion and capture its output.
 *
 * @example
 * const { stdout } = await run('qemu-system-x86_64', ['--version'], { timeoutMs: 5000 });
 */
export async function run(cmd: string, args: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
  checkCommand(cmd, args);
  const timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, {
      shell: false,
      cwd: opts.cwd,
      stdio: ['pipe', 'pipe', 'pipe'],
      env: { ...process.env, LC_ALL: 'C', ...opts.env },
    });
    const stdout = collect(child.stdout);
    const stderr = collect(child.stderr);
    let timedOut = false;
    let spawnError: NodeJS.ErrnoException | null = null;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, timeoutMs);
    child.on('error', (err: NodeJS.ErrnoException) => {
      // ENOENT and friends; 'close' still follows.
      spawnError = err;
    });
    child.stdin.on('error', () => {
      // The command may exit without reading its input; that is its business.
    });
    child.stdin.end(opts.input ?? '');
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      const err = stderr();
      if (spawnError !== null) {
        const e: NodeJS.ErrnoException = spawnError;
        reject(new ExecError(`${cmd}: ${e.message}`, cmd, args, null, err, e.code === 'ENOENT'));
      } else if (timedOut) {
        reject(new ExecError(`${cmd} timed out after ${timeoutMs} ms`, cmd, args, null, err));
      } else if (code === null) {
        reject(new ExecError(`${cmd} was killed by ${signal ?? 'a signal'}`, cmd, args, null, err));
      } else if (code !== 0 && !opts.allowFail) {
        const firstLine = err.trim().split('\n')[0] ?? '';
        reject(
          new ExecError(`${cmd} exited with code ${code}${firstLine ? `: ${firstLine}` : ''}`, cmd, args, code, err),
        );
      } else {
        resolve({ code, stdout: stdout(), stderr: err });
      }
    });
  });
}

/** A process started by `startProcess`, owned by the caller. */
export interface ProcessHandle {
  readonly pid: number;
  /** Resolves once the process has exited (never rejects). */
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** True once the process has exited. */
  hasExited(): boolean;
  /** Everything the process wrote to stderr so far (capped). */
  stderr(): string;
  /** Send a signal; SIGKILL by default. No-op once exited. */
  kill(signal?: NodeJS.Signals): void;
}

/**
 * Start a long-running process (stdin closed, stdout ignored, stderr kept)
 * that the caller watches and kills. Throws ExecError when it cannot start.
 */
export async function startProcess(cmd: string, args: readonly string[]): Promise<ProcessHandle> {
  checkCommand(cmd, args);
  return new Promise((resolve, reject) => {
    const child: ChildProcess = spawn(cmd, args, {
      shell: false,
      stdio: ['ignore', 'ignore', 'pipe'],
      env: { ...process.env, LC_ALL: 'C' },
    });
    const stderr = collect(child.stderr);
    let exited = false;
    const exitedP = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((res) => {
      child.on('exit', (code, signal) => {
        exited = true;
        res({ code, signal });
      });
    });
    child.once('error', (err) => reject(new ExecError(`${cmd}: ${err.message}`, cmd, args, null, stderr())));
    child.once('spawn', () => {
      resolve({
        pid: child.pid!,
        exited: exitedP,
        hasExited: () => exited,
        stderr,
        kill: (signal: NodeJS.Signals = 'SIGKILL') => {
          if (!exited) child.kill(signal);
        },
      });
    });
  });
}

/** The full path of an executable found in PATH (or the path itself when absolute), or null. */
export async function which(cmd: string): Promise<string | null> {
  if (cmd.length === 0 || cmd.includes('\0')) return null;
  const candidates =
    isAbsolute(cmd) || cmd.includes('/')
      ? [cmd]
      : (process.env.PATH ?? '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin')
          .split(delimiter)
          .filter((dir) => dir.length > 0)
          .map((dir) => join(dir, cmd));
  for (const path of candidates) {
    try {
      await access(path, constants.X_OK);
      if ((await stat(path)).isFile()) return path;
    } catch {
      // not here; try the next directory
    }
  }
  return null;
}

export {
  killProcess,
  ownedPid,
  processHasArg,
  readPidFile,
  terminateProcess,
  waitUntilGone,
  type TerminateOptions,
} from './pids.js';
export {
  acquireInstanceLock,
  InstanceLockedError,
  probeInstanceLock,
  type InstanceLock,
  type LockHolder,
} from './instance-lock.js';
