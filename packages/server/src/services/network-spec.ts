import { FloeError, type NetworkCreate, type NetworkSpec } from '@floe/api';
import { fromJson } from '../db/index.js';
import { formatCidr6, formatIpv4, formatIpv6, parseCidr4, parseCidr6, parseIpv4, parseIpv6, ula64 } from './ip.js';
import { addressPlan } from './ipam.js';

/* A network's spec: how a create body becomes one, and how a stored one reads (pure). */

/** Largest VXLAN network identifier (24 bits). */
export const MAX_VNI = 16_777_215;

/** Default MTU of private networks: 1500 less the 50 bytes of VXLAN over IPv4. */
const PRIVATE_MTU = 1450;

/** A stored network spec, with the fields added since it was written filled in. */
export function networkSpecOf(json: string): NetworkSpec {
  const spec = fromJson<Omit<NetworkSpec, 'dhcpv6'> & { dhcpv6?: boolean }>(json);
  return { ...spec, dhcpv6: spec.dhcpv6 ?? false };
}

/** Normalize a create body into a spec (pure; `id` seeds `ipv6: auto`). */
export function networkSpecFrom(body: NetworkCreate, id: string): NetworkSpec {
  const kind = body.kind ?? 'private';
  const ipv4 = body.ipv4 === undefined ? null : body.ipv4;
  const ipv6Raw = body.ipv6 === undefined ? null : body.ipv6;
  const ipv6 = ipv6Raw === 'auto' ? ula64(id) : ipv6Raw === null ? null : formatCidr6(parseCidr6(ipv6Raw, 'ipv6'));
  const spec: NetworkSpec = {
    kind,
    ipv4: ipv4 === null ? null : `${formatIpv4(parseCidr4(ipv4, 'ipv4').network)}/${parseCidr4(ipv4).prefix}`,
    ipv6,
    gateway: body.gateway ?? (kind === 'public' ? 'none' : 'host'),
    mtu: body.mtu ?? (kind === 'public' ? 1500 : PRIVATE_MTU),
    dns: body.dns ?? kind === 'private',
    dhcpv6: body.dhcpv6 ?? false,
    reserved: canonicalReserved(body.reserved ?? []),
    pool: body.pool ?? null,
    uplink: body.uplink ?? null,
  };
  if (spec.gateway !== 'host' && spec.gateway !== 'none') spec.gateway = formatIpv4(parseIpv4(spec.gateway, 'gateway'));
  if (kind === 'private' && (spec.pool !== null || spec.uplink !== null)) {
    throw new FloeError('validation_failed', 'pool and uplink are for public networks', {
      field: spec.pool !== null ? 'pool' : 'uplink',
    });
  }
  checkDhcpv6(spec);
  if (spec.ipv4 === null && spec.ipv6 === null && spec.gateway !== 'none') {
    throw new FloeError('validation_failed', 'a network without addresses cannot have a gateway; use --gateway none', {
      field: 'gateway',
    });
  }
  addressPlan(spec); // validates
  return spec;
}

/** DHCPv6 hands out IPv6 addresses: a network needs them, and public networks leave IPv6 to their LAN. */
export function checkDhcpv6(spec: NetworkSpec): void {
  if (!spec.dhcpv6) return;
  if (spec.ipv6 === null)
    throw new FloeError('validation_failed', 'DHCPv6 needs an IPv6 range (--ipv6)', { field: 'dhcpv6' });
  if (spec.kind === 'public')
    throw new FloeError('validation_failed', "public networks leave IPv6 to their LAN's routers: no DHCPv6", {
      field: 'dhcpv6',
    });
}

/** Reserved addresses in their canonical text (`reserved[i]` names a malformed one). */
export function canonicalReserved(reserved: readonly string[]): string[] {
  return reserved.map((r, i) =>
    r.includes(':') ? formatIpv6(parseIpv6(r, `reserved[${i}]`)) : formatIpv4(parseIpv4(r, `reserved[${i}]`)),
  );
}
