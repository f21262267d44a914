import { randomBytes } from 'node:crypto';
import { link, rename, rm } from 'node:fs/promises';
import net from 'node:net';
import { join } from 'node:path';

/**
 * One process per directory, held by a unix socket the process listens on in
 * that directory. The kernel lets go of a listening socket when its process
 * dies, however it dies, so no pid is ever guessed at: a socket that accepts a
 * connection belongs to a live holder (it answers with its pid), one that
 * refuses is left over from a dead one and is taken over.
 */

/** What a live holder says about itself. */
export interface LockHolder {
  pid: number;
  /** When the holder took the lock (ISO 8601). */
  since: string;
}

/** The lock is held by another live process. */
export class InstanceLockedError extends Error {
  override readonly name = 'InstanceLockedError';
  constructor(
    message: string,
    readonly holder: LockHolder,
  ) {
    super(message);
  }
}

/** A lock this process holds; `release()` lets go of it (so does the process's death). */
export interface InstanceLock {
  readonly path: string;
  release(): Promise<void>;
}

/** Longest path of a unix socket on Linux (sun_path is 108 bytes with its NUL). */
const MAX_SOCKET_PATH = 107;
/** How long a live holder has to answer who it is. */
const ANSWER_TIMEOUT_MS = 2000;

/** The lock socket `name` in `dir`. */
export function lockPath(dir: string, name: string): string {
  return join(dir, `${name}.lock`);
}

/**
 * Who holds lock `name` in `dir`: the holder, or null when nobody (no socket, or one left by a dead
 * process). A holder too busy to answer within 2 s still counts as alive, with pid 0.
 */
export function probeInstanceLock(dir: string, name: string): Promise<LockHolder | null> {
  return ask(lockPath(dir, name));
}

function ask(path: string): Promise<LockHolder | null> {
  return new Promise((resolve, reject) => {
    let text = '';
    let connected = false;
    const socket = net.connect(path);
    const done = (value: LockHolder | null) => {
      clearTimeout(timer);
      socket.destroy();
      resolve(value);
    };
    const timer = setTimeout(() => done({ pid: 0, since: '' }), ANSWER_TIMEOUT_MS);
    socket.setEncoding('utf8');
    socket.on('connect', () => {
      connected = true;
    });
    socket.on('data', (d: string) => {
      text += d;
    });
    socket.on('end', () => {
      try {
        const parsed = JSON.parse(text) as Partial<LockHolder>;
        done({ pid: Number(parsed.pid) || 0, since: String(parsed.since ?? '') });
      } catch {
        done({ pid: 0, since: '' });
      }
    });
    socket.on('error', (err: NodeJS.ErrnoException) => {
      if (connected) return done({ pid: 0, since: '' });
      clearTimeout(timer);
      // Nobody listens: no socket at all, or one a dead process left behind.
      if (err.code === 'ENOENT' || err.code === 'ECONNREFUSED') resolve(null);
      else reject(err);
    });
  });
}

function listen(server: net.Server, path: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (err: Error) => reject(err);
    server.once('error', onError);
    server.listen(path, () => {
      server.off('error', onError);
      resolve();
    });
  });
}

/**
 * Take lock `name` in `dir` (which must exist), or throw InstanceLockedError naming the live holder.
 *
 * The socket is made under a private name and hard-linked into place, which fails when the name
 * exists: creating the lock is atomic. A stale socket is moved aside under a private name before it
 * is checked once more, so two processes that both found it stale cannot both remove it: the second
 * moves the first one's live socket, sees it answer, and puts it back.
 */
export async function acquireInstanceLock(dir: string, name: string): Promise<InstanceLock> {
  const path = lockPath(dir, name);
  if (Buffer.byteLength(path) > MAX_SOCKET_PATH)
    throw new Error(`the lock socket ${path} is longer than ${MAX_SOCKET_PATH} bytes; use a shorter directory`);
  const since = new Date().toISOString();
  const server = net.createServer((socket) => {
    socket.on('error', () => undefined);
    socket.end(`${JSON.stringify({ pid: process.pid, since })}\n`);
  });
  server.unref();
  const tmp = join(dir, `.${name}.${process.pid}.${randomBytes(4).toString('hex')}`);
  await listen(server, tmp);
  const close = async () => {
    await new Promise<void>((r) => server.close(() => r()));
    await rm(tmp, { force: true });
  };
  try {
    for (let attempt = 0; attempt < 20; attempt++) {
      try {
        await link(tmp, path);
        await rm(tmp, { force: true });
        return {
          path,
          release: async () => {
            await rm(path, { force: true });
            await new Promise<void>((r) => server.close(() => r()));
          },
        };
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      }
      const holder = await ask(path);
      if (holder !== null) throw lockedError(path, holder);
      const aside = join(dir, `.${name}.stale.${randomBytes(4).toString('hex')}`);
      try {
        await rename(path, aside);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') continue; // someone else moved it first
        throw err;
      }
      const moved = await ask(aside);
      if (moved !== null) {
        // Between our look and the move another process took the lock: give it back.
        await link(aside, path).catch(() => undefined);
        await rm(aside, { force: true });
        throw lockedError(path, moved);
      }
      await rm(aside, { force: true });
    }
    throw new Error(`could not take the lock ${path}: it keeps changing hands`);
  } catch (err) {
    await close();
    throw err;
  }
}

function lockedError(path: string, holder: LockHolder): InstanceLockedError {
  const who = holder.pid > 0 ? `pid ${holder.pid}${holder.since ? `, since ${holder.since}` : ''}` : 'pid unknown';
  return new InstanceLockedError(`already held by a running process (${who}; lock ${path})`, holder);
}
