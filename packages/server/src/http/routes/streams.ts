import type { TLSSocket } from 'node:tls';
import { Event, EventsQuery, FloeError, Page, type Event as EventT, type EventsQuery as EventsQueryT } from '@floe/api';
import type { FastifyRequest } from 'fastify';
import { filterFromQuery, matches } from '../../services/events.js';
import type { Services } from '../../wiring.js';
import { requireAgentCertificate } from '../agent-auth.js';
import { errors, type Api } from '../routing.js';

/** How often an idle event stream gets a keepalive. */
const KEEPALIVE_MS = 15_000;

/** Where a stream resumes: `?since=`, else `Last-Event-ID`, else now. */
function resumeFrom(req: FastifyRequest, q: EventsQueryT): number | null {
  if (q.since !== undefined) return q.since;
  const last = req.headers['last-event-id'];
  if (last !== undefined && /^\d+$/.test(String(last))) return Number(last);
  return null;
}

/** `/v1/events` (SSE, WebSocket or a JSON page) and `/v1/agent` (the agent link). */
export function streamRoutes(app: Api, s: Services): void {
  app.route({
    method: 'GET',
    url: '/v1/events',
    schema: {
      tags: ['events'],
      summary:
        'Event stream: Server-Sent Events with Accept: text/event-stream, a WebSocket on upgrade, else a JSON page of events after ?since=',
      querystring: EventsQuery,
      response: { 200: Page(Event), ...errors },
    },
    handler: async (req, reply) => {
      const q = req.query;
      const filter = filterFromQuery(req.principal, q);
      const since = resumeFrom(req, q);
      if (!String(req.headers.accept ?? '').includes('text/event-stream')) {
        const items = await s.bus.replay(since ?? 0, filter, 100);
        return { items, next_cursor: items.length === 100 ? String(items[items.length - 1]!.seq) : null };
      }
      // Subscribe before anything is sent and buffer, so no event falls between the opening
      // comment, the replay and live delivery.
      const res = reply.raw;
      const write = (e: EventT) => res.write(`id: ${e.seq}\nevent: ${e.type}\ndata: ${JSON.stringify(e)}\n\n`);
      let buffered: EventT[] | null = [];
      let lastSent = 0;
      const unsubscribe = s.bus.subscribe((e) => {
        if (!matches(e, filter)) return;
        if (buffered) buffered.push(e);
        else if (e.seq > lastSent) {
          lastSent = e.seq;
          write(e);
        }
      });
      // Set once the stream opens; the close handler may run before that.
      // eslint-disable-next-line prefer-const
      let keepalive: NodeJS.Timeout | undefined;
      let closed = false;
      req.raw.on('close', () => {
        closed = true;
        clearInterval(keepalive);
        unsubscribe();
      });
      try {
        lastSent = since ?? (await s.bus.lastSeq());
      } catch (err) {
        unsubscribe();
        throw err;
      }
      reply.hijack();
      if (closed) return;
      res.writeHead(200, {
        'content-type': 'text/event-stream; charset=utf-8',
        'cache-control': 'no-cache',
        connection: 'keep-alive',
        'x-accel-buffering': 'no',
      });
      res.write(': floe events\n\n');
      keepalive = setInterval(() => res.write(': keepalive\n\n'), KEEPALIVE_MS);
      if (since !== null) {
        for (
          let batch = await s.bus.replay(lastSent, filter);
          batch.length > 0;
          batch = await s.bus.replay(lastSent, filter)
        ) {
          for (const e of batch) {
            write(e);
            lastSent = e.seq;
          }
          if (batch.length < 1000) break;
        }
      }
      for (const e of buffered)
        if (e.seq > lastSent) {
          write(e);
          lastSent = e.seq;
        }
      buffered = null;
    },
    wsHandler: async (socket, req) => {
      const q = req.query;
      const filter = filterFromQuery(req.principal, q);
      const since = resumeFrom(req, q);
      // As for SSE: subscribe first and buffer, then replay in batches, then go live.
      let buffered: EventT[] | null = [];
      let lastSent = 0;
      const send = (e: EventT) => {
        if (e.seq > lastSent) {
          lastSent = e.seq;
          socket.send(JSON.stringify(e));
        }
      };
      const unsubscribe = s.bus.subscribe((e) => {
        if (!matches(e, filter)) return;
        if (buffered) buffered.push(e);
        else send(e);
      });
      socket.on('close', unsubscribe);
      lastSent = since ?? (await s.bus.lastSeq());
      if (since !== null) {
        for (
          let batch = await s.bus.replay(lastSent, filter);
          batch.length > 0;
          batch = await s.bus.replay(lastSent, filter)
        ) {
          for (const e of batch) send(e);
          if (batch.length < 1000) break;
        }
      }
      for (const e of buffered) send(e);
      buffered = null;
    },
  });

  app.route({
    method: 'GET',
    url: '/v1/agent',
    config: { public: true },
    schema: { hide: true },
    preValidation: requireAgentCertificate,
    handler: () => {
      throw new FloeError('validation_failed', 'the agent link is a WebSocket; upgrade the connection', {
        field: 'upgrade',
      });
    },
    wsHandler: (socket, req) => {
      const cert = (req.raw.socket as TLSSocket).getPeerCertificate();
      s.hub.accept(socket, String(cert.subject.CN), String(cert.serialNumber ?? ''));
    },
  });
}
