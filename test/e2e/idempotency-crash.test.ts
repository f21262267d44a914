import { createHash, randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { freePort } from '@floe/testkit';
import { sql } from 'kysely';
import { openStore, type Store } from '../../packages/server/src/db/index.js';
import { storeTargets, type TestStore } from '../../packages/server/src/db/testing.js';
import { FloedProcess } from './floed.js';
import { eventually, kill, startAgent } from './helpers.js';
import { httpCaller } from './http.js';

/**
 * An Idempotency-Key reserved by a control plane that was killed -9 mid-request does not stay
 * "in progress": after the restart a retry with the same key takes the reservation over and performs
 * the request. A reservation whose control plane lives still answers 409.
 */
describe('Idempotency-Key after a crash of the control plane', () => {
  let dataDir = '';
  let floed: FloedProcess | null = null;
  let cleanup: Array<() => Promise<unknown>> = [];

  afterEach(async () => {
    await floed?.crash();
    for (const f of cleanup.reverse()) await f().catch(() => undefined);
    cleanup = [];
    if (dataDir) await rm(dataDir, { recursive: true, force: true });
  });

  async function reservations(store: Store, key: string) {
    return store.db.selectFrom('idempotency_keys').selectAll().where('key', '=', key).execute();
  }

  const target = storeTargets().find((t) => t.name === 'postgres')!;
  it.skipIf(target.skip)(
    'PostgreSQL: killed -9 while the request waits on a lock; the retry completes once the lease ran out',
    async () => {
      const store: TestStore = await target.open();
      cleanup.push(() => store.close());
      dataDir = await mkdtemp(path.join(os.tmpdir(), 'floe-idem-'));
      floed = new FloedProcess({
        dataDir,
        port: await freePort(),
        databaseUrl: store.options.url!,
        env: { FLOE_IDEMPOTENCY_LEASE_S: '2' },
      });
      floed.init();
      await floed.start();
      const http = httpCaller(floed.url, floed.ca, floed.adminToken);
      cleanup.push(() => http.close());

      // Hold the projects table so the create blocks after its key is reserved.
      let unlock = () => {};
      const unlocked = new Promise<void>((r) => (unlock = r));
      let locked = () => {};
      const isLocked = new Promise<void>((r) => (locked = r));
      const holding = store.db
        .transaction()
        .execute(async (trx) => {
          await sql`lock table projects in access exclusive mode`.execute(trx);
          locked();
          await unlocked;
          throw new Error('rollback');
        })
        .catch(() => undefined);
      cleanup.push(async () => {
        unlock();
        await holding;
      });
      await isLocked;
      const key = `k-${randomUUID()}`;
      const body = { name: 'after-crash' };
      void http.call('POST', '/v1/projects', body, key);
      await eventually(async () => (await reservations(store, key)).length === 1, 'key reserved');
      // Its control plane is alive: a repeat is told the first is in progress.
      const live = await http.call('POST', '/v1/projects', body, key);
      expect(live.status).toBe(409);
      expect(live.body.error.code).toBe('idempotency_key_in_progress');

      await floed.crash();
      unlock();
      await holding;
      const [stale] = await reservations(store, key);
      expect(stale!.status_code).toBe(0);
      await floed.start();

      // Until the dead control plane's lease runs out the key is busy; then the retry runs the create.
      const started = Date.now();
      const done = await eventually(
        async () => {
          const r = await http.call('POST', '/v1/projects', body, key);
          expect([201, 409]).toContain(r.status);
          return r.status === 201 ? r : undefined;
        },
        'the retry completes',
        20_000,
      );
      expect(Date.now() - started).toBeLessThan(10_000);
      expect(done.body.name).toBe('after-crash');
      const replay = await http.call('POST', '/v1/projects', body, key);
      expect(replay.status).toBe(201);
      expect(replay.headers['idempotent-replayed']).toBe('true');
      expect(replay.body.id).toBe(done.body.id);
      expect(await store.db.selectFrom('projects').select('id').where('name', '=', 'after-crash').execute()).toEqual([
        { id: done.body.id },
      ]);
    },
    120_000,
  );

  it('SQLite: a reservation left by a killed control plane is taken over at once by the retry', async () => {
    dataDir = await mkdtemp(path.join(os.tmpdir(), 'floe-idem-'));
    floed = new FloedProcess({ dataDir, port: await freePort() });
    floed.init();
    await floed.start();
    const http = httpCaller(floed.url, floed.ca, floed.adminToken);
    cleanup.push(() => http.close());
    // A first request shows how this control plane records a key (who, which path, which body hash).
    const first = await http.call('POST', '/v1/projects', { name: 'first' }, 'k-first');
    expect(first.status).toBe(201);
    await floed.crash();

    const store = await openStore({ sqlitePath: path.join(dataDir, 'floe.db') });
    cleanup.push(() => store.close());
    const [model] = await reservations(store, 'k-first');
    // The row the killed process left: reserved (status 0) by it (its owner id), its lease not run out yet.
    const body = { name: 'after-crash' };
    await store.db
      .insertInto('idempotency_keys')
      .values({
        ...model!,
        key: 'k-crash',
        body_hash: createHash('sha256').update(JSON.stringify(body)).digest('hex'),
        status_code: 0,
        response: '',
        created_at: new Date().toISOString(),
        ...('lease_until' in model! ? { lease_until: new Date(Date.now() + 60_000).toISOString() } : {}),
      })
      .execute();

    await floed.start();
    const retry = await http.call('POST', '/v1/projects', body, 'k-crash');
    expect(retry.status, JSON.stringify(retry.body)).toBe(201);
    expect(retry.body.name).toBe('after-crash');
    const [row] = await reservations(store, 'k-crash');
    expect(row!.status_code).toBe(201);
    const replay = await http.call('POST', '/v1/projects', body, 'k-crash');
    expect(replay.headers['idempotent-replayed']).toBe('true');
    expect(replay.body.id).toBe(retry.body.id);
  }, 120_000);

  it('SQLite: killed -9 after the write committed, before it answered: the retry gets the answer, nothing runs twice', async () => {
    dataDir = await mkdtemp(path.join(os.tmpdir(), 'floe-idem-'));
    floed = new FloedProcess({ dataDir, port: await freePort(), env: { FLOE_HEARTBEAT_MS: '500' } });
    floed.init();
    await floed.start();
    const agent = startAgent(floed.url, floed.agentDir);
    cleanup.push(() => kill(agent));
    const http = httpCaller(floed.url, floed.ca, floed.adminToken);
    cleanup.push(() => http.close());
    const f = floed;
    await eventually(
      async () => (await http.call('GET', `/v1/hosts/${f.hostId}`)).body?.status?.state === 'online',
      'host online',
      60_000,
    );
    expect((await http.call('POST', '/v1/images', { name: 'img' })).status).toBe(201);
    expect(
      (await http.call('POST', '/v1/networks', { name: 'net', kind: 'private', ipv4: '10.78.0.0/24' })).status,
    ).toBe(201);
    const store = await openStore({ sqlitePath: path.join(dataDir, 'floe.db') });
    cleanup.push(() => store.close());
    // A stopped agent never finishes the operation: ?wait holds the answer back after the write committed.
    agent.kill('SIGSTOP');
    cleanup.push(async () => agent.kill('SIGCONT'));
    const create = { name: 'vm-1', image: 'img', machine_type: 'nano', networks: ['net'] };
    void http.call('POST', '/v1/instances?wait=60', create, 'k-create');
    await eventually(
      async () =>
        (await store.db.selectFrom('instances').select('id').where('name', '=', 'vm-1').execute()).length === 1,
      'instance committed',
    );
    const [instance] = await store.db.selectFrom('instances').select('id').where('name', '=', 'vm-1').execute();
    void http.call('POST', `/v1/instances/${instance!.id}/nics?wait=60`, { network: 'net' }, 'k-nic');
    await eventually(
      async () =>
        (await store.db.selectFrom('nics').select('id').where('instance_id', '=', instance!.id).execute()).length === 2,
      'second NIC committed',
    );
    await floed.crash();
    agent.kill('SIGCONT');
    await floed.start();

    const again = await http.call('POST', '/v1/instances?wait=60', create, 'k-create');
    expect(again.status, JSON.stringify(again.body)).toBeLessThan(300);
    expect(again.body.instance.id).toBe(instance!.id);
    const nic = await http.call('POST', `/v1/instances/${instance!.id}/nics?wait=60`, { network: 'net' }, 'k-nic');
    expect(nic.status, JSON.stringify(nic.body)).toBeLessThan(300);
    const nics = await store.db.selectFrom('nics').select('id').where('instance_id', '=', instance!.id).execute();
    expect(nics).toHaveLength(2);
    expect(nics.map((n) => n.id)).toContain(nic.body.nic.id);
  }, 180_000);
});
