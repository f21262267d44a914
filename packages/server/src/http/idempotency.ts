import { createHash } from 'node:crypto';
import { FloeError } from '@floe/api';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { isUniqueViolation, nowIso, type Store } from '../db/index.js';
import type { CommitHook } from '../services/commit-hook.js';
import type { Principal } from '../services/context.js';
import { holdReservations, type ReservationHolder } from './idempotency-leases.js';

/** How long a stored answer is replayed. */
export const IDEMPOTENCY_TTL_MS = 24 * 3600_000;

interface Reservation {
  tokenId: string;
  key: string;
  /** The control plane process holding it. */
  owner: string;
}

const reservations = new WeakMap<FastifyRequest, Reservation>();

const inProgress = () =>
  new FloeError('idempotency_key_in_progress', 'a request with this Idempotency-Key is still in progress', {
    field: 'Idempotency-Key',
  });

/**
 * `Idempotency-Key` on every authenticated POST, one key space per token: the first request with a key is
 * processed and its answer stored; a repeat with the same body gets the same answer (and
 * `Idempotent-Replayed: true`); a repeat with another body is a 422; a repeat while the first is still running
 * is a 409. A reservation whose control plane died (see idempotency-leases.ts) is taken over by the repeat,
 * which then runs. Unauthenticated endpoints (a host's join) ignore the header: an anonymous caller never
 * writes a row. Returns the function that stops renewing this process's reservations.
 */
export function installIdempotency(
  app: FastifyInstance,
  store: Store,
  holder: ReservationHolder,
  leaseMs?: number,
): () => Promise<void> {
  const leases = holdReservations(store, holder, leaseMs);
  app.addHook('preHandler', async (request, reply) => {
    if (request.method !== 'POST') return;
    // Public routes leave the principal unset.
    const principal = request.principal as Principal | undefined;
    if (principal === undefined) return;
    const raw = request.headers['idempotency-key'];
    if (raw === undefined) return;
    const key = String(raw);
    if (key.length < 1 || key.length > 200)
      throw new FloeError('validation_failed', 'Idempotency-Key must be 1 to 200 characters', {
        field: 'Idempotency-Key',
      });
    const tokenId = principal.actor;
    const path = request.url;
    const bodyHash = createHash('sha256')
      .update(JSON.stringify(request.body ?? null))
      .digest('hex');
    const found = await store.db
      .selectFrom('idempotency_keys')
      .selectAll()
      .where('token_id', '=', tokenId)
      .where('key', '=', key)
      .executeTakeFirst();
    if (found && found.created_at < new Date(Date.now() - IDEMPOTENCY_TTL_MS).toISOString()) {
      await store.db.deleteFrom('idempotency_keys').where('token_id', '=', tokenId).where('key', '=', key).execute();
    } else if (found) {
      if (found.method !== request.method || found.path !== path || found.body_hash !== bodyHash) {
        throw new FloeError('idempotency_key_reused', 'this Idempotency-Key was used with a different request', {
          field: 'Idempotency-Key',
        });
      }
      if (found.status_code === 0) {
        if (!(await leases.takeOver(found))) throw inProgress();
        reservations.set(request, { tokenId, key, owner: holder.id });
        return;
      }
      reply.header('idempotent-replayed', 'true');
      return reply.code(found.status_code).type('application/json').send(found.response);
    }
    try {
      await store.db
        .insertInto('idempotency_keys')
        .values({
          token_id: tokenId,
          key,
          method: request.method,
          path,
          body_hash: bodyHash,
          status_code: 0,
          response: '',
          created_at: nowIso(),
          ...leases.claim(),
        })
        .execute();
      leases.hold(tokenId, key);
    } catch (err) {
      if (isUniqueViolation(err)) throw inProgress();
      throw err;
    }
    reservations.set(request, { tokenId, key, owner: holder.id });
  });

  app.addHook('onSend', async (request, reply, payload) => {
    const r = reservations.get(request);
    if (!r) return payload;
    reservations.delete(request);
    leases.release(r.tokenId, r.key);
    // Only while this process still holds the reservation: one taken over is the new holder's to finish.
    const q = store.db
      .deleteFrom('idempotency_keys')
      .where('token_id', '=', r.tokenId)
      .where('key', '=', r.key)
      .where('owner', '=', holder.id)
      .where('status_code', '=', 0); // an answer stored with the write stays: the write happened
    if (reply.statusCode >= 500 || typeof payload !== 'string') {
      await q.execute(); // not final: let the client retry with the same key
    } else {
      await store.db
        .updateTable('idempotency_keys')
        .set({ status_code: reply.statusCode, response: payload, lease_until: null })
        .where('token_id', '=', r.tokenId)
        .where('key', '=', r.key)
        .where('owner', '=', holder.id)
        .execute();
    }
    return payload;
  });

  // A request that dies before sending anything must not block its key forever.
  app.addHook('onResponse', async (request) => {
    const r = reservations.get(request);
    if (!r) return;
    reservations.delete(request);
    leases.release(r.tokenId, r.key);
    await store.db
      .deleteFrom('idempotency_keys')
      .where('token_id', '=', r.tokenId)
      .where('key', '=', r.key)
      .where('status_code', '=', 0)
      .where('owner', '=', holder.id)
      .execute();
  });
  return () => leases.stop();
}

/**
 * For a write whose request holds an Idempotency-Key: the hook that stores `render(result)` as the
 * answer inside the write's own transaction, so a crash between the commit and the reply cannot lose
 * it (a retry would otherwise run the write again: a second NIC, or a name conflict for its own
 * instance). The reply sent later replaces it. Undefined when the request has no key.
 */
export function answerAtCommit<T>(
  request: FastifyRequest,
  render: (result: T) => { status: number; body: unknown },
): CommitHook<T> | undefined {
  const r = reservations.get(request);
  if (!r) return undefined;
  return async (trx, result) => {
    const { status, body } = render(result);
    await trx
      .updateTable('idempotency_keys')
      .set({ status_code: status, response: JSON.stringify(body), lease_until: null })
      .where('token_id', '=', r.tokenId)
      .where('key', '=', r.key)
      .where('owner', '=', r.owner)
      .execute();
  };
}
