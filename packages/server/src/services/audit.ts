import { FloeError, type AuditQuery, type AuditRecord, type PageOf } from '@floe/api';
import type { FastifyBaseLogger } from 'fastify';
import type { Db, Store } from '../db/index.js';
import type { AuditLogTable } from '../db/schema.js';
import { newId } from '../ids.js';
import { requireAdmin } from './authz.js';
import { decodeCursor, encodeCursor } from './pagination.js';
import type { Principal } from './principal.js';

/** An audit record before it is stored: everything but its id. */
export type AuditEntry = Omit<AuditLogTable, 'id'>;

/** Records written in one INSERT at most. */
const BATCH = 200;
/** How long a record may wait for others to share its INSERT. */
const FLUSH_MS = 20;
/** Records held while the database does not answer; past this the oldest are dropped, with a warning. */
const MAX_QUEUED = 50_000;

/** The user behind a principal, when it has one (users arrive with their own service). */
export function principalUser(principal: Principal | undefined): { id: string | null; name: string } | null {
  // A caller an external checker vouched for has a name but no floe user.
  return principal?.userName !== undefined ? { id: principal.user ?? null, name: principal.userName } : null;
}

/**
 * The audit log: records are queued and written in batches after the answer has gone out, so a
 * request does not wait for its record. A failed write is logged as a warning with the number of
 * records lost; `close()` writes what is still queued.
 */
export class AuditLog {
  private queue: AuditLogTable[] = [];
  private timer: NodeJS.Timeout | null = null;
  private writing: Promise<void> = Promise.resolve();

  constructor(
    private readonly store: Store,
    private readonly log: FastifyBaseLogger,
  ) {}

  /** Queue one record; it is written within a few milliseconds. */
  record(entry: AuditEntry): void {
    if (this.queue.length >= MAX_QUEUED) {
      this.queue.shift();
      this.log.warn('audit log queue full: the oldest queued record was dropped');
    }
    this.queue.push({ id: newId('audit'), ...entry });
    if (this.queue.length >= BATCH) this.kick();
    else this.timer ??= setTimeout(() => this.kick(), FLUSH_MS);
  }

  private kick(): void {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    this.writing = this.writing.then(() => this.writeQueued());
  }

  private async writeQueued(): Promise<void> {
    while (this.queue.length > 0) {
      const batch = this.queue.splice(0, BATCH);
      try {
        await this.store.db.insertInto('audit_log').values(batch).execute();
      } catch (err) {
        this.log.warn({ err, records: batch.length }, 'audit records could not be written');
      }
    }
  }

  /** Write everything queued so far (tests, shutdown). */
  async flush(): Promise<void> {
    this.kick();
    await this.writing;
  }

  /** One page of records, newest first (operators only). */
  async list(principal: Principal, q: AuditQuery): Promise<PageOf<AuditRecord>> {
    requireAdmin(principal, 'read the audit log');
    const limit = Math.min(q.limit ?? 100, 1000);
    let query = this.store.db
      .selectFrom('audit_log')
      .selectAll()
      .orderBy('id', 'desc')
      .limit(limit + 1);
    if (q.cursor) query = query.where('id', '<', decodeCursor(q.cursor));
    if (q.token !== undefined) query = query.where('token_id', '=', q.token);
    if (q.user !== undefined) {
      const user = q.user;
      query = query.where((eb) => eb.or([eb('user_id', '=', user), eb('user_name', '=', user)]));
    }
    if (q.action !== undefined) {
      // A prefix, matched without LIKE so `_` and `%` in it mean themselves.
      query = query.where('action', '>=', q.action).where('action', '<', q.action + '\uffff');
    }
    if (q.outcome !== undefined) query = query.where('outcome', '=', q.outcome);
    if (q.resource !== undefined) query = query.where('resource_id', '=', q.resource);
    if (q.project !== undefined) query = query.where('project', '=', q.project);
    if (q.since !== undefined) query = query.where('at', '>=', isoTime(q.since, 'since'));
    if (q.until !== undefined) query = query.where('at', '<', isoTime(q.until, 'until'));
    const rows = await query.execute();
    const page = rows.slice(0, limit);
    return {
      items: page.map((r) => ({ ...r, status: r.status === null ? null : Number(r.status) })),
      next_cursor: rows.length > limit ? encodeCursor(page[page.length - 1]!.id) : null,
    };
  }

  /** Delete records older than `days` (0 keeps them forever); returns how many went. */
  static async prune(db: Db, days: number, now: number): Promise<number> {
    if (days === 0) return 0;
    const cut = new Date(now - days * 86_400_000).toISOString();
    const res = await db.deleteFrom('audit_log').where('at', '<', cut).executeTakeFirst();
    return Number(res.numDeletedRows);
  }
}

/** A date-time query value as the stored form (UTC ISO 8601), so text comparison orders by time. */
function isoTime(value: string, field: string): string {
  const t = Date.parse(value);
  if (Number.isNaN(t)) throw new FloeError('validation_failed', `${field} must be a date-time`, { field });
  return new Date(t).toISOString();
}
