import { checkNet, checkNic, type CheckedNet } from './checked-spec.js';
import { tapName } from './names.js';
import { removeTablesScript, renderTables, setElementsScript, type NftChain, type NftTable } from './nft-tables.js';
import { sgTables, type SgTables } from './sg-ruleset.js';
import { vpnPortForwardRules } from './vpn-port.js';
import type { NetSpec, NicSpec, SecurityGroupSpec } from './types.js';

/*
 * The host's floe firewall, built whole from the networks and NICs of the
 * host. One chain per NIC (`tap_<tap>`, jumped to from the bridge's
 * prerouting hook) holds everything about that NIC; what a NIC may receive or
 * send by policy (security groups) will be chains and named sets of the same
 * kind, next to these.
 */

/** The name of the chain of a NIC's own rules. */
function nicChainName(nicId: string): string {
  return `tap_${tapName(nicId)}`;
}

/** Whether the NIC is the router VM of its network (its address is the gateway). */
function isRouter(nic: NicSpec, net: CheckedNet | undefined): boolean {
  // On a public network the router is on the LAN, never a floe NIC.
  return (
    net?.physical === null &&
    net.net.gatewayMode === 'vm' &&
    ((nic.ipv4 !== null && nic.ipv4 === net.v4?.gateway) || (nic.ipv6 !== null && nic.ipv6 === net.v6?.gateway))
  );
}

/** The rules that pin one tap to its NIC's MAC and addresses and forbid it to act as a DHCP server or router. */
function antiSpoofing(nic: NicSpec, net: CheckedNet | undefined): string[] {
  const r = [
    `ether saddr != ${nic.mac} drop`,
    'ether type != { ip, ip6, arp } drop',
    'udp sport { 67, 547 } drop',
    `arp saddr ether != ${nic.mac} drop`,
  ];
  // A router VM forwards packets of other hosts and advertises itself: only its MAC is pinned.
  if (isRouter(nic, net)) return r;
  r.push('icmpv6 type { nd-router-advert, nd-redirect } drop');
  if (nic.ipv4 !== null) {
    r.push(`arp saddr ip != { 0.0.0.0, ${nic.ipv4} } drop`);
    r.push('ip saddr 0.0.0.0 udp sport 68 udp dport 67 accept');
    r.push(`ip saddr != ${nic.ipv4} drop`);
  } else {
    r.push('ether type { ip, arp } drop');
  }
  // Duplicate address detection and MLD start from the unspecified address.
  r.push('ip6 saddr :: icmpv6 type { nd-neighbor-solicit, mld2-listener-report, mld-listener-report } accept');
  r.push(`ip6 saddr != { fe80::/10${nic.ipv6 !== null ? `, ${nic.ipv6}` : ''} } drop`);
  return r;
}

/**
 * `table bridge floe`: every tap jumps to its NIC's chain, on private and
 * public bridges alike; each host's gateway MAC stays off the VXLAN (the
 * physical port of a public bridge is not filtered).
 */
function bridgeTable(nets: readonly CheckedNet[], nics: readonly NicSpec[], sg: SgTables): NftTable {
  const byId = new Map(nets.map((c) => [c.net.id, c]));
  const privateNets = nets.filter((c) => c.physical === null);
  const prerouting: NftChain = {
    name: 'prerouting',
    hook: 'type filter hook prerouting priority -200; policy accept;',
    rules: [
      // One lookup per frame however many taps the host has.
      ...(nics.length === 0
        ? []
        : [`iifname vmap { ${nics.map((n) => `"${tapName(n.id)}" : jump ${nicChainName(n.id)}`).join(', ')} }`]),
      // Each host answers as the gateway for its own guests only: the shared gateway MAC never crosses the VXLAN.
      // Public networks have no VXLAN, and their physical port is the LAN, not a guest: no rules for it.
      ...privateNets.map((c) => `iifname "${c.vxlan}" ether saddr ${c.gatewayMac} drop`),
    ],
  };
  const output: NftChain = {
    name: 'output',
    hook: 'type filter hook output priority 0; policy accept;',
    rules: privateNets.map((c) => `oifname "${c.vxlan}" ether saddr ${c.gatewayMac} drop`),
  };
  const perNic = nics.map((n): NftChain => ({
    name: nicChainName(n.id),
    rules: antiSpoofing(n, byId.get(n.networkId)),
  }));
  const table: NftTable = { family: 'bridge', name: 'floe', chains: [prerouting, output, ...perNic, ...sg.chains] };
  return sg.sets.length > 0 ? { ...table, sets: sg.sets } : table;
}

/**
 * `table inet floe_nat`: routed traffic between floe bridges is dropped
 * (isolation), host-gateway networks go out of their NAT interface with
 * masquerade, and other private networks are not routed at all.
 */
function natTable(nets: readonly CheckedNet[]): NftTable {
  const privateNets = nets.filter((c) => c.physical === null);
  const natted = privateNets.filter((c) => c.net.gatewayMode === 'host' && c.net.natInterface !== undefined);
  const forward: string[] = [];
  // With br_netfilter loaded, frames bridged inside one network pass this hook too, in and out of the same bridge.
  for (const c of nets) forward.push(`iifname "${c.bridge}" oifname "${c.bridge}" accept`);
  // NAT first: the NAT interface may itself be a floe bridge, that of a public network holding the host's address.
  for (const c of natted) {
    forward.push(`iifname "${c.bridge}" oifname "${c.net.natInterface}" accept`);
    forward.push(`iifname "${c.net.natInterface}" oifname "${c.bridge}" ct state established,related accept`);
    // Floating IPs and forwarded ports (nat-rules.ts): new connections the host translated to a NIC of the network.
    forward.push(`iifname "${c.net.natInterface}" oifname "${c.bridge}" ct status dnat accept`);
  }
  // VPN gateways' interfaces reach the bridges; table floe_vpn (which runs first) decides which.
  if (privateNets.length > 0)
    forward.push('iifname "fv*" oifname "flbr*" accept', 'iifname "flbr*" oifname "fv*" accept');
  // VPN router ports carry VPN traffic between hosts (vpn-port.ts).
  for (const c of privateNets) forward.push(...vpnPortForwardRules(c));
  forward.push('iifname "flbr*" oifname "flbr*" drop');
  // A public bridge is the host's own LAN interface: what the host routes there is none of floe's business.
  for (const c of privateNets) forward.push(`iifname "${c.bridge}" drop`, `oifname "${c.bridge}" drop`);
  const postrouting: string[] = [];
  for (const c of natted) {
    if (c.v4) postrouting.push(`ip saddr ${c.v4.address}/${c.v4.prefix} oifname "${c.net.natInterface}" masquerade`);
    if (c.v6) postrouting.push(`ip6 saddr ${c.v6.address}/${c.v6.prefix} oifname "${c.net.natInterface}" masquerade`);
  }
  return {
    family: 'inet',
    name: 'floe_nat',
    chains: [
      { name: 'forward', hook: 'type filter hook forward priority 0; policy accept;', rules: forward },
      { name: 'postrouting', hook: 'type nat hook postrouting priority srcnat; policy accept;', rules: postrouting },
    ],
  };
}

/** What the firewall is built from: this host's networks, its local NICs, and the security groups they use or name. */
export interface FirewallInput {
  nets: readonly NetSpec[];
  nics: readonly NicSpec[];
  groups?: readonly SecurityGroupSpec[];
}

const MARKS = { family: 'inet', name: 'floe_sg' } as const;

/**
 * The tables of the host's whole floe firewall: the bridge table (per-NIC
 * anti-spoofing, gateway MACs off the VXLAN, and the security groups of
 * filtered NICs, sg-ruleset.ts), the NAT table (isolation between networks,
 * masquerade of host gateways), and the table marking established
 * connections for the security groups (absent when no NIC is filtered).
 * Networks and NICs are sorted by id, so the same host gives the same tables.
 */
export function firewallTables({ nets, nics, groups = [] }: FirewallInput): NftTable[] {
  const checked = nets.map(checkNet);
  nics.forEach((n, i) => checkNic(n, `nics[${i}]`));
  const sortedNics = [...nics].sort((a, b) => a.id.localeCompare(b.id));
  const sortedNets = [...checked].sort((a, b) => a.net.id.localeCompare(b.net.id));
  const sg = sgTables(sortedNics, groups);
  return [bridgeTable(sortedNets, sortedNics, sg), natTable(sortedNets), ...(sg.marks ? [sg.marks] : [])];
}

/**
 * The `nft -f` script of `firewallTables`: each table declared, deleted and
 * redefined, so applying it is atomic and idempotent; the marking table is
 * removed when the tables have none.
 */
export function renderFirewall(tables: readonly NftTable[]): string {
  const marked = tables.some((t) => t.family === MARKS.family && t.name === MARKS.name);
  return renderTables(tables) + (marked ? '' : removeTablesScript([MARKS]));
}

/**
 * The whole floe firewall of a host as one `nft -f` transaction (see
 * `firewallTables` and `renderFirewall`).
 *
 * @example
 * await run('nft', ['-f', '-'], { input: nftRuleset(nets, nics) });
 */
export function nftRuleset(
  nets: readonly NetSpec[],
  nics: readonly NicSpec[],
  groups: readonly SecurityGroupSpec[] = [],
): string {
  return renderFirewall(firewallTables({ nets, nics, groups }));
}

/** A table with its sets emptied: what stays the same when only members of groups come and go. */
const withoutElements = (t: NftTable): NftTable => ({
  ...t,
  ...(t.sets === undefined ? {} : { sets: t.sets.map((s) => ({ ...s, elements: [] })) }),
});

/**
 * How to go from the firewall `before` (as applied) to `after` in place, when
 * they differ in the elements of named sets only (members of security groups
 * came or went, the rules and NICs are the same): one `nft -f` transaction
 * that flushes and refills just the sets that changed; '' when nothing
 * changed. Null when anything else differs: then the whole ruleset is needed.
 */
export function memberSetUpdate(before: readonly NftTable[], after: readonly NftTable[]): string | null {
  if (JSON.stringify(before.map(withoutElements)) !== JSON.stringify(after.map(withoutElements))) return null;
  const out: string[] = [];
  after.forEach((t, i) => {
    const old = new Map((before[i]?.sets ?? []).map((s) => [s.name, s.elements.join(',')]));
    const changed = (t.sets ?? []).filter((s) => old.get(s.name) !== s.elements.join(','));
    out.push(setElementsScript(t, changed));
  });
  return out.join('');
}
