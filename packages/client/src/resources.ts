import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { pipeline, Readable, Transform } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import type {
  Event,
  EventsQuery,
  HistoryEntry,
  Host,
  HostPatch,
  Image,
  ImageCreate,
  ImageImport,
  ImageImported,
  ImagePatch,
  Instance,
  InstanceCreate,
  InstancePatch,
  InstanceStats,
  JoinTokenCreated,
  ListQuery,
  MachineType,
  MachineTypeCreate,
  Network,
  NetworkCreate,
  NetworkPatch,
  Nic,
  Operation,
  OperationStatus,
  PageOf,
  Project,
  ProjectCreate,
  ProjectPatch,
  Token,
  TokenCreate,
  TokenCreated,
} from '@floe/api';
import { FloeApiError, isFloeApiError } from './errors.js';
import {
  connectConsole,
  streamLogs,
  type ConsoleOptions,
  type ConsoleSession,
  type LogsOptions,
  type WebSocketOpener,
} from './io.js';
import { segment, type Query } from './query.js';
import { SseParser } from './sse.js';
import { networkError, type Transport } from './transport.js';

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
function scoped(options: CallOptions | undefined, extra: Query = {}): Query {
  return { ...extra, project: options?.project };
}

/** Request time limit for a call the server may hold open for `wait` seconds. */
function waitTimeout(t: Transport, wait: number | undefined): number {
  return t.timeoutMs + (wait ?? 0) * 1000;
}

/** Drops undefined values from an options bag (undici and exactOptional friendliness). */
function defined<T extends object>(o: T): T {
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
      const page = await this.list({ ...query, cursor } as Q, options);
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
 * Projects (tenants): `client.projects`.
 *
 * @example
 * const p = await client.projects.create({ name: 'shop', description: 'web shop' });
 * await client.projects.update('shop', { labels: { team: 'web' } });
 */
export class ProjectsApi extends ListApi<Project> {
  /** Fetches one project by id or name. */
  get(id: string, options: CallOptions = {}): Promise<Project> {
    return this.t.request('GET', this.path(id), defined({ signal: options.signal }));
  }
  /** Creates a project. */
  create(body: ProjectCreate, options: PostOptions = {}): Promise<Project> {
    return this.t.request('POST', this.base, defined({ body, ...options }));
  }
  /** Changes labels, metadata or description (JSON merge patch). */
  update(id: string, patch: MergePatch<ProjectPatch>, options: UpdateOptions = {}): Promise<Project> {
    return this.t.request(
      'PATCH',
      this.path(id),
      defined({ body: patch, ifMatch: options.ifMatch, signal: options.signal }),
    );
  }
  /** Deletes an empty project (`in_use` otherwise). */
  async delete(id: string, options: CallOptions = {}): Promise<void> {
    await this.t.request('DELETE', this.path(id), defined({ signal: options.signal }));
  }
}

/**
 * API tokens: `client.tokens`. The secret is returned once, by `create`.
 *
 * @example
 * const { token, secret } = await client.tokens.create({ name: 'ci', projects: ['shop'], expires_in_days: 30 });
 */
export class TokensApi extends ListApi<Token> {
  /** Creates a token; the answer holds its secret, which is never shown again. */
  create(body: TokenCreate, options: PostOptions = {}): Promise<TokenCreated> {
    return this.t.request('POST', this.base, defined({ body, ...options }));
  }
  /** Revokes a token. */
  async delete(id: string, options: { signal?: AbortSignal } = {}): Promise<void> {
    await this.t.request('DELETE', this.path(id), defined({ signal: options.signal }));
  }
}

/**
 * Hosts (admin only): `client.hosts`.
 *
 * @example
 * await client.hosts.update('node-2', { spec: { schedulable: false } }); // drain
 * const { token } = await client.hosts.joinToken({ expires_in_minutes: 30 });
 */
export class HostsApi extends ListApi<Host> {
  /** Fetches one host by id or name. */
  get(id: string, options: { signal?: AbortSignal } = {}): Promise<Host> {
    return this.t.request('GET', this.path(id), defined({ signal: options.signal }));
  }
  /** Changes labels, metadata or `spec.schedulable`. */
  update(id: string, patch: MergePatch<HostPatch>, options: UpdateOptions = {}): Promise<Host> {
    return this.t.request(
      'PATCH',
      this.path(id),
      defined({ body: patch, ifMatch: options.ifMatch, signal: options.signal }),
    );
  }
  /** Removes a host record. */
  async delete(id: string, options: { signal?: AbortSignal } = {}): Promise<void> {
    await this.t.request('DELETE', this.path(id), defined({ signal: options.signal }));
  }
  /** Creates a one-time token a new host's agent joins with. */
  joinToken(body: { expires_in_minutes?: number } = {}, options: PostOptions = {}): Promise<JoinTokenCreated> {
    return this.t.request('POST', `${this.base}/join-tokens`, defined({ body, ...options }));
  }
}

/**
 * Options of {@link ImagesApi.upload}.
 *
 * @example
 * const options: ImageUploadOptions = { project: 'shop', sha256: 'e3b0c4...', onProgress: (sent, total) => console.log(sent, total) };
 */
export interface ImageUploadOptions extends CallOptions {
  /** Expected sha256 (hex) of the bytes sent; the server refuses the file (`image_checksum_mismatch`) when it differs. */
  sha256?: string;
  /** Size of a stream source, when known (sent as Content-Length); files and buffers know theirs. */
  size?: number;
  /** Called as bytes go out: bytes sent so far, and the total or null when unknown (a pipe). */
  onProgress?: (sentBytes: number, totalBytes: number | null) => void;
  /** Time limit in milliseconds until the server answers; none by default (large files take long to check and convert). */
  timeoutMs?: number;
}

/**
 * Images: `client.images`.
 *
 * @example
 * await client.images.create({ name: 'debian-12', format: 'qcow2', os: 'debian', min_disk_gib: 2 });
 * await client.images.upload('debian-12', './debian-12.qcow2');
 */
export class ImagesApi extends ListApi<Image> {
  /** Fetches one image by id or name. */
  get(id: string, options: CallOptions = {}): Promise<Image> {
    return this.t.request('GET', this.path(id), defined({ query: scoped(options), signal: options.signal }));
  }
  /** Registers an image. */
  create(body: ImageCreate, options: PostOptions = {}): Promise<Image> {
    return this.t.request('POST', this.base, defined({ body, ...options }));
  }
  /** Changes labels, metadata, `spec.os` or `spec.public`. */
  update(id: string, patch: MergePatch<ImagePatch>, options: UpdateOptions = {}): Promise<Image> {
    return this.t.request(
      'PATCH',
      this.path(id),
      defined({ query: scoped(options), body: patch, ifMatch: options.ifMatch, signal: options.signal }),
    );
  }
  /** Deletes an image. */
  async delete(id: string, options: CallOptions = {}): Promise<void> {
    await this.t.request('DELETE', this.path(id), defined({ query: scoped(options), signal: options.signal }));
  }
  /**
   * Creates an image whose file the control plane downloads from an http(s)
   * URL, checked against `source.checksum` or `source.checksum_url`. Answers
   * at once with the image (`importing`) and the `image.import` operation;
   * follow it with `client.operations.wait` (its `transfer` has the bytes).
   * A failed import keeps nothing: `operation.error.code` says why.
   *
   * @example
   * const { operation } = await client.images.import({ name: 'debian-12', source: { url, checksum_url: `${dir}/SHA512SUMS` } });
   * const done = await client.operations.wait(operation, { onUpdate: (op) => console.log(op.progress, op.transfer) });
   */
  import(body: ImageImport, options: Omit<OperationCallOptions, 'project'> = {}): Promise<ImageImported> {
    return this.t.request(
      'POST',
      `${this.base}/import`,
      defined({
        body,
        query: { wait: options.wait },
        idempotencyKey: options.idempotencyKey,
        signal: options.signal,
        timeoutMs: waitTimeout(this.t, options.wait),
      }),
    );
  }
  /**
   * Streams the file of an image that has none yet (a path, a stream such as
   * stdin, or a buffer; raw or qcow2). The server checks it, stores it as
   * qcow2 and answers with the image, now `ready`.
   */
  async upload(id: string, source: string | Readable | Buffer, options: ImageUploadOptions = {}): Promise<Image> {
    let body: Readable | Buffer;
    let total: number | null;
    if (typeof source === 'string') {
      total = (await stat(source)).size;
      body = createReadStream(source);
    } else if (Buffer.isBuffer(source)) {
      total = source.length;
      body = source;
    } else {
      total = options.size ?? null;
      body = source;
    }
    const onProgress = options.onProgress;
    if (onProgress !== undefined) {
      let sent = 0;
      const counter = new Transform({
        transform(chunk: Buffer, _encoding, done) {
          sent += chunk.length;
          onProgress(sent, total);
          done(null, chunk);
        },
      });
      const input = Buffer.isBuffer(body) ? Readable.from([body]) : body;
      // Errors of the source reach the request through the counter, which pipeline destroys with it.
      body = pipeline(input, counter, () => undefined);
    }
    const headers: Record<string, string> = { 'content-type': 'application/octet-stream' };
    if (total !== null) headers['content-length'] = String(total);
    if (options.sha256 !== undefined) headers['x-floe-sha256'] = options.sha256;
    return this.t.request<Image>(
      'PUT',
      this.path(id, '/file'),
      defined({
        query: scoped(options),
        rawBody: body,
        headers,
        timeoutMs: options.timeoutMs ?? 0,
        signal: options.signal,
      }),
    );
  }
}

/**
 * Networks: `client.networks`.
 *
 * @example
 * await client.networks.create({ name: 'lan', project: 'shop', ipv4: '10.10.0.0/24', ipv6: 'auto', gateway: 'host' });
 */
export class NetworksApi extends ListApi<Network> {
  /** Fetches one network by id or name (names resolve in the project, then among public networks). */
  get(id: string, options: CallOptions = {}): Promise<Network> {
    return this.t.request('GET', this.path(id), defined({ query: scoped(options), signal: options.signal }));
  }
  /** Creates a network (`kind: 'public'` needs an admin token). */
  create(body: NetworkCreate, options: PostOptions = {}): Promise<Network> {
    return this.t.request('POST', this.base, defined({ body, ...options }));
  }
  /** Changes labels, metadata, `spec.dns` or `spec.reserved`. */
  update(id: string, patch: MergePatch<NetworkPatch>, options: UpdateOptions = {}): Promise<Network> {
    return this.t.request(
      'PATCH',
      this.path(id),
      defined({ query: scoped(options), body: patch, ifMatch: options.ifMatch, signal: options.signal }),
    );
  }
  /** Deletes a network; `in_use` while NICs are attached to it. */
  async delete(id: string, options: CallOptions = {}): Promise<void> {
    await this.t.request('DELETE', this.path(id), defined({ query: scoped(options), signal: options.signal }));
  }
}

/**
 * Machine types (sizes): `client.machineTypes`.
 *
 * @example
 * await client.machineTypes.create({ name: 'm1-small', vcpus: 1, memory_mib: 1024, disk_gib: 10 });
 */
export class MachineTypesApi extends ListApi<MachineType> {
  /** Fetches one machine type by id or name. */
  get(id: string, options: { signal?: AbortSignal } = {}): Promise<MachineType> {
    return this.t.request('GET', this.path(id), defined({ signal: options.signal }));
  }
  /** Creates a machine type (admin). */
  create(body: MachineTypeCreate, options: PostOptions = {}): Promise<MachineType> {
    return this.t.request('POST', this.base, defined({ body, ...options }));
  }
  /** Deletes a machine type (admin). */
  async delete(id: string, options: { signal?: AbortSignal } = {}): Promise<void> {
    await this.t.request('DELETE', this.path(id), defined({ signal: options.signal }));
  }
}

/**
 * Answer of `POST /v1/instances`: the new instance and the operation creating it.
 *
 * @example
 * const { instance, operation } = await client.instances.create({ name: 'web', image: 'debian-12', machine_type: 'small' });
 */
export interface InstanceCreated {
  operation: Operation;
  instance: Instance;
}

/**
 * Virtual machines: `client.instances`. Power changes and deletion answer with an
 * {@link Operation}; follow it with `client.operations.wait(op.id)`.
 *
 * @example
 * const { operation } = await client.instances.create({ name: 'web', image: 'debian-12', vcpus: 2, memory_mib: 2048 });
 * const done = await client.operations.wait(operation.id);
 * if (done.status !== 'succeeded') throw new Error(done.error?.message);
 * await client.instances.stop('web', { force: true });
 */
export class InstancesApi extends ListApi<Instance> {
  /** Fetches one instance by id or name. */
  get(id: string, options: CallOptions = {}): Promise<Instance> {
    return this.t.request('GET', this.path(id), defined({ query: scoped(options), signal: options.signal }));
  }
  /** Creates (and by default starts) an instance. */
  create(body: InstanceCreate, options: Omit<OperationCallOptions, 'project'> = {}): Promise<InstanceCreated> {
    return this.t.request(
      'POST',
      this.base,
      defined({
        body,
        query: { wait: options.wait },
        idempotencyKey: options.idempotencyKey,
        signal: options.signal,
        timeoutMs: waitTimeout(this.t, options.wait),
      }),
    );
  }
  /** Changes labels, metadata or `spec.restart_policy`. */
  update(id: string, patch: MergePatch<InstancePatch>, options: UpdateOptions = {}): Promise<Instance> {
    return this.t.request(
      'PATCH',
      this.path(id),
      defined({ query: scoped(options), body: patch, ifMatch: options.ifMatch, signal: options.signal }),
    );
  }
  /** Deletes an instance (stopping it first); answers with the operation. */
  delete(id: string, options: OperationCallOptions = {}): Promise<Operation> {
    return this.t.request(
      'DELETE',
      this.path(id),
      defined({
        query: scoped(options, { wait: options.wait }),
        signal: options.signal,
        timeoutMs: waitTimeout(this.t, options.wait),
      }),
    );
  }
  /** Starts an instance. */
  start(id: string, options: OperationCallOptions = {}): Promise<Operation> {
    return this.#power(id, 'start', undefined, options);
  }
  /** Stops an instance: an ACPI power-down, or at once with `force`. */
  stop(id: string, options: OperationCallOptions & { force?: boolean } = {}): Promise<Operation> {
    return this.#power(id, 'stop', options.force === undefined ? {} : { force: options.force }, options);
  }
  /** Restarts an instance. */
  restart(id: string, options: OperationCallOptions = {}): Promise<Operation> {
    return this.#power(id, 'restart', undefined, options);
  }
  /**
   * The console log as raw bytes: the history the host keeps (or its last
   * `tailBytes`), then with `follow` new output until `signal` aborts.
   */
  logs(id: string, options: LogsOptions = {}): AsyncGenerator<Buffer> {
    return streamLogs(this.t, this.path(id, '/logs'), options);
  }
  /** Counters of a running instance (`invalid_state` when it is not running). */
  stats(id: string, options: CallOptions = {}): Promise<InstanceStats> {
    return this.t.request('GET', this.path(id, '/stats'), defined({ query: scoped(options), signal: options.signal }));
  }
  /** Attaches to the serial console over a WebSocket; rejects with the server's error when it cannot. */
  console(id: string, options: ConsoleOptions = {}): Promise<ConsoleSession> {
    const t = this.t as Transport & Partial<WebSocketOpener>;
    if (typeof t.openWebSocket !== 'function')
      return Promise.reject(new TypeError('this transport cannot open WebSockets'));
    return connectConsole(t.openWebSocket(this.path(id, '/console'), scoped(options)), options.signal);
  }
  /** One page of the instance's change history. */
  history(
    id: string,
    query: Omit<ListQuery, 'label'> = {},
    options: { signal?: AbortSignal } = {},
  ): Promise<PageOf<HistoryEntry>> {
    return this.t.request('GET', this.path(id, '/history'), defined({ query: query as Query, signal: options.signal }));
  }

  /** The NICs of an instance, in slot order. */
  async nics(id: string, options: CallOptions = {}): Promise<Nic[]> {
    const page = await this.t.request<{ items: Nic[] }>(
      'GET',
      this.path(id, '/nics'),
      defined({ query: scoped(options), signal: options.signal }),
    );
    return page.items;
  }
  /** Adds a NIC on `network` (hot-plugged when running), with the addresses asked for or the next free ones. */
  addNic(
    id: string,
    body: { network: string; ipv4?: string; ipv6?: string },
    options: OperationCallOptions = {},
  ): Promise<{ nic: Nic; operation: Operation }> {
    return this.t.request(
      'POST',
      this.path(id, '/nics'),
      defined({
        query: scoped(options, { wait: options.wait }),
        body,
        idempotencyKey: options.idempotencyKey,
        signal: options.signal,
        timeoutMs: waitTimeout(this.t, options.wait),
      }),
    );
  }
  /** Removes a NIC (hot-unplugged when running); its addresses are freed. */
  removeNic(id: string, nic: string, options: OperationCallOptions = {}): Promise<Operation> {
    return this.t.request(
      'DELETE',
      this.path(id, `/nics/${segment(nic)}`),
      defined({
        query: scoped(options, { wait: options.wait }),
        signal: options.signal,
        timeoutMs: waitTimeout(this.t, options.wait),
      }),
    );
  }

  #power(id: string, action: string, body: unknown, options: OperationCallOptions): Promise<Operation> {
    return this.t.request(
      'POST',
      this.path(id, `/${action}`),
      defined({
        query: scoped(options, { wait: options.wait }),
        body,
        idempotencyKey: options.idempotencyKey,
        signal: options.signal,
        timeoutMs: waitTimeout(this.t, options.wait),
      }),
    );
  }
}

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
 * Operations: `client.operations`. `wait` follows one until it ends.
 *
 * @example
 * const op = await client.instances.restart('web');
 * const done = await client.operations.wait(op, { onUpdate: (o) => console.log(`${o.progress}% ${o.message}`) });
 * if (done.status === 'failed') console.error(done.error?.code, done.error?.message);
 */
export class OperationsApi extends ListApi<Operation, ListQuery & { status?: OperationStatus | OperationStatus[] }> {
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
        await sleep(Math.min(1000, Math.max(0, deadline - Date.now())), undefined, defined({ signal: options.signal }));
    }
  }
}

/**
 * Options of {@link EventsApi.stream}.
 *
 * @example
 * const ac = new AbortController();
 * for await (const ev of client.events.stream({ kind: 'instance' }, { signal: ac.signal })) console.log(ev.type);
 */
export interface StreamOptions {
  /** Ends the stream (the iterator then finishes without an error). */
  signal?: AbortSignal;
  /** Resume after this event id (sent as `Last-Event-ID`). */
  lastEventId?: string;
  /** Reconnect after a dropped connection or a server error (default true). */
  reconnect?: boolean;
  /** First delay before reconnecting, in ms (doubles up to 30 s while reconnects fail; default 1000, or the server's `retry:`). */
  reconnectDelayMs?: number;
  /** Treat the connection as dead after this long without bytes (keepalives count), in ms (default 90 s; 0 = never). */
  idleTimeoutMs?: number;
}

/** True for failures worth reconnecting after. */
function transient(err: unknown): boolean {
  return isFloeApiError(err) && (err.code === 'network_error' || err.status >= 500 || err.status === 429);
}

/**
 * The event stream: `client.events`, over Server-Sent Events.
 *
 * @example
 * for await (const ev of client.events.stream({ project: 'shop', kind: ['instance', 'operation'] })) {
 *   console.log(ev.seq, ev.type, ev.resource_id, ev.data);
 * }
 */
export class EventsApi {
  constructor(private readonly t: Transport) {}

  /**
   * Streams events as they happen, reconnecting with `Last-Event-ID` when the
   * connection drops, so no event is lost or repeated. Runs until `signal`
   * aborts (or the consumer stops iterating).
   */
  async *stream(query: EventsQuery = {}, options: StreamOptions = {}): AsyncGenerator<Event> {
    const { signal } = options;
    const reconnect = options.reconnect ?? true;
    const baseDelay = options.reconnectDelayMs ?? 1000;
    let delay = baseDelay;
    let lastId = options.lastEventId ?? '';
    let lastSeq = query.since ?? (/^\d+$/.test(lastId) ? Number(lastId) : -1);
    for (;;) {
      if (signal?.aborted) return;
      const q: Query = { ...(query as Query), since: lastSeq >= 0 ? lastSeq : undefined };
      const headers: Record<string, string> = lastId === '' ? {} : { 'last-event-id': lastId };
      let body: Readable;
      try {
        const opened = await this.t.openStream(
          '/v1/events',
          defined({ query: q, headers, signal, idleTimeoutMs: options.idleTimeoutMs ?? 90_000 }),
        );
        body = opened.body;
      } catch (err) {
        if (signal?.aborted) return;
        if (!reconnect || !transient(err)) throw err;
        if (!(await pause(delay, signal))) return;
        delay = Math.min(delay * 2, 30_000);
        continue;
      }
      const parser = new SseParser();
      try {
        for await (const chunk of body) {
          for (const msg of parser.push(chunk as Uint8Array)) {
            let ev: Event;
            try {
              ev = JSON.parse(msg.data) as Event;
            } catch {
              throw new FloeApiError({ status: 200, code: 'invalid_response', message: `event ${msg.id} is not JSON` });
            }
            if (msg.id !== '') lastId = msg.id;
            if (typeof ev.seq === 'number') {
              if (ev.seq <= lastSeq) continue; // a replay overlapping what we already saw
              lastSeq = ev.seq;
            }
            delay = parser.retryMs ?? baseDelay;
            yield ev;
          }
        }
      } catch (err) {
        if (signal?.aborted) return;
        if (isFloeApiError(err) && err.code === 'invalid_response') throw err;
        if (!reconnect) throw networkError(err, 'GET', '/v1/events');
      } finally {
        body.destroy();
      }
      if (!reconnect) return;
      if (!(await pause(parser.retryMs ?? delay, signal))) return;
      delay = Math.min(delay * 2, 30_000); // reset to the base once events flow again
    }
  }
}

/** Sleeps `ms`; false when the signal aborted meanwhile. */
async function pause(ms: number, signal: AbortSignal | undefined): Promise<boolean> {
  try {
    await sleep(ms, undefined, signal === undefined ? {} : { signal });
    return true;
  } catch {
    return false;
  }
}
