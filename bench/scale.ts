/**
 * The scale benchmark (`npm run bench:scale`): one control plane, a fleet of
 * real agents (mutual TLS links, reconcilers, the fake VM driver), and many
 * instances created through the API by concurrent clients. It reports the
 * scheduler's placement time (against the same scheduler with one host, in
 * the same run), create throughput, the control plane's resident memory and
 * how long until every agent has seen its instances. Benchmarks report; they
 * never fail on times.
 *
 *   npm run bench:scale -- [--agents 1000] [--instances 100000] [--concurrency 32]
 *                          [--threads 4] [--store sqlite|postgres]
 */
import { fork, type ChildProcess } from 'node:child_process';
import os from 'node:os';
import { parseArgs } from 'node:util';
import { Pool } from 'undici';
import type { CpRequest, CpStarted, CpStats } from './scale-cp.js';
import type { FleetCount, FleetJob, FleetWorkerData } from './scale-agent-worker.js';
import { fmt, percentile, sorted, table } from './report.js';
import { BenchWorker, epochMs } from './worker.js';

const { values: args } = parseArgs({
  options: {
    agents: { type: 'string', default: '1000' },
    instances: { type: 'string', default: '100000' },
    concurrency: { type: 'string', default: '32' },
    threads: { type: 'string', default: '4' },
    store: { type: 'string', default: 'sqlite' },
    seed: { type: 'string', default: '0' },
    'max-wait': { type: 'string', default: '1800' },
  },
});
const AGENTS = Number(args.agents);
const INSTANCES = Number(args.instances);
const CONCURRENCY = Number(args.concurrency);
const THREADS = Math.max(1, Math.min(Number(args.threads), AGENTS - 1 || 1));
const STORE = args.store === 'postgres' ? 'postgres' : 'sqlite';
/** Instances inserted directly into the store before the fleet connects (on top of which the API creates run). */
const SEED = Number(args.seed);
/** Longest wait (ms) for the fleet to connect or for instances to reach the agents, before reporting what there is. */
const MAX_WAIT_MS = Number(args['max-wait']) * 1000;
/** What each agent reports instead of this machine's size: room for far more `nano` instances than it gets. */
const AGENT_CPUS = 256;
const AGENT_MEMORY_MIB = 256 * 1024;
/** Scheduler samples per idle probe, and per probe during the creates. */
const PROBE_SAMPLES = 200;
const LOAD_PROBE_SAMPLES = 5;
const LOAD_PROBES = 100;
const PLACEMENT_P50_TARGET_MS = 10;
const RSS_TARGET_MIB = 300;

const log = (line: string) => process.stdout.write(`${line}\n`);
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
const loadavg = () =>
  os
    .loadavg()
    .map((l) => l.toFixed(2))
    .join(' ');

/** The control plane child process, with request/answer calls over IPC. */
class ControlPlaneProcess {
  private readonly child: ChildProcess;
  private readonly pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  private nextId = 1;

  constructor() {
    this.child = fork(new URL('./scale-cp.ts', import.meta.url), [], {
      execArgv: ['--conditions=floe-source', '--import', 'tsx'],
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    this.child.on('message', (a: { id: number; ok: boolean; result?: unknown; error?: string }) => {
      const p = this.pending.get(a.id);
      if (!p) return;
      this.pending.delete(a.id);
      if (a.ok) p.resolve(a.result);
      else p.reject(new Error(a.error));
    });
    this.child.on('exit', (code) => {
      for (const p of this.pending.values()) p.reject(new Error(`control plane exited with code ${code}`));
      this.pending.clear();
    });
  }

  get pid(): number {
    return this.child.pid!;
  }

  call<R>(req: CpRequest): Promise<R> {
    const id = this.nextId++;
    return new Promise<R>((resolve, reject) => {
      this.pending.set(id, { resolve: resolve as (v: unknown) => void, reject });
      this.child.send({ id, req });
    });
  }

  async close(): Promise<void> {
    if (this.child.exitCode !== null) return;
    await this.call({ kind: 'stop' }).catch(() => undefined);
    const exited = new Promise((r) => this.child.once('exit', r));
    this.child.disconnect();
    await Promise.race([exited, sleep(10_000)]);
    if (this.child.exitCode === null) this.child.kill('SIGKILL');
  }
}

async function until(check: () => Promise<boolean>, what: string, timeoutMs: number): Promise<number> {
  const t0 = performance.now();
  for (;;) {
    if (await check()) return performance.now() - t0;
    if (performance.now() - t0 > timeoutMs) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(500);
  }
}

/** Idle placement time: median and p99 of `samples` scheduler calls in a row. */
interface Probe {
  p50: number;
  p99: number;
}
const summarize = (ms: number[]): Probe => {
  const s = sorted(ms);
  return { p50: percentile(s, 0.5), p99: percentile(s, 0.99) };
};

async function main(): Promise<void> {
  const cpus = os.cpus();
  log(
    `floe scale benchmark — ${cpus.length} CPU(s) (${cpus[0]?.model ?? 'unknown'}), ${Math.round(os.totalmem() / 2 ** 30)} GiB RAM, ` +
      `Node.js ${process.version}, load average ${loadavg()} before the run`,
  );
  log(
    `${AGENTS} agents in ${THREADS + 1} worker thread(s), ${INSTANCES.toLocaleString('en')} instances created at concurrency ${CONCURRENCY}, store ${STORE}. ` +
      `Every agent is a real floe Agent (own mutual TLS WebSocket link, reconcilers, applied-state file) with the in-memory fake VM driver, ` +
      `reporting ${AGENT_CPUS} CPUs and ${AGENT_MEMORY_MIB / 1024} GiB. The control plane runs alone in a child process.`,
  );
  const started = performance.now();
  const cp = new ControlPlaneProcess();
  const fleets: Array<BenchWorker<FleetJob>> = [];
  try {
    const info = await cp.call<CpStarted>({ kind: 'start', store: STORE, agents: AGENTS, env: {} });
    const stats = () => cp.call<CpStats>({ kind: 'stats' });
    log(`control plane (pid ${cp.pid}) at ${info.url} on ${info.storeVersion}; ${AGENTS} hosts registered`);
    const fleetData = (agents: CpStarted['agents']): FleetWorkerData => ({
      server: info.url,
      agents,
      cpus: AGENT_CPUS,
      memoryMib: AGENT_MEMORY_MIB,
      startConcurrency: 16,
    });
    const fleetUrl = new URL('./scale-agent-worker.ts', import.meta.url);

    // ---- baseline: the scheduler with one host online
    fleets.push(new BenchWorker<FleetJob>(fleetUrl, fleetData(info.agents.slice(0, 1))));
    await fleets[0]!.call({ kind: 'start' });
    await until(async () => (await stats()).hostsOnline === 1, 'the first agent', 60_000);
    const oneHost = summarize(await cp.call<number[]>({ kind: 'probe', samples: PROBE_SAMPLES }));
    log(`placement, 1 host online, 0 instances: p50 ${fmt(oneHost.p50, 2)} ms, p99 ${fmt(oneHost.p99, 2)} ms`);

    const headers = { authorization: `Bearer ${info.token}`, 'content-type': 'application/json' };
    const pool = new Pool(info.url, { connections: CONCURRENCY, pipelining: 1, connect: { ca: info.ca } });
    const image = await pool.request({
      path: '/v1/images',
      method: 'POST',
      headers,
      body: JSON.stringify({ name: 'bench' }),
    });
    if (image.statusCode >= 300) throw new Error(`creating the image: ${image.statusCode} ${await image.body.text()}`);
    await image.body.dump();
    const counts = async () => {
      const all = await Promise.all(fleets.map((f) => f.call<FleetCount>({ kind: 'count' })));
      return {
        created: all.reduce((n, c) => n + c.created, 0),
        running: all.reduce((n, c) => n + c.running, 0),
        lastCreateAt: Math.max(...all.map((c) => c.lastCreateAt ?? 0)),
      };
    };

    // ---- seeded instances: one through the API (on the first host), copies of it on the others
    if (SEED > 0) {
      const res = await pool.request({
        path: '/v1/instances',
        method: 'POST',
        headers,
        body: JSON.stringify({ name: 'seed-template', image: 'bench', machine_type: 'nano' }),
      });
      if (res.statusCode >= 300)
        throw new Error(`creating the seed template: ${res.statusCode} ${await res.body.text()}`);
      await res.body.dump();
      const seedStart = performance.now();
      const hostIds = (AGENTS > 1 ? info.agents.slice(1) : info.agents).map((a) => a.hostId);
      await cp.call({ kind: 'seed', template: 'seed-template', count: SEED - 1, hostIds });
      log(
        `seeded ${SEED} instances (copies of one created through the API) in ${((performance.now() - seedStart) / 1000).toFixed(1)} s`,
      );
    }

    // ---- the rest of the fleet
    const fleetStartAt = epochMs();
    const rest = info.agents.slice(1);
    const perThread = Math.ceil(rest.length / THREADS);
    const connectStart = performance.now();
    for (let i = 0; i < rest.length; i += perThread) {
      fleets.push(new BenchWorker<FleetJob>(fleetUrl, fleetData(rest.slice(i, i + perThread))));
    }
    await Promise.all(fleets.slice(1).map((f) => f.call({ kind: 'start' })));
    let lastProgress = performance.now();
    /** Every 30 s while waiting: what the fleet and the control plane have got to. */
    const progress = async (s: CpStats) => {
      if (performance.now() - lastProgress < 30_000) return;
      lastProgress = performance.now();
      const c = await counts();
      log(
        `  ${((performance.now() - started) / 1000).toFixed(0)} s: ${s.hostsOnline} hosts online, agents run ${c.running} VMs, ` +
          `${s.running} reported running; control plane RSS ${fmt(s.rssMib)} MiB, busy ${fmt(100 * s.elu, 0)}%; load ${loadavg()}`,
      );
    };
    const watched = async () => {
      const s = await stats();
      await progress(s);
      return s;
    };
    await until(async () => (await watched()).hostsOnline === AGENTS, `all ${AGENTS} agents online`, MAX_WAIT_MS).catch(
      (err: Error) => log(err.message),
    );
    const connectS = (performance.now() - connectStart) / 1000;
    let seedSeenS: number | null = null;
    let seedReportedS: number | null = null;
    if (SEED > 0) {
      try {
        await until(
          async () => (await watched()) !== null && (await counts()).running >= SEED,
          'every agent to run its seeded instances',
          MAX_WAIT_MS,
        );
        seedSeenS = ((await counts()).lastCreateAt - fleetStartAt) / 1000;
        await until(
          async () => (await watched()).running >= SEED,
          'the seeded instances reported running',
          MAX_WAIT_MS,
        );
        seedReportedS = (epochMs() - fleetStartAt) / 1000;
      } catch (err) {
        log((err as Error).message);
      }
      log(
        `seeded instances: the last agent saw its last one ${fmt(seedSeenS, 1)} s after the fleet started, ` +
          `the control plane had them all reported running after ${fmt(seedReportedS, 1)} s`,
      );
    }
    const idleStats = await stats();
    log(
      `${AGENTS} agents online after ${connectS.toFixed(1)} s; control plane RSS ${fmt(idleStats.rssMib)} MiB, heap ${fmt(idleStats.heapUsedMib)} MiB`,
    );
    const allHosts = summarize(await cp.call<number[]>({ kind: 'probe', samples: PROBE_SAMPLES }));
    log(
      `placement, ${AGENTS} hosts online, ${SEED} instances: p50 ${fmt(allHosts.p50, 2)} ms, p99 ${fmt(allHosts.p99, 2)} ms`,
    );

    // ---- the creates
    const latencies: number[] = [];
    const statuses: Record<string, number> = {};
    let firstError: string | null = null;
    let next = 0;
    let done = 0;
    const underLoad: number[] = [];
    let peakRss = 0;
    const firstPostAt = epochMs();
    const t0 = performance.now();
    const client = async () => {
      for (let i = next++; i < INSTANCES; i = next++) {
        const body = JSON.stringify({ name: `s-${String(i).padStart(6, '0')}`, image: 'bench', machine_type: 'nano' });
        const r0 = performance.now();
        try {
          const res = await pool.request({ path: '/v1/instances', method: 'POST', headers, body });
          const text = await res.body.text();
          latencies.push(performance.now() - r0);
          statuses[res.statusCode] = (statuses[res.statusCode] ?? 0) + 1;
          if (res.statusCode >= 300) firstError ??= `${res.statusCode} ${text.slice(0, 300)}`;
        } catch (err) {
          statuses.error = (statuses.error ?? 0) + 1;
          firstError ??= (err as Error).message;
        }
        done++;
      }
    };
    // While the clients run: the scheduler sampled at regular points, and progress every 10 s.
    let creating = true;
    const watcher = (async () => {
      let lastLog = performance.now();
      let lastDone = 0;
      let nextProbe = INSTANCES / LOAD_PROBES;
      while (creating) {
        await sleep(250);
        if (done >= nextProbe) {
          nextProbe += INSTANCES / LOAD_PROBES;
          underLoad.push(...(await cp.call<number[]>({ kind: 'probe', samples: LOAD_PROBE_SAMPLES })));
        }
        if (performance.now() - lastLog >= 10_000) {
          const s = await stats();
          peakRss = Math.max(peakRss, s.rssMib);
          const rate = (done - lastDone) / ((performance.now() - lastLog) / 1000);
          log(
            `  ${((performance.now() - t0) / 1000).toFixed(0)} s: ${done} created (${fmt(rate)}/s now), ${s.running} running; ` +
              `control plane RSS ${fmt(s.rssMib)} MiB, heap ${fmt(s.heapUsedMib)} MiB, busy ${fmt(100 * s.elu, 0)}%; load ${loadavg()}`,
          );
          lastLog = performance.now();
          lastDone = done;
        }
      }
    })();
    await Promise.all(Array.from({ length: CONCURRENCY }, client));
    const createS = (performance.now() - t0) / 1000;
    creating = false;
    await watcher;
    await pool.close();
    const ok = SEED + (statuses['202'] ?? 0) + (statuses['200'] ?? 0) + (statuses['201'] ?? 0);
    log(
      `POST /v1/instances x${INSTANCES}: ${JSON.stringify(statuses)} in ${createS.toFixed(1)} s = ${fmt(INSTANCES / createS)}/s`,
    );
    // Set by the clients, which TypeScript's narrowing does not see.
    const error = firstError as string | null;
    if (error !== null) log(`first create error: ${error}`);

    // ---- every agent sees (and runs) its instances; the control plane hears back
    let seen = await counts();
    try {
      await until(
        async () => (seen = await counts()).created >= ok && seen.running >= ok,
        'every agent to run its instances',
        MAX_WAIT_MS,
      );
    } catch (err) {
      log((err as Error).message);
    }
    const allSeenS = seen.created >= ok ? (seen.lastCreateAt - firstPostAt) / 1000 : null;
    let reported: CpStats = await stats();
    // Within the poll interval (500 ms).
    const reportedAfterS = await until(
      async () => (reported = await stats()).running >= ok,
      'the control plane to hear every instance running',
      MAX_WAIT_MS,
    )
      .then(() => (epochMs() - firstPostAt) / 1000)
      .catch((err: Error) => {
        log(err.message);
        return null;
      });
    log(
      `agents created ${seen.created} and run ${seen.running} VMs; the last agent saw its last instance ${fmt(allSeenS, 1)} s after the first POST; ` +
        `the control plane had every instance reported running ${fmt(reportedAfterS, 1)} s after it`,
    );

    // ---- the control plane at rest with every instance
    await sleep(2_000);
    const atEnd = await stats();
    peakRss = Math.max(peakRss, atEnd.rssMib);
    const full = summarize(await cp.call<number[]>({ kind: 'probe', samples: PROBE_SAMPLES }));
    const loaded = summarize(underLoad);
    log(
      `placement, ${AGENTS} hosts, ${atEnd.instances} instances: p50 ${fmt(full.p50, 2)} ms, p99 ${fmt(full.p99, 2)} ms; ` +
        `sampled during the creates (${underLoad.length}): p50 ${fmt(loaded.p50, 2)} ms, p99 ${fmt(loaded.p99, 2)} ms`,
    );
    log(
      `control plane at ${atEnd.instances} instances: RSS ${fmt(atEnd.rssMib)} MiB (peak seen ${fmt(peakRss)} MiB), ` +
        `heap ${fmt(atEnd.heapUsedMib)} MiB, external ${fmt(atEnd.externalMib)} MiB`,
    );

    const lat = sorted(latencies);
    const ratio = (p: Probe) => `${(p.p50 / oneHost.p50).toFixed(1)}x`;
    const rows: string[][] = [
      [
        'placement, 1 host, 0 instances: p50 / p99 (baseline)',
        `${fmt(oneHost.p50, 2)} / ${fmt(oneHost.p99, 2)} ms`,
        '1.0x',
        '',
        '',
      ],
      [
        `placement, ${AGENTS} hosts, ${SEED} instances: p50 / p99`,
        `${fmt(allHosts.p50, 2)} / ${fmt(allHosts.p99, 2)} ms`,
        ratio(allHosts),
        '',
        '',
      ],
      [
        `placement, ${AGENTS} hosts, ${atEnd.instances} instances: p50 / p99`,
        `${fmt(full.p50, 2)} / ${fmt(full.p99, 2)} ms`,
        ratio(full),
        `p50 <= ${PLACEMENT_P50_TARGET_MS} ms`,
        full.p50 <= PLACEMENT_P50_TARGET_MS ? 'yes' : 'NO',
      ],
      [
        'placement during the creates: p50 / p99',
        `${fmt(loaded.p50, 2)} / ${fmt(loaded.p99, 2)} ms`,
        ratio(loaded),
        `p50 <= ${PLACEMENT_P50_TARGET_MS} ms`,
        loaded.p50 <= PLACEMENT_P50_TARGET_MS ? 'yes' : 'NO',
      ],
      [
        `POST /v1/instances latency (create to placed): p50 / p99`,
        `${fmt(percentile(lat, 0.5), 1)} / ${fmt(percentile(lat, 0.99), 1)} ms`,
        '',
        'reported',
        '',
      ],
      [`create throughput (c=${CONCURRENCY})`, `${fmt(INSTANCES / createS)} instances/s`, '', 'reported', ''],
      [`all ${AGENTS} agents online after start`, `${connectS.toFixed(1)} s`, '', 'reported', ''],
      ...(SEED > 0
        ? [
            [
              `${SEED} seeded: last agent saw its last, after fleet start`,
              `${fmt(seedSeenS, 1)} s`,
              '',
              'reported',
              '',
            ],
            [
              `${SEED} seeded: all reported running, after fleet start`,
              `${fmt(seedReportedS, 1)} s`,
              '',
              'reported',
              '',
            ],
          ]
        : []),
      [
        'last agent saw its last instance, after first POST',
        `${fmt(allSeenS, 1)} s`,
        '',
        'reported',
        seen.created >= ok ? '' : `only ${seen.created}/${ok}`,
      ],
      ['every instance reported running, after first POST', `${fmt(reportedAfterS, 1)} s`, '', 'reported', ''],
      ['control plane process RSS, modules loaded, before start', `${fmt(info.loadedRssMib)} MiB`, '', 'reported', ''],
      [`control plane RSS, ${AGENTS} hosts, ${SEED} instances`, `${fmt(idleStats.rssMib)} MiB`, '', 'reported', ''],
      [
        `control plane RSS at ${atEnd.instances} instances`,
        `${fmt(atEnd.rssMib)} MiB`,
        '',
        `<= ${RSS_TARGET_MIB} MiB`,
        atEnd.rssMib <= RSS_TARGET_MIB ? 'yes' : 'NO',
      ],
    ];
    log('');
    log(
      `Summary (${cpus.length} CPU(s), Node.js ${process.version}; ${AGENTS} real agents, fake VM driver; ` +
        `whole run ${((performance.now() - started) / 1000).toFixed(0)} s; load average ${loadavg()} after it)`,
    );
    log(table(['metric', 'measured', 'ratio to baseline', 'target', 'met?'], rows));
    if (reported.running < ok) process.exitCode = 1;
  } finally {
    await Promise.all(fleets.map((f) => f.call({ kind: 'stop' }).catch(() => undefined)));
    await Promise.all(fleets.map((f) => f.close()));
    await cp.close();
  }
}

await main();
