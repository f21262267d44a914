import { sql } from 'kysely';
import { describe, expect, it } from 'vitest';
import { openStore, transaction } from './db/index.js';
import { loadConfig } from './config.js';
import { storeTargets } from './db/testing.js';
import { maintain } from './maintenance.js';

for (const t of storeTargets()) {
  describe.skipIf(t.skip)(`housekeeping on ${t.name}`, () => {
    it('forgets old idempotency answers and old events, keeps recent ones', async () => {
      const store = await t.open();
      try {
        const config = loadConfig({ FLOE_EVENT_RETENTION_DAYS: '7' });
        const now = Date.now();
        const old = new Date(now - 8 * 86_400_000).toISOString();
        const recent = new Date(now - 60_000).toISOString();
        const key = (k: string, at: string) => ({
          token_id: 'tok',
          key: k,
          method: 'POST',
          path: '/v1/x',
          body_hash: 'h',
          status_code: 201,
          response: '{}',
          created_at: at,
        });
        await store.db
          .insertInto('idempotency_keys')
          .values([key('old', old), key('new', recent)])
          .execute();
        const ev = (id: string, at: string) => ({
          id,
          time: at,
          type: 'resource.created',
          project: null,
          kind: 'project',
          resource_id: 'prj',
          data: '{}',
        });
        await store.db
          .insertInto('events')
          .values([ev('evt_old', old), ev('evt_new', recent)])
          .execute();
        const token = (id: string, kind: 'session' | null, expires: string | null, revoked: string | null) => ({
          id,
          name: id,
          secret_hash: id,
          admin: 0,
          created_at: old,
          expires_at: expires,
          last_used_at: null,
          revoked_at: revoked,
          user_id: null,
          kind,
        });
        const dayAgo = new Date(now - 86_400_000 - 60_000).toISOString();
        await store.db
          .insertInto('tokens')
          .values([
            token('tok_expired_session', 'session', dayAgo, null),
            token('tok_revoked_session', 'session', null, dayAgo),
            token('tok_fresh_session', 'session', recent, null),
            token('tok_expired_api', null, dayAgo, dayAgo),
          ])
          .execute();
        const r = await maintain(store, config, now);
        expect(r).toEqual({ ran: true, idempotencyKeys: 1, events: 1, auditRecords: 0, sessions: 2 });
        expect((await store.db.selectFrom('tokens').select('id').orderBy('id').execute()).map((x) => x.id)).toEqual([
          'tok_expired_api',
          'tok_fresh_session',
        ]);
        expect((await store.db.selectFrom('idempotency_keys').select('key').execute()).map((x) => x.key)).toEqual([
          'new',
        ]);
        expect((await store.db.selectFrom('events').select('id').execute()).map((x) => x.id)).toEqual(['evt_new']);
        expect(await maintain(store, config, now)).toEqual({
          ran: true,
          idempotencyKeys: 0,
          events: 0,
          auditRecords: 0,
          sessions: 0,
        });
      } finally {
        await store.close();
      }
    });
  });
}

const pg = storeTargets().find((t) => t.name === 'postgres')!;
describe.skipIf(pg.skip)('housekeeping across control planes', () => {
  it('runs on one control plane at a time (advisory lock)', async () => {
    const store = await pg.open();
    const other = await openStore({ url: store.options.url! });
    try {
      const config = loadConfig({});
      let release!: () => void;
      const held = new Promise<void>((r) => {
        release = r;
      });
      let locked!: () => void;
      const isLocked = new Promise<void>((r) => {
        locked = r;
      });
      const holder = transaction(other, async (trx) => {
        await sql`select pg_advisory_xact_lock(${0x666c6f65})`.execute(trx);
        locked();
        await held;
      });
      await isLocked;
      expect((await maintain(store, config)).ran).toBe(false);
      release();
      await holder;
      expect((await maintain(store, config)).ran).toBe(true);
    } finally {
      await other.close();
      await store.close();
    }
  });
});
