import { createHash } from 'node:crypto';
import { FloeError } from '@floe/api';
import { isIP } from 'node:net';
import { checkIfName } from '../../host/validate.js';
import type { ObservedInterface, VpnInterfaceSpec, VpnPeerStats, WireguardMode } from './types.js';

/*
 * The commands and files of the VPN area, built from data (pure): interface names, `ip`, `wg` and
 * `wireguard-go` argv, the peer changes `wg set` makes in place, and the nftables table.
 */

/** One command as argv. */
export type Argv = readonly string[];

/** Prefix of floe's WireGuard interfaces. */
export const VPN_IF_PREFIX = 'fv';
/** The nftables table of the VPN area. */
const VPN_TABLE = 'floe_vpn';

/** The interface of a VPN network on every gateway: `fv` + 11 hex of sha256(id), 13 characters. */
export function vpnIfName(vpnNetworkId: string): string {
  if (!/^[A-Za-z0-9_-]{1,100}$/.test(vpnNetworkId))
    throw new FloeError('validation_failed', `VPN network id ${JSON.stringify(vpnNetworkId)} is malformed`, {
      field: 'id',
    });
  return VPN_IF_PREFIX + createHash('sha256').update(vpnNetworkId).digest('hex').slice(0, 11);
}

/** A CIDR of either family with any prefix length (a /32 or /128 included); `validation_failed` otherwise. */
function checkCidr(field: string, cidr: string): { address: string; prefix: number; family: 4 | 6 } {
  const m = /^([0-9a-fA-F:.]{2,45})\/([0-9]{1,3})$/.exec(cidr);
  const family = m === null ? 0 : isIP(m[1]!);
  const prefix = m === null ? NaN : Number(m[2]);
  if (m === null || family === 0 || !(prefix >= 0 && prefix <= (family === 4 ? 32 : 128)))
    throw new FloeError('validation_failed', `${field} ${JSON.stringify(cidr)} is not a CIDR`, { field });
  return { address: m[1]!.toLowerCase(), prefix, family: family as 4 | 6 };
}

const KEY_RE = /^[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=$/;

/** Checks every name, key, port and prefix of a spec before any of it reaches a command. */
export function checkSpec(spec: VpnInterfaceSpec): VpnInterfaceSpec {
  checkIfName('name', spec.name);
  if (!spec.name.startsWith(VPN_IF_PREFIX))
    throw new FloeError('validation_failed', `${spec.name} is not a floe VPN interface`, { field: 'name' });
  if (!Number.isInteger(spec.listenPort) || spec.listenPort < 1 || spec.listenPort > 65535)
    throw new FloeError('validation_failed', `listen port ${spec.listenPort} is out of range`, {
      field: 'listen_port',
    });
  if (!KEY_RE.test(spec.privateKey))
    throw new FloeError('validation_failed', 'the private key is not a WireGuard key', { field: 'private_key' });
  for (const a of spec.addresses) checkCidr('addresses', a);
  for (const r of spec.reach) checkCidr('reach', r);
  for (const p of spec.peers) {
    if (!KEY_RE.test(p.publicKey))
      throw new FloeError('validation_failed', `peer key ${JSON.stringify(p.publicKey)} is malformed`, {
        field: 'peers',
      });
    for (const a of p.allowedIps) checkCidr('allowed_ips', a);
    if (p.endpoint != null && !/^([A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\]):[0-9]{1,5}$/.test(p.endpoint))
      throw new FloeError('validation_failed', `peer endpoint ${JSON.stringify(p.endpoint)} is not host:port`, {
        field: 'endpoint',
      });
  }
  return spec;
}

/** Create the interface: a kernel link, or a wireguard-go daemon (which makes a tun device and stays). */
export function createCommand(mode: WireguardMode, name: string): Argv {
  return mode === 'kernel' ? ['ip', 'link', 'add', name, 'type', 'wireguard'] : ['wireguard-go', name];
}

/** The private key (from a file only root reads, removed right after; never in argv) and the listen port. */
export function setKeyCommand(name: string, listenPort: number, keyFile: string): Argv {
  return ['wg', 'set', name, 'listen-port', String(listenPort), 'private-key', keyFile];
}

/** Read an interface: `wg show <if> dump`. */
export function dumpCommand(name: string): Argv {
  return ['wg', 'show', name, 'dump'];
}

/**
 * Parse `wg show <if> dump`: the interface line (private key, public key, port, fwmark), then one line
 * per peer (public key, preshared key, endpoint, allowed ips, latest handshake, rx, tx, keepalive).
 * The private key is not kept.
 */
export function parseDump(text: string): ObservedInterface {
  const lines = text.split('\n').filter((l) => l.trim() !== '');
  const head = (lines[0] ?? '').split('\t');
  const peers: VpnPeerStats[] = lines.slice(1).map((l) => {
    const f = l.split('\t');
    return {
      publicKey: f[0] ?? '',
      endpoint: f[2] === undefined || f[2] === '(none)' ? null : f[2],
      allowedIps: f[3] === undefined || f[3] === '(none)' ? [] : f[3].split(','),
      latestHandshake: Number(f[4] ?? 0),
      rxBytes: Number(f[5] ?? 0),
      txBytes: Number(f[6] ?? 0),
    };
  });
  return { publicKey: head[1] ?? '', listenPort: Number(head[2] ?? 0), peers };
}

const sameSet = (a: readonly string[], b: readonly string[]) =>
  a.length === b.length && [...a].sort().join(',') === [...b].sort().join(',');

/**
 * The one `wg set` that turns the observed peers into the desired ones: peers that go are removed, new
 * ones added, changed allowed-ips replaced. Unchanged peers are not named, so their sessions go on.
 * Null when nothing changes.
 */
export function peerCommand(name: string, observed: ObservedInterface, spec: VpnInterfaceSpec): Argv | null {
  const args: string[] = [];
  const want = new Map(spec.peers.map((p) => [p.publicKey, p]));
  for (const p of observed.peers) if (!want.has(p.publicKey)) args.push('peer', p.publicKey, 'remove');
  const have = new Map(observed.peers.map((p) => [p.publicKey, p]));
  for (const p of spec.peers) {
    const h = have.get(p.publicKey);
    // A peer the gateway dials (site-to-site): its endpoint is set until it has one (wg may learn a newer one).
    const endpoint = p.endpoint ?? null;
    const dial = endpoint !== null && (h === undefined || h.endpoint === null);
    if (h !== undefined && sameSet(h.allowedIps, p.allowedIps.map(canonicalWgCidr)) && !dial) continue;
    args.push('peer', p.publicKey, 'allowed-ips', p.allowedIps.join(','));
    if (dial) args.push('endpoint', endpoint, 'persistent-keepalive', '25');
  }
  return args.length === 0 ? null : ['wg', 'set', name, ...args];
}

/** How wg prints a CIDR back: IPv6 lower case (a full address gets no change here). */
function canonicalWgCidr(c: string): string {
  return c.toLowerCase();
}

/** Address changes of an interface: add what is missing, remove what is not wanted. */
export function addressCommands(name: string, have: readonly string[], want: readonly string[]): Argv[] {
  const out: Argv[] = [];
  for (const a of want) if (!have.includes(a)) out.push(['ip', 'address', 'add', a, 'dev', name]);
  for (const a of have) if (!want.includes(a)) out.push(['ip', 'address', 'del', a, 'dev', name]);
  return out;
}

/**
 * The routes an interface needs beyond its own prefixes: the subnets behind site-to-site peers.
 * A peer's own addresses fall inside the interface's prefixes and need none.
 */
export function wantedRoutes(spec: VpnInterfaceSpec): string[] {
  const own = spec.addresses.map((a) => checkCidr('addresses', a));
  const inside = (c: string) => {
    const x = checkCidr('allowed_ips', c);
    return own.some((o) => o.family === x.family && o.prefix <= x.prefix && containsCidr(o, x));
  };
  return [...new Set(spec.peers.flatMap((p) => p.allowedIps).filter((c) => !inside(c)))];
}

function containsCidr(
  outer: { address: string; prefix: number; family: 4 | 6 },
  inner: { address: string; family: 4 | 6 },
) {
  const bits = outer.family === 4 ? 32 : 128;
  const toBig = (a: string, fam: 4 | 6) =>
    fam === 4
      ? a.split('.').reduce((n, o) => (n << 8n) | BigInt(Number(o)), 0n)
      : expand6(a).reduce((n, g) => (n << 16n) | BigInt(parseInt(g, 16)), 0n);
  const shift = BigInt(bits - outer.prefix);
  return toBig(outer.address, outer.family) >> shift === toBig(inner.address, inner.family) >> shift;
}

function expand6(a: string): string[] {
  const [l, r] = a.includes('::') ? a.split('::') : [a, undefined];
  const left = l === '' || l === undefined ? [] : l.split(':');
  if (r === undefined) return left;
  const right = r === '' ? [] : r.split(':');
  return [...left, ...Array<string>(8 - left.length - right.length).fill('0'), ...right];
}

/** Route changes of an interface: `replace` what is wanted, `del` the floe routes that are not. */
export function routeCommands(name: string, have: readonly string[], want: readonly string[]): Argv[] {
  const out: Argv[] = [];
  for (const r of want)
    if (!have.includes(r))
      out.push(['ip', ...(r.includes(':') ? ['-6'] : []), 'route', 'replace', r, 'dev', name, 'proto', 'static']);
  for (const r of have)
    if (!want.includes(r)) out.push(['ip', ...(r.includes(':') ? ['-6'] : []), 'route', 'del', r, 'dev', name]);
  return out;
}

/**
 * `table inet floe_vpn`: what comes in from a VPN network's interface may go only to what it reaches
 * (its own prefixes, its project's connected networks, its site-to-site subnets); what goes out to it
 * may come only from there; the host itself answers pings and nothing else. It runs before the
 * networks' own table, which lets VPN interfaces and bridges talk.
 */
export function vpnRuleset(specs: readonly VpnInterfaceSpec[]): string {
  const sorted = [...specs].sort((a, b) => (a.name < b.name ? -1 : 1));
  const set = (family: 4 | 6) => (s: VpnInterfaceSpec) => s.reach.filter((c) => (c.includes(':') ? 6 : 4) === family);
  const lines: string[] = [`table inet ${VPN_TABLE} {`];
  lines.push('\tchain forward {', '\t\ttype filter hook forward priority -10; policy accept;');
  for (const s of sorted)
    lines.push(`\t\tiifname "${s.name}" jump from_${s.name}`, `\t\toifname "${s.name}" jump to_${s.name}`);
  lines.push('\t}');
  lines.push('\tchain input {', '\t\ttype filter hook input priority -10; policy accept;');
  for (const s of sorted)
    lines.push(
      `\t\tiifname "${s.name}" ct state established,related accept`,
      `\t\tiifname "${s.name}" meta l4proto { icmp, ipv6-icmp } accept`,
      `\t\tiifname "${s.name}" drop`,
    );
  lines.push('\t}');
  for (const s of sorted) {
    for (const [dir, field] of [
      ['from', 'daddr'],
      ['to', 'saddr'],
    ] as const) {
      lines.push(`\tchain ${dir}_${s.name} {`, '\t\tct state established,related accept');
      const v6 = set(6)(s);
      const v4 = set(4)(s);
      if (v6.length > 0) lines.push(`\t\tip6 ${field} { ${v6.join(', ')} } accept`);
      if (v4.length > 0) lines.push(`\t\tip ${field} { ${v4.join(', ')} } accept`);
      lines.push('\t\tdrop', '\t}');
    }
  }
  lines.push('}');
  return `${lines.join('\n')}\n`;
}

/** The `nft -f -` input that replaces the table in one transaction (or removes it when there is nothing). */
export function nftScript(specs: readonly VpnInterfaceSpec[]): string {
  const reset = `table inet ${VPN_TABLE}\ndelete table inet ${VPN_TABLE}\n`;
  return specs.length === 0 ? reset : reset + vpnRuleset(specs);
}
