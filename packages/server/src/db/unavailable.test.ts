import pg from 'pg';
import { describe, expect, it } from 'vitest';
import { freePort } from '@floe/testkit';
import { storeTargets } from './testing.js';
import { storeUnavailableReason } from './unavailable.js';

/** What `work` rejects with. */
async function failure(work: () => Promise<unknown>): Promise<unknown> {
  try {
    await work();
  } catch (err) {
    return err;
  }
  throw new Error('expected a failure');
}

describe('storeUnavailableReason', () => {
  it('names a refused PostgreSQL connection', async () => {
    const port = await freePort();
    const client = new pg.Client({ connectionString: `postgres://floe@127.0.0.1:${port}/floe` });
    const err = await failure(() => client.connect());
    expect(storeUnavailableReason(err)).toMatch(/ECONNREFUSED/);
  });

  it('names the SQLSTATEs of a server going away or starting, and a connection lost under a query', () => {
    for (const code of ['57P01', '57P02', '57P03'])
      expect(storeUnavailableReason(Object.assign(new Error('x'), { code }))).toContain(code);
    expect(storeUnavailableReason(new Error('Connection terminated unexpectedly'))).toBe(
      'Connection terminated unexpectedly',
    );
    const refused = Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' });
    expect(storeUnavailableReason(new AggregateError([refused], ''))).toMatch(/ECONNREFUSED/);
    expect(storeUnavailableReason(new Error('wrapped', { cause: refused }))).toMatch(/ECONNREFUSED/);
  });

  it('names SQLite busy past its timeout', () => {
    const err = Object.assign(new Error('database is locked'), { code: 'SQLITE_BUSY' });
    expect(storeUnavailableReason(err)).toContain('SQLITE_BUSY');
  });

  it('leaves bugs and other failures alone', () => {
    expect(storeUnavailableReason(new TypeError("Cannot read properties of undefined (reading 'id')"))).toBeNull();
    expect(storeUnavailableReason(Object.assign(new Error('duplicate key'), { code: '23505' }))).toBeNull();
    expect(storeUnavailableReason(Object.assign(new Error('syntax error'), { code: '42601' }))).toBeNull();
    expect(storeUnavailableReason(Object.assign(new Error('UNIQUE'), { code: 'SQLITE_CONSTRAINT_UNIQUE' }))).toBeNull();
    expect(storeUnavailableReason(null)).toBeNull();
    expect(storeUnavailableReason('ECONNREFUSED')).toBeNull();
  });

  for (const target of storeTargets()) {
    it.skipIf(target.skip)(`leaves a real SQL error on ${target.name} alone`, async () => {
      const store = await target.open();
      try {
        const err = await failure(() =>
          store.db
            .selectFrom('no_such_table' as 'hosts')
            .selectAll()
            .execute(),
        );
        expect(storeUnavailableReason(err)).toBeNull();
      } finally {
        await store.close();
      }
    });
  }
});
