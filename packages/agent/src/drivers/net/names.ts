import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { checkId } from '../../host/validate.js';

// The network reconciler reads these from here; they are defined once, in host/validate.ts.
export { checkCidr, checkId, checkIfName, checkIp, NET_ID_RE } from '../../host/validate.js';

/** Hex digits of the id hash in interface names: prefix (4) + 11 = 15. */
const HASH_LEN = 11;

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

/** The VPN router port of a network on a host (a macvlan on its bridge): `flgw` + 11 hex of sha256(id). */
export function vpnPortName(netId: string): string {
  return hashed('flgw', netId, 'network_id');
}

/** The tap of a NIC: `fltp` + 11 hex of sha256(id). */
export function tapName(nicId: string): string {
  return hashed('fltp', nicId, 'nic_id');
}

/** The IFB device that shapes what a NIC's instance sends: `flib` + 11 hex of sha256(id). */
export function ifbName(nicId: string): string {
  return hashed('flib', nicId, 'nic_id');
}

/** The directory of a network's state on a host (`<stateDir>/net/<id>`): its existence marks a network built there. */
export function networkStateDir(stateDir: string, netId: string): string {
  return join(stateDir, 'net', checkId('network_id', netId));
}
