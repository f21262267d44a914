import { FloeError } from '@floe/api';
import { checkIfName, checkInt, checkIp, checkMac, checkPrefix, invalid } from '../../host/validate.js';
import type { CheckedNet } from './checked-spec.js';
import type { Argv } from './link-commands.js';

/*
 * A public network's bridge takes over a physical interface of the host: the
 * interface becomes a port of the bridge, and the host's global addresses and
 * routes move from it onto the bridge (the bridge carries the interface's MAC,
 * so the LAN sees no change). Removing the network gives them back.
 */

/** One global address of the host, as it moves between the physical interface and the bridge. */
export interface HostAddr {
  address: string;
  prefix: number;
  family: 4 | 6;
}

/** One route of the main table through the physical interface (or the bridge), reduced to what `ip route replace` needs. */
export interface HostRoute {
  family: 4 | 6;
  /** `default` or `address/prefix`. */
  dst: string;
  gateway: string | null;
  metric: number | null;
  /** Routing protocol name or number (`static`, `dhcp`, `4`); null for the default (`boot`). */
  protocol: string | null;
  /** `link` or `host`; null for global. */
  scope: string | null;
  src: string | null;
  onlink: boolean;
}

/** What the host had on its physical interface: moved onto the bridge, given back on removal. */
export interface HostConfig {
  /** The physical interface's MAC, which the bridge carries. */
  mac: string;
  addrs: HostAddr[];
  routes: HostRoute[];
}

/** What a takeover starts from, read from the host (`ip -j`) and from the record of the last takeover. */
export interface TakeoverObserved {
  physical: { mac: string; master: string | null };
  bridgeExists: boolean;
  physAddrs: HostAddr[];
  physRoutes: HostRoute[];
  bridgeAddrs: HostAddr[];
  bridgeRoutes: HostRoute[];
  /** The HostConfig recorded before the last takeover: what to restore when a bridge deleted by hand took the addresses with it. */
  saved: HostConfig | null;
}

// Routes the kernel or router advertisements make by themselves; moving them would pin dynamic state.
const SKIPPED_PROTOCOLS = new Set(['kernel', 'ra', 'redirect', '2', '9', '1']);
const PROTOCOL_RE = /^[a-z0-9_-]{1,20}$/;
const SCOPES = new Set(['link', 'host']);

interface IpAddrJson {
  ifname?: string;
  address?: string;
  master?: string;
  addr_info?: Array<{
    family?: string;
    local?: string;
    prefixlen?: number;
    scope?: string;
    dynamic?: boolean;
    temporary?: boolean;
    deprecated?: boolean;
  }>;
}

/**
 * The global addresses of one interface from `ip -j addr show dev X`, with its
 * MAC and master. IPv4 addresses a DHCP client put there move too (as
 * permanent ones: losing the host's address is worse than outliving a lease);
 * IPv6 addresses from SLAAC and privacy extensions stay, since the bridge
 * makes its own from the same MAC, and so do link-local ones.
 */
export function parseIfAddrs(json: string): { mac: string; master: string | null; addrs: HostAddr[] } | null {
  const list = JSON.parse(json || '[]') as IpAddrJson[];
  const l = list[0];
  if (l === undefined) return null;
  const addrs: HostAddr[] = [];
  for (const a of l.addr_info ?? []) {
    if (a.scope !== 'global' || a.local === undefined || a.prefixlen === undefined) continue;
    const family = a.family === 'inet6' ? 6 : 4;
    if (family === 6 && (a.dynamic === true || a.temporary === true)) continue;
    addrs.push({
      address: checkIp('address', a.local, family),
      prefix: checkInt('prefix', a.prefixlen, 1, family === 4 ? 32 : 128),
      family,
    });
  }
  return { mac: l.address ?? '', master: l.master ?? null, addrs };
}

interface IpRouteJson {
  type?: string;
  dst?: string;
  gateway?: string;
  metric?: number;
  protocol?: string;
  scope?: string;
  prefsrc?: string;
  flags?: string[];
}

/**
 * The routes of the main table that floe moves with the addresses, from
 * `ip -j -<family> route show dev X`: unicast, not made by the kernel (prefix
 * routes come back with the addresses) nor learned from router advertisements.
 */
export function parseRoutes(json: string, family: 4 | 6): HostRoute[] {
  const out: HostRoute[] = [];
  for (const r of JSON.parse(json || '[]') as IpRouteJson[]) {
    if ((r.type !== undefined && r.type !== 'unicast') || r.dst === undefined) continue;
    const protocol = r.protocol === undefined || r.protocol === 'boot' ? null : String(r.protocol);
    if (protocol !== null && (SKIPPED_PROTOCOLS.has(protocol) || !PROTOCOL_RE.test(protocol))) continue;
    if (family === 6 && r.dst.startsWith('fe80:')) continue;
    const dst =
      r.dst === 'default'
        ? 'default'
        : checkPrefix('dst', r.dst.includes('/') ? r.dst : `${r.dst}/${family === 4 ? 32 : 128}`, family);
    out.push({
      family,
      dst,
      gateway: r.gateway === undefined ? null : checkIp('gateway', r.gateway, family),
      metric: r.metric === undefined ? null : checkInt('metric', r.metric, 0, 0xffffffff),
      protocol,
      scope: r.scope !== undefined && SCOPES.has(r.scope) ? r.scope : null,
      src: r.prefsrc === undefined ? null : checkIp('src', r.prefsrc, family),
      onlink: (r.flags ?? []).includes('onlink'),
    });
  }
  return out;
}

const addrKey = (a: HostAddr) => `${a.address}/${a.prefix}`;
const routeKey = (r: HostRoute) => `${r.family} ${r.dst} ${r.metric ?? 0}`;

function dedupe<T>(items: readonly T[], key: (t: T) => string): T[] {
  const seen = new Set<string>();
  return items.filter((i) => (seen.has(key(i)) ? false : (seen.add(key(i)), true)));
}

/**
 * What the host's addresses and routes are, wherever they are now: on the
 * physical interface (before or halfway through a takeover), on the bridge
 * (after it), or only in the record of the last takeover (the bridge was
 * deleted by hand and took them with it).
 */
export function hostConfig(o: TakeoverObserved): HostConfig {
  const mac = o.saved?.mac ?? o.physical.mac;
  const addrs = dedupe([...o.bridgeAddrs, ...o.physAddrs], addrKey);
  const routes = dedupe([...o.bridgeRoutes, ...o.physRoutes], routeKey);
  if (addrs.length === 0 && routes.length === 0 && o.saved !== null)
    return { mac, addrs: [...o.saved.addrs], routes: [...o.saved.routes] };
  return { mac, addrs, routes };
}

function addrArgs(a: HostAddr): string[] {
  return [`${checkIp('address', a.address, a.family)}/${checkInt('prefix', a.prefix, 1, a.family === 4 ? 32 : 128)}`];
}

/** `ip route replace` for one route through `dev` (`::/0` spells the IPv6 default, so no `-6` is needed and `ip -batch` takes it). */
export function routeCommand(r: HostRoute, dev: string): Argv {
  checkIfName('dev', dev);
  const dst = r.dst === 'default' ? (r.family === 4 ? '0.0.0.0/0' : '::/0') : checkPrefix('dst', r.dst, r.family);
  const out = ['ip', 'route', 'replace', dst];
  if (r.gateway !== null) out.push('via', checkIp('gateway', r.gateway, r.family));
  out.push('dev', dev);
  if (r.onlink) out.push('onlink');
  if (r.protocol !== null) {
    if (!PROTOCOL_RE.test(r.protocol))
      throw invalid('protocol', `route protocol ${JSON.stringify(r.protocol)} is malformed`);
    out.push('proto', r.protocol);
  }
  if (r.scope !== null) {
    if (!SCOPES.has(r.scope)) throw invalid('scope', `route scope ${JSON.stringify(r.scope)} is not link or host`);
    out.push('scope', r.scope);
  }
  if (r.src !== null) out.push('src', checkIp('src', r.src, r.family));
  if (r.metric !== null) out.push('metric', String(checkInt('metric', r.metric, 0, 0xffffffff)));
  return out;
}

/**
 * The `ip` commands that make the bridge of a public network own the host's
 * connectivity, in an order that keeps the host reachable: bridge (the
 * interface's MAC) up, interface enslaved, the addresses added to the bridge
 * (IPv6 without DAD: it is the same host taking its own address along), the
 * routes replaced onto the bridge, and only then the addresses removed from
 * the interface. A failure at any step leaves the addresses on the interface,
 * the bridge or both, never on neither. Steps already done are skipped: an
 * enslaved interface is left alone, present addresses and routes are not
 * touched.
 *
 * @example
 * await run('ip', ['-batch', '-'], { input: toBatch(takeoverCommands(c, observed)) });
 */
export function takeoverCommands(c: CheckedNet, o: TakeoverObserved): Argv[] {
  const phys = c.physical;
  if (phys === null) throw invalid('kind', 'only public networks take over an interface');
  if (o.physical.master !== null && o.physical.master !== c.bridge) {
    throw new FloeError('invalid_state', `${phys} is already a port of ${o.physical.master}`, { field: 'physical' });
  }
  const cfg = hostConfig(o);
  const mac = checkMac('mac', cfg.mac);
  const out: Argv[] = [];
  if (!o.bridgeExists)
    out.push(['ip', 'link', 'add', c.bridge, 'address', mac, 'mtu', String(c.net.mtu), 'type', 'bridge']);
  out.push(['ip', 'link', 'set', c.bridge, 'up']);
  if (o.physical.master !== c.bridge) out.push(['ip', 'link', 'set', phys, 'master', c.bridge, 'up']);
  const onBridge = new Set(o.bridgeAddrs.map(addrKey));
  for (const a of cfg.addrs) {
    if (!onBridge.has(addrKey(a)))
      out.push(['ip', 'addr', 'replace', ...addrArgs(a), 'dev', c.bridge, ...(a.family === 6 ? ['nodad'] : [])]);
  }
  const routesOnBridge = new Set(o.bridgeRoutes.map((r) => JSON.stringify(r)));
  for (const r of cfg.routes) if (!routesOnBridge.has(JSON.stringify(r))) out.push(routeCommand(r, c.bridge));
  for (const a of o.physAddrs) out.push(['ip', 'addr', 'del', ...addrArgs(a), 'dev', phys]);
  return out;
}

/**
 * The `ip` commands that give the host's addresses and routes back to the
 * physical interface and release it from the bridge (network removal, or the
 * undo of a takeover that failed halfway): addresses on the interface first,
 * routes replaced onto it, then the interface leaves the bridge. The bridge
 * itself is not deleted here.
 */
export function releaseCommands(c: CheckedNet, cfg: HostConfig): Argv[] {
  const phys = c.physical;
  if (phys === null) throw invalid('kind', 'only public networks release an interface');
  return [
    ...cfg.addrs.map((a): Argv => [
      'ip',
      'addr',
      'replace',
      ...addrArgs(a),
      'dev',
      phys,
      ...(a.family === 6 ? ['nodad'] : []),
    ]),
    ...cfg.routes.map((r) => routeCommand(r, phys)),
    ['ip', 'link', 'set', phys, 'nomaster'],
  ];
}
