import { createHash } from 'node:crypto';
import { checkId } from '../../host/validate.js';
import type { CheckedNet } from './checked-spec.js';
import type { Argv } from './link-commands.js';
import { vpnPortName } from './names.js';

/*
 * The VPN router port of a private network on a host: a macvlan on the network's bridge with a MAC
 * of its own. Every host answers as the network's gateway with the same MAC and address, which never
 * cross the VXLAN, so VPN traffic between hosts goes through these ports instead:
 * - on a VPN gateway host the port holds the host's own address on the network, and what comes from
 *   the VPN prefixes (`vpnRoutes`) is routed to the network through the port (a policy rule and a
 *   table of the network's own), so the replies of VMs on other hosts come back to it;
 * - on the other hosts of a network whose guests route through the host, the VPN prefixes are routed
 *   to the gateway's port over the VXLAN (permanent neighbour entries, no ARP across hosts).
 * Pure: the commands are built from the spec and from what the host has.
 */

/** Priority of the policy rules of gateway ports (before the main table's 32766). */
export const VPN_RULE_PRIORITY = 20000;

/** The routing table of a network's gateway port: 0x100000 + 20 bits of sha256(network id). */
export function vpnTable(netId: string): number {
  return 0x100000 + parseInt(createHash('sha256').update(checkId('network_id', netId)).digest('hex').slice(0, 5), 16);
}

/** The IPv6 link-local address (EUI-64) of a MAC, as the kernel gives it to a link that comes up. */
export function linkLocal(mac: string): string {
  const b = mac.split(':').map((x) => parseInt(x, 16));
  const g = [((b[0]! ^ 2) << 8) | b[1]!, (b[2]! << 8) | 0xff, 0xfe00 | b[3]!, (b[4]! << 8) | b[5]!];
  return `fe80::${g.map((x) => x.toString(16)).join(':')}`;
}

/** What a host has of a network's VPN port, read back (see the Linux driver). */
export interface ObservedVpnPort {
  link?: { kind: string | null; address: string; up: boolean; lower: string | null } | undefined;
  /** `address/prefix` on the port, link-local ones left out. */
  addrs: readonly string[];
  /** Addresses with a permanent neighbour entry on the port. */
  neighbours: readonly string[];
  /** Main-table routes through the port: `prefix via address`. */
  routes: readonly string[];
  /** Prefixes in the network's table (gateway hosts). */
  tableRoutes: readonly string[];
  /** Source prefixes of the policy rules that look up the network's table. */
  rules: readonly string[];
}

/** What the port should be; null when the host needs none on this network. */
interface WantedPort {
  mac: string;
  addrs: string[];
  neighbours: { address: string; mac: string }[];
  routes: { prefix: string; via: string }[];
  tableRoutes: { prefix: string; src: string | null }[];
  rules: string[];
}

// Batch lines take no family option: `ip` reads it from the addresses, except `ip rule`, which takes
// IPv4 unless told: IPv6 rules are commands of their own (`ip -6 rule`), run outside the batch.
const v6 = (p: string) => p.includes(':');
const rule = (p: string) => (v6(p) ? ['ip', '-6', 'rule'] : ['ip', 'rule']);
/** A host route's prefix as `ip -j route` prints it: no length for a /32 or /128. */
const bare = (p: string) => p.replace(/\/(32|128)$/, (m, len: string) => (len === (v6(p) ? '128' : '32') ? '' : m));

/** Whether this host is a VPN gateway of the network (it routes VPN prefixes for it). */
function isVpnGateway(c: CheckedNet): boolean {
  return c.net.vpnPort !== undefined && (c.net.vpnRoutes?.length ?? 0) > 0;
}

function wanted(c: CheckedNet): WantedPort | null {
  const port = c.net.vpnPort;
  if (port === undefined || c.physical !== null) return null;
  const gateway = isVpnGateway(c);
  // Guests of `none` and `vm` networks do not route through this host: DHCP names the gateways to them.
  const routed = c.net.gatewayMode === 'host' ? port.gateways : [];
  if (!gateway && routed.length === 0) return null;
  const own = gateway && c.v4 !== null && port.ipv4 !== null ? port.ipv4 : null;
  const w: WantedPort = {
    mac: port.mac,
    addrs: own === null ? [] : [`${own}/32`],
    neighbours: [],
    routes: [],
    tableRoutes: gateway
      ? [
          ...(c.v4 !== null && own !== null ? [{ prefix: c.v4.cidr, src: own }] : []),
          ...(c.v6 !== null ? [{ prefix: c.v6.cidr, src: null }] : []),
        ]
      : [],
    rules: gateway ? (c.net.vpnRoutes ?? []).filter((r) => (v6(r) ? c.v6 !== null : own !== null)) : [],
  };
  // VPN networks served elsewhere (a gateway host may serve some and not others).
  for (const g of routed) {
    const ll = linkLocal(g.mac);
    if (c.v4 !== null && g.ipv4 !== null) w.neighbours.push({ address: g.ipv4, mac: g.mac });
    if (c.v6 !== null) w.neighbours.push({ address: ll, mac: g.mac });
    for (const r of g.routes) {
      if (v6(r) && c.v6 !== null) w.routes.push({ prefix: r, via: ll });
      if (!v6(r) && c.v4 !== null && g.ipv4 !== null) w.routes.push({ prefix: r, via: g.ipv4 });
    }
  }
  return w;
}

/**
 * The `ip` commands that bring the network's VPN port from what the host has (`o`) to what the spec
 * asks for, and nothing else; on a host that needs no port, its removal (the routes through it go
 * with it) and that of its rules.
 */
export function vpnPortCommands(c: CheckedNet, o: ObservedVpnPort): Argv[] {
  const name = vpnPortName(c.net.id);
  const table = String(vpnTable(c.net.id));
  const w = wanted(c);
  const out: Argv[] = [];
  const dropRules = (keep: readonly string[]) => {
    for (const r of o.rules)
      if (!keep.includes(r))
        out.push([...rule(r), 'del', 'from', r, 'lookup', table, 'pref', String(VPN_RULE_PRIORITY)]);
  };
  if (w === null) {
    if (o.link !== undefined) out.push(['ip', 'link', 'del', name]);
    dropRules([]);
    return out;
  }
  const l = o.link;
  const fresh = l === undefined || l.kind !== 'macvlan' || l.address !== w.mac || l.lower !== c.bridge;
  if (l !== undefined && fresh) out.push(['ip', 'link', 'del', name]);
  if (fresh)
    out.push(['ip', 'link', 'add', name, 'link', c.bridge, 'address', w.mac, 'type', 'macvlan', 'mode', 'bridge']);
  if (fresh || !l.up) out.push(['ip', 'link', 'set', name, 'up']);
  const has = (list: readonly string[], x: string) => !fresh && list.includes(x);
  for (const a of w.addrs) if (!has(o.addrs, a)) out.push(['ip', 'addr', 'replace', a, 'dev', name]);
  if (!fresh) for (const a of o.addrs) if (!w.addrs.includes(a)) out.push(['ip', 'addr', 'del', a, 'dev', name]);
  for (const n of w.neighbours)
    if (!has(o.neighbours, n.address))
      out.push(['ip', 'neigh', 'replace', n.address, 'lladdr', n.mac, 'dev', name, 'nud', 'permanent']);
  if (!fresh)
    for (const a of o.neighbours)
      if (!w.neighbours.some((n) => n.address === a)) out.push(['ip', 'neigh', 'del', a, 'dev', name]);
  for (const r of w.routes)
    if (!has(o.routes, `${bare(r.prefix)} via ${r.via}`))
      out.push([
        'ip',
        'route',
        'replace',
        r.prefix,
        'via',
        r.via,
        'dev',
        name,
        ...(v6(r.prefix) ? [] : ['onlink']),
        'proto',
        'static',
      ]);
  if (!fresh)
    for (const r of o.routes) {
      const prefix = r.split(' ')[0]!;
      if (!w.routes.some((x) => bare(x.prefix) === prefix)) out.push(['ip', 'route', 'del', prefix, 'dev', name]);
    }
  for (const r of w.tableRoutes)
    if (!has(o.tableRoutes, bare(r.prefix)))
      out.push([
        'ip',
        'route',
        'replace',
        r.prefix,
        'dev',
        name,
        'table',
        table,
        ...(r.src === null ? [] : ['src', r.src]),
        'proto',
        'static',
      ]);
  if (!fresh)
    for (const p of o.tableRoutes)
      if (!w.tableRoutes.some((x) => bare(x.prefix) === p))
        out.push(['ip', 'route', 'del', p, 'dev', name, 'table', table]);
  for (const r of w.rules)
    if (!o.rules.includes(r))
      out.push([...rule(r), 'add', 'from', r, 'lookup', table, 'pref', String(VPN_RULE_PRIORITY)]);
  dropRules(w.rules);
  return out;
}

/** The nftables forward rules a network's VPN port needs (see ruleset.ts): from and to the VPN interfaces on a gateway, from the bridge elsewhere. */
export function vpnPortForwardRules(c: CheckedNet): string[] {
  const w = wanted(c);
  if (w === null) return [];
  const name = vpnPortName(c.net.id);
  return isVpnGateway(c)
    ? [`iifname "fv*" oifname "${name}" accept`, `iifname "${name}" oifname "fv*" accept`]
    : [`iifname "${c.bridge}" oifname "${name}" accept`];
}
