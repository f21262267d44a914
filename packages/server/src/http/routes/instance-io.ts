import {
  ConsoleQuery,
  ERROR_CODES,
  FloeError,
  IdOrNameParams,
  InstanceStats,
  InstanceStatsHistory,
  isErrorCode,
  LogsQuery,
  ProjectQuery,
  StatsHistoryQuery,
  type Instance,
} from '@floe/api';
import { Type } from 'typebox';
import type { FastifyRequest } from 'fastify';
import type { RawData, WebSocket } from 'ws';
import type { ChannelEnd, ServerChannel } from '../../channels.js';
import type { Services } from '../../wiring.js';
import { projectOf } from '../request.js';
import { errors, type Api } from '../routing.js';
import { statsPoints } from '../../services/stats-rates.js';

/** How long the host may take to open a console or log, or to answer a stats request. */
const HOST_ANSWER_MS = 5000;
/** Bytes queued towards one slow reader before its stream is given up. */
const MAX_QUEUED_BYTES = 8 * 1024 * 1024;
/** Keepalive pings on an idle console, so proxies do not cut it. */
const PING_MS = 30_000;

const CONSOLE_PATH = /^\/v1\/instances\/[^/?#]+\/(?:console|vnc)(?:[?#]|$)/;

/** True for URLs that may carry their token as `?access_token=` (browsers cannot set headers on a WebSocket). */
export function acceptsQueryToken(url: string): boolean {
  return CONSOLE_PATH.test(url);
}

/**
 * The WebSocket close code for a failed console: 4000 + the HTTP status of
 * the error code (4409 invalid_state, 4503 host_offline, ...).
 */
function consoleCloseCode(code: string): number {
  return 4000 + (isErrorCode(code) ? ERROR_CODES[code].status : 502);
}

/** Consoles opened in preHandler, waiting for their WebSocket. */
const consoles = new WeakMap<FastifyRequest, ServerChannel>();

/** The bytes of one WebSocket message. */
function bytesOf(data: RawData): Buffer {
  if (Buffer.isBuffer(data)) return data;
  if (Array.isArray(data)) return Buffer.concat(data);
  return Buffer.from(data);
}

/** End a console WebSocket: a normal close, or the error envelope as a text frame and a 4xxx close. */
function closeConsole(socket: WebSocket, end: ChannelEnd): void {
  if (socket.readyState !== socket.OPEN) return;
  if (end === undefined) {
    socket.close(1000, 'console closed');
    return;
  }
  socket.send(JSON.stringify({ error: end }));
  socket.close(consoleCloseCode(end.code), end.code.slice(0, 120));
}

/** Serial console (WebSocket), console log (streamed text) and stats of an instance: all through its host's agent link. */
export function instanceIoRoutes(app: Api, s: Services): void {
  /** The instance and the host it is placed on. */
  async function locate(
    req: FastifyRequest,
    params: IdOrNameParams,
    query: ProjectQuery,
  ): Promise<{ instance: Instance; hostId: string }> {
    const instance = await s.instances.get(req.principal, params.id, projectOf(query));
    const hostId = instance.status.host;
    if (hostId === null) throw new FloeError('invalid_state', `instance ${instance.name} is not placed on a host`);
    return { instance, hostId };
  }

  /** A console WebSocket (`serial` or `vnc`): bytes both ways between the client and a channel on the agent. */
  function consoleRoute(path: 'console' | 'vnc', open: 'console.open' | 'vnc.open', summary: string): void {
    const noun = path === 'vnc' ? 'graphical console' : 'console';
    const notUpgraded = () =>
      new FloeError('validation_failed', `the ${noun} is a WebSocket; upgrade the connection`, { field: 'upgrade' });
    app.route({
      method: 'GET',
      url: `/v1/instances/:id/${path}`,
      schema: {
        tags: ['instances'],
        summary,
        params: IdOrNameParams,
        querystring: ConsoleQuery,
        response: { ...errors },
      },
      preHandler: async (req) => {
        // The instance first: one the caller cannot see is not found, however it was asked for.
        const { instance, hostId } = await locate(req, req.params, req.query);
        if (!req.ws) throw notUpgraded();
        const channel = await s.hub.openChannel(hostId, { type: open, instance_id: instance.id }, HOST_ANSWER_MS);
        // Covers a client that leaves before or during the upgrade.
        if (req.raw.socket.destroyed) {
          channel.close();
          return;
        }
        consoles.set(req, channel);
        req.raw.socket.once('close', () => channel.close());
      },
      handler: () => {
        throw notUpgraded();
      },
      wsHandler: (socket, req) => {
        const channel = consoles.get(req);
        consoles.delete(req);
        if (channel === undefined) {
          socket.close(1011, `${noun} not open`);
          return;
        }
        const ping = setInterval(() => socket.ping(), PING_MS);
        ping.unref();
        channel.onData((chunk) => {
          if (socket.bufferedAmount > MAX_QUEUED_BYTES) {
            channel.close({
              code: 'stream_overflow',
              message: `the ${noun} output came faster than this client read it; reconnect to continue`,
            });
            return;
          }
          socket.send(chunk, { binary: true });
        });
        channel.onClose((end) => closeConsole(socket, end));
        socket.on('message', (data) => {
          if (channel.backedUp)
            channel.close({
              code: 'stream_overflow',
              message: 'input came faster than the host took it; reconnect to continue',
            });
          else channel.write(bytesOf(data));
        });
        socket.on('close', () => {
          clearInterval(ping);
          channel.close();
        });
      },
    });
  }

  consoleRoute(
    'console',
    'console.open',
    'Serial console (WebSocket): binary frames carry the bytes both ways. Errors before the upgrade are JSON answers; a console that fails later sends the error envelope as a text frame and closes with 4000 + its HTTP status. Browsers may pass ?access_token=.',
  );
  consoleRoute(
    'vnc',
    'vnc.open',
    'Graphical console (WebSocket): binary frames carry raw RFB (VNC) bytes both ways, as noVNC speaks it; no VNC password (only callers allowed the console reach it). 409 vnc_unavailable for a VM started before it had a graphical console (restart it); other errors as for the serial console. Browsers may pass ?access_token=.',
  );

  app.get(
    '/v1/instances/:id/logs',
    {
      schema: {
        tags: ['instances'],
        summary:
          'Console log of an instance as text: the history the host keeps (or its last tail_bytes); with follow=true the response stays open and streams new output',
        params: IdOrNameParams,
        querystring: LogsQuery,
        response: {
          200: {
            description: 'console output, as the guest wrote it',
            content: { 'text/plain': { schema: Type.String() } },
          },
          ...errors,
        },
      },
    },
    async (req, reply) => {
      const q = req.query;
      const { instance, hostId } = await locate(req, req.params, req.query);
      const follow = q.follow === true;
      const channel = await s.hub.openChannel(
        hostId,
        {
          type: 'logs.open',
          instance_id: instance.id,
          follow,
          ...(q.tail_bytes === undefined ? {} : { tail_bytes: q.tail_bytes }),
        },
        HOST_ANSWER_MS,
      );
      const res = reply.raw;
      reply.hijack();
      if (res.destroyed || req.raw.socket.destroyed) {
        channel.close(); // the client left while the host was opening the log
        return;
      }
      res.on('close', () => channel.close());
      res.writeHead(200, {
        'content-type': 'text/plain; charset=utf-8',
        'cache-control': 'no-cache',
        'x-accel-buffering': 'no',
      });
      res.flushHeaders();
      channel.onData((chunk) => {
        if (res.writableLength > MAX_QUEUED_BYTES) {
          channel.close({ code: 'stream_overflow', message: 'the client read the log too slowly' });
          return;
        }
        res.write(chunk);
      });
      channel.onClose((end) => {
        if (end !== undefined) req.log.info({ instance: instance.id, code: end.code }, 'log stream ended early');
        res.end();
      });
    },
  );

  app.get(
    '/v1/instances/:id/stats',
    {
      schema: {
        tags: ['instances'],
        summary:
          'Counters of a running instance: CPU time, memory, disk and network bytes (read from its host; 409 invalid_state when it is not running)',
        params: IdOrNameParams,
        querystring: ProjectQuery,
        response: { 200: InstanceStats, ...errors },
      },
    },
    async (req): Promise<InstanceStats> => {
      const { instance, hostId } = await locate(req, req.params, req.query);
      return s.hub.request(hostId, { type: 'stats.get', instance_id: instance.id }, HOST_ANSWER_MS);
    },
  );

  app.get(
    '/v1/instances/:id/stats/history',
    {
      schema: {
        tags: ['instances'],
        summary:
          "Stats of an instance over time, oldest first: CPU %, memory, disk and network rates per sample, from the bounded history its host keeps (one sample every 10 s for the last hour; kept by the host's agent, so it survives control-plane restarts but not agent restarts). `since` leaves out older samples, for polling",
        params: IdOrNameParams,
        querystring: StatsHistoryQuery,
        response: { 200: InstanceStatsHistory, ...errors },
      },
    },
    async (req): Promise<InstanceStatsHistory> => {
      const { instance, hostId } = await locate(req, req.params, req.query);
      const since = req.query.since;
      if (since !== undefined && Number.isNaN(Date.parse(since)))
        throw new FloeError('validation_failed', 'since must be an RFC 3339 time', { field: 'since' });
      const history = await s.hub.statsHistory(hostId, instance.id, since, HOST_ANSWER_MS);
      return {
        instance_id: instance.id,
        interval_seconds: (history.interval_ms ?? 0) / 1000,
        retention_seconds: (history.retention_ms ?? 0) / 1000,
        vcpus: instance.spec.vcpus,
        samples: statsPoints(history.samples, instance.spec.vcpus, since),
      };
    },
  );
}
