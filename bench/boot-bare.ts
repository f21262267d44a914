/**
 * The bare-QEMU side of the boot benchmark: a VM directory prepared the way
 * floe's driver does it, booted with the same command line as a plain
 * `qemu-system-x86_64`, and the process and console-log helpers both sides use.
 */
import { readFileSync } from 'node:fs';
import { mkdir, open, readdir, readFile, rm } from 'node:fs/promises';
import path from 'node:path';
import { run } from '@floe/agent';
import { desiredInstance, testId } from '@floe/testkit';
import { READY_MARKER } from '@floe/testkit/guest-image';
import { overlayCreateArgs, QEMU_IMG } from '../packages/agent/src/drivers/vm/qemu/disk.js';
import { connectWithRetry, type QmpClient } from '../packages/agent/src/drivers/vm/qemu/qmp.js';
import {
  QEMU_BINARY,
  qemuArgv,
  type QemuAccelerator,
  type QemuDiskCache,
  type QemuSpec,
} from '../packages/agent/src/drivers/vm/qemu/argv.js';
import { seedFiles, writeSeedIso } from '../packages/agent/src/drivers/vm/seed.js';
import { epochMs } from './worker.js';

/** Every boot must reach READY within this. */
export const BOOT_TIMEOUT_MS = 180_000;
/** How often the console log files are read while waiting for READY (the same for floe and bare). */
export const POLL_MS = 5;

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** One bare boot, in epoch ms. */
export interface BareRun {
  spawn: number;
  /** The `-daemonize` parent exited: QEMU is initialized. */
  daemonized: number;
  qmp: number;
  ready: number;
}

/**
 * The moment `text` first shows up in `file` (which may not exist yet),
 * reading what was appended every POLL_MS. Used alike for floe's and the
 * bare VM's console log, so both are seen with the same delay.
 */
export async function waitForText(
  file: string,
  text: string,
  timeoutMs: number,
  signal?: AbortSignal,
): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  const buf = Buffer.alloc(64 * 1024);
  let fh: Awaited<ReturnType<typeof open>> | null = null;
  let offset = 0;
  let tail = '';
  try {
    for (;;) {
      if (signal?.aborted) throw new Error('aborted');
      if (fh === null) fh = await open(file, 'r').catch(() => null);
      if (fh !== null) {
        for (;;) {
          const { bytesRead } = await fh.read(buf, 0, buf.length, offset);
          if (bytesRead === 0) break;
          offset += bytesRead;
          tail = (tail + buf.subarray(0, bytesRead).toString('latin1')).slice(-4096);
          if (tail.includes(text)) return epochMs();
        }
      }
      if (Date.now() > deadline) throw new Error(`"${text}" did not appear in ${file} within ${timeoutMs / 1000} s`);
      await sleep(POLL_MS);
    }
  } finally {
    await fh?.close();
  }
}

export function readCmdline(pid: number): string[] | null {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').slice(0, -1);
  } catch {
    return null;
  }
}

function alive(pid: number): boolean {
  try {
    // A dead process nobody reaped yet is as good as gone.
    return !/^State:\s+Z/m.test(readFileSync(`/proc/${pid}/status`, 'utf8'));
  } catch {
    return false;
  }
}

/** QEMU processes this benchmark started: their command line names a file under `root`. */
export async function ourQemus(root: string): Promise<number[]> {
  const pids: number[] = [];
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const argv = readCmdline(Number(entry));
    if (argv !== null && argv[0]?.endsWith(QEMU_BINARY) && argv.some((a) => a.includes(root))) pids.push(Number(entry));
  }
  return pids;
}

export async function waitGone(pid: number, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (alive(pid)) {
    if (Date.now() > deadline) return false;
    await sleep(20);
  }
  return true;
}

/** Everything a bare boot needs that is not timed: a VM directory with an overlay and a seed, and QEMU's arguments. */
export interface BareVm {
  dir: string;
  spec: QemuSpec;
  marker: string;
}

export async function prepareBare(
  root: string,
  base: string,
  size: { vcpus: number; memoryMib: number; diskBytes: number },
  accelerator: QemuAccelerator,
  diskCache: QemuDiskCache,
  name: string,
): Promise<BareVm> {
  const id = testId('inst');
  const dir = path.join(root, 'bare', id);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const disk = path.join(dir, 'disk.qcow2');
  await run(QEMU_IMG, overlayCreateArgs(base, 'qcow2', disk, size.diskBytes));
  // The same seed floe writes for an instance of this name (no user-data, no keys).
  const seed = await writeSeedIso(
    dir,
    seedFiles(desiredInstance({ id, name, spec: { user_data: null, ssh_keys: [] } })),
  );
  const spec: QemuSpec = {
    id,
    name,
    vcpus: size.vcpus,
    memoryMib: size.memoryMib,
    accelerator,
    diskCache,
    paths: {
      pidfile: path.join(dir, 'qemu.pid'),
      qmpSocket: path.join(dir, 'qmp.sock'),
      serialSocket: path.join(dir, 'serial.sock'),
      vncSocket: path.join(dir, 'vnc.sock'),
      consoleLog: path.join(dir, 'console.log'),
      disk,
      seedIso: seed,
    },
  };
  return { dir, spec, marker: `${READY_MARKER} ${name}` };
}

/** Boot a prepared bare VM: spawn, QMP `query-status` answered, READY on the serial console. Always leaves nothing running. */
export async function bootBare(vm: BareVm): Promise<BareRun> {
  let qmp: QmpClient | null = null;
  const abort = new AbortController();
  try {
    const argv = qemuArgv(vm.spec);
    const spawned = epochMs();
    // Watched from the start, as floe's log is from the POST: the polling loads both alike.
    const readyFile = waitForText(vm.spec.paths.consoleLog, vm.marker, BOOT_TIMEOUT_MS, abort.signal);
    readyFile.catch(() => {});
    await run(QEMU_BINARY, argv, { timeoutMs: 60_000 });
    const daemonized = epochMs();
    qmp = await connectWithRetry(vm.spec.paths.qmpSocket, { attempts: 5000, delayMs: 1, timeoutMs: 5000 });
    const { status } = await qmp.execute('query-status', undefined, { timeoutMs: 5000 });
    const answered = epochMs();
    if (status !== 'running') throw new Error(`bare QEMU is ${status}, not running`);
    const ready = await readyFile;
    return { spawn: spawned, daemonized, qmp: answered, ready };
  } finally {
    abort.abort();
    const pid = Number.parseInt(await readFile(vm.spec.paths.pidfile, 'utf8').catch(() => ''), 10);
    await qmp?.execute('quit', undefined, { timeoutMs: 3000 }).catch(() => {});
    qmp?.close();
    if (Number.isInteger(pid) && pid > 1 && !(await waitGone(pid, 5000))) {
      process.kill(pid, 'SIGKILL');
      await waitGone(pid, 5000);
    }
    await rm(vm.dir, { recursive: true, force: true });
  }
}
