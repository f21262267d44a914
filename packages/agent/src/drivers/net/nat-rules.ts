import type { DesiredForward } from '@floe/api';
import { checkIfName, checkInt, checkIp, invalid } from '../../host/validate.js';
import { checkId } from './names.js';
import { renderTables, type NftTable } from './nft-tables.js';

/*
 * NAT of public traffic to NICs, as one nftables table (`ip floe_fwd`) that
 * is replaced whole in one transaction: floating IPs one to one (destination
 * NAT of everything sent to the address, source NAT of what the NIC sends out
 * of the host's NAT interface), and ports forwarded from a floating IP or
 * from the host's own addresses. Its chains run just before floe's
 * masquerade, so a NIC with a floating IP leaves from that address, and its
 * forward-path filtering (isolation, security groups) sees the translated
 * packets. The host holds each public address (/32) on the NAT interface, so
 * that it answers ARP for it.
 */

/** The NAT of one local NIC. */
export interface NatNic {
  nicId: string;
  /** The NIC's private address, what is NATed to. */
  ipv4: string;
  /** Where the NIC's network leaves the host (the network's NAT interface). */
  natInterface: string;
  floatingIpv4: string | null;
  forwards: readonly DesiredForward[];
}

/** The table's name and family. */
const NAT_TABLE = { family: 'ip', name: 'floe_fwd' } as const;

function checked(n: NatNic, i: number): NatNic {
  const at = `nat[${i}]`;
  checkId(`${at}.nic_id`, n.nicId);
  checkIp(`${at}.ipv4`, n.ipv4, 4);
  checkIfName(`${at}.nat_interface`, n.natInterface);
  if (n.floatingIpv4 !== null) checkIp(`${at}.floating_ipv4`, n.floatingIpv4, 4);
  n.forwards.forEach((f, j) => {
    if (f.protocol !== 'tcp' && f.protocol !== 'udp') throw invalid(`${at}.forwards[${j}].protocol`, 'tcp or udp');
    if (f.address !== null) checkIp(`${at}.forwards[${j}].address`, f.address, 4);
    checkInt(`${at}.forwards[${j}].port`, f.port, 1, 65535);
    checkInt(`${at}.forwards[${j}].target_port`, f.target_port, 1, 65535);
  });
  return n;
}

/**
 * The table for these NICs. Rules go from the most to the least specific, as
 * the first translation wins: ports of a public address, then public addresses
 * whole (one to one), then ports of the host's own addresses (but not of the
 * public addresses it holds). Each group is sorted (NIC, protocol, port), so the
 * same NAT gives the same text.
 */
function natTable(nics: readonly NatNic[]): NftTable {
  const sorted = nics.map(checked).sort((a, b) => a.nicId.localeCompare(b.nicId));
  const publicAddrs = [...new Set(natAddresses(sorted).map((a) => a.split('@')[0]!))];
  const onAddress: string[] = [];
  const oneToOne: string[] = [];
  const onHost: string[] = [];
  const post: string[] = [];
  const notPublic = publicAddrs.length === 0 ? '' : ` ip daddr != { ${publicAddrs.join(', ')} }`;
  for (const n of sorted) {
    const forwards = [...n.forwards].sort((a, b) => a.protocol.localeCompare(b.protocol) || a.port - b.port);
    for (const f of forwards) {
      const rule = `${f.protocol} dport ${f.port} dnat to ${n.ipv4}:${f.target_port}`;
      if (f.address === null) onHost.push(`fib daddr type local${notPublic} ${rule}`);
      else onAddress.push(`ip daddr ${f.address} ${rule}`);
    }
    if (n.floatingIpv4 !== null) {
      oneToOne.push(`ip daddr ${n.floatingIpv4} dnat to ${n.ipv4}`);
      post.push(`ip saddr ${n.ipv4} oifname "${n.natInterface}" snat to ${n.floatingIpv4}`);
    }
  }
  return {
    ...NAT_TABLE,
    chains: [
      {
        name: 'prerouting',
        hook: 'type nat hook prerouting priority dstnat - 10; policy accept;',
        rules: [...onAddress, ...oneToOne, ...onHost],
      },
      { name: 'postrouting', hook: 'type nat hook postrouting priority srcnat - 10; policy accept;', rules: post },
    ],
  };
}

/**
 * The `nft -f` script that replaces the NAT table.
 *
 * @example
 * await exec(['nft', '-f', '-'], { input: natScript(nics) });
 */
export function natScript(nics: readonly NatNic[]): string {
  return renderTables([natTable(nics)]);
}

/** The public addresses the host holds for these NICs, as `address@interface`, sorted. */
export function natAddresses(nics: readonly NatNic[]): string[] {
  const out = new Set<string>();
  for (const [i, n] of nics.entries()) {
    checked(n, i);
    if (n.floatingIpv4 !== null) out.add(`${n.floatingIpv4}@${n.natInterface}`);
    for (const f of n.forwards) if (f.address !== null) out.add(`${f.address}@${n.natInterface}`);
  }
  return [...out].sort();
}
