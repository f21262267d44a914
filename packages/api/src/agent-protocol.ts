import type { FirstBoot, HostFacts, InstanceSpec, InstanceState } from './resources.js';

/**
 * The agent link: JSON messages over one WebSocket (mutual TLS), agent dials
 * out to `GET /v1/agent`. The control plane sends desired state; the agent
 * reconciles and reports what it observes. Both sides are level-triggered: a
 * reconnect sends a full snapshot again and nothing is duplicated.
 */
export const AGENT_PROTOCOL_VERSION = 1;

/** The base image of an instance, as the agent needs it to fetch and cache the file. */
export interface DesiredImage {
  id: string;
  name: string;
  /** sha256 of the stored qcow2 file; null when the image is a record without a file. */
  sha256: string | null;
  size_bytes: number | null;
}

/** One NIC of an instance, with everything the host needs for its tap, DHCP lease and network-config. */
export interface DesiredNic {
  id: string;
  network_id: string;
  vni: number;
  /** Slot in the VM, from 0; also the order of network-config entries. */
  index: number;
  mac: string;
  ipv4: string | null;
  ipv4_prefix: number | null;
  ipv6: string | null;
  ipv6_prefix: number | null;
  gateway4: string | null;
  gateway6: string | null;
  mtu: number;
  dns_servers: string[];
}

/** A network with members on the receiving host: what its bridge, VXLAN device and dnsmasq need. */
export interface DesiredNetwork {
  id: string;
  name: string;
  project: string;
  kind: 'private' | 'public';
  vni: number;
  mtu: number;
  /** CIDRs, or null when the family is off. */
  ipv4: string | null;
  ipv6: string | null;
  gateway: string;
  gateway4: string | null;
  gateway6: string | null;
  /** The host's own address on the bridge (DHCP/DNS server; router when the gateway is "host"). */
  host_ipv4: string | null;
  host_ipv6: string | null;
  dns: boolean;
  /** IPv6 addresses by stateful DHCPv6 (pinned to the leases) instead of SLAAC. Absent from older control planes: false. */
  dhcpv6?: boolean;
  /** Public networks: host interface the bridge takes over; null for private ones. */
  uplink: string | null;
  /** Underlay addresses of the other hosts with members: the VXLAN unicast forwarding entries. */
  peers: string[];
  /** DHCP leases pinned to IPAM: every NIC on the network (on any host), with its DNS name. */
  leases: Array<{
    nic_id: string;
    instance_id: string;
    mac: string;
    ipv4: string | null;
    ipv6: string | null;
    hostname: string;
  }>;
}

/** Everything the agent must make true for one instance. */
export interface DesiredInstance {
  id: string;
  name: string;
  project: string;
  /** Instance revision this desired state was taken from. */
  revision: number;
  spec: InstanceSpec;
  /** The base image; the agent fetches it from `GET /v1/agent/images/{id}` (mTLS) and caches it by sha256. */
  image: DesiredImage | null;
  /** True once the user deleted it: the agent tears it down and reports `deleted`. */
  deleting: boolean;
  /** Bumped by every start/stop/restart request; operations wait for the agent to observe it. */
  generation: number;
  /** Bumped only by restart requests: the agent restarts the VM when this exceeds what it last applied. */
  restart_generation: number;
  /** Stop without an ACPI power-down (set by `stop --force`). */
  force_stop: boolean;
  /** NICs in slot order; absent from control planes without networking (no NICs). */
  nics?: DesiredNic[];
  /** The vendor-data the guest gets: the instance's own, else the operator's default; null for none. */
  vendor_data?: string | null;
}

/** What the agent observes for one instance. */
export interface ObservedInstance {
  id: string;
  /** `deleted` means the agent removed every trace of it. */
  state: InstanceState | 'deleted';
  /** Revision and generation of the desired state last applied. */
  observed_revision: number;
  observed_generation: number;
  observed_restart_generation: number;
  reason: string | null;
  accelerator: 'kvm' | 'tcg' | 'fake' | null;
  started_at: string | null;
  stopped_at: string | null;
  /** What the agent saw of first boot; absent or null fields leave what the control plane has. */
  first_boot?: Partial<FirstBoot>;
}

/**
 * Streams multiplexed on the link (console, logs) are named by a `channel` the
 * control plane picks (unique per link). Bytes travel base64-encoded.
 * Requests with one answer (stats) carry a `request_id`.
 * When a console or log channel opens, the agent first sends an empty
 * `channel.data` (or `channel.closed` with an error), so the control plane can
 * answer the user's request with a plain HTTP status before streaming.
 */
export type ChannelId = string;

/** Agent → control plane. */
export type AgentMessage =
  | { type: 'hello'; protocol: number; facts: HostFacts; instances: ObservedInstance[] }
  | { type: 'heartbeat'; time: string }
  | { type: 'status'; instance: ObservedInstance }
  | { type: 'event'; instance_id: string; event: string; message: string; data?: Record<string, unknown> }
  /** Bytes of a console or log channel. */
  | { type: 'channel.data'; channel: ChannelId; data: string }
  /** The channel ended (log read done, console closed); `error` when it could not open. */
  | { type: 'channel.closed'; channel: ChannelId; error?: { code: string; message: string } }
  | {
      type: 'stats';
      request_id: string;
      instance_id: string;
      stats?: import('./resources.js').VmStats;
      error?: { code: string; message: string };
    };

/** Control plane → agent. */
export type ControlMessage =
  | { type: 'welcome'; host_id: string; host_name: string; heartbeat_interval_ms: number }
  /** `networks`: every network with members on this host (absent from control planes without networking). */
  | { type: 'snapshot'; instances: DesiredInstance[]; networks?: DesiredNetwork[] }
  /** The networks of this host changed (members or peers): the full list again, level-triggered. */
  | { type: 'networks'; networks: DesiredNetwork[] }
  | { type: 'instance'; instance: DesiredInstance }
  | { type: 'error'; code: string; message: string }
  /** Attach to the serial console of an instance. */
  | { type: 'console.open'; channel: ChannelId; instance_id: string }
  /** Read the console history (`tail_bytes` of its end), then keep following when `follow`. */
  | { type: 'logs.open'; channel: ChannelId; instance_id: string; tail_bytes?: number; follow: boolean }
  /** Keystrokes for a console channel. */
  | { type: 'channel.data'; channel: ChannelId; data: string }
  /** Close a console or log channel. */
  | { type: 'channel.close'; channel: ChannelId }
  | { type: 'stats.get'; request_id: string; instance_id: string };

/** WebSocket close codes the control plane uses on the agent link. */
export const AGENT_CLOSE = {
  /** Another connection for the same host took over. */
  replaced: 4001,
  /** The host was deleted or its certificate revoked. */
  revoked: 4003,
  /** Protocol violation. */
  protocol: 4002,
} as const;
