import { Type, type Static } from 'typebox';
import {
  CommonCreateFields,
  LabelsPatch,
  Metadata,
  Name,
  Nullable,
  ProjectScopedFields,
  ResourceFields,
} from './common.js';
import { Ipv4Cidr, Ipv6Cidr } from './networks.js';

// ---------------------------------------------------------------- VPN pools, networks and peers

/** A WireGuard public key: 32 bytes in base64 (44 characters ending in `=`). */
export const WireguardKey = Type.String({
  minLength: 1,
  maxLength: 100,
  description: 'WireGuard public key, 32 bytes as base64 (44 characters, ending in "=")',
});

/**
 * What an operator sets up: an IPv6 prefix carved into per-network prefixes of `network_prefix` bits,
 * optionally an IPv4 range carved into `ipv4_prefix` subnets, the gateway hosts that serve it and where
 * clients dial them. VPN network number `i` of the pool listens on `listen_port + i`.
 */
export const VpnPoolSpec = Type.Object({
  ipv6: Ipv6Cidr,
  network_prefix: Type.Integer({ minimum: 8, maximum: 120, description: 'prefix length of each VPN network' }),
  ipv4: Nullable(Ipv4Cidr),
  ipv4_prefix: Nullable(Type.Integer({ minimum: 8, maximum: 30, description: 'IPv4 subnet size of each VPN network' })),
  hosts: Type.Array(Type.String(), { description: 'ids of the gateway hosts' }),
  listen_port: Type.Integer({ minimum: 1, maximum: 65535 }),
  endpoint: Type.String({ description: 'host name or address clients dial (the port is added)' }),
});
export type VpnPoolSpec = Static<typeof VpnPoolSpec>;

/** A pool of VPN networks served by gateway hosts (operators). */
export const VpnPool = Type.Object({
  ...ResourceFields,
  spec: VpnPoolSpec,
  status: Type.Object({
    networks: Type.Integer({ description: 'VPN networks taken from the pool' }),
    capacity: Type.Integer({ description: 'VPN networks the pool can hold' }),
  }),
});
export type VpnPool = Static<typeof VpnPool>;

/** Body of `POST /v1/vpn-pools`. */
export const VpnPoolCreate = Type.Object({
  ...CommonCreateFields,
  ipv6: Ipv6Cidr,
  network_prefix: Type.Optional(Type.Integer({ minimum: 8, maximum: 120, description: 'default 64' })),
  ipv4: Type.Optional(Nullable(Ipv4Cidr)),
  ipv4_prefix: Type.Optional(Type.Integer({ minimum: 8, maximum: 30, description: 'default 24' })),
  hosts: Type.Array(Type.String({ minLength: 1, maxLength: 100 }), {
    minItems: 1,
    maxItems: 16,
    description: 'gateway hosts by id or name',
  }),
  listen_port: Type.Optional(Type.Integer({ minimum: 1, maximum: 65535, description: 'default 51820' })),
  endpoint: Type.String({
    minLength: 1,
    maxLength: 253,
    pattern: '^[A-Za-z0-9.:-]+$',
    description: 'host name or address clients dial',
  }),
});
export type VpnPoolCreate = Static<typeof VpnPoolCreate>;

/** A project's WireGuard network: one interface on each gateway, a prefix of its pool. */
export const VpnNetwork = Type.Object({
  ...ProjectScopedFields,
  spec: Type.Object({
    pool: Type.String({ description: 'id of the pool' }),
    networks: Type.Array(Type.String(), { description: 'ids of the private networks its peers reach' }),
  }),
  ipv6: Ipv6Cidr,
  ipv4: Nullable(Ipv4Cidr),
  public_key: Type.String({ description: "the gateway's WireGuard public key for this network" }),
  endpoint: Type.String({ description: 'host:port clients dial' }),
  status: Type.Object({ peers: Type.Integer() }),
});
export type VpnNetwork = Static<typeof VpnNetwork>;

/** Body of `POST /v1/vpn-networks`. */
export const VpnNetworkCreate = Type.Object({
  ...CommonCreateFields,
  project: Type.Optional(Name),
  pool: Type.String({ minLength: 1, maxLength: 100, description: 'pool id or name' }),
  networks: Type.Optional(
    Type.Array(Type.String({ minLength: 1, maxLength: 100 }), {
      maxItems: 16,
      description: "the project's private networks (ids or names) its peers reach",
    }),
  ),
});
export type VpnNetworkCreate = Static<typeof VpnNetworkCreate>;

/** Body of `PATCH /v1/vpn-networks/{id}` (JSON merge patch). */
export const VpnNetworkPatch = Type.Object({
  labels: Type.Optional(LabelsPatch),
  metadata: Type.Optional(Metadata),
  spec: Type.Optional(
    Type.Object(
      {
        networks: Type.Optional(
          Type.Array(Type.String({ minLength: 1, maxLength: 100 }), {
            maxItems: 16,
            description:
              "the project's private networks (ids or names) its peers reach, replacing the list; the gateways change it in place and the peers keep their sessions",
          }),
        ),
      },
      { additionalProperties: false },
    ),
  ),
});
export type VpnNetworkPatch = Static<typeof VpnNetworkPatch>;

/** What one peer of a VPN network has done, merged over the gateways that answered. */
export const VpnPeerActivity = Type.Object({
  peer: Type.String({ description: 'id of the peer' }),
  name: Type.String(),
  public_key: Type.String(),
  endpoint: Nullable(Type.String({ description: 'where its latest packets came from (host:port), null before any' })),
  latest_handshake: Nullable(Type.String({ format: 'date-time', description: 'null: no handshake yet' })),
  handshake_age_seconds: Nullable(Type.Integer({ description: 'seconds since the latest handshake' })),
  rx_bytes: Type.Integer({ description: 'bytes the gateways received from the peer' }),
  tx_bytes: Type.Integer({ description: 'bytes the gateways sent to the peer' }),
});
export type VpnPeerActivity = Static<typeof VpnPeerActivity>;

/** Answer of `GET /v1/vpn-networks/{id}/stats`: every peer's latest handshake and transfer, as the gateways count them. */
export const VpnNetworkStats = Type.Object({
  vpn_network: Type.String({ description: 'id of the VPN network' }),
  time: Type.String({ format: 'date-time', description: 'when the gateways were asked' }),
  gateways: Type.Object({
    total: Type.Integer({ description: 'gateway hosts of the pool' }),
    answered: Type.Integer({ description: 'gateways whose counters are in the answer' }),
  }),
  peers: Type.Array(VpnPeerActivity),
});
export type VpnNetworkStats = Static<typeof VpnNetworkStats>;

/**
 * One peer's counters as a gateway's agent reports them (`wg show <if> dump`): checked against this
 * schema when it arrives.
 */
export const VpnPeerCounters = Type.Object({
  public_key: Type.String({ pattern: '^[A-Za-z0-9+/]{43}=$' }),
  endpoint: Nullable(Type.String({ maxLength: 261 })),
  /** Seconds since the epoch of the latest handshake, 0 for none yet. */
  latest_handshake: Type.Integer({ minimum: 0 }),
  rx_bytes: Type.Integer({ minimum: 0 }),
  tx_bytes: Type.Integer({ minimum: 0 }),
});
export type VpnPeerCounters = Static<typeof VpnPeerCounters>;

/** A WireGuard peer of a VPN network: a phone, a laptop, or a site's router with subnets behind it. */
export const VpnPeer = Type.Object({
  ...ProjectScopedFields,
  vpn_network: Type.String({ description: 'id of the VPN network' }),
  public_key: WireguardKey,
  ipv6: Type.String({ description: "the peer's address in the VPN network" }),
  ipv4: Nullable(Type.String()),
  subnets: Type.Array(Type.String(), { description: 'site-to-site: networks behind the peer, routed to it' }),
  endpoint: Nullable(Type.String({ description: 'site-to-site: where the gateways dial the peer (host:port)' })),
});
export type VpnPeer = Static<typeof VpnPeer>;

/** Body of `POST /v1/vpn-peers`. */
export const VpnPeerCreate = Type.Object({
  ...CommonCreateFields,
  project: Type.Optional(Name),
  vpn_network: Type.String({ minLength: 1, maxLength: 100, description: 'VPN network id or name' }),
  public_key: Type.Optional(WireguardKey),
  subnets: Type.Optional(
    Type.Array(Type.String({ minLength: 3, maxLength: 43 }), {
      maxItems: 32,
      description: 'site-to-site: CIDRs behind the peer (its AllowedIPs beyond its own addresses)',
    }),
  ),
  endpoint: Type.Optional(
    Type.String({
      maxLength: 261,
      pattern: '^([A-Za-z0-9.-]+|\\[[0-9A-Fa-f:.]+\\]):[0-9]{1,5}$',
      description: 'site-to-site: where the gateways dial the peer (host:port, [v6]:port), e.g. another gateway',
    }),
  ),
});
export type VpnPeerCreate = Static<typeof VpnPeerCreate>;

/** Answer of `POST /v1/vpn-peers`: the peer, its wg-quick configuration and the same as a QR code. */
export const VpnPeerCreated = Type.Object({
  peer: VpnPeer,
  private_key: Nullable(
    Type.String({ description: 'the generated private key, shown this once (null when the key was supplied)' }),
  ),
  config: Type.String({ description: 'a wg-quick configuration file' }),
  qr_png: Type.String({ description: 'the configuration as a QR code, PNG in base64' }),
});
export type VpnPeerCreated = Static<typeof VpnPeerCreated>;

/** One peer on a gateway's interface. */
export const DesiredVpnPeer = Type.Object({
  id: Type.String(),
  public_key: Type.String(),
  /** The peer's own addresses (/128, /32) and its subnets: its AllowedIPs, routed into the interface. */
  allowed_ips: Type.Array(Type.String()),
  /** Where the gateway dials it (site-to-site), or null: the peer dials in. */
  endpoint: Type.Optional(Nullable(Type.String())),
});
export type DesiredVpnPeer = Static<typeof DesiredVpnPeer>;

/** A VPN network served by the receiving host: one WireGuard interface. */
export const DesiredVpn = Type.Object({
  id: Type.String(),
  project: Type.String(),
  listen_port: Type.Integer(),
  /** The gateway's private key for this network (the control plane holds it encrypted; sent over mTLS). */
  private_key: Type.String(),
  /** The gateway's addresses on the interface, with prefix (e.g. fd00:1::1/64, 10.200.0.1/24). */
  addresses: Type.Array(Type.String()),
  /** CIDRs of the project's connected private networks: the only places its peers may reach. */
  reach: Type.Array(Type.String()),
  peers: Type.Array(DesiredVpnPeer),
});
export type DesiredVpn = Static<typeof DesiredVpn>;

/** Query of `GET /v1/vpn-peers`. */
export const VpnPeerListQuery = Type.Object({
  limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000, default: 100 })),
  cursor: Type.Optional(Type.String({ maxLength: 200 })),
  project: Type.Optional(Name),
  vpn_network: Type.Optional(Type.String({ minLength: 1, maxLength: 100 })),
});
export type VpnPeerListQuery = Static<typeof VpnPeerListQuery>;
