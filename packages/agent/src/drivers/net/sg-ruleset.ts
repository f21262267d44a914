import { createHash } from 'node:crypto';
import { isIP } from 'node:net';
import { checkId, checkInt, checkIp, checkPrefix, invalid } from '../../host/validate.js';
import { tapName } from './names.js';
import type { NftChain, NftSet, NftTable } from './nft-tables.js';
import type { NicSpec, SecurityGroupSpec, SgRule } from './types.js';

/*
 * Security groups on a host, in nftables. Frames bridged between two taps, and
 * frames between a tap and the host (its gateway, DHCP, DNS, metadata, and
 * what it routes or forwards from outside), are judged in the bridge family
 * per tap: the `forward`, `input` and `output` hooks send a tap's outgoing
 * frames to the egress chain of its set of groups (`sgo_<hash>`) and its
 * incoming ones to their ingress chain (`sgi_<hash>`), through verdict maps
 * keyed by interface name; NICs with the same groups share these chains, so
 * the ruleset grows by one map element per NIC, not by chains. Those jump to
 * one chain per group and direction (`sg_<group>_in`/`_out`) holding the
 * group's allow rules, whose
 * remotes are CIDRs or named sets of a group's member addresses
 * (`sgm4_<group>`, `sgm6_<group>`): a rule costs one line however many
 * members its remote group has, and a member coming or going changes a set's
 * elements, not the rules.
 *
 * Stateful: the bridge family has no connection tracking of its own here, but
 * br_netfilter tracks bridged IP packets in the inet hooks. `table inet
 * floe_sg` marks packets of established and related connections as they
 * enter (prerouting, after conntrack) or leave the host (output); the bridge
 * chains let marked packets through first and clear the mark. Anti-spoofing
 * (bridge prerouting, priority -200) runs before all of it. Nothing here
 * rewrites addresses: DNAT in prerouting has happened by the time a frame
 * reaches the bridge hooks, so forwarded ports are judged on their target.
 */

/** The packet mark bit of established/related connections (cleared again by the bridge chains). */
const SG_ESTABLISHED_MARK = 0x00100000;
const MARK = `0x${SG_ESTABLISHED_MARK.toString(16).padStart(8, '0')}`;
const UNMARK = `0x${(~SG_ESTABLISHED_MARK >>> 0).toString(16).padStart(8, '0')}`;

/** Neighbour discovery and multicast listener messages: never filtered (the network does not work without them). */
const ND_IN = 'icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert, nd-router-advert, mld-listener-query } accept';
const ND_OUT =
  'icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert, nd-router-solicit, mld-listener-report, mld2-listener-report } accept';

/** Whether a NIC's traffic is filtered by security groups. */
function isFiltered(nic: NicSpec): boolean {
  return nic.filtering !== false && nic.securityGroups !== undefined;
}

/** The groups of a NIC, sorted: NICs with the same ones share their chains. */
const groupsKey = (nic: NicSpec) => [...(nic.securityGroups ?? [])].sort().join(',');
/** The chains of a set of groups (`sgi_`/`sgo_` + 16 hex of sha256 of their sorted ids). */
const comboChain = (prefix: 'sgi' | 'sgo', key: string) =>
  `${prefix}_${createHash('sha256').update(key).digest('hex').slice(0, 16)}`;
const sgIngress = (nic: NicSpec) => comboChain('sgi', groupsKey(nic));
const sgEgress = (nic: NicSpec) => comboChain('sgo', groupsKey(nic));
const groupChain = (id: string, dir: 'in' | 'out') => `sg_${id}_${dir}`;
const memberSet = (id: string, family: 4 | 6) => `sgm${family}_${id}`;

/** The family of a CIDR or address a rule names. */
function familyOf(field: string, cidr: string): 4 | 6 {
  const v = isIP(cidr.split('/')[0] ?? '');
  if (v !== 4 && v !== 6) throw invalid(field, `${field} ${JSON.stringify(cidr)} is not an IPv4/IPv6 prefix`);
  if (cidr.includes('/')) checkPrefix(field, cidr, v);
  else checkIp(field, cidr, v);
  return v;
}

/** The protocol and port part of a rule (`tcp dport 80-90`), or null when the rule's protocol is of the other family. */
function l4Match(r: SgRule, field: string, family: 4 | 6): string | null {
  if (r.protocol === 'icmp') return family === 4 ? 'meta l4proto icmp' : null;
  if (r.protocol === 'icmpv6') return family === 6 ? 'meta l4proto ipv6-icmp' : null;
  if (r.protocol === 'any') return '';
  if (r.protocol !== 'tcp' && r.protocol !== 'udp')
    throw invalid(`${field}.protocol`, `unknown protocol ${String(r.protocol)}`);
  if (r.portMin === null) return `meta l4proto ${r.protocol}`;
  const lo = checkInt(`${field}.port_min`, r.portMin, 1, 65535);
  const hi = checkInt(`${field}.port_max`, r.portMax ?? lo, lo, 65535);
  return `${r.protocol} dport ${lo === hi ? lo : `${lo}-${hi}`}`;
}

/** The nft lines of one allow rule: one for a CIDR or anywhere, one per family for a remote group. */
function ruleLines(r: SgRule, field: string, known: ReadonlySet<string>): string[] {
  const dir = r.direction === 'ingress' ? 'saddr' : 'daddr';
  const line = (...parts: string[]) => [...parts, 'accept'].filter((p) => p !== '').join(' ');
  const ipk = (f: 4 | 6) => (f === 4 ? 'ip' : 'ip6');
  if (r.remoteCidr !== null) {
    const f = familyOf(`${field}.remote_cidr`, r.remoteCidr);
    const l4 = l4Match(r, field, f);
    return l4 === null ? [] : [line(`${ipk(f)} ${dir} ${r.remoteCidr}`, l4)];
  }
  if (r.remoteGroup !== null) {
    checkId(`${field}.remote_group`, r.remoteGroup);
    // A remote group this host was not told about has no members here: nothing matches it.
    if (!known.has(r.remoteGroup)) return [];
    const group = r.remoteGroup;
    return ([4, 6] as const).flatMap((f) => {
      const l4 = l4Match(r, field, f);
      return l4 === null ? [] : [line(`${ipk(f)} ${dir} @${memberSet(group, f)}`, l4)];
    });
  }
  return [line(l4Match(r, field, r.protocol === 'icmpv6' ? 6 : 4) ?? '')];
}

/** The parts of the bridge table and the inet marking table that enforce security groups on `nics`. */
export interface SgTables {
  sets: NftSet[];
  /** Base chains (`sg_forward`, `sg_input`, `sg_output`) and the per-NIC and per-group chains. */
  chains: NftChain[];
  /** `table inet floe_sg`, null when no NIC is filtered. */
  marks: NftTable | null;
}

/**
 * Build the security-group part of the host's firewall: for each set of groups
 * filtered NICs have (sorted) its ingress and egress chains, which the NICs'
 * taps (sorted by NIC id) are mapped to; for each group a NIC uses its
 * rule chains; for each group a rule names as remote its member sets. A NIC
 * naming a group the host was not sent is refused: the reconciler waits for it.
 */
export function sgTables(nics: readonly NicSpec[], groups: readonly SecurityGroupSpec[]): SgTables {
  const filtered = nics.filter(isFiltered);
  if (filtered.length === 0) return { sets: [], chains: [], marks: null };
  const byId = new Map<string, SecurityGroupSpec>();
  groups.forEach((g, i) => {
    checkId(`security_groups[${i}].id`, g.id);
    byId.set(g.id, g);
  });
  const used = new Set<string>();
  for (const n of filtered)
    for (const g of n.securityGroups ?? []) {
      checkId(`nic ${n.id}.security_groups`, g);
      if (!byId.has(g)) throw invalid('security_groups', `security group ${g} of NIC ${n.id} is unknown on this host`);
      used.add(g);
    }
  const usedSorted = [...used].sort();
  const known = new Set(byId.keys());
  const remotes = new Set<string>();
  const groupChains: NftChain[] = [];
  for (const id of usedSorted) {
    const g = byId.get(id)!;
    const lines = { ingress: [] as string[], egress: [] as string[] };
    g.rules.forEach((r, i) => {
      const field = `security_groups.${id}.rules[${i}]`;
      if (r.direction !== 'ingress' && r.direction !== 'egress')
        throw invalid(`${field}.direction`, 'unknown direction');
      if (r.remoteGroup !== null && known.has(r.remoteGroup)) remotes.add(r.remoteGroup);
      lines[r.direction].push(...ruleLines(r, field, known));
    });
    groupChains.push({ name: groupChain(id, 'in'), rules: lines.ingress });
    groupChains.push({ name: groupChain(id, 'out'), rules: lines.egress });
  }
  const sets: NftSet[] = [];
  for (const id of [...remotes].sort()) {
    const members = byId.get(id)!.members;
    const fam = (f: 4 | 6) =>
      [...new Set(members.filter((m) => familyOf(`security_groups.${id}.members`, m) === f))].sort();
    sets.push({ name: memberSet(id, 4), type: 'ipv4_addr', flags: ['interval'], elements: fam(4) });
    sets.push({ name: memberSet(id, 6), type: 'ipv6_addr', flags: ['interval'], elements: fam(6) });
  }
  const nicChains: NftChain[] = [];
  const combos = new Map(filtered.map((n) => [groupsKey(n), n]));
  for (const n of [...combos.keys()].sort().map((k) => combos.get(k)!)) {
    const gs = [...(n.securityGroups ?? [])].sort();
    const open = (d: 'ingressDefault' | 'egressDefault') => gs.some((g) => byId.get(g)![d] === 'allow');
    nicChains.push({
      name: sgIngress(n),
      rules: [
        'ether type != { ip, ip6 } accept',
        ND_IN,
        'udp sport { 67, 547 } udp dport { 68, 546 } accept',
        ...gs.map((g) => `jump ${groupChain(g, 'in')}`),
        ...(open('ingressDefault') ? [] : ['drop']),
      ],
    });
    nicChains.push({
      name: sgEgress(n),
      rules: [
        'ether type != { ip, ip6 } accept',
        ND_OUT,
        'udp sport { 68, 546 } udp dport { 67, 547 } accept',
        ...gs.map((g) => `jump ${groupChain(g, 'out')}`),
        ...(open('egressDefault') ? [] : ['drop']),
      ],
    });
  }
  const map = (sel: (n: NicSpec) => string) =>
    `{ ${filtered.map((n) => `"${tapName(n.id)}" : jump ${sel(n)}`).join(', ')} }`;
  const established = `meta mark & ${MARK} == ${MARK} accept`;
  // Frames passed up to the host go on into its IP stack: the mark is cleared there, so it reaches no routing rule.
  const establishedUp = `meta mark & ${MARK} == ${MARK} meta mark set meta mark & ${UNMARK} accept`;
  const base: NftChain[] = [
    {
      name: 'sg_forward',
      hook: 'type filter hook forward priority 0; policy accept;',
      rules: [established, `iifname vmap ${map(sgEgress)}`, `oifname vmap ${map(sgIngress)}`],
    },
    {
      name: 'sg_input',
      hook: 'type filter hook input priority 0; policy accept;',
      rules: [establishedUp, `iifname vmap ${map(sgEgress)}`],
    },
    {
      name: 'sg_output',
      hook: 'type filter hook output priority 100; policy accept;',
      rules: [established, `oifname vmap ${map(sgIngress)}`],
    },
  ];
  const mark = `ct state established,related meta mark set meta mark | ${MARK}`;
  const marks: NftTable = {
    family: 'inet',
    name: 'floe_sg',
    chains: [
      { name: 'prerouting', hook: 'type filter hook prerouting priority -150; policy accept;', rules: [mark] },
      { name: 'output', hook: 'type filter hook output priority -150; policy accept;', rules: [mark] },
    ],
  };
  return { sets, chains: [...base, ...nicChains, ...groupChains], marks };
}
