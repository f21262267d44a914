/**
 * The host networking benchmark (`npm run bench:net`, root only). Measures the
 * time to a working network on a host — bridge up, the NIC's tap in the
 * bridge, the network's dnsmasq running and handing the NIC's address to a
 * DHCP client — three ways, taking turns round after round in the same run:
 *   1. by hand: the same `ip`/`bridge`/`nft`/dnsmasq commands floe builds, run
 *      one after the other as an administrator's script would (the baseline);
 *   2. floe's HostNetworkDriver called directly (the host half of floe alone);
 *   3. through floe's API: `POST /v1/networks` and `POST /v1/instances` with a
 *      NIC on it, to a control plane started in this process (SQLite), with a
 *      real agent (fake VM driver) whose network commands run in a namespace.
 * In each, a "VM" namespace whose eth0 carries the NIC's MAC is plugged into
 * the bridge once the network's dnsmasq runs, and busybox udhcpc must get the
 * NIC's address: the clock stops when it has. Benchmarks report; they never
 * fail on times.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { Network, Nic } from '@floe/api';
import { FloeClient } from '@floe/client';
import WebSocket from 'ws';
import { bridgeCommands, tapCommands } from '../packages/agent/src/drivers/net/link-commands.js';
import { dnsmasqFiles, dnsmasqPaths, dnsmasqRunDir } from '../packages/agent/src/drivers/net/dnsmasq.js';
import { HostNetworkDriver } from '../packages/agent/src/drivers/net/driver.js';
import { bridgeName, tapName } from '../packages/agent/src/drivers/net/names.js';
import { nftRuleset } from '../packages/agent/src/drivers/net/ruleset.js';
import type { NetSpec, NicSpec } from '../packages/agent/src/drivers/net/types.js';
import { run } from '../packages/agent/src/host/exec.js';
import { storeTargetsFor } from '../packages/server/src/db/testing.js';
import { SignalBus } from '../packages/server/src/services/context.js';
import { prepareAgentDir, startTestControlPlane, type TestControlPlane } from '../packages/server/src/testing.js';
import type { AgentJob, AgentWorkerData } from './agent-worker.js';
import { fmt, percentile, sorted, table } from './report.js';
import { Trace, traceSteps, traceWebSockets, type TraceEntry } from './trace.js';
import { BenchWorker, epochMs } from './worker.js';

const ROUNDS = Number(process.env.FLOE_BENCH_RUNS ?? 10);
const UNDERLAY = '192.0.2.1';
const IPV4 = '10.10.0.0/24';
const IPV6 = 'fd00:10::/64';
/** How often the benchmark looks for dnsmasq and the tap while floe works. */
const POLL_MS = 5;
/** Longest wait for any one thing before a round counts as failed. */
const TIMEOUT_MS = 30_000;
/** The host end of the "VM" veth, in the host namespace until it is plugged into the bridge. */
const VM_PORT = 'bvm0';

const log = (line: string) => process.stdout.write(`${line}\n`);
const ip = (ns: string, ...args: string[]) => run('ip', ['-n', ns, ...args]);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A namespace standing in for a host: loopback up and an underlay veth carrying the VXLAN source address. */
async function hostNamespace(): Promise<string> {
  const ns = `floe-b-${randomBytes(4).toString('hex')}`;
  await run('ip', ['netns', 'add', ns]);
  namespaces.add(ns);
  await ip(ns, 'link', 'set', 'lo', 'up');
  // A veth pair: dummy interfaces are not always built into the kernel.
  await ip(ns, 'link', 'add', 'ul', 'type', 'veth', 'peer', 'name', 'ul-peer');
  await ip(ns, 'addr', 'add', `${UNDERLAY}/24`, 'dev', 'ul');
  await ip(ns, 'link', 'set', 'ul', 'up');
  return ns;
}

/** Namespaces this run created and has not deleted yet: what Ctrl-C cleans up. */
const namespaces = new Set<string>();

async function deleteNamespace(ns: string): Promise<void> {
  await run('ip', ['netns', 'del', ns], { allowFail: true });
  namespaces.delete(ns);
}

/**
 * A "VM": a namespace whose eth0 (the NIC's MAC when known, the network MTU)
 * is a veth whose other end, `VM_PORT`, waits in `hostNs` to be plugged into
 * a bridge. A tap the fake VM driver never opens has no carrier, so this veth
 * is what carries the guest's DHCP exchange.
 */
async function vmNamespace(hostNs: string, mac: string | null, mtu: number): Promise<string> {
  const ns = `floe-v-${randomBytes(4).toString('hex')}`;
  await run('ip', ['netns', 'add', ns]);
  namespaces.add(ns);
  await run('ip', ['link', 'add', VM_PORT, 'netns', hostNs, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns]);
  await ip(ns, 'link', 'set', 'lo', 'up');
  await ip(ns, 'link', 'set', 'eth0', ...(mac === null ? [] : ['address', mac]), 'mtu', String(mtu), 'up');
  return ns;
}

/** Plug the VM's veth into the bridge and ask for an address like a guest would (busybox udhcpc); the address leased. */
async function plugAndLease(hostNs: string, vmNs: string, bridge: string): Promise<string> {
  await ip(hostNs, 'link', 'set', VM_PORT, 'master', bridge, 'up');
  const out = await run(
    'ip',
    [
      'netns',
      'exec',
      vmNs,
      'busybox',
      'udhcpc',
      '-i',
      'eth0',
      '-f',
      '-q',
      '-n',
      '-t',
      '5',
      '-T',
      '1',
      '-s',
      '/bin/true',
    ],
    { allowFail: true },
  );
  const m = /lease of (\d+\.\d+\.\d+\.\d+) obtained/.exec(out.stdout + out.stderr);
  if (!m) throw new Error(`udhcpc got no lease: ${(out.stdout + out.stderr).trim()}`);
  return m[1]!;
}

async function until<T>(
  check: () => Promise<T | false | undefined | null>,
  what: string,
  timeoutMs = TIMEOUT_MS,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await check();
    if (v !== false && v !== undefined && v !== null) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(POLL_MS);
  }
}

/** The network and NIC both sides build: what the control plane made of the warm-up request. */
interface Subject {
  net: NetSpec;
  nic: NicSpec;
}

function subjectOf(network: Network, nic: Nic, hostname: string): Subject {
  const net: NetSpec = {
    id: network.id,
    vni: network.vni,
    ipv4: network.spec.ipv4 === null ? null : { cidr: network.spec.ipv4, gateway: network.status.gateway4 },
    ipv6: network.spec.ipv6 === null ? null : { cidr: network.spec.ipv6, gateway: network.status.gateway6 },
    mtu: network.spec.mtu,
    gatewayMode: 'host',
    dns: network.spec.dns,
    peers: [],
  };
  return {
    net,
    nic: {
      id: nic.id,
      instanceId: nic.instance,
      networkId: network.id,
      mac: nic.mac,
      ipv4: nic.ipv4,
      ipv6: nic.ipv6,
      hostname,
    },
  };
}

/** One measured round: total ms, and for the API, when each part was done (ms after the start). */
interface Round {
  ms: number;
  parts: Record<string, number>;
}

/** Baseline: the commands floe builds for the network, run directly one after the other, then the lease. */
async function byHand(state: string, s: Subject): Promise<Round> {
  const paths = dnsmasqPaths(state, s.net.id);
  const cmds = [...bridgeCommands(s.net, { underlay: UNDERLAY }), ...tapCommands(s.nic, s.net)];
  const files = dnsmasqFiles(s.net, [s.nic], paths);
  const ruleset = nftRuleset([s.net], [s.nic]);
  const ns = await hostNamespace();
  const vm = await vmNamespace(ns, s.nic.mac, s.net.mtu);
  try {
    const t0 = performance.now();
    for (const [cmd, ...args] of cmds) await run('ip', ['netns', 'exec', ns, cmd!, ...args]);
    await run('ip', ['netns', 'exec', ns, 'nft', '-f', '-'], { input: ruleset });
    await mkdir(paths.dir, { recursive: true });
    await mkdir(paths.runDir, { recursive: true });
    await writeFile(paths.hostsFile, files.hosts);
    await writeFile(paths.namesFile, files.names);
    await writeFile(paths.conf, files.conf);
    await run('ip', ['netns', 'exec', ns, 'dnsmasq', `--conf-file=${paths.conf}`]);
    const dhcpAt = performance.now() - t0;
    const lease = await plugAndLease(ns, vm, bridgeName(s.net.id));
    const ms = performance.now() - t0;
    if (lease !== s.nic.ipv4) throw new Error(`by hand: the client leased ${lease}, not ${s.nic.ipv4}`);
    return { ms, parts: { dnsmasq: dhcpAt } };
  } finally {
    // dnsmasq first: a process inside a namespace keeps it alive after `ip netns del`.
    await new HostNetworkDriver({ stateDir: state, underlay: UNDERLAY, netns: ns }).stopDhcp(s.net.id);
    await rm(dnsmasqRunDir(state), { recursive: true, force: true });
    await deleteNamespace(vm);
    await deleteNamespace(ns);
  }
}

/** floe's host driver alone: observing first and validating everything, then the same lease. */
async function viaDriver(state: string, s: Subject): Promise<Round> {
  const ns = await hostNamespace();
  const vm = await vmNamespace(ns, s.nic.mac, s.net.mtu);
  const driver = new HostNetworkDriver({ stateDir: state, underlay: UNDERLAY, netns: ns });
  try {
    const t0 = performance.now();
    const bridge = await driver.ensureNetwork(s.net);
    await driver.ensureTap(s.nic, s.net);
    await driver.applyFirewall([s.net], [s.nic]);
    await driver.ensureDhcp(s.net, [s.nic]);
    const dhcpAt = performance.now() - t0;
    const lease = await plugAndLease(ns, vm, bridge);
    const ms = performance.now() - t0;
    if (lease !== s.nic.ipv4) throw new Error(`driver: the client leased ${lease}, not ${s.nic.ipv4}`);
    return { ms, parts: { dnsmasq: dhcpAt } };
  } finally {
    await driver.stopDhcp(s.net.id);
    await rm(dnsmasqRunDir(state), { recursive: true, force: true });
    await deleteNamespace(vm);
    await deleteNamespace(ns);
  }
}

/** The API side: one control plane, one agent and its host namespace for the whole run. */
interface ApiRig {
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

async function startRig(state: string, hostNs: string): Promise<ApiRig> {
  const target = storeTargetsFor(process.env).find((t) => t.name === 'sqlite')!;
  const cp = await startTestControlPlane(await target.open(), { FLOE_LOG_LEVEL: 'error' });
  const client = new FloeClient({ url: cp.url, token: cp.adminToken, ca: cp.ca.certPem });
  const { hostId, dataDir } = await prepareAgentDir(cp, 'bench-net-host');
  const stateDir = path.join(state, 'agent-net');
  const agent = new BenchWorker<AgentJob>(new URL('./agent-worker.ts', import.meta.url), {
    dataDir,
    server: cp.url,
    cpus: 64,
    memoryMib: 64 * 1024,
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

async function stopRig(rig: ApiRig): Promise<void> {
  await rig.agent.call({ kind: 'stop' }).catch(() => undefined);
  await rig.agent.close();
  await rig.client.close();
  await rig.cp.close();
  await rm(rig.agentDir, { recursive: true, force: true });
  await rm(dnsmasqRunDir(rig.stateDir), { recursive: true, force: true });
}

/** Every interface of the namespace by name: its `master` and whether it is up (`ip -j link show`). */
async function links(ns: string): Promise<Map<string, { master: string | null; up: boolean }>> {
  const out = await run('ip', ['-n', ns, '-j', 'link', 'show']);
  const list = JSON.parse(out.stdout || '[]') as { ifname: string; master?: string; flags?: string[] }[];
  return new Map(list.map((l) => [l.ifname, { master: l.master ?? null, up: (l.flags ?? []).includes('UP') }]));
}

/**
 * API request → working network. The clock starts before `POST /v1/networks`
 * and stops when both (a) the "VM" has leased the NIC's IPAM address from the
 * network's dnsmasq and (b) the NIC's tap is in the bridge, which is up. The
 * VM is plugged in as soon as a dnsmasq with the NIC's pinned lease runs
 * (its files polled every POLL_MS); the tap is polled alongside with one
 * `ip -j link show` every POLL_MS.
 */
async function viaApi(
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

/** Kill every dnsmasq started from a config under `dir` (by its pidfile, checked against its command line). */
async function killDnsmasqUnder(dir: string): Promise<void> {
  const files = await readdir(dir, { recursive: true }).catch(() => [] as string[]);
  for (const f of files.filter((x) => path.basename(x) === 'dnsmasq.pid')) {
    const pidFile = path.join(dir, f);
    const pid = Number.parseInt(await readFile(pidFile, 'utf8').catch(() => ''), 10);
    const cmdline =
      Number.isInteger(pid) && pid > 1 ? await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '') : '';
    if (cmdline.split('\0').includes(`--conf-file=${path.join(path.dirname(pidFile), 'dnsmasq.conf')}`))
      process.kill(pid, 'SIGKILL');
  }
}

interface Column {
  label: string;
  rounds: Round[];
}

const mid = (values: readonly number[]) => {
  const s = sorted(values);
  return `${fmt(percentile(s, 0.5))} (${fmt(percentile(s, 0.1))}, ${fmt(percentile(s, 0.9))})`;
};

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) {
    log('bench:net needs root (it creates network namespaces); nothing measured');
    return;
  }
  const cpus = os.cpus();
  log(
    `floe networking benchmark — ${cpus.length} CPU(s) (${cpus[0]?.model ?? 'unknown'}), Node.js ${process.version}, ${os.platform()} ${os.release()}, ` +
      `load average ${os
        .loadavg()
        .map((l) => l.toFixed(2))
        .join(' ')} before the run`,
  );
  log(
    `${ROUNDS} rounds after a warm-up of each; by hand, the driver and the API take turns. Every round ends with busybox udhcpc in a "VM" namespace leasing the NIC's address.`,
  );
  const state = await mkdtemp(path.join(os.tmpdir(), 'floe-bench-net-'));
  const hostNs = await hostNamespace();
  let rig: ApiRig | null = null;
  process.once('SIGINT', () => {
    log('interrupted: cleaning up');
    void (async () => {
      // dnsmasq first: a process inside a namespace keeps it alive after `ip netns del`.
      await killDnsmasqUnder(state);
      for (const ns of [...namespaces]) await deleteNamespace(ns);
      await rig?.agent.close();
      await rig?.cp.close().catch(() => undefined);
      await rm(state, { recursive: true, force: true });
      process.exit(130);
    })();
  });
  const hand: Column = { label: 'by hand: ip, bridge, nft, dnsmasq', rounds: [] };
  const driver: Column = { label: 'floe HostNetworkDriver', rounds: [] };
  const api: Column = { label: 'floe API request → working network', rounds: [] };
  const traces: Array<{ startAt: number; entries: TraceEntry[] }> = [];
  try {
    rig = await startRig(state, hostNs);
    log(
      `control plane (SQLite) at ${rig.cp.url}; agent in a worker thread, its network commands in namespace ${hostNs}`,
    );
    const warm = await viaApi(rig, 'warm');
    const subject = subjectOf(warm.network, warm.nic, warm.hostname);
    log(
      `network ${subject.net.ipv4?.cidr} + ${subject.net.ipv6?.cidr}, gateway host, MTU ${subject.net.mtu}; NIC ${subject.nic.mac} → ${subject.nic.ipv4}, ${subject.nic.ipv6}`,
    );
    await byHand(path.join(state, 'hw'), subject);
    await viaDriver(path.join(state, 'dw'), subject);
    for (let i = 0; i < ROUNDS; i++) {
      // Each takes the lead in turn, so a slow moment of the machine does not always hit the same one.
      const order = [
        async () => hand.rounds.push(await byHand(path.join(state, `h${i}`), subject)),
        async () => driver.rounds.push(await viaDriver(path.join(state, `d${i}`), subject)),
        async () => {
          const r = await viaApi(rig!, String(i));
          api.rounds.push(r.round);
          traces.push({ startAt: r.startAt, entries: r.trace });
        },
      ];
      for (let k = 0; k < order.length; k++) await order[(i + k) % order.length]!();
      const last = (c: Column) => fmt(c.rounds.at(-1)!.ms);
      log(`round ${i + 1}: by hand ${last(hand)} ms, driver ${last(driver)} ms, API ${last(api)} ms`);
    }
  } finally {
    if (rig !== null) await stopRig(rig);
    // Anything a failed round left running (a dnsmasq keeps its namespace alive after `ip netns del`).
    await killDnsmasqUnder(state);
    for (const ns of [...namespaces]) await deleteNamespace(ns);
    await rm(state, { recursive: true, force: true });
  }

  const p50 = (c: Column) => percentile(sorted(c.rounds.map((r) => r.ms)), 0.5);
  log('');
  log('Where the API rounds spend their time (ms after the request was sent, median (p10, p90)):');
  log(
    table(
      ['step', 'done at'],
      ['network', 'instance', 'dnsmasq', 'tap', 'lease'].map((k) => [
        {
          network: 'POST /v1/networks answered',
          instance: 'POST /v1/instances answered',
          dnsmasq: "dnsmasq runs with the NIC's lease",
          tap: 'tap in the bridge, up',
          lease: 'udhcpc leased the address',
        }[k]!,
        mid(api.rounds.map((r) => r.parts[k]!)),
      ]),
    ),
  );
  log('');
  log(
    'The API rounds step by step (ms after the request was sent, median (p10, p90); cp = control plane, agent = agent thread):',
  );
  log(
    table(
      ['step', 'at'],
      traceSteps(traces).map(([step, xs]) => [step, mid(xs)]),
    ),
  );
  log(
    `by hand, dnsmasq ran after ${mid(hand.rounds.map((r) => r.parts.dnsmasq!))} ms; driver, after ${mid(driver.rounds.map((r) => r.parts.dnsmasq!))} ms`,
  );
  log('');
  log(
    `Summary: time to a working network (bridge up, tap in it, dnsmasq leasing the NIC's address to a client), ${ROUNDS} rounds`,
  );
  log(
    table(
      ['metric', 'median (p10, p90) ms', 'ratio to by hand'],
      [
        [`${hand.label} (baseline)`, mid(hand.rounds.map((r) => r.ms)), '1.00x'],
        [driver.label, mid(driver.rounds.map((r) => r.ms)), `${(p50(driver) / p50(hand)).toFixed(2)}x`],
        [api.label, mid(api.rounds.map((r) => r.ms)), `${(p50(api) / p50(hand)).toFixed(2)}x`],
      ],
    ),
  );
  log(`floe API − by hand (difference of medians): ${fmt(p50(api) - p50(hand))} ms`);
}

await main();
