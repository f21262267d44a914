import { nowIso, toJson, type Db } from '../db/index.js';
import { newId } from '../ids.js';

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
