/**
 * The two sides of the networking benchmark below the API: the commands floe
 * builds run by hand (the baseline), and floe's HostNetworkDriver called
 * directly, on the network and NIC the control plane made of the warm-up.
 */
import { mkdir, rm, writeFile } from 'node:fs/promises';
import type { Network, Nic } from '@floe/api';
import { bridgeCommands, tapCommands } from '../packages/agent/src/drivers/net/link-commands.js';
import { dnsmasqFiles, dnsmasqPaths, dnsmasqRunDir } from '../packages/agent/src/drivers/net/dnsmasq.js';
import { HostNetworkDriver } from '../packages/agent/src/drivers/net/driver.js';
import { bridgeName } from '../packages/agent/src/drivers/net/names.js';
import { nftRuleset } from '../packages/agent/src/drivers/net/ruleset.js';
import type { NetSpec, NicSpec } from '../packages/agent/src/drivers/net/types.js';
import { run } from '../packages/agent/src/host/exec.js';
import { deleteNamespace, hostNamespace, plugAndLease, UNDERLAY, vmNamespace } from './net-ns.js';

/** The network and NIC both sides build: what the control plane made of the warm-up request. */
export interface Subject {
  net: NetSpec;
  nic: NicSpec;
}

export function subjectOf(network: Network, nic: Nic, hostname: string): Subject {
  const net: NetSpec = {
    id: network.id,
    vni: network.vni,
    ipv4: network.spec.ipv4 === null ? null : { cidr: network.spec.ipv4, gateway: network.status.gateway4 },
    ipv6: network.spec.ipv6 === null ? null : { cidr: network.spec.ipv6, gateway: network.status.gateway6 },
    mtu: network.spec.mtu,
    gatewayMode: 'host',
    dns: network.spec.dns,
    peers: [],
  };
  return {
    net,
    nic: {
      id: nic.id,
      instanceId: nic.instance,
      networkId: network.id,
      mac: nic.mac,
      ipv4: nic.ipv4,
      ipv6: nic.ipv6,
      hostname,
    },
  };
}

/** One measured round: total ms, and for the API, when each part was done (ms after the start). */
export interface Round {
  ms: number;
  parts: Record<string, number>;
}

/** Baseline: the commands floe builds for the network, run directly one after the other, then the lease. */
export async function byHand(state: string, s: Subject): Promise<Round> {
  const paths = dnsmasqPaths(state, s.net.id);
  const cmds = [...bridgeCommands(s.net, { underlay: UNDERLAY }), ...tapCommands(s.nic, s.net)];
  const files = dnsmasqFiles(s.net, [s.nic], paths);
  const ruleset = nftRuleset([s.net], [s.nic]);
  const ns = await hostNamespace();
  const vm = await vmNamespace(ns, s.nic.mac, s.net.mtu);
  try {
    const t0 = performance.now();
    for (const [cmd, ...args] of cmds) await run('ip', ['netns', 'exec', ns, cmd!, ...args]);
    await run('ip', ['netns', 'exec', ns, 'nft', '-f', '-'], { input: ruleset });
    await mkdir(paths.dir, { recursive: true });
    await mkdir(paths.runDir, { recursive: true });
    await writeFile(paths.hostsFile, files.hosts);
    await writeFile(paths.namesFile, files.names);
    await writeFile(paths.conf, files.conf);
    await run('ip', ['netns', 'exec', ns, 'dnsmasq', `--conf-file=${paths.conf}`]);
    const dhcpAt = performance.now() - t0;
    const lease = await plugAndLease(ns, vm, bridgeName(s.net.id));
    const ms = performance.now() - t0;
    if (lease !== s.nic.ipv4) throw new Error(`by hand: the client leased ${lease}, not ${s.nic.ipv4}`);
    return { ms, parts: { dnsmasq: dhcpAt } };
  } finally {
    // dnsmasq first: a process inside a namespace keeps it alive after `ip netns del`.
    await new HostNetworkDriver({ stateDir: state, underlay: UNDERLAY, netns: ns }).stopDhcp(s.net.id);
    await rm(dnsmasqRunDir(state), { recursive: true, force: true });
    await deleteNamespace(vm);
    await deleteNamespace(ns);
  }
}

/** floe's host driver alone: observing first and validating everything, then the same lease. */
export async function viaDriver(state: string, s: Subject): Promise<Round> {
  const ns = await hostNamespace();
  const vm = await vmNamespace(ns, s.nic.mac, s.net.mtu);
  const driver = new HostNetworkDriver({ stateDir: state, underlay: UNDERLAY, netns: ns });
  try {
    const t0 = performance.now();
    const bridge = await driver.ensureNetwork(s.net);
    await driver.ensureTap(s.nic, s.net);
    await driver.applyFirewall([s.net], [s.nic]);
    await driver.ensureDhcp(s.net, [s.nic]);
    const dhcpAt = performance.now() - t0;
    const lease = await plugAndLease(ns, vm, bridge);
    const ms = performance.now() - t0;
    if (lease !== s.nic.ipv4) throw new Error(`driver: the client leased ${lease}, not ${s.nic.ipv4}`);
    return { ms, parts: { dnsmasq: dhcpAt } };
  } finally {
    await driver.stopDhcp(s.net.id);
    await rm(dnsmasqRunDir(state), { recursive: true, force: true });
    await deleteNamespace(vm);
    await deleteNamespace(ns);
  }
}
