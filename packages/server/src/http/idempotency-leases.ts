import type { Selectable } from 'kysely';
import { nowIso, type Store } from '../db/index.js';
import type { IdempotencyKeysTable } from '../db/schema.js';

/** How long a reservation stays held without being renewed, unless the configuration says otherwise. */
const IDEMPOTENCY_LEASE_MS = 15_000;

/** The control plane process that makes reservations. */
export interface ReservationHolder {
  /** Identifies this process among the control planes sharing the store. */
  readonly id: string;
  /**
   * True when other control planes may share the store (PostgreSQL): their reservations are theirs
   * until their lease runs out. Without (SQLite, one control plane), a reservation of any other
   * process is one a dead control plane left behind.
   */
  readonly shared: boolean;
}

/** This process's reservations in flight, renewed while it lives. */
interface Leases {
  /** Columns of a new reservation held by this process. */
  claim(): Pick<IdempotencyKeysTable, 'owner' | 'lease_until'>;
  /** The reservation made with `claim()` is stored: renew it until released. */
  hold(tokenId: string, key: string): void;
  /**
   * Take a reservation over when its holder is gone (another process on SQLite, an expired lease on
   * PostgreSQL); true when this process holds it now. Two retries racing for it: one wins.
   */
  takeOver(found: Selectable<IdempotencyKeysTable>): Promise<boolean>;
  /** The request of this reservation is answered: stop renewing it. */
  release(tokenId: string, key: string): void;
  stop(): Promise<void>;
}

/**
 * Reservations of an Idempotency-Key (a request in flight) are tied to the control plane process that
 * made them by a lease it renews every third of IDEMPOTENCY_LEASE_MS. When that process dies mid-request
 * (a crash, kill -9, a lost machine) the lease runs out and a retry with the same key takes the
 * reservation and performs the request, instead of hearing "in progress" for the 24 h an answer is kept.
 */
export function holdReservations(store: Store, holder: ReservationHolder, leaseMs = IDEMPOTENCY_LEASE_MS): Leases {
  const held = new Map<string, { tokenId: string; key: string }>();
  const until = () => new Date(Date.now() + leaseMs).toISOString();
  let running: Promise<unknown> = Promise.resolve();
  const renew = () => {
    if (held.size === 0) return;
    const rows = [...held.values()];
    running = store.db
      .updateTable('idempotency_keys')
      .set({ lease_until: until() })
      .where('owner', '=', holder.id)
      .where('status_code', '=', 0)
      .where((eb) => eb.or(rows.map((r) => eb.and([eb('token_id', '=', r.tokenId), eb('key', '=', r.key)]))))
      .execute()
      .catch(() => undefined); // the next pass tries again; a lapse only lets a retry take over early
  };
  const timer = setInterval(renew, Math.max(50, Math.floor(leaseMs / 3)));
  timer.unref();
  const id = (tokenId: string, key: string) => `${tokenId}\0${key}`;

  return {
    claim() {
      return { owner: holder.id, lease_until: until() };
    },
    hold(tokenId, key) {
      held.set(id(tokenId, key), { tokenId, key });
    },
    async takeOver(found) {
      if (found.owner === holder.id) return false; // our own request, still running
      const gone = found.owner === null || found.lease_until === null || !holder.shared || found.lease_until < nowIso();
      if (!gone) return false;
      // Compare and set: only the reservation as we saw it, so one of several retries wins.
      let q = store.db
        .updateTable('idempotency_keys')
        .set({ owner: holder.id, lease_until: until(), created_at: nowIso() })
        .where('token_id', '=', found.token_id)
        .where('key', '=', found.key)
        .where('status_code', '=', 0);
      q = found.owner === null ? q.where('owner', 'is', null) : q.where('owner', '=', found.owner);
      q =
        found.lease_until === null
          ? q.where('lease_until', 'is', null)
          : q.where('lease_until', '=', found.lease_until);
      const taken = Number((await q.executeTakeFirst()).numUpdatedRows) === 1;
      if (taken) held.set(id(found.token_id, found.key), { tokenId: found.token_id, key: found.key });
      return taken;
    },
    release(tokenId, key) {
      held.delete(id(tokenId, key));
    },
    async stop() {
      clearInterval(timer);
      await running;
    },
  };
}
