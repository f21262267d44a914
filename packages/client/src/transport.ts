import { randomUUID } from 'node:crypto';
import type { Readable } from 'node:stream';
import { Agent, request, type Dispatcher } from 'undici';
import { errorFromResponse, FloeApiError, networkError } from './errors.js';
import { joinUrl, type Query } from './query.js';

/**
 * HTTP methods the floe API uses.
 *
 * @example
 * const method: HttpMethod = 'PATCH';
 */
export type HttpMethod = 'GET' | 'POST' | 'PATCH' | 'PUT' | 'DELETE' | 'HEAD';

/**
 * Options of one low-level request.
 *
 * @example
 * await client.request('PATCH', '/v1/instances/web', { query: { project: 'shop' }, body: { labels: { env: 'prod' } }, ifMatch: 4 });
 */
export interface RequestOptions {
  /** Query parameters; arrays become repeated keys. */
  query?: Query;
  /** JSON body. PATCH bodies are sent as `application/merge-patch+json`. */
  body?: unknown;
  /** A body sent as is instead of JSON (an image upload); set its `content-type` in `headers`. A stream is never re-sent. */
  rawBody?: Readable | Buffer;
  /** Extra headers (lower- or mixed-case names). */
  headers?: Record<string, string>;
  /** `Idempotency-Key` of a POST; a random one is sent when not given. */
  idempotencyKey?: string;
  /** Expected revision: sent as `If-Match: "<revision>"`. */
  ifMatch?: string | number;
  /** Time limit of this request in milliseconds (defaults to the client's). */
  timeoutMs?: number;
  /** Cancels the request. */
  signal?: AbortSignal;
}

/**
 * A full answer: status, headers, parsed body and the ETag revision when the server sent one.
 *
 * @example
 * const res = await client.send<Instance>('GET', '/v1/instances/web');
 * console.log(res.status, res.etag);
 */
export interface ApiResponse<T> {
  status: number;
  headers: Record<string, string>;
  body: T;
  /** The revision from `ETag: "<revision>"`, without quotes. */
  etag: string | undefined;
}

/**
 * An open streaming answer (used for Server-Sent Events).
 *
 * @example
 * const s = await client.openStream('/v1/events', { headers: { accept: 'text/event-stream' } });
 * for await (const chunk of s.body) process.stdout.write(chunk);
 */
export interface OpenStream {
  status: number;
  headers: Record<string, string>;
  body: Readable;
}

/**
 * What the resource groups need from a client: JSON requests and raw streams.
 *
 * @example
 * const t: Transport = new FloeClient({ url: 'http://127.0.0.1:8443' });
 */
export interface Transport {
  /** Default per-request time limit, in milliseconds. */
  readonly timeoutMs: number;
  /** Sends a request and returns the parsed JSON body (undefined for an empty body). */
  request<T>(method: HttpMethod, path: string, options?: RequestOptions): Promise<T>;
  /** Opens a streaming GET; throws {@link FloeApiError} for non-2xx answers. */
  openStream(path: string, options?: RequestOptions & { idleTimeoutMs?: number }): Promise<OpenStream>;
}

/**
 * Options of {@link HttpTransport}; the same as the client's.
 *
 * @example
 * const t = new HttpTransport({ url: 'http://127.0.0.1:8080', token: 'floe_xxx', timeoutMs: 10_000 });
 */
export interface TransportOptions {
  url: string;
  token?: string;
  ca?: string;
  timeoutMs?: number;
  userAgent?: string;
  /** A custom undici dispatcher (mainly for tests); `ca` is ignored when set. */
  dispatcher?: Dispatcher;
}

// Socket-level failures after which a request may be re-sent (the classic case:
// the server closed an idle keep-alive connection just as the request went out).
const RESET_CODES = new Set(['ECONNRESET', 'EPIPE', 'UND_ERR_SOCKET']);

/** True when `err` is a connection reset that makes a retry reasonable. */
function isConnectionReset(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' && RESET_CODES.has(code);
}

/** True for errors caused by the caller's AbortSignal. */
function isAbort(err: unknown, signal: AbortSignal | undefined): boolean {
  return signal?.aborted === true || (err as { name?: unknown } | null)?.name === 'AbortError';
}

/** Flattens undici's header object to single strings. */
function flatHeaders(h: Record<string, string | string[] | undefined>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(h)) if (v !== undefined) out[k] = Array.isArray(v) ? v.join(', ') : v;
  return out;
}

/** Quotes a revision for `If-Match` unless it already is an entity tag. */
function entityTag(rev: string | number): string {
  const s = String(rev);
  return s.startsWith('"') || s.startsWith('W/') ? s : `"${s}"`;
}

/**
 * The HTTP layer of {@link FloeClient}: JSON in and out, bearer auth, floe's CA,
 * idempotency keys, one retry after a connection reset, error envelopes.
 *
 * @example
 * const t = new HttpTransport({ url: 'https://floe.example:8443', token, ca: pem });
 * const page = await t.request('GET', '/v1/instances', { query: { label: ['env=prod'] } });
 */
export class HttpTransport implements Transport {
  readonly timeoutMs: number;
  readonly #url: string;
  readonly #token: string | undefined;
  readonly #userAgent: string;
  readonly #dispatcher: Dispatcher;
  readonly #ownsDispatcher: boolean;

  constructor(options: TransportOptions) {
    joinUrl(options.url, '/'); // validates the URL early
    this.#url = options.url;
    this.#token = options.token;
    this.timeoutMs = options.timeoutMs ?? 30_000;
    this.#userAgent = options.userAgent ?? 'floe-client';
    this.#ownsDispatcher = options.dispatcher === undefined;
    this.#dispatcher = options.dispatcher ?? new Agent(options.ca === undefined ? {} : { connect: { ca: options.ca } });
  }

  /** The base URL requests go to. */
  get url(): string {
    return this.#url;
  }

  #headers(method: HttpMethod, options: RequestOptions, accept: string): Record<string, string> {
    const headers: Record<string, string> = { accept, 'user-agent': this.#userAgent };
    if (this.#token !== undefined && this.#token !== '') headers.authorization = `Bearer ${this.#token}`;
    if (options.body !== undefined) {
      headers['content-type'] = method === 'PATCH' ? 'application/merge-patch+json' : 'application/json';
    }
    if (method === 'POST') headers['idempotency-key'] = options.idempotencyKey ?? randomUUID();
    if (options.ifMatch !== undefined) headers['if-match'] = entityTag(options.ifMatch);
    for (const [k, v] of Object.entries(options.headers ?? {})) headers[k.toLowerCase()] = v;
    return headers;
  }

  /** Sends a request and returns status, headers, ETag and the parsed body. */
  async send<T>(method: HttpMethod, path: string, options: RequestOptions = {}): Promise<ApiResponse<T>> {
    const url = joinUrl(this.#url, path, options.query);
    // Built once, so a retried POST carries the same Idempotency-Key.
    const headers = this.#headers(method, options, 'application/json');
    const body = options.rawBody ?? (options.body === undefined ? undefined : JSON.stringify(options.body));
    const timeout = options.timeoutMs ?? this.timeoutMs;
    const retryable =
      (method === 'GET' || method === 'HEAD' || method === 'POST') &&
      !(options.rawBody !== undefined && !Buffer.isBuffer(options.rawBody));
    for (let attempt = 0; ; attempt++) {
      let status: number;
      let resHeaders: Record<string, string>;
      let text: string;
      try {
        const res = await request(url, {
          method,
          headers,
          body,
          dispatcher: this.#dispatcher,
          signal: options.signal,
          headersTimeout: timeout,
          bodyTimeout: timeout,
        });
        status = res.statusCode;
        resHeaders = flatHeaders(res.headers);
        text = await res.body.text();
      } catch (err) {
        if (isAbort(err, options.signal)) throw err;
        if (attempt === 0 && retryable && isConnectionReset(err)) continue;
        throw networkError(err, method, url);
      }
      if (status < 200 || status >= 300) throw errorFromResponse(status, resHeaders, text);
      let parsed: unknown;
      if (text !== '') {
        try {
          parsed = JSON.parse(text);
        } catch {
          throw new FloeApiError({ status, code: 'invalid_response', message: `${method} ${url}: answer is not JSON` });
        }
      }
      const etag = resHeaders.etag?.replace(/^W\//, '').replace(/^"(.*)"$/, '$1');
      return { status, headers: resHeaders, body: parsed as T, etag };
    }
  }

  /** Sends a request and returns only the parsed body. */
  async request<T>(method: HttpMethod, path: string, options: RequestOptions = {}): Promise<T> {
    return (await this.send<T>(method, path, options)).body;
  }

  /** Opens a streaming GET whose body the caller reads (and must destroy). */
  async openStream(path: string, options: RequestOptions & { idleTimeoutMs?: number } = {}): Promise<OpenStream> {
    const url = joinUrl(this.#url, path, options.query);
    const headers = this.#headers('GET', options, 'text/event-stream');
    let res: Dispatcher.ResponseData;
    try {
      res = await request(url, {
        method: 'GET',
        headers,
        dispatcher: this.#dispatcher,
        signal: options.signal,
        headersTimeout: options.timeoutMs ?? this.timeoutMs,
        bodyTimeout: options.idleTimeoutMs ?? 0,
      });
    } catch (err) {
      if (isAbort(err, options.signal)) throw err;
      throw networkError(err, 'GET', url);
    }
    const resHeaders = flatHeaders(res.headers);
    if (res.statusCode < 200 || res.statusCode >= 300) {
      let text = '';
      try {
        text = await res.body.text();
      } catch {
        // the status alone still makes a useful error
      }
      throw errorFromResponse(res.statusCode, resHeaders, text);
    }
    return { status: res.statusCode, headers: resHeaders, body: res.body };
  }

  /** Closes the connections this transport opened. */
  async close(): Promise<void> {
    if (this.#ownsDispatcher) await this.#dispatcher.close();
  }
}
