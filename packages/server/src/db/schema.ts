import type { Generated } from 'kysely';

/**
 * Table shapes as the application sees them, for both dialects.
 * Portable storage rules (the normalizer enforces them):
 * - ids are text (`prefix_ULID`, sortable), times are ISO 8601 UTC text;
 * - JSON values are stored as text and parsed by the caller (`json()` helpers);
 * - booleans are integers 0/1;
 * - `events.seq` is the only auto-increment column.
 */

/** Columns shared by every named resource. */
export interface ResourceRow {
  id: string;
  name: string;
  labels: string; // JSON object
  metadata: string; // JSON object
  revision: number;
  created_at: string;
  updated_at: string;
}

export interface ProjectsTable extends ResourceRow {
  description: string;
  /** The project this one is a sub-project of (migration 0012), or null for a top-level project. */
  parent_id: string | null;
}

/** A project's limit on one dimension (migration 0012); no row: no limit of its own. */
export interface ProjectLimitsTable {
  project_id: string;
  /** A QuotaDimension name. */
  dimension: string;
  value: number;
}

export interface TokensTable {
  id: string;
  name: string;
  secret_hash: string; // hex sha256 of the secret
  admin: number; // 0 | 1
  created_at: string;
  expires_at: string | null;
  last_used_at: string | null;
  revoked_at: string | null;
  /** The user the token belongs to (migration 0007): it never has more rights than the user. */
  user_id: string | null;
  /** JSON `{ kinds?, resources?, verbs? }` narrowing what the token may do (migration 0009), or NULL. */
  scope: string | null;
  /** 'session' for a token a login made (migration 0010); NULL for API tokens. */
  kind?: 'session' | null;
}

/** People (migration 0007). */
export interface UsersTable {
  id: string;
  name: string;
  display_name: string;
  email: string | null;
  disabled: number; // 0 | 1
  password_hash: string | null; // argon2id PHC string
  operator: number; // 0 | 1
  created_at: string;
  updated_at: string;
  /** The authenticator that created the user on its first login (migration 0010); NULL for local users. */
  source?: string | null;
  /** The user's subject in that authenticator; unique with `source`. */
  external_subject?: string | null;
}

/** A user's role in a project (migration 0007); deleting either side deletes the row. */
export interface ProjectMembersTable {
  project_id: string;
  user_id: string;
  role: 'owner' | 'member' | 'viewer';
  created_at: string;
  /** 'mapping' when the role mapping gave it (re-synced on each login, migration 0010); NULL when added by hand. */
  via?: 'mapping' | null;
}

/** A user's TOTP secret (migration 0010): pending until `confirmed_at`; `last_step` guards against replays. */
export interface UserTotpTable {
  user_id: string;
  secret: string;
  confirmed_at: string | null;
  last_step: number;
  created_at: string;
}

/** The hash of one unused recovery code of a user (migration 0010). */
export interface UserRecoveryCodesTable {
  user_id: string;
  code_hash: string;
}

/** One project a non-admin token may use, by id (migration 0005); deleting the project deletes the row. */
export interface TokenProjectsTable {
  token_id: string;
  project_id: string;
}

export interface HostsTable extends ResourceRow {
  spec: string; // JSON HostSpec
  state: string; // pending | online | offline
  facts: string | null; // JSON HostFacts
  connected_at: string | null;
  last_heartbeat_at: string | null;
  cert_serial: string | null;
  /** Control plane instance that holds the agent link (many control planes). */
  connected_to: string | null;
}

export interface JoinTokensTable {
  id: string;
  secret_hash: string;
  created_by: string;
  created_at: string;
  expires_at: string;
  used_at: string | null;
  host_id: string | null;
}

export interface ImagesTable extends ResourceRow {
  project: string;
  spec: string; // JSON
  status: string; // JSON
  /** The spec's `public` (0 | 1), so lists find every project's public images with one indexed condition. */
  public: number;
}

export interface MachineTypesTable extends ResourceRow {
  spec: string; // JSON
  builtin: number; // 0 | 1
}

export interface InstancesTable extends ResourceRow {
  project: string;
  spec: string; // JSON InstanceSpec
  status: string; // JSON InstanceStatus
  /** Denormalized from status/spec for indexed queries (scheduler, agent snapshot). */
  host_id: string | null;
  image_id: string;
  state: string;
  vcpus: number;
  memory_mib: number;
  /** The spec's disk_gib, so quota checks sum it like vcpus and memory_mib. */
  disk_gib: number;
  deleting: number; // 0 | 1
  generation: number;
  restart_generation: number;
  force_stop: number; // 0 | 1
}

export interface NetworksTable extends ResourceRow {
  project: string;
  kind: string; // private | public
  spec: string; // JSON NetworkSpec
  /** VXLAN network identifier, unique across networks. */
  vni: number;
}

export interface NicsTable {
  id: string;
  project: string;
  instance_id: string;
  network_id: string;
  /** Slot in the VM, unique per instance. */
  idx: number;
  /** Unique per network. */
  mac: string;
  ipv4: string | null;
  ipv6: string | null;
  /** JSON of the NIC's RateLimit, null for none. */
  rate_limit: string | null;
  created_at: string;
  // Security groups (migration 0015).
  /** JSON array of security group ids; [] (NICs older than security groups): the project's `default` group. */
  security_groups: string;
  /** 1: filtered by its security groups; 0: anti-spoofing only. */
  filtering: number;
}

/** A security group (migration 0015): its rules and default verdicts are the JSON `spec`. */
export interface SecurityGroupsTable extends ResourceRow {
  project: string;
  description: string;
  spec: string;
}

/** A public IPv4 of a public network's pool held by a project; attached to at most one NIC. */
export interface FloatingIpsTable extends ResourceRow {
  project: string;
  network_id: string;
  address: string;
  instance_id: string | null;
  nic_id: string | null;
}

/** A port of a floating IP or of the host forwarded to a port of a NIC. */
export interface PortForwardsTable extends ResourceRow {
  project: string;
  protocol: string; // tcp | udp
  /** The floating IP's id, or `host` for the host's own addresses. */
  listen: string;
  port: number;
  instance_id: string;
  nic_id: string;
  target_port: number;
}

/** One address taken on a network; the unique (network_id, address) is what keeps IPAM from handing it out twice. */
export interface IpAddressesTable {
  network_id: string;
  address: string; // canonical text form
  family: number; // 4 | 6
  nic_id: string | null;
  created_at: string;
}

export interface ResourceLabelsTable {
  resource_id: string;
  key: string;
  value: string;
}

export interface HistoryTable {
  id: string;
  kind: string;
  resource_id: string;
  project: string | null;
  revision: number;
  action: string;
  actor: string;
  time: string;
  before: string | null; // JSON
  after: string | null; // JSON
}

export interface OperationsTable {
  id: string;
  project: string | null;
  kind: string;
  status: string;
  progress: number;
  message: string;
  resources: string; // JSON ResourceRef[]
  error: string | null; // JSON ErrorBody
  created_by: string;
  created_at: string;
  updated_at: string;
  finished_at: string | null;
  /** The resource whose observed state completes the operation. */
  target_id: string | null;
  /** Instance generation (or revision) the operation waits for the agent to observe. */
  target_generation: number | null;
  /** Observed state that completes the operation: running | stopped | deleted. */
  target_state: string | null;
  /** JSON: what cancelling a pending operation restores. */
  undo: string | null;
  /** JSON `{ done_bytes, total_bytes }` of an operation that moves a file (migration 0003). */
  transfer: string | null;
}

export interface EventsTable {
  seq: Generated<number>; // auto-increment
  id: string;
  time: string;
  type: string;
  project: string | null;
  kind: string;
  resource_id: string;
  data: string; // JSON
  /** Who caused the event (the requesting token's id, as history and the audit log name it); null for none. */
  actor: string | null;
}

export interface IdempotencyKeysTable {
  token_id: string;
  key: string;
  method: string;
  path: string;
  body_hash: string;
  status_code: number;
  response: string; // JSON body
  created_at: string;
  /** Control plane process that holds a reservation (status_code 0); null on rows made before leases. */
  owner: string | null;
  /** Until when that process holds it unless it renews (ISO 8601). */
  lease_until: string | null;
}

/** The whole database, for Kysely. */
/** What one host holds, kept by triggers on `instances` (see migration 0004); hosts that never held one have no row. */
export interface HostAllocationsTable {
  host_id: string;
  instances: number;
  vcpus: number;
  memory_mib: number;
}

/** One audit record (migration 0008); see services/audit.ts. */
export interface AuditLogTable {
  id: string;
  at: string;
  action: string;
  outcome: 'ok' | 'error';
  status: number | null;
  error_code: string | null;
  reason: string | null;
  token_id: string | null;
  user_id: string | null;
  user_name: string | null;
  authenticator: string | null;
  source_address: string | null;
  method: string | null;
  route: string | null;
  resource_kind: string | null;
  resource_id: string | null;
  project: string | null;
  request_id: string | null;
}

/** An OpenID login under way (migration 0011); see services/oidc-logins.ts. */
export interface LoginRequestsTable {
  id: string;
  /** The configured name of the OpenID authenticator. */
  authenticator: string;
  /** sha256 of the `state` sent to the provider (hex). */
  state_hash: string;
  code_verifier: string;
  nonce: string;
  redirect_uri: string;
  /** sha256 of the poll secret given to the client (hex). */
  poll_hash: string;
  /** sha256 of the code the client shows its user, who types it into floe's page to confirm (hex). */
  user_code_hash: string;
  /** sha256 of the confirmation secret in the page the returning browser got (hex). */
  confirm_hash: string | null;
  /** Wrong codes typed so far; a few end the login. */
  confirm_attempts: number;
  /** When the returning browser confirmed with the right code. */
  confirmed_at: string | null;
  session_name: string | null;
  created_at: string;
  expires_at: string;
  /** When the browser came back (the state was spent). */
  completed_at: string | null;
  /** The provider's verified answer (AuthSuccess as JSON), until collected. */
  result: string | null;
  /** Why the login failed, for the client that polls. */
  error: string | null;
  /** When the client collected the outcome; nothing is given twice. */
  consumed_at: string | null;
}

/**
 * One billable quantity a resource held from `started_at` until `ended_at` (NULL while it holds);
 * migration 0013, see services/metering.ts.
 */
export interface MeterRangesTable {
  id: string;
  project: string;
  /** instance, nic or image. */
  resource_kind: string;
  resource_id: string;
  /** vcpus, memory_mib, disk_gib, allocated, running, public_ipv4 or image_bytes. */
  dimension: string;
  quantity: number;
  started_at: string;
  ended_at: string | null;
}

/** An operator's VPN pool (migration 0017); `spec` is the JSON VpnPoolSpec. */
export interface VpnPoolsTable extends ResourceRow {
  spec: string;
}

/** A project's VPN network: slot `slot` of its pool (migration 0017). */
export interface VpnNetworksTable extends ResourceRow {
  project: string;
  pool_id: string;
  /** Which prefix and listen port of the pool it has; unique per pool. */
  slot: number;
  /** JSON: { networks: string[] } (connected private networks by id). */
  spec: string;
  public_key: string;
  /** The gateway's private key, sealed by services/vpn-keys.ts. */
  private_key: string;
}

/** A WireGuard peer of a VPN network (migration 0017). */
export interface VpnPeersTable extends ResourceRow {
  project: string;
  vpn_network_id: string;
  /** The peer's address within the network's prefixes; unique per network. */
  host_index: number;
  /** Unique across all peers. */
  public_key: string;
  /** JSON array of CIDRs behind the peer (site-to-site). */
  subnets: string;
  /** Where the gateways dial the peer (site-to-site), or null. */
  endpoint: string | null;
}

export interface Database {
  projects: ProjectsTable;
  project_limits: ProjectLimitsTable;
  tokens: TokensTable;
  token_projects: TokenProjectsTable;
  users: UsersTable;
  project_members: ProjectMembersTable;
  user_totp: UserTotpTable;
  user_recovery_codes: UserRecoveryCodesTable;
  hosts: HostsTable;
  join_tokens: JoinTokensTable;
  images: ImagesTable;
  machine_types: MachineTypesTable;
  instances: InstancesTable;
  host_allocations: HostAllocationsTable;
  networks: NetworksTable;
  nics: NicsTable;
  floating_ips: FloatingIpsTable;
  port_forwards: PortForwardsTable;
  ip_addresses: IpAddressesTable;
  resource_labels: ResourceLabelsTable;
  history: HistoryTable;
  operations: OperationsTable;
  events: EventsTable;
  idempotency_keys: IdempotencyKeysTable;
  audit_log: AuditLogTable;
  login_requests: LoginRequestsTable;
  meter_ranges: MeterRangesTable;
  security_groups: SecurityGroupsTable;
  vpn_pools: VpnPoolsTable;
  vpn_networks: VpnNetworksTable;
  vpn_peers: VpnPeersTable;
}
