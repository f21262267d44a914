import { FloeError } from '@floe/api';
import { checkIfName, checkIp, invalid } from '../../host/validate.js';
import { checkNet, checkNic, type CheckedNet } from './checked-spec.js';
import { tapName } from './names.js';
import type { NetSpec, NicSpec, ObservedNet } from './types.js';

/*
 * The `ip` and `bridge` commands that build a private network on a host (bridge,
 * VXLAN device, flood entries, addresses) and plug taps into it, as argument
 * arrays: pure functions of the spec and of what the host has.
 */

/** One command as an argument array, the program first (`ip`, `bridge`). */
export type Argv = readonly string[];

/** The UDP port of VXLAN (IANA). */
const VXLAN_PORT = 4789;

/** Create the network's bridge (down, with its MTU and the shared gateway MAC). */
function bridgeCreateCommands(c: CheckedNet): Argv[] {
  return [['ip', 'link', 'add', c.bridge, 'address', c.gatewayMac, 'mtu', String(c.net.mtu), 'type', 'bridge']];
}

/** Create the VXLAN device (unicast only: no group, no learning) and enslave it to the bridge. */
function vxlanCreateCommands(c: CheckedNet, underlay: string): Argv[] {
  checkIp('underlay', underlay);
  return [
    [
      'ip',
      'link',
      'add',
      c.vxlan,
      'mtu',
      String(c.net.mtu),
      'type',
      'vxlan',
      'id',
      String(c.net.vni),
      'local',
      underlay,
      'dstport',
      String(VXLAN_PORT),
      'nolearning',
    ],
    ['ip', 'link', 'set', c.vxlan, 'master', c.bridge, 'up'],
  ];
}

/** One head-end replication target: broadcast/unknown frames go to `peer` too. */
function fdbCommand(c: CheckedNet, peer: string, action: 'append' | 'del'): Argv {
  checkIp('peer', peer);
  return ['bridge', 'fdb', action, '00:00:00:00:00:00', 'dev', c.vxlan, 'dst', peer];
}

/**
 * The host's addresses on the bridge: the gateway addresses with a host
 * gateway, else the addresses dnsmasq serves from (`hostAddrs`); `replace`
 * keeps it idempotent.
 */
function addressCommands(c: CheckedNet): Argv[] {
  if (c.net.gatewayMode !== 'host') {
    return (c.net.hostAddrs ?? []).map((a) => [
      'ip',
      'addr',
      'replace',
      a,
      'dev',
      c.bridge,
      ...(a.includes(':') ? ['nodad'] : []),
    ]);
  }
  const out: Argv[] = [];
  if (c.v4?.gateway) out.push(['ip', 'addr', 'replace', `${c.v4.gateway}/${c.v4.prefix}`, 'dev', c.bridge]);
  // Every host carries the same gateway address and MAC; DAD across hosts would only fight itself.
  if (c.v6?.gateway) out.push(['ip', 'addr', 'replace', `${c.v6.gateway}/${c.v6.prefix}`, 'dev', c.bridge, 'nodad']);
  return out;
}

/**
 * Every `ip`/`bridge` command that builds a private network on a fresh host: bridge,
 * VXLAN device attached to it, gateway addresses, bridge up, then one
 * all-zero FDB entry per peer (unicast head-end replication, no multicast).
 *
 * @example
 * for (const [cmd, ...args] of bridgeCommands(net, { underlay: '192.0.2.1' })) await run(cmd, args);
 */
export function bridgeCommands(net: NetSpec, host: { underlay: string }): Argv[] {
  return networkCommands(
    net,
    { bridge: undefined, vxlan: undefined, bridgeAddrs: [], floods: [], ports: [] },
    host.underlay,
  );
}

/**
 * The commands that bring a private network on this host from what it has
 * (`o`) to what `net` asks for, and nothing else: on a fresh host all of
 * `bridgeCommands`; on a host where all is well, none. A VXLAN device with
 * another VNI or source is replaced (its flood entries go with it); the
 * bridge's MAC and MTU, the VXLAN device's port, the flood entries, the
 * gateway addresses and ports that left the bridge (`o.ports`) are repaired.
 * `ip` commands come before `bridge` ones in the list, in the order they can
 * run as one `ip -batch` and one `bridge -batch`.
 *
 * @example
 * const { ip, bridge } = splitByTool(networkCommands(net, observed, '192.0.2.1'));
 */
export function networkCommands(net: NetSpec, o: ObservedNet, underlay: string): Argv[] {
  const c = checkNet(net);
  if (c.physical !== null)
    throw invalid('kind', 'a public network is built from what its physical interface has: see takeoverCommands');
  checkIp('underlay', underlay);
  const mtu = String(net.mtu);
  const ip: Argv[] = [];
  const br: Argv[] = [];
  if (o.bridge !== undefined && o.bridge.kind !== 'bridge')
    throw new FloeError('invalid_state', `interface ${c.bridge} exists and is not a bridge`, { interface: c.bridge });
  if (o.bridge === undefined) ip.push(...bridgeCreateCommands(c));
  else if (o.bridge.address !== c.gatewayMac || o.bridge.mtu !== net.mtu)
    ip.push(['ip', 'link', 'set', c.bridge, 'address', c.gatewayMac, 'mtu', mtu]);
  const vx = o.vxlan;
  const vxOk = vx !== undefined && vx.kind === 'vxlan' && vx.vni === net.vni && vx.local === underlay;
  if (vx !== undefined && !vxOk) ip.push(['ip', 'link', 'del', c.vxlan]);
  if (!vxOk) ip.push(...vxlanCreateCommands(c, underlay));
  else if (vx.master !== c.bridge || !vx.up || vx.mtu !== net.mtu)
    ip.push(['ip', 'link', 'set', c.vxlan, 'mtu', mtu, 'master', c.bridge, 'up']);
  // A new VXLAN device has no entries; a kept one may have stale ones.
  const have = vxOk ? o.floods : [];
  for (const p of net.peers) if (!have.includes(p)) br.push(fdbCommand(c, p, 'append'));
  for (const p of have) if (!net.peers.includes(p)) br.push(fdbCommand(c, p, 'del'));
  const addrs = o.bridge === undefined ? [] : o.bridgeAddrs;
  for (const cmd of addressCommands(c)) if (!addrs.includes(cmd[3]!)) ip.push(cmd);
  if (o.bridge === undefined || !o.bridge.up) ip.push(['ip', 'link', 'set', c.bridge, 'up']);
  for (const port of o.ports) {
    if (o.bridge !== undefined && port.master === c.bridge && port.up && port.mtu === net.mtu) continue;
    ip.push(...portCommands(port.name, c));
  }
  return [...ip, ...br];
}

/** Create a persistent tap for QEMU and plug it into the network's bridge. */
export function tapCommands(nic: NicSpec, net: NetSpec): Argv[] {
  const c = checkNet(net);
  checkNic(nic);
  const tap = tapName(nic.id);
  return [['ip', 'tuntap', 'add', 'dev', tap, 'mode', 'tap'], ...portCommands(tap, c)];
}

/** Attach an existing interface (a tap, or a veth standing in for one) to the bridge with the network's MTU. */
export function portCommands(ifname: string, c: CheckedNet): Argv[] {
  checkIfName('ifname', ifname);
  return [['ip', 'link', 'set', ifname, 'mtu', String(c.net.mtu), 'master', c.bridge, 'up']];
}

/** `ip -batch` (or `bridge -batch`) input for commands that all run that tool: one process, so the steps follow each other without gaps. */
export function toBatch(cmds: readonly Argv[], tool: 'ip' | 'bridge' = 'ip'): string {
  return (
    cmds
      .map((cmd) => {
        if (cmd[0] !== tool) throw new Error(`not ${tool === 'ip' ? 'an' : 'a'} ${tool} command: ${cmd.join(' ')}`);
        // Every value was validated: no whitespace, quotes or comment characters reach the batch parser.
        for (const a of cmd)
          if (!/^[A-Za-z0-9_.:/-]+$/.test(a))
            throw invalid('argument', `${JSON.stringify(a)} cannot go into a ${tool} batch`);
        return cmd.slice(1).join(' ');
      })
      .join('\n') + '\n'
  );
}
