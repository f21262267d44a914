import { Type, type Static } from 'typebox';
import {
  CommonCreateFields,
  Id,
  LabelsPatch,
  Metadata,
  Name,
  Nullable,
  ProjectScopedFields,
  ResourceFields,
  Timestamp,
  type Kind,
} from './common.js';
import { MAX_NICS, NicRequest } from './networks.js';
import { QuotaLimits } from './quotas.js';

// ---------------------------------------------------------------- projects

/** A tenant: every other resource but hosts and machine types belongs to one. */
export const Project = Type.Object({
  ...ResourceFields,
  description: Type.String({ maxLength: 1024 }),
  /** The project this one is a sub-project of (its limits are carved out of the parent's), or null. */
  parent: Nullable(Name),
});
export type Project = Static<typeof Project>;

/** Body of `POST /v1/projects`. */
export const ProjectCreate = Type.Object({
  ...CommonCreateFields,
  description: Type.Optional(Type.String({ maxLength: 1024 })),
  /** Make it a sub-project of this project: owners of the parent (and admins) may. */
  parent: Type.Optional(Name),
  /** Its limits; for a sub-project carved out of the parent's. Without: the operator's defaults (top-level projects) or none. */
  limits: Type.Optional(QuotaLimits),
});
export type ProjectCreate = Static<typeof ProjectCreate>;

/** Body of `PATCH /v1/projects/{id}` (JSON merge patch). */
export const ProjectPatch = Type.Object({
  labels: Type.Optional(LabelsPatch),
  metadata: Type.Optional(Metadata),
  description: Type.Optional(Type.String({ maxLength: 1024 })),
});
export type ProjectPatch = Static<typeof ProjectPatch>;

// ---------------------------------------------------------------- tokens

/** Whether a token is accepted: `active`, or refused because it is `expired` or `revoked`. */
export const TokenState = Type.Union([Type.Literal('active'), Type.Literal('expired'), Type.Literal('revoked')]);
export type TokenState = Static<typeof TokenState>;

/**
 * What a request does to a project's resources (a route's verb, see the API reference): read; create,
 * update and delete; power (start, stop, restart); console; manage (members and tokens).
 */
export const VERBS = ['read', 'create', 'update', 'delete', 'power', 'console', 'manage'] as const;
export type Verb = (typeof VERBS)[number];
export const VerbName = Type.Union([
  Type.Literal('read'),
  Type.Literal('create'),
  Type.Literal('update'),
  Type.Literal('delete'),
  Type.Literal('power'),
  Type.Literal('console'),
  Type.Literal('manage'),
]);

/** Resource kinds a token's scope may name. */
export const ScopeKind = Type.Union([
  Type.Literal('project'),
  Type.Literal('token'),
  Type.Literal('user'),
  Type.Literal('image'),
  Type.Literal('machine_type'),
  Type.Literal('instance'),
  Type.Literal('operation'),
  Type.Literal('host'),
  Type.Literal('network'),
  Type.Literal('nic'),
  Type.Literal('security_group'),
  Type.Literal('floating_ip'),
  Type.Literal('port_forward'),
  Type.Literal('event'),
  Type.Literal('audit'),
  Type.Literal('join_token'),
]);
export type ScopeKind = Static<typeof ScopeKind> & Kind;

/**
 * What a token may do, beyond its projects: only these kinds of resources, only these resources
 * (given by name or id, shown by id; they must be in the token's one project), only these verbs.
 * A scope only narrows: a personal token never exceeds its user.
 */
export const TokenScope = Type.Object(
  {
    kinds: Type.Optional(Type.Array(ScopeKind, { minItems: 1, maxItems: 20, uniqueItems: true })),
    resources: Type.Optional(
      Type.Array(Type.String({ minLength: 1, maxLength: 63 }), { minItems: 1, maxItems: 100, uniqueItems: true }),
    ),
    verbs: Type.Optional(Type.Array(VerbName, { minItems: 1, maxItems: 7, uniqueItems: true })),
  },
  { additionalProperties: false },
);
export type TokenScope = Static<typeof TokenScope>;

/** An API token. Its secret is shown once, at creation, and stored only as a hash. */
export const Token = Type.Object({
  id: Id,
  name: Name,
  admin: Type.Boolean({ description: 'sees and manages everything, including hosts' }),
  projects: Type.Array(Name, {
    description:
      'projects a non-admin token may use; a grant names the project itself, so it goes when the project is deleted',
  }),
  user: Nullable(Name),
  scope: Nullable(TokenScope),
  state: TokenState,
  created_at: Timestamp,
  expires_at: Nullable(Timestamp),
  revoked_at: Nullable(Timestamp),
  last_used_at: Nullable(Timestamp),
});
export type Token = Static<typeof Token>;

/** Body of `POST /v1/tokens`. */
export const TokenCreate = Type.Object({
  name: Name,
  admin: Type.Optional(Type.Boolean({ default: false })),
  projects: Type.Optional(Type.Array(Name, { maxItems: 100 })),
  user: Type.Optional(
    Type.String({
      minLength: 1,
      maxLength: 63,
      description:
        "a personal token of this user (name or id): never more than the user may do at the time of a request; without projects it follows all of the user's projects",
    }),
  ),
  project_token: Type.Optional(
    Type.Boolean({
      description:
        'a project token: a token of nobody, granted `projects`, which keeps working when its creator leaves them. Operators, and owners of every one of the projects, may create one',
    }),
  ),
  expires_in_days: Type.Optional(Type.Integer({ minimum: 1, maximum: 3650 })),
  scope: Type.Optional(TokenScope),
});
export type TokenCreate = Static<typeof TokenCreate>;

/** Answer of `POST /v1/tokens`: the token and, once, its secret. */
export const TokenCreated = Type.Object({ token: Token, secret: Type.String() });
export type TokenCreated = Static<typeof TokenCreated>;

// ---------------------------------------------------------------- hosts

/** What an agent reports about its host when it connects. */
export const HostFacts = Type.Object({
  hostname: Type.String(),
  agent_version: Type.String(),
  arch: Type.String(),
  kernel: Type.String(),
  cpus: Type.Integer({ minimum: 1 }),
  memory_mib: Type.Integer({ minimum: 0 }),
  disk_free_gib: Type.Number({ minimum: 0 }),
  qemu_version: Nullable(Type.String()),
  kvm: Type.Object({
    present: Type.Boolean({ description: '/dev/kvm exists' }),
    usable: Type.Boolean({ description: 'a probe guest really ran under KVM' }),
    detail: Type.String({ description: 'why KVM is or is not used' }),
  }),
  accelerator: Type.Union([Type.Literal('kvm'), Type.Literal('tcg'), Type.Literal('none')]),
  wireguard_kernel: Type.Boolean(),
  wireguard: Type.Optional(
    Type.Union([Type.Literal('kernel'), Type.Literal('wireguard-go'), Type.Literal('none')], {
      description: 'how VPN gateways run here: the kernel module, the wireguard-go userspace daemon, or not at all',
    }),
  ),
  vm_driver: Type.String({ description: '"qemu", or "fake" when VMs are simulated' }),
  underlay_ipv4: Type.Optional(
    Nullable(Type.String({ description: 'address other hosts reach this one at for VXLAN' })),
  ),
});
export type HostFacts = Static<typeof HostFacts>;

/** Host connection state, written only by the control plane from the agent link. */
export const HostState = Type.Union([Type.Literal('pending'), Type.Literal('online'), Type.Literal('offline')]);
export type HostState = Static<typeof HostState>;

/** A machine that runs instances, owned by one floe-agent. */
export const Host = Type.Object({
  ...ResourceFields,
  spec: Type.Object({
    schedulable: Type.Boolean({ description: 'false drains the host: nothing new is placed there' }),
  }),
  status: Type.Object({
    state: HostState,
    facts: Nullable(HostFacts),
    connected_at: Nullable(Timestamp),
    last_heartbeat_at: Nullable(Timestamp),
    allocated: Type.Object({ instances: Type.Integer(), vcpus: Type.Integer(), memory_mib: Type.Integer() }),
    capacity: Type.Object({ vcpus: Type.Integer(), memory_mib: Type.Integer() }),
  }),
});
export type Host = Static<typeof Host>;

/** Body of `PATCH /v1/hosts/{id}`. */
export const HostPatch = Type.Object({
  labels: Type.Optional(LabelsPatch),
  metadata: Type.Optional(Metadata),
  spec: Type.Optional(Type.Object({ schedulable: Type.Optional(Type.Boolean()) })),
});
export type HostPatch = Static<typeof HostPatch>;

/** Body of `POST /v1/hosts/join-tokens`. */
export const JoinTokenCreate = Type.Object({
  expires_in_minutes: Type.Optional(Type.Integer({ minimum: 1, maximum: 60 * 24 * 7, default: 60 })),
});
export type JoinTokenCreate = Static<typeof JoinTokenCreate>;
/** A one-time host join token, shown once. */
export const JoinTokenCreated = Type.Object({ id: Id, token: Type.String(), expires_at: Timestamp });
export type JoinTokenCreated = Static<typeof JoinTokenCreated>;

/** Body of `POST /v1/hosts/join`: an agent trades a join token and a CSR for a certificate. */
export const HostJoin = Type.Object({
  token: Type.String({ minLength: 10, maxLength: 200 }),
  name: Name,
  csr: Type.String({ minLength: 100, maxLength: 16384, description: 'PEM PKCS#10 request' }),
});
export type HostJoin = Static<typeof HostJoin>;

/** Answer of `POST /v1/hosts/join`. */
export const HostJoined = Type.Object({
  host: Host,
  certificate: Type.String({ description: 'PEM client certificate for the agent' }),
  ca: Type.String({ description: "PEM certificate of floe's CA" }),
});
export type HostJoined = Static<typeof HostJoined>;

// ---------------------------------------------------------------- machine types

/** A named size: vCPUs, memory and a default disk. */
export const MachineType = Type.Object({
  ...ResourceFields,
  spec: Type.Object({
    vcpus: Type.Integer({ minimum: 1, maximum: 256 }),
    memory_mib: Type.Integer({ minimum: 128, maximum: 4 * 1024 * 1024 }),
    disk_gib: Type.Integer({ minimum: 1, maximum: 65536 }),
  }),
  builtin: Type.Boolean(),
});
export type MachineType = Static<typeof MachineType>;

/** Body of `POST /v1/machine-types` (admin). */
export const MachineTypeCreate = Type.Object({
  ...CommonCreateFields,
  vcpus: Type.Integer({ minimum: 1, maximum: 256 }),
  memory_mib: Type.Integer({ minimum: 128, maximum: 4 * 1024 * 1024 }),
  disk_gib: Type.Optional(Type.Integer({ minimum: 1, maximum: 65536 })),
});
export type MachineTypeCreate = Static<typeof MachineTypeCreate>;

// ---------------------------------------------------------------- instances

/** What the user wants the VM to be doing. */
export const PowerState = Type.Union([Type.Literal('running'), Type.Literal('stopped')]);
export type PowerState = Static<typeof PowerState>;

/** What happens when a VM stops without being asked to. */
export const RestartPolicy = Type.Union([Type.Literal('never'), Type.Literal('on-failure'), Type.Literal('always')]);
export type RestartPolicy = Static<typeof RestartPolicy>;

/** Largest user-data, in bytes. */
export const USER_DATA_MAX_BYTES = 64 * 1024;

/** The desired state of a VM. Written by users. */
export const InstanceSpec = Type.Object({
  image: Type.String({ description: 'image id' }),
  machine_type: Nullable(Type.String({ description: 'machine type name, or null for a custom size' })),
  vcpus: Type.Integer({ minimum: 1, maximum: 256 }),
  memory_mib: Type.Integer({ minimum: 128, maximum: 4 * 1024 * 1024 }),
  disk_gib: Type.Integer({ minimum: 1, maximum: 65536 }),
  user_data: Nullable(Type.String({ maxLength: USER_DATA_MAX_BYTES })),
  vendor_data: Nullable(
    Type.String({
      maxLength: USER_DATA_MAX_BYTES,
      description: "the instance's own vendor-data; null for the operator's default",
    }),
  ),
  config_drive: Type.Boolean({
    description:
      'attach the NoCloud seed disk; false: the guest reads its first-boot data from the metadata service only',
  }),
  ssh_keys: Type.Array(Type.String({ maxLength: 16384 }), { maxItems: 32 }),
  power_state: PowerState,
  restart_policy: RestartPolicy,
});
export type InstanceSpec = Static<typeof InstanceSpec>;

/** Observed VM states. */
export const InstanceState = Type.Union([
  Type.Literal('pending'),
  Type.Literal('scheduled'),
  Type.Literal('creating'),
  Type.Literal('starting'),
  Type.Literal('running'),
  Type.Literal('stopping'),
  Type.Literal('stopped'),
  Type.Literal('deleting'),
  Type.Literal('error'),
  Type.Literal('unknown'),
]);
export type InstanceState = Static<typeof InstanceState>;

/** Where a guest took its first-boot data from: the seed disk or the metadata service. */
export const FirstBootSource = Type.Union([Type.Literal('config-drive'), Type.Literal('metadata')]);
export type FirstBootSource = Static<typeof FirstBootSource>;

/**
 * What is known of a VM's first boot. `fetched_at` is set when the guest took
 * its data: its first request to the metadata service (`metadata`), or its
 * first read of the seed disk (`config-drive`, seen over QMP; the guest's
 * kernel reads the disk's label whether or not cloud-init then uses it).
 * `finished_at` and `result` are set when the guest reported the end of first
 * boot (cloud-init's phone_home, then its webhook report of the final stage,
 * to the metadata service). Null until then.
 */
export const FirstBoot = Type.Object({
  source: Nullable(FirstBootSource),
  fetched_at: Nullable(Timestamp),
  finished_at: Nullable(Timestamp),
  result: Nullable(Type.Union([Type.Literal('ok'), Type.Literal('failed')])),
  detail: Nullable(Type.String({ description: 'what the guest said about a failure' })),
});
export type FirstBoot = Static<typeof FirstBoot>;

/** What the host reports about a VM. Written only by the agent (and the scheduler for `host`). */
export const InstanceStatus = Type.Object({
  state: InstanceState,
  host: Nullable(Type.String({ description: 'host id' })),
  reason: Nullable(Type.String()),
  accelerator: Nullable(Type.Union([Type.Literal('kvm'), Type.Literal('tcg'), Type.Literal('fake')])),
  observed_revision: Type.Integer({ description: 'spec revision the host last applied' }),
  started_at: Nullable(Timestamp),
  stopped_at: Nullable(Timestamp),
  first_boot: FirstBoot,
  host_unreachable_since: Type.Optional(
    Type.String({
      format: 'date-time',
      description:
        'present while the host does not answer (its agent is disconnected or missed its heartbeats): since when. `state` is then `unknown` until the host reports again',
    }),
  ),
  /** Present while the host does not answer: the state it last reported. */
  last_known_state: Type.Optional(InstanceState),
});
export type InstanceStatus = Static<typeof InstanceStatus>;

/** A virtual machine. */
export const Instance = Type.Object({
  ...ProjectScopedFields,
  spec: InstanceSpec,
  status: InstanceStatus,
});
export type Instance = Static<typeof Instance>;

/** Body of `POST /v1/instances`. Size comes from `machine_type`, or `vcpus` + `memory_mib`. */
export const InstanceCreate = Type.Object({
  ...CommonCreateFields,
  project: Type.Optional(Name),
  image: Type.String({ minLength: 1, maxLength: 100, description: 'image id or name' }),
  machine_type: Type.Optional(Type.String({ minLength: 1, maxLength: 100, description: 'machine type id or name' })),
  vcpus: Type.Optional(Type.Integer({ minimum: 1, maximum: 256 })),
  memory_mib: Type.Optional(Type.Integer({ minimum: 128, maximum: 4 * 1024 * 1024 })),
  disk_gib: Type.Optional(
    Type.Integer({
      minimum: 1,
      maximum: 65536,
      description:
        "disk size; below the image's min_disk_gib is refused (disk_too_small). Without it: the machine type's disk, or the image's min_disk_gib when that is larger (or no machine type is given)",
    }),
  ),
  user_data: Type.Optional(Type.String({ maxLength: USER_DATA_MAX_BYTES })),
  vendor_data: Type.Optional(
    Type.String({
      maxLength: USER_DATA_MAX_BYTES,
      description: "cloud-init vendor-data for this instance instead of the operator's default",
    }),
  ),
  config_drive: Type.Optional(
    Type.Boolean({
      default: true,
      description:
        'attach the NoCloud seed disk (default); false: first-boot data from the metadata service at 169.254.169.254 only',
    }),
  ),
  ssh_keys: Type.Optional(Type.Array(Type.String({ minLength: 1, maxLength: 16384 }), { maxItems: 32 })),
  start: Type.Optional(Type.Boolean({ default: true, description: 'start the VM once created' })),
  restart_policy: Type.Optional(RestartPolicy),
  networks: Type.Optional(Type.Array(NicRequest, { maxItems: MAX_NICS, description: 'one NIC per entry, in order' })),
});
export type InstanceCreate = Static<typeof InstanceCreate>;

/** Body of `PATCH /v1/instances/{id}` (JSON merge patch). */
export const InstancePatch = Type.Object({
  labels: Type.Optional(LabelsPatch),
  metadata: Type.Optional(Metadata),
  spec: Type.Optional(Type.Object({ restart_policy: Type.Optional(RestartPolicy) })),
});
export type InstancePatch = Static<typeof InstancePatch>;

/**
 * Body of `POST /v1/instances/{id}/resize`: the new size of a stopped instance, from a machine type and/or
 * explicit fields (a field given wins over the machine type's). vCPUs and memory may go down; the disk only
 * grows. The next start boots with the new size.
 *
 * @example { "vcpus": 4, "memory_mib": 4096, "disk_gib": 40 }
 */
export const InstanceResize = Type.Object({
  machine_type: Type.Optional(Type.String({ minLength: 1, maxLength: 100, description: 'machine type id or name' })),
  vcpus: Type.Optional(Type.Integer({ minimum: 1, maximum: 256 })),
  memory_mib: Type.Optional(Type.Integer({ minimum: 128, maximum: 4 * 1024 * 1024 })),
  disk_gib: Type.Optional(
    Type.Integer({
      minimum: 1,
      maximum: 65536,
      description: 'the new disk size; smaller than the current one is refused (disk_shrink_refused)',
    }),
  ),
});
export type InstanceResize = Static<typeof InstanceResize>;

/** Body of `POST /v1/instances/{id}/stop`. */
export const InstanceStop = Type.Object({
  force: Type.Optional(Type.Boolean({ default: false, description: 'kill at once instead of an ACPI power-down' })),
});
export type InstanceStop = Static<typeof InstanceStop>;

/** The largest `tail_bytes` of a console log request (the host keeps less than this anyway). */
export const LOG_TAIL_MAX_BYTES = 64 * 1024 * 1024;

/** Query of `GET /v1/instances/{id}/console` (a WebSocket). */
export const ConsoleQuery = Type.Object({
  project: Type.Optional(Name),
  access_token: Type.Optional(
    Type.String({
      maxLength: 500,
      description: 'the API token, for clients that cannot send an Authorization header (browsers)',
    }),
  ),
});
export type ConsoleQuery = Static<typeof ConsoleQuery>;

/** Query of `GET /v1/instances/{id}/logs`. */
export const LogsQuery = Type.Object({
  project: Type.Optional(Name),
  tail_bytes: Type.Optional(
    Type.Integer({
      minimum: 0,
      maximum: LOG_TAIL_MAX_BYTES,
      description: 'only the last N bytes of the history (default: all the host keeps)',
    }),
  ),
  follow: Type.Optional(
    Type.Boolean({ default: false, description: 'keep the response open and stream new output until the client goes' }),
  ),
});
export type LogsQuery = Static<typeof LogsQuery>;

/** Counters of a running VM (`GET /v1/instances/{id}/stats`); the schema of the driver's `VmStats`. Null where the host cannot tell. */
export const InstanceStats = Type.Object({
  at: Timestamp,
  cpu_time_ns: Nullable(Type.Number({ description: 'CPU time used since the VM started, in nanoseconds' })),
  memory_bytes: Nullable(Type.Number({ description: 'memory the VM uses on the host (resident), in bytes' })),
  memory_assigned_bytes: Nullable(Type.Number({ description: 'memory the guest was given, in bytes' })),
  disk_read_bytes: Nullable(Type.Number()),
  disk_write_bytes: Nullable(Type.Number()),
  net_rx_bytes: Nullable(Type.Number()),
  net_tx_bytes: Nullable(Type.Number()),
});
export type InstanceStats = Static<typeof InstanceStats>;

// ---------------------------------------------------------------- history

/** One change to a resource. */
export const HistoryEntry = Type.Object({
  id: Id,
  kind: Type.String(),
  resource_id: Type.String(),
  revision: Type.Integer(),
  action: Type.String({ description: 'create, update, delete, start, stop, ...' }),
  actor: Type.String({ description: 'token id, "agent:<host>" or "system"' }),
  time: Timestamp,
  before: Type.Union([Type.Record(Type.String(), Type.Unknown()), Type.Null()]),
  after: Type.Union([Type.Record(Type.String(), Type.Unknown()), Type.Null()]),
});
export type HistoryEntry = Static<typeof HistoryEntry>;
