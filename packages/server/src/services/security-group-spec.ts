import { randomBytes } from 'node:crypto';
import ipaddr from 'ipaddr.js';
import {
  FloeError,
  type DesiredSecurityGroup,
  type SecurityGroupSpec,
  type SgRule,
  type SgRuleCreate,
} from '@floe/api';
import { fromJson } from '../db/index.js';
import type { SecurityGroupsTable } from '../db/schema.js';

/*
 * The pure part of security groups: the `default` group's rules, a rule as
 * the API takes it turned into one as stored (ports split, CIDR made
 * canonical, the remote group resolved by the caller), and a group as an
 * agent enforces it.
 */

/** The name of the group NICs get when they name none. */
export const DEFAULT_GROUP = 'default';

const invalid = (field: string, message: string) => new FloeError('validation_failed', message, { field });

/** A short id for a rule, unique inside its group. */
function ruleId(): string {
  return `r${randomBytes(5).toString('hex')}`;
}

/** The rules of a project's `default` group (`id` its own id): members reach each other, ssh and ICMP from anywhere. */
export function defaultGroupSpec(id: string): SecurityGroupSpec {
  const r = (
    rid: string,
    protocol: SgRule['protocol'],
    port: number | null,
    group: string | null,
    description: string,
  ): SgRule => ({
    id: rid,
    direction: 'ingress',
    protocol,
    port_min: port,
    port_max: port,
    remote_cidr: null,
    remote_group: group,
    description,
  });
  return {
    ingress_default: 'deny',
    egress_default: 'allow',
    rules: [
      r('r1', 'any', null, id, 'members of the group reach each other'),
      r('r2', 'tcp', 22, null, 'ssh from anywhere'),
      r('r3', 'icmp', null, null, 'ICMP from anywhere'),
      r('r4', 'icmpv6', null, null, 'ICMPv6 from anywhere'),
    ],
  };
}

/** A CIDR with its host bits cleared (`10.1.2.3/8` → `10.0.0.0/8`), or a validation error naming `field`. */
function canonicalCidr(text: string, field: string): string {
  let parsed: [ipaddr.IPv4 | ipaddr.IPv6, number];
  try {
    parsed = ipaddr.parseCIDR(text);
  } catch {
    throw invalid(field, `${field} "${text}" is not an IPv4 or IPv6 CIDR`);
  }
  const [addr, len] = parsed;
  const bytes = addr.toByteArray();
  for (let i = 0; i < bytes.length; i++) {
    const keep = Math.max(0, Math.min(8, len - i * 8));
    bytes[i] = bytes[i]! & ((0xff << (8 - keep)) & 0xff);
  }
  return `${ipaddr.fromByteArray(bytes).toString()}/${len}`;
}

/** `22` or `8000-8100` → [min, max]; null when absent. */
function portRange(port: string | undefined, field: string): [number, number] | [null, null] {
  if (port === undefined) return [null, null];
  const [lo = 0, hi = lo] = port.split('-').map(Number);
  if (!(lo >= 1 && lo <= 65535 && hi >= lo && hi <= 65535))
    throw invalid(field, `${field} "${port}" is not a port or a range from 1 to 65535`);
  return [lo, hi];
}

/** A rule as stored, from the API's form; `remoteGroup` is the resolved id of `rule.remote_group`. */
export function ruleFrom(rule: SgRuleCreate, remoteGroup: string | null, field: string): SgRule {
  if (rule.remote_cidr !== undefined && rule.remote_group !== undefined)
    throw invalid(`${field}.remote_group`, 'a rule names a remote CIDR or a remote group, not both');
  if (rule.port !== undefined && rule.protocol !== 'tcp' && rule.protocol !== 'udp')
    throw invalid(`${field}.port`, 'ports go with tcp or udp');
  const cidr = rule.remote_cidr === undefined ? null : canonicalCidr(rule.remote_cidr, `${field}.remote_cidr`);
  if (cidr !== null) {
    const v6 = cidr.includes(':');
    if ((rule.protocol === 'icmp' && v6) || (rule.protocol === 'icmpv6' && !v6))
      throw invalid(`${field}.protocol`, `${rule.protocol} does not go with an IPv${v6 ? 6 : 4} CIDR`);
  }
  const [min, max] = portRange(rule.port, `${field}.port`);
  return {
    id: ruleId(),
    direction: rule.direction,
    protocol: rule.protocol,
    port_min: min,
    port_max: max,
    remote_cidr: cidr,
    remote_group: remoteGroup,
    description: rule.description ?? '',
  };
}

/** The stored spec of a row. */
export function groupSpecOf(row: Pick<SecurityGroupsTable, 'spec'>): SecurityGroupSpec {
  return fromJson<SecurityGroupSpec>(row.spec);
}

/** A group as the agents enforce it, with its members' addresses. */
export function desiredGroup(row: SecurityGroupsTable, members: readonly string[]): DesiredSecurityGroup {
  const spec = groupSpecOf(row);
  return {
    id: row.id,
    name: row.name,
    project: row.project,
    ingress_default: spec.ingress_default,
    egress_default: spec.egress_default,
    rules: spec.rules.map((r) => ({
      direction: r.direction,
      protocol: r.protocol,
      port_min: r.port_min,
      port_max: r.port_max,
      remote_cidr: r.remote_cidr,
      remote_group: r.remote_group,
    })),
    members: [...new Set(members)].sort(),
  };
}
