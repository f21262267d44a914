/**
 * The firewall benchmark (`npm run bench:firewall`, root only), two figures:
 *   1. rule application latency: a rule added to (and removed from) a
 *      security group that 100 NICs use, from the API request until the rule
 *      is in the host's nftables, through a control plane in this process and
 *      a real agent (fake VM driver) whose network commands run in a
 *      namespace. Baseline, same run: the same ruleset loaded by hand with one
 *      `nft -f` (what applying it costs at the least). The rounds of adding
 *      are traced (control plane signals and link messages, the agent's
 *      firewall calls): where the time goes, step by step. And, through the
 *      Linux firewall driver alone on the same 100 NICs: a change of a
 *      group's members refilled in place against the whole ruleset applied
 *      again.
 *   2. throughput through the firewall: iperf3 between two "VM" namespaces on
 *      one bridge, each behind a veth named as a floe tap, with no ruleset at
 *      all (the baseline), then with floe's ruleset whose group holds 1,000
 *      rules, rounds taking turns. The ratio with ÷ without is the figure
 *      (target ≥ 0.9). Benchmarks report; they never fail on times.
 */
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { run, which } from '../packages/agent/src/host/exec.js';
import { bridgeName, tapName } from '../packages/agent/src/drivers/net/names.js';
import { hostExec, type HostExec } from '../packages/agent/src/drivers/net/host-exec.js';
import { NftFirewall } from '../packages/agent/src/drivers/net/nft-firewall.js';
import { nftRuleset } from '../packages/agent/src/drivers/net/ruleset.js';
import type { NetSpec, NicSpec, SecurityGroupSpec, SgRule } from '../packages/agent/src/drivers/net/types.js';
import { startRig, stopRig } from './net-api.js';
import { deleteNamespace, hostNamespace, ip, killDnsmasqUnder, namespaces, until } from './net-ns.js';
import { fmt, percentile, sorted, table } from './report.js';
import { traceSteps, type TraceEntry } from './trace.js';
import { epochMs } from './worker.js';

const ROUNDS = Number(process.env.FLOE_BENCH_RUNS ?? 5);
const NICS = 100;
const RULES = 1000;
const IPERF_SECONDS = Number(process.env.FLOE_BENCH_IPERF_SECONDS ?? 3);
const log = (line: string) => process.stdout.write(`${line}\n`);
const median = (v: readonly number[]) => percentile(sorted(v), 0.5);

/** Part 1: API request → rule in the host's nftables, for a group of 100 NICs; and the steps on the way. */
async function latency(): Promise<{ rows: string[][]; steps: string[][] }> {
  const state = await mkdtemp(path.join(os.tmpdir(), 'floe-bench-fw-'));
  const hostNs = await hostNamespace();
  const rig = await startRig(state, hostNs, { cpus: 1024, memoryMib: 1024 * 1024 });
  try {
    const { client } = rig;
    await client.networks.create({ name: 'lan', ipv4: '10.10.0.0/23', ipv6: null, gateway: 'none' });
    const web = await client.securityGroups.create({
      name: 'web',
      rules: [{ direction: 'ingress', protocol: 'tcp', port: '22', remote_group: 'self' }],
    });
    log(`creating ${NICS} instances with a NIC in group web (not measured)`);
    for (let i = 0; i < NICS; i++)
      await client.instances.create({
        name: `vm-${i}`,
        image: 'bench',
        machine_type: 'nano',
        start: false,
        networks: [{ network: 'lan', security_groups: ['web'] }],
      });
    const chain = async () =>
      (
        await run('ip', ['netns', 'exec', hostNs, 'nft', 'list', 'chain', 'bridge', 'floe', `sg_${web.id}_in`], {
          allowFail: true,
        })
      ).stdout;
    const members = async () =>
      (
        await run('ip', ['netns', 'exec', hostNs, 'nft', 'list', 'set', 'bridge', 'floe', `sgm4_${web.id}`], {
          allowFail: true,
        })
      ).stdout;
    await until(async () => (await members()).split(',').length >= NICS, `all ${NICS} NICs in the member set`, 120_000);
    const ruleset = await run('ip', ['netns', 'exec', hostNs, 'nft', 'list', 'ruleset']);
    const apiAdd: number[] = [];
    const apiRm: number[] = [];
    const byHand: number[] = [];
    const traces: Array<{ startAt: number; entries: TraceEntry[] }> = [];
    for (let r = 0; r < ROUNDS; r++) {
      const port = String(10_000 + r);
      rig.trace.take();
      await rig.agent.call({ kind: 'trace' });
      const startAt = epochMs();
      let t0 = performance.now();
      const g = await client.securityGroups.addRule('web', { direction: 'ingress', protocol: 'tcp', port });
      rig.trace.note('bench: API answered');
      await until(async () => (await chain()).includes(`tcp dport ${port} accept`), 'the rule on the host', 120_000);
      apiAdd.push(performance.now() - t0);
      rig.trace.note('bench sees the rule');
      traces.push({
        startAt,
        entries: [...rig.trace.take(), ...(await rig.agent.call<TraceEntry[]>({ kind: 'trace' }))],
      });
      const id = g.spec.rules.find((x) => x.port_min === Number(port))!.id;
      t0 = performance.now();
      await client.securityGroups.removeRule('web', id);
      await until(async () => !(await chain()).includes(`tcp dport ${port} accept`), 'the rule gone', 120_000);
      apiRm.push(performance.now() - t0);
      // The floor: the host's whole ruleset as it is now, loaded again by one `nft -f`.
      t0 = performance.now();
      await run('ip', ['netns', 'exec', hostNs, 'nft', '-f', '-'], { input: `flush ruleset\n${ruleset.stdout}` });
      byHand.push(performance.now() - t0);
    }
    const base = median(byHand);
    const size = ruleset.stdout.split('\n').length;
    return {
      rows: [
        [`nft -f by hand (baseline; ${size} lines listed)`, fmt(base), '1.00'],
        [`API add rule → active (${NICS} NICs)`, fmt(median(apiAdd)), fmt(median(apiAdd) / base, 2)],
        [`API remove rule → gone (${NICS} NICs)`, fmt(median(apiRm)), fmt(median(apiRm) / base, 2)],
      ],
      steps: traceSteps(traces).map(([step, xs]) => [step, fmt(median(xs))]),
    };
  } finally {
    await stopRig(rig);
    await killDnsmasqUnder(state);
    await deleteNamespace(hostNs);
    await rm(state, { recursive: true, force: true });
  }
}

const NET: NetSpec = {
  id: 'net_01JB8X0Q3E6M2T9K4V7W5YB1C3',
  vni: 100,
  ipv4: { cidr: '10.10.0.0/24', gateway: null },
  ipv6: null,
  mtu: 1500,
  gatewayMode: 'none',
  dns: false,
  peers: [],
};
const SG = 'sg_01JB8X0Q3E6M2T9K4V7W5YB1D1';
const nic = (n: number): NicSpec => ({
  id: `nic_01JB8X0Q3E6M2T9K4V7W5YB1E${n}`,
  instanceId: `inst_01JB8X0Q3E6M2T9K4V7W5YB1E${n}`,
  networkId: NET.id,
  mac: `52:54:00:00:00:0${n}`,
  ipv4: `10.10.0.${n}`,
  ipv6: null,
  hostname: `vm-${n}`,
  securityGroups: [SG],
});

/**
 * Through the Linux firewall driver alone, in a namespace of its own: the ruleset of 100 NICs in one
 * group whose rule names the group itself, then a member more (another host's NIC joining) refilled
 * in place, against the same change applied as the whole ruleset.
 */
async function members(): Promise<string[][]> {
  const ns = await hostNamespace();
  try {
    const exec: HostExec = hostExec(ns);
    const driver = new NftFirewall(exec);
    const nics = Array.from({ length: NICS }, (_, i) => ({
      ...nic(0),
      id: `nic_01JB8X0Q3E6M2T9K4V7W5Y${String(i).padStart(4, '0')}`,
      mac: `52:54:00:00:01:${i.toString(16).padStart(2, '0')}`,
      ipv4: `10.10.0.${i + 10}`,
    }));
    const group = (n: number): SecurityGroupSpec => ({
      id: SG,
      ingressDefault: 'deny',
      egressDefault: 'allow',
      rules: [{ direction: 'ingress', protocol: 'tcp', portMin: 22, portMax: 22, remoteCidr: null, remoteGroup: SG }],
      members: [...nics.map((x) => x.ipv4), ...Array.from({ length: n }, (_, i) => `10.10.1.${i + 1}`)],
    });
    await driver.applyFirewall([NET], nics, [group(0)]);
    const inPlace: number[] = [];
    const whole: number[] = [];
    for (let r = 1; r <= ROUNDS; r++) {
      let t0 = performance.now();
      if (!(await driver.updateFirewallMembers([NET], nics, [group(2 * r - 1)])))
        throw new Error('the driver did not update the members in place');
      inPlace.push(performance.now() - t0);
      t0 = performance.now();
      await driver.applyFirewall([NET], nics, [group(2 * r)]);
      whole.push(performance.now() - t0);
    }
    const base = median(whole);
    return [
      [`whole ruleset, a member more (driver, ${NICS} NICs)`, fmt(base), '1.00'],
      [`member sets refilled in place (driver, ${NICS} NICs)`, fmt(median(inPlace)), fmt(median(inPlace) / base, 2)],
    ];
  } finally {
    await deleteNamespace(ns);
  }
}

/** 1,000 allow rules of assorted ports and CIDRs; iperf3's port (5201) from the group itself comes last. */
function thousandRules(): SgRule[] {
  const rules: SgRule[] = [];
  for (let i = 0; rules.length < RULES - 1; i++)
    rules.push({
      direction: 'ingress',
      protocol: i % 2 === 0 ? 'tcp' : 'udp',
      portMin: 1000 + i,
      portMax: 1000 + i + (i % 5),
      remoteCidr: `172.${16 + (i % 16)}.${i % 256}.0/24`,
      remoteGroup: null,
    });
  rules.push({
    direction: 'ingress',
    protocol: 'tcp',
    portMin: 5201,
    portMax: 5201,
    remoteCidr: null,
    remoteGroup: SG,
  });
  return rules;
}

/** Part 2: iperf3 between two "VMs" on one bridge, without and with the ruleset. */
async function throughput(): Promise<string[][]> {
  const hostNs = await hostNamespace();
  const vms = [] as string[];
  const a = nic(2);
  const b = nic(3);
  try {
    const br = bridgeName(NET.id);
    await ip(hostNs, 'link', 'add', br, 'type', 'bridge');
    await ip(hostNs, 'link', 'set', br, 'up');
    for (const n of [a, b]) {
      const vm = `floe-v-fw${n.ipv4!.split('.')[3]}-${process.pid}`;
      await run('ip', ['netns', 'add', vm]);
      namespaces.add(vm);
      vms.push(vm);
      await ip(hostNs, 'link', 'add', tapName(n.id), 'type', 'veth', 'peer', 'name', 'eth0', 'netns', vm);
      await ip(hostNs, 'link', 'set', tapName(n.id), 'master', br, 'up');
      await ip(vm, 'link', 'set', 'lo', 'up');
      await ip(vm, 'link', 'set', 'eth0', 'address', n.mac, 'up');
      await ip(vm, 'addr', 'add', `${n.ipv4}/24`, 'dev', 'eth0');
    }
    await run('ip', ['netns', 'exec', hostNs, 'sysctl', '-q', '-w', 'net.bridge.bridge-nf-call-iptables=1']);
    const group: SecurityGroupSpec = {
      id: SG,
      ingressDefault: 'deny',
      egressDefault: 'allow',
      rules: thousandRules(),
      members: [a.ipv4!, b.ipv4!],
    };
    const withRules = nftRuleset([NET], [a, b], [group]);
    // floe's firewall without security groups (anti-spoofing, isolation): what filtering adds on top of it.
    const unfiltered = nftRuleset(
      [NET],
      [a, b].map((n) => ({ ...n, filtering: false })),
      [group],
    );
    const server = spawn('ip', ['netns', 'exec', vms[1]!, 'iperf3', '-s'], { stdio: 'ignore' });
    try {
      await new Promise((r) => setTimeout(r, 500));
      const iperf = async () => {
        const out = await run('ip', [
          'netns',
          'exec',
          vms[0]!,
          'iperf3',
          '-J',
          '-c',
          b.ipv4!,
          '-t',
          String(IPERF_SECONDS),
        ]);
        const j = JSON.parse(out.stdout) as { end: { sum_received: { bits_per_second: number } } };
        return j.end.sum_received.bits_per_second / 1e9;
      };
      const none: number[] = [];
      const spoof: number[] = [];
      const rules: number[] = [];
      for (let r = 0; r < ROUNDS; r++) {
        await run('ip', ['netns', 'exec', hostNs, 'nft', 'flush', 'ruleset']);
        none.push(await iperf());
        await run('ip', ['netns', 'exec', hostNs, 'nft', '-f', '-'], { input: unfiltered });
        spoof.push(await iperf());
        await run('ip', ['netns', 'exec', hostNs, 'nft', '-f', '-'], { input: withRules });
        rules.push(await iperf());
      }
      const count = (
        await run('ip', ['netns', 'exec', hostNs, 'nft', 'list', 'chain', 'bridge', 'floe', `sg_${SG}_in`])
      ).stdout
        .split('\n')
        .filter((l) => l.includes('accept')).length;
      const base = median(none);
      return [
        ['no ruleset (baseline)', fmt(base, 2), '1.00'],
        ['floe ruleset, filtering off (anti-spoofing only)', fmt(median(spoof), 2), fmt(median(spoof) / base, 2)],
        [`floe ruleset, ${count} rules in the group`, fmt(median(rules), 2), fmt(median(rules) / base, 2)],
      ];
    } finally {
      server.kill();
    }
  } finally {
    for (const vm of vms) await deleteNamespace(vm);
    await deleteNamespace(hostNs);
  }
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) {
    log('bench:firewall needs root (it creates network namespaces); nothing measured');
    return;
  }
  const cpus = os.cpus();
  log(
    `floe firewall benchmark — ${cpus.length} CPU(s) (${cpus[0]?.model ?? 'unknown'}), Node.js ${process.version}, ${os.platform()} ${os.release()}; ${ROUNDS} rounds`,
  );
  process.once('SIGINT', () => {
    void Promise.all([...namespaces].map(deleteNamespace)).finally(() => process.exit(130));
  });
  if ((await which('iperf3')) === null) log('iperf3 is not installed: the throughput part is skipped');
  else {
    log('\nthroughput between two VMs on one bridge, iperf3 TCP (Gbit/s, median)');
    log(table(['', 'Gbit/s', 'ratio'], await throughput()));
  }
  log(`\nrule application latency, a group used by ${NICS} NICs (ms, median)`);
  const { rows, steps } = await latency();
  log(table(['', 'ms', 'ratio'], rows));
  log('\nwhere the time of adding a rule goes: each step, ms after the API request (median)');
  log(table(['step', 'at'], steps));
  log(`\na change of members only, ${NICS} NICs on the host (ms, median)`);
  log(table(['', 'ms', 'ratio'], await members()));
}

await main();
