import { createHash } from 'node:crypto';
import { isAbsolute, join } from 'node:path';
import { FloeError } from '@floe/api';
import { METADATA_IPV4 } from '../../metadata/vendor-data.js';
import { checkNet, checkNic, type CheckedNet } from './checked-spec.js';
import { ipv4Netmask } from './ip.js';
import { networkStateDir } from './names.js';
import type { NetSpec, NicSpec } from './types.js';

/**
 * Classless static routes (DHCP option 121) of a private network whose host
 * is not the router (`none`, or a router VM), via the host's own address on
 * the bridge: the metadata address, so a guest reaches the service even while
 * its router VM is down, and the IPv4 prefixes the host routes as a VPN
 * gateway (`vpnRoutes`), so guests answer VPN peers through the host and not
 * their router (or nobody), and those routed by gateways on other hosts via
 * the gateways' VPN ports. Clients ignore option 3 when option 121 is
 * present, so the default route goes in as well. Null when the host routes
 * (its gateway address is the default route) or has no address there.
 *
 * The IPv6 VPN prefixes are not announced: a route information option
 * (RFC 4191) in the router advertisements would carry them, and dnsmasq 2.90
 * has no setting for one (`ra-param` sets only the MTU, priority, interval
 * and router lifetime).
 */
function classlessRoutes(c: CheckedNet, router: string | null): string | null {
  if (c.physical !== null || c.net.gatewayMode === 'host') return null;
  const host = (c.net.hostAddrs ?? []).find((a) => !a.includes(':'))?.split('/')[0];
  if (host === undefined) return null;
  const vpn = (c.net.vpnRoutes ?? []).filter((r) => !r.includes(':'));
  // VPN networks served by gateways elsewhere: their prefixes via the gateways' ports (vpn-port.ts).
  const remote = (c.net.vpnPort?.gateways ?? []).flatMap((g) =>
    g.ipv4 === null ? [] : g.routes.filter((r) => !r.includes(':') && !vpn.includes(r)).map((r) => `${r},${g.ipv4}`),
  );
  return [
    `${METADATA_IPV4}/32,${host}`,
    ...vpn.map((r) => `${r},${host}`),
    ...remote,
    ...(router === null ? [] : [`0.0.0.0/0,${router}`]),
  ].join(',');
}

/** Where one network's dnsmasq keeps its files. */
export interface DnsmasqPaths {
  dir: string;
  /** The directory of the files dnsmasq re-reads unprivileged (mode 0755, files 0644: nothing in them is secret). */
  runDir: string;
  conf: string;
  /** The pinned leases (`dhcp-hostsfile`), re-read on SIGHUP. */
  hostsFile: string;
  /** The instances' DNS names (`addn-hosts`), re-read on SIGHUP. */
  namesFile: string;
  pidFile: string;
  leaseFile: string;
  logFile: string;
}

/**
 * Where the files dnsmasq reads after it has dropped root (leases, names)
 * live for the agent with this state directory: under /run, whose path any
 * user may walk, unlike a state directory inside a private data directory.
 * One directory per agent (a hash of its state directory), so that agents
 * sharing a machine (tests, simulations) do not share it.
 */
export function dnsmasqRunDir(stateDir: string): string {
  return join('/run/floe', `dnsmasq-${createHash('sha256').update(stateDir).digest('hex').slice(0, 12)}`);
}

/**
 * dnsmasq's files of a network: configuration, pidfile, lease database and log
 * under the agent's state directory (dnsmasq opens them as root), the pinned
 * leases and names under `runDir` (it re-reads them unprivileged).
 */
export function dnsmasqPaths(stateDir: string, netId: string, runDir = dnsmasqRunDir(stateDir)): DnsmasqPaths {
  for (const [field, d] of [
    ['state_dir', stateDir],
    ['run_dir', runDir],
  ] as const) {
    // eslint-disable-next-line no-control-regex -- control characters are what it refuses
    if (!isAbsolute(d) || /[\u0000-\u001f\u007f\s]/.test(d))
      throw new FloeError(
        'validation_failed',
        `${field} must be an absolute path without spaces: ${JSON.stringify(d)}`,
        { field },
      );
  }
  const dir = networkStateDir(stateDir, netId);
  const run = join(runDir, netId);
  return {
    dir,
    runDir: run,
    conf: join(dir, 'dnsmasq.conf'),
    hostsFile: join(run, 'dhcp-hosts'),
    namesFile: join(run, 'names'),
    pidFile: join(dir, 'dnsmasq.pid'),
    leaseFile: join(dir, 'dnsmasq.leases'),
    logFile: join(dir, 'dnsmasq.log'),
  };
}

/** The three files of one network's dnsmasq. */
export interface DnsmasqFiles {
  /** The configuration; a change needs a restart. */
  conf: string;
  /** One pinned lease per local NIC (`dhcp-hostsfile`); a change needs only SIGHUP. */
  hosts: string;
  /** Every NIC's names, local and remote (`addn-hosts`, hosts format); a change needs only SIGHUP. */
  names: string;
}

/**
 * The dnsmasq files of one network on this host. The configuration: bound to
 * its bridge only; static-only DHCPv4 (leases pinned to IPAM; unknown MACs get
 * no answer, so the dnsmasq of each host only answers its own guests); router
 * advertisements for SLAAC (stateless DHCPv6 for DNS when `dns`); no DNS at
 * all (`port=0`) when `dns` is off. The leases (one line per local NIC) and
 * the DNS names (every NIC of the network, local and remote) live in files of
 * their own, so that a VM joining or leaving the network is a SIGHUP, never a
 * restart that would interrupt DHCP and DNS for the others.
 *
 * With `dhcpv6` the IPv6 addresses come from stateful DHCPv6 instead: the
 * router advertisements set the managed flag without a SLAAC prefix, and each
 * local NIC's lease carries its IPv6 address next to its IPv4 one.
 *
 * On a public network the bridge is shared with a LAN that may have its own
 * DHCP server and routers: dnsmasq ignores every client that is not one of
 * floe's NICs (`dhcp-ignore=tag:!known`), is not authoritative (it never NAKs
 * a LAN client), sends no router advertisements and names the LAN's router.
 *
 * @example
 * const files = dnsmasqFiles(net, localNics, paths, remoteNics);
 * await writeFile(paths.conf, files.conf);
 */
export function dnsmasqFiles(
  net: NetSpec,
  nics: readonly NicSpec[],
  paths: DnsmasqPaths,
  remoteNics: readonly NicSpec[] = [],
): DnsmasqFiles {
  const c = checkNet(net);
  nics.forEach((n, i) => checkNic(n, `nics[${i}]`));
  remoteNics.forEach((n, i) => checkNic(n, `remote_nics[${i}]`));
  const lines = [
    `# floe network ${net.id}; generated, do not edit`,
    `interface=${c.bridge}`,
    // Like bind-interfaces, one socket per address of the bridge, but addresses that appear later (the bridge's
    // link-local one) are bound too: dnsmasq keeps the right to bind port 53 after it dropped root.
    'bind-dynamic',
    'except-interface=lo',
    `pid-file=${paths.pidFile}`,
    `dhcp-leasefile=${paths.leaseFile}`,
    'no-hosts',
    'dhcp-authoritative',
    `log-facility=${paths.logFile}`,
  ];
  const pub = c.physical !== null;
  if (pub) lines.splice(lines.indexOf('dhcp-authoritative'), 1, 'dhcp-ignore=tag:!known');
  if (net.dns) {
    lines.push('domain-needed', 'bogus-priv', 'no-poll');
  } else {
    lines.push('port=0', 'no-resolv');
  }
  const router = net.gatewayMode === 'none' ? null : (c.v4?.gateway ?? null);
  if (c.v4) {
    lines.push(`dhcp-range=set:v4,${c.v4.address},static,${ipv4Netmask(c.v4.prefix)},12h`);
    lines.push(router ? `dhcp-option=tag:v4,option:router,${router}` : 'dhcp-option=tag:v4,option:router');
    const routes = classlessRoutes(c, router);
    if (routes !== null) lines.push(`dhcp-option=tag:v4,option:classless-static-route,${routes}`);
    lines.push(`dhcp-option=tag:v4,option:mtu,${net.mtu}`);
    if (!net.dns) lines.push('dhcp-option=tag:v4,option:dns-server');
  }
  if (c.v6 && !pub) {
    lines.push('enable-ra');
    // Stateful DHCPv6: `static` hands out only the pinned addresses below; the RAs say "managed" and leave SLAAC off.
    const mode = net.dhcpv6 === true ? 'static' : net.dns ? 'ra-stateless' : 'ra-only';
    lines.push(`dhcp-range=set:v6,::,constructor:${c.bridge},${mode},${c.v6.prefix},12h`);
    if (net.dhcpv6 === true && !net.dns) lines.push('dhcp-option=option6:dns-server');
    // Router lifetime 0 when the host is not the v6 router: guests take the prefix, not a default route.
    const hostRoutesV6 = net.gatewayMode === 'host' && c.v6.gateway !== null;
    lines.push(`ra-param=${c.bridge},mtu:${net.mtu},60${hostRoutesV6 ? '' : ',0'}`);
  }
  lines.push(`dhcp-hostsfile=${paths.hostsFile}`);
  if (net.dns) lines.push(`addn-hosts=${paths.namesFile}`);
  const dhcpv6 = net.dhcpv6 === true && c.v6 !== null && !pub;
  const hosts: string[] = [];
  for (const n of nics) {
    // One line per NIC: dnsmasq knows a DHCPv6 client by its MAC (from its DUID or the neighbour table) as well.
    // No `set:` tag here (the range tags its requests already): dnsmasq 2.90 crashes re-reading a tagged line once it holds a lease.
    const v4 = n.ipv4 !== null && c.v4 ? `,${n.ipv4}` : '';
    const v6 = dhcpv6 && n.ipv6 !== null ? `,[${n.ipv6}]` : '';
    if (v4 !== '' || v6 !== '') hosts.push(`${n.mac}${v4}${v6},${n.hostname}`);
  }
  const names: string[] = [];
  if (net.dns) {
    for (const n of [...nics, ...remoteNics])
      for (const a of [n.ipv4, n.ipv6]) if (a !== null) names.push(`${a} ${n.hostname}`);
  }
  const text = (l: string[]) => (l.length === 0 ? '' : `${l.join('\n')}\n`);
  return { conf: text(lines), hosts: text(hosts), names: text(names) };
}
