import { open, readFile, stat, unlink } from 'node:fs/promises';

/**
 * Lock files that keep two builds of the same image (in this process or
 * others) from running at once; a lock whose process died is broken.
 */

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Who holds a lock file. */
export type LockState = { state: 'free' } | { state: 'held'; pid: number | null } | { state: 'stale' };

/** Who holds a lock file: nobody, a live process, or a process that died (stale). */
export async function lockState(path: string): Promise<LockState> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { state: 'free' };
    throw err;
  }
  const pid = Number.parseInt(text, 10);
  if (Number.isInteger(pid) && pid > 0) return alive(pid) ? { state: 'held', pid } : { state: 'stale' };
  // Created but its pid not written yet: held, unless it stayed empty for long.
  const age = await stat(path).then(
    (s) => Date.now() - s.mtimeMs,
    () => null,
  );
  if (age === null) return { state: 'free' };
  return age < 10_000 ? { state: 'held', pid: null } : { state: 'stale' };
}

/**
 * Take `<path>` as a lock file (holding our pid); waits while another live
 * process holds it, for at most 20 minutes (then throws `opts.fail(message)`).
 * Returns the function that releases it.
 */
export async function lock(
  path: string,
  log: (line: string) => void,
  opts: { what: string; fail: (message: string) => Error },
): Promise<() => Promise<void>> {
  const deadline = Date.now() + 20 * 60_000;
  let told = false;
  for (;;) {
    try {
      const fh = await open(path, 'wx');
      await fh.writeFile(String(process.pid));
      await fh.close();
      return async () => {
        await unlink(path).catch(() => undefined);
      };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    const holder = await lockState(path);
    if (holder.state === 'stale') await unlink(path).catch(() => undefined);
    if (holder.state !== 'held') continue;
    if (Date.now() > deadline) throw opts.fail(`lock ${path} held by process ${holder.pid ?? '?'} for too long`);
    if (!told) log(`waiting for process ${holder.pid ?? '?'} to finish building ${opts.what}`);
    told = true;
    await new Promise((r) => setTimeout(r, 500));
  }
}
