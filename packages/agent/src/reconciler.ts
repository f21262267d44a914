import { pino, type Logger } from 'pino';
import {
  mergeFirstBoot,
  NO_FIRST_BOOT,
  type DesiredImage,
  type DesiredInstance,
  type FirstBoot,
  type ObservedInstance,
} from '@floe/api';
import type { VmDriver, VmDriverEvent, VmInfo, VmNic } from './drivers/vm/types.js';
import { backoffDelay } from './backoff.js';
import type { AppliedInstance, AppliedNic, AppliedStore } from './state.js';

/** Where the reconciler sends what it observes (the agent link, or a test recorder). */
export interface ReconcilerReporter {
  status(instance: ObservedInstance): void;
  event(instanceId: string, event: string, message: string, data?: Record<string, unknown>): void;
}

/** Options of the reconciler; only the driver and reporter are required. */
export interface ReconcilerOptions {
  driver: VmDriver;
  reporter: ReconcilerReporter;
  /** Keeps what was applied across agent restarts; in memory by default. */
  store?: AppliedStore;
  logger?: Logger;
  /** How often everything is checked again against the driver; default 30 s. */
  resyncIntervalMs?: number;
  /** Retry delays after a driver error; default 1 s doubling to 60 s. */
  retryBackoff?: { initialMs?: number; maxMs?: number };
  /** Delays before a crashed VM is started again; default 1 s doubling to 5 min, forgotten after 10 min without a crash. */
  restartBackoff?: { initialMs?: number; maxMs?: number; resetAfterMs?: number };
  /** Passed to graceful `driver.stop`. */
  stopTimeoutMs?: number;
  /** Fetches and caches base images before `driver.create` (the agent's ImageCache); without it VMs get no image path. */
  images?: { ensure(image: DesiredImage | null): Promise<string | null> };
  /**
   * Creates the taps of an instance's NICs before create/start (and before a
   * NIC is hot-added), removes them after destroy, and removes one NIC's tap
   * after it was hot-removed; without it VMs get no NICs.
   */
  nics?: {
    ensure(vm: DesiredInstance): Promise<Array<{ id: string; tap: string; mac: string }>>;
    remove(vm: DesiredInstance): Promise<void>;
    removeNic(nicId: string): Promise<void>;
  };
}

/** The NICs of a desired instance as the reconciler records them once applied, in slot order. */
function desiredNics(vm: DesiredInstance): AppliedNic[] {
  return (vm.nics ?? []).map((n) => ({ id: n.id, index: n.index, mac: n.mac })).sort((a, b) => a.index - b.index);
}

function sameNics(a: AppliedNic[] | undefined, b: AppliedNic[]): boolean {
  return (
    a !== undefined &&
    a.length === b.length &&
    a.every((n, i) => n.id === b[i]!.id && n.index === b[i]!.index && n.mac === b[i]!.mac)
  );
}

// The driver's view of the NICs: each tap with its NIC's slot.
function withSlots(vm: DesiredInstance, taps: Array<{ id: string; tap: string; mac: string }>): VmNic[] {
  const slots = new Map((vm.nics ?? []).map((n) => [n.id, n.index]));
  return taps.map((t) => {
    const index = slots.get(t.id);
    return index === undefined ? { id: t.id, tap: t.tap, mac: t.mac } : { id: t.id, tap: t.tap, mac: t.mac, index };
  });
}

/** An in-memory AppliedStore (tests, and agents that keep no state). */
export function memoryAppliedStore(
  initial: Record<string, AppliedInstance> = {},
): AppliedStore & { data: Record<string, AppliedInstance> } {
  const store = {
    data: structuredClone(initial),
    load: async () => structuredClone(store.data),
    save: async (applied: Record<string, AppliedInstance>) => {
      store.data = structuredClone(applied);
    },
  };
  return store;
}

// Per-instance bookkeeping that lives only as long as the process.
interface Work {
  busy: boolean;
  dirty: boolean;
  timer: NodeJS.Timeout | null;
  timerDue: number;
  failures: number;
  /** The reconciler itself is stopping or destroying the VM: its stop events are expected. */
  expectingStop: boolean;
  crashes: number;
  lastCrashAt: number;
  restartNotBefore: number;
  restartMessage: string | null;
}

function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

function sameObserved(a: ObservedInstance | undefined, b: ObservedInstance): boolean {
  return (
    a !== undefined &&
    a.state === b.state &&
    a.observed_revision === b.observed_revision &&
    a.observed_generation === b.observed_generation &&
    a.observed_restart_generation === b.observed_restart_generation &&
    a.reason === b.reason &&
    a.accelerator === b.accelerator &&
    a.started_at === b.started_at &&
    a.stopped_at === b.stopped_at &&
    JSON.stringify(a.first_boot) === JSON.stringify(b.first_boot)
  );
}

/**
 * Makes the host's VMs match the desired state, level-triggered: every pass
 * compares what is wanted with what the driver reports and does only what is
 * missing, so repeating a pass (after a reconnect, a restart, a resync)
 * changes nothing. Work is serialized per instance; failures are retried with
 * backoff. VMs the desired state does not mention are reported once and left
 * alone: a control plane that forgot them must not kill them.
 */
export class Reconciler {
  private readonly driver: VmDriver;
  private readonly reporter: ReconcilerReporter;
  private readonly store: AppliedStore;
  private readonly log: Logger;
  private readonly retry: { initialMs: number; maxMs: number };
  private readonly restart: { initialMs: number; maxMs: number; resetAfterMs: number };
  private desired = new Map<string, DesiredInstance>();
  private applied: Record<string, AppliedInstance> = {};
  private readonly work = new Map<string, Work>();
  private readonly last = new Map<string, ObservedInstance>();
  /** What was seen of each VM's first boot since the agent started (the control plane keeps it for good). */
  private readonly firstBoot = new Map<string, FirstBoot>();
  /** Destroyed while the control plane may still list them as deleting. */
  private readonly destroyed = new Set<string>();
  private readonly orphansReported = new Set<string>();
  /** Unsolicited stops seen before the first snapshot told us what is wanted. */
  private readonly earlyStops = new Map<string, VmDriverEvent>();
  private haveSnapshot = false;
  private started = false;
  private stopped = false;
  private resyncing = false;
  private active = 0;
  private idleWaiters: Array<() => void> = [];
  private resyncTimer: NodeJS.Timeout | null = null;
  private unsubscribe: (() => void) | null = null;

  constructor(private readonly opts: ReconcilerOptions) {
    this.driver = opts.driver;
    this.reporter = opts.reporter;
    this.store = opts.store ?? memoryAppliedStore();
    this.log = opts.logger ?? pino({ level: 'silent' });
    this.retry = { initialMs: 1000, maxMs: 60_000, ...opts.retryBackoff };
    this.restart = { initialMs: 1000, maxMs: 5 * 60_000, resetAfterMs: 10 * 60_000, ...opts.restartBackoff };
  }

  /** Load what was applied before, listen to the driver, start the periodic resync. Acts only once a snapshot arrives. */
  async start(): Promise<void> {
    if (this.started) return;
    this.applied = await this.store.load();
    this.unsubscribe = this.driver.onEvent((event) => this.onDriverEvent(event));
    this.resyncTimer = setInterval(() => void this.resync(), this.opts.resyncIntervalMs ?? 30_000);
    this.resyncTimer.unref?.();
    this.started = true;
  }

  /** Replace the whole desired state (a `snapshot` message). */
  setSnapshot(instances: DesiredInstance[]): void {
    this.assertStarted();
    this.desired = new Map(instances.map((i) => [i.id, i]));
    this.haveSnapshot = true;
    for (const id of [...this.destroyed]) {
      if (this.desired.get(id)?.deleting !== true) this.destroyed.delete(id);
    }
    for (const id of this.desired.keys()) this.orphansReported.delete(id);
    for (const [id, event] of this.earlyStops) {
      const desired = this.desired.get(id);
      if (desired !== undefined && !desired.deleting) this.handleUnsolicitedStop(desired, event);
    }
    this.earlyStops.clear();
    for (const id of this.desired.keys()) this.kick(id, true);
    void this.checkOrphans();
  }

  /** Change the desired state of one instance (an `instance` message). */
  update(instance: DesiredInstance): void {
    this.assertStarted();
    const current = this.desired.get(instance.id);
    if (current !== undefined && instance.revision < current.revision) {
      this.log.debug(
        { id: instance.id, revision: instance.revision, have: current.revision },
        'ignoring an older desired state',
      );
      return;
    }
    this.desired.set(instance.id, instance);
    if (!instance.deleting) this.destroyed.delete(instance.id);
    this.orphansReported.delete(instance.id);
    this.kick(instance.id, true);
  }

  /** What the host runs now, for `hello`: every VM the driver knows, plus instances still being set up. */
  async observed(): Promise<ObservedInstance[]> {
    let vms: VmInfo[] = [];
    try {
      vms = await this.driver.list();
    } catch (err) {
      this.log.warn({ err: errorMessage(err) }, 'cannot list VMs for hello');
    }
    const out = new Map<string, ObservedInstance>();
    for (const vm of vms) out.set(vm.id, this.fromVm(vm));
    for (const [id, obs] of this.last) {
      if (!out.has(id) && obs.state !== 'deleted') out.set(id, obs);
    }
    for (const [id, obs] of out) this.last.set(id, obs);
    return [...out.values()];
  }

  /** Check everything again now (also runs every `resyncIntervalMs`). */
  async resync(): Promise<void> {
    if (this.stopped || !this.started || this.resyncing) return;
    this.resyncing = true;
    try {
      const vms = await this.driver.list();
      if (!this.haveSnapshot) return;
      this.reportOrphans(vms);
      for (const id of this.desired.keys()) this.kick(id, false);
      // Forget what was applied to instances that are neither wanted nor present any more.
      const present = new Set(vms.map((v) => v.id));
      let pruned = false;
      for (const id of Object.keys(this.applied)) {
        if (!this.desired.has(id) && !present.has(id)) {
          delete this.applied[id];
          pruned = true;
        }
      }
      for (const id of [...this.last.keys()]) {
        if (!this.desired.has(id) && !present.has(id)) this.last.delete(id);
      }
      if (pruned) await this.saveApplied();
    } catch (err) {
      this.log.warn({ err: errorMessage(err) }, 'resync failed');
    } finally {
      this.resyncing = false;
    }
  }

  /** Resolves when no instance is being worked on (scheduled retries may still be pending). */
  whenIdle(): Promise<void> {
    if (this.active === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  /** Stop acting: no new work, no timers; waits (up to `waitMs`) for the step in progress. VMs keep running. */
  async stop(waitMs = 10_000): Promise<void> {
    this.stopped = true;
    if (this.resyncTimer !== null) clearInterval(this.resyncTimer);
    this.resyncTimer = null;
    this.unsubscribe?.();
    this.unsubscribe = null;
    for (const w of this.work.values()) {
      if (w.timer !== null) clearTimeout(w.timer);
      w.timer = null;
    }
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([this.whenIdle(), new Promise<void>((r) => (timer = setTimeout(r, waitMs)))]);
    clearTimeout(timer);
  }

  private assertStarted(): void {
    if (!this.started) throw new Error('reconciler not started');
  }

  private workFor(id: string): Work {
    let w = this.work.get(id);
    if (w === undefined) {
      w = {
        busy: false,
        dirty: false,
        timer: null,
        timerDue: 0,
        failures: 0,
        expectingStop: false,
        crashes: 0,
        lastCrashAt: 0,
        restartNotBefore: 0,
        restartMessage: null,
      };
      this.work.set(id, w);
    }
    return w;
  }

  // Queue a pass for one instance. `immediate` (a new desired state) skips a pending retry delay.
  private kick(id: string, immediate: boolean): void {
    if (this.stopped) return;
    const w = this.workFor(id);
    if (w.timer !== null) {
      if (!immediate) return;
      clearTimeout(w.timer);
      w.timer = null;
    }
    if (w.busy) {
      w.dirty = true;
      return;
    }
    w.busy = true;
    this.active++;
    void (async () => {
      try {
        do {
          w.dirty = false;
          await this.pass(id, w);
        } while (w.dirty && !this.stopped);
      } finally {
        w.busy = false;
        this.active--;
        if (this.active === 0) {
          const waiters = this.idleWaiters;
          this.idleWaiters = [];
          for (const resolve of waiters) resolve();
        }
        if (!this.desired.has(id) && w.timer === null) this.work.delete(id);
      }
    })();
  }

  private schedule(id: string, delayMs: number): void {
    if (this.stopped) return;
    const w = this.workFor(id);
    const due = Date.now() + delayMs;
    if (w.timer !== null) {
      if (w.timerDue <= due) return;
      clearTimeout(w.timer);
    }
    w.timerDue = due;
    w.timer = setTimeout(() => {
      w.timer = null;
      this.kick(id, false);
    }, delayMs);
    w.timer.unref?.();
  }

  private async pass(id: string, w: Work): Promise<void> {
    const desired = this.desired.get(id);
    if (desired === undefined || this.stopped) return;
    try {
      await this.apply(desired, w);
      w.failures = 0;
    } catch (err) {
      w.expectingStop = false;
      w.failures++;
      const delay = backoffDelay(w.failures - 1, this.retry.initialMs, this.retry.maxMs);
      const reason = errorMessage(err);
      this.log.warn({ id, err: reason, retry_in_ms: delay, failures: w.failures }, 'reconcile failed');
      this.report(this.observation(id, 'error', { reason }));
      // Retry on the timer, unless the desired state changed meanwhile.
      if (this.desired.get(id) === desired) w.dirty = false;
      this.schedule(id, delay);
    }
  }

  private appliedFor(desired: DesiredInstance): AppliedInstance {
    let a = this.applied[desired.id];
    if (a === undefined) {
      // Nothing recorded (a new instance, or lost state): do not restart what already runs.
      a = { revision: 0, generation: 0, restart_generation: desired.restart_generation, halted_generation: null };
      this.applied[desired.id] = a;
    }
    return a;
  }

  private async apply(desired: DesiredInstance, w: Work): Promise<void> {
    const id = desired.id;
    if (desired.deleting) {
      await this.applyDelete(desired, w);
      return;
    }
    const applied = this.appliedFor(desired);
    let nicsApplied = applied.nics;
    let vm = await this.driver.inspect(id);
    if (vm === null) {
      this.report(this.observation(id, 'creating'));
      // A failed fetch fails this pass: the instance is reported as error with why, and retried with backoff.
      const imagePath = this.opts.images === undefined ? null : await this.opts.images.ensure(desired.image);
      const nics =
        this.opts.nics !== undefined && (desired.nics ?? []).length > 0
          ? withSlots(desired, await this.opts.nics.ensure(desired))
          : undefined;
      await this.driver.create(desired, { imagePath, ...(nics === undefined ? {} : { nics }) });
      vm = await this.driver.inspect(id);
      if (vm === null) throw new Error('the driver does not know the VM it just created');
      // The VM was made with these NICs.
      if (this.opts.nics !== undefined) nicsApplied = desiredNics(desired);
    }
    // NICs added or removed (hot-plugged into a running VM, recorded for the next start of a stopped one).
    if (this.opts.nics !== undefined && !sameNics(nicsApplied, desiredNics(desired))) {
      nicsApplied = await this.applyNics(desired, nicsApplied);
    }

    const userActed = desired.generation !== applied.generation;
    const restartDue = desired.restart_generation > applied.restart_generation;
    if (desired.spec.power_state === 'running') {
      if (restartDue && vm.state !== 'stopped') {
        vm = await this.stopVm(desired, vm, w);
      }
      if (vm.state !== 'running') {
        const halted =
          applied.halted_generation !== null && applied.halted_generation === desired.generation && !restartDue;
        if (!halted) {
          const wait = w.restartNotBefore - Date.now();
          if (wait > 0 && !userActed && !restartDue) {
            this.schedule(id, wait);
            return;
          }
          this.report(this.observation(id, 'starting'));
          // Taps do not survive a host reboot or a hand-deleted link: make them exist before QEMU opens them.
          if (this.opts.nics !== undefined && (desired.nics ?? []).length > 0) await this.opts.nics.ensure(desired);
          vm = await this.driver.start(id);
          w.restartNotBefore = 0;
          if (w.restartMessage !== null) {
            this.reporter.event(id, 'restarted', w.restartMessage);
            w.restartMessage = null;
          }
        }
      }
    } else {
      if (vm.state !== 'stopped') vm = await this.stopVm(desired, vm, w);
      w.restartNotBefore = 0;
      w.restartMessage = null;
    }

    const next: AppliedInstance = {
      revision: desired.revision,
      generation: desired.generation,
      restart_generation: desired.restart_generation,
      halted_generation:
        applied.halted_generation === desired.generation && !restartDue ? applied.halted_generation : null,
      ...(nicsApplied === undefined ? {} : { nics: nicsApplied }),
    };
    if (
      next.revision !== applied.revision ||
      next.generation !== applied.generation ||
      next.restart_generation !== applied.restart_generation ||
      next.halted_generation !== applied.halted_generation ||
      next.nics !== applied.nics
    ) {
      this.applied[id] = next;
      await this.saveApplied();
    }
    this.report(this.fromVm(vm));
  }

  /**
   * Bring the VM's NICs in line with the desired ones: taps for all of them
   * first, then the driver (hot-plug or record), then the taps of the NICs
   * the VM no longer has. Returns what is now applied. Throws (and the pass
   * is retried) while the guest has not released a removed NIC.
   */
  private async applyNics(desired: DesiredInstance, before: AppliedNic[] | undefined): Promise<AppliedNic[]> {
    const nics = this.opts.nics!;
    const want = desiredNics(desired);
    const taps = want.length > 0 ? withSlots(desired, await nics.ensure(desired)) : [];
    const { removed } = await this.driver.setNics(desired.id, taps);
    const wanted = new Set(want.map((n) => n.id));
    const gone = new Set([...removed, ...(before ?? []).map((n) => n.id)].filter((nicId) => !wanted.has(nicId)));
    for (const nicId of gone) await nics.removeNic(nicId);
    if (removed.length > 0 || want.length !== (before ?? []).length) {
      this.log.info({ id: desired.id, nics: want.map((n) => n.id), removed: [...gone] }, 'NICs applied');
    }
    return want;
  }

  private async stopVm(desired: DesiredInstance, vm: VmInfo, w: Work): Promise<VmInfo> {
    this.report(this.observation(desired.id, 'stopping'));
    w.expectingStop = true;
    try {
      return await this.driver.stop(desired.id, {
        force: desired.force_stop || vm.state === 'error',
        ...(this.opts.stopTimeoutMs === undefined ? {} : { timeoutMs: this.opts.stopTimeoutMs }),
      });
    } finally {
      w.expectingStop = false;
    }
  }

  private async applyDelete(desired: DesiredInstance, w: Work): Promise<void> {
    const id = desired.id;
    if (!this.destroyed.has(id)) {
      if ((await this.driver.inspect(id)) !== null) this.report(this.observation(id, 'deleting'));
      w.expectingStop = true;
      try {
        await this.driver.destroy(id);
      } finally {
        w.expectingStop = false;
      }
      if (this.opts.nics !== undefined && (desired.nics ?? []).length > 0) await this.opts.nics.remove(desired);
      this.destroyed.add(id);
      if (this.applied[id] !== undefined) {
        delete this.applied[id];
        await this.saveApplied();
      }
    }
    // Always sent, even if sent before: the control plane keeps asking until it has heard it.
    const obs: ObservedInstance = {
      id,
      state: 'deleted',
      observed_revision: desired.revision,
      observed_generation: desired.generation,
      observed_restart_generation: desired.restart_generation,
      reason: null,
      accelerator: null,
      started_at: null,
      stopped_at: this.last.get(id)?.stopped_at ?? new Date().toISOString(),
    };
    this.last.delete(id);
    this.firstBoot.delete(id);
    w.restartMessage = null;
    this.reporter.status(obs);
  }

  private async saveApplied(): Promise<void> {
    await this.store.save({ ...this.applied });
  }

  // An observation that keeps what is known of the VM and changes the state (and reason).
  private observation(
    id: string,
    state: ObservedInstance['state'],
    extra: { reason?: string | null } = {},
  ): ObservedInstance {
    const prev = this.last.get(id);
    const a = this.applied[id];
    return {
      id,
      state,
      observed_revision: a?.revision ?? 0,
      observed_generation: a?.generation ?? 0,
      observed_restart_generation: a?.restart_generation ?? 0,
      reason: extra.reason ?? null,
      accelerator: prev?.accelerator ?? null,
      started_at: prev?.started_at ?? null,
      stopped_at: prev?.stopped_at ?? null,
      ...(this.firstBoot.has(id) ? { first_boot: this.firstBoot.get(id)! } : {}),
    };
  }

  /**
   * Something saw a VM take its first-boot data or finish first boot (the VM
   * driver, the metadata service): remember it and report it with the VM's status.
   */
  noteFirstBoot(id: string, seen: Partial<FirstBoot>): void {
    if (this.stopped || !this.desired.has(id)) return;
    const before = this.firstBoot.get(id) ?? NO_FIRST_BOOT;
    const after = mergeFirstBoot(before, seen);
    if (JSON.stringify(after) === JSON.stringify(before)) return;
    this.firstBoot.set(id, after);
    const message =
      after.finished_at !== before.finished_at
        ? `first boot finished${after.result === 'failed' ? ` with a failure${after.detail === null ? '' : `: ${after.detail}`}` : ''}`
        : `the guest fetched its first-boot data from ${after.source === 'metadata' ? 'the metadata service' : 'its seed disk'}`;
    this.reporter.event(id, 'first-boot', message, { ...after });
    const last = this.last.get(id);
    if (last !== undefined && last.state !== 'deleted') this.report({ ...last, first_boot: after });
  }

  private fromVm(vm: VmInfo): ObservedInstance {
    const prev = this.last.get(vm.id);
    const base = this.observation(vm.id, vm.state, { reason: vm.reason });
    // A VM that is not running keeps the time it was first seen stopped.
    const stoppedAt = vm.state === 'running' ? null : (prev?.stopped_at ?? new Date().toISOString());
    return { ...base, accelerator: vm.accelerator, started_at: vm.started_at, stopped_at: stoppedAt };
  }

  private report(obs: ObservedInstance): void {
    if (sameObserved(this.last.get(obs.id), obs)) return;
    this.last.set(obs.id, obs);
    this.reporter.status(obs);
  }

  private onDriverEvent(event: VmDriverEvent): void {
    if (this.stopped) return;
    if (event.type === 'first-boot') {
      if (event.first_boot !== undefined) this.noteFirstBoot(event.id, event.first_boot);
      return;
    }
    if (event.type !== 'crashed' && event.type !== 'stopped') {
      this.log.debug({ id: event.id, type: event.type, message: event.message }, 'driver event');
      return;
    }
    if (this.work.get(event.id)?.expectingStop) return;
    if (!this.haveSnapshot) {
      this.earlyStops.set(event.id, event);
      return;
    }
    const desired = this.desired.get(event.id);
    if (desired === undefined || desired.deleting) {
      this.log.info({ id: event.id, type: event.type }, 'a VM outside the desired state stopped; leaving it alone');
      return;
    }
    this.handleUnsolicitedStop(desired, event);
  }

  // The VM stopped without being asked: say so, then apply its restart policy.
  private handleUnsolicitedStop(desired: DesiredInstance, event: VmDriverEvent): void {
    const id = desired.id;
    const w = this.workFor(id);
    const now = Date.now();
    const exitCode = event.exit_code ?? null;
    const reason = event.type === 'crashed' ? `crashed: ${event.message}` : event.message;
    this.report({
      ...this.observation(id, 'stopped', { reason }),
      started_at: null,
      stopped_at: new Date(now).toISOString(),
    });
    this.reporter.event(id, event.type, event.message, { exit_code: exitCode });
    // A pass in progress may be about to report what it saw before the stop: make it look again.
    if (w.busy) w.dirty = true;
    if (desired.spec.power_state !== 'running') return;

    const policy = desired.spec.restart_policy;
    const restart = policy === 'always' || (policy === 'on-failure' && exitCode !== 0);
    if (!restart) {
      // Keep it stopped until the user asks again (which bumps the generation).
      this.appliedFor(desired).halted_generation = desired.generation;
      void this.saveApplied().catch((err: unknown) =>
        this.log.error({ err: errorMessage(err) }, 'cannot save applied state'),
      );
      this.log.info({ id, policy, exit_code: exitCode }, 'VM stopped on its own; restart policy keeps it stopped');
      return;
    }
    if (now - w.lastCrashAt > this.restart.resetAfterMs) w.crashes = 0;
    w.crashes++;
    w.lastCrashAt = now;
    const delay = backoffDelay(w.crashes - 1, this.restart.initialMs, this.restart.maxMs);
    w.restartNotBefore = now + delay;
    w.restartMessage = `restarted after the VM ${event.type === 'crashed' ? 'crashed' : 'stopped'} (exit code ${exitCode ?? 'unknown'}, restart policy ${policy})`;
    this.log.info({ id, policy, exit_code: exitCode, restart_in_ms: delay }, 'VM stopped on its own; restarting');
    this.schedule(id, delay);
  }

  private async checkOrphans(): Promise<void> {
    try {
      this.reportOrphans(await this.driver.list());
    } catch (err) {
      this.log.warn({ err: errorMessage(err) }, 'cannot list VMs');
    }
  }

  private reportOrphans(vms: VmInfo[]): void {
    if (this.stopped) return;
    const present = new Set<string>();
    for (const vm of vms) {
      present.add(vm.id);
      if (this.desired.has(vm.id) || this.destroyed.has(vm.id) || this.orphansReported.has(vm.id)) continue;
      this.orphansReported.add(vm.id);
      this.log.warn({ id: vm.id, state: vm.state }, 'VM not in the desired state; leaving it alone');
      this.reporter.event(
        vm.id,
        'orphan',
        `VM ${vm.id} (${vm.state}) exists on this host but not in the desired state; left alone`,
        {
          state: vm.state,
        },
      );
    }
    for (const id of [...this.orphansReported]) if (!present.has(id)) this.orphansReported.delete(id);
  }
}
