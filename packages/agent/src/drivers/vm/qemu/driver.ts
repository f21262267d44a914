import { randomBytes } from 'node:crypto';
import { constants, readFileSync, unlinkSync } from 'node:fs';
import { mkdir, open, readdir, readFile, rename, rm, stat, unlink, writeFile } from 'node:fs/promises';
import { createConnection } from 'node:net';
import { join, resolve } from 'node:path';
import { FloeError, NAME_PATTERN, type DesiredInstance, type VmStats } from '@floe/api';
import type {
  ConsoleStream,
  SetNicsResult,
  VmCreateContext,
  VmDriver,
  VmDriverEvent,
  VmInfo,
  VmNic,
} from '../types.js';
import { ExecError, run } from '../../../host/exec.js';
import { SEED_ISO_NAME, seedFiles, writeSeedIso } from '../seed.js';
import {
  checkNics,
  INSTANCE_ID_RE,
  NOCLOUD_NET_SERIAL,
  nicPortId,
  nicQmpArgs,
  QEMU_BINARY,
  qemuArgv,
  type QemuAccelerator,
  type QemuDiskCache,
  type QemuNic,
  type QemuSpec,
} from './argv.js';
import { DEFAULT_LOG_MAX_BYTES, LogFollower, readLogTail, trimLog } from './console-log.js';
import { ensureOverlay, growDisk } from './disk.js';
import { connectWithRetry, QmpError, type QmpClient, type QmpEvent } from './qmp.js';
import { watchSeedReads } from './seed-watch.js';

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

/** Files of a VM's runtime directory. */
export const VM_FILES = {
  /** What is needed to start the VM again (written by `create`). */
  record: 'vm.json',
  /** Present while floe believes the VM runs: pid, started_at, accelerator. */
  run: 'run.json',
  disk: 'disk.qcow2',
  seed: SEED_ISO_NAME,
  pidfile: 'qemu.pid',
  qmp: 'qmp.sock',
  serial: 'serial.sock',
  console: 'console.log',
} as const;

/** The parts of the desired state a VM needs to start again, kept in vm.json. */
interface VmRecord {
  id: string;
  name: string;
  project: string;
  vcpus: number;
  memory_mib: number;
  disk_gib: number;
  image_path: string | null;
  created_at: string;
  /** The accelerator of the last start; null before the first. */
  accelerator: QemuAccelerator | null;
  /** NICs with their taps and slots; absent in records written before networking (and slots before hot-plug). */
  nics?: QemuNic[];
  /** False: no seed disk; the VM finds the metadata service through its SMBIOS serial. Absent means true. */
  config_drive?: boolean;
}

/** Whether a VM gets a seed disk (`spec.config_drive`; records of control planes without the field mean true). */
function wantsConfigDrive(vm: DesiredInstance): boolean {
  return vm.spec.config_drive !== false;
}

/** Kept in run.json while the VM runs. */
interface RunRecord {
  pid: number;
  started_at: string;
  accelerator: QemuAccelerator;
}

/** The QMP connection to one running VM, through which its events arrive. */
/** How often a started VM's seed drive is looked at until the guest reads it, and for how long at most. */
const SEED_WATCH_INTERVAL_MS = 1000;
const SEED_WATCH_MAX_MS = 30 * 60_000;

interface Monitor {
  id: string;
  pid: number;
  client: QmpClient;
  /** The SHUTDOWN event's data, once seen. */
  shutdown: { guest: boolean; reason: string } | null;
  /** Set when floe itself ends the VM (stop, destroy, a KVM failure it handles) or closes the connection: no event. */
  quiet: boolean;
  /** Why floe killed the VM on its own, reported as `crashed`. */
  fatal: string | null;
}

interface Observation {
  record: VmRecord;
  running: boolean;
  pid: number | null;
  started_at: string | null;
  accelerator: QemuAccelerator;
}

const GIB = 1024 ** 3;
const MIB = 1024 ** 2;
/** Linux reports process CPU times in clock ticks of 1/100 s (USER_HZ) on every architecture floe runs on. */
const CLOCK_TICKS_PER_SECOND = 100;
const NAME_RE = new RegExp(NAME_PATTERN);
/** After QMP did not answer, inspect() leaves it alone this long (another client may hold it). */
const ATTACH_RETRY_MS = 30_000;

/** Said when KVM fails a guest: what happened and how to get going anyway. */
export const KVM_FAILURE_MESSAGE =
  'the guest stopped with a KVM internal error (emulation failure): KVM on this host cannot run this guest ' +
  '(often nested virtualization); start floe-agent with FLOE_ACCEL=tcg (or --accel tcg) to use software emulation';

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** A NIC as vm.json keeps it: with its slot (records from before slots get their position). */
function slotted(nics: readonly QemuNic[]): Array<QemuNic & { index: number }> {
  return nics.map((n, i) => ({ id: n.id, tap: n.tap, mac: n.mac, index: n.index ?? i }));
}

function sameNic(a: QemuNic & { index: number }, b: QemuNic & { index: number }): boolean {
  return a.id === b.id && a.tap === b.tap && a.mac === b.mac && a.index === b.index;
}

function notFound(id: string): FloeError {
  return new FloeError('instance_not_found', `no VM ${id} on this host`, { id });
}

function checkId(id: string): string {
  if (!INSTANCE_ID_RE.test(id))
    throw new FloeError('validation_failed', `instance id ${JSON.stringify(id)} is malformed`, { field: 'id' });
  return id;
}

async function readJson<T>(path: string): Promise<T | null> {
  try {
    return JSON.parse(await readFile(path, 'utf8')) as T;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    // A file cut short by a crash is as good as none.
    if (code === 'ENOENT' || err instanceof SyntaxError) return null;
    throw err;
  }
}

async function writeJson(path: string, value: unknown): Promise<void> {
  const partial = `${path}.${randomBytes(6).toString('hex')}.tmp`;
  await writeFile(partial, `${JSON.stringify(value, null, 2)}\n`, { mode: 0o640 });
  await rename(partial, path);
}

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw err;
  }
}

function readPid(pidfile: string): number | null {
  try {
    const pid = Number.parseInt(readFileSync(pidfile, 'utf8').trim(), 10);
    return Number.isInteger(pid) && pid > 1 ? pid : null;
  } catch {
    return null;
  }
}

/**
 * True when `pid` is the QEMU of this VM: its command line names the VM's own
 * pidfile, so a pid reused by another process is not mistaken for it. A dead
 * process that nobody reaped (a zombie) has an empty command line.
 */
function isOurQemu(pid: number, pidfile: string): boolean {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').includes(pidfile);
  } catch {
    return false;
  }
}

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
 * Runs VMs as detached QEMU processes (`-daemonize` + pidfile), one runtime
 * directory per VM under `stateDir`. The processes outlive the driver and the
 * agent; a new driver over the same directory finds them through their
 * pidfiles, reconnects to their QMP sockets and hears their events again.
 * Stop events are only emitted for stops nobody asked for: `stopped` when
 * the guest powered off, `crashed` when QEMU died (or KVM failed the guest);
 * a guest reset is a `log` event.
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
  private readonly monitors = new Map<string, Monitor>();
  private readonly attaching = new Map<string, Promise<Monitor | null>>();
  /** When attaching to a VM's QMP last failed: inspect() does not wait for a busy socket again right away. */
  private readonly attachFailedAt = new Map<string, number>();
  private readonly consoles = new Map<string, { close(reason: string): void }>();
  private readonly followers = new Map<string, Set<LogFollower>>();
  private readonly locks = new Map<string, Promise<unknown>>();
  /** Why each VM last stopped on its own; cleared by start. */
  private readonly reasons = new Map<string, string>();
  /** The disk size create() just made or checked, so the next start need not run `qemu-img info` again; used once. */
  private readonly sizedDisks = new Map<string, number>();
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
  }

  /** The accelerator new starts use. */
  get accelerator(): QemuAccelerator {
    return this.opts.accelerator;
  }

  /** The runtime directory of a VM. */
  vmDir(id: string): string {
    return join(this.stateDir, checkId(id));
  }

  private path(id: string, file: keyof typeof VM_FILES): string {
    return join(this.stateDir, id, VM_FILES[file]);
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
    const seen = await this.observe(id, { adopt: !this.locks.has(id) });
    return seen === null ? null : this.info(id, seen);
  }

  async create(vm: DesiredInstance, ctx?: VmCreateContext): Promise<void> {
    this.checkOpen();
    checkId(vm.id);
    if (!NAME_RE.test(vm.name))
      throw new FloeError('validation_failed', `instance name ${JSON.stringify(vm.name)} is not a DNS label`, {
        field: 'name',
      });
    await this.locked(vm.id, async () => {
      const dir = join(this.stateDir, vm.id);
      const fresh = !(await exists(dir));
      try {
        await mkdir(dir, { recursive: true, mode: 0o700 });
        const previous = await readJson<VmRecord>(this.path(vm.id, 'record'));
        const disk = this.path(vm.id, 'disk');
        const size = vm.spec.disk_gib * GIB;
        this.sizedDisks.delete(vm.id);
        const diskStep = async () => {
          if (!(await exists(disk))) {
            const imagePath = ctx?.imagePath ?? null;
            if (imagePath === null) {
              throw new FloeError(
                'invalid_state',
                `image ${vm.image?.name ?? vm.spec.image} has no file; import it with floe image import`,
                {
                  image: vm.image?.id ?? vm.spec.image,
                },
              );
            }
            this.sizedDisks.set(
              vm.id,
              (await ensureOverlay(resolve(imagePath), disk, size, this.diskOpts())).virtualSize,
            );
          } else if (!(await this.observe(vm.id, { adopt: false }))?.running) {
            this.sizedDisks.set(vm.id, (await growDisk(disk, size, this.diskOpts())).virtualSize);
          }
        };
        const seedStep = async () => {
          if (wantsConfigDrive(vm) && !(await exists(this.path(vm.id, 'seed')))) {
            const vendorData = this.seedVendorData?.(vm) ?? null;
            await writeSeedIso(dir, seedFiles(vm, vendorData === null ? {} : { vendorData }));
          }
        };
        // Disk and seed are independent files: make them side by side; both finish before any cleanup.
        const steps = await Promise.allSettled([diskStep(), seedStep()]);
        for (const step of steps) if (step.status === 'rejected') throw step.reason;
        const record: VmRecord = {
          id: vm.id,
          name: vm.name,
          project: vm.project,
          vcpus: vm.spec.vcpus,
          memory_mib: vm.spec.memory_mib,
          disk_gib: vm.spec.disk_gib,
          image_path: ctx?.imagePath ?? previous?.image_path ?? null,
          created_at: previous?.created_at ?? new Date().toISOString(),
          accelerator: previous?.accelerator ?? null,
          ...((ctx?.nics ?? previous?.nics ?? []).length > 0 ? { nics: ctx?.nics ?? previous?.nics } : {}),
          ...(wantsConfigDrive(vm) ? {} : { config_drive: false }),
        };
        // Written last: a directory without vm.json is a VM that was never fully created.
        await writeJson(this.path(vm.id, 'record'), record);
      } catch (err) {
        this.sizedDisks.delete(vm.id);
        if (fresh) await rm(dir, { recursive: true, force: true });
        throw err;
      }
    });
  }

  async start(id: string): Promise<VmInfo> {
    this.checkOpen();
    checkId(id);
    return this.locked(id, async () => {
      // What create() noted about the disk holds for the next start only.
      const sized = this.sizedDisks.get(id) ?? null;
      this.sizedDisks.delete(id);
      const seen = await this.observe(id, { adopt: true });
      if (seen === null) throw notFound(id);
      if (seen.running) return this.info(id, seen);
      return this.launch(seen.record, sized);
    });
  }

  async stop(id: string, opts: { force?: boolean; timeoutMs?: number } = {}): Promise<VmInfo> {
    this.checkOpen();
    checkId(id);
    return this.locked(id, async () => {
      const seen = await this.observe(id, { adopt: false });
      if (seen === null) throw notFound(id);
      if (seen.running && seen.pid !== null)
        await this.terminate(id, seen.pid, opts.force === true, opts.timeoutMs ?? this.stopTimeoutMs);
      await this.clearRuntime(id);
      this.reasons.delete(id);
      const after = await this.observe(id, { adopt: false });
      return this.info(id, after ?? seen);
    });
  }

  async destroy(id: string): Promise<void> {
    this.checkOpen();
    if (!INSTANCE_ID_RE.test(id)) return;
    await this.locked(id, async () => {
      const dir = join(this.stateDir, id);
      if (!(await exists(dir))) return;
      this.closeConsole(id, 'VM deleted');
      for (const f of this.followers.get(id) ?? []) f.stop();
      this.followers.delete(id);
      const pid = readPid(this.path(id, 'pidfile')) ?? (await readJson<RunRecord>(this.path(id, 'run')))?.pid ?? null;
      if (pid !== null && isOurQemu(pid, this.path(id, 'pidfile'))) await this.terminate(id, pid, true, 0);
      this.dropMonitor(id);
      await rm(dir, { recursive: true, force: true });
      this.reasons.delete(id);
      this.sizedDisks.delete(id);
    });
  }

  /** The console history; without `tailBytes`, its last `logMaxBytes` (the log is only cut when the VM starts). */
  async readLog(id: string, opts: { tailBytes?: number } = {}): Promise<Buffer> {
    this.checkOpen();
    checkId(id);
    if (!(await exists(this.path(id, 'record')))) throw notFound(id);
    return readLogTail(this.path(id, 'console'), Math.max(0, opts.tailBytes ?? this.logMaxBytes));
  }

  async followLog(id: string, listener: (data: Buffer) => void): Promise<() => void> {
    this.checkOpen();
    checkId(id);
    if (!(await exists(this.path(id, 'record')))) throw notFound(id);
    const follower = await LogFollower.start(this.path(id, 'console'), listener);
    const set = this.followers.get(id) ?? new Set();
    this.followers.set(id, set);
    set.add(follower);
    return () => {
      follower.stop();
      set.delete(follower);
    };
  }

  /**
   * Attach to the serial console. QEMU serves one client at a time on the
   * serial socket (a second one would wait silently until the first leaves),
   * so a second console on the same VM is refused with `invalid_state`
   * ("console busy") instead. The console log keeps recording either way.
   */
  async openConsole(id: string): Promise<ConsoleStream> {
    this.checkOpen();
    checkId(id);
    const seen = await this.observe(id, { adopt: !this.locks.has(id) });
    if (seen === null) throw notFound(id);
    if (!seen.running) throw new FloeError('invalid_state', `VM ${seen.record.name} is not running`, { id });
    if (this.consoles.has(id)) {
      throw new FloeError('invalid_state', `console busy: another session is attached to VM ${seen.record.name}`, {
        id,
        reason: 'console_busy',
      });
    }
    const socket = createConnection(this.path(id, 'serial'));
    const session = { close: (reason: string) => finish(reason) };
    this.consoles.set(id, session);
    const data = new Set<(d: Buffer) => void>();
    const closers = new Set<(reason: string) => void>();
    let open = true;
    const finish = (reason: string) => {
      if (!open) return;
      open = false;
      socket.destroy();
      if (this.consoles.get(id) === session) this.consoles.delete(id);
      for (const l of [...closers]) {
        try {
          l(reason);
        } catch {
          // a listener's failure is its own
        }
      }
    };
    await new Promise<void>((resolveConnect, reject) => {
      const onError = (err: Error) => {
        finish('error');
        reject(
          new FloeError(
            'host_operation_failed',
            `cannot attach to the console of VM ${seen.record.name}: ${err.message}`,
            { id },
          ),
        );
      };
      socket.once('error', onError);
      socket.once('connect', () => {
        socket.off('error', onError);
        resolveConnect();
      });
    });
    socket.on('data', (chunk: Buffer) => {
      for (const l of [...data]) {
        try {
          l(chunk);
        } catch {
          // as above
        }
      }
    });
    socket.on('error', () => finish('error'));
    socket.on('close', () => {
      // QEMU closes the socket as it exits; give it a moment to be gone before saying why.
      const pid = seen.pid!;
      void this.waitGone(pid, this.path(id, 'pidfile'), 200).then((gone) => finish(gone ? 'VM stopped' : 'closed'));
    });
    return {
      write: (d) => {
        if (open) socket.write(d);
      },
      onData: (l) => {
        data.add(l);
        return () => data.delete(l);
      },
      onClose: (l) => {
        if (!open) {
          queueMicrotask(() => l('closed'));
          return () => {};
        }
        closers.add(l);
        return () => closers.delete(l);
      },
      close: () => finish('closed'),
    };
  }

  async stats(id: string): Promise<VmStats> {
    this.checkOpen();
    checkId(id);
    const seen = await this.observe(id, { adopt: !this.locks.has(id) });
    if (seen === null) throw notFound(id);
    if (!seen.running || seen.pid === null)
      throw new FloeError('invalid_state', `VM ${seen.record.name} is not running`, { id });
    const pid = seen.pid;
    let cpu: number | null = null;
    let rss: number | null = null;
    try {
      const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
      // Fields after the command name, which is in parentheses and may contain spaces.
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      const ticks = Number(fields[11]) + Number(fields[12]);
      if (Number.isFinite(ticks)) cpu = Math.round((ticks * 1e9) / CLOCK_TICKS_PER_SECOND);
      const status = await readFile(`/proc/${pid}/status`, 'utf8');
      const kb = /^VmRSS:\s+(\d+)\s+kB/m.exec(status)?.[1];
      if (kb !== undefined) rss = Number(kb) * 1024;
    } catch {
      // The process ended meanwhile: what could not be read stays null.
    }
    let read: number | null = null;
    let written: number | null = null;
    const monitor = this.monitors.get(id);
    if (monitor !== undefined) {
      try {
        const devices = await monitor.client.execute('query-blockstats', undefined, { timeoutMs: 5000 });
        read = devices.reduce((sum, d) => sum + (d.stats.rd_bytes ?? 0), 0);
        written = devices.reduce((sum, d) => sum + (d.stats.wr_bytes ?? 0), 0);
      } catch {
        // QMP busy or gone: the disk counters stay unknown this time.
      }
    }
    return {
      at: new Date().toISOString(),
      cpu_time_ns: cpu,
      memory_bytes: rss,
      memory_assigned_bytes: seen.record.memory_mib * MIB,
      disk_read_bytes: read,
      disk_write_bytes: written,
      // NICs arrive with networking.
      net_rx_bytes: null,
      net_tx_bytes: null,
    };
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
    checkId(id);
    const seen = await this.observe(id, { adopt: !this.locks.has(id) });
    if (seen === null) throw notFound(id);
    const monitor = this.monitors.get(id);
    if (!seen.running || monitor === undefined)
      throw new FloeError(
        'invalid_state',
        `VM ${seen.record.name} is not running (or its QMP socket does not answer)`,
        { id },
      );
    return monitor.client.execute<T>(command, args, opts);
  }

  /**
   * Make the VM's NICs match `nics` (see VmDriver.setNics). vm.json always
   * holds what the next start plugs in. On a running VM, NICs to go are
   * unplugged first (`device_del`, then the guest releases the device and
   * QEMU says DEVICE_DELETED, then `netdev_del`), freeing their slots, then
   * new ones are plugged in (`netdev_add` + `device_add` on the slot's root
   * port). What QEMU has is read from `/machine/peripheral`, so a call after
   * a partial failure picks up where it stopped.
   */
  async setNics(id: string, nics: VmNic[], opts: { timeoutMs?: number } = {}): Promise<SetNicsResult> {
    this.checkOpen();
    checkId(id);
    const wanted = slotted(nics);
    checkNics(wanted);
    wanted.sort((a, b) => a.index - b.index);
    return this.locked(id, async () => {
      const seen = await this.observe(id, { adopt: true });
      if (seen === null) throw notFound(id);
      const recorded = slotted(seen.record.nics ?? []);
      const wantedIds = new Set(wanted.map((n) => n.id));
      if (!seen.running || seen.pid === null) {
        await this.recordNics(seen.record, wanted);
        return { removed: recorded.filter((n) => !wantedIds.has(n.id)).map((n) => n.id), added: [] };
      }
      const monitor = this.monitors.get(id) ?? (await this.attach(id, seen.pid));
      if (monitor === null)
        throw new FloeError('host_operation_failed', `the QMP socket of VM ${seen.record.name} does not answer`, {
          id,
        });
      const qmp = monitor.client;
      const devices = new Map(
        (await qmp.execute('qom-list', { path: '/machine/peripheral' }, { timeoutMs: 5000 })).map((d) => [
          d.name,
          d.type,
        ]),
      );
      const isNic = (name: string) => devices.get(name) === 'child<virtio-net-pci>';
      // What the VM has now: the recorded NICs QEMU still has, and any NIC device the record does not know (half done before).
      let current = recorded.filter((n) => isNic(n.id));
      const unknown = [...devices.keys()].filter((name) => isNic(name) && !recorded.some((n) => n.id === name));
      const removed: string[] = [];
      const added: string[] = [];
      try {
        const timeoutMs = opts.timeoutMs ?? this.nicUnplugTimeoutMs;
        // A NIC recorded without a slot was started on the root bus, where its slot means nothing (and it cannot be unplugged): same id, tap and MAC suffice.
        const unslotted = new Set((seen.record.nics ?? []).filter((n) => n.index === undefined).map((n) => n.id));
        const keeps = (n: QemuNic & { index: number }) =>
          wanted.some(
            (w) => sameNic(w, n) || (unslotted.has(n.id) && w.id === n.id && w.tap === n.tap && w.mac === n.mac),
          );
        const going = [...current.filter((n) => !keeps(n)).map((n) => n.id), ...unknown];
        for (const nicId of going) {
          await this.unplugNic(qmp, seen.record.name, id, nicId, timeoutMs);
          current = current.filter((n) => n.id !== nicId);
          if (!wantedIds.has(nicId)) removed.push(nicId);
        }
        for (const nic of wanted) {
          if (current.some((n) => n.id === nic.id)) continue;
          if (devices.get(nicPortId(nic.index)) !== 'child<pcie-root-port>') {
            throw new FloeError(
              'invalid_state',
              `VM ${seen.record.name} was started without hot-plug slots for NICs; restart it to add NIC ${nic.id} (it is recorded for the next start)`,
              { id, nic_id: nic.id, reason: 'restart_required' },
            );
          }
          const args = nicQmpArgs(nic, 0);
          // A netdev left by an attempt that failed between netdev_add and device_add would block its id.
          await qmp.execute('netdev_del', { id: `nd-${nic.id}` }, { timeoutMs: 5000 }).catch(() => {});
          await qmp.execute('netdev_add', args.netdev as { type: string; id: string }, { timeoutMs: 10_000 });
          try {
            await qmp.execute('device_add', args.device as { driver: string; id: string }, { timeoutMs: 10_000 });
          } catch (err) {
            await qmp.execute('netdev_del', { id: `nd-${nic.id}` }, { timeoutMs: 5000 }).catch(() => {});
            throw this.nicError(err, seen.record.name, id, nic.id, 'plug in');
          }
          current.push(nic);
          added.push(nic.id);
        }
      } finally {
        // vm.json says what the next start plugs in: everything wanted, plus what could not be unplugged yet.
        const stuck = current.filter((n) => !wanted.some((w) => w.id === n.id));
        const next = [...wanted.filter((w) => !stuck.some((n) => n.index === w.index)), ...stuck].sort(
          (a, b) => a.index - b.index,
        );
        await this.recordNics(seen.record, next);
      }
      // NICs recorded for a start that never came, no longer wanted: their taps may go too.
      for (const n of recorded) if (!wantedIds.has(n.id) && !removed.includes(n.id)) removed.push(n.id);
      return { removed, added };
    });
  }

  private async unplugNic(qmp: QmpClient, name: string, id: string, nicId: string, timeoutMs: number): Promise<void> {
    const present = async () =>
      (await qmp.execute('qom-list', { path: '/machine/peripheral' }, { timeoutMs: 5000 })).some(
        (d) => d.name === nicId,
      );
    let deleted = false;
    const off = qmp.onEvent('DEVICE_DELETED', (e) => {
      if (e.data.device === nicId) deleted = true;
    });
    try {
      try {
        await qmp.execute('device_del', { id: nicId }, { timeoutMs: 10_000 });
      } catch (err) {
        // Already gone, or an unplug asked for before is still pending: both end the same way.
        if (!(await present())) deleted = true;
        else if (!(err instanceof QmpError) || !/progress|pending/i.test(err.desc))
          throw this.nicError(err, name, id, nicId, 'unplug');
      }
      const deadline = Date.now() + timeoutMs;
      let lookedAt = Date.now();
      while (!deleted) {
        // The event may have been missed (it came during an earlier attempt): look at QEMU's devices now and then.
        const late = Date.now() >= deadline;
        if (late || Date.now() - lookedAt >= 1000) {
          lookedAt = Date.now();
          if (!(await present())) break;
          if (late) {
            throw new FloeError(
              'host_operation_failed',
              `the guest of VM ${name} did not release NIC ${nicId} within ${Math.round(timeoutMs / 1000)} s; will try again`,
              {
                id,
                nic_id: nicId,
                reason: 'unplug_timeout',
              },
            );
          }
        }
        await sleep(100);
      }
    } finally {
      off();
    }
    await qmp.execute('netdev_del', { id: `nd-${nicId}` }, { timeoutMs: 5000 }).catch(() => {});
  }

  private nicError(err: unknown, name: string, id: string, nicId: string, what: string): unknown {
    if (!(err instanceof QmpError)) return err;
    return new FloeError('host_operation_failed', `QEMU could not ${what} NIC ${nicId} of VM ${name}: ${err.desc}`, {
      id,
      nic_id: nicId,
    });
  }

  private async recordNics(record: VmRecord, nics: Array<QemuNic & { index: number }>): Promise<void> {
    const before = slotted(record.nics ?? []);
    if (before.length === nics.length && before.every((n, i) => sameNic(n, nics[i]!))) return;
    const { nics: _, ...rest } = record;
    await writeJson(this.path(record.id, 'record'), nics.length > 0 ? { ...rest, nics } : rest);
  }

  onEvent(listener: (event: VmDriverEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Close QMP connections, consoles and log followers; the VMs keep running. */
  /**
   * Decide the vendor-data of the seed disks this driver writes (default: the
   * instance's own, from the desired state); the agent sets it when its
   * metadata service runs, so seeded guests report their first boot too.
   */
  useSeedVendorData(decide: (vm: DesiredInstance) => string | null): void {
    this.seedVendorData = decide;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const id of [...this.consoles.keys()]) this.closeConsole(id, 'driver closed');
    for (const set of this.followers.values()) for (const f of set) f.stop();
    this.followers.clear();
    await Promise.allSettled([...this.attaching.values()]);
    for (const id of [...this.monitors.keys()]) this.dropMonitor(id);
    this.listeners.clear();
  }

  private checkOpen(): void {
    if (this.closed) throw new Error('the QEMU driver is closed');
  }

  // One operation per VM at a time; inspect() does not wait but leaves QMP alone meanwhile.
  private async locked<T>(id: string, fn: () => Promise<T>): Promise<T> {
    while (this.locks.has(id)) await this.locks.get(id)!.catch(() => {});
    const p = fn();
    this.locks.set(id, p);
    try {
      return await p;
    } finally {
      if (this.locks.get(id) === p) this.locks.delete(id);
    }
  }

  private diskOpts(): { qemuImg?: string } {
    return this.opts.qemuImg === undefined ? {} : { qemuImg: this.opts.qemuImg };
  }

  // O_DIRECT (cache=none) is the safe choice for VM disks, but tmpfs and some others refuse it.
  private cacheMode(): Promise<QemuDiskCache> {
    this.diskCache ??= (async () => {
      await mkdir(this.stateDir, { recursive: true });
      const probe = join(this.stateDir, `.odirect-probe-${process.pid}-${randomBytes(4).toString('hex')}`);
      try {
        const fh = await open(probe, constants.O_CREAT | constants.O_RDWR | constants.O_DIRECT, 0o600);
        await fh.close();
        return 'none' as const;
      } catch {
        return 'writeback' as const;
      } finally {
        await rm(probe, { force: true });
      }
    })();
    return this.diskCache;
  }

  private info(id: string, seen: Observation): VmInfo {
    return {
      id,
      state: seen.running ? 'running' : 'stopped',
      reason: seen.running ? null : (this.reasons.get(id) ?? null),
      accelerator: seen.accelerator,
      started_at: seen.running ? seen.started_at : null,
      pid: seen.running ? seen.pid : null,
    };
  }

  /**
   * What runs for one VM. With `adopt`, a running VM without a QMP connection
   * gets one (re-adoption after an agent restart), and a VM that floe believed
   * running but that died unwatched is reported once (`crashed`, or `stopped`
   * when QEMU exited cleanly and removed its pidfile).
   */
  private async observe(id: string, opts: { adopt: boolean }): Promise<Observation | null> {
    const record = await readJson<VmRecord>(this.path(id, 'record'));
    if (record === null) return null;
    const pidfile = this.path(id, 'pidfile');
    const runRecord = await readJson<RunRecord>(this.path(id, 'run'));
    const pid = readPid(pidfile) ?? runRecord?.pid ?? null;
    const fallbackAccel = record.accelerator ?? this.opts.accelerator;
    if (pid !== null && isOurQemu(pid, pidfile)) {
      let startedAt = runRecord?.pid === pid ? runRecord.started_at : null;
      const accelerator = runRecord?.pid === pid ? runRecord.accelerator : fallbackAccel;
      if (startedAt === null) {
        // QEMU runs but floe never recorded it (the agent died right after launching it): adopt it.
        startedAt = (await stat(pidfile).catch(() => null))?.mtime.toISOString() ?? new Date().toISOString();
        if (opts.adopt)
          await writeJson(this.path(id, 'run'), { pid, started_at: startedAt, accelerator } satisfies RunRecord);
      }
      const failedAt = this.attachFailedAt.get(id);
      if (opts.adopt && !this.monitors.has(id) && (failedAt === undefined || Date.now() - failedAt > ATTACH_RETRY_MS)) {
        const monitor = await this.attach(id, pid);
        if (monitor === null && !isOurQemu(pid, pidfile)) return this.observe(id, opts);
      }
      return { record, running: true, pid, started_at: startedAt, accelerator };
    }
    if (opts.adopt && runRecord !== null && !this.monitors.has(id))
      this.reportUnwatchedExit(id, runRecord.pid, await exists(pidfile));
    return { record, running: false, pid: null, started_at: null, accelerator: fallbackAccel };
  }

  // run.json is the token of "floe believes this VM runs": whoever removes it reports the exit, exactly once.
  private takeRunToken(id: string, pid: number): boolean {
    const path = this.path(id, 'run');
    try {
      const current = JSON.parse(readFileSync(path, 'utf8')) as RunRecord;
      if (current.pid !== pid) return false;
      unlinkSync(path);
      return true;
    } catch {
      return false;
    }
  }

  private reportUnwatchedExit(id: string, pid: number, pidfileLeft: boolean): void {
    if (!this.takeRunToken(id, pid)) return;
    if (pidfileLeft) {
      const message = 'QEMU died while the agent was not watching';
      this.reasons.set(id, message);
      this.emit({ id, type: 'crashed', message, exit_code: null });
    } else {
      this.emit({ id, type: 'stopped', message: 'the VM shut down while the agent was not watching', exit_code: 0 });
    }
  }

  // `sizedBytes`: the disk's size as create() just left it, if it did; spares a `qemu-img info`.
  private async launch(record: VmRecord, sizedBytes: number | null): Promise<VmInfo> {
    const id = record.id;
    const accelerator = this.opts.accelerator;
    const pidfile = this.path(id, 'pidfile');
    const disk = this.path(id, 'disk');
    if (!(await exists(disk)))
      throw new FloeError('invalid_state', `VM ${record.name} has no disk; delete and create it again`, { id });
    if (sizedBytes === null || sizedBytes < record.disk_gib * GIB)
      await growDisk(disk, record.disk_gib * GIB, this.diskOpts());
    await this.clearRuntime(id);
    const followers = [...(this.followers.get(id) ?? [])];
    for (const f of followers) f.pause();
    let trimmed: { size: number; ino: number } | null = null;
    try {
      trimmed = await trimLog(this.path(id, 'console'), this.logMaxBytes);
    } finally {
      for (const f of followers) f.resume(trimmed);
    }
    const seed = this.path(id, 'seed');
    const spec: QemuSpec = {
      id,
      name: record.name,
      vcpus: record.vcpus,
      memoryMib: record.memory_mib,
      accelerator,
      diskCache: await this.cacheMode(),
      paths: {
        pidfile,
        qmpSocket: this.path(id, 'qmp'),
        serialSocket: this.path(id, 'serial'),
        consoleLog: this.path(id, 'console'),
        disk,
        seedIso: (await exists(seed)) ? seed : null,
      },
      ...(record.nics !== undefined && record.nics.length > 0 ? { nics: record.nics } : {}),
      ...(record.config_drive === false ? { smbiosSerial: NOCLOUD_NET_SERIAL } : {}),
    };
    const argv = qemuArgv(spec);

    // Undo in reverse if any later step fails: the VM must not run half-started.
    const undo: Array<() => Promise<void> | void> = [];
    try {
      try {
        // -daemonize: this returns once the VM runs, the QEMU process lives on detached.
        await run(this.qemu, argv, { timeoutMs: 60_000 });
      } catch (err) {
        const stray = readPid(pidfile);
        if (stray !== null && isOurQemu(stray, pidfile)) process.kill(stray, 'SIGKILL');
        throw this.launchError(record, err);
      }
      const pid = readPid(pidfile);
      if (pid === null || !isOurQemu(pid, pidfile)) {
        throw new FloeError('host_operation_failed', `QEMU for VM ${record.name} exited right after starting`, { id });
      }
      undo.push(async () => {
        if (isOurQemu(pid, pidfile)) process.kill(pid, 'SIGKILL');
        await this.waitGone(pid, pidfile, 5000);
      });
      const startedAt = new Date().toISOString();
      undo.push(() => this.clearRuntime(id));
      // Two independent files, written side by side (both done before any undo); vm.json only when the accelerator changed.
      const written = await Promise.allSettled([
        writeJson(this.path(id, 'run'), { pid, started_at: startedAt, accelerator } satisfies RunRecord),
        record.accelerator === accelerator
          ? null
          : writeJson(this.path(id, 'record'), { ...record, accelerator } satisfies VmRecord),
      ]);
      for (const w of written) if (w.status === 'rejected') throw w.reason;

      const client = await connectWithRetry(this.path(id, 'qmp'), { attempts: 50, delayMs: 100, timeoutMs: 5000 });
      undo.push(() => client.close());
      const { status } = await client.execute('query-status', undefined, { timeoutMs: 5000 });
      if (status === 'internal-error') {
        throw new FloeError(
          'host_operation_failed',
          accelerator === 'kvm' ? KVM_FAILURE_MESSAGE : 'the guest stopped with an internal error right after starting',
          {
            id,
            accelerator,
            qemu_status: status,
          },
        );
      }
      this.watch(id, pid, client, false);
      this.reasons.delete(id);
      return { id, state: 'running', reason: null, accelerator, started_at: startedAt, pid };
    } catch (err) {
      for (const step of undo.reverse()) {
        try {
          await step();
        } catch {
          // Keep undoing; the first error is the one worth reporting.
        }
      }
      throw err;
    }
  }

  private launchError(record: VmRecord, err: unknown): unknown {
    if (!(err instanceof ExecError)) return err;
    const detail = err.stderr
      .split('\n')
      .map((l) => l.replace(/^qemu-system-\S+:\s*/, '').trim())
      .filter((l) => l.length > 0 && !/^warning:/i.test(l))
      .at(-1);
    let message = `QEMU could not start VM ${record.name}: ${detail ?? err.message}`;
    if (this.opts.accelerator === 'kvm' && /kvm/i.test(err.stderr))
      message += '; if KVM does not work on this host, start floe-agent with FLOE_ACCEL=tcg';
    return new FloeError('host_operation_failed', message, { id: record.id, stderr: err.stderr.slice(0, 2000) });
  }

  // Attach a QMP connection to a VM that runs without one (found after a restart).
  private attach(id: string, pid: number): Promise<Monitor | null> {
    const pending = this.attaching.get(id);
    if (pending !== undefined) return pending;
    const p = (async () => {
      let client: QmpClient;
      try {
        client = await connectWithRetry(this.path(id, 'qmp'), { attempts: 2, delayMs: 100, timeoutMs: 2000 });
      } catch {
        this.attachFailedAt.set(id, Date.now());
        return null;
      }
      this.attachFailedAt.delete(id);
      if (this.closed || this.monitors.has(id)) {
        client.close();
        return this.monitors.get(id) ?? null;
      }
      const monitor = this.watch(id, pid, client, true);
      try {
        const { status } = await client.execute('query-status', undefined, { timeoutMs: 5000 });
        if (status === 'internal-error') await this.failGuest(monitor);
      } catch {
        // Events still arrive; a status we cannot read is not a reason to give up on the VM.
      }
      return monitor;
    })();
    this.attaching.set(id, p);
    void p.finally(() => this.attaching.delete(id));
    return p;
  }

  // `adopted`: a VM found running after a restart, whose seed may have been read long ago.
  private watch(id: string, pid: number, client: QmpClient, adopted: boolean): Monitor {
    const monitor: Monitor = { id, pid, client, shutdown: null, quiet: false, fatal: null };
    if (this.closed) {
      // An operation finished after close(): the VM runs on, unwatched, like every other.
      monitor.quiet = true;
      client.close();
      return monitor;
    }
    this.monitors.set(id, monitor);
    client.onEvent('SHUTDOWN', (e) => {
      monitor.shutdown = {
        guest: e.data.guest === true,
        reason: typeof e.data.reason === 'string' ? e.data.reason : 'unknown',
      };
    });
    client.onEvent('STOP', () => {
      // A guest that KVM cannot run pauses in `internal-error`; QEMU would keep it there forever.
      void client.execute('query-status', undefined, { timeoutMs: 5000 }).then(
        ({ status }) => (status === 'internal-error' ? this.failGuest(monitor) : undefined),
        () => {},
      );
    });
    client.onEvent('RESET', (e: QmpEvent) => {
      if (!monitor.quiet) this.emit({ id, type: 'log', message: `VM reset (${String(e.data.reason ?? 'unknown')})` });
    });
    client.onClose(() => void this.onMonitorClosed(monitor));
    watchSeedReads(client, {
      intervalMs: SEED_WATCH_INTERVAL_MS,
      maxMs: SEED_WATCH_MAX_MS,
      requireUnreadFirst: adopted,
      onRead: (at) => {
        if (!monitor.quiet)
          this.emit({
            id,
            type: 'first-boot',
            message: 'the guest read its seed disk',
            first_boot: { source: 'config-drive', fetched_at: at },
          });
      },
    });
    return monitor;
  }

  private async failGuest(monitor: Monitor): Promise<void> {
    const accel = (await readJson<RunRecord>(this.path(monitor.id, 'run')))?.accelerator ?? this.opts.accelerator;
    monitor.fatal = accel === 'kvm' ? KVM_FAILURE_MESSAGE : 'the guest stopped with an internal error';
    if (isOurQemu(monitor.pid, this.path(monitor.id, 'pidfile'))) process.kill(monitor.pid, 'SIGKILL');
  }

  // The QMP connection ended: QEMU exited (report it unless floe asked for it), or only the connection broke.
  private async onMonitorClosed(monitor: Monitor): Promise<void> {
    const { id, pid } = monitor;
    if (monitor.quiet || this.closed) {
      if (this.monitors.get(id) === monitor) this.monitors.delete(id);
      return;
    }
    const pidfile = this.path(id, 'pidfile');
    const gone = await this.waitGone(pid, pidfile, 5000);
    if (this.monitors.get(id) === monitor) this.monitors.delete(id);
    if (!gone || monitor.quiet || this.closed) return;
    if (!this.takeRunToken(id, pid)) return;
    let event: VmDriverEvent;
    if (monitor.fatal !== null) {
      event = { id, type: 'crashed', message: monitor.fatal, exit_code: null };
    } else if (monitor.shutdown !== null) {
      const d = describeShutdown(monitor.shutdown.reason);
      event = { id, type: d.type, message: d.message, exit_code: d.type === 'stopped' ? 0 : null };
    } else {
      event = {
        id,
        type: 'crashed',
        message: 'QEMU exited without shutting the VM down (killed or crashed)',
        exit_code: null,
      };
    }
    if (event.type === 'crashed') this.reasons.set(id, event.message);
    else this.reasons.delete(id);
    await this.clearRuntime(id).catch(() => {});
    this.closeConsole(id, 'VM stopped');
    this.emit(event);
  }

  private dropMonitor(id: string): void {
    const monitor = this.monitors.get(id);
    if (monitor === undefined) return;
    monitor.quiet = true;
    this.monitors.delete(id);
    monitor.client.close();
  }

  /**
   * End a running QEMU: ACPI power button and `timeoutMs` for the guest
   * (unless `force`), then QMP `quit` (SIGTERM without QMP), then SIGKILL.
   */
  private async terminate(id: string, pid: number, force: boolean, timeoutMs: number): Promise<void> {
    const pidfile = this.path(id, 'pidfile');
    let monitor: Monitor | null | undefined = this.monitors.get(id);
    if (monitor === undefined) monitor = await this.attach(id, pid);
    if (monitor !== null) monitor.quiet = true;
    const qmp = monitor?.client;
    let gone = false;
    if (!force && qmp !== undefined) {
      try {
        await qmp.execute('system_powerdown', undefined, { timeoutMs: 5000 });
        gone = await this.waitGone(pid, pidfile, timeoutMs);
      } catch {
        // QMP gone: fall through to quit/kill.
      }
    }
    if (!gone) {
      if (qmp?.connected) {
        await qmp.execute('quit', undefined, { timeoutMs: 3000 }).catch(() => {});
      } else if (isOurQemu(pid, pidfile)) {
        process.kill(pid, 'SIGTERM');
      }
      gone = await this.waitGone(pid, pidfile, force ? 3000 : 10_000);
    }
    if (!gone && isOurQemu(pid, pidfile)) {
      process.kill(pid, 'SIGKILL');
      gone = await this.waitGone(pid, pidfile, 10_000);
    }
    this.dropMonitor(id);
    if (!gone)
      throw new FloeError('host_operation_failed', `QEMU (pid ${pid}) of VM ${id} does not exit even after SIGKILL`, {
        id,
        pid,
      });
  }

  private async waitGone(pid: number, pidfile: string, timeoutMs: number): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (!isOurQemu(pid, pidfile)) return true;
      if (Date.now() >= deadline) return false;
      await sleep(50);
    }
  }

  // Leftovers of a QEMU that no longer runs: sockets, a pidfile SIGKILL left, the run token.
  private async clearRuntime(id: string): Promise<void> {
    for (const file of ['run', 'pidfile', 'qmp', 'serial'] as const) {
      await unlink(this.path(id, file)).catch((err: NodeJS.ErrnoException) => {
        if (err.code !== 'ENOENT') throw err;
      });
    }
  }

  private closeConsole(id: string, reason: string): void {
    this.consoles.get(id)?.close(reason);
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
