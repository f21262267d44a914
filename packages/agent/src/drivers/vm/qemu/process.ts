import { FloeError } from '@floe/api';
import { killProcess, terminateProcess } from '@floe/process';
import { ExecError, run } from '../../../host/exec.js';
import { NOCLOUD_NET_SERIAL, qemuArgv, type QemuAccelerator, type QemuDiskCache, type QemuSpec } from './argv.js';
import { trimLog } from './console-log.js';
import { growDisk, type DiskOptions } from './disk.js';
import { KVM_FAILURE_MESSAGE } from './monitor.js';
import { connectWithRetry, type QmpClient } from './qmp.js';
import { exists, type VmRecord } from './runtime.js';
import type { QemuVm } from './vm.js';

const GIB = 1024 ** 3;

/** How QEMU processes are started. */
export interface LaunchOptions {
  qemu: string;
  accelerator: QemuAccelerator;
  diskCache: QemuDiskCache;
  logMaxBytes: number;
  disk: DiskOptions;
  /** The disk's size as create() just left it, if it did; spares a `qemu-img info`. */
  sizedBytes: number | null;
}

/** A QEMU that runs and answers QMP. */
export interface Launched {
  pid: number;
  startedAt: string;
  client: QmpClient;
}

/** The QEMU spec of a VM from its record. Pure. */
function vmSpec(
  vm: QemuVm,
  record: VmRecord,
  accelerator: QemuAccelerator,
  diskCache: QemuDiskCache,
  seed: boolean,
): QemuSpec {
  return {
    id: vm.id,
    name: record.name,
    vcpus: record.vcpus,
    memoryMib: record.memory_mib,
    accelerator,
    diskCache,
    paths: {
      pidfile: vm.path('pidfile'),
      qmpSocket: vm.path('qmp'),
      serialSocket: vm.path('serial'),
      vncSocket: vm.path('vnc'),
      consoleLog: vm.path('console'),
      disk: vm.path('disk'),
      seedIso: seed ? vm.path('seed') : null,
    },
    ...(record.nics !== undefined && record.nics.length > 0 ? { nics: record.nics } : {}),
    ...(record.config_drive === false ? { smbiosSerial: NOCLOUD_NET_SERIAL } : {}),
  };
}

/**
 * Start the VM's QEMU (detached, `-daemonize`), record it in run.json and
 * connect to its QMP socket. Every step is undone if a later one fails: the
 * VM never runs half-started.
 */
export async function launchQemu(vm: QemuVm, record: VmRecord, opts: LaunchOptions): Promise<Launched> {
  const { id } = vm;
  const { accelerator } = opts;
  const disk = vm.path('disk');
  if (!(await exists(disk)))
    throw new FloeError('invalid_state', `VM ${record.name} has no disk; delete and create it again`, { id });
  if (opts.sizedBytes === null || opts.sizedBytes < record.disk_gib * GIB)
    await growDisk(disk, record.disk_gib * GIB, opts.disk);
  await vm.clearRuntime();
  const followers = [...vm.followers];
  for (const f of followers) f.pause();
  let trimmed: { size: number; ino: number } | null = null;
  try {
    trimmed = await trimLog(vm.path('console'), opts.logMaxBytes);
  } finally {
    for (const f of followers) f.resume(trimmed);
  }
  const argv = qemuArgv(vmSpec(vm, record, accelerator, opts.diskCache, await exists(vm.path('seed'))));

  // Undo in reverse if any later step fails.
  const undo: Array<() => Promise<unknown> | void> = [];
  try {
    try {
      // -daemonize: this returns once the VM runs, the QEMU process lives on detached.
      await run(opts.qemu, argv, { timeoutMs: 60_000 });
    } catch (err) {
      const stray = vm.pidFromFile();
      if (stray !== null) await killProcess(stray, () => vm.owns(stray));
      throw launchError(record, accelerator, err);
    }
    const pid = vm.pidFromFile();
    if (pid === null || !vm.owns(pid))
      throw new FloeError('host_operation_failed', `QEMU for VM ${record.name} exited right after starting`, { id });
    undo.push(() => killProcess(pid, () => vm.owns(pid), 5000));
    const startedAt = new Date().toISOString();
    undo.push(() => vm.clearRuntime());
    // Two independent files, written side by side (both done before any undo); vm.json only when the accelerator changed.
    const written = await Promise.allSettled([
      vm.writeRun({ pid, started_at: startedAt, accelerator }),
      record.accelerator === accelerator ? null : vm.writeRecord({ ...record, accelerator }),
    ]);
    for (const w of written) if (w.status === 'rejected') throw w.reason;

    const client = await connectWithRetry(vm.path('qmp'), { attempts: 50, delayMs: 100, timeoutMs: 5000 });
    undo.push(() => client.close());
    const { status } = await client.execute('query-status', undefined, { timeoutMs: 5000 });
    if (status === 'internal-error') {
      throw new FloeError(
        'host_operation_failed',
        accelerator === 'kvm' ? KVM_FAILURE_MESSAGE : 'the guest stopped with an internal error right after starting',
        { id, accelerator, qemu_status: status },
      );
    }
    return { pid, startedAt, client };
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

/** QEMU's own complaint (its last stderr line that is not a warning) as a FloeError. */
function launchError(record: VmRecord, accelerator: QemuAccelerator, err: unknown): unknown {
  if (!(err instanceof ExecError)) return err;
  const detail = err.stderr
    .split('\n')
    .map((l) => l.replace(/^qemu-system-\S+:\s*/, '').trim())
    .filter((l) => l.length > 0 && !/^warning:/i.test(l))
    .at(-1);
  let message = `QEMU could not start VM ${record.name}: ${detail ?? err.message}`;
  if (accelerator === 'kvm' && /kvm/i.test(err.stderr))
    message += '; if KVM does not work on this host, start floe-agent with FLOE_ACCEL=tcg';
  return new FloeError('host_operation_failed', message, { id: record.id, stderr: err.stderr.slice(0, 2000) });
}

/**
 * End the VM's running QEMU `pid`: ACPI power button and `timeoutMs` for the
 * guest (unless `force`), then QMP `quit` (SIGTERM without QMP), then SIGKILL.
 * Reports nothing: floe asked for it.
 */
export async function terminateQemu(vm: QemuVm, pid: number, force: boolean, timeoutMs: number): Promise<void> {
  const monitor = vm.monitor ?? (await vm.attach(pid));
  if (monitor !== null) monitor.quiet = true;
  const qmp = monitor?.client;
  let gone = false;
  if (!force && qmp !== undefined) {
    try {
      await qmp.execute('system_powerdown', undefined, { timeoutMs: 5000 });
      gone = await vm.waitGone(pid, timeoutMs);
    } catch {
      // QMP gone: fall through to quit/kill.
    }
  }
  if (!gone) {
    gone = await terminateProcess(pid, {
      alive: () => vm.owns(pid),
      graceMs: force ? 3000 : 10_000,
      killWaitMs: 10_000,
      ask: async () => {
        if (qmp?.connected) await qmp.execute('quit', undefined, { timeoutMs: 3000 }).catch(() => {});
        else process.kill(pid, 'SIGTERM');
      },
    });
  }
  vm.dropMonitor();
  if (!gone)
    throw new FloeError('host_operation_failed', `QEMU (pid ${pid}) of VM ${vm.id} does not exit even after SIGKILL`, {
      id: vm.id,
      pid,
    });
}
