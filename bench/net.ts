/**
 * The host networking benchmark (`npm run bench:net`, root only). Measures
 * the time for floe's HostNetworkDriver to bring up one network on a host
 * (bridge + VXLAN + flood entry + gateway addresses, a tap on the bridge, the
 * network's dnsmasq) against running the same `ip`/`bridge`/dnsmasq commands
 * directly, one after the other, in the same run. Each round uses fresh
 * network namespaces (deleted afterwards) and the two take turns. Benchmarks
 * report; they never fail on times.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { bridgeCommands, tapCommands } from '../packages/agent/src/drivers/net/builders.js';
import { dnsmasqConfig, dnsmasqPaths } from '../packages/agent/src/drivers/net/dnsmasq.js';
import { HostNetworkDriver } from '../packages/agent/src/drivers/net/driver.js';
import type { NetSpec, NicSpec } from '../packages/agent/src/drivers/net/types.js';
import { run } from '../packages/agent/src/host/exec.js';
import { fmt, percentile, sorted, table } from './report.js';

const ROUNDS = 10;
const UNDERLAY = '192.0.2.1';

const NET: NetSpec = {
  id: 'net_bench', vni: 100, ipv4: { cidr: '10.10.0.0/24', gateway: '10.10.0.1' }, ipv6: { cidr: 'fd00:10::/64', gateway: 'fd00:10::1' },
  mtu: 1450, gatewayMode: 'host', dns: true, peers: ['192.0.2.2'],
};
const NIC: NicSpec = { id: 'nic_bench', instanceId: 'inst_bench', networkId: NET.id, mac: '52:54:00:00:00:01', ipv4: '10.10.0.5', ipv6: null, hostname: 'web-1' };

async function withNamespace<T>(fn: (ns: string) => Promise<T>): Promise<T> {
  const ns = `floe-b-${randomBytes(4).toString('hex')}`;
  await run('ip', ['netns', 'add', ns]);
  try {
    await run('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
    // An underlay interface to carry the VXLAN source address (a veth pair: dummy is not always built).
    await run('ip', ['-n', ns, 'link', 'add', 'ul', 'type', 'veth', 'peer', 'name', 'ul-peer']);
    await run('ip', ['-n', ns, 'addr', 'add', `${UNDERLAY}/24`, 'dev', 'ul']);
    await run('ip', ['-n', ns, 'link', 'set', 'ul', 'up']);
    return await fn(ns);
  } finally {
    await run('ip', ['netns', 'del', ns], { allowFail: true });
  }
}

/** floe: the driver, observing first and validating everything. */
async function viaDriver(state: string): Promise<number> {
  return withNamespace(async (ns) => {
    const driver = new HostNetworkDriver({ stateDir: state, underlay: UNDERLAY, netns: ns });
    const t0 = performance.now();
    await driver.ensureNetwork(NET);
    await driver.ensureTap(NIC, NET);
    await driver.ensureDhcp(NET, [NIC]);
    const ms = performance.now() - t0;
    await driver.stopDhcp(NET.id);
    return ms;
  });
}

/** Baseline: the same commands run directly, as an administrator's script would. */
async function byHand(state: string): Promise<number> {
  const paths = dnsmasqPaths(state, NET.id);
  const cmds = [...bridgeCommands(NET, { underlay: UNDERLAY }), ...tapCommands(NIC, NET)];
  const conf = dnsmasqConfig(NET, [NIC], paths);
  return withNamespace(async (ns) => {
    const t0 = performance.now();
    for (const [cmd, ...args] of cmds) await run('ip', ['netns', 'exec', ns, cmd!, ...args]);
    await mkdir(paths.dir, { recursive: true });
    await writeFile(paths.conf, conf);
    await run('ip', ['netns', 'exec', ns, 'dnsmasq', `--conf-file=${paths.conf}`]);
    const ms = performance.now() - t0;
    await new HostNetworkDriver({ stateDir: state, underlay: UNDERLAY, netns: ns }).stopDhcp(NET.id);
    return ms;
  });
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) {
    console.log('bench:net needs root (it creates network namespaces); nothing measured');
    return;
  }
  const state = await mkdtemp(path.join(os.tmpdir(), 'floe-bench-net-'));
  const floe: number[] = [];
  const hand: number[] = [];
  try {
    await viaDriver(path.join(state, 'warm'));
    for (let i = 0; i < ROUNDS; i++) {
      hand.push(await byHand(path.join(state, `h${i}`)));
      floe.push(await viaDriver(path.join(state, `f${i}`)));
    }
  } finally {
    await rm(state, { recursive: true, force: true });
  }
  const f = sorted(floe);
  const h = sorted(hand);
  console.log(`network bring-up (bridge, VXLAN, 1 peer, gateway addresses, 1 tap, dnsmasq), ${ROUNDS} rounds, taking turns:`);
  console.log(table(['', 'p50 ms', 'p90 ms', 'min ms'], [
    ['by hand', fmt(percentile(h, 0.5)), fmt(percentile(h, 0.9)), fmt(h[0])],
    ['floe driver', fmt(percentile(f, 0.5)), fmt(percentile(f, 0.9)), fmt(f[0])],
  ]));
  console.log(`ratio floe / by hand (p50): ${fmt(percentile(f, 0.5) / percentile(h, 0.5), 2)}x`);
}

await main();
