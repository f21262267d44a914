import { FloeError, type PageOf } from '@floe/api';
import type { ExpressionBuilder, Kysely } from 'kysely';
import type { Database, Db } from '../db/index.js';
import type { LabelSelector } from './labels.js';
import type { ResourceQuery, ResourceTable } from './resource-rows.js';

/** Encode the last id of a page as an opaque cursor. */
export function encodeCursor(id: string): string {
  return Buffer.from(id, 'utf8').toString('base64url');
}

/** Decode a cursor made by encodeCursor; anything else is `invalid_cursor`. */
export function decodeCursor(cursor: string): string {
  const id = Buffer.from(cursor, 'base64url').toString('utf8');
  if (!/^[a-z]{2,5}_[0-9A-HJKMNP-TV-Z]{26}$/.test(id)) {
    throw new FloeError('invalid_cursor', 'the cursor is not valid; use next_cursor from a previous page', {
      field: 'cursor',
    });
  }
  return id;
}

/** Options of listPage. */
export interface ListOptions {
  limit?: number | undefined;
  cursor?: string | undefined;
  labels?: LabelSelector[];
  /** Restrict to these projects (null: no restriction). */
  projects?: readonly string[] | null;
  /** Extra filter applied to the query builder. */
  where?: (qb: ResourceQuery) => ResourceQuery;
}

/**
 * One page of a resource table, ordered by id, filtered by labels and projects.
 * Uses keyset pagination so page N costs the same as page 1.
 */
export async function listPage<R extends { id: string }, T>(
  db: Db,
  table: ResourceTable,
  opts: ListOptions,
  map: (row: R) => T,
): Promise<PageOf<T>> {
  const limit = Math.min(Math.max(opts.limit ?? 100, 1), 1000);
  let q: ResourceQuery = (db as Kysely<Database>)
    .selectFrom(table)
    .selectAll()
    .orderBy('id', 'asc')
    .limit(limit + 1);
  if (opts.cursor) q = q.where('id', '>', decodeCursor(opts.cursor));
  if (opts.projects) {
    if (opts.projects.length === 0) return { items: [], next_cursor: null };
    q = q.where('project', 'in', opts.projects);
  }
  for (const sel of opts.labels ?? []) {
    q = q.where('id', 'in', (eb: ExpressionBuilder<Database, 'resource_labels'>) => {
      let sub = eb.selectFrom('resource_labels').select('resource_id').where('key', '=', sel.key);
      if (sel.value !== null) sub = sub.where('value', '=', sel.value);
      return sub;
    });
  }
  if (opts.where) q = opts.where(q);
  const rows = (await q.execute()) as R[];
  const more = rows.length > limit;
  const page = more ? rows.slice(0, limit) : rows;
  return { items: page.map(map), next_cursor: more ? encodeCursor(page[page.length - 1]!.id) : null };
}
