import { FloeError } from '@floe/api';
import { checkInt, checkMac } from '../host/validate.js';
import { tapName } from '../drivers/net/names.js';
import { removeTablesScript, renderTables } from '../drivers/net/nft-tables.js';
import { METADATA_IPV4, METADATA_IPV6 } from './vendor-data.js';

/** One local NIC the metadata service answers: its tap, its port on the host, and its bridge's MAC when known. */
export interface MetadataNic {
  nicId: string;
  /** The NIC's own port on the host (from the agent's metadata port range). */
  port: number;
  /**
   * The MAC of the bridge the tap is in (a private network's gateway MAC):
   * requests are re-addressed to it so that they go up to the host even when
   * the guest sent them to its router VM. Absent on public networks, where
   * `meta pkttype set host` alone hands the frame to the host.
   */
  bridgeMac?: string;
}

/** The agent's metadata port range. */
export interface PortRange {
  first: number;
  last: number;
}

/** The packet mark of a NIC's metadata requests: `0x666c` ("fl") and its port, so marks never collide between NICs. */
export function metadataMark(port: number): string {
  return `0x666c${checkInt('port', port, 1, 65535).toString(16).padStart(4, '0')}`;
}

/** Check a port range (unprivileged ports, first ≤ last, at most 4096 ports). */
export function checkPortRange(range: PortRange): PortRange {
  checkInt('metadata_ports.first', range.first, 1024, 65535);
  checkInt('metadata_ports.last', range.last, range.first, Math.min(65535, range.first + 4095));
  return range;
}

/** A port range as `FIRST-LAST` (the `--metadata-ports` flag). */
export function parsePortRange(text: string): PortRange {
  const m = /^(\d{1,5})-(\d{1,5})$/.exec(text);
  if (m === null)
    throw new FloeError('validation_failed', `${JSON.stringify(text)} is not a port range FIRST-LAST`, {
      field: 'metadata_ports',
    });
  return checkPortRange({ first: Number(m[1]), last: Number(m[2]) });
}

const TABLES = [
  { family: 'bridge', name: 'floe_meta' },
  { family: 'inet', name: 'floe_meta' },
] as const;

/** The nft script that removes floe's metadata tables (declared first, so it works when they are absent). */
export const METADATA_NFT_REMOVE = removeTablesScript(TABLES);

/**
 * The metadata service's firewall as one `nft -f` transaction (tables
 * declared, deleted and redefined: atomic and idempotent):
 * `table bridge floe_meta` marks a request entering from a tap to the
 * metadata address on TCP 80 with that NIC's mark and hands it to the host
 * (bridge MAC, `pkttype host`), whichever MAC the guest sent it to;
 * `table inet floe_meta` redirects a marked request to the NIC's port (on the
 * bridge's own address) and accepts connections to a port only when they were
 * redirected there from that NIC's tap: nothing reaches a port directly, from
 * the LAN, a guest or the host itself. The identity of a request is the tap
 * it came in on, never what the guest says.
 *
 * @example
 * await run('nft', ['-f', '-'], { input: metadataRuleset(nics, { first: 20000, last: 20999 }) });
 */
export function metadataRuleset(nics: readonly MetadataNic[], range: PortRange): string {
  checkPortRange(range);
  const sorted = [...nics].sort((a, b) => a.port - b.port);
  const ports = new Set<number>();
  sorted.forEach((n, i) => {
    checkInt(`nics[${i}].port`, n.port, range.first, range.last);
    if (ports.has(n.port))
      throw new FloeError('validation_failed', `two NICs on metadata port ${n.port}`, { field: `nics[${i}].port` });
    ports.add(n.port);
    if (n.bridgeMac !== undefined) checkMac(`nics[${i}].bridge_mac`, n.bridgeMac);
  });
  const tag = (port: number, bridgeMac: string | undefined) =>
    `meta mark set ${metadataMark(port)}${bridgeMac === undefined ? '' : ` ether daddr set ${bridgeMac}`} meta pkttype set host`;
  const marking = sorted.flatMap((n) => [
    `iifname "${tapName(n.nicId)}" ip daddr ${METADATA_IPV4} tcp dport 80 ${tag(n.port, n.bridgeMac)}`,
    `iifname "${tapName(n.nicId)}" ip6 daddr ${METADATA_IPV6} tcp dport 80 ${tag(n.port, n.bridgeMac)}`,
  ]);
  const redirects = sorted.flatMap((n) => [
    `meta mark ${metadataMark(n.port)} ip daddr ${METADATA_IPV4} tcp dport 80 redirect to :${n.port}`,
    `meta mark ${metadataMark(n.port)} ip6 daddr ${METADATA_IPV6} tcp dport 80 redirect to :${n.port}`,
  ]);
  return renderTables([
    {
      ...TABLES[0],
      chains: [
        {
          name: 'prerouting',
          // After floe's anti-spoofing chain (priority -200): a frame with a forged source is dropped there whatever happens here.
          hook: 'type filter hook prerouting priority -150; policy accept;',
          rules: [
            ...marking,
            // Anything else from a guest to the metadata address (another port, UDP) goes nowhere: not out of a host gateway's
            // NAT to whatever answers there on the host's network (a cloud's own metadata service), nor to a router VM.
            `iifname "fltp*" ip daddr ${METADATA_IPV4} meta mark & 0xffff0000 != 0x666c0000 drop`,
            `iifname "fltp*" ip6 daddr ${METADATA_IPV6} meta mark & 0xffff0000 != 0x666c0000 drop`,
          ],
        },
      ],
    },
    {
      ...TABLES[1],
      chains: [
        { name: 'prerouting', hook: 'type nat hook prerouting priority dstnat; policy accept;', rules: redirects },
        {
          name: 'input',
          hook: 'type filter hook input priority filter; policy accept;',
          rules: [
            ...sorted.map((n) => `meta mark ${metadataMark(n.port)} tcp dport ${n.port} ct status dnat accept`),
            // Only new connections: a reply to the host's own outgoing connection from a port in the range passes.
            `tcp dport ${range.first}-${range.last} ct state new drop`,
          ],
        },
      ],
    },
  ]);
}
