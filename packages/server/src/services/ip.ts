import { createHash } from 'node:crypto';
import { FloeError } from '@floe/api';
import ipaddr from 'ipaddr.js';

/*
 * IP address text, parsed and formatted by ipaddr.js. IPAM counts through ranges, so an address is
 * also a number here: IPv4 a 32-bit number, IPv6 a 128-bit bigint, both taken from and given back to
 * ipaddr.js by their bytes. Addresses are strict: dotted quads without leading zeros, IPv6 groups of
 * one to four hex digits, no zone.
 */

// ---------------------------------------------------------------- IPv4

function v4Number(addr: ipaddr.IPv4): number {
  return addr.octets.reduce((n, o) => n * 256 + o, 0);
}

function v4Address(n: number): ipaddr.IPv4 {
  return new ipaddr.IPv4([n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255]);
}

/** Parse dotted-quad IPv4 text to a 32-bit number; `validation_failed` on `field` otherwise. */
export function parseIpv4(text: string, field = 'ipv4'): number {
  if (!ipaddr.IPv4.isValidFourPartDecimal(text))
    throw new FloeError('validation_failed', `"${text}" is not an IPv4 address`, { field });
  return v4Number(ipaddr.IPv4.parse(text));
}

/** 32-bit number → dotted quad. */
export function formatIpv4(n: number): string {
  return v4Address(n).toString();
}

/** A parsed IPv4 CIDR. */
export interface Cidr4 {
  network: number;
  prefix: number;
  /** Last address (broadcast). */
  broadcast: number;
}

/** Parse `a.b.c.d/n` (8 ≤ n ≤ 30, no host bits set). */
export function parseCidr4(text: string, field = 'ipv4'): Cidr4 {
  const m = /^([^/]+)\/([0-9]{1,2})$/.exec(text);
  const prefix = m ? Number(m[2]) : NaN;
  if (!m || !(prefix >= 8 && prefix <= 30)) {
    throw new FloeError('validation_failed', `"${text}" is not an IPv4 CIDR with a prefix from /8 to /30`, { field });
  }
  const address = parseIpv4(m[1]!, field);
  const mask = v4Number(ipaddr.IPv4.subnetMaskFromPrefixLength(prefix));
  const network = (address & mask) >>> 0;
  if (network !== address) {
    throw new FloeError(
      'validation_failed',
      `"${text}" has host bits set; the network is ${formatIpv4(network)}/${prefix}`,
      { field },
    );
  }
  return { network, prefix, broadcast: (network | ~mask) >>> 0 };
}

// ---------------------------------------------------------------- IPv6

function v6Number(addr: ipaddr.IPv6): bigint {
  return addr.toByteArray().reduce((n, b) => (n << 8n) | BigInt(b), 0n);
}

function v6Address(n: bigint): ipaddr.IPv6 {
  const bytes: number[] = [];
  for (let i = 15; i >= 0; i--) bytes.push(Number((n >> BigInt(i * 8)) & 0xffn));
  return new ipaddr.IPv6(bytes);
}

/**
 * Strict IPv6 text → ipaddr.js address. An IPv4 tail is read as its two groups (ipaddr.js would take
 * `::a.b.c.d` for `::ffff:a.b.c.d`).
 */
function ipv6Of(text: string, field: string): ipaddr.IPv6 {
  const bad = () => new FloeError('validation_failed', `"${text}" is not an IPv6 address`, { field });
  if (!/^[0-9a-fA-F:.]{2,45}$/.test(text)) throw bad();
  let hex = text;
  const tail = text.slice(text.lastIndexOf(':') + 1);
  if (tail.includes('.')) {
    const v4 = parseIpv4(tail, field);
    hex = `${text.slice(0, text.length - tail.length)}${(v4 >>> 16).toString(16)}:${(v4 & 0xffff).toString(16)}`;
  }
  if (hex.split(':').some((g) => g.length > 4)) throw bad();
  try {
    return ipaddr.IPv6.parse(hex);
  } catch {
    throw bad();
  }
}

/** Parse IPv6 text (with `::`, optionally an embedded IPv4 tail) to a 128-bit bigint. */
export function parseIpv6(text: string, field = 'ipv6'): bigint {
  return v6Number(ipv6Of(text, field));
}

/** 128-bit bigint → canonical IPv6 text (RFC 5952: lower case, longest zero run as `::`). */
export function formatIpv6(n: bigint): string {
  return v6Address(n).toRFC5952String();
}

/** 128 one bits. */
const ALL_ONES_128 = (1n << 128n) - 1n;

/** A parsed IPv6 CIDR. */
export interface Cidr6 {
  network: bigint;
  prefix: number;
  last: bigint;
}

/** Parse `addr/n` (48 ≤ n ≤ 120, no host bits set). */
export function parseCidr6(text: string, field = 'ipv6'): Cidr6 {
  const m = /^([^/]+)\/([0-9]{1,3})$/.exec(text);
  const prefix = m ? Number(m[2]) : NaN;
  if (!m || !(prefix >= 48 && prefix <= 120)) {
    throw new FloeError('validation_failed', `"${text}" is not an IPv6 CIDR with a prefix from /48 to /120`, { field });
  }
  const address = parseIpv6(m[1]!, field);
  const mask = v6Number(ipaddr.IPv6.subnetMaskFromPrefixLength(prefix));
  const network = address & mask;
  if (network !== address) throw new FloeError('validation_failed', `"${text}" has host bits set`, { field });
  return { network, prefix, last: network | (ALL_ONES_128 ^ mask) };
}

/** Canonical text of an IPv6 CIDR. */
export function formatCidr6(c: Cidr6): string {
  return `${formatIpv6(c.network)}/${c.prefix}`;
}

/**
 * A unique local /64 (RFC 4193) for `seed` (the network id): fd00::/8, then 40
 * bits of sha256(seed) as the global id, subnet 0. Random across networks,
 * stable for one.
 */
export function ula64(seed: string): string {
  const h = createHash('sha256').update(`floe-ula:${seed}`).digest();
  // fd + 40-bit global id + 16-bit subnet id (0) fill the top 64 bits.
  const bytes = [0xfd, ...h.subarray(0, 5), ...Array<number>(10).fill(0)];
  return `${new ipaddr.IPv6(bytes).toRFC5952String()}/64`;
}

/** The SLAAC address (modified EUI-64, RFC 4291) of `mac` inside the /64 `network`. */
export function eui64(network: bigint, mac: string): bigint {
  const b = mac.split(':').map((x) => parseInt(x, 16));
  const id = [b[0]! ^ 0x02, b[1]!, b[2]!, 0xff, 0xfe, b[3]!, b[4]!, b[5]!];
  return network | v6Number(new ipaddr.IPv6([...Array<number>(8).fill(0), ...id]));
}
