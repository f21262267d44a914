/**
 * The control plane of the scale benchmark, in a child process of its own so
 * that its resident memory is its own (the agents and the load generator live
 * in the parent). It answers the parent's requests over the IPC channel.
 */
import { rm } from 'node:fs/promises';
import { sql } from 'kysely';
import { transaction } from '../packages/server/src/db/index.js';
import { storeTargetsFor } from '../packages/server/src/db/testing.js';
import { newId } from '../packages/server/src/ids.js';
import { placeInstance } from '../packages/server/src/services/scheduler.js';
import { prepareAgentDir, startTestControlPlane, type TestControlPlane } from '../packages/server/src/testing.js';

/** What the parent asks. */
export type CpRequest =
  | { kind: 'start'; store: 'sqlite' | 'postgres'; agents: number; env: Record<string, string> }
  | { kind: 'probe'; samples: number }
  | { kind: 'seed'; template: string; count: number; hostIds: string[] }
  | { kind: 'stats' }
  | { kind: 'stop' };

/** The answer to `start`. */
export interface CpStarted {
  url: string;
  ca: string;
  token: string;
  storeVersion: string;
  loadedRssMib: number;
  agents: Array<{ hostId: string; dataDir: string }>;
}

/** The answer to `stats`. */
export interface CpStats {
  rssMib: number;
  heapUsedMib: number;
  externalMib: number;
  instances: number;
  /** Instances whose status the agents reported running. */
  running: number;
  hostsOnline: number;
  /** Event-loop utilization since the previous `stats` (0..1). */
  elu: number;
}

interface Envelope {
  id: number;
  req: CpRequest;
}

let cp: TestControlPlane | null = null;
let agentDirs: string[] = [];
let lastElu = performance.eventLoopUtilization();
/** This process's RSS with its modules loaded, before the control plane starts (the tsx loader and the imports). */
const loadedRssMib = process.memoryUsage().rss / 2 ** 20;

const mib = (bytes: number) => bytes / 2 ** 20;

async function start(req: Extract<CpRequest, { kind: 'start' }>): Promise<CpStarted> {
  const target = storeTargetsFor(process.env).find((t) => t.name === req.store)!;
  if (target.skip !== null) throw new Error(`${req.store}: ${target.skip}`);
  cp = await startTestControlPlane(await target.open(), { FLOE_LOG_LEVEL: 'error', ...req.env });
  const agents: CpStarted['agents'] = [];
  for (let i = 0; i < req.agents; i++) agents.push(await prepareAgentDir(cp, `scale-${String(i).padStart(4, '0')}`));
  agentDirs = agents.map((a) => a.dataDir);
  const v =
    cp.store.dialect === 'sqlite'
      ? await cp.store.db.selectNoFrom((eb) => eb.fn<string>('sqlite_version', []).as('v')).executeTakeFirstOrThrow()
      : { v: 'PostgreSQL' };
  return {
    url: cp.url,
    ca: cp.ca.certPem,
    token: cp.adminToken,
    storeVersion: cp.store.dialect === 'sqlite' ? `SQLite ${v.v}` : v.v,
    loadedRssMib,
    agents,
  };
}

/**
 * Time the scheduler alone: `placeInstance` as a create runs it (every online
 * host, its allocations, the choice), on the live store, `samples` times in a
 * row. It only reads, so nothing is placed. Milliseconds, in call order.
 */
async function probe(samples: number): Promise<number[]> {
  const c = cp!;
  const out: number[] = [];
  for (let i = 0; i < samples; i++) {
    const t0 = performance.now();
    await placeInstance(c.store.db, c.store.dialect, c.config, { vcpus: 1, memory_mib: 256 });
    out.push(performance.now() - t0);
  }
  return out;
}

/**
 * Copy the instance named `template` `count` times under new ids and names,
 * placed round-robin on `hostIds` as spread placement would: valid scheduled
 * instances, inserted directly without the API's per-create cost. Agents that
 * connect afterwards get them in their snapshot.
 */
async function seed(req: Extract<CpRequest, { kind: 'seed' }>): Promise<null> {
  const c = cp!;
  const template = await c.store.db
    .selectFrom('instances')
    .selectAll()
    .where('name', '=', req.template)
    .executeTakeFirstOrThrow();
  const status = JSON.parse(template.status) as Record<string, unknown>;
  const BATCH = 500;
  await transaction(c.store, async (trx) => {
    for (let done = 0; done < req.count; done += BATCH) {
      const rows = Array.from({ length: Math.min(BATCH, req.count - done) }, (_, i) => {
        const host = req.hostIds[(done + i) % req.hostIds.length]!;
        return {
          ...template,
          id: newId('instance'),
          name: `seed-${String(done + i).padStart(6, '0')}`,
          host_id: host,
          state: 'scheduled',
          status: JSON.stringify({ ...status, state: 'scheduled', host: host }),
        };
      });
      await trx.insertInto('instances').values(rows).execute();
    }
  });
  if (c.store.dialect === 'postgres') await sql`analyze instances`.execute(c.store.db);
  return null;
}

async function stats(): Promise<CpStats> {
  const c = cp!;
  const m = process.memoryUsage();
  const count = async (table: 'instances' | 'hosts', state?: string) => {
    let q = c.store.db.selectFrom(table).select((eb) => eb.fn.countAll<number>().as('n'));
    if (state !== undefined) q = q.where('state', '=', state);
    return Number((await q.executeTakeFirstOrThrow()).n);
  };
  const elu = performance.eventLoopUtilization(lastElu);
  lastElu = performance.eventLoopUtilization();
  return {
    rssMib: mib(m.rss),
    heapUsedMib: mib(m.heapUsed),
    externalMib: mib(m.external + m.arrayBuffers),
    instances: await count('instances'),
    running: await count('instances', 'running'),
    hostsOnline: await count('hosts', 'online'),
    elu: elu.utilization,
  };
}

async function stop(): Promise<null> {
  await cp?.close();
  cp = null;
  await Promise.all(agentDirs.map((d) => rm(d, { recursive: true, force: true })));
  return null;
}

process.on('message', (msg: Envelope) => {
  const run = async (): Promise<unknown> => {
    switch (msg.req.kind) {
      case 'start':
        return start(msg.req);
      case 'probe':
        return probe(msg.req.samples);
      case 'seed':
        return seed(msg.req);
      case 'stats':
        return stats();
      case 'stop':
        return stop();
    }
  };
  run().then(
    (result) => process.send!({ id: msg.id, ok: true, result }),
    (err: unknown) => process.send!({ id: msg.id, ok: false, error: err instanceof Error ? err.stack : String(err) }),
  );
});
process.on('disconnect', () => {
  void stop().finally(() => process.exit(0));
});
