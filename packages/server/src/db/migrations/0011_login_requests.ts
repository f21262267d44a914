import { sql, type Kysely, type Migration } from 'kysely';
import type { Dialect } from '../dialect.js';

/**
 * Logins through an OpenID provider that are under way: what floe made for each (state, nonce, PKCE
 * verifier) until the browser comes back, then the provider's verified answer until the client that
 * started the login collects its session with the poll secret. In the database rather than in memory,
 * so the browser may come back to any control plane and the client may poll any other. The state and
 * the poll secret are kept only as hashes; no session token is ever stored here (it is made when the
 * client collects it). A login is collected only once the browser that came back confirmed it with the
 * code the client was shown (its hash here, with the hash of the confirmation secret that browser got
 * and the wrong codes tried), so a login started by one person cannot be finished in another's browser.
 */
export function loginRequests(dialect: Dialect): Migration {
  const text = dialect === 'postgres' ? sql`text collate "C"` : sql`text`;
  return {
    // eslint-disable-next-line @typescript-eslint/no-explicit-any -- a migration describes history, not the current schema
    async up(db: Kysely<any>) {
      await db.schema
        .createTable('login_requests')
        .addColumn('id', text, (c) => c.primaryKey().notNull())
        .addColumn('authenticator', text, (c) => c.notNull())
        .addColumn('state_hash', text, (c) => c.notNull())
        .addColumn('code_verifier', text, (c) => c.notNull())
        .addColumn('nonce', text, (c) => c.notNull())
        .addColumn('redirect_uri', text, (c) => c.notNull())
        .addColumn('poll_hash', text, (c) => c.notNull())
        .addColumn('user_code_hash', text, (c) => c.notNull())
        .addColumn('confirm_hash', text)
        .addColumn('confirm_attempts', 'integer', (c) => c.notNull())
        .addColumn('confirmed_at', text)
        .addColumn('session_name', text)
        .addColumn('created_at', text, (c) => c.notNull())
        .addColumn('expires_at', text, (c) => c.notNull())
        .addColumn('completed_at', text)
        .addColumn('result', text)
        .addColumn('error', text)
        .addColumn('consumed_at', text)
        .execute();
      await db.schema
        .createIndex('login_requests_state_hash_key')
        .unique()
        .on('login_requests')
        .column('state_hash')
        .execute();
      await db.schema
        .createIndex('login_requests_confirm_hash_key')
        .unique()
        .on('login_requests')
        .column('confirm_hash')
        .execute();
      await db.schema.createIndex('login_requests_expires_at_idx').on('login_requests').column('expires_at').execute();
    },
    // eslint-disable-next-line @typescript-eslint/no-explicit-any -- as above
    async down(db: Kysely<any>) {
      await db.schema.dropTable('login_requests').execute();
    },
  };
}
