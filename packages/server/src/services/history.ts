import type { HistoryEntry, PageOf } from '@floe/api';
import { fromJson, nowIso, toJson, type Db } from '../db/index.js';
import { newId } from '../ids.js';
import { decodeCursor, encodeCursor } from './pagination.js';

/** Record one change in the history table. */
export async function recordHistory(
  db: Db,
  entry: {
    kind: string;
    resource_id: string;
    project: string | null;
    revision: number;
    action: string;
    actor: string;
    before: unknown;
    after: unknown;
  },
): Promise<void> {
  await db
    .insertInto('history')
    .values({
      id: newId('history'),
      kind: entry.kind,
      resource_id: entry.resource_id,
      project: entry.project,
      revision: entry.revision,
      action: entry.action,
      actor: entry.actor,
      time: nowIso(),
      before: entry.before === null || entry.before === undefined ? null : toJson(entry.before),
      after: entry.after === null || entry.after === undefined ? null : toJson(entry.after),
    })
    .execute();
}

/**
 * Delete one resource row with its labels and record the deletion in its history (revision + 1),
 * inside the caller's transaction.
 */
export async function deleteWithHistory(
  db: Db,
  table: 'networks' | 'security_groups' | 'floating_ips' | 'port_forwards' | 'vpn_pools' | 'vpn_peers',
  entry: {
    kind: string;
    row: { id: string; project?: string; revision: number | string };
    actor: string;
    before: unknown;
  },
): Promise<void> {
  const { row } = entry;
  await db.deleteFrom(table).where('id', '=', row.id).execute();
  await db.deleteFrom('resource_labels').where('resource_id', '=', row.id).execute();
  await recordHistory(db, {
    kind: entry.kind,
    resource_id: row.id,
    project: row.project ?? null,
    revision: Number(row.revision) + 1,
    action: 'delete',
    actor: entry.actor,
    before: entry.before,
    after: null,
  });
}

/** The change history of one resource, oldest first, one page. */
export async function historyPage(
  db: Db,
  resourceId: string,
  q: { limit?: number; cursor?: string },
): Promise<PageOf<HistoryEntry>> {
  const limit = Math.min(q.limit ?? 100, 1000);
  let query = db
    .selectFrom('history')
    .selectAll()
    .where('resource_id', '=', resourceId)
    .orderBy('id', 'asc')
    .limit(limit + 1);
  if (q.cursor) query = query.where('id', '>', decodeCursor(q.cursor));
  const rows = await query.execute();
  const page = rows.slice(0, limit);
  return {
    items: page.map((h) => ({
      ...h,
      revision: Number(h.revision),
      before: fromJson(h.before),
      after: fromJson(h.after),
    })),
    next_cursor: rows.length > limit ? encodeCursor(page[page.length - 1]!.id) : null,
  };
}
