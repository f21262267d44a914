/**
 * The API side of the networking benchmark: a control plane in this process,
 * an agent in a worker thread whose network commands run in a namespace, and
 * one round from `POST /v1/networks` to a "VM" leasing its NIC's address.
 */
import { readFile, rm } from 'node:fs/promises';
import path from 'node:path';
import type { Network, Nic } from '@floe/api';
import { FloeClient } from '@floe/client';
import WebSocket from 'ws';
import { dnsmasqPaths, dnsmasqRunDir } from '../packages/agent/src/drivers/net/dnsmasq.js';
import { HostNetworkDriver } from '../packages/agent/src/drivers/net/driver.js';
import { bridgeName, tapName } from '../packages/agent/src/drivers/net/names.js';
import { storeTargetsFor } from '../packages/server/src/db/testing.js';
import { SignalBus } from '../packages/server/src/services/context.js';
import { prepareAgentDir, startTestControlPlane, type TestControlPlane } from '../packages/server/src/testing.js';
import type { AgentJob, AgentWorkerData } from './agent-worker.js';
import type { Round } from './net-hand.js';
import { deleteNamespace, ip, links, plugAndLease, TIMEOUT_MS, UNDERLAY, until, vmNamespace } from './net-ns.js';
import { Trace, traceWebSockets, type TraceEntry } from './trace.js';
import { BenchWorker, epochMs } from './worker.js';

const IPV4 = '10.10.0.0/24';
const IPV6 = 'fd00:10::/64';

/** The API side: one control plane, one agent and its host namespace for the whole run. */
export interface ApiRig {
  cp: TestControlPlane;
  client: FloeClient;
  agent: BenchWorker<AgentJob>;
  agentDir: string;
  /** The agent's host network driver state directory, and a driver over it that only reads (pidfiles). */
  stateDir: string;
  reader: HostNetworkDriver;
  hostNs: string;
  /** The control plane's side of the path (HTTP, signals, link messages, operations). */
  trace: Trace;
}

/** Note the control plane's moments: requests in and answered, signals, link messages, operations ending. */
function traceControlPlane(cp: TestControlPlane): Trace {
  const trace = new Trace();
  traceWebSockets(WebSocket, 'cp', trace);
  const proto = SignalBus.prototype as unknown as { send: (this: SignalBus, ...args: unknown[]) => void };
  const send = proto.send;
  proto.send = function (this: SignalBus, ...args: unknown[]) {
    trace.note(`cp signal ${String(args[0])}`);
    send.apply(this, args);
  };
  cp.app.http.server.on(
    'request',
    (req: { method?: string; url?: string }, res: { once: (e: string, f: () => void) => void }) => {
      const what = `${req.method} ${(req.url ?? '').replace(/[0-9A-Z]{26}/g, '{id}').split('?')[0]}`;
      trace.note(`cp http ${what}`);
      res.once('finish', () => trace.note(`cp http answered ${what}`));
    },
  );
  cp.app.services.bus.subscribe((e) => {
    const op =
      e.kind === 'operation' ? (e.data.operation as { kind?: string; status?: string } | undefined) : undefined;
    if (op?.status === 'succeeded' || op?.status === 'failed') trace.note(`cp operation ${op.kind} ${op.status}`);
  });
  return trace;
}

export async function startRig(
  state: string,
  hostNs: string,
  capacity: { cpus: number; memoryMib: number } = { cpus: 64, memoryMib: 64 * 1024 },
): Promise<ApiRig> {
  const target = storeTargetsFor(process.env).find((t) => t.name === 'sqlite')!;
  const cp = await startTestControlPlane(await target.open(), { FLOE_LOG_LEVEL: 'error' });
  const client = new FloeClient({ url: cp.url, token: cp.adminToken, ca: cp.ca.certPem });
  const { hostId, dataDir } = await prepareAgentDir(cp, 'bench-net-host');
  const stateDir = path.join(state, 'agent-net');
  const agent = new BenchWorker<AgentJob>(new URL('./agent-worker.ts', import.meta.url), {
    dataDir,
    server: cp.url,
    cpus: capacity.cpus,
    memoryMib: capacity.memoryMib,
    network: { netns: hostNs, stateDir, underlay: UNDERLAY },
    trace: true,
  } satisfies AgentWorkerData);
  const rig: ApiRig = {
    cp,
    client,
    agent,
    agentDir: dataDir,
    stateDir,
    reader: new HostNetworkDriver({ stateDir, underlay: UNDERLAY, netns: hostNs }),
    hostNs,
    trace: traceControlPlane(cp),
  };
  try {
    await agent.call({ kind: 'start' });
    await until(async () => (await client.hosts.get(hostId)).status.state === 'online', 'the agent to connect');
    await client.images.create({ name: 'bench' });
    return rig;
  } catch (err) {
    await stopRig(rig);
    throw err;
  }
}

export async function stopRig(rig: ApiRig): Promise<void> {
  await rig.agent.call({ kind: 'stop' }).catch(() => undefined);
  await rig.agent.close();
  await rig.client.close();
  await rig.cp.close();
  await rm(rig.agentDir, { recursive: true, force: true });
  await rm(dnsmasqRunDir(rig.stateDir), { recursive: true, force: true });
}

/**
 * API request → working network. The clock starts before `POST /v1/networks`
 * and stops when both (a) the "VM" has leased the NIC's IPAM address from the
 * network's dnsmasq and (b) the NIC's tap is in the bridge, which is up. The
 * VM is plugged in as soon as a dnsmasq with the NIC's pinned lease runs
 * (its files polled every POLL_MS); the tap is polled alongside with one
 * `ip -j link show` every POLL_MS.
 */
export async function viaApi(
  rig: ApiRig,
  round: string,
): Promise<{ round: Round; network: Network; nic: Nic; hostname: string; trace: TraceEntry[]; startAt: number }> {
  const { client, hostNs } = rig;
  // The MAC is not known before the API answers: the VM's eth0 gets it while floe works.
  const vm = await vmNamespace(hostNs, null, 1450);
  const name = `bench-${round}`;
  let network: Network | null = null;
  let instanceId: string | null = null;
  try {
    rig.trace.take();
    await rig.agent.call({ kind: 'trace' });
    const startAt = epochMs();
    const t0 = performance.now();
    const at = () => performance.now() - t0;
    network = await client.networks.create({ name, ipv4: IPV4, ipv6: IPV6, gateway: 'host' });
    const networkAt = at();
    const { instance } = await client.instances.create({
      name,
      image: 'bench',
      machine_type: 'nano',
      networks: [network.id],
    });
    instanceId = instance.id;
    const instanceAt = at();
    const [nic] = await client.instances.nics(instance.id);
    if (nic === undefined || nic.ipv4 === null) throw new Error('the instance has no NIC with an IPv4 address');
    await ip(vm, 'link', 'set', 'eth0', 'address', nic.mac, 'mtu', String(network.spec.mtu));
    const net = network;
    const bridge = bridgeName(net.id);
    const paths = dnsmasqPaths(rig.stateDir, net.id);
    // Set when the lease side failed, so the tap poll stops too.
    let failed = false;
    const tapDone = until(async () => {
      if (failed) return -1;
      const now = await links(hostNs);
      const br = now.get(bridge);
      const tap = now.get(tapName(nic.id));
      return br?.up === true && tap?.master === bridge && tap.up ? at() : null;
    }, 'the tap in the bridge');
    const leaseDone = (async () => {
      await until(async () => {
        const hosts = await readFile(paths.hostsFile, 'utf8').catch(() => '');
        return hosts.includes(`${nic.mac},`) && (await rig.reader.dhcpPid(net.id)) !== null;
      }, "the network's dnsmasq with the NIC's lease");
      const dnsmasqAt = at();
      const lease = await plugAndLease(hostNs, vm, bridge);
      if (lease !== nic.ipv4) throw new Error(`API: the client leased ${lease}, not the NIC's ${nic.ipv4}`);
      return { dnsmasqAt, leaseAt: at() };
    })().catch((err: unknown) => {
      failed = true;
      throw err;
    });
    const [tapAt, { dnsmasqAt, leaseAt }] = await Promise.all([tapDone, leaseDone]);
    const ms = Math.max(tapAt, leaseAt);
    const trace = [...rig.trace.take(), ...(await rig.agent.call<TraceEntry[]>({ kind: 'trace' }))];
    trace.push({ at: startAt + dnsmasqAt, what: "bench sees dnsmasq with the NIC's lease" });
    trace.push({ at: startAt + tapAt, what: 'bench sees the tap in the bridge' });
    trace.push({ at: startAt + leaseAt, what: 'bench: udhcpc leased the address' });
    return {
      trace,
      startAt,
      round: {
        ms,
        parts: { network: networkAt, instance: instanceAt, dnsmasq: dnsmasqAt, tap: tapAt, lease: leaseAt },
      },
      network: net,
      nic,
      hostname: name,
    };
  } finally {
    await deleteNamespace(vm);
    // Not measured: take it all down again, and wait until the agent removed the network from the host.
    if (instanceId !== null) {
      const op = await client.instances.delete(instanceId);
      await client.operations.wait(op.id, { timeoutMs: TIMEOUT_MS });
    }
    if (network !== null) {
      const id = network.id;
      await client.networks.delete(id);
      await until(
        async () => !(await links(hostNs)).has(bridgeName(id)) && (await rig.reader.dhcpPid(id)) === null,
        'the agent to remove the network',
      );
    }
  }
}
