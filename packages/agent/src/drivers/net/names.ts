import { createHash } from 'node:crypto';
import { isIP } from 'node:net';
import { FloeError, NAME_PATTERN } from '@floe/api';

/** Linux's IFNAMSIZ minus the terminating NUL. */
export const MAX_IFNAME = 15;
/** Hex digits of the id hash in interface names: prefix (4) + 11 = 15. */
const HASH_LEN = 11;
/** floe's id shape (`net_`, `nic_` + ULID and similar); ids become interface names and paths. */
export const NET_ID_RE = /^[a-z]{2,8}_[0-9A-Za-z]{1,40}$/;
const IFNAME_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,14}$/;
const MAC_RE = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/;
const NETNS_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;
const HOSTNAME_RE = new RegExp(NAME_PATTERN);

function invalid(field: string, message: string): FloeError {
  return new FloeError('validation_failed', message, { field });
}

/** An id that may reach an interface name or a path; throws `validation_failed` otherwise. */
export function checkId(field: string, id: string): string {
  if (typeof id !== 'string' || !NET_ID_RE.test(id))
    throw invalid(field, `${field} ${JSON.stringify(id)} is malformed`);
  return id;
}

function hashed(prefix: string, id: string, field: string): string {
  checkId(field, id);
  return prefix + createHash('sha256').update(id).digest('hex').slice(0, HASH_LEN);
}

/** The bridge of a network on every host: `flbr` + 11 hex of sha256(id), 15 characters. */
export function bridgeName(netId: string): string {
  return hashed('flbr', netId, 'network_id');
}

/** The VXLAN device of a network: `flvx` + 11 hex of sha256(id). */
export function vxlanName(netId: string): string {
  return hashed('flvx', netId, 'network_id');
}

/** The tap of a NIC: `fltp` + 11 hex of sha256(id). */
export function tapName(nicId: string): string {
  return hashed('fltp', nicId, 'nic_id');
}

/** A Linux interface name (≤ 15 characters, no `/`, whitespace or shell-ish characters). */
export function checkIfName(field: string, name: string): string {
  if (typeof name !== 'string' || !IFNAME_RE.test(name))
    throw invalid(field, `${field} ${JSON.stringify(name)} is not a valid interface name`);
  return name;
}

/** A network namespace name, as `ip netns` accepts and files under /run/netns may be named. */
export function checkNetns(field: string, name: string): string {
  if (typeof name !== 'string' || !NETNS_RE.test(name))
    throw invalid(field, `${field} ${JSON.stringify(name)} is not a valid namespace name`);
  return name;
}

/** A unicast Ethernet address in lower-case colon form. */
export function checkMac(field: string, mac: string): string {
  if (typeof mac !== 'string' || !MAC_RE.test(mac))
    throw invalid(field, `${field} ${JSON.stringify(mac)} is not a lower-case MAC address`);
  if ((parseInt(mac.slice(0, 2), 16) & 1) === 1) throw invalid(field, `${field} ${mac} is a multicast MAC address`);
  return mac;
}

/** A DNS label used as a guest hostname. */
export function checkHostname(field: string, name: string): string {
  if (typeof name !== 'string' || name.length > 63 || !HOSTNAME_RE.test(name))
    throw invalid(field, `${field} ${JSON.stringify(name)} is not a DNS label`);
  return name;
}

/** A bare IPv4 or IPv6 address (no zone, no prefix); `family` pins the version. */
export function checkIp(field: string, ip: string, family?: 4 | 6): string {
  // isIP accepts zone ids (`fe80::1%eth0`); floe never wants one.
  const v = typeof ip === 'string' && !ip.includes('%') ? isIP(ip) : 0;
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

/** `address/prefix` with the prefix in range for its family (≤ 30 for v4, ≤ 64..128 for v6). */
export function checkCidr(field: string, cidr: string, family?: 4 | 6): Cidr {
  const m = typeof cidr === 'string' ? /^([^/]+)\/(\d{1,3})$/.exec(cidr) : null;
  const v = m && !m[1]!.includes('%') ? isIP(m[1]!) : 0;
  if (!m || v === 0 || (family !== undefined && v !== family))
    throw invalid(field, `${field} ${JSON.stringify(cidr)} is not an IPv${family ?? '4/6'} prefix`);
  const prefix = Number(m[2]);
  const max = v === 4 ? 30 : 128;
  if (prefix < 8 || prefix > max) throw invalid(field, `${field} ${cidr} has a prefix length outside 8..${max}`);
  return { address: m[1]!, prefix, family: v as 4 | 6 };
}

/** An integer in [min, max]. */
export function checkInt(field: string, value: number, min: number, max: number): number {
  if (!Number.isInteger(value) || value < min || value > max)
    throw invalid(field, `${field} must be an integer from ${min} to ${max}, not ${value}`);
  return value;
}

/** The netmask of an IPv4 prefix length, as dnsmasq's dhcp-range wants it. */
export function ipv4Netmask(prefix: number): string {
  const mask = prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0;
  return [24, 16, 8, 0].map((s) => (mask >>> s) & 0xff).join('.');
}

function v6ToBigInt(ip: string): bigint {
  const [head = '', tail] = ip.split('::') as [string, string | undefined];
  const h = head === '' ? [] : head.split(':');
  const t = tail === undefined || tail === '' ? [] : tail.split(':');
  const groups = tail === undefined ? h : [...h, ...Array<string>(8 - h.length - t.length).fill('0'), ...t];
  return groups.reduce((acc, g) => (acc << 16n) | BigInt(parseInt(g, 16)), 0n);
}

function bigIntToV6(n: bigint): string {
  const groups: string[] = [];
  for (let i = 7; i >= 0; i--) groups.push(((n >> BigInt(i * 16)) & 0xffffn).toString(16));
  // Compress the longest run of zero groups, as `ip` prints addresses.
  let best = -1,
    bestLen = 0;
  for (let i = 0; i < 8;) {
    if (groups[i] !== '0') {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === '0') j++;
    if (j - i > bestLen && j - i > 1) {
      best = i;
      bestLen = j - i;
    }
    i = j;
  }
  if (best < 0) return groups.join(':');
  return `${groups.slice(0, best).join(':')}::${groups.slice(best + bestLen).join(':')}`;
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
  const iid = [b[0]! ^ 0x02, b[1]!, b[2]!, 0xff, 0xfe, b[3]!, b[4]!, b[5]!].reduce(
    (acc, x) => (acc << 8n) | BigInt(x),
    0n,
  );
  const net = (v6ToBigInt(c.address) >> 64n) << 64n;
  return bigIntToV6(net | iid);
}
