import type { FastifyBaseLogger } from 'fastify';
import type { Config } from './config.js';
import type { Store } from './db/index.js';
import { AgentHub } from './agent-hub.js';
import {
  instanceDesiredState,
  networkDesiredState,
  securityGroupDesiredState,
  vpnDesiredState,
} from './desired-state.js';
import type { Cluster } from './cluster.js';
import { AuditLog } from './services/audit.js';
import { ImageService, MachineTypeService } from './services/catalog.js';
import { ImageFileService } from './services/image-files.js';
import { ImageImportService } from './services/image-import.js';
import { SignalBus, type ServiceContext } from './services/context.js';
import { EventBus } from './services/events.js';
import { HostService } from './services/hosts.js';
import { InstanceService } from './services/instances.js';
import { SecurityGroupService } from './services/security-groups.js';
import { NetworkService } from './services/networks.js';
import { FloatingIpService } from './services/floating-ips.js';
import { PortForwardService } from './services/port-forwards.js';
import { OperationService } from './services/operations.js';
import { ProjectService } from './services/projects.js';
import { TokenService } from './services/tokens.js';
import { UserService } from './services/users.js';
import { MemberService } from './services/members.js';
import { buildAuthChain } from './auth/config.js';
import type { AuthChain } from './auth/chain.js';
import { LoginService } from './services/logins.js';
import { DbLocalUserStore } from './services/login-stores.js';
import { UserTotpService } from './services/user-totp.js';
import { MeteringService } from './services/metering-report.js';
import { VpnService } from './services/vpn.js';

// The services of a control plane and how they are wired together; the HTTP layer (app.ts, http/**) only calls them.

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
  users: UserService;
  /** What each project's resources held over time (services/metering.ts). */
  metering: MeteringService;
  /** The members of projects and their roles. */
  members: MemberService;
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
  /** Security groups, their rules, and the agents' view of them. */
  securityGroups: SecurityGroupService;
  /** VPN pools, VPN networks and their peers. */
  vpn: VpnService;
  /** Floating IPs of public networks, NATed one to one to NICs. */
  floatingIps: FloatingIpService;
  /** Ports of floating IPs or hosts forwarded to NICs. */
  portForwards: PortForwardService;
  operations: OperationService;
  hub: AgentHub;
  pki: ControlPki;
  /** The audit log: records written after each answer, read by operators. */
  audit: AuditLog;
  /** The operator's authenticators (FLOE_AUTH_CONFIG), in order; closed with the app. */
  authChain: AuthChain;
  /** Password logins, sessions and logout; `completeLogin` for other ways of logging in. */
  logins: LoginService;
  /** Users' TOTP second factor. */
  userTotp: UserTotpService;
}

/** Build the services over a store. */
export function buildServices(
  store: Store,
  config: Config,
  pki: ControlPki,
  log: FastifyBaseLogger,
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
  const securityGroups = new SecurityGroupService(ctx, projects);
  const networks = new NetworkService(ctx, projects, securityGroups);
  const instances = new InstanceService(ctx, projects, images, machineTypes, operations, networks);
  const floatingIps = new FloatingIpService(ctx, projects, networks, instances);
  const portForwards = new PortForwardService(ctx, projects, floatingIps);
  const hosts = new HostService(ctx);
  const vpn = new VpnService(ctx, projects, networks);
  const hub = new AgentHub(ctx, hosts, instances, log, [
    instanceDesiredState(instances),
    networkDesiredState(networks),
    securityGroupDesiredState(securityGroups, ctx.signals),
    vpnDesiredState(vpn),
  ]);
  const tokens = new TokenService(ctx);
  const users = new UserService(
    ctx,
    new Set(config.auth.chain.filter((e) => e.kind !== 'local').map((e) => e.name ?? e.kind)),
  );
  const authChain = buildAuthChain(config.auth, {
    localStore: new DbLocalUserStore(store.db),
    baseDir: config.authBaseDir,
    warn: (message) => log.warn(message),
    log: (entry) => log.debug(entry, 'authenticator answered'),
  });
  return {
    bus,
    projects,
    tokens,
    users,
    members: new MemberService(ctx, projects),
    metering: new MeteringService(ctx, projects),
    hosts,
    images,
    imageFiles,
    imageImports,
    machineTypes,
    instances,
    networks,
    securityGroups,
    vpn,
    floatingIps,
    portForwards,
    operations,
    hub,
    pki,
    audit: new AuditLog(store, log),
    authChain,
    logins: new LoginService(ctx, authChain, config.auth, tokens, users),
    userTotp: new UserTotpService(ctx),
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
    publish: () => Promise.resolve(),
    subscribe: () => () => undefined,
    onListening: () => () => undefined,
    close: () => Promise.resolve(),
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
