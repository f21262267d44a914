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
