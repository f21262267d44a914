import { Type, type Static } from 'typebox';
import { CommonCreateFields, LabelsPatch, Metadata, Name, Nullable, ProjectScopedFields } from './common.js';

// ---------------------------------------------------------------- security groups

/** Most rules one security group may hold. */
export const MAX_SG_RULES = 1000;
/** Most security groups one NIC may have. */
export const MAX_NIC_GROUPS = 16;

/** What a rule matches: a transport protocol, ICMP of either family, or every IP packet. */
export const SgProtocol = Type.Union(
  [Type.Literal('tcp'), Type.Literal('udp'), Type.Literal('icmp'), Type.Literal('icmpv6'), Type.Literal('any')],
  { description: 'tcp, udp, icmp, icmpv6 or any' },
);
export type SgProtocol = Static<typeof SgProtocol>;

/** The verdict for traffic no rule allows. */
export const SgDefault = Type.Union([Type.Literal('allow'), Type.Literal('deny')]);
export type SgDefault = Static<typeof SgDefault>;

/** A remote CIDR, IPv4 or IPv6 (`0.0.0.0/0`, `2001:db8::/32`, `192.0.2.7/32`). */
const RemoteCidr = Type.String({
  minLength: 3,
  maxLength: 43,
  pattern: '^[0-9a-fA-F:.]+/[0-9]{1,3}$',
  description: 'IPv4 or IPv6 CIDR the peer is in',
});

/** An allow rule of a security group, as stored and shown. */
export const SgRule = Type.Object({
  id: Type.String({ description: 'stable id of the rule inside its group' }),
  direction: Type.Union([Type.Literal('ingress'), Type.Literal('egress')]),
  protocol: SgProtocol,
  port_min: Nullable(Type.Integer({ minimum: 1, maximum: 65535 })),
  port_max: Nullable(Type.Integer({ minimum: 1, maximum: 65535 })),
  remote_cidr: Nullable(Type.String()),
  remote_group: Nullable(Type.String({ description: 'id of the security group whose members are the peers' })),
  description: Type.String(),
});
export type SgRule = Static<typeof SgRule>;

/**
 * A rule to add. `port` is `22` or `8000-8100` (tcp and udp only; absent: all
 * ports); the peer is `remote_cidr`, `remote_group` (a group's name or id in
 * the same project), or neither for anywhere.
 *
 * @example { direction: 'ingress', protocol: 'tcp', port: '22', remote_group: 'admins' }
 */
export const SgRuleCreate = Type.Object(
  {
    direction: Type.Union([Type.Literal('ingress'), Type.Literal('egress')]),
    protocol: SgProtocol,
    port: Type.Optional(Type.String({ pattern: '^[0-9]{1,5}(-[0-9]{1,5})?$', maxLength: 11 })),
    remote_cidr: Type.Optional(RemoteCidr),
    remote_group: Type.Optional(Type.String({ minLength: 1, maxLength: 100 })),
    description: Type.Optional(Type.String({ maxLength: 255 })),
  },
  { additionalProperties: false },
);
export type SgRuleCreate = Static<typeof SgRuleCreate>;

/** The desired shape of a security group. */
export const SecurityGroupSpec = Type.Object({
  ingress_default: SgDefault,
  egress_default: SgDefault,
  rules: Type.Array(SgRule),
});
export type SecurityGroupSpec = Static<typeof SecurityGroupSpec>;

/** A set of allow rules applied to NICs, stateful, enforced on every host per NIC. */
export const SecurityGroup = Type.Object({
  ...ProjectScopedFields,
  description: Type.String(),
  spec: SecurityGroupSpec,
  status: Type.Object({ nics: Type.Integer({ description: 'NICs the group applies to' }) }),
});
export type SecurityGroup = Static<typeof SecurityGroup>;

/** Body of `POST /v1/security-groups`. */
export const SecurityGroupCreate = Type.Object({
  ...CommonCreateFields,
  project: Type.Optional(Name),
  description: Type.Optional(Type.String({ maxLength: 255 })),
  ingress_default: Type.Optional(SgDefault),
  egress_default: Type.Optional(SgDefault),
  rules: Type.Optional(Type.Array(SgRuleCreate, { maxItems: MAX_SG_RULES })),
});
export type SecurityGroupCreate = Static<typeof SecurityGroupCreate>;

/** Body of `PATCH /v1/security-groups/{id}`: labels, metadata, description, default verdicts. */
export const SecurityGroupPatch = Type.Object({
  labels: Type.Optional(LabelsPatch),
  metadata: Type.Optional(Metadata),
  description: Type.Optional(Type.String({ maxLength: 255 })),
  spec: Type.Optional(
    Type.Object({ ingress_default: Type.Optional(SgDefault), egress_default: Type.Optional(SgDefault) }),
  ),
});
export type SecurityGroupPatch = Static<typeof SecurityGroupPatch>;

/** Path parameters of one rule: `/v1/security-groups/{id}/rules/{rule}`. */
export const SgRuleParams = Type.Object({
  id: Type.String({ minLength: 1, maxLength: 100 }),
  rule: Type.String({ minLength: 1, maxLength: 40 }),
});
export type SgRuleParams = Static<typeof SgRuleParams>;

/** Security groups of a NIC, by name or id (empty: the project's `default`). */
export const NicGroups = Type.Array(Type.String({ minLength: 1, maxLength: 100 }), {
  maxItems: MAX_NIC_GROUPS,
  uniqueItems: true,
  description: "security groups by name or id; none: the project's default group",
});

/** A security group as a host enforces it (sent to the agents with the current member addresses). */
export const DesiredSecurityGroup = Type.Object({
  id: Type.String(),
  name: Type.String(),
  project: Type.String(),
  ingress_default: SgDefault,
  egress_default: SgDefault,
  rules: Type.Array(
    Type.Object({
      direction: Type.Union([Type.Literal('ingress'), Type.Literal('egress')]),
      protocol: SgProtocol,
      port_min: Nullable(Type.Integer()),
      port_max: Nullable(Type.Integer()),
      remote_cidr: Nullable(Type.String()),
      remote_group: Nullable(Type.String()),
    }),
  ),
  /** Addresses of the NICs the group applies to, on every host. */
  members: Type.Array(Type.String()),
});
export type DesiredSecurityGroup = Static<typeof DesiredSecurityGroup>;
