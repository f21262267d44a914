import { pino, type Logger } from 'pino';
import type { DesiredImage, DesiredInstance, FirstBoot, ObservedInstance } from '@floe/api';
import { InstanceStatus, type ReconcilerReporter } from './instance-status.js';
import type { DesiredUpdate, KindReconciler } from './kinds.js';
import { applyNics, desiredNics, nicsForCreate, sameNics, type NicHost } from './nic-apply.js';
import { OrphanReports } from './orphans.js';
import { RestartTracker, type RestartBackoff } from './restart-policy.js';
import { memoryAppliedStore, type AppliedInstance, type AppliedStore } from './state.js';
import { WorkQueue } from './work-queue.js';
import type { VmDriver, VmDriverEvent, VmInfo, VmSize } from './drivers/vm/types.js';

/** Options of the instance reconciler; only the driver and reporter are required. */
export interface InstanceReconcilerOptions {
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
  restartBackoff?: Partial<RestartBackoff>;
  /** Passed to graceful `driver.stop`. */
  stopTimeoutMs?: number;
  /** Fetches and caches base images before `driver.create` (the agent's ImageCache); without it VMs get no image path. */
  images?: { ensure(image: DesiredImage | null): Promise<string | null> };
  /** The taps of the instances' NICs (see NicHost); without it VMs get no NICs. */
  nics?: NicHost;
}

function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

// Many passes in a row may save what was applied: one write at a time, and the ones asked for meanwhile become one.
function coalesce(write: () => Promise<void>): () => Promise<void> {
  let running: Promise<void> | null = null;
  let next: Promise<void> | null = null;
  const start = (): Promise<void> => {
    const p: Promise<void> = write().finally(() => {
      if (running === p) running = null;
    });
    running = p;
    return p;
  };
  return () => {
    if (running === null) return start();
    next ??= running
      .catch(() => undefined)
      .then(() => {
        next = null;
        return start();
      });
    return next;
  };
}

/**
 * Makes the host's VMs match the desired instances, level-triggered: every
 * pass compares what is wanted with what the driver reports and does only
 * what is missing, so repeating a pass (after a reconnect, a restart, a
 * resync) changes nothing. One key per instance on a WorkQueue: work is
 * serialized per instance, failures are retried with backoff. VMs the desired
 * state does not mention are reported once and left alone: a control plane
 * that forgot them must not kill them.
 */
export class InstanceReconciler implements KindReconciler<'instance'> {
  readonly kind = 'instance';
  private readonly driver: VmDriver;
  private readonly reporter: ReconcilerReporter;
  private readonly store: AppliedStore;
  private readonly log: Logger;
  private readonly queue: WorkQueue<string>;
  private readonly restarts: RestartTracker;
  private readonly status: InstanceStatus;
  private readonly orphans = new OrphanReports();
  private readonly saveApplied: () => Promise<void>;
  private desired = new Map<string, DesiredInstance>();
  private applied: Record<string, AppliedInstance> = {};
  /** Destroyed while the control plane may still list them as deleting. */
  private readonly destroyed = new Set<string>();
  /** The reconciler itself is stopping or destroying these VMs: their stop events are expected. */
  private readonly expectingStop = new Set<string>();
  /** Unsolicited stops seen before the first snapshot told us what is wanted. */
  private readonly earlyStops = new Map<string, VmDriverEvent>();
  private haveSnapshot = false;
  private started = false;
  private stopped = false;
  private resyncing = false;
  private resyncTimer: NodeJS.Timeout | null = null;
  private unsubscribe: (() => void) | null = null;

  constructor(private readonly opts: InstanceReconcilerOptions) {
    this.driver = opts.driver;
    this.reporter = opts.reporter;
    this.store = opts.store ?? memoryAppliedStore();
    this.log = opts.logger ?? pino({ level: 'silent' });
    this.restarts = new RestartTracker(opts.restartBackoff);
    this.status = new InstanceStatus(opts.reporter, (id) => this.applied[id]);
    this.saveApplied = coalesce(() => this.store.save({ ...this.applied }));
    this.queue = new WorkQueue({
      handler: (id) => this.reconcile(id),
      retryBackoff: { initialMs: 1000, maxMs: 60_000, ...opts.retryBackoff },
      onError: (id, err, retryInMs, failures) => {
        const reason = errorMessage(err);
        this.log.warn({ id, err: reason, retry_in_ms: retryInMs, failures }, 'reconcile failed');
        this.status.report(this.status.observation(id, 'error', { reason }));
      },
    });
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

  /** New desired instances: all of them (a snapshot), or changed ones (an older revision than known is ignored). */
  setDesired(instances: readonly DesiredInstance[], { full }: DesiredUpdate): void {
    if (!this.started) throw new Error('reconciler not started');
    if (full) this.setAll(instances);
    else for (const instance of instances) this.setOne(instance);
  }

  private setAll(instances: readonly DesiredInstance[]): void {
    const before = this.desired;
    this.desired = new Map(instances.map((i) => [i.id, i]));
    this.haveSnapshot = true;
    for (const id of before.keys()) if (!this.desired.has(id)) this.restarts.forget(id);
    for (const id of [...this.destroyed]) {
      if (this.desired.get(id)?.deleting !== true) this.destroyed.delete(id);
    }
    for (const id of this.desired.keys()) this.orphans.wanted(id);
    for (const [id, event] of this.earlyStops) {
      const desired = this.desired.get(id);
      if (desired !== undefined && !desired.deleting) this.handleUnsolicitedStop(desired, event);
    }
    this.earlyStops.clear();
    for (const id of this.desired.keys()) this.queue.add(id);
    void this.checkOrphans();
  }

  private setOne(instance: DesiredInstance): void {
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
    this.orphans.wanted(instance.id);
    this.queue.add(instance.id);
  }

  /** What the host runs now, for `hello`: every VM the driver knows, plus instances still being set up. */
  async observed(): Promise<ObservedInstance[]> {
    let vms: VmInfo[] = [];
    try {
      vms = await this.driver.list();
    } catch (err) {
      this.log.warn({ err: errorMessage(err) }, 'cannot list VMs for hello');
    }
    return this.status.merge(vms);
  }

  /** Check everything again now (also runs every `resyncIntervalMs`). */
  async resync(): Promise<void> {
    if (this.stopped || !this.started || this.resyncing) return;
    this.resyncing = true;
    try {
      const vms = await this.driver.list();
      if (!this.haveSnapshot) return;
      this.reportOrphans(vms);
      for (const id of this.desired.keys()) this.queue.add(id, { keepDelay: true });
      // Forget what was applied to instances that are neither wanted nor present any more.
      const present = new Set(vms.map((v) => v.id));
      const keep = (id: string) => this.desired.has(id) || present.has(id);
      let pruned = false;
      for (const id of Object.keys(this.applied)) {
        if (!keep(id)) {
          delete this.applied[id];
          pruned = true;
        }
      }
      this.status.prune(keep);
      if (pruned) await this.saveApplied();
    } catch (err) {
      this.log.warn({ err: errorMessage(err) }, 'resync failed');
    } finally {
      this.resyncing = false;
    }
  }

  /** Resolves when no instance is being worked on (scheduled retries may still be pending). */
  whenIdle(): Promise<void> {
    return this.queue.whenIdle();
  }

  isIdle(): boolean {
    return this.queue.size === 0;
  }

  /** Stop acting: no new work, no timers; waits (up to `waitMs`) for the step in progress. VMs keep running. */
  async stop(waitMs = 10_000): Promise<void> {
    this.stopped = true;
    if (this.resyncTimer !== null) clearInterval(this.resyncTimer);
    this.resyncTimer = null;
    this.unsubscribe?.();
    this.unsubscribe = null;
    await this.queue.stop(waitMs);
  }

  /**
   * Something saw a VM take its first-boot data or finish first boot (the VM
   * driver, the metadata service): remember it and report it with the VM's status.
   */
  noteFirstBoot(id: string, seen: Partial<FirstBoot>): void {
    if (this.stopped || !this.desired.has(id)) return;
    this.status.noteFirstBoot(id, seen);
  }

  /** One pass for one instance (the queue's handler; throws to be retried). */
  async reconcile(id: string): Promise<void> {
    const desired = this.desired.get(id);
    if (desired === undefined || this.stopped) return;
    try {
      if (desired.deleting) await this.applyDelete(desired);
      else await this.apply(desired);
    } finally {
      this.expectingStop.delete(id);
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

  private async apply(desired: DesiredInstance): Promise<void> {
    const id = desired.id;
    const applied = this.appliedFor(desired);
    let nicsApplied = applied.nics;
    let vm = await this.driver.inspect(id);
    if (vm === null) {
      this.status.report(this.status.observation(id, 'creating'));
      // A failed fetch fails this pass: the instance is reported as error with why, and retried with backoff.
      const imagePath = this.opts.images === undefined ? null : await this.opts.images.ensure(desired.image);
      const nics = await nicsForCreate(this.opts.nics, desired);
      await this.driver.create(desired, { imagePath, ...(nics === undefined ? {} : { nics }) });
      vm = await this.driver.inspect(id);
      if (vm === null) throw new Error('the driver does not know the VM it just created');
      // The VM was made with these NICs.
      if (this.opts.nics !== undefined) nicsApplied = desiredNics(desired);
    }
    // NICs added or removed (hot-plugged into a running VM, recorded for the next start of a stopped one).
    if (this.opts.nics !== undefined && !sameNics(nicsApplied, desiredNics(desired))) {
      nicsApplied = await applyNics(this.driver, this.opts.nics, desired, nicsApplied, this.log);
    }

    const userActed = desired.generation !== applied.generation;
    const restartDue = desired.restart_generation > applied.restart_generation;
    if (desired.spec.power_state === 'running') {
      if (restartDue && vm.state !== 'stopped') {
        vm = await this.stopVm(desired, vm);
      }
      if (vm.state !== 'running') {
        const halted =
          applied.halted_generation !== null && applied.halted_generation === desired.generation && !restartDue;
        if (!halted) {
          const wait = this.restarts.waitMs(id);
          if (wait > 0 && !userActed && !restartDue) {
            this.queue.addAfter(id, wait);
            return;
          }
          // Every start boots with the size asked for, whatever this agent saw while the VM was stopped.
          await this.driver.resize(id, sizeOf(desired));
          this.status.report(this.status.observation(id, 'starting'));
          // Taps do not survive a host reboot or a hand-deleted link: make them exist before QEMU opens them.
          if (this.opts.nics !== undefined && (desired.nics ?? []).length > 0) await this.opts.nics.ensure(desired);
          vm = await this.driver.start(id);
          const restarted = this.restarts.started(id);
          if (restarted !== null) this.reporter.event(id, 'restarted', restarted);
        }
      }
    } else {
      if (vm.state !== 'stopped') vm = await this.stopVm(desired, vm);
      this.restarts.cancel(id);
      // The size the next start boots with (and the disk grown now); only a stopped VM is resized.
      if (desired.revision !== applied.revision && vm.state === 'stopped')
        await this.driver.resize(id, sizeOf(desired));
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
    this.status.report(this.status.fromVm(vm));
  }

  private async stopVm(desired: DesiredInstance, vm: VmInfo): Promise<VmInfo> {
    this.status.report(this.status.observation(desired.id, 'stopping'));
    this.expectingStop.add(desired.id);
    try {
      return await this.driver.stop(desired.id, {
        force: desired.force_stop || vm.state === 'error',
        ...(this.opts.stopTimeoutMs === undefined ? {} : { timeoutMs: this.opts.stopTimeoutMs }),
      });
    } finally {
      this.expectingStop.delete(desired.id);
    }
  }

  private async applyDelete(desired: DesiredInstance): Promise<void> {
    const id = desired.id;
    if (!this.destroyed.has(id)) {
      if ((await this.driver.inspect(id)) !== null) this.status.report(this.status.observation(id, 'deleting'));
      this.expectingStop.add(id);
      try {
        await this.driver.destroy(id);
      } finally {
        this.expectingStop.delete(id);
      }
      if (this.opts.nics !== undefined && (desired.nics ?? []).length > 0) await this.opts.nics.remove(desired);
      this.destroyed.add(id);
      if (this.applied[id] !== undefined) {
        delete this.applied[id];
        await this.saveApplied();
      }
    }
    this.restarts.cancel(id);
    this.status.reportDeleted(id, desired);
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
    if (this.expectingStop.has(event.id)) return;
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
    const now = Date.now();
    const exitCode = event.exit_code ?? null;
    this.status.reportStopped(id, event, now);
    // A pass in progress may be about to report what it saw before the stop: make it look again.
    if (this.queue.isRunning(id)) this.queue.add(id, { keepDelay: true });
    if (desired.spec.power_state !== 'running') return;

    const policy = desired.spec.restart_policy;
    const type = event.type === 'crashed' ? 'crashed' : 'stopped';
    const decision = this.restarts.stopped(id, { type, exitCode, policy }, now);
    if (!decision.restart) {
      // Keep it stopped until the user asks again (which bumps the generation).
      this.appliedFor(desired).halted_generation = desired.generation;
      void this.saveApplied().catch((err: unknown) =>
        this.log.error({ err: errorMessage(err) }, 'cannot save applied state'),
      );
      this.log.info({ id, policy, exit_code: exitCode }, 'VM stopped on its own; restart policy keeps it stopped');
      return;
    }
    this.log.info(
      { id, policy, exit_code: exitCode, restart_in_ms: decision.delayMs },
      'VM stopped on its own; restarting',
    );
    this.queue.addAfter(id, decision.delayMs);
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
    const known = (id: string) => this.desired.has(id) || this.destroyed.has(id);
    for (const orphan of this.orphans.check(vms, known)) {
      this.log.warn({ id: orphan.id, state: orphan.data.state }, 'VM not in the desired state; leaving it alone');
      this.reporter.event(orphan.id, 'orphan', orphan.message, orphan.data);
    }
  }
}

/** The size a desired instance boots with. */
function sizeOf(desired: DesiredInstance): VmSize {
  return { vcpus: desired.spec.vcpus, memory_mib: desired.spec.memory_mib, disk_gib: desired.spec.disk_gib };
}
