import { FloeError } from '@floe/api';
import fastifySwagger from '@fastify/swagger';
import fastifySwaggerUi from '@fastify/swagger-ui';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import fastifyWebsocket from '@fastify/websocket';
import { Ajv } from 'ajv';
import ajvFormats from 'ajv-formats';
import Fastify, { LogController, type FastifyInstance, type FastifyServerOptions } from 'fastify';
import type { Socket } from 'node:net';
import type { Config } from './config.js';
import type { Store } from './db/index.js';
import { openCluster } from './cluster.js';
import { scheduleMaintenance } from './maintenance.js';
import { clientErrorResponse, frameworkErrors, installErrorHandlers, type WebFallback } from './http/errors.js';
import { installWeb, wantsWebPage } from './http/web.js';
import { installAudit } from './http/audit.js';
import { installActorScope } from './http/actor-scope.js';
import { isFloeBearer, principalFromChecker } from './http/checker-auth.js';
import { installOidcLogin } from './http/routes/oidc-login.js';
import { installIdempotency } from './http/idempotency.js';
import { installRateLimits } from './http/rate-limits.js';
import { auditRoutes } from './http/routes/audit.js';
import { authRoutes } from './http/routes/auth.js';
import { sessionFromCookie } from './http/cookie-session.js';
import { authWiringOf, type AuthWiring } from './auth-wiring.js';
import { hostRoutes } from './http/routes/hosts.js';
import { imageFileRoutes } from './http/routes/image-files.js';
import { imageRoutes } from './http/routes/images.js';
import { acceptsQueryToken, instanceIoRoutes } from './http/routes/instance-io.js';
import { instanceRoutes } from './http/routes/instances.js';
import { machineTypeRoutes } from './http/routes/machine-types.js';
import { meteringRoutes } from './http/routes/metering.js';
import { networkRoutes } from './http/routes/networks.js';
import { securityGroupRoutes } from './http/routes/security-groups.js';
import { vpnRoutes } from './http/routes/vpn.js';
import { natRoutes } from './http/routes/nat.js';
import { operationRoutes } from './http/routes/operations.js';
import { projectRoutes, quotaRoutes } from './http/routes/projects.js';
import { streamRoutes } from './http/routes/streams.js';
import { tokenRoutes } from './http/routes/tokens.js';
import { userRoutes } from './http/routes/users.js';
import { checkStore } from './http/readiness.js';
import type { Api, RouteFamily } from './http/routing.js';
import { VERSION } from './version.js';
import { buildServices, type ControlPki, type Services } from './wiring.js';
import { withVerb } from './services/authz.js';
import { policyForRoute } from './http/policy.js';
import { enforceScope } from './http/scope.js';
import type { AuthNote } from './services/audit-note.js';

/** Every family of routes, each in its own module of http/routes. */
const ROUTE_FAMILIES: readonly RouteFamily[] = [
  projectRoutes,
  quotaRoutes,
  tokenRoutes,
  userRoutes,
  imageRoutes,
  machineTypeRoutes,
  instanceRoutes,
  operationRoutes,
  hostRoutes,
  networkRoutes,
  securityGroupRoutes,
  vpnRoutes,
  natRoutes,
  imageFileRoutes,
  instanceIoRoutes,
  streamRoutes,
  auditRoutes,
  authRoutes,
  meteringRoutes,
];

/** One route of the control plane as registered: what the authorization matrix test walks. */
export interface RouteRecord {
  method: string;
  url: string;
  /** Answered without a bearer token (config.public). */
  public: boolean;
  /** Upgrades to a WebSocket (it has a wsHandler). */
  websocket: boolean;
}

/** Authentication beyond floe's own tokens, made once the services exist (they may need them). */

/** A built control plane: the HTTP server and its services. */
export interface App {
  http: FastifyInstance;
  services: Services;
  /** Every route registered, in order (HEAD twins of GET routes included). */
  routes: readonly RouteRecord[];
  close(): Promise<void>;
}

/**
 * Build the control plane's HTTP server: routes, auth, idempotency, errors,
 * OpenAPI. Does not listen; call `app.http.listen()`.
 */
export async function buildApp(opts: {
  store: Store;
  config: Config;
  pki: ControlPki;
  logger?: FastifyServerOptions['logger'];
  /** Record requests in the audit log (default). Only the audit benchmark turns it off, to measure its cost. */
  audit?: boolean;
  auth?: (services: Services) => AuthWiring;
}): Promise<App> {
  const { store, config, pki } = opts;
  const http = Fastify({
    logger: opts.logger ?? { level: config.logLevel },
    bodyLimit: config.bodyLimit,
    ...(config.tls
      ? {
          https: {
            key: pki.server.keyPem,
            cert: pki.server.certPem,
            ca: [pki.caPem],
            requestCert: true,
            rejectUnauthorized: false,
          },
        }
      : {}),
    return503OnClosing: true,
    frameworkErrors,
    clientErrorHandler(err: NodeJS.ErrnoException, socket: Socket) {
      // A reset connection has nobody left to answer.
      if (err.code === 'ECONNRESET' || socket.destroyed) return;
      if (socket.writable) socket.write(clientErrorResponse(err.code));
      socket.destroy(err);
    },
    forceCloseConnections: true,
    // Per-request lines are noise at this level; errors are logged by the error handler.
    logController: new LogController({ disableRequestLogging: true }),
  }) as unknown as FastifyInstance;
  const routes: RouteRecord[] = [];
  http.addHook('onRoute', (r) => {
    // Every route has an entry in the policy table, and the table and the route agree on whether it is public.
    const methods = [r.method].flat();
    const policy = policyForRoute(methods, r.url, r.config?.public === true);
    r.config = { ...r.config, policy };
    for (const method of methods)
      routes.push({
        method,
        url: r.url,
        public: r.config?.public === true,
        websocket:
          (r as { wsHandler?: unknown }).wsHandler !== undefined || (r as { websocket?: boolean }).websocket === true,
      });
  });
  const cluster = await openCluster(store, (err) => http.log.warn({ err }, 'cluster connection error'));
  const services = buildServices(store, config, pki, http.log, cluster);
  const auth = opts.auth?.(services) ?? authWiringOf(services, config.auth.roles);
  // Fastify compiles each route's schemas with these once, at startup. Ajv's error format is what
  // http/errors.ts turns into the error envelope (field, location, plain words for patterns).
  // Bodies are JSON and must have the right types ("2" is not a number);
  // query strings and path parameters are text and are converted.
  const ajvFor = (coerce: boolean) => {
    const ajv = new Ajv({
      removeAdditional: false,
      useDefaults: true,
      allErrors: false,
      strict: false,
      coerceTypes: coerce ? 'array' : false,
    });
    (ajvFormats as unknown as (a: Ajv) => void)(ajv);
    return ajv;
  };
  const bodyAjv = ajvFor(false);
  const textAjv = ajvFor(true);
  http.setValidatorCompiler(({ schema, httpPart }) => (httpPart === 'body' ? bodyAjv : textAjv).compile(schema));

  const web: WebFallback = {};
  installErrorHandlers(http, web);
  // Bodies are JSON only: without this, text/plain would be parsed as a string and fail validation as a 400, not a 415.
  http.removeContentTypeParser('text/plain');
  http.addContentTypeParser(
    'application/merge-patch+json',
    { parseAs: 'string' },
    http.getDefaultJsonParser('error', 'error'),
  );

  await installRateLimits(http, config.rateLimits);
  if (opts.audit !== false) installAudit(http, services.audit);
  await http.register(fastifySwagger, {
    openapi: {
      openapi: '3.1.0',
      info: {
        title: 'floe API',
        version: VERSION,
        description:
          'Virtual machines, networks and tenants on your own hosts. Every request needs `Authorization: Bearer <token>` ' +
          'unless marked otherwise. `Idempotency-Key` on a POST with a token replays its answer for 24 hours (per token); ' +
          'requests without a token ignore it. Unauthenticated requests, host joins and failed authentications are ' +
          'limited per client address: past the limit the answer is 429 `rate_limited` with `Retry-After`.',
      },
      components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } } },
      security: [{ bearer: [] }],
    },
  });
  await http.register(fastifySwaggerUi, { routePrefix: '/docs', uiConfig: { docExpansion: 'list' } });
  await http.register(fastifyWebsocket, { options: { maxPayload: 4 * 1024 * 1024 } });

  http.addHook('onRequest', async (request) => {
    if (request.routeOptions.config.public || request.url.startsWith('/docs')) return;
    const header = request.headers.authorization;
    const policy = request.routeOptions.config.policy;
    // A page of the web UI no route has (a client-side route) gets the app's index.html: nothing to authorize.
    if (policy === undefined && wantsWebPage(request.method, request.url, request.headers.accept)) return;
    // Requests no route answers (404) carry no policy: they do nothing.
    const verb = policy?.verb ?? 'read';
    const noteAuth = (n: AuthNote) => (request.auditAuth = { ...request.auditAuth, ...n });
    if (auth.checker !== undefined && typeof header === 'string' && !isFloeBearer(header)) {
      const { method, url, params, query } = request;
      const asked = { authorization: header, method, url, params, query };
      const principal = await principalFromChecker(auth.checker, asked, noteAuth);
      request.principal = withVerb(principal, verb);
      return;
    }
    let token = typeof header === 'string' ? bearerToken(header) : undefined;
    // Browsers cannot set headers on WebSocket and EventSource requests.
    if (token === undefined && (request.url.startsWith('/v1/events') || acceptsQueryToken(request.url))) {
      // The query is not validated yet: a repeated access_token is an array, which is no token.
      const fromQuery = (request.query as { access_token?: unknown }).access_token;
      token = typeof fromQuery === 'string' ? fromQuery : undefined;
    }
    // A browser session: the cookie counts only with the CSRF token (changes) or from floe's own origin (WebSockets).
    if (token === undefined && header === undefined)
      token = sessionFromCookie(request, (why) => new FloeError('csrf_failed', why));
    const principal = await services.tokens.authenticate(token, noteAuth);
    request.principal = withVerb(principal, verb);
    if (policy !== undefined) await enforceScope(store.db, principal, policy, request.params, request.query);
  });
  installActorScope(http);
  const stopLeases = installIdempotency(
    http,
    store,
    { id: cluster.origin, shared: store.dialect === 'postgres' },
    config.idempotencyLeaseMs,
  );

  http.get(
    '/healthz',
    {
      config: { public: true },
      schema: {
        tags: ['system'],
        summary: 'Liveness and version (the process serves HTTP; /readyz says whether it can serve requests)',
        security: [],
      },
    },
    () => ({
      status: 'ok',
      version: VERSION,
      database: store.dialect,
    }),
  );
  http.get(
    '/readyz',
    {
      config: { public: true },
      schema: {
        tags: ['system'],
        summary: 'Readiness: 200 while the database answers, else 503 store_unavailable with the reason',
        security: [],
      },
    },
    async () => {
      await checkStore(store);
      return { status: 'ready', version: VERSION, database: store.dialect };
    },
  );
  http.get('/v1/openapi.json', { config: { public: true }, schema: { hide: true } }, () => http.swagger());
  // Route types come from the schemas (TypeBox type provider); the validator compiler above checks them.
  const api: Api = http.withTypeProvider<TypeBoxTypeProvider>();
  for (const family of ROUTE_FAMILIES) family(api, services);
  installOidcLogin(api, store, auth.oidc);
  web.page = await installWeb(http);

  await http.ready();
  services.hub.start(config);
  services.imageImports.start();
  await services.imageFiles
    .measureOldImages()
    .catch((err: unknown) => http.log.warn({ err }, 'could not measure the virtual size of stored images'));
  const stopMaintenance = scheduleMaintenance(store, config, http.log);
  return {
    http,
    services,
    routes,
    async close() {
      await stopMaintenance();
      await services.imageImports.close();
      await services.hub.close();
      await http.close();
      await services.audit.flush();
      await stopLeases();
      await services.bus.idle();
      services.bus.close();
      services.instances.close();
      await services.authChain.close();
      await cluster.close();
    },
  };
}

/**
 * The token of an `Authorization: Bearer <token>` header (RFC 6750: the scheme in any case, one space, the token's
 * own characters and nothing else); undefined for anything else, which then authenticates as no token.
 */
function bearerToken(header: string): string | undefined {
  return /^Bearer ([A-Za-z0-9._~+/-]+=*)$/i.exec(header)?.[1];
}
