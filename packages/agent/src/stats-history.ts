import { readFile } from 'node:fs/promises';
import { pino, type Logger } from 'pino';
import { decodeStatsHistoryFile, type StatsHistoryFile, type VmStatsSample } from '@floe/api';
import type { VmDriver } from './drivers/vm/types.js';
import { writeJsonAtomic } from './host/files.js';

/** How often the agent samples each running VM by default. */
const STATS_INTERVAL_MS = 10_000;
/** How far back the history reaches by default. */
const STATS_RETENTION_MS = 60 * 60 * 1000;

/**
 * A fixed-capacity ring of samples, oldest first: pushing onto a full ring
 * drops the oldest.
 */
export class SampleRing {
  private readonly items: Array<VmStatsSample | undefined>;
  private start = 0;
  private count = 0;

  constructor(readonly capacity: number) {
    if (!Number.isInteger(capacity) || capacity < 1)
      throw new Error(`ring capacity must be 1 or more, not ${capacity}`);
    this.items = new Array<VmStatsSample | undefined>(capacity);
  }

  get size(): number {
    return this.count;
  }

  push(sample: VmStatsSample): void {
    if (this.count < this.capacity) {
      this.items[(this.start + this.count) % this.capacity] = sample;
      this.count++;
      return;
    }
    this.items[this.start] = sample;
    this.start = (this.start + 1) % this.capacity;
  }

  /** The samples, oldest first. */
  toArray(): VmStatsSample[] {
    const out: VmStatsSample[] = [];
    for (let i = 0; i < this.count; i++) out.push(this.items[(this.start + i) % this.capacity]!);
    return out;
  }
}

/**
 * The samples a history answer carries: those taken after `since` (all
 * without it) and within `retentionMs` of `now`, plus the one just before
 * the first of them, which the rate of the first is computed against. Pure.
 */
export function samplesSince(
  samples: readonly VmStatsSample[],
  since: string | undefined,
  now: number,
  retentionMs: number,
): VmStatsSample[] {
  const sinceMs = since === undefined ? -Infinity : Date.parse(since);
  const from = Math.max(Number.isNaN(sinceMs) ? -Infinity : sinceMs, now - retentionMs);
  const first = samples.findIndex((s) => Date.parse(s.at) > from);
  if (first === -1) return [];
  return samples.slice(Math.max(0, first - 1));
}

/** Options of {@link StatsSampler}. */
export interface StatsSamplerOptions {
  driver: VmDriver;
  /** How often to sample each running VM (default 10 s). */
  intervalMs?: number;
  /** How far back to keep samples (default one hour). */
  retentionMs?: number;
  /** Where the history is saved on `stop()` and found again on `start()`; none: memory only. */
  file?: string;
  logger?: Logger;
  /** The clock (tests). */
  now?: () => number;
}

/**
 * Samples the counters of every running VM of the driver every `intervalMs`
 * and keeps them per instance in a ring of `retentionMs / intervalMs`
 * samples: the bounded history the stats graphs draw from, without a
 * metrics server. It lives in the agent, next to the VMs, so it does not
 * depend on the control plane (which may restart, or be several) and costs
 * the database nothing; it is saved to `file` when the agent stops and read
 * back when it starts, so an agent upgrade leaves a gap rather than a blank.
 * A VM that is gone from the driver loses its history.
 */
export class StatsSampler {
  readonly intervalMs: number;
  readonly retentionMs: number;
  private readonly rings = new Map<string, SampleRing>();
  private readonly log: Logger;
  private readonly now: () => number;
  private timer: NodeJS.Timeout | null = null;
  private running: Promise<void> | null = null;
  private loading: Promise<void> | null = null;
  private stopped = false;

  constructor(private readonly opts: StatsSamplerOptions) {
    this.intervalMs = opts.intervalMs ?? STATS_INTERVAL_MS;
    this.retentionMs = opts.retentionMs ?? STATS_RETENTION_MS;
    if (!(this.intervalMs > 0) || !(this.retentionMs >= this.intervalMs))
      throw new Error('the stats interval must be positive and the retention at least one interval');
    this.log = opts.logger ?? pino({ level: 'silent' });
    this.now = opts.now ?? Date.now;
  }

  /** Samples kept per instance: one hour at 10 s is 360, plus the base of the oldest rate. */
  get capacity(): number {
    return Math.ceil(this.retentionMs / this.intervalMs) + 1;
  }

  /** Load the saved history, take a first sample and keep sampling. */
  async start(): Promise<void> {
    this.loading = this.load();
    await this.loading;
    if (this.stopped) return;
    void this.sample().finally(() => this.schedule(this.intervalMs));
  }

  /** Stop sampling and save the history (when there is a file). */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    // Saved after the file was read and the last sample taken: never a half-loaded history over the whole one.
    await this.loading;
    await this.running;
    await this.save();
  }

  /** The history of one instance (see `samplesSince`); empty when the agent has none. */
  history(instanceId: string, since?: string): VmStatsSample[] {
    const ring = this.rings.get(instanceId);
    return ring === undefined ? [] : samplesSince(ring.toArray(), since, this.now(), this.retentionMs);
  }

  /** Take one sample of every running VM now (the timer calls this; tests may too). */
  sample(): Promise<void> {
    this.running ??= this.sampleAll().finally(() => (this.running = null));
    return this.running;
  }

  private schedule(delayMs: number): void {
    if (this.stopped || this.timer !== null) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      void this.sample().finally(() => this.schedule(this.intervalMs));
    }, delayMs);
    this.timer.unref();
  }

  private async sampleAll(): Promise<void> {
    let vms;
    try {
      vms = await this.opts.driver.list();
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, 'cannot list VMs for stats');
      return;
    }
    const present = new Set(vms.map((vm) => vm.id));
    for (const id of this.rings.keys()) if (!present.has(id)) this.rings.delete(id);
    for (const vm of vms) {
      if (vm.state !== 'running' || this.stopped) continue;
      try {
        const stats = await this.opts.driver.stats(vm.id);
        this.ring(vm.id).push({ ...stats, started_at: vm.started_at });
      } catch (err) {
        // Stopped meanwhile, or QMP busy: no sample this round.
        this.log.debug({ id: vm.id, err: (err as Error).message }, 'no stats sample');
      }
    }
  }

  private ring(id: string): SampleRing {
    let ring = this.rings.get(id);
    if (ring === undefined) {
      ring = new SampleRing(this.capacity);
      this.rings.set(id, ring);
    }
    return ring;
  }

  private async save(): Promise<void> {
    const file = this.opts.file;
    if (file === undefined) return;
    const instances: StatsHistoryFile['instances'] = {};
    for (const [id, ring] of this.rings) instances[id] = ring.toArray();
    const content: StatsHistoryFile = {
      type: 'stats-history',
      saved_at: new Date(this.now()).toISOString(),
      instances,
    };
    try {
      await writeJsonAtomic(file, content, 0o600);
    } catch (err) {
      this.log.warn({ err: (err as Error).message, file }, 'cannot save the stats history');
    }
  }

  private async load(): Promise<void> {
    const file = this.opts.file;
    if (file === undefined) return;
    let text: string;
    try {
      text = await readFile(file, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT')
        this.log.warn({ err: (err as Error).message, file }, 'cannot read the stats history');
      return;
    }
    const decoded = decodeStatsHistoryFile(text);
    if (!decoded.ok) {
      this.log.warn({ file, error: decoded.error }, 'ignoring a malformed stats history file');
      return;
    }
    const oldest = this.now() - this.retentionMs;
    for (const [id, samples] of Object.entries(decoded.value.instances)) {
      const ring = this.ring(id);
      for (const s of samples) if (Date.parse(s.at) >= oldest) ring.push(s);
    }
  }
}
