import { request } from 'node:https';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startPgProxy, type PgProxy } from '@floe/testkit';
import { openStore } from '../../packages/server/src/db/index.js';
import { storeTargets, type TestStore } from '../../packages/server/src/db/testing.js';
import { onlineTestHost, startTestControlPlane, type TestControlPlane } from '../../packages/server/src/testing.js';
import { clientFor } from './helpers.js';

/** One answer: status, headers, decoded body. */
interface Answer {
  status: number;
  retryAfter: string | undefined;
  code: string | undefined;
  body: unknown;
}

/** A request to the control plane (no retries, nothing hidden: every answer is counted). */
function call(cp: TestControlPlane, method: string, path: string, body?: unknown, token = true): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const payload = body === undefined ? undefined : JSON.stringify(body);
    const req = request(
      `${cp.url}${path}`,
      {
        method,
        ca: cp.ca.certPem,
        headers: {
          ...(token ? { authorization: `Bearer ${cp.adminToken}` } : {}),
          ...(payload === undefined ? {} : { 'content-type': 'application/json' }),
        },
        timeout: 30_000,
      },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => (text += d));
        res.on('end', () => {
          let parsed: unknown = text;
          try {
            parsed = JSON.parse(text);
          } catch {
            // not JSON
          }
          const header = res.headers['retry-after'];
          resolve({
            status: res.statusCode ?? 0,
            retryAfter: Array.isArray(header) ? header[0] : header,
            code: (parsed as { error?: { code?: string } } | null)?.error?.code,
            body: parsed,
          });
        });
      },
    );
    req.on('error', reject);
    req.on('timeout', () => req.destroy(new Error('request timed out')));
    req.end(payload);
  });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Counts of each status (and error code) seen. */
function histogram(answers: readonly Answer[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const a of answers) {
    const key = a.code === undefined ? String(a.status) : `${a.status} ${a.code}`;
    out[key] = (out[key] ?? 0) + 1;
  }
  return out;
}

const [sqlite, postgres] = storeTargets();

/**
 * The database going away while clients create instances: PostgreSQL cut off behind a proxy (the shared server
 * itself is never touched), SQLite locked by another process past the busy timeout. Requests get 503
 * store_unavailable with Retry-After, never a 500; /readyz says not ready while the store is gone and ready after;
 * nothing acknowledged is lost and the control plane recovers by itself.
 */
describe.skipIf(postgres!.skip)('PostgreSQL going away', () => {
  let direct: TestStore;
  let proxy: PgProxy;
  let cp: TestControlPlane;

  beforeAll(async () => {
    direct = await postgres!.open();
    const url = new URL(direct.options.url!);
    proxy = await startPgProxy({ host: url.hostname, port: Number(url.port || 5432) });
    const store = await openStore({ url: proxy.via(direct.options.url!), onError: () => undefined });
    cp = await startTestControlPlane(store, { FLOE_HOST_OFFLINE_AFTER_MS: '3600000' });
    await onlineTestHost(cp.app, 'big', { cpus: 100_000, memory_mib: 100_000_000, disk_free_gib: 1_000_000 });
    await clientFor(cp).images.create({ name: 'img' });
  }, 60_000);

  afterAll(async () => {
    await proxy?.restore();
    await cp?.close();
    await proxy?.close();
    await direct?.close();
  });

  it('answers 503 store_unavailable with Retry-After while it is cut off, is not ready, and recovers by itself', async () => {
    const before: Answer[] = [];
    const during: Answer[] = [];
    const after: Answer[] = [];
    let phase: 'before' | 'during' | 'after' = 'before';
    let running = true;
    const acknowledged: string[] = [];
    let restoredAt = 0;
    let firstCreateAfter = 0;
    const worker = async (w: number) => {
      for (let i = 0; running; i++) {
        const name = `w${w}-${i}`;
        const sentIn = phase;
        const a = await call(cp, 'POST', '/v1/instances', { name, image: 'img', machine_type: 'nano' });
        // A request that overlapped the cut in any way counts as during it.
        const answeredIn = phase;
        (sentIn === 'after' ? after : answeredIn === 'before' ? before : during).push(a);
        if (a.status === 202) {
          acknowledged.push(name);
          if (sentIn === 'after' && firstCreateAfter === 0) firstCreateAfter = Date.now();
        }
        if (a.status === 503) await sleep(50);
      }
    };
    const ready: Array<{ phase: string; status: number; code: string | undefined; at: number }> = [];
    const prober = async () => {
      while (running) {
        const a = await call(cp, 'GET', '/readyz', undefined, false);
        ready.push({ phase, status: a.status, code: a.code, at: Date.now() });
        await sleep(100);
      }
    };
    const work = [0, 1, 2, 3].map(worker);
    const probing = prober();
    await sleep(1500);

    phase = 'during';
    await proxy.cut();
    await sleep(6000);
    await proxy.startingUp(); // as a server in recovery: 57P03
    await sleep(2000);
    await proxy.restore();
    restoredAt = Date.now();
    phase = 'after';
    await sleep(4000);
    running = false;
    await Promise.all([...work, probing]);

    const all = [...before, ...during, ...after];
    console.log(
      `[store outage] before ${JSON.stringify(histogram(before))}; during the cut ${JSON.stringify(histogram(during))}; after ${JSON.stringify(histogram(after))}`,
    );
    const readyAfter = ready.find((r) => r.phase === 'after' && r.status === 200);
    console.log(
      `[store outage] recovery: first create acknowledged ${firstCreateAfter - restoredAt} ms and /readyz 200 ${
        readyAfter ? readyAfter.at - restoredAt : 'never'
      } ms after the restore; /readyz during: ${JSON.stringify(histogram(ready.filter((r) => r.phase === 'during') as unknown as Answer[]))}`,
    );
    expect(all.filter((a) => a.status >= 500 && a.status !== 503)).toEqual([]);
    expect(before.length).toBeGreaterThan(0);
    expect(before.every((a) => a.status === 202)).toBe(true);
    expect(after.every((a) => a.status === 202)).toBe(true);
    const unavailable = during.filter((a) => a.status === 503);
    expect(unavailable.length).toBeGreaterThan(10);
    expect(during.every((a) => a.status === 202 || a.status === 503)).toBe(true);
    for (const a of unavailable) {
      expect(a.code).toBe('store_unavailable');
      expect(a.retryAfter).toMatch(/^[1-9]\d*$/);
    }
    // Not ready while cut off (every probe but those racing the cut), ready again after.
    const duringProbes = ready.filter((r) => r.phase === 'during');
    expect(duringProbes.filter((r) => r.status === 503 && r.code === 'store_unavailable').length).toBeGreaterThan(
      duringProbes.length - 3,
    );
    expect(readyAfter).toBeDefined();
    expect(ready[ready.length - 1]!.status).toBe(200);
    // Recovered by itself: creates succeed again, and soon.
    expect(firstCreateAfter).toBeGreaterThan(0);
    expect(firstCreateAfter - restoredAt).toBeLessThan(5000);
    expect(after.filter((a) => a.status === 202).length).toBeGreaterThan(5);
    // Nothing acknowledged is lost.
    const names = new Set((await clientFor(cp).instances.listAll()).map((i) => i.name));
    expect(acknowledged.filter((n) => !names.has(n))).toEqual([]);
  }, 60_000);
});

describe('SQLite locked past the busy timeout', () => {
  let store: TestStore;
  let cp: TestControlPlane;

  beforeAll(async () => {
    store = await sqlite!.open();
    cp = await startTestControlPlane(store, { FLOE_HOST_OFFLINE_AFTER_MS: '3600000' });
    await onlineTestHost(cp.app, 'big');
    await clientFor(cp).images.create({ name: 'img' });
  }, 60_000);

  afterAll(async () => {
    await cp?.close();
  });

  it('answers 503 store_unavailable with Retry-After, then serves again once the lock is gone', async () => {
    // Another process's view of the file: a second connection that holds the write lock.
    const other = await openStore({ sqlitePath: store.options.sqlitePath!, migrate: false });
    let release!: () => void;
    const released = new Promise<void>((r) => (release = r));
    let locked!: () => void;
    const lockTaken = new Promise<void>((r) => (locked = r));
    const holding = other.db.connection().execute(async (conn) => {
      await sql`begin immediate`.execute(conn);
      locked();
      await released;
      await sql`rollback`.execute(conn);
    });
    await lockTaken;
    let a: Answer;
    try {
      a = await call(cp, 'POST', '/v1/instances', { name: 'locked', image: 'img', machine_type: 'nano' });
    } finally {
      release();
      await holding;
      await other.close();
    }
    expect(a.status).toBe(503);
    expect(a.code).toBe('store_unavailable');
    expect(a.retryAfter).toMatch(/^[1-9]\d*$/);
    const b = await call(cp, 'POST', '/v1/instances', { name: 'locked', image: 'img', machine_type: 'nano' });
    expect(b.status).toBe(202);
  }, 30_000);
});
