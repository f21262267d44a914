import { createRequire } from 'node:module';
import type { Dispatcher } from 'undici';
import type WebSocket from 'ws';
import { openWebSocket, type WebSocketSettings } from './io.js';
import type { Query } from './query.js';
import { AuditApi } from './audit.js';
import { EventsApi } from './events.js';
import { HostsApi, MachineTypesApi } from './hosts.js';
import { ImagesApi } from './images-upload.js';
import { InstancesApi } from './instances.js';
import { NetworksApi } from './networks.js';
import { SecurityGroupsApi } from './security-groups.js';
import { VpnNetworksApi, VpnPeersApi, VpnPoolsApi } from './vpn.js';
import { FloatingIpsApi, PortForwardsApi } from './nat.js';
import { OperationsApi } from './operations.js';
import { ProjectsApi, TokensApi } from './projects.js';
import { MembersApi, UsersApi } from './users.js';
import { AuthApi } from './auth.js';
import { OidcApi } from './oidc.js';
import {
  HttpTransport,
  type ApiResponse,
  type HttpMethod,
  type OpenStream,
  type RequestOptions,
  type Transport,
} from './transport.js';

/**
 * The client package's version, sent in the default User-Agent.
 *
 * @example
 * console.log(`floe-client/${CLIENT_VERSION}`);
 */
export const CLIENT_VERSION: string = (createRequire(import.meta.url)('../package.json') as { version: string })
  .version;

/**
 * Options of {@link FloeClient}.
 *
 * @example
 * const options: FloeClientOptions = { url: 'https://floe.example:8443', token: process.env.FLOE_TOKEN, ca: readFileSync('ca.pem', 'utf8') };
 */
export interface FloeClientOptions {
  /** Base URL of the API, http or https, optionally with a path prefix. */
  url: string;
  /** API token, sent as `Authorization: Bearer <token>`. */
  token?: string;
  /** PEM certificate(s) to trust for https: floe's own CA. */
  ca?: string;
  /** Time limit of each request in milliseconds (default 30 s; long-polls add their wait). */
  timeoutMs?: number;
  /** User-Agent header (default `floe-client/<version>`). */
  userAgent?: string;
  /** A custom undici dispatcher, e.g. a MockAgent in tests; `ca` is ignored when set. */
  dispatcher?: Dispatcher;
}

/**
 * Answer of `GET /healthz`.
 *
 * @example
 * const { version } = await client.health();
 */
export interface Health {
  status: 'ok';
  version: string;
}

/**
 * Answer of `GET /readyz` while the control plane can serve requests; while it cannot reach its database,
 * the call rejects with a {@link FloeApiError} of code `store_unavailable` (HTTP 503).
 *
 * @example
 * const ready = await client.ready().then(() => true, () => false);
 */
export interface Readiness {
  status: 'ready';
  version: string;
  database: 'sqlite' | 'postgres';
}

/**
 * The typed floe API client. Every call returns the server's JSON; failures
 * reject with a {@link FloeApiError} carrying the stable error code.
 *
 * @example
 * import { FloeClient } from '@floe/client';
 * const client = new FloeClient({ url: 'https://floe.example:8443', token, ca });
 * const { items } = await client.instances.list({ project: 'shop', label: ['env=prod'] });
 * const op = await client.instances.start('web', { project: 'shop' });
 * const done = await client.operations.wait(op);
 * await client.close();
 */
export class FloeClient implements Transport {
  readonly #http: HttpTransport;
  readonly #ws: WebSocketSettings;
  /** Projects: list, get, create, update, delete. */
  readonly projects: ProjectsApi;
  /** API tokens: list, create, delete. */
  readonly tokens: TokensApi;
  /** Users: list, get, me, create, update, delete, changePassword. */
  readonly users: UsersApi;
  /** Members of projects: list, add, update, remove. */
  readonly members: MembersApi;
  /** Password login and logout of sessions. */
  readonly auth: AuthApi;
  /** Hosts (admin): list, get, update, delete, joinToken. */
  readonly hosts: HostsApi;
  /** Images: list, get, create, update, delete. */
  readonly images: ImagesApi;
  /** Machine types: list, get, create, delete. */
  readonly machineTypes: MachineTypesApi;
  /** Instances: list, get, create, update, delete, start, stop, restart, history. */
  readonly instances: InstancesApi;
  /** Networks: list, get, create, update, delete. */
  readonly networks: NetworksApi;
  /** Security groups: list, get, create, update, delete, rules. */
  readonly securityGroups: SecurityGroupsApi;
  /** VPN pools (operators). */
  readonly vpnPools: VpnPoolsApi;
  /** VPN networks of projects. */
  readonly vpnNetworks: VpnNetworksApi;
  /** Peers of VPN networks, with their wg-quick files. */
  readonly vpnPeers: VpnPeersApi;
  /** Floating IPs: list, get, create, attach, detach, delete, history. */
  readonly floatingIps: FloatingIpsApi;
  /** Port forwards: list, get, create, delete. */
  readonly portForwards: PortForwardsApi;
  /** Operations: list, get, cancel, wait. */
  readonly operations: OperationsApi;
  /** The event stream. */
  readonly events: EventsApi;
  /** The audit log (admin): list, listAll, iterate. */
  readonly audit: AuditApi;
  /** OpenID Connect logins (no token needed): start, poll. */
  readonly oidc: OidcApi;

  constructor(options: FloeClientOptions) {
    this.#http = new HttpTransport({ ...options, userAgent: options.userAgent ?? `floe-client/${CLIENT_VERSION}` });
    this.#ws = {
      url: options.url,
      token: options.token,
      ca: options.ca,
      userAgent: options.userAgent ?? `floe-client/${CLIENT_VERSION}`,
    };
    this.projects = new ProjectsApi(this, '/v1/projects');
    this.tokens = new TokensApi(this, '/v1/tokens');
    this.users = new UsersApi(this, '/v1/users');
    this.members = new MembersApi(this);
    this.auth = new AuthApi(this);
    this.hosts = new HostsApi(this, '/v1/hosts');
    this.images = new ImagesApi(this, '/v1/images');
    this.machineTypes = new MachineTypesApi(this, '/v1/machine-types');
    this.instances = new InstancesApi(this, '/v1/instances');
    this.networks = new NetworksApi(this, '/v1/networks');
    this.securityGroups = new SecurityGroupsApi(this, '/v1/security-groups');
    this.vpnPools = new VpnPoolsApi(this, '/v1/vpn-pools');
    this.vpnNetworks = new VpnNetworksApi(this, '/v1/vpn-networks');
    this.vpnPeers = new VpnPeersApi(this, '/v1/vpn-peers');
    this.floatingIps = new FloatingIpsApi(this, '/v1/floating-ips');
    this.portForwards = new PortForwardsApi(this, '/v1/port-forwards');
    this.operations = new OperationsApi(this, '/v1/operations');
    this.events = new EventsApi(this);
    this.audit = new AuditApi(this, '/v1/audit');
    this.oidc = new OidcApi(this);
  }

  /** The base URL this client talks to. */
  get url(): string {
    return this.#http.url;
  }

  /** Default per-request time limit, in milliseconds. */
  get timeoutMs(): number {
    return this.#http.timeoutMs;
  }

  /**
   * Sends any request and returns the parsed JSON body. POSTs carry a random
   * `Idempotency-Key` unless one is given, and are re-sent once with the same
   * key after a connection reset.
   */
  request<T>(method: HttpMethod, path: string, options: RequestOptions = {}): Promise<T> {
    return this.#http.request<T>(method, path, options);
  }

  /** Like {@link FloeClient.request} but also returns status, headers and the ETag revision. */
  send<T>(method: HttpMethod, path: string, options: RequestOptions = {}): Promise<ApiResponse<T>> {
    return this.#http.send<T>(method, path, options);
  }

  /** Opens a streaming GET (used by `events.stream`); the caller must destroy the body. */
  openStream(path: string, options: RequestOptions & { idleTimeoutMs?: number } = {}): Promise<OpenStream> {
    return this.#http.openStream(path, options);
  }

  /** Opens a WebSocket to the API with this client's token and CA (used by `instances.console`). */
  openWebSocket(path: string, query?: Query): WebSocket {
    return openWebSocket(this.#ws, path, query);
  }

  /** Checks that the server is up (`GET /healthz`, no token needed). */
  health(options: { signal?: AbortSignal } = {}): Promise<Health> {
    return this.#http.request<Health>(
      'GET',
      '/healthz',
      options.signal === undefined ? {} : { signal: options.signal },
    );
  }

  /** Checks that the server can serve requests: its database answers (`GET /readyz`, no token needed). */
  ready(options: { signal?: AbortSignal } = {}): Promise<Readiness> {
    return this.#http.request<Readiness>(
      'GET',
      '/readyz',
      options.signal === undefined ? {} : { signal: options.signal },
    );
  }

  /** Closes the client's connections; the client must not be used afterwards. */
  close(): Promise<void> {
    return this.#http.close();
  }
}
