import { backoffDelay } from './backoff.js';

/** Options of a WorkQueue. */
export interface WorkQueueOptions<K> {
  /** Does the work of one key; a throw schedules a retry of that key with backoff. */
  handler: (key: K) => Promise<void>;
  /** Delays of the retries after a failure: exponential from `initialMs` (with jitter), capped at `maxMs`; default 1 s .. 30 s. */
  retryBackoff?: { initialMs?: number; maxMs?: number };
  /** The handler of `key` threw; its `failures`-th failure in a row, retried in `retryInMs` (or at once, see `add`). */
  onError?: (key: K, err: unknown, retryInMs: number, failures: number) => void;
  /** Keys worked on at the same time; default unlimited. */
  concurrency?: number;
  /** Jitter source of the backoff (tests). */
  random?: () => number;
}

/** How `add` treats a key waiting for a delayed run (a retry, a restart backoff). */
export interface AddOptions {
  /** Leave a pending delayed run alone instead of running now (a periodic resync must not cut a backoff short). */
  keepDelay?: boolean;
}

// What the queue knows of one key; dropped once the key is neither queued, running, delayed nor failing.
interface Entry {
  queued: boolean;
  running: boolean;
  /** Added while running: 'now' runs it again right after, even after a failure; 'later' only after a success. */
  again: 'no' | 'later' | 'now';
  timer: NodeJS.Timeout | null;
  due: number;
  failures: number;
}

/**
 * A keyed work queue: a key added while it waits runs once, a key added while
 * its handler runs runs again afterwards, and one key never runs twice at
 * once (different keys do, up to `concurrency`). A failing key is retried
 * with exponential backoff until it succeeds or is added again; keys can also
 * be run after a delay. Keys run in the order they were added.
 */
export class WorkQueue<K> {
  private readonly entries = new Map<K, Entry>();
  /** Keys waiting to run, oldest first (a Set keeps insertion order and dedups). */
  private readonly pending = new Set<K>();
  private readonly retry: { initialMs: number; maxMs: number };
  private readonly concurrency: number;
  private running = 0;
  private stopped = false;
  private idleWaiters: Array<() => void> = [];
  private drainScheduled = false;

  constructor(private readonly opts: WorkQueueOptions<K>) {
    this.retry = { initialMs: 1000, maxMs: 30_000, ...opts.retryBackoff };
    this.concurrency = opts.concurrency ?? Infinity;
  }

  /** Run `key` soon: once however often it is added before it starts, once more if it is running. */
  add(key: K, opts: AddOptions = {}): void {
    if (this.stopped) return;
    const e = this.entry(key);
    if (e.timer !== null) {
      if (opts.keepDelay === true) return;
      clearTimeout(e.timer);
      e.timer = null;
    }
    if (e.running) {
      if (opts.keepDelay !== true) e.again = 'now';
      else if (e.again === 'no') e.again = 'later';
      return;
    }
    if (e.queued) return;
    e.queued = true;
    this.pending.add(key);
    this.scheduleDrain();
  }

  /** Run `key` after `delayMs` (unless added sooner); of two delayed runs, the earlier one wins. */
  addAfter(key: K, delayMs: number): void {
    if (this.stopped) return;
    const e = this.entry(key);
    const due = Date.now() + delayMs;
    if (e.timer !== null) {
      if (e.due <= due) return;
      clearTimeout(e.timer);
    }
    e.due = due;
    e.timer = setTimeout(() => {
      e.timer = null;
      this.add(key);
    }, delayMs);
    e.timer.unref?.();
  }

  /** Whether the handler of `key` runs now. */
  isRunning(key: K): boolean {
    return this.entries.get(key)?.running === true;
  }

  /** Whether `key` is queued, running or waiting for a delayed run. */
  has(key: K): boolean {
    const e = this.entries.get(key);
    return e !== undefined && (e.queued || e.running || e.timer !== null);
  }

  /** Failures of `key` in a row (0 after a success). */
  failures(key: K): number {
    return this.entries.get(key)?.failures ?? 0;
  }

  /** Keys queued or running (delayed ones not counted). */
  get size(): number {
    return this.pending.size + this.running;
  }

  /** Resolves once nothing is queued or running; delayed runs (retries) may still be pending. */
  whenIdle(): Promise<void> {
    if (this.size === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  /** No more runs: queued and delayed keys are dropped; waits up to `waitMs` for the handlers in progress. */
  async stop(waitMs = 10_000): Promise<void> {
    this.stopped = true;
    for (const e of this.entries.values()) {
      if (e.timer !== null) clearTimeout(e.timer);
      e.timer = null;
      e.queued = false;
      e.again = 'no';
    }
    this.pending.clear();
    this.notifyIdle();
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([this.whenIdle(), new Promise<void>((r) => (timer = setTimeout(r, waitMs)))]);
    clearTimeout(timer);
  }

  private entry(key: K): Entry {
    let e = this.entries.get(key);
    if (e === undefined) {
      e = { queued: false, running: false, again: 'no', timer: null, due: 0, failures: 0 };
      this.entries.set(key, e);
    }
    return e;
  }

  // Handlers start on a microtask: everything added in the same synchronous turn is seen before the first one runs.
  private scheduleDrain(): void {
    if (this.drainScheduled) return;
    this.drainScheduled = true;
    queueMicrotask(() => {
      this.drainScheduled = false;
      this.drain();
    });
  }

  private drain(): void {
    for (const key of this.pending) {
      if (this.running >= this.concurrency) return;
      this.pending.delete(key);
      void this.run(key);
    }
  }

  private async run(key: K): Promise<void> {
    const e = this.entry(key);
    e.queued = false;
    e.running = true;
    this.running++;
    let failed = false;
    try {
      await this.opts.handler(key);
      e.failures = 0;
    } catch (err) {
      failed = true;
      e.failures++;
      const delay = backoffDelay(e.failures - 1, this.retry.initialMs, this.retry.maxMs, this.opts.random);
      // A fresh add while failing (a new desired state) runs again at once, otherwise the retry waits.
      const now = e.again === 'now';
      this.opts.onError?.(key, err, now ? 0 : delay, e.failures);
      if (!now) this.addAfter(key, delay);
    } finally {
      e.running = false;
      this.running--;
      const again = e.again;
      e.again = 'no';
      if (again === 'now' || (again === 'later' && !failed)) this.add(key);
      if (!e.queued && e.timer === null && e.failures === 0) this.entries.delete(key);
      this.drain();
      this.notifyIdle();
    }
  }

  private notifyIdle(): void {
    if (this.size !== 0) return;
    const waiters = this.idleWaiters;
    this.idleWaiters = [];
    for (const resolve of waiters) resolve();
  }
}
