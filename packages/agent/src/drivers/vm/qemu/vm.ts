import { stat } from 'node:fs/promises';
import type { VmDriverEvent, VmInfo } from '../types.js';
import type { QemuAccelerator } from './argv.js';
import type { LogFollower } from './console-log.js';
import { QemuMonitor } from './monitor.js';
import { connectWithRetry, type QmpClient } from './qmp.js';
import { exists, VmRuntimeDir, type VmRecord } from './runtime.js';

/** After QMP did not answer, observe() leaves it alone this long (another client may hold it). */
const ATTACH_RETRY_MS = 30_000;

/** What a VM needs from the driver that holds it. */
export interface VmHost {
  /** The accelerator new starts use (and the one assumed when a record does not say). */
  readonly accelerator: QemuAccelerator;
  /** True once the driver closed: VMs run on unwatched. */
  isClosed(): boolean;
  emit(event: VmDriverEvent): void;
}

/** What runs for one VM, as observe() found it. */
export interface Observation {
  record: VmRecord;
  running: boolean;
  pid: number | null;
  started_at: string | null;
  accelerator: QemuAccelerator;
}

/**
 * One VM of the QEMU driver: its runtime directory and everything the driver
 * holds in memory for it (QMP monitor, console session, log followers, the
 * lock that serializes its operations, why it last stopped).
 */
export class QemuVm extends VmRuntimeDir {
  monitor: QemuMonitor | null = null;
  /** The attached console session, if any (QEMU serves one client at a time). */
  console: { close(reason: string): void } | null = null;
  /** Attached graphical console (VNC) sessions; QEMU's VNC server takes several clients at once. */
  readonly displays = new Set<{ close(reason: string): void }>();
  readonly followers = new Set<LogFollower>();
  /** Why the VM last stopped on its own; cleared by start. */
  reason: string | null = null;
  /** The disk size create() just made or checked, so the next start need not run `qemu-img info` again; used once. */
  sizedDisk: number | null = null;
  private lock: Promise<unknown> | null = null;
  private attaching: Promise<QemuMonitor | null> | null = null;
  /** When attaching to QMP last failed: observe() does not wait for a busy socket again right away. */
  private attachFailedAt: number | null = null;

  constructor(
    id: string,
    stateDir: string,
    private readonly host: VmHost,
  ) {
    super(id, stateDir);
  }

  /** True while an operation holds the VM's lock. */
  get busy(): boolean {
    return this.lock !== null;
  }

  /** True when nothing of the VM is held in memory: the driver may forget it. */
  get idle(): boolean {
    return (
      this.lock === null &&
      this.monitor === null &&
      this.attaching === null &&
      this.console === null &&
      this.displays.size === 0 &&
      this.followers.size === 0 &&
      this.reason === null &&
      this.sizedDisk === null
    );
  }

  /** One operation per VM at a time; inspect() does not wait but leaves QMP alone meanwhile. */
  async locked<T>(fn: () => Promise<T>): Promise<T> {
    while (this.lock !== null) await this.lock.catch(() => {});
    const p = fn();
    this.lock = p;
    try {
      return await p;
    } finally {
      if (this.lock === p) this.lock = null;
    }
  }

  /**
   * What runs for the VM. With `adopt`, a running VM without a QMP connection
   * gets one (re-adoption after an agent restart), and a VM that floe believed
   * running but that died unwatched is reported once (`crashed`, or `stopped`
   * when QEMU exited cleanly and removed its pidfile).
   */
  async observe(opts: { adopt: boolean }): Promise<Observation | null> {
    const record = await this.readRecord();
    if (record === null) return null;
    const runRecord = await this.readRun();
    const pid = this.pidFromFile() ?? runRecord?.pid ?? null;
    const fallbackAccel = record.accelerator ?? this.host.accelerator;
    if (pid !== null && this.owns(pid)) {
      let startedAt = runRecord?.pid === pid ? runRecord.started_at : null;
      const accelerator = runRecord?.pid === pid ? runRecord.accelerator : fallbackAccel;
      if (startedAt === null) {
        // QEMU runs but floe never recorded it (the agent died right after launching it): adopt it.
        startedAt =
          (await stat(this.path('pidfile')).catch(() => null))?.mtime.toISOString() ?? new Date().toISOString();
        if (opts.adopt) await this.writeRun({ pid, started_at: startedAt, accelerator });
      }
      const failedAt = this.attachFailedAt;
      if (opts.adopt && this.monitor === null && (failedAt === null || Date.now() - failedAt > ATTACH_RETRY_MS)) {
        const monitor = await this.attach(pid);
        if (monitor === null && !this.owns(pid)) return this.observe(opts);
      }
      return { record, running: true, pid, started_at: startedAt, accelerator };
    }
    if (opts.adopt && runRecord !== null && this.monitor === null)
      this.reportUnwatchedExit(runRecord.pid, await exists(this.path('pidfile')));
    return { record, running: false, pid: null, started_at: null, accelerator: fallbackAccel };
  }

  info(seen: Observation): VmInfo {
    return {
      id: this.id,
      state: seen.running ? 'running' : 'stopped',
      reason: seen.running ? null : this.reason,
      accelerator: seen.accelerator,
      started_at: seen.running ? seen.started_at : null,
      pid: seen.running ? seen.pid : null,
    };
  }

  /** Attach a QMP connection to the VM's QEMU `pid`, which runs without one (found after a restart). */
  attach(pid: number): Promise<QemuMonitor | null> {
    if (this.attaching !== null) return this.attaching;
    const p = (async () => {
      let client: QmpClient;
      try {
        client = await connectWithRetry(this.path('qmp'), { attempts: 2, delayMs: 100, timeoutMs: 2000 });
      } catch {
        this.attachFailedAt = Date.now();
        return null;
      }
      this.attachFailedAt = null;
      if (this.host.isClosed() || this.monitor !== null) {
        client.close();
        return this.monitor;
      }
      const monitor = this.watch(pid, client, true);
      try {
        const { status } = await client.execute('query-status', undefined, { timeoutMs: 5000 });
        if (status === 'internal-error') await monitor.failGuest();
      } catch {
        // Events still arrive; a status we cannot read is not a reason to give up on the VM.
      }
      return monitor;
    })();
    this.attaching = p;
    void p.finally(() => {
      if (this.attaching === p) this.attaching = null;
    });
    return p;
  }

  /** Hear the events of QEMU `pid` over `client`. `adopted`: found running after a restart. */
  watch(pid: number, client: QmpClient, adopted: boolean): QemuMonitor {
    const monitor = new QemuMonitor(this, pid, client, {
      accelerator: this.host.accelerator,
      emit: (event) => this.host.emit(event),
      closed: (m) => void this.monitorClosed(m),
    });
    if (this.host.isClosed()) {
      // An operation finished after close(): the VM runs on, unwatched, like every other.
      monitor.close();
      return monitor;
    }
    this.monitor = monitor;
    monitor.listen(adopted);
    return monitor;
  }

  /** Stop watching the VM without reporting anything (floe ends it, or the driver closes). */
  dropMonitor(): void {
    const monitor = this.monitor;
    if (monitor === null) return;
    this.monitor = null;
    monitor.close();
  }

  /** Wait for pending attachments (the driver is closing). */
  async settle(): Promise<void> {
    await this.attaching?.catch(() => null);
  }

  /** Close the serial console session and every graphical console session. */
  closeConsole(reason: string): void {
    this.console?.close(reason);
    for (const display of [...this.displays]) display.close(reason);
  }

  stopFollowers(): void {
    for (const f of this.followers) f.stop();
    this.followers.clear();
  }

  // The QMP connection ended: QEMU exited (report it unless floe asked for it), or only the connection broke.
  private async monitorClosed(monitor: QemuMonitor): Promise<void> {
    if (monitor.quiet || this.host.isClosed()) {
      if (this.monitor === monitor) this.monitor = null;
      return;
    }
    const gone = await this.waitGone(monitor.pid, 5000);
    if (this.monitor === monitor) this.monitor = null;
    if (!gone || monitor.quiet || this.host.isClosed()) return;
    if (!this.takeRunToken(monitor.pid)) return;
    const event = monitor.exitEvent();
    this.reason = event.type === 'crashed' ? event.message : null;
    await this.clearRuntime().catch(() => {});
    this.closeConsole('VM stopped');
    this.host.emit(event);
  }

  private reportUnwatchedExit(pid: number, pidfileLeft: boolean): void {
    if (!this.takeRunToken(pid)) return;
    if (pidfileLeft) {
      const message = 'QEMU died while the agent was not watching';
      this.reason = message;
      this.host.emit({ id: this.id, type: 'crashed', message, exit_code: null });
    } else {
      this.host.emit({
        id: this.id,
        type: 'stopped',
        message: 'the VM shut down while the agent was not watching',
        exit_code: 0,
      });
    }
  }
}
