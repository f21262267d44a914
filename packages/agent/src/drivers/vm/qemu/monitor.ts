import type { VmDriverEvent } from '../types.js';
import type { QemuAccelerator } from './argv.js';
import type { QmpClient, QmpEvent } from './qmp.js';
import type { VmRuntimeDir } from './runtime.js';
import { watchSeedReads } from './seed-watch.js';

/** How often a started VM's seed drive is looked at until the guest reads it, and for how long at most. */
const SEED_WATCH_INTERVAL_MS = 1000;
const SEED_WATCH_MAX_MS = 30 * 60_000;

/** Said when KVM fails a guest: what happened and how to get going anyway. */
export const KVM_FAILURE_MESSAGE =
  'the guest stopped with a KVM internal error (emulation failure): KVM on this host cannot run this guest ' +
  '(often nested virtualization); start floe-agent with FLOE_ACCEL=tcg (or --accel tcg) to use software emulation';

/** The SHUTDOWN event's data. */
export interface ShutdownSeen {
  guest: boolean;
  reason: string;
}

/** How a QEMU shutdown reason is reported. Pure. */
function describeShutdown(reason: string): { type: 'stopped' | 'crashed'; message: string } {
  switch (reason) {
    case 'guest-shutdown':
      return { type: 'stopped', message: 'guest powered off' };
    case 'guest-reset':
      return { type: 'stopped', message: 'guest rebooted and QEMU exited' };
    case 'guest-panic':
      return { type: 'crashed', message: 'guest kernel panicked' };
    case 'host-signal':
      return { type: 'stopped', message: 'QEMU was terminated by a signal on the host' };
    case 'host-qmp-quit':
      return { type: 'stopped', message: 'QEMU was told to quit' };
    default:
      return { type: 'stopped', message: `VM shut down (${reason})` };
  }
}

/**
 * The event for a QEMU that exited on its own: what floe killed it for
 * (`fatal`), else what its SHUTDOWN event said, else a crash. Pure.
 */
export function exitEvent(id: string, fatal: string | null, shutdown: ShutdownSeen | null): VmDriverEvent {
  if (fatal !== null) return { id, type: 'crashed', message: fatal, exit_code: null };
  if (shutdown !== null) {
    const d = describeShutdown(shutdown.reason);
    return { id, type: d.type, message: d.message, exit_code: d.type === 'stopped' ? 0 : null };
  }
  return {
    id,
    type: 'crashed',
    message: 'QEMU exited without shutting the VM down (killed or crashed)',
    exit_code: null,
  };
}

/** What a monitor needs from its driver. */
export interface MonitorHooks {
  /** The accelerator assumed when run.json does not say. */
  accelerator: QemuAccelerator;
  emit(event: VmDriverEvent): void;
  /** The QMP connection ended (QEMU exited, or only the connection broke). */
  closed(monitor: QemuMonitor): void;
}

/**
 * The QMP connection to one running VM, through which its events arrive:
 * SHUTDOWN (kept for the exit report), STOP (a guest KVM cannot run is killed
 * and reported), RESET (a `log` event), and the guest's first read of its
 * seed disk (a `first-boot` event).
 */
export class QemuMonitor {
  /** The SHUTDOWN event's data, once seen. */
  shutdown: ShutdownSeen | null = null;
  /** Set when floe itself ends the VM (stop, destroy, a KVM failure it handles) or closes the connection: no event. */
  quiet = false;
  /** Why floe killed the VM on its own, reported as `crashed`. */
  fatal: string | null = null;

  constructor(
    readonly runtime: VmRuntimeDir,
    readonly pid: number,
    readonly client: QmpClient,
    private readonly hooks: MonitorHooks,
  ) {}

  get id(): string {
    return this.runtime.id;
  }

  /** Start listening. `adopted`: a VM found running after a restart, whose seed may have been read long ago. */
  listen(adopted: boolean): void {
    const { client, id } = this;
    client.onEvent('SHUTDOWN', (e) => {
      this.shutdown = {
        guest: e.data.guest === true,
        reason: typeof e.data.reason === 'string' ? e.data.reason : 'unknown',
      };
    });
    client.onEvent('STOP', () => {
      // A guest that KVM cannot run pauses in `internal-error`; QEMU would keep it there forever.
      void client.execute('query-status', undefined, { timeoutMs: 5000 }).then(
        ({ status }) => (status === 'internal-error' ? this.failGuest() : undefined),
        () => {},
      );
    });
    client.onEvent('RESET', (e: QmpEvent) => {
      const reason = typeof e.data.reason === 'string' ? e.data.reason : 'unknown';
      if (!this.quiet) this.hooks.emit({ id, type: 'log', message: `VM reset (${reason})` });
    });
    client.onClose(() => this.hooks.closed(this));
    watchSeedReads(client, {
      intervalMs: SEED_WATCH_INTERVAL_MS,
      maxMs: SEED_WATCH_MAX_MS,
      requireUnreadFirst: adopted,
      onRead: (at) => {
        if (!this.quiet)
          this.hooks.emit({
            id,
            type: 'first-boot',
            message: 'the guest read its seed disk',
            first_boot: { source: 'config-drive', fetched_at: at },
          });
      },
    });
  }

  /** The guest is stuck in `internal-error`: kill QEMU, to be reported as crashed with the reason. */
  async failGuest(): Promise<void> {
    const accel = (await this.runtime.readRun())?.accelerator ?? this.hooks.accelerator;
    this.fatal = accel === 'kvm' ? KVM_FAILURE_MESSAGE : 'the guest stopped with an internal error';
    if (this.runtime.owns(this.pid)) process.kill(this.pid, 'SIGKILL');
  }

  /** The event to report now that QEMU exited on its own. */
  exitEvent(): VmDriverEvent {
    return exitEvent(this.id, this.fatal, this.shutdown);
  }

  /** Stop listening without reporting anything; the VM is not affected. */
  close(): void {
    this.quiet = true;
    this.client.close();
  }
}
