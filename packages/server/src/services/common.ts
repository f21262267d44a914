import {
  FloeError,
  METADATA_MAX_BYTES,
  LABEL_KEY_PATTERN,
  LABEL_VALUE_PATTERN,
  type ErrorCode,
  type Kind,
  type Labels,
  type PageOf,
} from '@floe/api';
import type { Kysely, Transaction } from 'kysely';
import type { Database } from '../db/schema.js';
import { fromJson, nowIso, toJson } from '../db/index.js';
import { isIdOf, newId } from '../ids.js';
import type { Principal } from './context.js';

/** Either the database or an open transaction. */
export type Db = Kysely<Database> | Transaction<Database>;

/** A parsed `?label=` selector: `key=value` or just `key` (present with any value). */
export interface LabelSelector {
  key: string;
  value: string | null;
}

const keyRe = new RegExp(LABEL_KEY_PATTERN);
const valueRe = new RegExp(LABEL_VALUE_PATTERN);

/** Parse `?label=` values; a malformed one is an `invalid_label_selector` error. */
export function parseLabelSelectors(raw: string | string[] | undefined): LabelSelector[] {
  if (raw === undefined) return [];
  const items = Array.isArray(raw) ? raw : [raw];
  return items
    .flatMap((item) => item.split(','))
    .filter((s) => s !== '')
    .map((item) => {
      const eq = item.indexOf('=');
      const key = eq === -1 ? item : item.slice(0, eq);
      const value = eq === -1 ? null : item.slice(eq + 1);
      if (!keyRe.test(key) || (value !== null && !valueRe.test(value))) {
        throw new FloeError('invalid_label_selector', `label selector "${item}" must be key or key=value`, {
          field: 'label',
          value: item,
        });
      }
      return { key, value };
    });
}

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

/** Check the serialized size of `metadata`. */
export function checkMetadata(metadata: Record<string, unknown> | undefined): Record<string, unknown> {
  const value = metadata ?? {};
  if (Buffer.byteLength(JSON.stringify(value), 'utf8') > METADATA_MAX_BYTES) {
    throw new FloeError('metadata_too_large', `metadata is larger than ${METADATA_MAX_BYTES} bytes`, {
      field: 'metadata',
      limit: METADATA_MAX_BYTES,
    });
  }
  return value;
}

/**
 * Replace the label rows of a resource; `created` says the resource was just inserted, so it has none
 * to delete. Keys are checked here because the body schema cannot check map keys.
 */
export async function writeLabels(db: Db, resourceId: string, labels: Labels, created = false): Promise<void> {
  for (const key of Object.keys(labels)) {
    if (!keyRe.test(key))
      throw new FloeError(
        'validation_failed',
        `label key "${key}" must be [prefix/]name of letters, digits, "-", "_" and "."`,
        { field: `labels.${key}` },
      );
  }
  if (!created) await db.deleteFrom('resource_labels').where('resource_id', '=', resourceId).execute();
  const rows = Object.entries(labels).map(([key, value]) => ({ resource_id: resourceId, key, value }));
  if (rows.length > 0) await db.insertInto('resource_labels').values(rows).execute();
}

/** Tables that hold named, listable resources. */
export type ResourceTable = 'projects' | 'hosts' | 'images' | 'machine_types' | 'instances' | 'networks';

/** Options of listPage. */
export interface ListOptions {
  limit?: number | undefined;
  cursor?: string | undefined;
  labels?: LabelSelector[];
  /** Restrict to these projects (null: no restriction). */
  projects?: readonly string[] | null;
  /** Extra filter applied to the query builder. */
  where?: (qb: any) => any;
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
  let q: any = (db as Kysely<any>)
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
    q = q.where('id', 'in', (eb: any) => {
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

/**
 * Find a row by id or by name (names resolve inside `project` for scoped kinds).
 * Missing rows and rows of projects the principal may not see are the same
 * not-found error, so existence is not leaked.
 */
export async function findRow<R>(
  db: Db,
  table: ResourceTable,
  kind: Kind,
  ref: string,
  opts: { project?: string | null; principal?: Principal; code: ErrorCode; label: string },
): Promise<R> {
  let q: any = (db as Kysely<any>).selectFrom(table).selectAll();
  if (isIdOf(kind, ref)) {
    q = q.where('id', '=', ref);
  } else {
    q = q.where('name', '=', ref);
    if (opts.project !== undefined && opts.project !== null) q = q.where('project', '=', opts.project);
  }
  const rows = (await q.limit(2).execute()) as Array<R & { project?: string }>;
  const row = rows[0];
  const hidden =
    row !== undefined &&
    opts.principal !== undefined &&
    row.project !== undefined &&
    !canUseProject(opts.principal, row.project);
  if (row === undefined || hidden) {
    throw new FloeError(opts.code, `${opts.label} "${ref}" not found`, { kind: opts.label, id: ref });
  }
  return row;
}

/** True when the principal may use resources of `project`. */
export function canUseProject(principal: Principal, project: string): boolean {
  return principal.admin || principal.projects.has(project);
}

/** Projects a principal may list in, or null for all (admins). */
export function visibleProjects(principal: Principal, requested?: string): readonly string[] | null {
  if (requested !== undefined) return canUseProject(principal, requested) ? [requested] : [];
  return principal.admin ? null : [...principal.projects];
}

/** Only admins pass. */
export function requireAdmin(principal: Principal, what: string): void {
  if (!principal.admin) throw new FloeError('forbidden', `only an admin token may ${what}`);
}

/** Parse the JSON columns every resource has. */
export function baseFields(row: {
  id: string;
  name: string;
  labels: string;
  metadata: string;
  revision: number;
  created_at: string;
  updated_at: string;
}) {
  return {
    id: row.id,
    name: row.name,
    labels: fromJson<Labels>(row.labels) ?? {},
    metadata: fromJson<Record<string, unknown>>(row.metadata) ?? {},
    revision: Number(row.revision),
    created_at: row.created_at,
    updated_at: row.updated_at,
  };
}

/** Column values for a new resource row. */
export function newBase(
  kind: Kind,
  name: string,
  labels: Labels | undefined,
  metadata: Record<string, unknown> | undefined,
) {
  const now = nowIso();
  return {
    id: newId(kind),
    name,
    labels: toJson(labels ?? {}),
    metadata: toJson(checkMetadata(metadata)),
    revision: 1,
    created_at: now,
    updated_at: now,
  };
}

/**
 * RFC 7396 JSON merge patch: objects merge recursively, `null` removes a key,
 * anything else replaces.
 */
export function mergePatch(target: unknown, patch: unknown): unknown {
  if (patch === null || typeof patch !== 'object' || Array.isArray(patch)) return patch;
  const base: Record<string, unknown> =
    target !== null && typeof target === 'object' && !Array.isArray(target)
      ? { ...(target as Record<string, unknown>) }
      : {};
  for (const [key, value] of Object.entries(patch as Record<string, unknown>)) {
    if (value === null) delete base[key];
    else base[key] = mergePatch(base[key], value);
  }
  return base;
}

/** Compare `If-Match` with the current revision. */
export function checkRevision(ifMatch: number | undefined, current: number): void {
  if (ifMatch !== undefined && ifMatch !== current) {
    throw new FloeError('revision_mismatch', `the resource is at revision ${current}, not ${ifMatch}`, {
      current,
      expected: ifMatch,
    });
  }
}

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
