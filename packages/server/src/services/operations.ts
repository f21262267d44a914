import {
  FloeError,
  type ErrorBody,
  type Operation,
  type OperationStatus,
  type PageOf,
  type ResourceRef,
} from '@floe/api';
import { forUpdate, fromJson, nowIso, toJson, transaction, type Db } from '../db/index.js';
import type { OperationsTable } from '../db/schema.js';
import { newId } from '../ids.js';
import { canUseProject } from './authz.js';
import { decodeCursor, encodeCursor } from './pagination.js';
import type { Principal, ServiceContext } from './context.js';
import type { NewEvent } from './events.js';

/** Row → API shape. */
export function operationFromRow(row: OperationsTable): Operation {
  return {
    id: row.id,
    project: row.project,
    kind: row.kind,
    status: row.status as OperationStatus,
    progress: Number(row.progress),
    message: row.message,
    resources: fromJson<ResourceRef[]>(row.resources) ?? [],
    error: fromJson<ErrorBody>(row.error),
    created_by: row.created_by,
    created_at: row.created_at,
    updated_at: row.updated_at,
    finished_at: row.finished_at,
    ...(row.transfer === null || row.transfer === undefined
      ? {}
      : { transfer: fromJson<{ done_bytes: number; total_bytes: number | null }>(row.transfer) }),
  };
}

/** True for succeeded, failed and cancelled. */
export function isTerminal(status: string): boolean {
  return status === 'succeeded' || status === 'failed' || status === 'cancelled';
}

/** What a new operation records. */
export interface NewOperation {
  project: string | null;
  kind: string;
  resources: ResourceRef[];
  created_by: string;
  message: string;
  target_id: string;
  target_generation: number;
  target_state: 'running' | 'stopped' | 'deleted' | 'ready';
  undo?: unknown;
  /** The target was created in this same transaction, so no older operation can be waiting on it. */
  new_target?: boolean;
}

/** Undoes a cancelled pending operation inside the cancelling transaction. */
export type CancelHandler = (trx: Db, op: OperationsTable, undo: unknown) => Promise<NewEvent[]>;

/**
 * Operations: host work tracked from request to result. Services create them
 * inside their transaction; agent reports move them forward.
 */
export class OperationService {
  private readonly cancelHandlers = new Map<string, { handler: CancelHandler; running: boolean }>();

  constructor(private readonly ctx: ServiceContext) {}

  /**
   * Register how pending operations of a kind prefix (e.g. "instance.") are undone on cancel.
   * With `running`, running ones may be cancelled too: work the control plane does itself (an
   * image download) watches its operation and stops when it is cancelled.
   */
  onCancel(kindPrefix: string, handler: CancelHandler, opts: { running?: boolean } = {}): void {
    this.cancelHandlers.set(kindPrefix, { handler, running: opts.running === true });
  }

  /**
   * Record the progress of a running operation the control plane works on itself. False when the
   * operation is no longer pending or running (cancelled meanwhile): the work should stop.
   */
  async progress(
    id: string,
    p: { progress: number; message: string; transfer?: { done_bytes: number; total_bytes: number | null } },
  ): Promise<boolean> {
    const now = nowIso();
    const patch = {
      status: 'running',
      progress: p.progress,
      message: p.message,
      updated_at: now,
      ...(p.transfer === undefined ? {} : { transfer: toJson(p.transfer) }),
    };
    const res = await this.ctx.store.db
      .updateTable('operations')
      .set(patch)
      .where('id', '=', id)
      .where('status', 'in', ['pending', 'running'])
      .executeTakeFirst();
    if (Number(res.numUpdatedRows) === 0) return false;
    const row = await this.ctx.store.db.selectFrom('operations').selectAll().where('id', '=', id).executeTakeFirst();
    if (row) await this.ctx.bus.publish(this.event(operationFromRow(row)));
    return true;
  }

  /**
   * Record a pending operation. Older unfinished operations on the same target
   * are superseded (cancelled with a message), since the newer intent wins.
   */
  async create(trx: Db, op: NewOperation): Promise<{ operation: Operation; events: NewEvent[] }> {
    const now = nowIso();
    const events: NewEvent[] = [];
    const older = op.new_target
      ? []
      : await trx
          .selectFrom('operations')
          .selectAll()
          .where('target_id', '=', op.target_id)
          .where('status', 'in', ['pending', 'running'])
          .execute();
    const row: OperationsTable = {
      id: newId('operation'),
      project: op.project,
      kind: op.kind,
      status: 'pending',
      progress: 0,
      message: op.message,
      resources: toJson(op.resources),
      error: null,
      created_by: op.created_by,
      created_at: now,
      updated_at: now,
      finished_at: null,
      target_id: op.target_id,
      target_generation: op.target_generation,
      target_state: op.target_state,
      undo: op.undo === undefined ? null : toJson(op.undo),
      transfer: null,
    };
    for (const o of older) {
      // Guarded by status: an operation that ended meanwhile (PostgreSQL, READ COMMITTED) keeps its end.
      const res = await trx
        .updateTable('operations')
        .set({ status: 'cancelled', message: `superseded by ${row.id}`, updated_at: now, finished_at: now })
        .where('id', '=', o.id)
        .where('status', 'in', ['pending', 'running'])
        .executeTakeFirst();
      if (Number(res.numUpdatedRows) === 0) continue;
      events.push(
        this.event(
          operationFromRow({
            ...o,
            status: 'cancelled',
            message: `superseded by ${row.id}`,
            updated_at: now,
            finished_at: now,
          }),
        ),
      );
    }
    await trx.insertInto('operations').values(row).execute();
    const operation = operationFromRow(row);
    events.push({
      type: 'operation.created',
      project: op.project,
      kind: 'operation',
      resource_id: row.id,
      data: { operation },
    });
    return { operation, events };
  }

  /** The unfinished operation of `kind` on a target, if there is one (the newest). */
  async inFlight(trx: Db, targetId: string, kind: string): Promise<Operation | null> {
    const row = await trx
      .selectFrom('operations')
      .selectAll()
      .where('target_id', '=', targetId)
      .where('kind', '=', kind)
      .where('status', 'in', ['pending', 'running'])
      .orderBy('id', 'desc')
      .executeTakeFirst();
    return row ? operationFromRow(row) : null;
  }

  /** An operation.updated event for `op`. */
  event(op: Operation): NewEvent {
    return {
      type: 'operation.updated',
      project: op.project,
      kind: 'operation',
      resource_id: op.id,
      data: { operation: op },
    };
  }

  /** One operation the principal may see. */
  async get(principal: Principal, id: string, db: Db = this.ctx.store.db): Promise<Operation> {
    const row = await db.selectFrom('operations').selectAll().where('id', '=', id).executeTakeFirst();
    if (!row || (row.project === null ? !principal.admin : !canUseProject(principal, row.project))) {
      throw new FloeError('operation_not_found', `operation "${id}" not found`, { kind: 'operation', id });
    }
    return operationFromRow(row);
  }

  /** Operations of the visible projects, newest first. */
  async list(
    principal: Principal,
    q: { limit?: number; cursor?: string; project?: string; status?: string },
  ): Promise<PageOf<Operation>> {
    const limit = Math.min(q.limit ?? 100, 1000);
    let query = this.ctx.store.db
      .selectFrom('operations')
      .selectAll()
      .orderBy('id', 'desc')
      .limit(limit + 1);
    if (q.cursor) query = query.where('id', '<', decodeCursor(q.cursor));
    if (q.status) query = query.where('status', '=', q.status);
    if (q.project !== undefined) {
      if (!canUseProject(principal, q.project)) return { items: [], next_cursor: null };
      query = query.where('project', '=', q.project);
    } else if (!principal.admin) {
      const projects = [...principal.projects];
      if (projects.length === 0) return { items: [], next_cursor: null };
      query = query.where('project', 'in', projects);
    }
    const rows = await query.execute();
    const page = rows.slice(0, limit);
    return {
      items: page.map(operationFromRow),
      next_cursor: rows.length > limit ? encodeCursor(page[page.length - 1]!.id) : null,
    };
  }

  /**
   * The operation once it ends, or as it is after `seconds`. Listens to the
   * event bus, so it answers as soon as the operation changes.
   */
  async wait(principal: Principal, id: string, seconds: number, signal?: AbortSignal): Promise<Operation> {
    const first = await this.get(principal, id);
    if (isTerminal(first.status) || seconds <= 0) return first;
    return new Promise<Operation>((resolve, reject) => {
      let done = false;
      const finish = () => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        unsubscribe();
        signal?.removeEventListener('abort', finish);
        this.get(principal, id).then(resolve, reject);
      };
      const unsubscribe = this.ctx.bus.subscribe((e) => {
        if (
          e.kind === 'operation' &&
          e.resource_id === id &&
          isTerminal(String((e.data.operation as Operation | undefined)?.status))
        )
          finish();
      });
      const timer = setTimeout(finish, seconds * 1000);
      signal?.addEventListener('abort', finish);
      // The operation may have ended between the first read and the subscription.
      this.get(principal, id).then(
        (op) => {
          if (isTerminal(op.status)) finish();
        },
        () => undefined,
      );
    });
  }

  /** Cancel a pending operation and undo what it asked for. */
  async cancel(principal: Principal, id: string): Promise<Operation> {
    const { op, events } = await transaction(this.ctx.store, async (trx) => {
      const current = await this.get(principal, id, trx);
      const registered = [...this.cancelHandlers.entries()].find(([prefix]) => current.kind.startsWith(prefix))?.[1];
      if (current.status !== 'pending' && !(current.status === 'running' && registered?.running === true)) {
        throw new FloeError(
          'operation_not_cancellable',
          `operation "${id}" is ${current.status}; only pending operations${registered?.running ? ' and running ones of this kind' : ''} can be cancelled`,
          { status: current.status },
        );
      }
      // Locked first, as the work that finishes a running operation does: the two never interleave.
      const row = await forUpdate(
        trx.selectFrom('operations').selectAll().where('id', '=', id),
      ).executeTakeFirstOrThrow();
      if (isTerminal(row.status)) {
        throw new FloeError('operation_not_cancellable', `operation "${id}" is ${row.status}`, { status: row.status });
      }
      const undoEvents = registered ? await registered.handler(trx, row, fromJson(row.undo)) : [];
      const now = nowIso();
      await trx
        .updateTable('operations')
        .set({ status: 'cancelled', message: `cancelled by ${principal.actor}`, updated_at: now, finished_at: now })
        .where('id', '=', id)
        .execute();
      const op = operationFromRow({
        ...row,
        status: 'cancelled',
        message: `cancelled by ${principal.actor}`,
        updated_at: now,
        finished_at: now,
      });
      return { op, events: [...undoEvents, this.event(op)] };
    });
    await this.ctx.bus.publish(...events);
    return op;
  }

  /** Move unfinished operations of a target forward; returns events to publish after commit. */
  async advance(
    trx: Db,
    targetId: string,
    update: (
      row: OperationsTable,
    ) => { status: OperationStatus; progress: number; message: string; error?: ErrorBody | null } | null,
  ): Promise<NewEvent[]> {
    const rows = await trx
      .selectFrom('operations')
      .selectAll()
      .where('target_id', '=', targetId)
      .where('status', 'in', ['pending', 'running'])
      .execute();
    const events: NewEvent[] = [];
    for (const row of rows) {
      const next = update(row);
      if (!next) continue;
      if (next.status === row.status && next.progress === Number(row.progress) && next.message === row.message)
        continue;
      const now = nowIso();
      const patch = {
        status: next.status,
        progress: next.progress,
        message: next.message,
        error: next.error ? toJson(next.error) : row.error,
        updated_at: now,
        finished_at: isTerminal(next.status) ? now : null,
      };
      // Guarded by status: an operation cancelled or superseded since it was read is never revived.
      const res = await trx
        .updateTable('operations')
        .set(patch)
        .where('id', '=', row.id)
        .where('status', 'in', ['pending', 'running'])
        .executeTakeFirst();
      if (Number(res.numUpdatedRows) === 0) continue;
      events.push(this.event(operationFromRow({ ...row, ...patch })));
    }
    return events;
  }
}
