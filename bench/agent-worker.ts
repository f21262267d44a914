import os from 'node:os';
import { parentPort, workerData } from 'node:worker_threads';
import type { HostFacts } from '@floe/api';
import { AGENT_VERSION, Agent } from '@floe/agent';
import { FakeVmDriver } from '@floe/testkit/fake-driver';
import { serveJobs } from './worker.js';

/** What the agent thread is started with. */
export interface AgentWorkerData {
  dataDir: string;
  server: string;
  /** The CPU count and memory the agent reports instead of this machine's (they size the host's capacity). */
  cpus: number;
  memoryMib: number;
}

/** Jobs of the agent thread. */
export type AgentJob = { kind: 'start' } | { kind: 'stop' } | { kind: 'count' };

// A real floe agent (link over mutual TLS, reconciler, applied-state file) in
// its own thread, so its work does not share the control plane's event loop,
// as on a real host. VMs are simulated in memory by the fake driver.
const data = workerData as AgentWorkerData;
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
const driver = new FakeVmDriver();
const agent = new Agent({ dataDir: data.dataDir, server: data.server, driver, facts: async () => facts });

serveJobs<AgentJob>(parentPort!, async (job) => {
  switch (job.kind) {
    case 'start':
      await agent.start();
      return null;
    case 'stop':
      await agent.stop();
      return null;
    case 'count':
      return (await driver.list()).filter((vm) => vm.state === 'running').length;
  }
});
