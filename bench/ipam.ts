/**
 * The IPAM benchmark (`npm run bench:ipam`). For SQLite and PostgreSQL it
 * sends 100 `POST /v1/instances/{id}/nics` at once (one per instance, all on
 * one network with IPv4 and IPv6) to a control plane started in this process,
 * and prints NIC allocations per second. Every round is checked: each request
 * must succeed, every address must be distinct, inside the network and not one
 * IPAM must keep out (gateway, the host's address), and the store must hold
 * exactly the NICs the API answered; then the NICs are removed again and their
 * addresses must be free. Failures are counted and printed, never measured as
 * speed. The load generator runs in a worker thread, so it does not share the
 * control plane's event loop. Benchmarks report; they never fail on times.
 */
import { BlockList, isIPv4 } from 'node:net';
import os from 'node:os';
import { rm } from 'node:fs/promises';
import type { Network } from '@floe/api';
import { FloeClient } from '@floe/client';
import type { Store } from '../packages/server/src/db/index.js';
import type { StoreTarget } from '../packages/server/src/db/testing.js';
import { prepareAgentDir, startTestControlPlane } from '../packages/server/src/testing.js';
import type { AgentJob, AgentWorkerData } from './agent-worker.js';
import type { IpamJob, NicsResult } from './ipam-worker.js';
import type { Target } from './load-worker.js';
import { fmt, percentile, sorted, table } from './report.js';
import { benchEachStore, type StoreResults } from './stores.js';
import { BenchWorker } from './worker.js';

const CONCURRENCY = 100;
const ROUNDS = Number(process.env.FLOE_BENCH_RUNS ?? 5);
const IPV4 = '10.20.0.0/24';

const log = (line: string) => process.stdout.write(`${line}\n`);

/** What one round found. */
interface RoundResult {
  ok: number;
  /** Requests that did not answer 2xx with a NIC (any status, or no answer). */
  errors: number;
  firstError: string | null;
  /** Addresses handed out more than once in the round. */
  duplicates: number;
  /** Addresses outside the network or ones IPAM must keep out. */
  invalid: number;
  /** NICs whose stored row differs from the answer, plus NICs stored but not answered. */
  storeMismatch: number;
  /** Addresses still taken after the NICs were removed. */
  leaked: number;
  ms: number;
  latencies: number[];
}

interface StoreResult {
  name: string;
  rounds: RoundResult[];
}

const rate = (r: Pick<RoundResult, 'ok' | 'ms'>) => r.ok / (r.ms / 1000);

/** Check one burst's answers against the network and the store. */
async function check(result: NicsResult, network: Network, db: Store['db']): Promise<Omit<RoundResult, 'leaked'>> {
  const v4 = new BlockList();
  const [base4, len4] = network.spec.ipv4!.split('/') as [string, string];
  v4.addSubnet(base4, Number(len4), 'ipv4');
  const v6 = new BlockList();
  const [base6, len6] = network.spec.ipv6!.split('/') as [string, string];
  v6.addSubnet(base6, Number(len6), 'ipv6');
  // IPAM never hands these out: the network and broadcast addresses, the gateway and the host's own address.
  const host = 2 ** (32 - Number(len4)) - 1;
  const broadcast = base4.split('.').reduce((n, o) => n * 256 + Number(o), 0) + host;
  const dotted = [24, 16, 8, 0].map((s) => Math.floor(broadcast / 2 ** s) % 256).join('.');
  const forbidden = new Set([
    base4,
    dotted,
    network.status.gateway4,
    network.status.host_ipv4,
    network.status.gateway6,
    network.status.host_ipv6,
    ...network.spec.reserved,
  ]);

  const nics = result.answers.flatMap((a) => (a.nic === null ? [] : [a.nic]));
  const errors = result.answers.filter((a) => a.nic === null);
  const seen = new Set<string>();
  let duplicates = 0;
  let invalid = 0;
  for (const n of nics) {
    for (const [addr, family, list] of [
      [n.ipv4, 'ipv4', v4],
      [n.ipv6, 'ipv6', v6],
    ] as const) {
      if (addr === null) {
        invalid++;
        continue;
      }
      if (seen.has(addr)) duplicates++;
      seen.add(addr);
      if ((family === 'ipv4' && !isIPv4(addr)) || !list.check(addr, family) || forbidden.has(addr)) invalid++;
    }
  }
  const stored = await db
    .selectFrom('nics')
    .select(['id', 'instance_id', 'ipv4', 'ipv6'])
    .where('network_id', '=', network.id)
    .execute();
  const byId = new Map(stored.map((s) => [s.id, s]));
  let storeMismatch = Math.max(0, stored.length - nics.length);
  for (const n of nics) {
    const s = byId.get(n.id);
    if (s === undefined || s.instance_id !== n.instance || s.ipv4 !== n.ipv4 || s.ipv6 !== n.ipv6) storeMismatch++;
  }
  return {
    ok: nics.length,
    errors: errors.length,
    firstError: errors[0] === undefined ? null : `${errors[0].status} ${errors[0].error}`,
    duplicates,
    invalid,
    storeMismatch,
    ms: result.ms,
    latencies: result.answers.map((a) => a.latencyMs),
  };
}

async function benchStore(target: StoreTarget, load: BenchWorker<IpamJob>): Promise<StoreResult> {
  const tag = `[${target.name}]`;
  const cp = await startTestControlPlane(await target.open(), { FLOE_LOG_LEVEL: 'error' });
  const client = new FloeClient({ url: cp.url, token: cp.adminToken, ca: cp.ca.certPem });
  let agentDir: string | null = null;
  let agent: BenchWorker<AgentJob> | null = null;
  try {
    // Instances need an online host to be placed: a real agent (fake VM driver) connects while they are created.
    const prepared = await prepareAgentDir(cp, 'bench-ipam-host');
    agentDir = prepared.dataDir;
    agent = new BenchWorker<AgentJob>(new URL('./agent-worker.ts', import.meta.url), {
      dataDir: prepared.dataDir,
      server: cp.url,
      cpus: 256,
      memoryMib: 256 * 1024,
    } satisfies AgentWorkerData);
    await agent.call({ kind: 'start' });
    const deadline = Date.now() + 60_000;
    while ((await client.hosts.get(prepared.hostId)).status.state !== 'online') {
      if (Date.now() > deadline) throw new Error('the agent did not connect within 60 s');
      await new Promise((r) => setTimeout(r, 50));
    }
    await client.images.create({ name: 'bench' });
    const network = await client.networks.create({ name: 'ipam', ipv4: IPV4, ipv6: 'auto', gateway: 'host' });
    const instanceIds: string[] = [];
    for (let i = 0; i < CONCURRENCY; i++) {
      const { instance, operation } = await client.instances.create({
        name: `ipam-${String(i).padStart(3, '0')}`,
        image: 'bench',
        machine_type: 'nano',
        start: false,
      });
      instanceIds.push(instance.id);
      const done = await client.operations.wait(operation.id, { timeoutMs: 60_000 });
      if (done.status !== 'succeeded')
        throw new Error(`creating instance ${instance.name}: ${done.status} ${done.error?.message ?? ''}`);
    }
    // Measured without the agent: what is timed is the API and IPAM, not the agent applying NIC changes in this process.
    await agent.call({ kind: 'stop' });
    await agent.close();
    agent = null;
    log(
      `${tag} network ${network.spec.ipv4} + ${network.spec.ipv6}, ${CONCURRENCY} stopped instances; control plane at ${cp.url}`,
    );

    const floe: Target = { origin: cp.url, ca: cp.ca.certPem, headers: { authorization: `Bearer ${cp.adminToken}` } };
    const rounds: RoundResult[] = [];
    try {
      for (let i = 0; i < ROUNDS; i++) {
        const burst = await load.call<NicsResult>({ kind: 'nics', target: floe, instanceIds, network: network.id });
        const r = await check(burst, network, cp.store.db);
        // Give every address back and check none stays taken.
        const answered = burst.answers.flatMap((a) =>
          a.nic === null ? [] : [{ instanceId: a.nic.instance, nicId: a.nic.id }],
        );
        const removed = await load.call<{ failed: number; firstError: string | null }>({
          kind: 'remove',
          target: floe,
          nics: answered,
        });
        const taken = await cp.store.db
          .selectFrom('ip_addresses')
          .select('address')
          .where('network_id', '=', network.id)
          .where('nic_id', 'is not', null)
          .execute();
        const leaked = taken.length + removed.failed;
        rounds.push({ ...r, leaked });
        const lat = sorted(r.latencies);
        log(
          `${tag} round ${i + 1}: ${r.ok}/${CONCURRENCY} NICs in ${fmt(r.ms)} ms = ${fmt(rate(r))} allocations/s; latency p50 ${fmt(percentile(lat, 0.5))} ms, max ${fmt(lat.at(-1))} ms; ` +
            `errors ${r.errors}, duplicate addresses ${r.duplicates}, invalid ${r.invalid}, store mismatches ${r.storeMismatch}, addresses left after removal ${leaked}`,
        );
        if (r.firstError !== null) log(`${tag}   first error: ${r.firstError}`);
        if (removed.firstError !== null) log(`${tag}   first removal error: ${removed.firstError}`);
      }
    } finally {
      await load.call({ kind: 'close' });
    }
    return { name: target.name, rounds };
  } finally {
    await client.close();
    if (agent) await agent.close();
    await cp.close();
    if (agentDir) await rm(agentDir, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  const cpus = os.cpus();
  log(
    `floe IPAM benchmark — ${cpus.length} CPU(s) (${cpus[0]?.model ?? 'unknown'}), Node.js ${process.version}, load average ${os
      .loadavg()
      .map((l) => l.toFixed(2))
      .join(' ')} before the run`,
  );
  log(
    `${ROUNDS} rounds of ${CONCURRENCY} concurrent POST /v1/instances/{id}/nics (one per instance, one network with IPv4 and IPv6, keep-alive HTTPS connections opened beforehand); ` +
      'each NIC takes one IPv4 and one IPv6 address; the NICs are removed between rounds',
  );
  log('');
  const results = await BenchWorker.using<IpamJob, StoreResults<StoreResult>>(
    new URL('./ipam-worker.ts', import.meta.url),
    (load) => benchEachStore(log, (target) => benchStore(target, load)),
  );
  const { names, cell } = results;
  const sum = (r: StoreResult, f: (x: RoundResult) => number) => String(r.rounds.reduce((s, x) => s + f(x), 0));
  const mid = (values: number[]) => {
    const s = sorted(values);
    return `${fmt(percentile(s, 0.5))} (${fmt(percentile(s, 0.1))}, ${fmt(percentile(s, 0.9))})`;
  };
  const all = (r: StoreResult) => sorted(r.rounds.flatMap((x) => x.latencies));
  log(`Summary (${cpus.length} CPU(s), ${ROUNDS} rounds of ${CONCURRENCY} concurrent NIC creates on one network)`);
  log(
    table(
      ['metric', ...names],
      [
        ['NIC allocations/s, median (p10, p90)', ...names.map((n) => cell(n, (r) => mid(r.rounds.map(rate))))],
        ['burst of 100, ms, median (p10, p90)', ...names.map((n) => cell(n, (r) => mid(r.rounds.map((x) => x.ms))))],
        [
          'request latency p50 / p99 (ms)',
          ...names.map((n) => cell(n, (r) => `${fmt(percentile(all(r), 0.5))} / ${fmt(percentile(all(r), 0.99))}`)),
        ],
        ['failed requests (all rounds)', ...names.map((n) => cell(n, (r) => sum(r, (x) => x.errors)))],
        ['duplicate addresses', ...names.map((n) => cell(n, (r) => sum(r, (x) => x.duplicates)))],
        ['addresses outside the network or reserved', ...names.map((n) => cell(n, (r) => sum(r, (x) => x.invalid)))],
        ['answers differing from the store', ...names.map((n) => cell(n, (r) => sum(r, (x) => x.storeMismatch)))],
        ['addresses not freed after removal', ...names.map((n) => cell(n, (r) => sum(r, (x) => x.leaked)))],
      ],
    ),
  );
  const bad = [...results.outcomes.values()].some(
    (r) =>
      typeof r !== 'string' &&
      r.rounds.some((x) => x.errors + x.duplicates + x.invalid + x.storeMismatch + x.leaked > 0),
  );
  if (bad) {
    log('WARNING: some allocations failed or were wrong (see above); the rates count successful allocations only');
    process.exitCode = 1;
  }
}

await main();
