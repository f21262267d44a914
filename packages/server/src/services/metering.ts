import { randomBytes } from 'node:crypto';
import type { Db } from '../db/index.js';

/**
 * Metering: every billable quantity a resource holds, as time ranges per dimension. Callers change
 * them inside the transaction that changes the resource (and with the resource's row locked), so a
 * range opens and closes exactly when the change commits; a change closes the open range and opens
 * the next at the same instant, so the ranges of one resource and dimension never overlap and leave
 * no gap while the quantity is held. State lives only in `meter_ranges`: a control plane that
 * restarts finds the open ranges where it left them (and the partial unique index refuses a second
 * open range). See docs/metering.md.
 */

/** What is metered. `allocated` and `running` have quantity 1 while they hold. */
export type MeterDimension =
  'allocated' | 'running' | 'vcpus' | 'memory_mib' | 'disk_gib' | 'public_ipv4' | 'image_bytes';

export interface MeterKey {
  readonly project: string;
  readonly resource_kind: 'instance' | 'nic' | 'image' | 'floating_ip';
  readonly resource_id: string;
  readonly dimension: MeterDimension;
}

/** The later of two ISO 8601 UTC times; `b` when they are the same instant. */
function later(a: string, b: string): string {
  return Date.parse(a) > Date.parse(b) ? a : b;
}

/** `at` as an ISO time, or `fallback` when it is missing or not a time. */
function isoOr(at: string | null | undefined, fallback: string): string {
  const ms = at == null ? Number.NaN : Date.parse(at);
  return Number.isFinite(ms) ? new Date(ms).toISOString() : fallback;
}

/**
 * The resource holds `quantity` of `dimension` from `at` on (0: holds none). Closes the open range
 * if its quantity differs and opens the next at the same instant. `at` never goes back before the
 * start of the open range or the end of the last closed one, so a late or skewed time cannot make
 * ranges overlap; a range that would close where it opened is removed instead (it held nothing).
 */
export async function setQuantity(trx: Db, key: MeterKey, quantity: number, at: string): Promise<void> {
  const open = await trx
    .selectFrom('meter_ranges')
    .select(['id', 'quantity', 'started_at'])
    .where('resource_id', '=', key.resource_id)
    .where('dimension', '=', key.dimension)
    .where('ended_at', 'is', null)
    .executeTakeFirst();
  if (open && Number(open.quantity) === quantity) return;
  let when = at;
  if (open) {
    when = later(at, open.started_at);
    if (when === open.started_at) await trx.deleteFrom('meter_ranges').where('id', '=', open.id).execute();
    else await trx.updateTable('meter_ranges').set({ ended_at: when }).where('id', '=', open.id).execute();
  } else {
    const last = await trx
      .selectFrom('meter_ranges')
      .select((eb) => eb.fn.max('ended_at').as('ended_at'))
      .where('resource_id', '=', key.resource_id)
      .where('dimension', '=', key.dimension)
      .executeTakeFirst();
    if (last?.ended_at) when = later(at, last.ended_at);
  }
  if (quantity <= 0) return;
  await trx
    .insertInto('meter_ranges')
    .values({
      id: `mtr_${randomBytes(12).toString('hex')}`,
      ...key,
      quantity,
      started_at: when,
      ended_at: null,
    })
    .execute();
}

/** Open (or change) the ranges of several dimensions of one resource at `at`. */
export async function setQuantities(
  trx: Db,
  base: Omit<MeterKey, 'dimension'>,
  quantities: Partial<Record<MeterDimension, number>>,
  at: string,
): Promise<void> {
  for (const [dimension, quantity] of Object.entries(quantities))
    await setQuantity(trx, { ...base, dimension: dimension as MeterDimension }, quantity, at);
}

/** Close every open range of resources that are gone (deleted at `at`). */
export async function closeAll(trx: Db, resourceIds: readonly string[], at: string): Promise<void> {
  if (resourceIds.length === 0) return;
  const open = await trx
    .selectFrom('meter_ranges')
    .select(['id', 'started_at'])
    .where('resource_id', 'in', [...resourceIds])
    .where('ended_at', 'is', null)
    .execute();
  for (const r of open) {
    const when = later(at, r.started_at);
    if (when === r.started_at) await trx.deleteFrom('meter_ranges').where('id', '=', r.id).execute();
    else await trx.updateTable('meter_ranges').set({ ended_at: when }).where('id', '=', r.id).execute();
  }
}

/**
 * What an agent's report means for running time (pure): running from the time the host says the VM
 * started, not running from the time it says it stopped (a crash included), else from `now`, the
 * time the report arrived. `unknown` (the host cannot tell) changes nothing. Times from the host are
 * kept between the instance's creation and `now`.
 */
export function runningFromReport(
  report: { state: string; started_at: string | null; stopped_at: string | null },
  createdAt: string,
  now: string,
): { quantity: number; at: string } | null {
  if (report.state === 'unknown') return null;
  const running = report.state === 'running';
  const at = isoOr(running ? report.started_at : report.stopped_at, now);
  const ms = Math.min(Math.max(Date.parse(at), Date.parse(createdAt)), Date.parse(now));
  return { quantity: running ? 1 : 0, at: new Date(ms).toISOString() };
}
