import { Type, type Static } from 'typebox';
import { Name } from './common.js';

/**
 * What a project limit can cap. One union so later resources add a name here and nothing else in the
 * schema of limits changes: limits are stored one row per (project, dimension).
 */
export const QuotaDimension = Type.Union([
  Type.Literal('instances'),
  Type.Literal('vcpus'),
  Type.Literal('memory_mib'),
  Type.Literal('disk_gib'),
  Type.Literal('networks'),
  Type.Literal('nics'),
  Type.Literal('ipv4_private'),
  Type.Literal('ipv4_public'),
  Type.Literal('image_bytes'),
  Type.Literal('security_groups'),
  Type.Literal('vpn_networks'),
  Type.Literal('vpn_peers'),
  Type.Literal('floating_ips'),
  Type.Literal('port_forwards'),
]);
export type QuotaDimension = Static<typeof QuotaDimension>;

/** Every dimension, in the order usage lists them. */
export const QUOTA_DIMENSIONS: readonly QuotaDimension[] = [
  'instances',
  'vcpus',
  'memory_mib',
  'disk_gib',
  'networks',
  'nics',
  'ipv4_private',
  'ipv4_public',
  'image_bytes',
  'security_groups',
  'vpn_networks',
  'vpn_peers',
  'floating_ips',
  'port_forwards',
];

const Amount = Type.Integer({ minimum: 0, maximum: Number.MAX_SAFE_INTEGER });

/** Limits by dimension; a dimension left out (or null in a change) has no limit of its own. */
export const QuotaLimits = Type.Object(
  {
    instances: Type.Optional(Amount),
    vcpus: Type.Optional(Amount),
    memory_mib: Type.Optional(Amount),
    disk_gib: Type.Optional(Amount),
    networks: Type.Optional(Amount),
    nics: Type.Optional(Amount),
    ipv4_private: Type.Optional(Amount),
    ipv4_public: Type.Optional(Amount),
    image_bytes: Type.Optional(Amount),
    security_groups: Type.Optional(Amount),
    vpn_networks: Type.Optional(Amount),
    vpn_peers: Type.Optional(Amount),
    floating_ips: Type.Optional(Amount),
    port_forwards: Type.Optional(Amount),
  },
  { additionalProperties: false },
);
export type QuotaLimits = Static<typeof QuotaLimits>;

const AmountOrNull = Type.Union([Amount, Type.Null()]);
/** Body of `PUT /v1/projects/{id}/limits`: the new limit of each dimension named (null removes it). */
export const QuotaLimitsChange = Type.Object(
  {
    instances: Type.Optional(AmountOrNull),
    vcpus: Type.Optional(AmountOrNull),
    memory_mib: Type.Optional(AmountOrNull),
    disk_gib: Type.Optional(AmountOrNull),
    networks: Type.Optional(AmountOrNull),
    nics: Type.Optional(AmountOrNull),
    ipv4_private: Type.Optional(AmountOrNull),
    ipv4_public: Type.Optional(AmountOrNull),
    image_bytes: Type.Optional(AmountOrNull),
    security_groups: Type.Optional(AmountOrNull),
    vpn_networks: Type.Optional(AmountOrNull),
    vpn_peers: Type.Optional(AmountOrNull),
    floating_ips: Type.Optional(AmountOrNull),
    port_forwards: Type.Optional(AmountOrNull),
  },
  { additionalProperties: false },
);
export type QuotaLimitsChange = Static<typeof QuotaLimitsChange>;

/** One dimension of a project's usage. */
export const QuotaUsageLine = Type.Object({
  dimension: QuotaDimension,
  /** The project's own limit; null: none of its own (its ancestors' still apply). */
  limit: Type.Union([Amount, Type.Null()]),
  /** Allocated by the project's own resources. */
  used: Amount,
  /** Allocated by the project and every project below it: what counts against its limit. */
  used_subtree: Amount,
  /** The sum of the limits of its direct sub-projects. */
  delegated: Amount,
  /** The lowest room left on the way to the root (null: no limit anywhere above or here). */
  available: Type.Union([Amount, Type.Null()]),
});
export type QuotaUsageLine = Static<typeof QuotaUsageLine>;

/** Answer of `GET /v1/projects/{id}/usage`. */
export const ProjectUsage = Type.Object({
  project: Name,
  parent: Type.Union([Name, Type.Null()]),
  /** The project's sub-projects, all levels down. */
  subprojects: Type.Array(Name),
  dimensions: Type.Array(QuotaUsageLine),
});
export type ProjectUsage = Static<typeof ProjectUsage>;

/** Answer of the limits routes: the project's own limits. */
export const ProjectLimits = Type.Object({ project: Name, limits: QuotaLimits });
export type ProjectLimits = Static<typeof ProjectLimits>;
