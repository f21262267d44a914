import { FloeError } from '@floe/api';
import { sql } from 'kysely';
import type { Store } from '../db/index.js';

/** How long the database may take to answer a readiness probe. */
const PROBE_TIMEOUT_MS = 2000;

/**
 * Resolves when the store answers a trivial query; throws `store_unavailable` (503 + Retry-After) with the
 * reason when it does not, or not within two seconds.
 */
export async function checkStore(store: Store): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(
      () => reject(new FloeError('store_unavailable', `the database did not answer within ${PROBE_TIMEOUT_MS} ms`)),
      PROBE_TIMEOUT_MS,
    );
  });
  try {
    await Promise.race([sql`select 1`.execute(store.db), timeout]);
  } catch (err) {
    if (err instanceof FloeError) throw err;
    // Anyone may probe readiness: say what kind of failure it is, never the database's address or its text.
    const code = (err as { code?: unknown }).code;
    const kind = typeof code === 'string' && /^[A-Z0-9_]{1,32}$/.test(code) ? ` (${code})` : '';
    throw new FloeError('store_unavailable', `the database does not answer${kind}`);
  } finally {
    clearTimeout(timer);
  }
}
