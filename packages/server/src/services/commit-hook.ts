import type { Db } from '../db/index.js';

/**
 * Run by a write inside its transaction, just before it commits, with what the write answers: whatever
 * the hook records commits with the write or not at all (the stored answer of an Idempotency-Key).
 */
export type CommitHook<T> = (trx: Db, result: T) => Promise<void>;
