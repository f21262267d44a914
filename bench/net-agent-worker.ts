import os from 'node:os';
import { parentPort, workerData } from 'node:worker_threads';
import type { HostFacts } from '@floe/api';
import { AGENT_VERSION, Agent } from '@floe/agent';
import { FakeVmDriver } from '@floe/testkit/fake-driver';
import { HostNetworkDriver } from '../packages/agent/src/drivers/net/driver.js';
import { serveJobs } from './worker.js';

/** What the networking agent thread is started with. */
export interface NetAgentWorkerData {
  dataDir: string;
  server: string;
  /** The network namespace standing in for the host: every network command of the agent runs inside it. */
  netns: string;
  /** The host network driver's state directory (dnsmasq files under `<stateDir>/net/<network id>/`). */
  stateDir: string;
  /** The host's underlay address inside `netns` (the VXLAN source). */
  underlay: string;
}

/** Jobs of the networking agent thread. */
export type NetAgentJob = { kind: 'start' } | { kind: 'stop' };

// A real floe agent (link over mutual TLS, instance and network reconcilers)
// in its own thread, as on a real host. The agent itself stays in this
// process's namespace and talks to the control plane on 127.0.0.1; only the
// host network driver's commands (ip, bridge, nft, dnsmasq) run inside the
// benchmark's namespace. VMs are simulated in memory by the fake driver, which
// leaves the taps the agent creates unopened.
const data = workerData as NetAgentWorkerData;
const facts: HostFacts = {
  hostname: os.hostname(),
  agent_version: AGENT_VERSION,
  arch: process.arch,
  kernel: os.release(),
  cpus: 64,
  memory_mib: 64 * 1024,
  disk_free_gib: 1024,
  qemu_version: null,
  kvm: { present: false, usable: false, detail: 'not probed: benchmark with the fake driver' },
  accelerator: 'none',
  wireguard_kernel: false,
  vm_driver: 'fake',
  underlay_ipv4: data.underlay,
};
const host = new HostNetworkDriver({ stateDir: data.stateDir, underlay: data.underlay, netns: data.netns });
const agent = new Agent({
  dataDir: data.dataDir,
  server: data.server,
  driver: new FakeVmDriver(),
  facts: async () => facts,
  network: { host, stateDir: data.stateDir },
});

serveJobs<NetAgentJob>(parentPort!, async (job) => {
  switch (job.kind) {
    case 'start':
      await agent.start();
      return null;
    case 'stop':
      await agent.stop();
      return null;
  }
});
