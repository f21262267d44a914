import http from 'node:http';
import net from 'node:net';
import { pino, type Logger } from 'pino';
import { metadataAnswer, type MetadataContext } from './documents.js';
import { firstBootReport, type FirstBootEvent } from './reports.js';

/** Largest request body accepted (phone_home forms and webhook events are a few hundred bytes). */
export const MAX_BODY_BYTES = 64 * 1024;

/** Options of the metadata HTTP server. */
export interface MetadataServerOptions {
  /** The VM behind a NIC, at the time of the request; null when the NIC is not (or no longer) one of this host's. */
  lookup(nicId: string): MetadataContext | null;
  /** First-boot events: a VM fetched its configuration, or reported its first boot finished. */
  onFirstBoot?: (instanceId: string, event: FirstBootEvent) => void;
  logger?: Logger;
  /** The address the per-NIC listeners bind; default `::` (both families). Only redirected connections reach them (see metadataRuleset). */
  host?: string;
  /** Most concurrent connections per NIC; default 16. */
  maxConnectionsPerNic?: number;
}

/**
 * The metadata HTTP service of a host: one small TCP listener per local NIC,
 * on that NIC's port, each handing its connections to one shared HTTP server
 * with the socket tagged with the NIC. The firewall only lets a connection
 * reach a NIC's port when it came in on that NIC's tap, so the tag is the
 * identity of the caller; nothing the guest sends (addresses, paths,
 * headers) changes whose data it gets.
 */
export class MetadataServer {
  private readonly log: Logger;
  private readonly http: http.Server;
  private readonly nicOf = new WeakMap<net.Socket, string>();
  private readonly listeners = new Map<string, { port: number; server: net.Server; sockets: Set<net.Socket> }>();
  private readonly fetched = new Set<string>();

  constructor(private readonly opts: MetadataServerOptions) {
    this.log = opts.logger ?? pino({ level: 'silent' });
    this.http = http.createServer(
      { maxHeaderSize: 8192, requestTimeout: 10_000, headersTimeout: 5_000, keepAliveTimeout: 5_000 },
      (req, res) => {
        void this.handle(req, res).catch((err: unknown) => {
          this.log.warn({ err: (err as Error).message }, 'metadata request failed');
          if (!res.headersSent) res.writeHead(500, { 'content-type': 'text/plain' });
          res.end('internal error\n');
        });
      },
    );
    this.http.on('clientError', (_err, socket) => socket.destroy());
  }

  /** The NICs listened for, with their ports. */
  ports(): Map<string, number> {
    return new Map([...this.listeners].map(([nic, l]) => [nic, l.port]));
  }

  /** Listen for `nicId` on `port` (a NIC already listened for on another port moves). */
  async open(nicId: string, port: number): Promise<void> {
    const have = this.listeners.get(nicId);
    if (have?.port === port) return;
    if (have !== undefined) await this.close(nicId);
    const sockets = new Set<net.Socket>();
    const server = net.createServer({ pauseOnConnect: true }, (socket) => {
      this.nicOf.set(socket, nicId);
      sockets.add(socket);
      socket.once('close', () => sockets.delete(socket));
      this.http.emit('connection', socket);
      socket.resume();
    });
    server.maxConnections = this.opts.maxConnectionsPerNic ?? 16;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen({ port, host: this.opts.host ?? '::', ipv6Only: false }, () => {
        server.off('error', reject);
        resolve();
      });
    });
    server.on('error', (err) => this.log.warn({ nic: nicId, port, err: err.message }, 'metadata listener error'));
    this.listeners.set(nicId, { port, server, sockets });
  }

  /** Stop listening for `nicId`; its open connections end. */
  async close(nicId: string): Promise<void> {
    const l = this.listeners.get(nicId);
    if (l === undefined) return;
    this.listeners.delete(nicId);
    const closed = new Promise<void>((resolve) => l.server.close(() => resolve()));
    // Kept-alive connections would hold the listener open; the NIC is gone, so are they.
    for (const s of l.sockets) s.destroy();
    await closed;
  }

  /** Close every listener and connection. */
  async stop(): Promise<void> {
    await Promise.all([...this.listeners.keys()].map((nic) => this.close(nic)));
    this.http.closeAllConnections();
    await new Promise<void>((resolve) => this.http.close(() => resolve()));
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const nicId = this.nicOf.get(req.socket);
    const ctx = nicId === undefined ? null : this.opts.lookup(nicId);
    const method = req.method ?? 'GET';
    const target = req.url ?? '/';
    if (ctx === null) {
      this.log.debug(
        { nic: nicId, method, path: target.slice(0, 200) },
        'metadata request from a NIC not on this host',
      );
      req.resume();
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
      return;
    }
    const answer = metadataAnswer(method, target, ctx);
    const instanceId = ctx.vm.id;
    this.log.debug(
      {
        nic: nicId,
        instance: instanceId,
        method,
        path: target.slice(0, 200),
        answer: answer.kind === 'error' ? answer.status : answer.kind,
      },
      'metadata request',
    );
    if (answer.kind === 'error') {
      req.resume();
      res
        .writeHead(answer.status, {
          'content-type': 'text/plain',
          ...(answer.allow === undefined ? {} : { allow: answer.allow }),
        })
        .end(answer.body);
      return;
    }
    if (answer.kind === 'document') {
      req.resume();
      const body = Buffer.from(answer.body, 'utf8');
      res.writeHead(200, { 'content-type': answer.contentType, 'content-length': body.length });
      res.end(method === 'HEAD' ? undefined : body);
      if (answer.fetched === true && !this.fetched.has(instanceId)) {
        this.fetched.add(instanceId);
        this.emit(instanceId, { type: 'fetched', source: 'metadata', at: new Date().toISOString() });
      }
      return;
    }
    const body = await readBody(req, MAX_BODY_BYTES);
    if (body === null) {
      res.writeHead(413, { 'content-type': 'text/plain', connection: 'close' }).end('too large\n');
      return;
    }
    const event = firstBootReport(answer.report, req.headers['content-type'] ?? '', body, new Date());
    this.log.debug({ nic: nicId, instance: instanceId, report: answer.report, event }, 'first-boot report');
    if (event !== null) this.emit(instanceId, event);
    res.writeHead(200, { 'content-type': 'text/plain' }).end('ok\n');
  }

  private emit(instanceId: string, event: FirstBootEvent): void {
    try {
      this.opts.onFirstBoot?.(instanceId, event);
    } catch (err) {
      this.log.warn({ instance: instanceId, err: (err as Error).message }, 'first-boot listener failed');
    }
  }
}

/** The body of a request, or null once it exceeds `max` bytes (the rest is not read). */
function readBody(req: http.IncomingMessage, max: number): Promise<string | null> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > max) {
        req.removeAllListeners('data');
        req.pause();
        resolve(null);
        return;
      }
      chunks.push(c);
    });
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}
