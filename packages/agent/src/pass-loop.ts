import { backoffDelay } from './backoff.js';

/** Options of a PassLoop. */
export interface PassLoopOptions {
  /** Backoff of the retries after a failed pass; default 1 s doubling to 30 s. */
  retryBackoff?: { initialMs: number; maxMs: number };
  /** A pass now and then even without a change (drift repair); default 30 s, started by `startResync`. */
  resyncIntervalMs?: number;
  /** Before a resync pass (forget what was applied, so it is applied again). */
  onResync?: () => void;
  /** A pass failed (it threw); the next one runs in `retryInMs`. */
  onFailure?: (err: unknown, retryInMs: number) => void;
}

/**
 * Runs a level-triggered pass, never two at once: a kick while a pass runs
 * makes one more pass afterwards (any number of kicks, one pass), a pass that
 * throws is retried with backoff until one succeeds or the next kick, and an
 * optional resync kicks it now and then when idle. The host-area
 * reconcilers (networks, metadata) share it.
 */
export class PassLoop {
  private running: Promise<void> | null = null;
  private again = false;
  private timer: NodeJS.Timeout | null = null;
  private resyncTimer: NodeJS.Timeout | null = null;
  private attempt = 0;
  private stopped = false;

  constructor(
    private readonly pass: () => Promise<void>,
    private readonly opts: PassLoopOptions = {},
  ) {}

  /** Run a pass now, or once more after the one in flight. */
  kick(): void {
    if (this.stopped) return;
    if (this.timer !== null) {
      clearTimeout(this.timer);
      this.timer = null;
    }
    if (this.running !== null) {
      this.again = true;
      return;
    }
    this.running = this.run().finally(() => {
      this.running = null;
      if (this.again) {
        this.again = false;
        this.kick();
      }
    });
  }

  /** Start the periodic resync (once; later calls change nothing). */
  startResync(): void {
    if (this.resyncTimer !== null || this.stopped) return;
    this.resyncTimer = setInterval(() => {
      if (this.running !== null || this.timer !== null) return;
      this.opts.onResync?.();
      this.kick();
    }, this.opts.resyncIntervalMs ?? 30_000);
    this.resyncTimer.unref();
  }

  /** Wait for the pass in flight (and the ones it asked for). */
  async settled(): Promise<void> {
    while (this.running !== null) await this.running;
  }

  /** No more passes, retries or resyncs; waits for the pass in flight. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    if (this.resyncTimer !== null) clearInterval(this.resyncTimer);
    this.resyncTimer = null;
    await this.settled();
  }

  private async run(): Promise<void> {
    try {
      await this.pass();
      this.attempt = 0;
    } catch (err) {
      const { initialMs, maxMs } = this.opts.retryBackoff ?? { initialMs: 1000, maxMs: 30_000 };
      const delay = backoffDelay(this.attempt++, initialMs, maxMs);
      this.opts.onFailure?.(err, delay);
      if (this.stopped) return;
      this.timer = setTimeout(() => {
        this.timer = null;
        this.kick();
      }, delay);
      this.timer.unref();
    }
  }
}
