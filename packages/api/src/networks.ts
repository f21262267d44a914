import { Type, type Static } from 'typebox';
import {
  CommonCreateFields,
  Id,
  LabelsPatch,
  Metadata,
  Name,
  Nullable,
  ProjectScopedFields,
  Timestamp,
} from './common.js';
import { NicGroups } from './security-groups.js';

// ---------------------------------------------------------------- networks

/** Most NICs one instance may have. */
export const MAX_NICS = 8;

/** `private`: a VXLAN-joined L2 segment; `public` (admin): bridged to a host uplink, addresses from a pool. */
export const NetworkKind = Type.Union([Type.Literal('private'), Type.Literal('public')]);
export type NetworkKind = Static<typeof NetworkKind>;

/** An IPv4 CIDR such as `10.10.0.0/24`. */
export const Ipv4Cidr = Type.String({
  pattern: '^[0-9]{1,3}(\\.[0-9]{1,3}){3}/[0-9]{1,2}$',
  maxLength: 18,
  description: 'IPv4 CIDR, e.g. 10.10.0.0/24',
});
/** An IPv6 CIDR such as `fd12:3456:789a::/64`. */
export const Ipv6Cidr = Type.String({
  pattern: '^[0-9a-fA-F:]+/[0-9]{1,3}$',
  maxLength: 43,
  description: 'IPv6 CIDR, e.g. fd12:3456:789a::/64',
});

/** The desired shape of a network. */
export const NetworkSpec = Type.Object({
  kind: NetworkKind,
  ipv4: Nullable(Ipv4Cidr),
  ipv6: Nullable(Ipv6Cidr),
  gateway: Type.String({
    description:
      '"host" (the host routes and NATs), "none" (isolated) or the IPv4 address of a VM on the network that routes',
  }),
  mtu: Type.Integer({ minimum: 576, maximum: 9000 }),
  dns: Type.Boolean({ description: 'the host answers DNS for instance names on the network' }),
  dhcpv6: Type.Boolean({
    description:
      'IPv6 addresses come from stateful DHCPv6, pinned to IPAM (router advertisements set the managed flag, no SLAAC); otherwise SLAAC, with stateless DHCPv6 for DNS',
  }),
  reserved: Type.Array(Type.String({ maxLength: 45 }), {
    maxItems: 256,
    description: 'addresses IPAM never hands out',
  }),
  pool: Nullable(
    Type.Object(
      { start: Type.String({ maxLength: 45 }), end: Type.String({ maxLength: 45 }) },
      { description: 'public networks: the IPv4 range instances get addresses from' },
    ),
  ),
  uplink: Nullable(
    Type.String({ maxLength: 15, description: 'public networks: host interface the bridge takes over' }),
  ),
});
export type NetworkSpec = Static<typeof NetworkSpec>;

/** A layer-2 network instances attach NICs to. */
export const Network = Type.Object({
  ...ProjectScopedFields,
  spec: NetworkSpec,
  vni: Type.Integer({ minimum: 1, maximum: 16777215, description: 'VXLAN network identifier, unique' }),
  status: Type.Object({
    hosts: Type.Array(Type.String(), { description: 'ids of the hosts that run members' }),
    nics: Type.Integer({ description: 'NICs attached' }),
    gateway4: Nullable(Type.String()),
    gateway6: Nullable(Type.String()),
    host_ipv4: Nullable(
      Type.String({ description: 'address of the host on the bridge (DHCP, DNS, and gateway when "host")' }),
    ),
    host_ipv6: Nullable(Type.String()),
  }),
});
export type Network = Static<typeof Network>;

/** Body of `POST /v1/networks`. */
export const NetworkCreate = Type.Object({
  ...CommonCreateFields,
  project: Type.Optional(Name),
  kind: Type.Optional(NetworkKind),
  ipv4: Type.Optional(Nullable(Ipv4Cidr)),
  ipv6: Type.Optional(
    Nullable(Type.Union([Ipv6Cidr, Type.Literal('auto')], { description: 'CIDR, or "auto" for a ULA /64' })),
  ),
  gateway: Type.Optional(Type.String({ minLength: 1, maxLength: 45 })),
  mtu: Type.Optional(Type.Integer({ minimum: 576, maximum: 9000 })),
  dns: Type.Optional(Type.Boolean()),
  dhcpv6: Type.Optional(Type.Boolean({ description: 'stateful DHCPv6 instead of SLAAC (default false); needs IPv6' })),
  reserved: Type.Optional(Type.Array(Type.String({ minLength: 2, maxLength: 45 }), { maxItems: 256 })),
  pool: Type.Optional(
    Nullable(Type.Object({ start: Type.String({ maxLength: 45 }), end: Type.String({ maxLength: 45 }) })),
  ),
  uplink: Type.Optional(Nullable(Type.String({ pattern: '^[a-zA-Z0-9_.-]{1,15}$' }))),
});
export type NetworkCreate = Static<typeof NetworkCreate>;

/** Body of `PATCH /v1/networks/{id}`: labels, metadata, DNS, DHCPv6, reserved addresses. */
export const NetworkPatch = Type.Object({
  labels: Type.Optional(LabelsPatch),
  metadata: Type.Optional(Metadata),
  spec: Type.Optional(
    Type.Object({
      dns: Type.Optional(Type.Boolean()),
      dhcpv6: Type.Optional(Type.Boolean()),
      reserved: Type.Optional(Type.Array(Type.String({ minLength: 2, maxLength: 45 }), { maxItems: 256 })),
    }),
  ),
});
export type NetworkPatch = Static<typeof NetworkPatch>;

// ---------------------------------------------------------------- rate limits

/** Highest bandwidth limit, in kbit/s (100 Gbit/s). */
const MAX_KBPS = 100_000_000;
/** Highest packet rate limit, in packets per second. */
const MAX_PPS = 100_000_000;

/**
 * Bandwidth and packet rate limits of one NIC, seen from the instance:
 * `ingress` is traffic to it, `egress` traffic from it. An absent field is no
 * limit. Bandwidth is shaped on the host (queued, not dropped); packet rates
 * are policed (packets over the rate are dropped).
 *
 * @example
 * { "ingress_kbps": 10000, "egress_kbps": 10000, "egress_pps": 5000 }
 */
export const RateLimit = Type.Object(
  {
    ingress_kbps: Type.Optional(
      Type.Integer({ minimum: 8, maximum: MAX_KBPS, description: 'bandwidth to the instance, kbit/s' }),
    ),
    egress_kbps: Type.Optional(
      Type.Integer({ minimum: 8, maximum: MAX_KBPS, description: 'bandwidth from the instance, kbit/s' }),
    ),
    ingress_pps: Type.Optional(
      Type.Integer({ minimum: 1, maximum: MAX_PPS, description: 'packets per second to the instance' }),
    ),
    egress_pps: Type.Optional(
      Type.Integer({ minimum: 1, maximum: MAX_PPS, description: 'packets per second from the instance' }),
    ),
  },
  { additionalProperties: false },
);
export type RateLimit = Static<typeof RateLimit>;

/** A network interface of an instance, with its stable MAC and addresses. */
export const Nic = Type.Object({
  id: Id,
  instance: Type.String({ description: 'instance id' }),
  network: Type.String({ description: 'network id' }),
  network_name: Name,
  index: Type.Integer({ minimum: 0, description: 'slot of the NIC in the VM, from 0' }),
  mac: Type.String(),
  ipv4: Nullable(Type.String()),
  ipv6: Nullable(Type.String()),
  // Security groups.
  security_groups: Type.Array(Type.String(), {
    description: "names of the security groups that apply (the project's default when none was named)",
  }),
  filtering: Type.Boolean({ description: 'security-group filtering on (anti-spoofing applies either way)' }),
  rate_limit: Type.Union([RateLimit, Type.Null()], { description: 'bandwidth and packet rate limits; null: none' }),
  created_at: Timestamp,
});
export type Nic = Static<typeof Nic>;

/** A NIC to create: a network id or name, or the network with requested addresses. */
export const NicRequest = Type.Union([
  Type.String({ minLength: 1, maxLength: 100, description: 'network id or name' }),
  Type.Object(
    {
      network: Type.String({ minLength: 1, maxLength: 100 }),
      ipv4: Type.Optional(Type.String({ minLength: 7, maxLength: 15 })),
      ipv6: Type.Optional(Type.String({ minLength: 2, maxLength: 45 })),
      security_groups: Type.Optional(NicGroups),
      filtering: Type.Optional(Type.Boolean()),
      rate_limit: Type.Optional(RateLimit),
    },
    { additionalProperties: false },
  ),
]);
export type NicRequest = Static<typeof NicRequest>;

/** Body of `POST /v1/instances/{id}/nics`: the network, and optionally the addresses wanted. */
export const NicAdd = Type.Object({
  network: Type.String({ minLength: 1, maxLength: 100, description: 'network id or name' }),
  ipv4: Type.Optional(Type.String({ minLength: 7, maxLength: 15 })),
  ipv6: Type.Optional(Type.String({ minLength: 2, maxLength: 45 })),
  security_groups: Type.Optional(NicGroups),
  filtering: Type.Optional(Type.Boolean()),
  rate_limit: Type.Optional(RateLimit),
});
export type NicAdd = Static<typeof NicAdd>;

/** Body of `PATCH /v1/instances/{id}/nics/{nic}`: what a NIC may change while its instance runs. */
export const NicPatch = Type.Object({
  security_groups: Type.Optional(NicGroups),
  filtering: Type.Optional(
    Type.Boolean({ description: 'false: no security-group filtering for this NIC (anti-spoofing stays)' }),
  ),
  rate_limit: Type.Optional(Type.Union([RateLimit, Type.Null()], { description: 'new limits; null removes them' })),
});
export type NicPatch = Static<typeof NicPatch>;

/** Path parameters of one NIC of an instance: `/v1/instances/{id}/nics/{nic}`. */
export const NicParams = Type.Object({
  id: Type.String({ minLength: 1, maxLength: 100 }),
  nic: Type.String({ minLength: 1, maxLength: 100 }),
});
export type NicParams = Static<typeof NicParams>;

/** Answer of `GET /v1/instances/{id}/nics`: the NICs in slot order. */
export const NicList = Type.Object({ items: Type.Array(Nic) });
export type NicList = Static<typeof NicList>;
