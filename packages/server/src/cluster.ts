import { randomUUID } from 'node:crypto';
import { EventEmitter } from 'node:events';
import pg from 'pg';
import { sql } from 'kysely';
import type { Store } from './db/index.js';

/** Channels control planes use to tell each other about changes. */
export type ClusterChannel = 'floe_events' | 'floe_desired';

type Listener = (payload: Record<string, unknown>) => void;

/**
 * Messages between the control planes that share one database. On PostgreSQL
 * they travel with LISTEN/NOTIFY; with SQLite there is only one control plane
 * and nothing leaves the process. A process never hears its own messages.
 */
export interface Cluster {
  /** Identifies this control plane process. */
  readonly origin: string;
  publish(channel: ClusterChannel, payload: Record<string, unknown>): Promise<void>;
  subscribe(channel: ClusterChannel, fn: Listener): () => void;
  close(): Promise<void>;
}

/** The single-process cluster (SQLite). */
class LocalCluster implements Cluster {
  readonly origin = randomUUID();
  async publish(): Promise<void> {}
  subscribe(): () => void {
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

  constructor(private readonly store: Store, private readonly url: string, private readonly onError: (err: Error) => void) {
    this.emitter.setMaxListeners(0);
  }

  /** Open the LISTEN connection; reconnects by itself when it drops. */
  async connect(): Promise<void> {
    const client = new pg.Client({ connectionString: this.url });
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
    client.on('error', (err) => {
      this.onError(err);
      this.scheduleReconnect();
    });
    client.on('end', () => this.scheduleReconnect());
    await client.connect();
    await client.query('LISTEN floe_events');
    await client.query('LISTEN floe_desired');
    this.client = client;
  }

  private scheduleReconnect(): void {
    if (this.closed || this.reconnectTimer) return;
    this.client = null;
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = null;
      this.connect().catch((err: Error) => { this.onError(err); this.scheduleReconnect(); });
    }, 1000);
    this.reconnectTimer.unref();
  }

  async publish(channel: ClusterChannel, payload: Record<string, unknown>): Promise<void> {
    await sql`select pg_notify(${channel}, ${JSON.stringify({ ...payload, origin: this.origin })})`.execute(this.store.db);
  }

  subscribe(channel: ClusterChannel, fn: Listener): () => void {
    this.emitter.on(channel, fn);
    return () => this.emitter.off(channel, fn);
  }

  async close(): Promise<void> {
    this.closed = true;
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
