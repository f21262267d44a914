import type { HistoryEntry, PageOf } from '@floe/api';
import { fromJson, nowIso, toJson, type Db } from '../db/index.js';
import { newId } from '../ids.js';
import { writeLabels } from './labels.js';
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

/**
 * Write an updated resource row (labels, metadata, revision and time from `after`, the spec and other
 * columns from `set`) with its labels, and record the update in its history, inside the caller's
 * transaction.
 */
export async function updateWithHistory(
  db: Db,
  table: 'instances' | 'networks' | 'security_groups' | 'vpn_networks',
  entry: {
    kind: string;
    row: { id: string; project: string };
    actor: string;
    before: unknown;
    after: { labels: Record<string, string>; metadata: Record<string, unknown>; revision: number; updated_at: string };
    /** The table's own columns: the spec as JSON, and a description where the table has one. */
    set: { spec: string; description?: string };
  },
): Promise<void> {
  const { row, after } = entry;
  await db
    .updateTable(table)
    .set({
      labels: toJson(after.labels),
      metadata: toJson(after.metadata),
      ...entry.set,
      revision: after.revision,
      updated_at: after.updated_at,
    })
    .where('id', '=', row.id)
    .execute();
  await writeLabels(db, row.id, after.labels);
  await recordHistory(db, {
    kind: entry.kind,
    resource_id: row.id,
    project: row.project,
    revision: after.revision,
    action: 'update',
    actor: entry.actor,
    before: entry.before,
    after,
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
