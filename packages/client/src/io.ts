import type { Readable } from 'node:stream';
import WebSocket from 'ws';
import { errorFromResponse, FloeApiError, networkError } from './errors.js';
import { joinUrl, type Query } from './query.js';
import type { Transport } from './transport.js';

/**
 * What a WebSocket to the API needs: the base URL, the token (sent as a
 * bearer header) and floe's CA.
 *
 * @example
 * const settings: WebSocketSettings = { url: 'https://floe.example:8443', token, ca };
 */
export interface WebSocketSettings {
  url: string;
  token?: string | undefined;
  ca?: string | undefined;
  userAgent?: string | undefined;
}

/**
 * A transport that can also open WebSockets (the {@link FloeClient} is one).
 *
 * @example
 * const ws = client.openWebSocket('/v1/instances/web/console', { project: 'shop' });
 */
export interface WebSocketOpener {
  /** Opens a WebSocket to `path` with the client's token and CA; not yet connected. */
  openWebSocket(path: string, query?: Query): WebSocket;
}

/**
 * The ws(s) URL of an API path.
 *
 * @example
 * webSocketUrl('https://floe.example:8443', '/v1/instances/web/console') // 'wss://floe.example:8443/v1/instances/web/console'
 */
export function webSocketUrl(base: string, path: string, query?: Query): string {
  return joinUrl(base, path, query).replace(/^http/, 'ws');
}

/**
 * Opens a WebSocket to the API with a bearer token and floe's CA.
 *
 * @example
 * const ws = openWebSocket({ url, token, ca }, '/v1/events');
 */
export function openWebSocket(settings: WebSocketSettings, path: string, query?: Query): WebSocket {
  const headers: Record<string, string> = { 'user-agent': settings.userAgent ?? 'floe-client' };
  if (settings.token !== undefined && settings.token !== '') headers.authorization = `Bearer ${settings.token}`;
  return new WebSocket(webSocketUrl(settings.url, path, query), {
    headers,
    ...(settings.ca === undefined ? {} : { ca: settings.ca }),
    perMessageDeflate: false,
    handshakeTimeout: 30_000,
  });
}

/**
 * How a console session ended.
 *
 * @example
 * session.onClose((end) => { if (end.error) console.error(end.error.code, end.error.message); });
 */
export interface ConsoleEnd {
  /** The WebSocket close code: 1000 when the console closed normally, 4000 + the HTTP status of the error otherwise. */
  code: number;
  /** Why it ended, when it failed (e.g. `stream_overflow`, `host_offline`); null on a normal close. */
  error: FloeApiError | null;
}

/**
 * An attached serial console.
 *
 * @example
 * const con = await client.instances.console('web');
 * con.onData((bytes) => process.stdout.write(bytes));
 * con.write('root\n');
 * const end = await con.done;
 */
export interface ConsoleSession {
  /** Send keystrokes (bytes, or text as UTF-8). */
  write(data: Buffer | Uint8Array | string): void;
  /** Output of the guest; bytes that came before the first listener are handed to it. Returns an unsubscribe function. */
  onData(listener: (data: Buffer) => void): () => void;
  /** Called once when the console ends; at once if it already has. Returns an unsubscribe function. */
  onClose(listener: (end: ConsoleEnd) => void): () => void;
  /** Detach (the VM keeps running). */
  close(): void;
  /** Resolves when the console ended. */
  readonly done: Promise<ConsoleEnd>;
}

/**
 * Options of `client.instances.console`.
 *
 * @example
 * await client.instances.console('web', { project: 'shop' });
 */
export interface ConsoleOptions {
  /** Project in which the name resolves. */
  project?: string;
  /** Gives up connecting (an established session is ended with `close()`). */
  signal?: AbortSignal;
}

/** Reads an error answer to a refused upgrade. */
function readRefusal(res: import('node:http').IncomingMessage): Promise<FloeApiError> {
  return new Promise((resolve) => {
    let text = '';
    res.setEncoding('utf8');
    res.on('data', (d: string) => {
      if (text.length < 64 * 1024) text += d;
    });
    const done = (): void => {
      const headers: Record<string, string> = {};
      for (const [k, v] of Object.entries(res.headers))
        if (v !== undefined) headers[k] = Array.isArray(v) ? v.join(', ') : v;
      resolve(errorFromResponse(res.statusCode ?? 0, headers, text));
    };
    res.on('end', done);
    res.on('error', done);
  });
}

/**
 * Attaches to a console WebSocket (see `GET /v1/instances/{id}/console`):
 * resolves once connected, rejects with the server's error (for example
 * `invalid_state` when the VM is not running) when it refuses.
 *
 * @example
 * const con = await connectConsole(client.openWebSocket('/v1/instances/web/console'));
 */
export function connectConsole(ws: WebSocket, signal?: AbortSignal): Promise<ConsoleSession> {
  const url = ws.url;
  return new Promise<ConsoleSession>((resolve, reject) => {
    let opened = false;
    let failure: FloeApiError | null = null;
    let end: ConsoleEnd | null = null;
    const unread: Buffer[] = [];
    const dataListeners = new Set<(d: Buffer) => void>();
    const closeListeners = new Set<(e: ConsoleEnd) => void>();
    let resolveDone!: (e: ConsoleEnd) => void;
    const done = new Promise<ConsoleEnd>((r) => (resolveDone = r));
    const onAbort = (): void => {
      if (!opened) ws.terminate();
    };
    signal?.addEventListener('abort', onAbort, { once: true });

    ws.on('unexpected-response', (req, res) => {
      void readRefusal(res).then((err) => {
        failure = err;
        req.destroy();
        reject(err);
      });
    });
    ws.on('error', (err) => {
      if (opened || failure !== null) return;
      failure = networkError(err, 'GET', url);
      reject(signal?.aborted === true ? (signal.reason instanceof Error ? signal.reason : err) : failure);
    });
    ws.on('message', (data, isBinary) => {
      const bytes = Buffer.isBuffer(data) ? data : Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data);
      if (!isBinary) {
        // Text frames carry the error envelope just before the server closes.
        try {
          const body = JSON.parse(bytes.toString('utf8')) as {
            error?: { code?: unknown; message?: unknown; details?: unknown };
          };
          if (body.error !== undefined && typeof body.error.code === 'string') {
            failure = new FloeApiError({
              status: 0,
              code: body.error.code,
              message: typeof body.error.message === 'string' ? body.error.message : body.error.code,
              ...(typeof body.error.details === 'object' && body.error.details !== null
                ? { details: body.error.details as Record<string, unknown> }
                : {}),
            });
          }
        } catch {
          // not an envelope: ignore
        }
        return;
      }
      if (dataListeners.size === 0) unread.push(bytes);
      else for (const l of [...dataListeners]) l(bytes);
    });
    ws.on('close', (code) => {
      signal?.removeEventListener('abort', onAbort);
      if (!opened) return;
      const error =
        failure ??
        (code === 1000 || code === 1005
          ? null
          : new FloeApiError({ status: 0, code: 'network_error', message: `console connection closed (${code})` }));
      end = {
        code,
        error:
          error !== null && error.status === 0 && code >= 4000 && code < 5000 ? withStatus(error, code - 4000) : error,
      };
      for (const l of [...closeListeners]) l(end);
      closeListeners.clear();
      resolveDone(end);
    });
    ws.on('open', () => {
      opened = true;
      signal?.removeEventListener('abort', onAbort);
      resolve({
        write(data) {
          if (ws.readyState !== WebSocket.OPEN) return;
          ws.send(typeof data === 'string' ? Buffer.from(data, 'utf8') : data, { binary: true });
        },
        onData(listener) {
          dataListeners.add(listener);
          for (const chunk of unread.splice(0)) listener(chunk);
          return () => dataListeners.delete(listener);
        },
        onClose(listener) {
          if (end !== null) {
            listener(end);
            return () => undefined;
          }
          closeListeners.add(listener);
          return () => closeListeners.delete(listener);
        },
        close() {
          if (ws.readyState === WebSocket.OPEN || ws.readyState === WebSocket.CONNECTING) ws.close(1000, 'detached');
        },
        done,
      });
    });
  });
}

/** The same error, with the HTTP status the close code carries. */
function withStatus(err: FloeApiError, status: number): FloeApiError {
  return new FloeApiError({ status, code: err.code, message: err.message, details: err.details });
}

/**
 * Options of `client.instances.logs`.
 *
 * @example
 * for await (const chunk of client.instances.logs('web', { follow: true, tailBytes: 4096, signal })) process.stdout.write(chunk);
 */
export interface LogsOptions {
  /** Keep streaming new output until `signal` aborts. */
  follow?: boolean;
  /** Only the last N bytes of the history. */
  tailBytes?: number;
  /** Project in which the name resolves. */
  project?: string;
  /** Ends the stream (the iterator then finishes without an error). */
  signal?: AbortSignal;
}

/**
 * Streams `GET /v1/instances/{id}/logs` as raw bytes.
 *
 * @example
 * for await (const chunk of streamLogs(client, '/v1/instances/web/logs', { tailBytes: 1024 })) process.stdout.write(chunk);
 */
export async function* streamLogs(t: Transport, path: string, options: LogsOptions = {}): AsyncGenerator<Buffer> {
  const { signal } = options;
  const query: Query = {
    project: options.project,
    tail_bytes: options.tailBytes,
    follow: options.follow === true ? true : undefined,
  };
  let body: Readable;
  try {
    const opened = await t.openStream(path, {
      query,
      headers: { accept: 'text/plain' },
      idleTimeoutMs: 0,
      ...(signal === undefined ? {} : { signal }),
    });
    body = opened.body;
  } catch (err) {
    if (signal?.aborted === true) return;
    throw err;
  }
  try {
    for await (const chunk of body) yield Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk as Uint8Array);
  } catch (err) {
    if (signal?.aborted === true) return;
    throw err instanceof FloeApiError ? err : networkError(err, 'GET', path);
  } finally {
    body.destroy();
  }
}
