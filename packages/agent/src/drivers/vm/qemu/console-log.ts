import { randomBytes } from 'node:crypto';
import { watch, type FSWatcher } from 'node:fs';
import { open, rename, rm, stat, writeFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';

/**
 * The console log of a VM: QEMU appends everything the guest writes to its
 * serial port to one file, whether or not a console is attached. floe bounds
 * the file when the VM starts, reads its tail, and follows what is appended.
 */

/** Default bound of a console log: it is cut to its last MiB when the VM starts. */
export const DEFAULT_LOG_MAX_BYTES = 1024 * 1024;

async function sizeOf(path: string): Promise<{ size: number; ino: number } | null> {
  try {
    const s = await stat(path);
    return { size: s.size, ino: s.ino };
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw err;
  }
}

/** Read `length` bytes of `path` from `offset` (fewer at the end of the file). */
async function readRange(path: string, offset: number, length: number): Promise<Buffer> {
  if (length <= 0) return Buffer.alloc(0);
  const fh = await open(path, 'r');
  try {
    const buf = Buffer.alloc(length);
    const { bytesRead } = await fh.read(buf, 0, length, offset);
    return buf.subarray(0, bytesRead);
  } finally {
    await fh.close();
  }
}

/** The last `maxBytes` of a log (all of it when shorter); empty when there is no log yet. */
export async function readLogTail(path: string, maxBytes: number): Promise<Buffer> {
  const s = await sizeOf(path);
  if (s === null || maxBytes <= 0) return Buffer.alloc(0);
  const length = Math.min(s.size, maxBytes);
  return readRange(path, s.size - length, length);
}

/**
 * Cut a log down to its last `maxBytes`, starting at a line boundary when one
 * is near. Only while no QEMU writes to it (the VM is starting). Returns the
 * new file's size and inode, or null when nothing was cut.
 */
export async function trimLog(path: string, maxBytes: number): Promise<{ size: number; ino: number } | null> {
  const s = await sizeOf(path);
  if (s === null || s.size <= maxBytes) return null;
  let tail = await readRange(path, s.size - maxBytes, maxBytes);
  const newline = tail.indexOf(0x0a);
  if (newline >= 0 && newline < 4096) tail = tail.subarray(newline + 1);
  const partial = join(dirname(path), `.${basename(path)}.${randomBytes(6).toString('hex')}.tmp`);
  try {
    await writeFile(partial, tail, { mode: 0o640 });
    await rename(partial, path);
  } catch (err) {
    await rm(partial, { force: true });
    throw err;
  }
  return sizeOf(path);
}

/** Options of a LogFollower. */
export interface LogFollowerOptions {
  /** Poll this often even without a file system notification; default 500 ms. */
  pollMs?: number;
}

/**
 * Hands every byte appended to a log to a listener, from the size the log had
 * when following began. Notices a replaced file by its inode and reads the
 * new one from its start, unless told by `pause`/`resume` that it was trimmed.
 */
export class LogFollower {
  private offset = 0;
  private ino: number | null = null;
  private reading = false;
  private again = false;
  private stopped = false;
  private paused = false;
  private watcher: FSWatcher | null = null;
  private timer: NodeJS.Timeout | null = null;

  private constructor(
    private readonly path: string,
    private readonly listener: (data: Buffer) => void,
  ) {}

  /** Start following `path` from its current end. */
  static async start(
    path: string,
    listener: (data: Buffer) => void,
    opts: LogFollowerOptions = {},
  ): Promise<LogFollower> {
    const f = new LogFollower(path, listener);
    const s = await sizeOf(path);
    f.offset = s?.size ?? 0;
    f.ino = s?.ino ?? null;
    try {
      // Watch the directory: the log may not exist yet, and trimming replaces it.
      f.watcher = watch(dirname(path), (_event, file) => {
        if (file === null || file === basename(path)) f.poke();
      });
      f.watcher.on('error', () => {
        f.watcher?.close();
        f.watcher = null;
      });
    } catch {
      // No inotify (or the directory is gone): polling alone will do.
    }
    f.timer = setInterval(() => f.poke(), opts.pollMs ?? 500);
    f.timer.unref?.();
    return f;
  }

  /** Hold reads while the log is being replaced (trimmed); `resume` goes on. */
  pause(): void {
    this.paused = true;
  }

  /** Go on after `pause`; `replacedBy` is the new file, whose content was already delivered, so reading goes on from its end. */
  resume(replacedBy: { size: number; ino: number } | null): void {
    if (replacedBy !== null) {
      this.offset = replacedBy.size;
      this.ino = replacedBy.ino;
    }
    this.paused = false;
    this.poke();
  }

  /** Stop following. */
  stop(): void {
    this.stopped = true;
    this.watcher?.close();
    this.watcher = null;
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
  }

  /** Read what was appended since the last read (coalesced: one read at a time). */
  poke(): void {
    if (this.stopped || this.paused) return;
    if (this.reading) {
      this.again = true;
      return;
    }
    this.reading = true;
    void this.read().finally(() => {
      this.reading = false;
      if (this.again && !this.stopped) {
        this.again = false;
        this.poke();
      }
    });
  }

  private async read(): Promise<void> {
    try {
      const s = await sizeOf(this.path);
      if (s === null || this.paused) return;
      if (this.ino !== s.ino || s.size < this.offset) {
        this.ino = s.ino;
        this.offset = 0;
      }
      while (!this.stopped && !this.paused && s.size > this.offset) {
        const chunk = await readRange(this.path, this.offset, Math.min(s.size - this.offset, 64 * 1024));
        if (chunk.length === 0) break;
        this.offset += chunk.length;
        this.listener(chunk);
      }
    } catch {
      // The log went away (VM destroyed) or a listener threw; the next poke tries again.
    }
  }
}
