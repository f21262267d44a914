import fastifySwagger from '@fastify/swagger';
import fastifySwaggerUi from '@fastify/swagger-ui';
import fastifyWebsocket from '@fastify/websocket';
import { Ajv } from 'ajv';
import ajvFormats from 'ajv-formats';
import Fastify, { LogController, type FastifyInstance, type FastifyServerOptions } from 'fastify';
import type { Config } from './config.js';
import type { Store } from './db/index.js';
import { AgentHub } from './agent-hub.js';
import { openCluster, type Cluster } from './cluster.js';
import { scheduleMaintenance } from './maintenance.js';
import { installErrorHandlers } from './http/errors.js';
import { installIdempotency } from './http/idempotency.js';
import { computeRoutes } from './http/routes/compute.js';
import { networkRoutes } from './http/routes/networks.js';
import { imageFileRoutes } from './http/routes/image-files.js';
import { acceptsQueryToken, instanceIoRoutes } from './http/routes/instance-io.js';
import { resourceRoutes } from './http/routes/resources.js';
import { streamRoutes } from './http/routes/streams.js';
import { ImageService, MachineTypeService } from './services/catalog.js';
import { ImageFileService } from './services/image-files.js';
import { ImageImportService } from './services/image-import.js';
import { SignalBus, type ServiceContext } from './services/context.js';
import { EventBus } from './services/events.js';
import { HostService } from './services/hosts.js';
import { InstanceService } from './services/instances.js';
import { NetworkService } from './services/networks.js';
import { OperationService } from './services/operations.js';
import { ProjectService } from './services/projects.js';
import { TokenService } from './services/tokens.js';
import { VERSION } from './version.js';

/** The certificate authority as the control plane uses it. */
export interface ControlPki {
  caPem: string;
  /** TLS material of this control plane's HTTPS listener. */
  server: { certPem: string; keyPem: string };
  /** Sign an agent's CSR for `hostId` (CN = host id). */
  signCsr(csrPem: string, hostId: string): Promise<{ certPem: string; serial: string }>;
}

/** Everything the routes call. */
export interface Services {
  bus: EventBus;
  projects: ProjectService;
  tokens: TokenService;
  hosts: HostService;
  images: ImageService;
  /** Image files: upload, agent download, removal. */
  imageFiles: ImageFileService;
  /** Images downloaded from URLs. */
  imageImports: ImageImportService;
  machineTypes: MachineTypeService;
  instances: InstanceService;
  /** Networks and the agents' view of them. */
  networks: NetworkService;
  operations: OperationService;
  hub: AgentHub;
  pki: ControlPki;
}

/** A built control plane: the HTTP server and its services. */
export interface App {
  http: FastifyInstance;
  services: Services;
  close(): Promise<void>;
}

/** Build the services over a store. */
export function buildServices(
  store: Store,
  config: Config,
  pki: ControlPki,
  log: FastifyInstance['log'],
  cluster?: Cluster,
): Services {
  const bus = new EventBus(store, cluster);
  const ctx: ServiceContext = {
    store,
    config,
    bus,
    signals: new SignalBus(cluster),
    cluster: cluster ?? localOnly(store),
  };
  const projects = new ProjectService(ctx);
  const imageFiles = new ImageFileService(ctx);
  const operations = new OperationService(ctx);
  const images = new ImageService(ctx, projects, imageFiles, operations);
  const imageImports = new ImageImportService(ctx, projects, operations, imageFiles);
  const machineTypes = new MachineTypeService(ctx);
  const networks = new NetworkService(ctx, projects);
  const instances = new InstanceService(ctx, projects, images, machineTypes, operations, networks);
  const hosts = new HostService(ctx);
  const hub = new AgentHub(ctx, hosts, instances, log, networks);
  return {
    bus,
    projects,
    tokens: new TokenService(ctx),
    hosts,
    images,
    imageFiles,
    imageImports,
    machineTypes,
    instances,
    networks,
    operations,
    hub,
    pki,
  };
}

/**
 * Stand-in for services built without a cluster (init, tools). It hears nothing, so on PostgreSQL,
 * where other control planes may write, it says it is not listening (which keeps read caches off).
 */
function localOnly(store: Store): Cluster {
  return {
    origin: 'local',
    listening: store.dialect === 'sqlite',
    publish: async () => undefined,
    subscribe: () => () => undefined,
    onListening: () => () => undefined,
    close: async () => undefined,
  };
}

/** Create the default project and the builtin machine types if they are missing. */
export async function seed(services: Services): Promise<void> {
  await services.machineTypes.seed();
  try {
    await services.projects.get({ actor: 'system', admin: true, projects: new Set() }, 'default');
  } catch {
    await services.projects
      .create(
        { actor: 'system', admin: true, projects: new Set() },
        { name: 'default', description: 'created on first start' },
      )
      .catch(() => undefined);
  }
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
    forceCloseConnections: true,
    // Per-request lines are noise at this level; errors are logged by the error handler.
    logController: new LogController({ disableRequestLogging: true }),
  }) as unknown as FastifyInstance;
  const cluster = await openCluster(store, (err) => http.log.warn({ err }, 'cluster connection error'));
  const services = buildServices(store, config, pki, http.log, cluster);
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

  installErrorHandlers(http);
  // Bodies are JSON only: without this, text/plain would be parsed as a string and fail validation as a 400, not a 415.
  http.removeContentTypeParser('text/plain');
  http.addContentTypeParser(
    'application/merge-patch+json',
    { parseAs: 'string' },
    http.getDefaultJsonParser('error', 'error'),
  );

  await http.register(fastifySwagger, {
    openapi: {
      openapi: '3.1.0',
      info: {
        title: 'floe API',
        version: VERSION,
        description:
          'Virtual machines, networks and tenants on your own hosts. Every request needs `Authorization: Bearer <token>` unless marked otherwise.',
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
    let token = typeof header === 'string' && header.startsWith('Bearer ') ? header.slice(7).trim() : undefined;
    // Browsers cannot set headers on WebSocket and EventSource requests.
    if (token === undefined && (request.url.startsWith('/v1/events') || acceptsQueryToken(request.url))) {
      token = (request.query as { access_token?: string }).access_token;
    }
    request.principal = await services.tokens.authenticate(token);
  });
  installIdempotency(http, store);

  http.get(
    '/healthz',
    { config: { public: true }, schema: { tags: ['system'], summary: 'Liveness and version', security: [] } },
    async () => ({
      status: 'ok',
      version: VERSION,
      database: store.dialect,
    }),
  );
  http.get('/v1/openapi.json', { config: { public: true }, schema: { hide: true } }, async () => http.swagger());
  resourceRoutes(http, services);
  computeRoutes(http, services);
  networkRoutes(http, services);
  imageFileRoutes(http, services);
  instanceIoRoutes(http, services);
  streamRoutes(http, services);

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
    async close() {
      await stopMaintenance();
      await services.imageImports.close();
      await services.hub.close();
      await http.close();
      await services.bus.idle();
      services.bus.close();
      services.instances.close();
      await cluster.close();
    },
  };
}
