import { createServer } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';

/** How long to wait and how often to look. */
export interface WaitOptions {
  /** Give up after this long (default 5 s). */
  timeoutMs?: number;
  /** Look again after this long (default 50 ms). */
  intervalMs?: number;
}

/**
 * Calls `check` until it answers something other than false, null or
 * undefined, and resolves to that answer; fails naming `what` (and the last
 * error `check` threw, if any) after the timeout.
 */
export async function until<T>(
  what: string,
  check: () => T | false | null | undefined | Promise<T | false | null | undefined>,
  opts: WaitOptions = {},
): Promise<T> {
  const timeoutMs = opts.timeoutMs ?? 5000;
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  for (;;) {
    try {
      const v = await check();
      if (v !== false && v !== null && v !== undefined) return v;
      lastError = undefined;
    } catch (err) {
      lastError = err;
    }
    if (Date.now() > deadline) {
      const why = lastError instanceof Error ? `: ${lastError.message}` : '';
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${why}`);
    }
    await sleep(opts.intervalMs ?? 50);
  }
}

/** `until` for a yes/no condition. */
export async function waitFor(
  what: string,
  check: () => boolean | Promise<boolean>,
  opts: WaitOptions = {},
): Promise<void> {
  await until(what, async () => (await check()) || undefined, opts);
}

/** A TCP port on 127.0.0.1 that was free a moment ago. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => resolve(port));
    });
  });
}
