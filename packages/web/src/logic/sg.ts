/** Security-group rules as the editor shows and reads them. */
import type { NicRequest, RateLimit, SgRule, SgRuleCreate } from '@floe/api';

/** What the rule form holds: text fields as typed. */
export interface RuleForm {
  direction: 'ingress' | 'egress';
  protocol: SgRuleCreate['protocol'];
  /** `22`, `8000-8100` or empty for all ports. */
  port: string;
  /** A CIDR (`10.0.0.0/8`), a group's name, or empty for anywhere. */
  remote: string;
  description: string;
}

/**
 * The rule to add from the form, or a message saying what is wrong.
 *
 * @example
 * ruleFromForm({ direction: 'ingress', protocol: 'tcp', port: '22', remote: 'admins', description: '' })
 * // { rule: { direction: 'ingress', protocol: 'tcp', port: '22', remote_group: 'admins' } }
 */
export function ruleFromForm(f: RuleForm): { rule: SgRuleCreate } | { error: string } {
  const port = f.port.replace(/\s+/g, '');
  const remote = f.remote.trim();
  const rule: SgRuleCreate = { direction: f.direction, protocol: f.protocol };
  if (port !== '') {
    if (f.protocol !== 'tcp' && f.protocol !== 'udp') return { error: 'Ports only apply to tcp and udp' };
    const m = /^(\d{1,5})(?:-(\d{1,5}))?$/.exec(port);
    if (m === null) return { error: 'Port is a number or a range like 8000-8100' };
    const lo = Number(m[1]);
    const hi = m[2] === undefined ? lo : Number(m[2]);
    if (lo < 1 || hi > 65535 || lo > hi) return { error: 'Ports run from 1 to 65535, low before high' };
    rule.port = lo === hi ? String(lo) : `${lo}-${hi}`;
  }
  if (remote !== '') {
    if (remote.includes('/')) {
      if (!/^[0-9a-fA-F:.]+\/\d{1,3}$/.test(remote))
        return { error: 'Remote CIDR looks like 10.0.0.0/8 or 2001:db8::/32' };
      rule.remote_cidr = remote;
    } else {
      rule.remote_group = remote;
    }
  }
  const description = f.description.trim();
  if (description !== '') rule.description = description;
  return { rule };
}

/** The ports of a rule as text: `22`, `8000-8100` or `all`. */
export function portText(r: Pick<SgRule, 'port_min' | 'port_max'>): string {
  if (r.port_min === null) return 'all';
  return r.port_max === null || r.port_max === r.port_min ? String(r.port_min) : `${r.port_min}-${r.port_max}`;
}

/** The peer of a rule as text: its CIDR, the group's name (by id from `groups`), or `anywhere`. */
export function remoteText(
  r: Pick<SgRule, 'remote_cidr' | 'remote_group'>,
  groups: ReadonlyMap<string, string>,
): string {
  if (r.remote_cidr !== null) return r.remote_cidr;
  if (r.remote_group !== null) return `group ${groups.get(r.remote_group) ?? r.remote_group}`;
  return 'anywhere';
}

/** The rate-limit fields of the NIC form, as typed (empty: no limit). */
export type RateForm = Record<keyof RateLimit, string>;

const RATE_KEYS = ['ingress_kbps', 'egress_kbps', 'ingress_pps', 'egress_pps'] as const;

/** The form's text of a NIC's limits. */
export function rateForm(limit: RateLimit | null): RateForm {
  const out = {} as RateForm;
  for (const k of RATE_KEYS) out[k] = limit?.[k] === undefined ? '' : String(limit[k]);
  return out;
}

/**
 * The limits from the form: null when every field is empty (no limits), or a message.
 *
 * @example
 * rateFromForm({ ingress_kbps: '10000', egress_kbps: '', ingress_pps: '', egress_pps: '' })
 * // { limit: { ingress_kbps: 10000 } }
 */
export function rateFromForm(f: RateForm): { limit: RateLimit | null } | { error: string } {
  const limit: RateLimit = {};
  for (const k of RATE_KEYS) {
    const v = f[k].trim();
    if (v === '') continue;
    if (!/^\d+$/.test(v)) return { error: `${k.replace('_', ' ')} is a whole number` };
    const n = Number(v);
    const min = k.endsWith('kbps') ? 8 : 1;
    if (n < min) return { error: `${k.replace('_', ' ')} is at least ${min}` };
    limit[k] = n;
  }
  return { limit: Object.keys(limit).length === 0 ? null : limit };
}

/**
 * The NICs of the create request: one per network, with the chosen groups (none: the project's default).
 *
 * @example
 * nicRequests(['lan'], ['web']) // [{ network: 'lan', security_groups: ['web'] }]
 */
export function nicRequests(networks: readonly string[], groups: readonly string[]): NicRequest[] {
  return networks.map((network) => (groups.length === 0 ? network : { network, security_groups: [...groups] }));
}
