import {
  mergeFirstBoot,
  NO_FIRST_BOOT,
  type FirstBoot,
  type ObservedInstance,
  type VmDriverEvent,
  type VmInfo,
} from '@floe/api';
import type { AppliedInstance } from './state.js';

/** Where the instance reconciler sends what it observes (the agent link, or a test recorder). */
export interface ReconcilerReporter {
  status(instance: ObservedInstance): void;
  event(instanceId: string, event: string, message: string, data?: Record<string, unknown>): void;
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
 * What the agent last reported of each instance, and what it saw of each
 * VM's first boot since it started (the control plane keeps that for good):
 * builds observations that keep what is known and reports only changes.
 */
export class InstanceStatus {
  private readonly last = new Map<string, ObservedInstance>();
  private readonly firstBoot = new Map<string, FirstBoot>();

  constructor(
    private readonly reporter: ReconcilerReporter,
    /** What was applied to an instance (its observed revision and generations). */
    private readonly applied: (id: string) => AppliedInstance | undefined,
  ) {}

  /** The last observation reported of an instance. */
  lastOf(id: string): ObservedInstance | undefined {
    return this.last.get(id);
  }

  /** Everything reported and not deleted, for `hello`: the VMs the driver lists, then instances still being set up. */
  merge(vms: readonly VmInfo[]): ObservedInstance[] {
    const out = new Map<string, ObservedInstance>();
    for (const vm of vms) out.set(vm.id, this.fromVm(vm));
    for (const [id, obs] of this.last) {
      if (!out.has(id) && obs.state !== 'deleted') out.set(id, obs);
    }
    for (const [id, obs] of out) this.last.set(id, obs);
    return [...out.values()];
  }

  /** Forget the instances `keep` says no to (neither wanted nor present any more). */
  prune(keep: (id: string) => boolean): void {
    for (const id of [...this.last.keys()]) if (!keep(id)) this.last.delete(id);
  }

  /** An observation that keeps what is known of the VM and changes the state (and reason). */
  observation(id: string, state: ObservedInstance['state'], extra: { reason?: string | null } = {}): ObservedInstance {
    const prev = this.last.get(id);
    const a = this.applied(id);
    const firstBoot = this.firstBoot.get(id);
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
      ...(firstBoot === undefined ? {} : { first_boot: firstBoot }),
    };
  }

  /** What the driver says of a VM, as an observation. */
  fromVm(vm: VmInfo): ObservedInstance {
    const prev = this.last.get(vm.id);
    const base = this.observation(vm.id, vm.state, { reason: vm.reason });
    // A VM that is not running keeps the time it was first seen stopped.
    const stoppedAt = vm.state === 'running' ? null : (prev?.stopped_at ?? new Date().toISOString());
    return { ...base, accelerator: vm.accelerator, started_at: vm.started_at, stopped_at: stoppedAt };
  }

  /** Report an observation, unless it is the one reported last. */
  report(obs: ObservedInstance): void {
    if (sameObserved(this.last.get(obs.id), obs)) return;
    this.last.set(obs.id, obs);
    this.reporter.status(obs);
  }

  /** Report the state and the time of a VM that stopped on its own. */
  reportStopped(id: string, event: VmDriverEvent, now: number): void {
    const reason = event.type === 'crashed' ? `crashed: ${event.message}` : event.message;
    this.report({
      ...this.observation(id, 'stopped', { reason }),
      started_at: null,
      stopped_at: new Date(now).toISOString(),
    });
    this.reporter.event(id, event.type, event.message, { exit_code: event.exit_code ?? null });
  }

  /** The instance is deleted: say so (every time asked: the control plane keeps asking until it heard it), then forget it. */
  reportDeleted(id: string, desired: Pick<AppliedInstance, 'revision' | 'generation' | 'restart_generation'>): void {
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
    this.reporter.status(obs);
  }

  /**
   * Something saw a VM take its first-boot data or finish first boot (the VM
   * driver, the metadata service): remember it and report it with the VM's status.
   */
  noteFirstBoot(id: string, seen: Partial<FirstBoot>): void {
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
}
