import type {
  HistoryEntry,
  Instance,
  InstanceCreate,
  InstanceCreated,
  InstancePatch,
  InstanceStats,
  InstanceStatsHistory,
  InstanceStop,
  ListQuery,
  Nic,
  NicAdd,
  NicAdded,
  NicList,
  Operation,
  PageOf,
} from '@floe/api';
import {
  defined,
  ListApi,
  scoped,
  waitTimeout,
  type CallOptions,
  type MergePatch,
  type OperationCallOptions,
  type UpdateOptions,
} from './calls.js';
import {
  connectConsole,
  streamLogs,
  type ConsoleOptions,
  type ConsoleSession,
  type LogsOptions,
  type WebSocketOpener,
} from './io.js';
import { segment } from './query.js';
import type { Transport } from './transport.js';

/**
 * Answer of `POST /v1/instances`: the new instance and the operation creating it.
 *
 * @example
 * const { instance, operation } = await client.instances.create({ name: 'web', image: 'debian-12', machine_type: 'small' });
 */
export type { InstanceCreated } from '@floe/api';

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
  stop(id: string, options: OperationCallOptions & InstanceStop = {}): Promise<Operation> {
    const body: InstanceStop = options.force === undefined ? {} : { force: options.force };
    return this.#power(id, 'stop', body, options);
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
  /**
   * Stats over time from the bounded history the host keeps (the last hour,
   * one sample every 10 s): CPU %, memory and disk/network rates per sample,
   * oldest first. Pass the last sample's `at` as `since` to poll for new ones.
   */
  statsHistory(id: string, options: CallOptions & { since?: string } = {}): Promise<InstanceStatsHistory> {
    return this.t.request(
      'GET',
      this.path(id, '/stats/history'),
      defined({ query: scoped(options, { since: options.since }), signal: options.signal }),
    );
  }
  /** Attaches to the serial console over a WebSocket; rejects with the server's error when it cannot. */
  console(id: string, options: ConsoleOptions = {}): Promise<ConsoleSession> {
    return this.#socket(id, '/console', options);
  }
  /**
   * Attaches to the graphical console over a WebSocket: the session carries
   * raw RFB (VNC) bytes both ways. Rejects with the server's error when it
   * cannot (`vnc_unavailable` for a VM started before it had one).
   */
  vnc(id: string, options: ConsoleOptions = {}): Promise<ConsoleSession> {
    return this.#socket(id, '/vnc', options);
  }
  /** The API path of the graphical console's WebSocket (for noVNC and other RFB-over-WebSocket clients). */
  vncPath(id: string): string {
    return this.path(id, '/vnc');
  }
  #socket(id: string, suffix: string, options: ConsoleOptions): Promise<ConsoleSession> {
    const t = this.t as Transport & Partial<WebSocketOpener>;
    if (typeof t.openWebSocket !== 'function')
      return Promise.reject(new TypeError('this transport cannot open WebSockets'));
    return connectConsole(t.openWebSocket(this.path(id, suffix), scoped(options)), options.signal);
  }
  /** One page of the instance's change history. */
  history(
    id: string,
    query: Omit<ListQuery, 'label'> = {},
    options: { signal?: AbortSignal } = {},
  ): Promise<PageOf<HistoryEntry>> {
    return this.t.request('GET', this.path(id, '/history'), defined({ query: query, signal: options.signal }));
  }

  /** The NICs of an instance, in slot order. */
  async nics(id: string, options: CallOptions = {}): Promise<Nic[]> {
    const page = await this.t.request<NicList>(
      'GET',
      this.path(id, '/nics'),
      defined({ query: scoped(options), signal: options.signal }),
    );
    return page.items;
  }
  /** Adds a NIC on `network` (hot-plugged when running), with the addresses asked for or the next free ones. */
  addNic(id: string, body: NicAdd, options: OperationCallOptions = {}): Promise<NicAdded> {
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
