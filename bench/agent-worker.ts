import os from 'node:os';
import { parentPort, workerData } from 'node:worker_threads';
import type { HostFacts } from '@floe/api';
import { AGENT_VERSION, Agent } from '@floe/agent';
import { FakeVmDriver } from '@floe/agent';
import WebSocket from 'ws';
import { HostNetworkDriver } from '../packages/agent/src/drivers/net/driver.js';
import { Trace, timed, traceWebSockets } from './trace.js';
import { serveAgentJobs } from './worker.js';

/** What the agent thread is started with. */
export interface AgentWorkerData {
  dataDir: string;
  server: string;
  /** The CPU count and memory the agent reports instead of this machine's (they size the host's capacity). */
  cpus: number;
  memoryMib: number;
  /**
   * Build networks too: every command of the host network driver (ip, bridge,
   * nft, dnsmasq) runs inside `netns`, which stands in for the host; the agent
   * itself stays in this process's namespace and talks to the control plane on
   * 127.0.0.1. Without it the agent ignores networks.
   */
  network?: { netns: string; stateDir: string; underlay: string };
  /** Note link messages and driver calls for the `trace` job (see trace.ts). */
  trace?: boolean;
}

/** Jobs of the agent thread. */
export type AgentJob = { kind: 'start' } | { kind: 'stop' } | { kind: 'count' } | { kind: 'trace' };

// A real floe agent (link over mutual TLS, reconcilers, applied-state file) in
// its own thread, so its work does not share the control plane's event loop,
// as on a real host. VMs are simulated in memory by the fake driver, which
// leaves the taps the agent creates for them unopened.
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
  ...(data.network === undefined ? {} : { underlay_ipv4: data.network.underlay }),
};
const trace = new Trace();
if (data.trace === true) traceWebSockets(WebSocket, 'agent', trace);
const traced = <T extends object>(target: T, name: string): T =>
  data.trace === true ? timed(target, name, trace) : target;
const fake = new FakeVmDriver();
const driver = traced(fake, 'vm');
const net = data.network;
const agent = new Agent({
  dataDir: data.dataDir,
  server: data.server,
  driver,
  facts: () => Promise.resolve(facts),
  ...(net === undefined
    ? {}
    : {
        network: {
          host: traced(
            new HostNetworkDriver({ stateDir: net.stateDir, underlay: net.underlay, netns: net.netns }),
            'net',
          ),
          stateDir: net.stateDir,
        },
      }),
  // Its listeners would open in this process's namespace, not the simulated host's.
  metadata: false,
});

serveAgentJobs<AgentJob>(parentPort!, agent, async (job) =>
  job.kind === 'trace' ? trace.take() : (await fake.list()).filter((vm) => vm.state === 'running').length,
);
