import { mkdir, readdir, rm } from 'node:fs/promises';
import { resolve } from 'node:path';
import { FloeError, NAME_PATTERN, type DesiredInstance, type VmStats } from '@floe/api';
import { seedFiles, writeSeedIso } from '../seed.js';
import type {
  ConsoleStream,
  SetNicsResult,
  VmCreateContext,
  VmDriver,
  VmDriverEvent,
  VmInfo,
  VmNic,
} from '../types.js';
import { checkNics, INSTANCE_ID_RE, QEMU_BINARY, type QemuAccelerator, type QemuDiskCache } from './argv.js';
import { openSerialConsole, openVncConsole } from './console.js';
import { DEFAULT_LOG_MAX_BYTES, LogFollower, readLogTail } from './console-log.js';
import { ensureOverlay, growDisk, type DiskOptions } from './disk.js';
import { planNics, removedNics, slotted } from './hotplug-plan.js';
import { applyNicPlan, peripherals, recordNics } from './hotplug.js';
import { probeDiskCache } from './odirect.js';
import { launchQemu, terminateQemu } from './process.js';
import { exists, type VmRecord } from './runtime.js';
import { guestNetCounters, processCounters, readTapCounters, vmStats } from './stats.js';
import { QemuVm, type Observation, type VmHost } from './vm.js';

/** Options of the QEMU driver. */
export interface QemuDriverOptions {
  /** Where each VM gets its runtime directory `<stateDir>/<id>/` (disk, seed, sockets, console log). */
  stateDir: string;
  /** How guests run: `kvm` (hardware) or `tcg` (software emulation). */
  accelerator: QemuAccelerator;
  /** QEMU binary; default qemu-system-x86_64 from PATH. */
  qemuBinary?: string;
  /** qemu-img binary; default qemu-img from PATH. */
  qemuImg?: string;
  /** How long a graceful stop waits for the guest to power off before QEMU is told to quit; default 30 s. */
  stopTimeoutMs?: number;
  /** A console log longer than this is cut to its tail when the VM starts; default 1 MiB. */
  logMaxBytes?: number;
  /** Disk cache mode; default `none` when the state directory's file system supports O_DIRECT, else `writeback`. */
  diskCache?: QemuDiskCache;
  /**
   * How long a NIC hot-remove waits for the guest to release the device;
   * default 60 s (Linux waits 5 s after the PCIe attention button, and TCG is slow).
   */
  nicUnplugTimeoutMs?: number;
}

const GIB = 1024 ** 3;
const NAME_RE = new RegExp(NAME_PATTERN);

/** Whether a VM gets a seed disk (`spec.config_drive`; records of control planes without the field mean true). */
function wantsConfigDrive(vm: DesiredInstance): boolean {
  return vm.spec.config_drive !== false;
}

function notFound(id: string): FloeError {
  return new FloeError('instance_not_found', `no VM ${id} on this host`, { id });
}

function checkId(id: string): string {
  if (!INSTANCE_ID_RE.test(id))
    throw new FloeError('validation_failed', `instance id ${JSON.stringify(id)} is malformed`, { field: 'id' });
  return id;
}

function notRunning(name: string, id: string): FloeError {
  return new FloeError('invalid_state', `VM ${name} is not running`, { id });
}

/**
 * Runs VMs as detached QEMU processes (`-daemonize` + pidfile), one runtime
 * directory per VM under `stateDir`. The processes outlive the driver and the
 * agent; a new driver over the same directory finds them through their
 * pidfiles, reconnects to their QMP sockets and hears their events again.
 * Stop events are only emitted for stops nobody asked for: `stopped` when
 * the guest powered off, `crashed` when QEMU died (or KVM failed the guest);
 * a guest reset is a `log` event. Each VM is one `QemuVm` (runtime directory,
 * monitor, console, lock); the driver holds them by id.
 *
 * @example
 * const driver = new QemuDriver({ stateDir: '/var/lib/floe/agent/vms', accelerator: 'tcg' });
 * await driver.create(vm, { imagePath: '/var/lib/floe/agent/images/<sha256>.qcow2' });
 * await driver.start(vm.id);
 */
export class QemuDriver implements VmDriver {
  readonly name = 'qemu';
  private readonly stateDir: string;
  private readonly qemu: string;
  private readonly stopTimeoutMs: number;
  private readonly logMaxBytes: number;
  private readonly nicUnplugTimeoutMs: number;
  private diskCache: Promise<QemuDiskCache> | null;
  private readonly listeners = new Set<(event: VmDriverEvent) => void>();
  private readonly vms = new Map<string, QemuVm>();
  private readonly host: VmHost;
  private closed = false;
  private seedVendorData: ((vm: DesiredInstance) => string | null) | null = null;

  constructor(private readonly opts: QemuDriverOptions) {
    if (opts.accelerator !== 'kvm' && opts.accelerator !== 'tcg')
      throw new Error(`unknown accelerator ${JSON.stringify(opts.accelerator)}`);
    // QEMU daemonizes into `/`: every path it gets must be absolute.
    this.stateDir = resolve(opts.stateDir);
    this.qemu = opts.qemuBinary ?? QEMU_BINARY;
    this.stopTimeoutMs = opts.stopTimeoutMs ?? 30_000;
    this.logMaxBytes = opts.logMaxBytes ?? DEFAULT_LOG_MAX_BYTES;
    this.diskCache = opts.diskCache === undefined ? null : Promise.resolve(opts.diskCache);
    this.nicUnplugTimeoutMs = opts.nicUnplugTimeoutMs ?? 60_000;
    this.host = {
      accelerator: opts.accelerator,
      isClosed: () => this.closed,
      emit: (event) => this.emit(event),
    };
  }

  /** The accelerator new starts use. */
  get accelerator(): QemuAccelerator {
    return this.opts.accelerator;
  }

  /** The runtime directory of a VM. */
  vmDir(id: string): string {
    return this.vm(checkId(id)).dir;
  }

  async list(): Promise<VmInfo[]> {
    this.checkOpen();
    let entries: string[];
    try {
      entries = await readdir(this.stateDir);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw err;
    }
    const found = await Promise.all(entries.filter((e) => INSTANCE_ID_RE.test(e)).map((id) => this.inspect(id)));
    return found.filter((v): v is VmInfo => v !== null);
  }

  async inspect(id: string): Promise<VmInfo | null> {
    this.checkOpen();
    if (!INSTANCE_ID_RE.test(id)) return null;
    const vm = this.vm(id);
    const seen = await vm.observe({ adopt: !vm.busy });
    if (seen === null) {
      if (vm.idle) this.vms.delete(id);
      return null;
    }
    return vm.info(seen);
  }

  async create(vm: DesiredInstance, ctx?: VmCreateContext): Promise<void> {
    this.checkOpen();
    checkId(vm.id);
    if (!NAME_RE.test(vm.name))
      throw new FloeError('validation_failed', `instance name ${JSON.stringify(vm.name)} is not a DNS label`, {
        field: 'name',
      });
    const qvm = this.vm(vm.id);
    await qvm.locked(async () => {
      const fresh = !(await exists(qvm.dir));
      try {
        await mkdir(qvm.dir, { recursive: true, mode: 0o700 });
        const previous = await qvm.readRecord();
        qvm.sizedDisk = null;
        // Disk and seed are independent files: make them side by side; both finish before any cleanup.
        const steps = await Promise.allSettled([this.prepareDisk(qvm, vm, ctx), this.prepareSeed(qvm, vm)]);
        for (const step of steps) if (step.status === 'rejected') throw step.reason;
        const nics = ctx?.nics ?? previous?.nics ?? [];
        // Written last: a directory without vm.json is a VM that was never fully created.
        await qvm.writeRecord({
          id: vm.id,
          name: vm.name,
          project: vm.project,
          vcpus: vm.spec.vcpus,
          memory_mib: vm.spec.memory_mib,
          disk_gib: vm.spec.disk_gib,
          image_path: ctx?.imagePath ?? previous?.image_path ?? null,
          created_at: previous?.created_at ?? new Date().toISOString(),
          accelerator: previous?.accelerator ?? null,
          ...(nics.length > 0 ? { nics } : {}),
          ...(wantsConfigDrive(vm) ? {} : { config_drive: false }),
        } satisfies VmRecord);
      } catch (err) {
        qvm.sizedDisk = null;
        if (fresh) await rm(qvm.dir, { recursive: true, force: true });
        throw err;
      }
    });
  }

  // The disk: an overlay over the image when there is none yet, else grown to the wanted size (unless running).
  private async prepareDisk(qvm: QemuVm, vm: DesiredInstance, ctx: VmCreateContext | undefined): Promise<void> {
    const disk = qvm.path('disk');
    const size = vm.spec.disk_gib * GIB;
    if (!(await exists(disk))) {
      const imagePath = ctx?.imagePath ?? null;
      if (imagePath === null) {
        throw new FloeError(
          'invalid_state',
          `image ${vm.image?.name ?? vm.spec.image} has no file; import it with floe image import`,
          { image: vm.image?.id ?? vm.spec.image },
        );
      }
      qvm.sizedDisk = (await ensureOverlay(resolve(imagePath), disk, size, this.diskOpts())).virtualSize;
    } else if (!(await qvm.observe({ adopt: false }))?.running) {
      qvm.sizedDisk = (await growDisk(disk, size, this.diskOpts())).virtualSize;
    }
  }

  private async prepareSeed(qvm: QemuVm, vm: DesiredInstance): Promise<void> {
    if (wantsConfigDrive(vm) && !(await exists(qvm.path('seed')))) {
      const vendorData = this.seedVendorData?.(vm) ?? null;
      await writeSeedIso(qvm.dir, seedFiles(vm, vendorData === null ? {} : { vendorData }));
    }
  }

  async start(id: string): Promise<VmInfo> {
    this.checkOpen();
    const vm = this.vm(checkId(id));
    return vm.locked(async () => {
      // What create() noted about the disk holds for the next start only.
      const sizedBytes = vm.sizedDisk;
      vm.sizedDisk = null;
      const seen = await vm.observe({ adopt: true });
      if (seen === null) throw notFound(id);
      if (seen.running) return vm.info(seen);
      const { accelerator } = this.opts;
      const { pid, startedAt, client } = await launchQemu(vm, seen.record, {
        qemu: this.qemu,
        accelerator,
        diskCache: await this.cacheMode(),
        logMaxBytes: this.logMaxBytes,
        disk: this.diskOpts(),
        sizedBytes,
      });
      vm.watch(pid, client, false);
      vm.reason = null;
      return { id, state: 'running', reason: null, accelerator, started_at: startedAt, pid };
    });
  }

  async stop(id: string, opts: { force?: boolean; timeoutMs?: number } = {}): Promise<VmInfo> {
    this.checkOpen();
    const vm = this.vm(checkId(id));
    return vm.locked(async () => {
      const seen = await vm.observe({ adopt: false });
      if (seen === null) throw notFound(id);
      if (seen.running && seen.pid !== null)
        await terminateQemu(vm, seen.pid, opts.force === true, opts.timeoutMs ?? this.stopTimeoutMs);
      await vm.clearRuntime();
      vm.reason = null;
      return vm.info((await vm.observe({ adopt: false })) ?? seen);
    });
  }

  async destroy(id: string): Promise<void> {
    this.checkOpen();
    if (!INSTANCE_ID_RE.test(id)) return;
    const vm = this.vm(id);
    await vm.locked(async () => {
      if (!(await exists(vm.dir))) return;
      vm.closeConsole('VM deleted');
      vm.stopFollowers();
      const pid = vm.pidFromFile() ?? (await vm.readRun())?.pid ?? null;
      if (pid !== null && vm.owns(pid)) await terminateQemu(vm, pid, true, 0);
      vm.dropMonitor();
      await rm(vm.dir, { recursive: true, force: true });
      vm.reason = null;
      vm.sizedDisk = null;
    });
    if (this.vms.get(id) === vm && vm.idle) this.vms.delete(id);
  }

  /** The console history; without `tailBytes`, its last `logMaxBytes` (the log is only cut when the VM starts). */
  async readLog(id: string, opts: { tailBytes?: number } = {}): Promise<Buffer> {
    this.checkOpen();
    const vm = this.vm(checkId(id));
    if (!(await exists(vm.path('record')))) throw notFound(id);
    return readLogTail(vm.path('console'), Math.max(0, opts.tailBytes ?? this.logMaxBytes));
  }

  async followLog(id: string, listener: (data: Buffer) => void): Promise<() => void> {
    this.checkOpen();
    const vm = this.vm(checkId(id));
    if (!(await exists(vm.path('record')))) throw notFound(id);
    const follower = await LogFollower.start(vm.path('console'), listener);
    vm.followers.add(follower);
    return () => {
      follower.stop();
      vm.followers.delete(follower);
    };
  }

  /** Attach to the serial console; a second session on the same VM is refused (see `openSerialConsole`). */
  async openConsole(id: string): Promise<ConsoleStream> {
    const { vm, seen } = await this.running(id);
    return openSerialConsole(vm, seen.record.name, seen.pid!);
  }

  /** Attach to the graphical console (QEMU's VNC server on the VM's `vnc.sock`); see `openVncConsole`. */
  async openVnc(id: string): Promise<ConsoleStream> {
    const { vm, seen } = await this.running(id);
    return openVncConsole(vm, seen.record.name, seen.pid!);
  }

  async stats(id: string): Promise<VmStats> {
    const { vm, seen } = await this.running(id);
    const proc = await processCounters(seen.pid!);
    let blocks = null;
    if (vm.monitor !== null) {
      try {
        blocks = await vm.monitor.client.execute('query-blockstats', undefined, { timeoutMs: 5000 });
      } catch {
        // QMP busy or gone: the disk counters stay unknown this time.
      }
    }
    const taps = await Promise.all((seen.record.nics ?? []).map((nic) => readTapCounters(nic.tap)));
    return vmStats(new Date(), proc, seen.record.memory_mib, blocks, guestNetCounters(taps));
  }

  /**
   * Send a QMP command to a running VM over the driver's own connection (QEMU
   * serves one QMP client at a time, so nothing else may connect while the
   * driver watches the VM). For host-side features beyond VmDriver, such as
   * hot-plugging devices. Fails with `invalid_state` when the VM is not running.
   */
  async qmpExecute<T = unknown>(
    id: string,
    command: string,
    args?: Record<string, unknown>,
    opts: { timeoutMs?: number } = {},
  ): Promise<T> {
    this.checkOpen();
    const vm = this.vm(checkId(id));
    const seen = await vm.observe({ adopt: !vm.busy });
    if (seen === null) throw notFound(id);
    if (!seen.running || vm.monitor === null)
      throw new FloeError(
        'invalid_state',
        `VM ${seen.record.name} is not running (or its QMP socket does not answer)`,
        { id },
      );
    return vm.monitor.client.execute<T>(command, args, opts);
  }

  /**
   * Make the VM's NICs match `nics` (see VmDriver.setNics). vm.json always
   * holds what the next start plugs in. On a running VM, the plan (a pure
   * function of the record, QEMU's devices and the wanted NICs) says which
   * NICs to unplug (first, freeing their slots) and which to plug. What QEMU
   * has is read from `/machine/peripheral`, so a call after a partial failure
   * picks up where it stopped.
   */
  async setNics(id: string, nics: VmNic[], opts: { timeoutMs?: number } = {}): Promise<SetNicsResult> {
    this.checkOpen();
    const vm = this.vm(checkId(id));
    const wanted = slotted(nics);
    checkNics(wanted);
    wanted.sort((a, b) => a.index - b.index);
    return vm.locked(async () => {
      const seen = await vm.observe({ adopt: true });
      if (seen === null) throw notFound(id);
      const { record } = seen;
      const recorded = record.nics ?? [];
      if (!seen.running || seen.pid === null) {
        await recordNics(vm, record, wanted);
        return { removed: removedNics(recorded, wanted, []), added: [] };
      }
      const monitor = vm.monitor ?? (await vm.attach(seen.pid));
      if (monitor === null)
        throw new FloeError('host_operation_failed', `the QMP socket of VM ${record.name} does not answer`, { id });
      const qmp = monitor.client;
      const plan = planNics({ recorded, devices: await peripherals(qmp), wanted });
      const unplugTimeoutMs = opts.timeoutMs ?? this.nicUnplugTimeoutMs;
      const { unplugged, added } = await applyNicPlan({ vm, record, qmp, unplugTimeoutMs }, plan, wanted);
      return { removed: removedNics(recorded, wanted, unplugged), added };
    });
  }

  onEvent(listener: (event: VmDriverEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /**
   * Decide the vendor-data of the seed disks this driver writes (default: the
   * instance's own, from the desired state); the agent sets it when its
   * metadata service runs, so seeded guests report their first boot too.
   */
  useSeedVendorData(decide: (vm: DesiredInstance) => string | null): void {
    this.seedVendorData = decide;
  }

  /** Close QMP connections, consoles and log followers; the VMs keep running. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const vms = [...this.vms.values()];
    for (const vm of vms) {
      vm.closeConsole('driver closed');
      vm.stopFollowers();
    }
    await Promise.allSettled(vms.map((vm) => vm.settle()));
    for (const vm of vms) vm.dropMonitor();
    this.listeners.clear();
  }

  private vm(id: string): QemuVm {
    let vm = this.vms.get(id);
    if (vm === undefined) {
      vm = new QemuVm(id, this.stateDir, this.host);
      this.vms.set(id, vm);
    }
    return vm;
  }

  /** A running VM, or `instance_not_found` / `invalid_state`. */
  private async running(id: string): Promise<{ vm: QemuVm; seen: Observation }> {
    this.checkOpen();
    const vm = this.vm(checkId(id));
    const seen = await vm.observe({ adopt: !vm.busy });
    if (seen === null) throw notFound(id);
    if (!seen.running || seen.pid === null) throw notRunning(seen.record.name, id);
    return { vm, seen };
  }

  private checkOpen(): void {
    if (this.closed) throw new Error('the QEMU driver is closed');
  }

  private diskOpts(): DiskOptions {
    return this.opts.qemuImg === undefined ? {} : { qemuImg: this.opts.qemuImg };
  }

  private cacheMode(): Promise<QemuDiskCache> {
    this.diskCache ??= probeDiskCache(this.stateDir);
    return this.diskCache;
  }

  private emit(event: VmDriverEvent): void {
    for (const listener of [...this.listeners]) {
      try {
        listener(event);
      } catch {
        // One failing listener must not keep the others from hearing about the VM.
      }
    }
  }
}
