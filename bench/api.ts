/**
 * The API benchmark (`npm run bench:api`). For SQLite and PostgreSQL it
 * measures, against baselines taken in this same process and run:
 *   1. authenticated GET /v1/instances/{id} throughput, as a ratio to a bare
 *      Fastify hello-world on the same transport (HTTPS, same CA, keep-alive),
 *      for an admin token, a user's session token, a token scoped to that one
 *      instance, and an opaque credential an external checker allows (cached);
 *   2. POST /v1/instances throughput with a real agent (fake VM driver) over
 *      mutual TLS, and how long until every create operation succeeded;
 *   3. latency of GET /v1/instances?limit=100 pages out of 10,000 instances.
 * The load generator and the agent run in worker threads, so neither shares
 * the control plane's event loop. Benchmarks report; they never fail on times.
 */
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { Session } from 'node:inspector/promises';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import Fastify from 'fastify';
import { sql } from 'kysely';
import type { Event, Operation } from '@floe/api';
import { until } from '@floe/testkit';
import { FloeClient } from '@floe/client';
import { transaction } from '../packages/server/src/db/index.js';
import type { StoreTarget } from '../packages/server/src/db/testing.js';
import { newId } from '../packages/server/src/ids.js';
import { prepareAgentDir, startTestControlPlane, type TestControlPlane } from '../packages/server/src/testing.js';
import type { AgentJob, AgentWorkerData } from './agent-worker.js';
import type { CreatesResult, LoadJob, RateResult, Target, WalkResult } from './load-worker.js';
import { fmt, percentile, sorted, table } from './report.js';
import { benchEachStore, type StoreResults } from './stores.js';
import { BenchWorker, epochMs } from './worker.js';
import { CHECKER_BEARER, benchCallers, startBenchChecker } from './auth-callers.js';

const CONNECTIONS = 32;
const WARMUP_MS = 1_000;
const DURATION_MS = 5_000;
/** The measured GET time is split into this many windows, bare and floe taking turns. */
const ROUNDS = 4;
const CREATES = 500;
const CREATE_CONCURRENCY = 16;
const TOTAL_INSTANCES = 10_000;
const LIST_REQUESTS = 200;
const LIST_LIMIT = 100;
/** What the agent reports instead of this machine's size, so the host has room for every create. */
const AGENT_CPUS = 256;
const AGENT_MEMORY_MIB = 256 * 1024;

const GET_TARGET = 0.5;
const LIST_P50_TARGET_MS = 20;

/** Everything measured on one store. */
interface StoreResult {
  name: string;
  version: string;
  bare: GetResult;
  get: GetResult;
  session: GetResult;
  scoped: GetResult;
  checker: GetResult;
  /** Questions the external checker answered during the whole run (floe caches its answers). */
  checkerQuestions: number;
  creates: CreatesResult;
  /** Seconds from the first create sent until the last create operation succeeded; null if some never did. */
  allSucceededS: number | null;
  succeeded: number;
  failed: number;
  running: number;
  list: WalkResult;
}

const log = (line: string) => process.stdout.write(`${line}\n`);

/** GET throughput of one server over all its measured windows. */
interface GetResult {
  requests: number;
  seconds: number;
  non2xx: number;
  errors: number;
  /** Latencies (ms), ascending. */
  latencies: number[];
  /** Requests per window, in order. */
  perWindow: number[];
  /** Time this thread (where both servers run) was busy during the windows: the server's CPU cost. */
  busyMs: number;
  /** Wall time of the windows as this thread saw them (busy + idle). */
  wallMs: number;
}

const rps = (r: GetResult) => r.requests / r.seconds;
/** Server thread busy time per request, in microseconds. */
const busyUs = (r: GetResult) => (r.busyMs * 1000) / r.requests;

/**
 * GET throughput of several servers under the same closed-loop load. After a
 * warm-up each, they take turns window after window, so background load on
 * the machine hits them alike; this thread's event-loop utilization during
 * each window gives the server's own cost per request.
 */
async function measureGets(
  load: BenchWorker<LoadJob>,
  targets: Array<{ target: Target; path: string }>,
): Promise<GetResult[]> {
  const job = (t: { target: Target; path: string }, durationMs: number): LoadJob => ({
    kind: 'rate',
    target: t.target,
    path: t.path,
    connections: CONNECTIONS,
    durationMs,
  });
  try {
    for (const t of targets) await load.call<RateResult>(job(t, WARMUP_MS));
    const out: GetResult[] = targets.map(() => ({
      requests: 0,
      seconds: 0,
      non2xx: 0,
      errors: 0,
      latencies: [],
      perWindow: [],
      busyMs: 0,
      wallMs: 0,
    }));
    for (let round = 0; round < ROUNDS; round++) {
      for (const [i, t] of targets.entries()) {
        const before = performance.eventLoopUtilization();
        const r = await load.call<RateResult>(job(t, DURATION_MS / ROUNDS));
        const elu = performance.eventLoopUtilization(before);
        const o = out[i]!;
        o.requests += r.requests;
        o.seconds += r.durationMs / 1000;
        o.non2xx += r.non2xx;
        o.errors += r.errors;
        o.latencies.push(...r.latencies);
        o.perWindow.push(r.requests);
        o.busyMs += elu.active;
        o.wallMs += elu.active + elu.idle;
      }
    }
    for (const o of out) o.latencies.sort((a, b) => a - b);
    return out;
  } finally {
    await load.call({ kind: 'close' });
  }
}

/**
 * With FLOE_BENCH_PROFILE=DIR, each phase's CPU profile of this thread (the
 * control plane) is written to DIR/<store>-<phase>.cpuprofile. Profiling
 * slows the server down: read those runs for where time goes, not for speed.
 */
async function profiled<T>(name: string, fn: () => Promise<T>): Promise<T> {
  const dir = process.env.FLOE_BENCH_PROFILE;
  if (!dir) return fn();
  const session = new Session();
  session.connect();
  await session.post('Profiler.enable');
  await session.post('Profiler.start');
  try {
    return await fn();
  } finally {
    const { profile } = await session.post('Profiler.stop');
    session.disconnect();
    await mkdir(dir, { recursive: true });
    await writeFile(path.join(dir, `${name}.cpuprofile`), JSON.stringify(profile));
  }
}

/** Register a host and write an agent data directory for it. */
function prepareAgent(cp: TestControlPlane, name: string): Promise<{ hostId: string; dataDir: string }> {
  return prepareAgentDir(cp, name);
}

/** The baseline: Fastify answering `{"hello":"world"}` with the control plane's TLS material and options. */
async function startBareFastify(cp: TestControlPlane): Promise<{ url: string; close: () => Promise<void> }> {
  const app = Fastify({
    logger: false,
    https: {
      key: cp.pki.server.keyPem,
      cert: cp.pki.server.certPem,
      ca: [cp.pki.caPem],
      requestCert: true,
      rejectUnauthorized: false,
    },
    forceCloseConnections: true,
  });
  app.get('/', async () => ({ hello: 'world' }));
  await app.listen({ host: '127.0.0.1', port: 0 });
  const { port } = app.server.address() as AddressInfo;
  return { url: `https://127.0.0.1:${port}`, close: () => app.close() };
}

/** Copy one real instance row `count` times under new ids and names: valid rows, seeded without the API's per-row cost. */
async function seedInstances(cp: TestControlPlane, templateName: string, count: number): Promise<void> {
  const db = cp.store.db;
  const template = await db
    .selectFrom('instances')
    .selectAll()
    .where('name', '=', templateName)
    .executeTakeFirstOrThrow();
  const BATCH = 500;
  await transaction(cp.store, async (trx) => {
    for (let done = 0; done < count; done += BATCH) {
      const rows = Array.from({ length: Math.min(BATCH, count - done) }, (_, i) => ({
        ...template,
        id: newId('instance'),
        name: `seed-${String(done + i).padStart(5, '0')}`,
      }));
      await trx.insertInto('instances').values(rows).execute();
    }
  });
  // What autovacuum would soon do after a bulk load; SQLite plans from its indexes alone.
  if (cp.store.dialect === 'postgres') await sql`analyze instances`.execute(db);
}

async function databaseVersion(cp: TestControlPlane): Promise<string> {
  if (cp.store.dialect === 'postgres') {
    const { rows } = await sql<{ v: string }>`select current_setting('server_version') as v`.execute(cp.store.db);
    return `PostgreSQL ${rows[0]!.v}`;
  }
  const { rows } = await sql<{ v: string }>`select sqlite_version() as v`.execute(cp.store.db);
  return `SQLite ${rows[0]!.v}`;
}

async function benchStore(target: StoreTarget, load: BenchWorker<LoadJob>): Promise<StoreResult> {
  const tag = `[${target.name}]`;
  const checker = await startBenchChecker();
  const cp = await startTestControlPlane(await target.open(), { FLOE_LOG_LEVEL: 'error', ...checker.env });
  const client = new FloeClient({ url: cp.url, token: cp.adminToken, ca: cp.ca.certPem });
  let agentDir: string | null = null;
  let agent: BenchWorker<AgentJob> | null = null;
  try {
    const version = await databaseVersion(cp);
    log(`${tag} ${version}; control plane at ${cp.url}`);
    const floe: Target = { origin: cp.url, ca: cp.ca.certPem, headers: { authorization: `Bearer ${cp.adminToken}` } };

    // ---- 2. creates through a real agent
    const prepared = await prepareAgent(cp, 'bench-host');
    agentDir = prepared.dataDir;
    agent = new BenchWorker<AgentJob>(new URL('./agent-worker.ts', import.meta.url), {
      dataDir: prepared.dataDir,
      server: cp.url,
      cpus: AGENT_CPUS,
      memoryMib: AGENT_MEMORY_MIB,
    } satisfies AgentWorkerData);
    await agent.call({ kind: 'start' });
    await until(
      'the agent to connect',
      async () => (await client.hosts.get(prepared.hostId)).status.state === 'online',
      { timeoutMs: 60_000, intervalMs: 50 },
    );
    await client.images.create({ name: 'bench' });

    const finished = new Map<string, { status: string; at: number }>();
    const unsubscribe = cp.app.services.bus.subscribe((e: Event) => {
      if (e.kind !== 'operation') return;
      const op = e.data.operation as Operation | undefined;
      if (op && (op.status === 'succeeded' || op.status === 'failed' || op.status === 'cancelled'))
        finished.set(op.id, { status: op.status, at: epochMs() });
    });
    const creates = await profiled(`${target.name}-create`, async () => {
      const result = await load.call<CreatesResult>({
        kind: 'creates',
        target: floe,
        count: CREATES,
        concurrency: CREATE_CONCURRENCY,
        namePrefix: 'bench-',
        image: 'bench',
        machineType: 'nano',
      });
      try {
        await until('every create operation to end', () => result.operationIds.every((id) => finished.has(id)), {
          timeoutMs: 120_000,
          intervalMs: 50,
        });
      } catch (err) {
        log(`${tag} ${(err as Error).message}`);
      }
      return result;
    });
    unsubscribe();
    const ends = creates.operationIds.map((id) => finished.get(id));
    const succeeded = ends.filter((e) => e?.status === 'succeeded').length;
    const failed = ends.filter((e) => e !== undefined && e.status !== 'succeeded').length;
    const allSucceededS =
      succeeded === CREATES ? (Math.max(...ends.map((e) => e!.at)) - creates.startedAt) / 1000 : null;
    const running = await agent.call<number>({ kind: 'count' });
    const createS = (creates.endedAt - creates.startedAt) / 1000;
    log(
      `${tag} POST /v1/instances x${CREATES} (c=${CREATE_CONCURRENCY}): ${JSON.stringify(creates.statuses)} in ${createS.toFixed(2)} s = ${fmt(CREATES / createS)} req/s; ` +
        `operations succeeded ${succeeded}, failed ${failed}, all succeeded after ${fmt(allSucceededS, 2)} s; the agent runs ${running} fake VMs`,
    );
    if (creates.firstError) log(`${tag} first create error: ${creates.firstError}`);
    await agent.call({ kind: 'stop' });
    await agent.close();
    agent = null;

    // ---- seed to 10,000 instances
    const seedStart = performance.now();
    const existing = Number(
      (
        await cp.store.db
          .selectFrom('instances')
          .select((eb) => eb.fn.countAll().as('n'))
          .executeTakeFirstOrThrow()
      ).n,
    );
    await seedInstances(cp, 'bench-00000', TOTAL_INSTANCES - existing);
    log(
      `${tag} seeded ${TOTAL_INSTANCES - existing} instances (copies of a created one) in ${((performance.now() - seedStart) / 1000).toFixed(2)} s`,
    );

    // ---- 1. GET one instance vs bare Fastify, same transport and load
    const instance = await client.instances.get('bench-00000');
    const bareServer = await startBareFastify(cp);
    const callers = await benchCallers(cp.url, cp.ca.certPem, client, instance.id);
    const as = (authorization: string): Target => ({ ...floe, headers: { authorization } });
    const one = `/v1/instances/${instance.id}`;
    let bare: GetResult;
    let get: GetResult;
    let session: GetResult;
    let scoped: GetResult;
    let checked: GetResult;
    try {
      [bare, get, session, scoped, checked] = (await profiled(`${target.name}-get`, () =>
        measureGets(load, [
          { target: { ...floe, origin: bareServer.url }, path: '/' },
          { target: floe, path: one },
          { target: as(`Bearer ${callers.session}`), path: one },
          { target: as(`Bearer ${callers.scoped}`), path: one },
          { target: as(CHECKER_BEARER), path: one },
        ]),
      )) as [GetResult, GetResult, GetResult, GetResult, GetResult];
    } finally {
      await bareServer.close();
    }
    const describe = (r: GetResult) =>
      `${fmt(rps(r))} req/s, p50 ${fmt(percentile(r.latencies, 0.5), 2)} ms, ` +
      `server thread ${fmt((100 * r.busyMs) / r.wallMs, 0)}% busy = ${fmt(busyUs(r), 0)} µs/request, non-2xx ${r.non2xx}, errors ${r.errors}`;
    log(`${tag} bare Fastify GET /: ${describe(bare)}`);
    log(`${tag} floe GET /v1/instances/{id}: ${describe(get)}`);
    log(`${tag} ... with a session token: ${describe(session)}`);
    log(`${tag} ... with a token scoped to the instance and read: ${describe(scoped)}`);
    log(`${tag} ... with a credential the external checker allows: ${describe(checked)}`);
    const checkerQuestions = await checker.questions();
    log(`${tag} the external checker was asked ${checkerQuestions} time(s) in all (floe caches its answers)`);
    const windows = get.perWindow.map((n, i) => n / bare.perWindow[i]!);
    log(
      `${tag} ratio ${(rps(get) / rps(bare)).toFixed(2)}x (per window: ${windows.map((r) => r.toFixed(2)).join(', ')}); ` +
        `floe's server work per request is ${(busyUs(get) / busyUs(bare)).toFixed(1)}x bare Fastify's`,
    );
    if (Math.max(...windows) > 1.5 * Math.min(...windows)) {
      log(
        `${tag} WARNING: the ratio varied a lot between windows, so something else was using the CPUs; rerun on a quiet machine`,
      );
    }

    // ---- 3. list pages out of 10,000
    const list = await profiled(`${target.name}-list`, () =>
      load.call<WalkResult>({
        kind: 'walk',
        target: floe,
        path: `/v1/instances?limit=${LIST_LIMIT}`,
        requests: LIST_REQUESTS,
      }),
    );
    const lat = sorted(list.latencies);
    const deep = sorted(list.latencies.filter((_, i) => list.pages[i]! >= 90));
    log(
      `${tag} GET /v1/instances?limit=${LIST_LIMIT} x${LIST_REQUESTS}: p50 ${fmt(percentile(lat, 0.5), 2)} ms, p95 ${fmt(percentile(lat, 0.95), 2)} ms, ` +
        `first request (cold) ${fmt(list.latencies[0], 2)} ms, pages 90-99 p50 ${fmt(percentile(deep, 0.5), 2)} ms; items per full walk ${JSON.stringify(list.itemsPerWalk)}, non-2xx ${list.non2xx}`,
    );
    return {
      name: target.name,
      version,
      bare,
      get,
      session,
      scoped,
      checker: checked,
      checkerQuestions,
      creates,
      allSucceededS,
      succeeded,
      failed,
      running,
      list,
    };
  } finally {
    await client.close();
    if (agent) await agent.close();
    await cp.close();
    await checker.close();
    if (agentDir) await rm(agentDir, { recursive: true, force: true });
  }
}

const loadavg = () =>
  os
    .loadavg()
    .map((l) => l.toFixed(2))
    .join(' ');

async function main(): Promise<void> {
  const cpus = os.cpus();
  log(
    `floe API benchmark — ${cpus.length} CPU(s) (${cpus[0]?.model ?? 'unknown'}), ${Math.round(os.totalmem() / 2 ** 30)} GiB RAM, Node.js ${process.version}, ` +
      `${os.platform()} ${os.release()}, load average ${loadavg()} before the run`,
  );
  log(
    `GET: ${CONNECTIONS} keep-alive HTTPS connections, ${WARMUP_MS / 1000} s warm-up + ${DURATION_MS / 1000} s measured per server ` +
      `(${ROUNDS} windows, bare Fastify and floe taking turns); creates: ${CREATES} at concurrency ${CREATE_CONCURRENCY}; ` +
      `list: ${LIST_REQUESTS} sequential pages of ${LIST_LIMIT} out of ${TOTAL_INSTANCES.toLocaleString('en')} instances`,
  );
  log(
    `The load generator and the agent run in worker threads of this process. The agent is a real floe Agent (mutual TLS link, reconciler) ` +
      `with the in-memory fake VM driver; it reports ${AGENT_CPUS} CPUs and ${AGENT_MEMORY_MIB / 1024} GiB instead of this machine's ${cpus.length} CPUs and ` +
      `${Math.round(os.totalmem() / 2 ** 30)} GiB, so the host has room for every create (overcommit settings are the defaults; placement still checks capacity).`,
  );
  log('');

  const started = performance.now();
  const results = await BenchWorker.using<LoadJob, StoreResults<StoreResult>>(
    new URL('./load-worker.ts', import.meta.url),
    (load) => benchEachStore(log, (target) => benchStore(target, load)),
  );
  const { names, cell } = results;
  const ratio = (r: StoreResult, g: GetResult = r.get) => rps(g) / rps(r.bare);
  const p50 = (r: StoreResult) => percentile(sorted(r.list.latencies), 0.5);
  const met = (f: (r: StoreResult) => boolean) =>
    names.map((n) => `${n} ${cell(n, (r) => (f(r) ? 'yes' : 'NO'))}`).join(', ');
  const rows: string[][] = [
    ['bare Fastify GET / (req/s, baseline)', ...names.map((n) => cell(n, (r) => fmt(rps(r.bare)))), 'baseline', ''],
    ['GET /v1/instances/{id} (req/s)', ...names.map((n) => cell(n, (r) => fmt(rps(r.get)))), '', ''],
    [
      'server µs/request, floe / bare',
      ...names.map((n) => cell(n, (r) => `${fmt(busyUs(r.get), 0)} / ${fmt(busyUs(r.bare), 0)}`)),
      'reported',
      '',
    ],
    [
      'GET ratio to bare Fastify',
      ...names.map((n) => cell(n, (r) => `${ratio(r).toFixed(2)}x`)),
      `>= ${GET_TARGET.toFixed(2)}x`,
      met((r) => ratio(r) >= GET_TARGET),
    ],
    [
      'GET ratio, session token',
      ...names.map((n) => cell(n, (r) => `${ratio(r, r.session).toFixed(2)}x`)),
      `>= ${GET_TARGET.toFixed(2)}x`,
      met((r) => ratio(r, r.session) >= GET_TARGET),
    ],
    [
      'GET ratio, token scoped to the instance',
      ...names.map((n) => cell(n, (r) => `${ratio(r, r.scoped).toFixed(2)}x`)),
      `>= ${GET_TARGET.toFixed(2)}x`,
      met((r) => ratio(r, r.scoped) >= GET_TARGET),
    ],
    [
      'GET ratio, external checker (cached)',
      ...names.map((n) =>
        cell(n, (r) => `${ratio(r, r.checker).toFixed(2)}x (non-2xx ${r.checker.non2xx}, ${r.checkerQuestions} asked)`),
      ),
      'reported',
      '',
    ],
    [
      `POST /v1/instances (req/s, c=${CREATE_CONCURRENCY})`,
      ...names.map((n) => cell(n, (r) => fmt(CREATES / ((r.creates.endedAt - r.creates.startedAt) / 1000)))),
      'reported',
      '',
    ],
    [
      `all ${CREATES} create operations succeeded (s)`,
      ...names.map((n) =>
        cell(n, (r) => (r.allSucceededS === null ? `${r.succeeded}/${CREATES} only` : fmt(r.allSucceededS, 2))),
      ),
      'reported',
      '',
    ],
    [
      `list ?limit=${LIST_LIMIT} of 10k, p50 (ms)`,
      ...names.map((n) => cell(n, (r) => fmt(p50(r), 2))),
      `<= ${LIST_P50_TARGET_MS} ms`,
      met((r) => p50(r) <= LIST_P50_TARGET_MS),
    ],
    [
      `list ?limit=${LIST_LIMIT} of 10k, p95 (ms)`,
      ...names.map((n) => cell(n, (r) => fmt(percentile(sorted(r.list.latencies), 0.95), 2))),
      'reported',
      '',
    ],
  ];
  log(
    `Summary (${cpus.length} CPU(s), Node.js ${process.version}; whole run ${((performance.now() - started) / 1000).toFixed(0)} s; load average ${loadavg()} after it)`,
  );
  log(table(['metric', ...names, 'target', 'met?'], rows));
}

await main();
