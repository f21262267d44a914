import { FloeError, type DesiredNic } from '@floe/api';
import { isMac } from '../../host/validate.js';
import { cloudYaml } from './cloud-yaml.js';

/**
 * cloud-init network-config (version 2) for a VM's NICs: static addresses
 * exactly as IPAM gave them, so a guest is configured the same with or without
 * DHCP. Interfaces are matched by MAC and named `eth<slot>`. Only the first NIC
 * with a gateway (per family) gets the default route.
 */

const V4_RE = /^[0-9]{1,3}(\.[0-9]{1,3}){3}$/;
const V6_RE = /^[0-9a-f:]{2,39}$/;

function check(ok: boolean, what: string, field: string): void {
  if (!ok) throw new FloeError('validation_failed', `${what} is malformed`, { field });
}

/**
 * The network-config text for `nics` (slot order), or null when there are none
 * (cloud-init then keeps its default: DHCP on the first interface).
 *
 * @example
 * networkConfig([{ index: 0, mac: '02:aa:bb:cc:dd:ee', ipv4: '10.10.0.2', ipv4_prefix: 24, gateway4: '10.10.0.1', ... }])
 * // 'version: 2\nethernets:\n  eth0:\n    match:\n      macaddress: "02:aa:bb:cc:dd:ee"\n ...'
 */
export function networkConfig(nics: readonly DesiredNic[]): string | null {
  if (nics.length === 0) return null;
  const ethernets: Record<string, Record<string, unknown>> = {};
  let route4 = false;
  let route6 = false;
  for (const nic of [...nics].sort((a, b) => a.index - b.index)) {
    const f = `nics[${nic.index}]`;
    check(Number.isInteger(nic.index) && nic.index >= 0 && nic.index < 64, 'the NIC slot', `${f}.index`);
    check(isMac(nic.mac), `MAC ${JSON.stringify(nic.mac)}`, `${f}.mac`);
    check(Number.isInteger(nic.mtu) && nic.mtu >= 576 && nic.mtu <= 9000, 'the MTU', `${f}.mtu`);
    const name = `eth${nic.index}`;
    const eth: Record<string, unknown> = {
      match: { macaddress: nic.mac },
      'set-name': name,
      mtu: nic.mtu,
      dhcp4: false,
      dhcp6: false,
    };
    const addresses: string[] = [];
    if (nic.ipv4 !== null) {
      check(
        V4_RE.test(nic.ipv4) && Number.isInteger(nic.ipv4_prefix) && nic.ipv4_prefix! >= 8 && nic.ipv4_prefix! <= 30,
        `IPv4 ${JSON.stringify(nic.ipv4)}`,
        `${f}.ipv4`,
      );
      addresses.push(`${nic.ipv4}/${nic.ipv4_prefix}`);
    }
    if (nic.ipv6 !== null) {
      check(
        V6_RE.test(nic.ipv6) && Number.isInteger(nic.ipv6_prefix) && nic.ipv6_prefix! >= 48 && nic.ipv6_prefix! <= 128,
        `IPv6 ${JSON.stringify(nic.ipv6)}`,
        `${f}.ipv6`,
      );
      addresses.push(`${nic.ipv6}/${nic.ipv6_prefix}`);
    }
    if (addresses.length > 0) eth.addresses = addresses;
    const routes: Array<{ to: string; via: string }> = [];
    if (!route4 && nic.ipv4 !== null && nic.gateway4 !== null) {
      check(V4_RE.test(nic.gateway4), `gateway ${JSON.stringify(nic.gateway4)}`, `${f}.gateway4`);
      routes.push({ to: '0.0.0.0/0', via: nic.gateway4 });
      route4 = true;
    }
    if (!route6 && nic.ipv6 !== null && nic.gateway6 !== null) {
      check(V6_RE.test(nic.gateway6), `gateway ${JSON.stringify(nic.gateway6)}`, `${f}.gateway6`);
      routes.push({ to: '::/0', via: nic.gateway6 });
      route6 = true;
    }
    if (routes.length > 0) eth.routes = routes;
    if (nic.dns_servers.length > 0) {
      for (const [i, s] of nic.dns_servers.entries())
        check(V4_RE.test(s) || V6_RE.test(s), `DNS server ${JSON.stringify(s)}`, `${f}.dns_servers[${i}]`);
      eth.nameservers = { addresses: [...nic.dns_servers] };
    }
    ethernets[name] = eth;
  }
  return cloudYaml({ version: 2, ethernets });
}
