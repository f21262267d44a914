import { readFileSync, unlinkSync } from 'node:fs';
import { stat, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { processHasArg, readPidFile, waitUntilGone } from '@floe/process';
import { readJsonFile, writeJsonAtomic } from '../../../host/files.js';
import { SEED_ISO_NAME } from '../seed.js';
import type { QemuAccelerator, QemuNic } from './argv.js';

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
  /** The graphical console (VNC); absent for a VM started before it had one. */
  vnc: 'vnc.sock',
  console: 'console.log',
} as const;

/** The parts of the desired state a VM needs to start again, kept in vm.json. */
export interface VmRecord {
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

/** Kept in run.json while the VM runs. */
export interface RunRecord {
  pid: number;
  started_at: string;
  accelerator: QemuAccelerator;
}

/** vm.json and run.json are the driver's own files: readable by the agent's group, no one else. */
const RECORD_MODE = 0o640;

export async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw err;
  }
}

/**
 * The runtime directory of one VM (`<stateDir>/<id>/`): its records, its
 * QEMU's pidfile and sockets. QEMU is found through the pidfile and is only
 * taken for this VM's when its command line names that very pidfile, so a
 * reused pid is never mistaken for it (or signalled).
 */
export class VmRuntimeDir {
  readonly dir: string;

  constructor(
    readonly id: string,
    stateDir: string,
  ) {
    this.dir = join(stateDir, id);
  }

  path(file: keyof typeof VM_FILES): string {
    return join(this.dir, VM_FILES[file]);
  }

  readRecord(): Promise<VmRecord | null> {
    return readJsonFile<VmRecord>(this.path('record'));
  }

  writeRecord(record: VmRecord): Promise<void> {
    return writeJsonAtomic(this.path('record'), record, RECORD_MODE);
  }

  readRun(): Promise<RunRecord | null> {
    return readJsonFile<RunRecord>(this.path('run'));
  }

  writeRun(run: RunRecord): Promise<void> {
    return writeJsonAtomic(this.path('run'), run, RECORD_MODE);
  }

  /** The pid in QEMU's pidfile (not checked; see `owns`). */
  pidFromFile(): number | null {
    return readPidFile(this.path('pidfile'));
  }

  /** True when `pid` is the QEMU of this VM. */
  owns(pid: number): boolean {
    return processHasArg(pid, this.path('pidfile'));
  }

  /** Wait up to `timeoutMs` for this VM's QEMU `pid` to be gone; true when it is. */
  waitGone(pid: number, timeoutMs: number): Promise<boolean> {
    return waitUntilGone(() => this.owns(pid), timeoutMs);
  }

  /**
   * run.json is the token of "floe believes this VM runs": whoever removes it
   * reports the exit, exactly once. True when this call took it for `pid`.
   */
  takeRunToken(pid: number): boolean {
    const path = this.path('run');
    try {
      const current = JSON.parse(readFileSync(path, 'utf8')) as RunRecord;
      if (current.pid !== pid) return false;
      unlinkSync(path);
      return true;
    } catch {
      return false;
    }
  }

  /** Leftovers of a QEMU that no longer runs: sockets, a pidfile SIGKILL left, the run token. */
  async clearRuntime(): Promise<void> {
    for (const file of ['run', 'pidfile', 'qmp', 'serial', 'vnc'] as const) {
      await unlink(this.path(file)).catch((err: NodeJS.ErrnoException) => {
        if (err.code !== 'ENOENT') throw err;
      });
    }
  }
}
