import { FloeError, METADATA_MAX_BYTES, METADATA_MAX_DEPTH, type ErrorCode, type Kind, type Labels } from '@floe/api';
import type { Kysely, SelectQueryBuilder } from 'kysely';
import { fromJson, nowIso, toJson, type Database, type Db } from '../db/index.js';
import { isIdOf, newId } from '../ids.js';
import { canUseProject } from './authz.js';
import { mergePatch } from './merge-patch.js';
import type { Principal } from './principal.js';

/*
 * What every named resource row has: lookup by id or name, the shared columns, metadata size and the
 * revision check of If-Match.
 */

/** Tables that hold named, listable resources. */
export type ResourceTable =
  | 'projects'
  | 'hosts'
  | 'images'
  | 'machine_types'
  | 'instances'
  | 'networks'
  | 'security_groups'
  | 'vpn_pools'
  | 'vpn_networks'
  | 'vpn_peers'
  | 'floating_ips'
  | 'port_forwards';

/**
 * A query over one of the resource tables, chosen at run time: every column of every such table may be named
 * (the shared ones are id, name, project, labels, metadata, revision and the timestamps).
 */
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- the table is a run-time choice among several
export type ResourceQuery = SelectQueryBuilder<Database, any, any>;

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
  let q: ResourceQuery = (db as Kysely<Database>).selectFrom(table).selectAll();
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

/** Check the serialized size of `metadata`. */
export function checkMetadata(metadata: Record<string, unknown> | undefined): Record<string, unknown> {
  const value = metadata ?? {};
  checkMetadataDepth(value);
  if (Buffer.byteLength(JSON.stringify(value), 'utf8') > METADATA_MAX_BYTES) {
    throw new FloeError('metadata_too_large', `metadata is larger than ${METADATA_MAX_BYTES} bytes`, {
      field: 'metadata',
      limit: METADATA_MAX_BYTES,
    });
  }
  return value;
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

/** The labels and metadata of a resource after a PATCH: each the JSON merge patch of what it had, metadata checked again. */
export function patchedBase(
  before: { labels: Labels; metadata: Record<string, unknown> },
  patch: { labels?: unknown; metadata?: unknown },
): { labels: Labels; metadata: Record<string, unknown> } {
  return {
    labels: patch.labels === undefined ? before.labels : (mergePatch(before.labels, patch.labels) as Labels),
    metadata:
      patch.metadata === undefined
        ? before.metadata
        : checkMetadata(mergePatch(before.metadata, checkMetadataDepth(patch.metadata)) as Record<string, unknown>),
  };
}

/**
 * How deep objects and arrays nest in a JSON value (a scalar is 0, `{}` is 1), found without recursion and
 * given up once past `limit`, so no input can exhaust the stack.
 */
export function jsonDepth(value: unknown, limit: number): number {
  let deepest = 0;
  const stack: Array<[unknown, number]> = [[value, 1]];
  while (stack.length > 0) {
    const [v, depth] = stack.pop()!;
    if (v === null || typeof v !== 'object') continue;
    if (depth > deepest) deepest = depth;
    if (deepest > limit) return deepest;
    for (const child of Array.isArray(v) ? (v as unknown[]) : Object.values(v)) stack.push([child, depth + 1]);
  }
  return deepest;
}

/** `metadata` (or a merge patch of it) as it came, or `validation_failed` when it nests too deep. */
function checkMetadataDepth<T>(metadata: T): T {
  if (jsonDepth(metadata, METADATA_MAX_DEPTH) > METADATA_MAX_DEPTH) {
    throw new FloeError('validation_failed', `metadata nests deeper than ${METADATA_MAX_DEPTH} levels`, {
      field: 'metadata',
      limit: METADATA_MAX_DEPTH,
    });
  }
  return metadata;
}
