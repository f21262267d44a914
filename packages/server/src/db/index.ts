import { AsyncLocalStorage } from 'node:async_hooks';
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import BetterSqlite3 from 'better-sqlite3';
import pg from 'pg';
import {
  CompiledQuery,
  Kysely,
  PostgresDialect,
  SqliteAdapter,
  SqliteDialect,
  SqliteDriver,
  type DatabaseConnection,
  type DialectAdapter,
  type Driver,
  type KyselyPlugin,
  type PluginTransformQueryArgs,
  type PluginTransformResultArgs,
  type QueryResult,
  type RootOperationNode,
  type SelectQueryBuilder,
  type SqliteDatabase,
  type SqliteDialectConfig,
  type SqliteStatement,
  type Transaction,
  type UnknownRow,
} from 'kysely';
import { FloeError } from '@floe/api';
import type { Database } from './schema.js';
import { guardedDialect } from './guarded-dialect.js';
import { migrate } from './migrations.js';

/** The table shapes and Kysely's transaction handle, so callers import the store from one place. */
export type { Database } from './schema.js';
export type { Transaction } from 'kysely';

import type { Dialect } from './dialect.js';
export type { Dialect } from './dialect.js';

/** Either the database or an open transaction. */
export type Db = Kysely<Database> | Transaction<Database>;

/** An open database: the Kysely handle, which dialect it speaks, and how to let go of it. */
export interface Store {
  db: Kysely<Database>;
  dialect: Dialect;
  /** The PostgreSQL URL (for LISTEN connections); absent for SQLite. */
  url?: string;
  close(): Promise<void>;
}

/** Where the store lives: a `postgres://` URL, or else a SQLite file (`:memory:` works too). */
export interface OpenStoreOptions {
  url?: string;
  sqlitePath?: string;
  /** Apply pending migrations on open (default true). */
  migrate?: boolean;
  /** Errors of idle PostgreSQL connections (the pool replaces them); ignored when not given. */
  onError?: (err: Error) => void;
}

/** True when `url` names a PostgreSQL database rather than a SQLite file. */
function isPostgresUrl(url: string | undefined): url is string {
  return url !== undefined && /^postgres(ql)?:\/\//i.test(url);
}

/** Opens the store: PostgreSQL for a `postgres://` URL, otherwise SQLite at `sqlitePath`; migrates unless told not to. */
export async function openStore(opts: OpenStoreOptions): Promise<Store> {
  const store = isPostgresUrl(opts.url) ? openPostgres(opts.url, opts.onError) : openSqlite(opts.sqlitePath);
  if (opts.migrate ?? true) {
    try {
      await migrate(store.db, store.dialect);
    } catch (err) {
      await store.close();
      throw err;
    }
  }
  return store;
}

/** How long opening a PostgreSQL connection may take. */
const PG_CONNECT_TIMEOUT_MS = 5000;

function openPostgres(url: string, onError: ((err: Error) => void) | undefined): Store {
  const pool = new pg.Pool({
    connectionString: url,
    types: { getTypeParser: pgTypeParser },
    // A server that does not answer (a dropped network) fails requests with store_unavailable, not a hang.
    connectionTimeoutMillis: PG_CONNECT_TIMEOUT_MS,
  });
  // An idle client that loses its connection emits on the pool; unhandled, that would end the process.
  pool.on('error', (err) => onError?.(err));
  // So does a checked-out client between two queries (the server shut down, the network dropped): the pool only
  // listens to idle ones. Its next query fails (store_unavailable) and the pool drops it when it is released.
  pool.on('connect', (client) => client.on('error', (err) => onError?.(err)));
  const db = new Kysely<Database>({ dialect: guardedDialect(new PostgresDialect({ pool })) });
  return { db, dialect: 'postgres', url, close: () => db.destroy() };
}

function openSqlite(path: string | undefined): Store {
  if (path === undefined || path === '') {
    throw new FloeError('internal_error', 'the store needs a postgres:// url or a SQLite file path');
  }
  if (path !== ':memory:') mkdirSync(dirname(path), { recursive: true });
  const sqlite = new BetterSqlite3(path, { timeout: 5000 });
  sqlite.pragma('journal_mode = WAL');
  sqlite.pragma('synchronous = NORMAL');
  sqlite.pragma('foreign_keys = ON');
  sqlite.pragma('busy_timeout = 5000');
  const db = new Kysely<Database>({
    dialect: guardedDialect(new FloeSqliteDialect({ database: new StatementCache(sqlite, STATEMENT_CACHE_SIZE) })),
    plugins: [new StripRowLocksPlugin()],
  });
  return {
    db,
    dialect: 'sqlite',
    close: async () => {
      await db.destroy();
      // Kysely only closes a database it has used; a store opened without migrations may not have been.
      if (sqlite.open) sqlite.close();
    },
  };
}

const INT8_OID = 20;

// pg hands int8 (bigserial, count(*), sum of integers) back as strings; floe's values fit in a JS number.
const pgTypeParser = ((oid: number, format?: string) => {
  if (oid === INT8_OID && format !== 'binary') return parseInt8;
  return pg.types.getTypeParser(oid, format as 'text') as (value: string) => unknown;
}) as typeof pg.types.getTypeParser;

function parseInt8(text: string): number {
  const n = Number(text);
  if (!Number.isSafeInteger(n)) throw new RangeError(`int8 value ${text} does not fit in a JS number`);
  return n;
}

// SQLite begins deferred by default: a transaction that reads and then writes can then fail with
// SQLITE_BUSY when another connection (another process) wrote in between, and busy_timeout cannot help.
// BEGIN IMMEDIATE takes the write lock up front, so every transaction is a serialized read-modify-write.
class ImmediateSqliteDriver extends SqliteDriver {
  override async beginTransaction(connection: DatabaseConnection): Promise<void> {
    await connection.executeQuery(CompiledQuery.raw('begin immediate'));
  }
}

// SQLite runs DDL inside transactions just fine; saying so makes each migration all-or-nothing.
class TransactionalDdlSqliteAdapter extends SqliteAdapter {
  override get supportsTransactionalDdl(): boolean {
    return true;
  }
}

/** How many prepared SQLite statements the store keeps; floe's queries are far fewer, `in (?, ?, ...)` lists vary. */
const STATEMENT_CACHE_SIZE = 500;

/**
 * The SQLite database as Kysely sees it, with prepared statements kept by SQL text (least recently used
 * go first). Kysely prepares every query afresh; preparing costs more than running floe's small queries.
 * Reuse is safe: Kysely runs one query at a time on SQLite's single connection, statements are bound anew
 * on every run, and SQLite re-prepares a statement by itself when the schema changed under it.
 */
export class StatementCache implements SqliteDatabase {
  readonly #db: BetterSqlite3.Database;
  readonly #max: number;
  readonly #statements = new Map<string, SqliteStatement>();

  constructor(db: BetterSqlite3.Database, max: number) {
    this.#db = db;
    this.#max = max;
  }

  /** Statements held now (for tests). */
  get size(): number {
    return this.#statements.size;
  }

  prepare(sql: string): SqliteStatement {
    const hit = this.#statements.get(sql);
    if (hit !== undefined) {
      // Map keeps insertion order: moving the hit to the end makes the first key the least recently used.
      this.#statements.delete(sql);
      this.#statements.set(sql, hit);
      return hit;
    }
    const stmt = this.#db.prepare(sql);
    if (this.#statements.size >= this.#max) this.#statements.delete(this.#statements.keys().next().value!);
    this.#statements.set(sql, stmt);
    return stmt;
  }

  close(): void {
    this.#statements.clear();
    if (this.#db.open) this.#db.close();
  }
}

class FloeSqliteDialect extends SqliteDialect {
  readonly #config: SqliteDialectConfig;
  constructor(config: SqliteDialectConfig) {
    super(config);
    this.#config = config;
  }
  override createDriver(): Driver {
    return new ImmediateSqliteDriver(this.#config);
  }
  override createAdapter(): DialectAdapter {
    return new TransactionalDdlSqliteAdapter();
  }
}

const ROW_LOCK_MODIFIERS = new Set(['ForUpdate', 'ForNoKeyUpdate', 'ForShare', 'ForKeyShare', 'NoWait', 'SkipLocked']);

/**
 * Drops `FOR UPDATE` and friends from top-level selects on SQLite, which has no row locks: there every
 * transaction already holds the single write lock (BEGIN IMMEDIATE), so the select is serialized anyway.
 */
class StripRowLocksPlugin implements KyselyPlugin {
  transformQuery({ node }: PluginTransformQueryArgs): RootOperationNode {
    if (node.kind !== 'SelectQueryNode' || node.endModifiers === undefined) return node;
    const kept = node.endModifiers.filter((m) => m.modifier === undefined || !ROW_LOCK_MODIFIERS.has(m.modifier));
    if (kept.length === node.endModifiers.length) return node;
    return { ...node, endModifiers: kept.length > 0 ? kept : undefined };
  }
  transformResult({ result }: PluginTransformResultArgs): Promise<QueryResult<UnknownRow>> {
    return Promise.resolve(result);
  }
}

/**
 * Locks the selected rows until the transaction ends: `SELECT ... FOR UPDATE` on PostgreSQL. On SQLite
 * the lock clause is removed (the transaction already holds the database's write lock), so callers can
 * write `forUpdate(trx.selectFrom(...))` — or `.forUpdate()` directly — on both dialects.
 */
export function forUpdate<DB, TB extends keyof DB, O>(
  qb: SelectQueryBuilder<DB, TB, O>,
): SelectQueryBuilder<DB, TB, O> {
  return qb.forUpdate();
}

/** True when `err` is a unique or primary key violation (SQLite or PostgreSQL). */
export function isUniqueViolation(err: unknown): boolean {
  const code = errorCode(err);
  return code === 'SQLITE_CONSTRAINT_UNIQUE' || code === 'SQLITE_CONSTRAINT_PRIMARYKEY' || code === '23505';
}

/** True for the PostgreSQL failures that mean "run the transaction again": serialization failure, deadlock. */
function isRetryableTransactionError(err: unknown): boolean {
  const code = errorCode(err);
  return code === '40001' || code === '40P01';
}

function errorCode(err: unknown): unknown {
  return typeof err === 'object' && err !== null && 'code' in err ? err.code : undefined;
}

/** How many times `transaction` runs `fn` again after a serialization failure or deadlock. */
export const TRANSACTION_RETRIES = 5;

/**
 * Runs `fn` in a transaction and commits, or rolls back when it throws.
 *
 * PostgreSQL: READ COMMITTED; read-modify-write callers lock what they read with `forUpdate`. A
 * serialization failure or deadlock rolls back and runs `fn` again (up to TRANSACTION_RETRIES times),
 * so `fn` must not have effects outside `trx`.
 * SQLite: BEGIN IMMEDIATE on the store's single connection, so transactions never interleave.
 * Inside `fn` use only `trx`: on SQLite, `store.db` waits for the connection `fn` holds (deadlock),
 * on PostgreSQL it runs outside the transaction.
 */
export async function transaction<T>(store: Store, fn: (trx: Transaction<Database>) => Promise<T>): Promise<T> {
  // A transaction begun inside another (on its own connection) does not wait for a place the outer one holds.
  if (store.dialect !== 'postgres' || insideGate.getStore() === store) return runTransaction(store, fn);
  const gate = gateOf(store);
  await gate.enter();
  try {
    return await insideGate.run(store, () => runTransaction(store, fn));
  } finally {
    gate.leave();
  }
}

const insideGate = new AsyncLocalStorage<Store>();

/**
 * Transactions open at once on one PostgreSQL store, a little under the pool's size. A crowd of
 * transactions that wait on the same rows (creates in one project) would otherwise hold every pooled
 * connection while waiting, and the requests behind them would give up on the pool after its connect
 * timeout (store_unavailable) though the database is fine: here they wait in memory, in order, and the
 * pool keeps connections for reads.
 */
const OPEN_TRANSACTIONS = 8;

/** A counting semaphore, first come first served. */
class Gate {
  #free: number;
  readonly #waiting: (() => void)[] = [];
  constructor(size: number) {
    this.#free = size;
  }
  enter(): Promise<void> {
    if (this.#free > 0) {
      this.#free--;
      return Promise.resolve();
    }
    return new Promise((resolve) => this.#waiting.push(resolve));
  }
  leave(): void {
    const next = this.#waiting.shift();
    if (next) next();
    else this.#free++;
  }
}

const gates = new WeakMap<Store, Gate>();
function gateOf(store: Store): Gate {
  let gate = gates.get(store);
  if (gate === undefined) {
    gate = new Gate(OPEN_TRANSACTIONS);
    gates.set(store, gate);
  }
  return gate;
}

async function runTransaction<T>(store: Store, fn: (trx: Transaction<Database>) => Promise<T>): Promise<T> {
  for (let retry = 0; ; retry++) {
    try {
      const builder =
        store.dialect === 'postgres'
          ? store.db.transaction().setIsolationLevel('read committed')
          : store.db.transaction();
      return await builder.execute(fn);
    } catch (err) {
      if (retry >= TRANSACTION_RETRIES || !isRetryableTransactionError(err)) throw err;
      // Jittered backoff so the transactions that collided do not collide again in lockstep.
      await sleep(Math.floor(Math.random() * 10 * (retry + 1)) + 1);
    }
  }
}

/** Serializes a value for a JSON text column. */
export function toJson(value: unknown): string {
  const text = JSON.stringify(value);
  if (text === undefined) throw new TypeError(`cannot store ${typeof value} as JSON`);
  return text;
}

/** Parses a JSON text column; a NULL column gives null. */
export function fromJson<T>(text: string): T;
export function fromJson<T>(text: string | null): T | null;
export function fromJson<T>(text: string | null): T | null {
  return text === null ? null : (JSON.parse(text) as T);
}

/** The current time as stored: ISO 8601 UTC with milliseconds. */
export function nowIso(): string {
  return new Date().toISOString();
}
