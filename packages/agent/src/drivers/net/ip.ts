import ipaddr from 'ipaddr.js';
import { checkCidr, checkIp, checkMac, invalid } from '../../host/validate.js';

/*
 * The address arithmetic of the network drivers, on ipaddr.js: netmasks,
 * subnet membership and SLAAC addresses. Inputs are checked first, so
 * ipaddr.js only ever parses what node's isIP accepts.
 */

/** The netmask of an IPv4 prefix length, as dnsmasq's dhcp-range wants it. */
export function ipv4Netmask(prefix: number): string {
  return ipaddr.IPv4.subnetMaskFromPrefixLength(prefix).toString();
}

/** Whether `ip` lies in the network `address/prefix` (false when the families differ). */
export function inSubnet(ip: string, network: string, prefix: number): boolean {
  const a = ipaddr.parse(checkIp('address', ip));
  const n = ipaddr.parse(checkIp('network', network));
  return a.kind() === n.kind() && a.match(n, prefix);
}

/**
 * The SLAAC (EUI-64) address of a MAC in a /64: what a guest configures from
 * floe's router advertisements, so IPAM can hand out exactly that address.
 */
export function eui64Address(cidr: string, mac: string): string {
  const c = checkCidr('cidr', cidr, 6);
  if (c.prefix !== 64) throw invalid('cidr', `SLAAC needs a /64, not /${c.prefix}`);
  const b = checkMac('mac', mac)
    .split(':')
    .map((x) => parseInt(x, 16));
  const iid = [b[0]! ^ 0x02, b[1]!, b[2]!, 0xff, 0xfe, b[3]!, b[4]!, b[5]!];
  const net = ipaddr.IPv6.networkAddressFromCIDR(cidr).toByteArray().slice(0, 8);
  // RFC 5952 form (the longest run of zero groups compressed), as `ip` prints addresses.
  return (ipaddr.fromByteArray([...net, ...iid]) as ipaddr.IPv6).toRFC5952String();
}
