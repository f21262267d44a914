import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parentPort, workerData } from 'node:worker_threads';
import type { DesiredInstance, HostFacts } from '@floe/api';
import type { VmCreateContext, VmInfo } from '@floe/agent';
import { AGENT_VERSION, Agent, QemuDriver } from '@floe/agent';
import { epochMs, serveAgentJobs } from './worker.js';

/** What the agent thread of the boot benchmark is started with. */
export interface BootAgentWorkerData {
  dataDir: string;
  server: string;
  accelerator: 'kvm' | 'tcg';
}

/** Jobs of the agent thread. */
export type BootAgentJob = { kind: 'start' } | { kind: 'stop' } | { kind: 'timings'; id: string; timeoutMs: number };

/**
 * When the agent's QEMU driver did what for one VM, in epoch milliseconds
 * (`epochMs`, comparable across threads). `startDone` is when `driver.start`
 * returned: the driver returns right after QEMU answered its first QMP
 * `query-status`, so this is the moment floe's VM answers QMP.
 */
export interface DriverTimings {
  createCalled: number | null;
  createDone: number | null;
  startCalled: number | null;
  startDone: number | null;
  /** Why create or start failed, if one did. */
  error: string | null;
  pid: number | null;
}

const empty = (): DriverTimings => ({
  createCalled: null,
  createDone: null,
  startCalled: null,
  startDone: null,
  error: null,
  pid: null,
});

/**
 * The real QEMU driver, with a clock on the calls the reconciler makes. It
 * only notes times around `super`'s calls; the VM work is the driver's own.
 */
class TimedQemuDriver extends QemuDriver {
  readonly timings = new Map<string, DriverTimings>();
  private readonly waiters = new Map<string, Array<() => void>>();

  private entry(id: string): DriverTimings {
    let t = this.timings.get(id);
    if (t === undefined) {
      t = empty();
      this.timings.set(id, t);
    }
    return t;
  }

  private settle(id: string): void {
    for (const w of this.waiters.get(id) ?? []) w();
    this.waiters.delete(id);
  }

  /** Resolves once `start` of `id` returned or failed (or create failed). */
  settled(id: string): Promise<void> {
    const t = this.timings.get(id);
    if (t !== undefined && (t.startDone !== null || t.error !== null)) return Promise.resolve();
    return new Promise((resolve) => this.waiters.set(id, [...(this.waiters.get(id) ?? []), resolve]));
  }

  override async create(vm: DesiredInstance, ctx?: VmCreateContext): Promise<void> {
    const t = this.entry(vm.id);
    t.createCalled ??= epochMs();
    try {
      await super.create(vm, ctx);
      t.createDone ??= epochMs();
    } catch (err) {
      t.error ??= `create: ${(err as Error).message}`;
      this.settle(vm.id);
      throw err;
    }
  }

  override async start(id: string): Promise<VmInfo> {
    const t = this.entry(id);
    t.startCalled ??= epochMs();
    try {
      const info = await super.start(id);
      t.startDone ??= epochMs();
      t.pid ??= info.pid;
      this.settle(id);
      return info;
    } catch (err) {
      t.error ??= `start: ${(err as Error).message}`;
      this.settle(id);
      throw err;
    }
  }
}

function qemuVersion(): string | null {
  const r = spawnSync('qemu-system-x86_64', ['--version'], { encoding: 'utf8' });
  return r.status === 0 ? (/version (\S+)/.exec(r.stdout)?.[1] ?? null) : null;
}

// A real floe agent (link over mutual TLS, reconciler, image cache) with the
// real QEMU driver, in its own thread so its work does not share the control
// plane's event loop, as on a real host. The facts are this machine's, except
// that the KVM probe is skipped: the benchmark picks the accelerator itself.
const data = workerData as BootAgentWorkerData;
const facts: HostFacts = {
  hostname: os.hostname(),
  agent_version: AGENT_VERSION,
  arch: process.arch === 'x64' ? 'x86_64' : process.arch,
  kernel: os.release(),
  cpus: Math.max(1, os.availableParallelism()),
  memory_mib: Math.floor(os.totalmem() / 2 ** 20),
  disk_free_gib: 64,
  qemu_version: qemuVersion(),
  kvm: {
    present: existsSync('/dev/kvm'),
    usable: data.accelerator === 'kvm',
    detail: 'not probed: the boot benchmark chose the accelerator',
  },
  accelerator: data.accelerator,
  wireguard_kernel: false,
  vm_driver: 'qemu',
};
const driver = new TimedQemuDriver({ stateDir: path.join(data.dataDir, 'vms'), accelerator: data.accelerator });
const agent = new Agent({ dataDir: data.dataDir, server: data.server, driver, facts: async () => facts });

serveAgentJobs<BootAgentJob>(parentPort!, agent, async (job) => {
  if (job.kind !== 'timings') return null;
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<void>((resolve) => (timer = setTimeout(resolve, job.timeoutMs)));
  await Promise.race([driver.settled(job.id), timedOut]);
  clearTimeout(timer);
  return driver.timings.get(job.id) ?? empty();
});
