import type { Operation, OperationListQuery, OperationStatus } from '@floe/api';
import { defined, delay, ListApi, waitTimeout, type PostOptions } from './calls.js';
import { FloeApiError } from './errors.js';

/**
 * Operation states after which nothing changes any more.
 *
 * @example
 * TERMINAL_STATUSES.includes(op.status)
 */
export const TERMINAL_STATUSES: readonly OperationStatus[] = ['succeeded', 'failed', 'cancelled'];

/**
 * True when an operation has ended (succeeded, failed or cancelled).
 *
 * @example
 * if (isTerminal(op)) console.log(op.status);
 */
export function isTerminal(op: Pick<Operation, 'status'>): boolean {
  return TERMINAL_STATUSES.includes(op.status);
}

/**
 * Options of {@link OperationsApi.wait}.
 *
 * @example
 * await client.operations.wait(id, { timeoutMs: 120_000, onUpdate: (op) => console.log(op.progress, op.message) });
 */
export interface WaitOptions {
  /** Give up after this long with a `operation_timeout` {@link FloeApiError} (the operation goes on). Default: no limit. */
  timeoutMs?: number;
  /** Called with every fetched state that differs from the previous one. */
  onUpdate?: (op: Operation) => void;
  /** How long each long-poll may block on the server, in seconds (1-30, default 30). Lower values give more progress updates. */
  pollSeconds?: number;
  /** Stops waiting. */
  signal?: AbortSignal;
}

/** True when two states of an operation differ in what a watcher sees. */
function changed(a: Operation, b: Operation): boolean {
  return a.status !== b.status || a.progress !== b.progress || a.message !== b.message || a.updated_at !== b.updated_at;
}

/**
 * Query of {@link OperationsApi.list}: a list query, optionally of one status.
 *
 * @example
 * await client.operations.list({ status: 'running' });
 */
export type OperationsQuery = Omit<OperationListQuery, 'status'> & { status?: OperationStatus };

/**
 * Operations: `client.operations`. `wait` follows one until it ends.
 *
 * @example
 * const op = await client.instances.restart('web');
 * const done = await client.operations.wait(op, { onUpdate: (o) => console.log(`${o.progress}% ${o.message}`) });
 * if (done.status === 'failed') console.error(done.error?.code, done.error?.message);
 */
export class OperationsApi extends ListApi<Operation, OperationsQuery> {
  /** Fetches one operation; with `wait` the server blocks up to that many seconds until it ends. */
  get(id: string, options: { wait?: number; signal?: AbortSignal; timeoutMs?: number } = {}): Promise<Operation> {
    return this.t.request(
      'GET',
      this.path(id),
      defined({
        query: { wait: options.wait },
        signal: options.signal,
        timeoutMs: options.timeoutMs ?? waitTimeout(this.t, options.wait),
      }),
    );
  }
  /** Cancels a pending operation, or a running image import (`operation_not_cancellable` for others once they run). */
  cancel(id: string, options: PostOptions = {}): Promise<Operation> {
    return this.t.request('POST', this.path(id, '/cancel'), defined({ ...options }));
  }

  /**
   * Long-polls `GET /v1/operations/{id}?wait=N` until the operation ends and
   * resolves with its final state. A failed or cancelled operation resolves
   * too: check `status` (and `error`) on the result. It rejects only when the
   * API cannot be reached or answers with an error, or with code
   * `operation_timeout` when `timeoutMs` passes first.
   */
  async wait(op: string | Operation, options: WaitOptions = {}): Promise<Operation> {
    const id = typeof op === 'string' ? op : op.id;
    let current: Operation | undefined = typeof op === 'string' ? undefined : op;
    if (current !== undefined && isTerminal(current)) return current;
    const deadline = options.timeoutMs === undefined ? Infinity : Date.now() + options.timeoutMs;
    const poll = Math.min(30, Math.max(1, options.pollSeconds ?? 30));
    for (;;) {
      const remaining = deadline - Date.now();
      if (remaining <= 0) {
        throw new FloeApiError({
          status: 0,
          code: 'operation_timeout',
          message: `operation ${id} did not end within ${options.timeoutMs} ms (it goes on)`,
          details: { operation: id, status: current?.status },
        });
      }
      const wait = Math.max(1, Math.min(poll, Math.ceil(remaining / 1000)));
      const started = Date.now();
      const next = await this.get(id, defined({ wait, signal: options.signal }));
      const isNew = current === undefined || changed(current, next);
      current = next;
      if (isNew) options.onUpdate?.(next);
      if (isTerminal(next)) return next;
      // A server that answered at once without news would make this loop spin.
      if (!isNew && Date.now() - started < 250)
        await delay(Math.min(1000, Math.max(0, deadline - Date.now())), options.signal);
    }
  }
}
