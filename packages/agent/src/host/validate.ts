import { isIP } from 'node:net';
import { FloeError, NAME_PATTERN } from '@floe/api';

/*
 * The checks of every value that reaches a host command, a path or a config
 * file of the agent (interface names, MACs, addresses, ids): one definition
 * each, used by the network and VM drivers alike. Each throws
 * `validation_failed` with the field it was given.
 */

/** floe's id shape (`net_`, `nic_` + ULID and similar); ids become interface names and paths. */
export const NET_ID_RE = /^[a-z]{2,8}_[0-9A-Za-z]{1,40}$/;
const IFNAME_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,14}$/;
const MAC_RE = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/;
const NETNS_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;
const HOSTNAME_RE = new RegExp(NAME_PATTERN);

/** A `validation_failed` error for `field`. */
export function invalid(field: string, message: string): FloeError {
  return new FloeError('validation_failed', message, { field });
}

/** An id that may reach an interface name or a path; throws `validation_failed` otherwise. */
export function checkId(field: string, id: string): string {
  if (typeof id !== 'string' || !NET_ID_RE.test(id))
    throw invalid(field, `${field} ${JSON.stringify(id)} is malformed`);
  return id;
}

/** Whether `name` is a Linux interface name floe accepts (≤ 15 characters, no `/`, whitespace or shell-ish characters). */
export function isIfName(name: unknown): name is string {
  return typeof name === 'string' && IFNAME_RE.test(name);
}

/** A Linux interface name (see isIfName). */
export function checkIfName(field: string, name: string): string {
  if (!isIfName(name)) throw invalid(field, `${field} ${JSON.stringify(name)} is not a valid interface name`);
  return name;
}

/** A network namespace name, as `ip netns` accepts and files under /run/netns may be named. */
export function checkNetns(field: string, name: string): string {
  if (typeof name !== 'string' || !NETNS_RE.test(name))
    throw invalid(field, `${field} ${JSON.stringify(name)} is not a valid namespace name`);
  return name;
}

/** Whether `mac` is a unicast Ethernet address in lower-case colon form. */
export function isMac(mac: unknown): mac is string {
  return typeof mac === 'string' && MAC_RE.test(mac) && !isMulticast(mac);
}

/** The group bit of the first octet. */
const isMulticast = (mac: string): boolean => (parseInt(mac.slice(0, 2), 16) & 1) === 1;

/** A unicast Ethernet address in lower-case colon form. */
export function checkMac(field: string, mac: string): string {
  if (typeof mac !== 'string' || !MAC_RE.test(mac))
    throw invalid(field, `${field} ${JSON.stringify(mac)} is not a lower-case MAC address`);
  if (isMulticast(mac)) throw invalid(field, `${field} ${mac} is a multicast MAC address`);
  return mac;
}

/** A DNS label used as a guest hostname. */
export function checkHostname(field: string, name: string): string {
  if (typeof name !== 'string' || name.length > 63 || !HOSTNAME_RE.test(name))
    throw invalid(field, `${field} ${JSON.stringify(name)} is not a DNS label`);
  return name;
}

/** The version of a bare address (no zone, no prefix), 0 when it is none. */
function ipVersion(ip: unknown): 0 | 4 | 6 {
  // isIP accepts zone ids (`fe80::1%eth0`); floe never wants one.
  return typeof ip === 'string' && !ip.includes('%') ? (isIP(ip) as 0 | 4 | 6) : 0;
}

/** A bare IPv4 or IPv6 address (no zone, no prefix); `family` pins the version. */
export function checkIp(field: string, ip: string, family?: 4 | 6): string {
  const v = ipVersion(ip);
  if (v === 0 || (family !== undefined && v !== family))
    throw invalid(field, `${field} ${JSON.stringify(ip)} is not an IPv${family ?? '4/6'} address`);
  return ip;
}

/** A parsed prefix: address, length and version. */
export interface Cidr {
  address: string;
  prefix: number;
  family: 4 | 6;
}

function splitCidr(value: unknown): { address: string; prefix: number; family: 0 | 4 | 6 } | null {
  const m = typeof value === 'string' ? /^([^/]+)\/(\d{1,3})$/.exec(value) : null;
  return m === null ? null : { address: m[1]!, prefix: Number(m[2]), family: ipVersion(m[1]) };
}

/** A network's `address/prefix`, with the prefix in range for its family (8..30 for v4, 8..128 for v6). */
export function checkCidr(field: string, cidr: string, family?: 4 | 6): Cidr {
  const c = splitCidr(cidr);
  if (c === null || c.family === 0 || (family !== undefined && c.family !== family))
    throw invalid(field, `${field} ${JSON.stringify(cidr)} is not an IPv${family ?? '4/6'} prefix`);
  const max = c.family === 4 ? 30 : 128;
  if (c.prefix < 8 || c.prefix > max) throw invalid(field, `${field} ${cidr} has a prefix length outside 8..${max}`);
  return { address: c.address, prefix: c.prefix, family: c.family };
}

/** `address/prefix` of any length of its family (routes may be host routes or wide aggregates). */
export function checkPrefix(field: string, value: string, family: 4 | 6): string {
  const c = splitCidr(value);
  if (c === null) throw invalid(field, `${field} ${JSON.stringify(value)} is not an IPv${family} prefix`);
  checkIp(field, c.address, family);
  checkInt(field, c.prefix, 0, family === 4 ? 32 : 128);
  return value;
}

/** An integer in [min, max]. */
export function checkInt(field: string, value: number, min: number, max: number): number {
  if (!Number.isInteger(value) || value < min || value > max)
    throw invalid(field, `${field} must be an integer from ${min} to ${max}, not ${value}`);
  return value;
}
