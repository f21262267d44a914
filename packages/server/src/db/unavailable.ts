import { FloeError } from '@floe/api';

/** Seconds a client is asked to wait (`Retry-After`) before retrying when the store is unavailable. */
export const STORE_RETRY_AFTER_SECONDS = 2;

/** True for the error the store raises when the database cannot be reached (`store_unavailable`). */
export function isStoreUnavailable(err: unknown): boolean {
  return err instanceof FloeError && err.code === 'store_unavailable';
}

/** Socket errors of a connection to PostgreSQL that cannot be made or was lost. */
const SOCKET_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ECONNABORTED',
  'EPIPE',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EHOSTDOWN',
  'ENETDOWN',
  'EAI_AGAIN',
]);

/**
 * SQLSTATEs of a server that is going away or not yet there: admin_shutdown, crash_shutdown,
 * cannot_connect_now (starting up or in recovery), too_many_connections, and the connection_exception class.
 */
const SQLSTATES = new Set(['57P01', '57P02', '57P03', '53300', '08000', '08001', '08003', '08004', '08006']);

/** SQLite's codes for a database another connection holds past the busy timeout. */
const SQLITE_CODES = new Set(['SQLITE_BUSY', 'SQLITE_BUSY_SNAPSHOT', 'SQLITE_BUSY_TIMEOUT', 'SQLITE_BUSY_RECOVERY']);

/** What node-postgres says when a connection ends under a query, cannot be made in time, or is dead in the pool. */
const PG_MESSAGES = [
  /^Connection terminated/,
  /^timeout exceeded when trying to connect/,
  /^Client has encountered a connection error and is not queryable/,
  /^Client was closed and is not queryable/,
];

/**
 * Why `err` means the database cannot be reached right now (down, starting up, the connection lost, SQLite
 * locked past its busy timeout), or null for any other error: a constraint violation, a syntax error or a
 * bug is not an outage and stays a 500. Looks through `cause` and the errors of an AggregateError (a refused
 * connection to every address of a host).
 */
export function storeUnavailableReason(err: unknown, depth = 0): string | null {
  if (err === null || typeof err !== 'object' || depth > 4) return null;
  const e = err as { code?: unknown; message?: unknown; cause?: unknown; errors?: unknown };
  const code = typeof e.code === 'string' ? e.code : undefined;
  const message = typeof e.message === 'string' ? e.message : '';
  if (code !== undefined && (SOCKET_CODES.has(code) || SQLSTATES.has(code) || SQLITE_CODES.has(code)))
    return message === '' ? code : `${code}: ${message}`;
  if (PG_MESSAGES.some((re) => re.test(message))) return message;
  if (Array.isArray(e.errors)) {
    for (const inner of e.errors) {
      const reason = storeUnavailableReason(inner, depth + 1);
      if (reason !== null) return reason;
    }
  }
  return e.cause === undefined ? null : storeUnavailableReason(e.cause, depth + 1);
}
