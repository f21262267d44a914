import type { FastifyBaseLogger } from 'fastify';
import { sql } from 'kysely';
import type { Config } from './config.js';
import { transaction, type Store } from './db/index.js';
import { IDEMPOTENCY_TTL_MS } from './http/idempotency.js';
import { AuditLog } from './services/audit.js';

/** Advisory lock key of the housekeeping job ("floe" in ASCII), so one control plane runs it at a time. */
const LOCK_KEY = 0x666c6f65;

/** What one pass removed. */
export interface MaintenanceResult {
  ran: boolean;
  idempotencyKeys: number;
  events: number;
  /** Audit records past FLOE_AUDIT_RETENTION_DAYS. */
  auditRecords: number;
  /** Login sessions expired or revoked more than a day ago. */
  sessions: number;
}

/** How long an expired or revoked session token is kept (so `floe token ls` and the audit log can still name it). */
const SESSION_KEEP_MS = 86_400_000;

/**
 * Housekeeping: forget stored Idempotency-Key answers after their TTL, events and audit records
 * after their retention periods, and login sessions a day after they expired or were revoked. On PostgreSQL an advisory lock makes
 * sure only one control plane does it per pass.
 */
export async function maintain(store: Store, config: Config, now = Date.now()): Promise<MaintenanceResult> {
  return transaction(store, async (trx) => {
    if (store.dialect === 'postgres') {
      const { rows } = await sql<{ locked: boolean }>`select pg_try_advisory_xact_lock(${LOCK_KEY}) as locked`.execute(
        trx,
      );
      if (!rows[0]?.locked) return { ran: false, idempotencyKeys: 0, events: 0, auditRecords: 0, sessions: 0 };
    }
    const keys = await trx
      .deleteFrom('idempotency_keys')
      .where('created_at', '<', new Date(now - IDEMPOTENCY_TTL_MS).toISOString())
      .executeTakeFirst();
    const events = await trx
      .deleteFrom('events')
      .where('time', '<', new Date(now - config.eventRetentionDays * 86_400_000).toISOString())
      .executeTakeFirst();
    const auditRecords = await AuditLog.prune(trx, config.auditRetentionDays, now);
    const before = new Date(now - SESSION_KEEP_MS).toISOString();
    const sessions = await trx
      .deleteFrom('tokens')
      .where('kind', '=', 'session')
      .where((eb) => eb.or([eb('expires_at', '<', before), eb('revoked_at', '<', before)]))
      .executeTakeFirst();
    return {
      ran: true,
      idempotencyKeys: Number(keys.numDeletedRows),
      events: Number(events.numDeletedRows),
      auditRecords,
      sessions: Number(sessions.numDeletedRows),
    };
  });
}

/** Run `maintain` now and then every `everyMs`; returns a stop function. */
export function scheduleMaintenance(
  store: Store,
  config: Config,
  log: FastifyBaseLogger,
  everyMs = 10 * 60_000,
): () => Promise<void> {
  let running: Promise<unknown> = Promise.resolve();
  const pass = () => {
    running = maintain(store, config)
      .then((r) => {
        if (r.ran && (r.idempotencyKeys > 0 || r.events > 0 || r.auditRecords > 0 || r.sessions > 0))
          log.info(r, 'housekeeping');
      })
      .catch((err) => log.warn({ err }, 'housekeeping failed'));
  };
  const timer = setInterval(pass, everyMs);
  timer.unref();
  pass();
  return async () => {
    clearInterval(timer);
    await running;
  };
}
