import { parentPort } from 'node:worker_threads';
import { Pool } from 'undici';
import { epochMs, serveJobs } from './worker.js';

/** Where and how the load generator connects: HTTPS with keep-alive, trusting `ca`. */
export interface Target {
  origin: string;
  ca: string;
  headers: Record<string, string>;
}

/** The jobs the load worker runs; each answers with the matching result type below. */
export type LoadJob =
  | { kind: 'rate'; target: Target; path: string; connections: number; durationMs: number }
  | {
      kind: 'creates';
      target: Target;
      count: number;
      concurrency: number;
      namePrefix: string;
      image: string;
      machineType: string;
    }
  | { kind: 'walk'; target: Target; path: string; requests: number }
  | { kind: 'close' };

/**
 * One window of closed-loop throughput: `connections` clients each send the
 * next request when the last one answered. Connections stay open between
 * windows of the same target (until a `close` job), so only the first window
 * pays for TLS handshakes.
 */
export interface RateResult {
  /** Responses completed inside the window. */
  requests: number;
  /** Of those, how many were not 2xx. */
  non2xx: number;
  errors: number;
  durationMs: number;
  /** Latencies (ms) of the responses counted. */
  latencies: number[];
}

/** A batch of creates: what each answered and when the batch started and ended (epoch ms). */
export interface CreatesResult {
  startedAt: number;
  endedAt: number;
  statuses: Record<string, number>;
  operationIds: string[];
  firstError: string | null;
}

/** Sequential list pages: latency (ms) and page index of each request, and how many items each full walk saw. */
export interface WalkResult {
  latencies: number[];
  /** Page index (0 = first page) of each request. */
  pages: number[];
  itemsPerWalk: number[];
  non2xx: number;
}

function pool(target: Target, connections: number): Pool {
  return new Pool(target.origin, { connections, pipelining: 1, connect: { ca: target.ca } });
}

const ratePools = new Map<string, Pool>();

async function rate(job: Extract<LoadJob, { kind: 'rate' }>): Promise<RateResult> {
  const key = `${job.target.origin} ${job.connections}`;
  let p = ratePools.get(key);
  if (p === undefined) ratePools.set(key, (p = pool(job.target, job.connections)));
  const result: RateResult = { requests: 0, non2xx: 0, errors: 0, durationMs: job.durationMs, latencies: [] };
  const end = performance.now() + job.durationMs;
  const client = async () => {
    while (performance.now() < end) {
      const t0 = performance.now();
      try {
        const res = await p.request({ path: job.path, method: 'GET', headers: job.target.headers });
        await res.body.dump();
        const t1 = performance.now();
        if (t1 > end) break;
        result.requests++;
        result.latencies.push(t1 - t0);
        if (res.statusCode < 200 || res.statusCode > 299) result.non2xx++;
      } catch {
        result.errors++;
      }
    }
  };
  await Promise.all(Array.from({ length: job.connections }, client));
  return result;
}

async function creates(job: Extract<LoadJob, { kind: 'creates' }>): Promise<CreatesResult> {
  const p = pool(job.target, job.concurrency);
  const statuses: Record<string, number> = {};
  const operationIds: string[] = [];
  let firstError: string | null = null;
  let next = 0;
  const startedAt = epochMs();
  const client = async () => {
    for (let i = next++; i < job.count; i = next++) {
      const body = JSON.stringify({
        name: `${job.namePrefix}${String(i).padStart(5, '0')}`,
        image: job.image,
        machine_type: job.machineType,
      });
      try {
        const res = await p.request({
          path: '/v1/instances',
          method: 'POST',
          headers: { ...job.target.headers, 'content-type': 'application/json' },
          body,
        });
        const text = await res.body.text();
        statuses[res.statusCode] = (statuses[res.statusCode] ?? 0) + 1;
        if (res.statusCode === 202 || res.statusCode === 200) {
          operationIds.push((JSON.parse(text) as { operation: { id: string } }).operation.id);
        } else {
          firstError ??= `${res.statusCode} ${text.slice(0, 300)}`;
        }
      } catch (err) {
        statuses.error = (statuses.error ?? 0) + 1;
        firstError ??= (err as Error).message;
      }
    }
  };
  await Promise.all(Array.from({ length: job.concurrency }, client));
  const endedAt = epochMs();
  await p.close();
  return { startedAt, endedAt, statuses, operationIds, firstError };
}

async function walk(job: Extract<LoadJob, { kind: 'walk' }>): Promise<WalkResult> {
  const p = pool(job.target, 1);
  // Connect (TLS handshake) before the clock runs: the walk measures the list, not the transport setup.
  await (await p.request({ path: '/healthz', method: 'GET' })).body.dump();
  const out: WalkResult = { latencies: [], pages: [], itemsPerWalk: [], non2xx: 0 };
  let cursor: string | null = null;
  let page = 0;
  let items = 0;
  for (let i = 0; i < job.requests; i++) {
    const path: string = cursor === null ? job.path : `${job.path}&cursor=${encodeURIComponent(cursor)}`;
    const t0 = performance.now();
    const res = await p.request({ path, method: 'GET', headers: job.target.headers });
    const text = await res.body.text();
    out.latencies.push(performance.now() - t0);
    out.pages.push(page);
    if (res.statusCode !== 200) {
      out.non2xx++;
      cursor = null;
      page = 0;
      continue;
    }
    // Parsed after the clock stopped: the client's JSON work is not the server's latency.
    const body = JSON.parse(text) as { items: unknown[]; next_cursor: string | null };
    items += body.items.length;
    cursor = body.next_cursor;
    page++;
    if (cursor === null) {
      out.itemsPerWalk.push(items);
      items = 0;
      page = 0;
    }
  }
  await p.close();
  return out;
}

serveJobs<LoadJob>(parentPort!, async (job) => {
  switch (job.kind) {
    case 'rate':
      return rate(job);
    case 'close':
      await Promise.all([...ratePools.values()].map((p) => p.close()));
      ratePools.clear();
      return null;
    case 'creates':
      return creates(job);
    case 'walk':
      return walk(job);
  }
});
