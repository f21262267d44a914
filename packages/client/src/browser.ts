/**
 * @floe/client/browser: the typed client for web pages. It talks to the API of the page's own origin with
 * `fetch`, authenticated by the HttpOnly session cookie of `POST /v1/auth/session` (or a bearer token), and
 * sends the session's CSRF token on every change. It imports nothing from Node.
 *
 * @example
 * import { BrowserClient } from '@floe/client/browser';
 * const client = new BrowserClient();
 * await client.session.login({ username: 'ada', password });
 * const { items } = await client.instances.list({ project: 'default' });
 */
import type { Image, LoginRequest, SessionLogin } from '@floe/api';
import { AuditApi } from './audit.js';
import { defined, type PostOptions } from './calls.js';
import { errorFromResponse, FloeApiError, networkError } from './errors.js';
import { HostsApi, MachineTypesApi } from './hosts.js';
import { ImageRecordsApi } from './images.js';
import { InstancesApi } from './instances.js';
import { NetworksApi } from './networks.js';
import { OperationsApi } from './operations.js';
import { ProjectsApi, TokensApi } from './projects.js';
import { buildQuery, type Query } from './query.js';
import type { HttpMethod, OpenStream, RequestOptions, Transport } from './transport.js';
import { MembersApi, UsersApi } from './users.js';
import { FloatingIpsApi, PortForwardsApi } from './nat.js';
import { SecurityGroupsApi } from './security-groups.js';
import { VpnNetworksApi, VpnPeersApi, VpnPoolsApi } from './vpn.js';

export { FloeApiError, isFloeApiError } from './errors.js';
export { segment, buildQuery, type Query } from './query.js';

/** The cookie the server puts the session's CSRF token in (readable by the page). */
const CSRF_COOKIE = 'floe_csrf';

/**
 * The CSRF token from a `document.cookie` string, or undefined.
 *
 * @example
 * csrfFromCookies('a=1; floe_csrf=abc') // 'abc'
 */
export function csrfFromCookies(cookies: string): string | undefined {
  for (const part of cookies.split(';')) {
    const [name, ...rest] = part.trim().split('=');
    if (name === CSRF_COOKIE) return rest.join('=') || undefined;
  }
  return undefined;
}

/**
 * Options of {@link BrowserTransport}.
 *
 * @example
 * const t = new BrowserTransport({ base: '' });
 */
export interface BrowserTransportOptions {
  /** Base URL of the API; the page's own origin by default. */
  base?: string;
  /** A bearer token instead of the session cookie. */
  token?: string;
  /** Default time limit of a request in milliseconds (30 s). */
  timeoutMs?: number;
  /** Where the CSRF token comes from (default: the page's cookies). */
  csrf?: () => string | undefined;
  /** Called when the server answers 401 to a request (the session ended). */
  onUnauthenticated?: () => void;
}

/** Quotes a revision for `If-Match` unless it already is an entity tag. */
function entityTag(rev: string | number): string {
  const s = String(rev);
  return s.startsWith('"') || s.startsWith('W/') ? s : `"${s}"`;
}

/**
 * The `fetch` transport of {@link BrowserClient}: JSON in and out, cookies of the same origin, the CSRF
 * token on changes, idempotency keys on POSTs, error envelopes as {@link FloeApiError}.
 *
 * @example
 * const t = new BrowserTransport();
 * const me = await t.request('GET', '/v1/users/me');
 */
export class BrowserTransport implements Transport {
  readonly timeoutMs: number;
  readonly #base: string;
  readonly #options: BrowserTransportOptions;

  constructor(options: BrowserTransportOptions = {}) {
    this.#base = (options.base ?? '').replace(/\/+$/, '');
    this.timeoutMs = options.timeoutMs ?? 30_000;
    this.#options = options;
  }

  /** The URL of an API path with a query (for EventSource, WebSocket and download links). */
  url(path: string, query?: Query): string {
    return `${this.#base}${path}${buildQuery(query)}`;
  }

  /** The headers of a request: auth, CSRF, idempotency, revision, content type. */
  headers(method: HttpMethod, options: RequestOptions = {}): Record<string, string> {
    const headers: Record<string, string> = { accept: 'application/json' };
    if (this.#options.token !== undefined) headers.authorization = `Bearer ${this.#options.token}`;
    else if (method !== 'GET' && method !== 'HEAD') {
      const csrf = (this.#options.csrf ?? (() => csrfFromCookies(globalThis.document?.cookie ?? '')))();
      if (csrf !== undefined) headers['x-csrf-token'] = csrf;
    }
    if (options.body !== undefined)
      headers['content-type'] = method === 'PATCH' ? 'application/merge-patch+json' : 'application/json';
    if (method === 'POST') headers['idempotency-key'] = options.idempotencyKey ?? crypto.randomUUID();
    if (options.ifMatch !== undefined) headers['if-match'] = entityTag(options.ifMatch);
    for (const [k, v] of Object.entries(options.headers ?? {})) headers[k.toLowerCase()] = v;
    return headers;
  }

  /** Sends a request and returns the parsed JSON body (undefined for an empty one). */
  async request<T>(method: HttpMethod, path: string, options: RequestOptions = {}): Promise<T> {
    const url = this.url(path, options.query);
    const timeout = options.timeoutMs ?? this.timeoutMs;
    const signals = [options.signal, timeout > 0 ? AbortSignal.timeout(timeout) : undefined].filter(
      (s): s is AbortSignal => s !== undefined,
    );
    let res: Response;
    try {
      res = await fetch(url, {
        method,
        headers: this.headers(method, options),
        credentials: 'same-origin',
        ...(options.body === undefined ? {} : { body: JSON.stringify(options.body) }),
        ...(signals.length === 0 ? {} : { signal: AbortSignal.any(signals) }),
      });
    } catch (err) {
      if (options.signal?.aborted) throw err;
      throw networkError(err, method, url);
    }
    const text = await res.text();
    if (!res.ok) {
      if (res.status === 401) this.#options.onUnauthenticated?.();
      throw errorFromResponse(res.status, Object.fromEntries(res.headers.entries()), text);
    }
    if (text === '') return undefined as T;
    try {
      return JSON.parse(text) as T;
    } catch {
      throw new FloeApiError({ status: res.status, code: 'invalid_response', message: `${method} ${url}: not JSON` });
    }
  }

  /** Node streams are not available in browsers: use {@link BrowserClient.eventSource} and `fetch` bodies. */
  openStream(path: string): Promise<OpenStream> {
    return Promise.reject(new TypeError(`${path}: streams are read with EventSource or fetch in browsers`));
  }
}

/**
 * Options of an image upload from a browser.
 *
 * @example
 * await client.uploadImage('debian', file, { project: 'default', onProgress: (sent, total) => bar(sent / total) });
 */
export interface BrowserUploadOptions {
  project?: string;
  onProgress?: (sentBytes: number, totalBytes: number) => void;
  signal?: AbortSignal;
}

/**
 * The floe API for web pages: the same resource groups as the Node client, over {@link BrowserTransport}.
 *
 * @example
 * const client = new BrowserClient();
 * const op = await client.instances.stop('web', { project: 'default' });
 * await client.operations.wait(op);
 */
export class BrowserClient {
  readonly transport: BrowserTransport;
  readonly projects: ProjectsApi;
  readonly tokens: TokensApi;
  readonly users: UsersApi;
  readonly members: MembersApi;
  readonly hosts: HostsApi;
  readonly images: ImageRecordsApi;
  readonly machineTypes: MachineTypesApi;
  readonly instances: InstancesApi;
  readonly networks: NetworksApi;
  readonly operations: OperationsApi;
  readonly audit: AuditApi;
  readonly securityGroups: SecurityGroupsApi;
  readonly floatingIps: FloatingIpsApi;
  readonly portForwards: PortForwardsApi;
  readonly vpnPools: VpnPoolsApi;
  readonly vpnNetworks: VpnNetworksApi;
  /** VPN peers (their wg-quick file comes with the answer of `create`; `config()` is for Node). */
  readonly vpnPeers: VpnPeersApi;
  /** Browser sessions: log in to the HttpOnly cookie, log out. */
  readonly session: {
    login(body: LoginRequest, options?: PostOptions): Promise<SessionLogin>;
    logout(): Promise<void>;
  };

  constructor(options: BrowserTransportOptions = {}) {
    const t = new BrowserTransport(options);
    this.transport = t;
    this.projects = new ProjectsApi(t, '/v1/projects');
    this.tokens = new TokensApi(t, '/v1/tokens');
    this.users = new UsersApi(t, '/v1/users');
    this.members = new MembersApi(t);
    this.hosts = new HostsApi(t, '/v1/hosts');
    this.images = new ImageRecordsApi(t, '/v1/images');
    this.machineTypes = new MachineTypesApi(t, '/v1/machine-types');
    this.instances = new InstancesApi(t, '/v1/instances');
    this.networks = new NetworksApi(t, '/v1/networks');
    this.operations = new OperationsApi(t, '/v1/operations');
    this.audit = new AuditApi(t, '/v1/audit');
    this.securityGroups = new SecurityGroupsApi(t, '/v1/security-groups');
    this.floatingIps = new FloatingIpsApi(t, '/v1/floating-ips');
    this.portForwards = new PortForwardsApi(t, '/v1/port-forwards');
    this.vpnPools = new VpnPoolsApi(t, '/v1/vpn-pools');
    this.vpnNetworks = new VpnNetworksApi(t, '/v1/vpn-networks');
    this.vpnPeers = new VpnPeersApi(t, '/v1/vpn-peers');
    this.session = {
      login: (body, opts = {}) => t.request('POST', '/v1/auth/session', defined({ body, ...opts })),
      logout: async () => {
        await t.request('POST', '/v1/auth/logout');
      },
    };
  }

  /** Any other request of the public API (routes newer than this client). */
  request<T>(method: HttpMethod, path: string, options: RequestOptions = {}): Promise<T> {
    return this.transport.request<T>(method, path, options);
  }

  /** The event stream as Server-Sent Events (the session cookie authenticates it). */
  eventSource(query: Query = {}): EventSource {
    return new EventSource(this.transport.url('/v1/events', query), { withCredentials: true });
  }

  /** A WebSocket to an API path on the page's origin (the serial and graphical consoles). */
  webSocket(path: string, query?: Query, protocols?: string | string[]): WebSocket {
    const http = new URL(this.transport.url(path, query), globalThis.location?.href);
    http.protocol = http.protocol === 'https:' ? 'wss:' : 'ws:';
    return new WebSocket(http.toString(), protocols);
  }

  /** Uploads an image's file with progress (XMLHttpRequest: fetch reports no upload progress). */
  uploadImage(id: string, file: Blob, options: BrowserUploadOptions = {}): Promise<Image> {
    const url = this.transport.url(`/v1/images/${encodeURIComponent(id)}/file`, defined({ project: options.project }));
    const headers = this.transport.headers('PUT', { headers: { 'content-type': 'application/octet-stream' } });
    return new Promise((resolve, reject) => {
      const xhr = new XMLHttpRequest();
      xhr.open('PUT', url);
      for (const [k, v] of Object.entries(headers)) xhr.setRequestHeader(k, v);
      xhr.upload.onprogress = (e) => options.onProgress?.(e.loaded, e.lengthComputable ? e.total : file.size);
      xhr.onload = () => {
        if (xhr.status >= 200 && xhr.status < 300) resolve(JSON.parse(xhr.responseText) as Image);
        else reject(errorFromResponse(xhr.status, {}, xhr.responseText));
      };
      xhr.onerror = () => reject(networkError(new Error('upload failed'), 'PUT', url));
      xhr.onabort = () => reject(new DOMException('upload cancelled', 'AbortError'));
      options.signal?.addEventListener('abort', () => xhr.abort(), { once: true });
      xhr.send(file);
    });
  }
}
