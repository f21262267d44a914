import type { Readable } from 'node:stream';
import type { Event, EventsQuery } from '@floe/api';
import { defined, delay } from './calls.js';
import { FloeApiError, isFloeApiError, networkError } from './errors.js';
import type { Query } from './query.js';
import { SseParser } from './sse.js';
import type { Transport } from './transport.js';

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
    await delay(ms, signal);
    return true;
  } catch {
    return false;
  }
}
