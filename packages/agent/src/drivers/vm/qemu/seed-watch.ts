import type { QmpBlockStats, QmpClient } from './qmp.js';

/** The QEMU drive id of the seed disk (`-drive id=seed`), as `query-blockstats` names it. */
const SEED_DRIVE_ID = 'seed';

/**
 * Whether the guest has read its seed disk, from one `query-blockstats`
 * answer: true once the seed drive counted a read, false before, null when
 * the VM has no seed drive. Pure.
 */
export function seedReadState(stats: readonly QmpBlockStats[]): boolean | null {
  const seed = stats.find((s) => s.device === SEED_DRIVE_ID);
  if (seed === undefined) return null;
  return (seed.stats.rd_operations ?? 0) > 0;
}

/** Options of `watchSeedReads`. */
export interface SeedWatchOptions {
  /** How often to look. */
  intervalMs: number;
  /** Give up after this long (a guest that never reads its seed). */
  maxMs: number;
  /**
   * Only a read seen to happen counts: a first look that finds the seed
   * already read (a VM adopted after an agent restart) says nothing, because
   * when it happened is unknown.
   */
  requireUnreadFirst: boolean;
  onRead(at: string): void;
}

/**
 * Watch a running VM's seed drive over its QMP connection until the guest
 * reads it (the guest's kernel sees the disk and reads its label, then
 * cloud-init mounts it), and say when, once. Stops by itself when the VM has
 * no seed, the time is up or the connection closes; the returned function
 * stops it earlier.
 */
export function watchSeedReads(client: Pick<QmpClient, 'execute' | 'onClose'>, opts: SeedWatchOptions): () => void {
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;
  let first = true;
  const deadline = Date.now() + opts.maxMs;
  const stop = () => {
    stopped = true;
    if (timer !== undefined) clearTimeout(timer);
    offClose();
  };
  const offClose = client.onClose(() => stop());
  const look = async () => {
    timer = undefined;
    if (stopped) return;
    let state: boolean | null | undefined;
    try {
      state = seedReadState(await client.execute('query-blockstats', undefined, { timeoutMs: 5000 }));
    } catch {
      state = undefined; // busy or closing: look again
    }
    if (stopped) return;
    if (state === null || (state === true && first && opts.requireUnreadFirst)) return stop();
    if (state === true) {
      stop();
      opts.onRead(new Date().toISOString());
      return;
    }
    if (state === false) first = false;
    if (Date.now() >= deadline) return stop();
    timer = setTimeout(() => void look(), opts.intervalMs);
    timer.unref();
  };
  void look();
  return stop;
}
