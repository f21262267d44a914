import { isAbsolute, join } from 'node:path';
import { FloeError } from '@floe/api';
import { checkNet, checkNic } from './builders.js';
import { checkId, ipv4Netmask } from './names.js';
import type { NetSpec, NicSpec } from './types.js';

/** Where one network's dnsmasq keeps its files. */
export interface DnsmasqPaths {
  dir: string;
  conf: string;
  pidFile: string;
  leaseFile: string;
  logFile: string;
}

/** dnsmasq's files of a network under the agent's state directory. */
export function dnsmasqPaths(stateDir: string, netId: string): DnsmasqPaths {
  if (!isAbsolute(stateDir) || /[\u0000-\u001f\u007f]/.test(stateDir)) throw new FloeError('validation_failed', `state directory must be an absolute path: ${JSON.stringify(stateDir)}`, { field: 'state_dir' });
  const dir = join(stateDir, 'net', checkId('network_id', netId));
  return { dir, conf: join(dir, 'dnsmasq.conf'), pidFile: join(dir, 'dnsmasq.pid'), leaseFile: join(dir, 'dnsmasq.leases'), logFile: join(dir, 'dnsmasq.log') };
}

/**
 * The dnsmasq configuration of one network on this host: bound to its bridge
 * only; static-only DHCPv4 with one `dhcp-host` per local NIC (leases pinned to
 * IPAM; unknown MACs get no answer, so the dnsmasq of each host only answers
 * its own guests); router advertisements for SLAAC (stateless DHCPv6 for DNS
 * when `dns`); `host-record` for every NIC of the network, local and remote;
 * no DNS at all (`port=0`) when `dns` is off.
 *
 * With `dhcpv6` the IPv6 addresses come from stateful DHCPv6 instead: the
 * router advertisements set the managed flag without a SLAAC prefix, and each
 * local NIC's `dhcp-host` line carries its IPv6 address next to its IPv4 one.
 *
 * On a public network the bridge is shared with a LAN that may have its own
 * DHCP server and routers: dnsmasq ignores every client that is not one of
 * floe's NICs (`dhcp-ignore=tag:!known`), is not authoritative (it never NAKs
 * a LAN client), sends no router advertisements and names the LAN's router.
 *
 * @example
 * await writeFile(paths.conf, dnsmasqConfig(net, localNics, paths, remoteNics));
 */
export function dnsmasqConfig(net: NetSpec, nics: readonly NicSpec[], paths: DnsmasqPaths, remoteNics: readonly NicSpec[] = []): string {
  const c = checkNet(net);
  nics.forEach((n, i) => checkNic(n, `nics[${i}]`));
  remoteNics.forEach((n, i) => checkNic(n, `remote_nics[${i}]`));
  const lines = [
    `# floe network ${net.id}; generated, do not edit`,
    `interface=${c.bridge}`,
    'bind-interfaces',
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
  const router = net.gatewayMode === 'none' ? null : c.v4?.gateway ?? null;
  if (c.v4) {
    lines.push(`dhcp-range=set:v4,${c.v4.address},static,${ipv4Netmask(c.v4.prefix)},12h`);
    lines.push(router ? `dhcp-option=tag:v4,option:router,${router}` : 'dhcp-option=tag:v4,option:router');
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
  const dhcpv6 = net.dhcpv6 === true && c.v6 !== null && !pub;
  for (const n of nics) {
    // One line per NIC: dnsmasq knows a DHCPv6 client by its MAC (from its DUID or the neighbour table) as well.
    const v4 = n.ipv4 !== null && c.v4 ? `,set:v4,${n.ipv4}` : '';
    const v6 = dhcpv6 && n.ipv6 !== null ? `,[${n.ipv6}]` : '';
    if (v4 !== '' || v6 !== '') lines.push(`dhcp-host=${n.mac}${v4}${v6},${n.hostname}`);
  }
  if (net.dns) {
    for (const n of [...nics, ...remoteNics]) {
      const addrs = [n.ipv4, n.ipv6].filter((a): a is string => a !== null);
      if (addrs.length > 0) lines.push(`host-record=${n.hostname},${addrs.join(',')}`);
    }
  }
  return `${lines.join('\n')}\n`;
}
