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
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { type ApiRig, startRig, stopRig, viaApi } from './net-api.js';
import { byHand, type Round, subjectOf, viaDriver } from './net-hand.js';
import { deleteNamespace, hostNamespace, killDnsmasqUnder, namespaces } from './net-ns.js';
import { fmt, percentile, sorted, table } from './report.js';
import { traceSteps, type TraceEntry } from './trace.js';

const ROUNDS = Number(process.env.FLOE_BENCH_RUNS ?? 10);

const log = (line: string) => process.stdout.write(`${line}\n`);

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
