import { Type, type Static, type TSchema } from 'typebox';
import { Nullable } from './common.js';
import { RateLimit } from './networks.js';
import { FirstBoot, HostFacts, InstanceSpec, InstanceState, InstanceStats } from './resources.js';
import { DesiredSecurityGroup } from './security-groups.js';
import { messageDecoder } from './wire.js';
import { VmStatsSample } from './stats-history.js';
import { DesiredVpn, VpnPeerCounters } from './vpn.js';

/**
 * The agent link: JSON messages over one WebSocket (mutual TLS), agent dials
 * out to `GET /v1/agent`. The control plane sends desired state; the agent
 * reconciles and reports what it observes. Both sides are level-triggered: a
 * reconnect sends a full snapshot again and nothing is duplicated.
 *
 * Every message is a TypeBox schema below; each side checks what it receives
 * against them (`decodeAgentMessage`, `decodeControlMessage`) before acting on it.
 * Objects may carry fields a side does not know (newer peers add optional ones).
 *
 * Version 2: desired state travels by kind (`snapshot.desired`, `desired`)
 * instead of one message type per kind (`instance`, `networks`).
 */
export const AGENT_PROTOCOL_VERSION = 2;

/** The base image of an instance, as the agent needs it to fetch and cache the file. */
export const DesiredImage = Type.Object({
  id: Type.String(),
  name: Type.String(),
  /** sha256 of the stored qcow2 file; null when the image is a record without a file. */
  sha256: Nullable(Type.String()),
  size_bytes: Nullable(Type.Integer({ minimum: 0 })),
});
export type DesiredImage = Static<typeof DesiredImage>;

/** A port forwarded to a NIC: `address:port/protocol` on the host to `target_port` of the NIC's IPv4. */
export const DesiredForward = Type.Object({
  protocol: Type.Union([Type.Literal('tcp'), Type.Literal('udp')]),
  /** A floating IP's address the host answers for; null: the host's own addresses. */
  address: Nullable(Type.String()),
  port: Type.Integer({ minimum: 1, maximum: 65535 }),
  target_port: Type.Integer({ minimum: 1, maximum: 65535 }),
});
export type DesiredForward = Static<typeof DesiredForward>;

/** One NIC of an instance, with everything the host needs for its tap, DHCP lease and network-config. */
export const DesiredNic = Type.Object({
  id: Type.String(),
  network_id: Type.String(),
  vni: Type.Integer(),
  /** Slot in the VM, from 0; also the order of network-config entries. */
  index: Type.Integer({ minimum: 0 }),
  mac: Type.String(),
  ipv4: Nullable(Type.String()),
  ipv4_prefix: Nullable(Type.Integer()),
  ipv6: Nullable(Type.String()),
  ipv6_prefix: Nullable(Type.Integer()),
  gateway4: Nullable(Type.String()),
  gateway6: Nullable(Type.String()),
  mtu: Type.Integer(),
  dns_servers: Type.Array(Type.String()),
  // Security groups: absent from older control planes (the NIC is then not filtered).
  /** Ids of the security groups that apply (the project's `default` when the NIC names none). */
  security_groups: Type.Optional(Type.Array(Type.String())),
  /** False: the NIC's traffic is not filtered by security groups (anti-spoofing stays). */
  filtering: Type.Optional(Type.Boolean()),
  /** Bandwidth and packet rate limits of the NIC's tap; absent or null: none. */
  rate_limit: Type.Optional(Nullable(RateLimit)),
  /** A floating IPv4 attached one to one: the host NATs it to and from the NIC's address. */
  floating_ipv4: Type.Optional(Nullable(Type.String())),
  /** Ports forwarded to the NIC: from a floating IP's address, or from the host's own (`address` null). */
  forwards: Type.Optional(Type.Array(DesiredForward)),
});
export type DesiredNic = Static<typeof DesiredNic>;

/** A DHCP lease pinned to IPAM: one NIC on a network (on any host), with its DNS name. */
export const DesiredLease = Type.Object({
  nic_id: Type.String(),
  instance_id: Type.String(),
  mac: Type.String(),
  ipv4: Nullable(Type.String()),
  ipv6: Nullable(Type.String()),
  hostname: Type.String(),
});
export type DesiredLease = Static<typeof DesiredLease>;

/** The port of a VPN gateway host on a network, as other hosts of the network route through it. */
export const DesiredVpnGateway = Type.Object({
  mac: Type.String({ maxLength: 17 }),
  /** Its address on the network; null when the network has no IPv4 (IPv6 goes to its link-local address). */
  ipv4: Nullable(Type.String({ maxLength: 15 })),
  /** What this host routes through it: the VPN prefixes and site subnets of the VPN networks it serves. */
  routes: Type.Array(Type.String({ maxLength: 43 }), { maxItems: 4096 }),
});
export type DesiredVpnGateway = Static<typeof DesiredVpnGateway>;

/**
 * A host's VPN router port on a network: a port on the bridge with a MAC of its own, so that VPN
 * traffic crosses the VXLAN between hosts (the shared gateway MAC and address never do). A gateway
 * host's port holds its own address on the network (`ipv4`); other hosts' ports route what
 * `gateways` lists through the gateways' ports.
 */
export const DesiredVpnPort = Type.Object({
  mac: Type.String({ maxLength: 17 }),
  ipv4: Nullable(Type.String({ maxLength: 15 })),
  gateways: Type.Array(DesiredVpnGateway, { maxItems: 64 }),
});
export type DesiredVpnPort = Static<typeof DesiredVpnPort>;

/** A network with members on the receiving host: what its bridge, VXLAN device and dnsmasq need. */
export const DesiredNetwork = Type.Object({
  id: Type.String(),
  name: Type.String(),
  project: Type.String(),
  kind: Type.Union([Type.Literal('private'), Type.Literal('public')]),
  vni: Type.Integer(),
  mtu: Type.Integer(),
  /** CIDRs, or null when the family is off. */
  ipv4: Nullable(Type.String()),
  ipv6: Nullable(Type.String()),
  gateway: Type.String(),
  gateway4: Nullable(Type.String()),
  gateway6: Nullable(Type.String()),
  /** The host's own address on the bridge (DHCP/DNS server; router when the gateway is "host"). */
  host_ipv4: Nullable(Type.String()),
  host_ipv6: Nullable(Type.String()),
  dns: Type.Boolean(),
  /** IPv6 addresses by stateful DHCPv6 (pinned to the leases) instead of SLAAC. Absent from older control planes: false. */
  dhcpv6: Type.Optional(Type.Boolean()),
  /** Public networks: host interface the bridge takes over; null for private ones. */
  uplink: Nullable(Type.String()),
  /** Underlay addresses of the other hosts with members: the VXLAN unicast forwarding entries. */
  peers: Type.Array(Type.String()),
  /**
   * What the receiving host routes for the network as a VPN gateway: the prefixes of the VPN networks
   * connected to it that the host serves, and the subnets behind their site-to-site peers. Guests
   * whose router is not this host learn them by DHCP. Absent from older control planes: none.
   */
  vpn_routes: Type.Optional(Type.Array(Type.String({ maxLength: 43 }), { maxItems: 4096 })),
  /** This host's VPN router port on the network, where a VPN network connected to it has a gateway. Absent: none. */
  vpn_port: Type.Optional(DesiredVpnPort),
  /** DHCP leases pinned to IPAM: every NIC on the network (on any host), with its DNS name. */
  leases: Type.Array(DesiredLease),
});
export type DesiredNetwork = Static<typeof DesiredNetwork>;

/** Everything the agent must make true for one instance. */
export const DesiredInstance = Type.Object({
  id: Type.String(),
  name: Type.String(),
  project: Type.String(),
  /** Instance revision this desired state was taken from. */
  revision: Type.Integer(),
  spec: InstanceSpec,
  /** The base image; the agent fetches it from `GET /v1/agent/images/{id}` (mTLS) and caches it by sha256. */
  image: Nullable(DesiredImage),
  /** True once the user deleted it: the agent tears it down and reports `deleted`. */
  deleting: Type.Boolean(),
  /** Bumped by every start/stop/restart request; operations wait for the agent to observe it. */
  generation: Type.Integer(),
  /** Bumped only by restart requests: the agent restarts the VM when this exceeds what it last applied. */
  restart_generation: Type.Integer(),
  /** Stop without an ACPI power-down (set by `stop --force`). */
  force_stop: Type.Boolean(),
  /** NICs in slot order; absent from control planes without networking (no NICs). */
  nics: Type.Optional(Type.Array(DesiredNic)),
  /** The vendor-data the guest gets: the instance's own, else the operator's default; null for none. */
  vendor_data: Type.Optional(Nullable(Type.String())),
});
export type DesiredInstance = Static<typeof DesiredInstance>;

/**
 * The kinds of desired state, each with the schema of one item. A new kind is
 * one more entry here and in the `snapshot` and `desired` messages below.
 */
export const DesiredKinds = {
  instance: DesiredInstance,
  network: DesiredNetwork,
  security_group: DesiredSecurityGroup,
  vpn: DesiredVpn,
} as const;
export type DesiredKind = keyof typeof DesiredKinds;
export const DESIRED_KINDS = Object.keys(DesiredKinds) as DesiredKind[];
/** One item of desired state of a kind. */
export type DesiredItem<K extends DesiredKind> = Static<(typeof DesiredKinds)[K]>;

/** What the agent observes for one instance. */
export const ObservedInstance = Type.Object({
  id: Type.String(),
  /** `deleted` means the agent removed every trace of it. */
  state: Type.Union([InstanceState, Type.Literal('deleted')]),
  /** Revision and generation of the desired state last applied. */
  observed_revision: Type.Integer(),
  observed_generation: Type.Integer(),
  observed_restart_generation: Type.Integer(),
  reason: Nullable(Type.String()),
  accelerator: Nullable(Type.Union([Type.Literal('kvm'), Type.Literal('tcg'), Type.Literal('fake')])),
  started_at: Nullable(Type.String()),
  stopped_at: Nullable(Type.String()),
  /** What the agent saw of first boot; absent or null fields leave what the control plane has. */
  first_boot: Type.Optional(Type.Partial(FirstBoot)),
});
export type ObservedInstance = Static<typeof ObservedInstance>;

/** Counters of one running VM, as a driver reads them and the agent reports them: the API's `InstanceStats`. */
export const VmStats = InstanceStats;
export type VmStats = Static<typeof VmStats>;

/**
 * Streams multiplexed on the link (console, logs) are named by a `channel` the
 * control plane picks (unique per link). Bytes travel base64-encoded.
 * Requests with one answer (stats, VPN stats) carry a `request_id`.
 * When a console or log channel opens, the agent first sends an empty
 * `channel.data` (or `channel.closed` with an error), so the control plane can
 * answer the user's request with a plain HTTP status before streaming.
 */
export const ChannelId = Type.String({ pattern: '^[A-Za-z0-9_.:-]{1,100}$' });
export type ChannelId = Static<typeof ChannelId>;

/** A failure the other side reports (`code` from the error table when it knows one). */
export const WireError = Type.Object({ code: Type.String(), message: Type.String() });
export type WireError = Static<typeof WireError>;

const message = <T extends string, P extends Record<string, TSchema>>(type: T, props: P) =>
  Type.Object({ type: Type.Literal(type), ...props });

/** Agent → control plane, one schema per message type. */
export const AgentMessages = [
  message('hello', { protocol: Type.Integer(), facts: HostFacts, instances: Type.Array(ObservedInstance) }),
  message('heartbeat', { time: Type.String() }),
  message('status', { instance: ObservedInstance }),
  message('event', {
    instance_id: Type.String(),
    event: Type.String(),
    message: Type.String(),
    data: Type.Optional(Type.Record(Type.String(), Type.Unknown())),
  }),
  /** Bytes of a console or log channel. */
  message('channel.data', { channel: ChannelId, data: Type.String() }),
  /** The channel ended (log read done, console closed); `error` when it could not open. */
  message('channel.closed', { channel: ChannelId, error: Type.Optional(WireError) }),
  message('stats', {
    request_id: Type.String(),
    instance_id: Type.String(),
    stats: Type.Optional(VmStats),
    error: Type.Optional(WireError),
  }),
  /** The answer to `stats.history.get`: the samples the agent keeps of a VM, oldest first. */
  message('stats.history', {
    request_id: Type.String(),
    instance_id: Type.String(),
    interval_ms: Type.Optional(Type.Integer({ minimum: 1 })),
    retention_ms: Type.Optional(Type.Integer({ minimum: 1 })),
    samples: Type.Optional(Type.Array(VmStatsSample)),
    error: Type.Optional(WireError),
  }),
  /** The answer to `vpn.stats.get`: the peers of a VPN network's interface on this gateway. */
  message('vpn.stats', {
    request_id: Type.String(),
    vpn_network_id: Type.String(),
    peers: Type.Optional(Type.Array(VpnPeerCounters, { maxItems: 100_000 })),
    error: Type.Optional(WireError),
  }),
] as const;
export const AgentMessage = Type.Union([...AgentMessages]);
export type AgentMessage = Static<typeof AgentMessage>;

const desired = <K extends DesiredKind>(kind: K) =>
  message('desired', { kind: Type.Literal(kind), items: Type.Array(DesiredKinds[kind]), full: Type.Boolean() });

/** Control plane → agent, one schema per message type (and per kind for `desired`). */
export const ControlMessages = [
  message('welcome', { host_id: Type.String(), host_name: Type.String(), heartbeat_interval_ms: Type.Integer() }),
  /**
   * Everything this host must run, by kind: the whole set of each kind present
   * (a kind the control plane does not manage is absent, and the agent leaves it alone).
   */
  message('snapshot', {
    desired: Type.Object({
      instance: Type.Optional(Type.Array(DesiredInstance)),
      network: Type.Optional(Type.Array(DesiredNetwork)),
      security_group: Type.Optional(Type.Array(DesiredSecurityGroup)),
      vpn: Type.Optional(Type.Array(DesiredVpn)),
    }),
  }),
  /**
   * Desired state of one kind changed. `full`: `items` is the kind's whole set
   * (what it omits goes). Otherwise `items` are upserts; a kind whose items go
   * away marks them (an instance's `deleting`) and its next full set drops them.
   */
  desired('instance'),
  desired('network'),
  desired('security_group'),
  desired('vpn'),
  message('error', { code: Type.String(), message: Type.String() }),
  /** Attach to the serial console of an instance. */
  message('console.open', { channel: ChannelId, instance_id: Type.String() }),
  /** Attach to the graphical console (VNC) of an instance: the channel carries raw RFB bytes both ways. */
  message('vnc.open', { channel: ChannelId, instance_id: Type.String() }),
  /** Read the console history (`tail_bytes` of its end), then keep following when `follow`. */
  message('logs.open', {
    channel: ChannelId,
    instance_id: Type.String(),
    tail_bytes: Type.Optional(Type.Integer({ minimum: 0 })),
    follow: Type.Boolean(),
  }),
  /** Keystrokes for a console channel. */
  message('channel.data', { channel: ChannelId, data: Type.String() }),
  /** Close a console or log channel. */
  message('channel.close', { channel: ChannelId }),
  message('stats.get', { request_id: Type.String(), instance_id: Type.String() }),
  /** The stats history the agent keeps of a VM; `since` (RFC 3339) leaves out older samples. */
  message('stats.history.get', {
    request_id: Type.String(),
    instance_id: Type.String(),
    since: Type.Optional(Type.String()),
  }),
  /** Handshakes and transfer counters of a VPN network's peers on this gateway. */
  message('vpn.stats.get', { request_id: Type.String(), vpn_network_id: Type.String() }),
] as const;
export const ControlMessage = Type.Union([...ControlMessages]);
export type ControlMessage = Static<typeof ControlMessage>;

/** The `desired` message for a kind (one place where the kind and its items are tied together). */
export function desiredMessage<K extends DesiredKind>(kind: K, items: DesiredItem<K>[], full: boolean): ControlMessage {
  return { type: 'desired', kind, items, full } as ControlMessage;
}

/** WebSocket close codes the control plane uses on the agent link. */
export const AGENT_CLOSE = {
  /** Another connection for the same host took over. */
  replaced: 4001,
  /** The host was deleted or its certificate revoked. */
  revoked: 4003,
  /** Protocol violation (a message that is not JSON or does not match its schema, a wrong protocol version). */
  protocol: 4002,
} as const;

/** Check a message an agent sent (JSON text) against its schema. */
export const decodeAgentMessage = messageDecoder<AgentMessage>(AgentMessages);

/** Check a message the control plane sent (JSON text) against its schema. */
export const decodeControlMessage = messageDecoder<ControlMessage>(ControlMessages);
