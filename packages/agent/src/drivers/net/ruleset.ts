import { checkNet, checkNic, type CheckedNet } from './checked-spec.js';
import { tapName } from './names.js';
import type { NetSpec, NicSpec } from './types.js';

/** The rules that pin one tap to its NIC's MAC and addresses and forbid it to act as a DHCP server or router. */
function tapChain(nic: NicSpec, net: CheckedNet | undefined): string[] {
  const tap = tapName(nic.id);
  const r: string[] = [];
  r.push(`\tchain tap_${tap} {`);
  r.push(`\t\tether saddr != ${nic.mac} drop`);
  r.push('\t\tether type != { ip, ip6, arp } drop');
  r.push('\t\tudp sport { 67, 547 } drop');
  r.push(`\t\tarp saddr ether != ${nic.mac} drop`);
  // A router VM forwards packets of other hosts and advertises itself: only its MAC is pinned.
  // On a public network the router is on the LAN, never a floe NIC.
  const router =
    net?.physical === null &&
    net.net.gatewayMode === 'vm' &&
    ((nic.ipv4 !== null && nic.ipv4 === net.v4?.gateway) || (nic.ipv6 !== null && nic.ipv6 === net.v6?.gateway));
  if (router) {
    r.push('\t}');
    return r;
  }
  r.push('\t\ticmpv6 type { nd-router-advert, nd-redirect } drop');
  if (nic.ipv4 !== null) {
    r.push(`\t\tarp saddr ip != { 0.0.0.0, ${nic.ipv4} } drop`);
    r.push('\t\tip saddr 0.0.0.0 udp sport 68 udp dport 67 accept');
    r.push(`\t\tip saddr != ${nic.ipv4} drop`);
  } else {
    r.push('\t\tether type { ip, arp } drop');
  }
  // Duplicate address detection and MLD start from the unspecified address.
  r.push('\t\tip6 saddr :: icmpv6 type { nd-neighbor-solicit, mld2-listener-report, mld-listener-report } accept');
  r.push(`\t\tip6 saddr != { fe80::/10${nic.ipv6 !== null ? `, ${nic.ipv6}` : ''} } drop`);
  r.push('\t}');
  return r;
}

/**
 * The whole floe firewall of a host as one `nft -f` transaction (each table is
 * declared, deleted and redefined, so applying it is atomic and idempotent):
 * `table bridge floe` pins every tap to its NIC (MAC, IPv4/ARP, IPv6 source,
 * no DHCP server, no RAs), on private and public bridges alike, and keeps each
 * host's gateway MAC off the VXLAN (the physical port of a public bridge is
 * not filtered);
 * `table inet floe_nat` drops routed traffic between floe bridges (isolation),
 * lets host-gateway networks out of their NAT interface with masquerade and keeps
 * other networks from being routed at all.
 *
 * @example
 * await run('nft', ['-f', '-'], { input: nftRuleset(nets, nics) });
 */
export function nftRuleset(nets: readonly NetSpec[], nics: readonly NicSpec[]): string {
  const checked = nets.map(checkNet);
  nics.forEach((n, i) => checkNic(n, `nics[${i}]`));
  const byId = new Map(checked.map((c) => [c.net.id, c]));
  const sortedNics = [...nics].sort((a, b) => a.id.localeCompare(b.id));
  const sortedNets = [...checked].sort((a, b) => a.net.id.localeCompare(b.net.id));

  const b: string[] = ['table bridge floe', 'delete table bridge floe', 'table bridge floe {'];
  b.push('\tchain prerouting {', '\t\ttype filter hook prerouting priority -200; policy accept;');
  for (const n of sortedNics) b.push(`\t\tiifname "${tapName(n.id)}" jump tap_${tapName(n.id)}`);
  // Each host answers as the gateway for its own guests only: the shared gateway MAC never crosses the VXLAN.
  // Public networks have no VXLAN, and their physical port is the LAN, not a guest: no rules for it.
  const privateNets = sortedNets.filter((c) => c.physical === null);
  for (const c of privateNets) b.push(`\t\tiifname "${c.vxlan}" ether saddr ${c.gatewayMac} drop`);
  b.push('\t}');
  b.push('\tchain output {', '\t\ttype filter hook output priority 0; policy accept;');
  for (const c of privateNets) b.push(`\t\toifname "${c.vxlan}" ether saddr ${c.gatewayMac} drop`);
  b.push('\t}');
  for (const n of sortedNics) b.push(...tapChain(n, byId.get(n.networkId)));
  b.push('}');

  const i: string[] = ['table inet floe_nat', 'delete table inet floe_nat', 'table inet floe_nat {'];
  i.push('\tchain forward {', '\t\ttype filter hook forward priority 0; policy accept;');
  // With br_netfilter loaded, frames bridged inside one network pass this hook too, in and out of the same bridge.
  for (const c of sortedNets) i.push(`\t\tiifname "${c.bridge}" oifname "${c.bridge}" accept`);
  // NAT first: the NAT interface may itself be a floe bridge, that of a public network holding the host's address.
  for (const c of privateNets) {
    if (c.net.gatewayMode === 'host' && c.net.natInterface !== undefined) {
      i.push(`\t\tiifname "${c.bridge}" oifname "${c.net.natInterface}" accept`);
      i.push(`\t\tiifname "${c.net.natInterface}" oifname "${c.bridge}" ct state established,related accept`);
    }
  }
  i.push('\t\tiifname "flbr*" oifname "flbr*" drop');
  // A public bridge is the host's own LAN interface: what the host routes there is none of floe's business.
  for (const c of privateNets) i.push(`\t\tiifname "${c.bridge}" drop`, `\t\toifname "${c.bridge}" drop`);
  i.push('\t}');
  i.push('\tchain postrouting {', '\t\ttype nat hook postrouting priority srcnat; policy accept;');
  for (const c of privateNets) {
    if (c.net.gatewayMode !== 'host' || c.net.natInterface === undefined) continue;
    if (c.v4) i.push(`\t\tip saddr ${c.v4.address}/${c.v4.prefix} oifname "${c.net.natInterface}" masquerade`);
    if (c.v6) i.push(`\t\tip6 saddr ${c.v6.address}/${c.v6.prefix} oifname "${c.net.natInterface}" masquerade`);
  }
  i.push('\t}', '}');
  return `${[...b, ...i].join('\n')}\n`;
}
