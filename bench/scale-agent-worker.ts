import os from 'node:os';
import { parentPort, workerData } from 'node:worker_threads';
import type { DesiredInstance, HostFacts } from '@floe/api';
import { AGENT_VERSION, Agent } from '@floe/agent';
import { FakeVmDriver } from '@floe/agent';
import { epochMs, serveJobs } from './worker.js';
import type { VmCreateContext } from '@floe/agent';

/** What a fleet thread is started with: the agents it runs. */
export interface FleetWorkerData {
  server: string;
  agents: Array<{ hostId: string; dataDir: string }>;
  cpus: number;
  memoryMib: number;
  /** Agents dialing at once while starting. */
  startConcurrency: number;
}

/** Jobs of a fleet thread. */
export type FleetJob = { kind: 'start' } | { kind: 'stop' } | { kind: 'count' };

/** What a fleet thread's agents have seen so far. */
export interface FleetCount {
  /** VMs created by the agents' drivers. */
  created: number;
  /** Of those, running. */
  running: number;
  /** Epoch ms of the first and the last `driver.create` call (null before any). */
  firstCreateAt: number | null;
  lastCreateAt: number | null;
}

/** The fake driver with a clock on `create`: when the agent first saw each instance. */
class CountingFakeDriver extends FakeVmDriver {
  static created = 0;
  static firstCreateAt: number | null = null;
  static lastCreateAt: number | null = null;

  override async create(vm: DesiredInstance, ctx?: VmCreateContext): Promise<void> {
    const now = epochMs();
    CountingFakeDriver.created++;
    CountingFakeDriver.firstCreateAt ??= now;
    CountingFakeDriver.lastCreateAt = now;
    return super.create(vm, ctx);
  }
}

// Many real floe agents (each its own mutual TLS link, reconcilers and
// applied-state file) in one thread; their VMs are simulated in memory by the
// fake driver. Agents do little between messages, so one thread holds many.
const data = workerData as FleetWorkerData;
const facts: HostFacts = {
  hostname: os.hostname(),
  agent_version: AGENT_VERSION,
  arch: process.arch,
  kernel: os.release(),
  cpus: data.cpus,
  memory_mib: data.memoryMib,
  disk_free_gib: 1024,
  qemu_version: null,
  kvm: { present: false, usable: false, detail: 'not probed: benchmark with the fake driver' },
  accelerator: 'none',
  wireguard_kernel: false,
  vm_driver: 'fake',
};
const fleet = data.agents.map((a) => {
  const driver = new CountingFakeDriver();
  const agent = new Agent({ dataDir: a.dataDir, server: data.server, driver, facts: () => Promise.resolve(facts) });
  return { agent, driver };
});

async function each(concurrency: number, fn: (a: (typeof fleet)[number]) => Promise<void>): Promise<void> {
  let next = 0;
  const run = async () => {
    for (let i = next++; i < fleet.length; i = next++) await fn(fleet[i]!);
  };
  await Promise.all(Array.from({ length: Math.max(1, concurrency) }, run));
}

async function count(): Promise<FleetCount> {
  let running = 0;
  for (const { driver } of fleet) running += (await driver.list()).filter((vm) => vm.state === 'running').length;
  return {
    created: CountingFakeDriver.created,
    running,
    firstCreateAt: CountingFakeDriver.firstCreateAt,
    lastCreateAt: CountingFakeDriver.lastCreateAt,
  };
}

serveJobs<FleetJob>(parentPort!, async (job) => {
  switch (job.kind) {
    case 'start':
      await each(data.startConcurrency, ({ agent }) => agent.start());
      return null;
    case 'stop':
      await each(64, ({ agent }) => agent.stop());
      return null;
    case 'count':
      return count();
  }
});
