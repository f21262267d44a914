import { readFileSync } from 'node:fs';

/**
 * Processes floe started detached (QEMU with -daemonize, dnsmasq) and finds
 * again through their pidfiles. A pid alone is not proof: it may have been
 * reused by an unrelated process, so every check also looks at the process's
 * command line for an argument only floe's own process has (its pidfile or
 * config file path).
 */

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** The pid a pidfile holds, or null when the file is missing, empty, garbled or names pid 0/1. */
export function readPidFile(path: string): number | null {
  try {
    const pid = Number.parseInt(readFileSync(path, 'utf8').trim(), 10);
    return Number.isInteger(pid) && pid > 1 ? pid : null;
  } catch {
    return null;
  }
}

/**
 * True when process `pid` runs with `arg` as one of its arguments. A process
 * that ended (or a zombie nobody reaped: its command line is empty) is not.
 */
export function processHasArg(pid: number, arg: string): boolean {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').includes(arg);
  } catch {
    return false;
  }
}

/** The pid in `pidfile` when that process runs with `arg` among its arguments; else null. */
export function ownedPid(pidfile: string, arg: string): number | null {
  const pid = readPidFile(pidfile);
  return pid !== null && processHasArg(pid, arg) ? pid : null;
}

/** Poll `alive` every `intervalMs` until it says no or `timeoutMs` passed; true when the process is gone. */
export async function waitUntilGone(
  alive: () => boolean | Promise<boolean>,
  timeoutMs: number,
  intervalMs = 50,
): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (!(await alive())) return true;
    if (Date.now() >= deadline) return false;
    await sleep(intervalMs);
  }
}

/** Options of `terminateProcess`. */
export interface TerminateOptions {
  /** Whether the process is still the one to end (checked before every signal; see `processHasArg`). */
  alive: () => boolean | Promise<boolean>;
  /** How long the process gets to exit after being asked. */
  graceMs: number;
  /** How long to wait for the process to vanish after SIGKILL; default 0 (look once). */
  killWaitMs?: number;
  /** How to ask it to exit; default SIGTERM. */
  ask?: () => void | Promise<void>;
}

/**
 * End a process: ask it (SIGTERM unless `ask` says otherwise), give it
 * `graceMs`, then SIGKILL. Never signals a process `alive` disowns.
 * Resolves true when it is gone.
 */
export async function terminateProcess(pid: number, opts: TerminateOptions): Promise<boolean> {
  if (!(await opts.alive())) return true;
  if (opts.ask !== undefined) await opts.ask();
  else process.kill(pid, 'SIGTERM');
  if (await waitUntilGone(opts.alive, opts.graceMs)) return true;
  return killProcess(pid, opts.alive, opts.killWaitMs ?? 0);
}

/** SIGKILL the process if `alive` still owns it, and wait up to `waitMs` for it to vanish; true when gone. */
export async function killProcess(pid: number, alive: () => boolean | Promise<boolean>, waitMs = 0): Promise<boolean> {
  if (!(await alive())) return true;
  try {
    process.kill(pid, 'SIGKILL');
  } catch (err) {
    // Gone between the check and the signal.
    if ((err as NodeJS.ErrnoException).code !== 'ESRCH') throw err;
  }
  return waitUntilGone(alive, waitMs);
}
