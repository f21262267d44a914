import { randomUUID } from 'node:crypto';
import { EventEmitter } from 'node:events';
import pg from 'pg';
import { sql, type Kysely } from 'kysely';
import type { Database, Store } from './db/index.js';

/**
 * Channels control planes use to tell each other about changes. `floe_invalidate` carries
 * `{ kind: 'instance', ids: string[] }`: rows written that read caches must forget.
 */
export type ClusterChannel = 'floe_events' | 'floe_desired' | 'floe_invalidate';

const CHANNELS: readonly ClusterChannel[] = ['floe_events', 'floe_desired', 'floe_invalidate'];

type Listener = (payload: Record<string, unknown>) => void;

/**
 * Messages between the control planes that share one database. On PostgreSQL
 * they travel with LISTEN/NOTIFY; with SQLite there is only one control plane
 * and nothing leaves the process. A process never hears its own messages.
 */
export interface Cluster {
  /** Identifies this control plane process. */
  readonly origin: string;
  /**
   * Send `payload` to the other control planes. With `db` an open transaction, the message is sent
   * when (and only if) that transaction commits, in commit order with other messages.
   */
  publish(channel: ClusterChannel, payload: Record<string, unknown>, db?: Kysely<Database>): Promise<void>;
  subscribe(channel: ClusterChannel, fn: Listener): () => void;
  /**
   * True while this process hears the others' messages. Messages sent while it does not are lost,
   * so whoever trusts them to stay current (a cache) must stop trusting until it hears again.
   */
  readonly listening: boolean;
  /** Call `fn` when `listening` changes; returns the unsubscribe function. */
  onListening(fn: (listening: boolean) => void): () => void;
  close(): Promise<void>;
}

/** The single-process cluster (SQLite). */
class LocalCluster implements Cluster {
  readonly origin = randomUUID();
  readonly listening = true;
  async publish(): Promise<void> {}
  subscribe(): () => void {
    return () => undefined;
  }
  onListening(): () => void {
    return () => undefined;
  }
  async close(): Promise<void> {}
}

/** Control planes sharing a PostgreSQL database. */
class PostgresCluster implements Cluster {
  readonly origin = randomUUID();
  private readonly emitter = new EventEmitter();
  private client: pg.Client | null = null;
  private closed = false;
  private reconnectTimer: NodeJS.Timeout | null = null;
  private heard = false;

  constructor(
    private readonly store: Store,
    private readonly url: string,
    private readonly onError: (err: Error) => void,
  ) {
    this.emitter.setMaxListeners(0);
  }

  /** Open the LISTEN connection; reconnects by itself when it drops. */
  async connect(): Promise<void> {
    // Keep-alive probes find a dead LISTEN connection (lost notifications) without waiting for a query.
    const client = new pg.Client({ connectionString: this.url, keepAlive: true, keepAliveInitialDelayMillis: 10_000 });
    client.on('notification', (msg) => {
      if (!msg.payload) return;
      let payload: Record<string, unknown>;
      try {
        payload = JSON.parse(msg.payload) as Record<string, unknown>;
      } catch {
        return;
      }
      if (payload.origin === this.origin) return;
      this.emitter.emit(msg.channel, payload);
    });
    // A connection already replaced (its 'end' can come late) must not stop the one in use.
    const lost = () => {
      if (this.client === null || this.client === client) this.scheduleReconnect();
    };
    client.on('error', (err) => {
      this.onError(err);
      lost();
    });
    client.on('end', lost);
    await client.connect();
    for (const channel of CHANNELS) await client.query(`LISTEN ${channel}`);
    this.client = client;
    this.setListening(true);
  }

  get listening(): boolean {
    return this.heard;
  }

  onListening(fn: (listening: boolean) => void): () => void {
    this.emitter.on('listening', fn);
    return () => this.emitter.off('listening', fn);
  }

  private setListening(listening: boolean): void {
    if (this.heard === listening) return;
    this.heard = listening;
    this.emitter.emit('listening', listening);
  }

  private scheduleReconnect(): void {
    this.setListening(false);
    if (this.closed || this.reconnectTimer) return;
    this.client = null;
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = null;
      this.connect().catch((err: Error) => {
        this.onError(err);
        this.scheduleReconnect();
      });
    }, 1000);
    this.reconnectTimer.unref();
  }

  async publish(
    channel: ClusterChannel,
    payload: Record<string, unknown>,
    db: Kysely<Database> = this.store.db,
  ): Promise<void> {
    await sql`select pg_notify(${channel}, ${JSON.stringify({ ...payload, origin: this.origin })})`.execute(db);
  }

  subscribe(channel: ClusterChannel, fn: Listener): () => void {
    this.emitter.on(channel, fn);
    return () => this.emitter.off(channel, fn);
  }

  async close(): Promise<void> {
    this.closed = true;
    this.setListening(false);
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
    const client = this.client;
    this.client = null;
    if (client) await client.end().catch(() => undefined);
  }
}

/** The cluster for a store: LISTEN/NOTIFY on PostgreSQL, in-process on SQLite. */
export async function openCluster(store: Store, onError: (err: Error) => void = () => undefined): Promise<Cluster> {
  if (store.dialect !== 'postgres' || !store.url) return new LocalCluster();
  const cluster = new PostgresCluster(store, store.url, onError);
  await cluster.connect();
  return cluster;
}
