import type { ListQuery, PageOf } from '@floe/api';
import { segment, type Query } from './query.js';
import type { Transport } from './transport.js';

// What every resource API shares: call options, merge patches and paging.

/**
 * A JSON merge patch of T: every field optional, `null` removes a key
 * (so `{ labels: { env: null } }` drops the `env` label).
 *
 * @example
 * const patch: MergePatch<ProjectPatch> = { labels: { env: 'prod', old: null } };
 */
export type MergePatch<T> = {
  [K in keyof T]?: NonNullable<T[K]> extends readonly unknown[]
    ? T[K] | null
    : NonNullable<T[K]> extends object
      ? MergePatch<NonNullable<T[K]>> | null
      : T[K] | null;
};

/**
 * Options shared by calls on one resource.
 *
 * @example
 * await client.instances.get('web', { project: 'shop' });
 */
export interface CallOptions {
  /** Project in which names resolve (the server's default is `default`). */
  project?: string;
  /** Cancels the call. */
  signal?: AbortSignal;
}

/**
 * Options of calls that create something.
 *
 * @example
 * await client.projects.create({ name: 'shop' }, { idempotencyKey: 'create-shop-1' });
 */
export interface PostOptions {
  /** Re-sending the same key returns the first answer instead of acting twice (random when unset). */
  idempotencyKey?: string;
  /** Cancels the call. */
  signal?: AbortSignal;
}

/**
 * Options of updates.
 *
 * @example
 * await client.projects.update('shop', { description: 'the shop' }, { ifMatch: project.revision });
 */
export interface UpdateOptions extends CallOptions {
  /** Only update if the resource is still at this revision (else `revision_mismatch`). */
  ifMatch?: string | number;
}

/**
 * Options of calls that answer with an operation.
 *
 * @example
 * const op = await client.instances.start('web', { wait: 60 }); // blocks up to 60 s on the server
 */
export interface OperationCallOptions extends CallOptions, PostOptions {
  /** Let the server block up to this many seconds until the operation ends. */
  wait?: number;
}

/** Merges the project into a query. */
export function scoped(options: CallOptions | undefined, extra: Query = {}): Query {
  return { ...extra, project: options?.project };
}

/** Request time limit for a call the server may hold open for `wait` seconds. */
export function waitTimeout(t: Transport, wait: number | undefined): number {
  return t.timeoutMs + (wait ?? 0) * 1000;
}

/** Drops undefined values from an options bag (undici and exactOptional friendliness). */
export function defined<T extends object>(o: T): T {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as T;
}

/**
 * The paging calls every list has: one page, every page, or an async iterator.
 *
 * @example
 * for await (const inst of client.instances.iterate({ label: 'env=prod' })) console.log(inst.name);
 */
export class ListApi<T, Q extends object = ListQuery> {
  constructor(
    protected readonly t: Transport,
    protected readonly base: string,
  ) {}

  /** One page: `{ items, next_cursor }`. */
  list(query: Q = {} as Q, options: { signal?: AbortSignal } = {}): Promise<PageOf<T>> {
    return this.t.request<PageOf<T>>('GET', this.base, defined({ query: query as Query, signal: options.signal }));
  }

  /** Every item, following `next_cursor` until the last page. */
  async listAll(query: Q = {} as Q, options: { signal?: AbortSignal } = {}): Promise<T[]> {
    const all: T[] = [];
    for await (const item of this.iterate(query, options)) all.push(item);
    return all;
  }

  /** Iterates over every item, fetching pages as needed. */
  async *iterate(query: Q = {} as Q, options: { signal?: AbortSignal } = {}): AsyncGenerator<T> {
    let cursor: string | undefined = (query as { cursor?: string }).cursor;
    for (;;) {
      const page = await this.list({ ...query, cursor }, options);
      yield* page.items;
      if (
        page.next_cursor === null ||
        page.next_cursor === undefined ||
        page.next_cursor === '' ||
        page.next_cursor === cursor
      )
        return;
      cursor = page.next_cursor;
    }
  }

  /** The path of one resource. */
  protected path(id: string, suffix = ''): string {
    return `${this.base}/${segment(id)}${suffix}`;
  }
}

/**
 * Waits `ms` milliseconds, in Node and in browsers alike; rejects with the signal's reason when it aborts.
 *
 * @example
 * await delay(500, ac.signal);
 */
export function delay(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason as Error);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal!.reason as Error);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}
