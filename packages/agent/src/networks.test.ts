import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { DesiredForward, DesiredInstance, DesiredNetwork, RateLimit } from '@floe/api';
import { rateKey } from './nic-apply.js';
import { pino } from 'pino';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { run, type RunOptions, type RunResult } from './host/exec.js';
import { dnsmasqRunDir } from './drivers/net/dnsmasq.js';
import { HostNetworkDriver, type DhcpState } from './drivers/net/driver.js';
import { ipIn, netnsUnavailable } from './drivers/net/testing.js';
import { bridgeName, tapName } from './drivers/net/names.js';
import { NetworkReconciler, type NetworkHost } from './networks.js';
import { parseDefaultRoute, toNetSpec, toNicSpecs } from './net-specs.js';
import type { NetSpec, NicSpec, SecurityGroupSpec } from './drivers/net/types.js';
import type { NatNic } from './drivers/net/nat-rules.js';
import type { NftTable } from './drivers/net/nft-tables.js';
import { firewallTables, memberSetUpdate } from './drivers/net/ruleset.js';

const NET: DesiredNetwork = {
  id: 'net_01AAA',
  name: 'lan',
  project: 'default',
  kind: 'private',
  vni: 4200,
  mtu: 1450,
  ipv4: '10.10.0.0/24',
  ipv6: 'fd00:10::/64',
  gateway: 'host',
  gateway4: '10.10.0.1',
  gateway6: 'fd00:10::1',
  host_ipv4: '10.10.0.1',
  host_ipv6: 'fd00:10::1',
  dns: true,
  uplink: null,
  peers: ['192.0.2.2'],
  leases: [
    {
      nic_id: 'nic_01A',
      instance_id: 'inst_01A',
      mac: '52:54:00:00:00:01',
      ipv4: '10.10.0.5',
      ipv6: null,
      hostname: 'web-1',
    },
    {
      nic_id: 'nic_01B',
      instance_id: 'inst_01B',
      mac: '52:54:00:00:00:02',
      ipv4: '10.10.0.6',
      ipv6: null,
      hostname: 'web-2',
    },
  ],
};

/** A public network over eth1, its router on the LAN, one NIC from the pool. */
const PUBLIC: DesiredNetwork = {
  id: 'net_01PUB',
  name: 'wan',
  project: 'default',
  kind: 'public',
  vni: 4300,
  mtu: 1500,
  ipv4: '203.0.113.0/24',
  ipv6: null,
  gateway: '203.0.113.1',
  gateway4: '203.0.113.1',
  gateway6: null,
  host_ipv4: null,
  host_ipv6: null,
  dns: false,
  uplink: 'eth1',
  peers: [],
  leases: [
    {
      nic_id: 'nic_01P',
      instance_id: 'inst_01A',
      mac: '52:54:00:00:00:03',
      ipv4: '203.0.113.50',
      ipv6: null,
      hostname: 'web-1',
    },
  ],
};

function instance(id: string, nicId: string, deleting = false): DesiredInstance {
  return {
    id,
    name: id,
    project: 'default',
    revision: 1,
    image: null,
    deleting,
    generation: 1,
    restart_generation: 0,
    force_stop: false,
    spec: {} as DesiredInstance['spec'],
    nics: [
      {
        id: nicId,
        network_id: NET.id,
        vni: NET.vni,
        index: 0,
        mac: '52:54:00:00:00:01',
        ipv4: '10.10.0.5',
        ipv4_prefix: 24,
        ipv6: null,
        ipv6_prefix: null,
        gateway4: '10.10.0.1',
        gateway6: null,
        mtu: 1450,
        dns_servers: [],
      },
    ],
  };
}

describe('DesiredNetwork → NetSpec', () => {
  it('maps a host gateway, with the NAT uplink only the agent knows', () => {
    expect(toNetSpec(NET, { natUplink: 'eth0' })).toEqual({
      id: NET.id,
      vni: 4200,
      mtu: 1450,
      dns: true,
      gatewayMode: 'host',
      peers: ['192.0.2.2'],
      natInterface: 'eth0',
      ipv4: { cidr: '10.10.0.0/24', gateway: '10.10.0.1' },
      ipv6: { cidr: 'fd00:10::/64', gateway: 'fd00:10::1' },
    });
    expect(toNetSpec(NET).natInterface).toBeUndefined();
    expect(toNetSpec(NET).hostAddrs).toBeUndefined();
  });

  it('keeps no gateway in none mode and puts the host address on the bridge itself', () => {
    const none = { ...NET, gateway: 'none', gateway4: null, gateway6: null };
    const spec = toNetSpec(none, { natUplink: 'eth0' });
    expect([spec.gatewayMode, spec.ipv4?.gateway, spec.ipv6?.gateway, spec.natInterface]).toEqual([
      'none',
      null,
      null,
      undefined,
    ]);
    expect(spec.hostAddrs).toEqual(['10.10.0.1/24', 'fd00:10::1/64']);
  });

  it('routes through a VM in vm mode', () => {
    const vm = { ...NET, gateway: '10.10.0.5', gateway4: '10.10.0.5', gateway6: null };
    const spec = toNetSpec(vm);
    expect([spec.gatewayMode, spec.ipv4?.gateway]).toEqual(['vm', '10.10.0.5']);
    expect(spec.hostAddrs).toEqual(['10.10.0.1/24', 'fd00:10::1/64']);
  });

  it('passes the VPN routes the host serves for the network on; none sent or an empty list: none', () => {
    expect(toNetSpec({ ...NET, vpn_routes: ['fd50::/64', '10.250.0.0/24'] }).vpnRoutes).toEqual([
      'fd50::/64',
      '10.250.0.0/24',
    ]);
    expect(toNetSpec({ ...NET, vpn_routes: [] }).vpnRoutes).toBeUndefined();
    expect(toNetSpec(NET).vpnRoutes).toBeUndefined();
  });

  it('passes DHCPv6 on for networks with IPv6 only; a control plane that never sent it means SLAAC', () => {
    expect(toNetSpec({ ...NET, dhcpv6: true }).dhcpv6).toBe(true);
    expect(toNetSpec({ ...NET, dhcpv6: true, ipv6: null, gateway6: null, host_ipv6: null }).dhcpv6).toBeUndefined();
    expect(toNetSpec(NET).dhcpv6).toBeUndefined();
    expect(toNetSpec({ ...NET, dhcpv6: false }).dhcpv6).toBeUndefined();
  });

  it("maps a public network: the uplink is the interface to take over, the gateway the LAN's router", () => {
    expect(toNetSpec(PUBLIC, { natUplink: 'eth0' })).toEqual({
      id: PUBLIC.id,
      kind: 'public',
      physical: 'eth1',
      vni: 4300,
      mtu: 1500,
      dns: false,
      gatewayMode: 'vm',
      peers: [],
      ipv4: { cidr: '203.0.113.0/24', gateway: '203.0.113.1' },
      ipv6: null,
    });
    const none = toNetSpec({ ...PUBLIC, gateway: 'none', gateway4: null });
    expect([none.gatewayMode, none.ipv4?.gateway, none.physical]).toEqual(['none', null, 'eth1']);
    // The host's address on a public bridge is its own LAN address, moved there by the driver.
    expect(toNetSpec(PUBLIC).hostAddrs).toBeUndefined();
  });

  it('refuses a public network without an interface, with a host gateway or a malformed interface', () => {
    expect(() => toNetSpec({ ...PUBLIC, uplink: null })).toThrow(/no host interface/);
    expect(() => toNetSpec({ ...PUBLIC, gateway: 'host' })).toThrow(/router is on the LAN/);
    expect(() => toNetSpec({ ...PUBLIC, uplink: 'eth1; reboot' })).toThrow(/interface name/);
    expect(() => toNetSpec({ ...PUBLIC, kind: 'overlay' as 'public' })).toThrow(/unknown network kind/);
  });

  it('refuses malformed values', () => {
    expect(() => toNetSpec({ ...NET, id: '../x' })).toThrow(/malformed/);
    expect(() => toNetSpec({ ...NET, gateway: 'none', host_ipv4: '10.10.0.1; rm' })).toThrow();
    expect(() => toNetSpec(NET, { natUplink: 'eth0 x' })).toThrow(/interface name/);
  });

  it('turns leases into NICs', () => {
    expect(toNicSpecs(NET)[1]).toEqual({
      id: 'nic_01B',
      instanceId: 'inst_01B',
      networkId: NET.id,
      mac: '52:54:00:00:00:02',
      ipv4: '10.10.0.6',
      ipv6: null,
      hostname: 'web-2',
    });
  });

  it('finds the default route interface', () => {
    expect(parseDefaultRoute('[{"dst":"default","gateway":"192.0.2.1","dev":"eth0"}]')).toBe('eth0');
    expect(parseDefaultRoute('[]')).toBe(null);
    expect(parseDefaultRoute('[{"dst":"default","dev":"bad name"}]')).toBe(null);
    expect(parseDefaultRoute('garbage')).toBe(null);
  });
});

/** A host that records what the reconciler asks of it. */
class RecordingHost implements NetworkHost {
  calls: string[] = [];
  dhcp: Array<{ net: string; local: string[]; remote: string[] }> = [];
  firewall: Array<{ nets: string[]; nics: string[] }> = [];
  failNext = 0;
  constructor(private readonly stateDir: string) {}
  async exec(argv: readonly string[], _o?: RunOptions): Promise<RunResult> {
    this.calls.push(argv.join(' '));
    const stdout = argv.includes('route') ? '[{"dst":"default","dev":"up0"}]' : '';
    return { code: 0, stdout, stderr: '' };
  }
  ports: Array<{ net: string; nics: string[] }> = [];
  async ensureNetwork(net: NetSpec, nics: readonly NicSpec[] = []): Promise<string> {
    if (this.failNext > 0) {
      this.failNext--;
      throw new Error('bridge busy');
    }
    this.calls.push(`ensureNetwork ${net.id} uplink=${net.natInterface ?? '-'}`);
    this.ports.push({ net: net.id, nics: nics.map((n) => n.id) });
    return 'br';
  }
  async removeNetwork(id: string): Promise<void> {
    this.calls.push(`removeNetwork ${id}`);
    await rm(join(this.stateDir, 'net', id), { recursive: true, force: true });
  }
  async ensureDhcp(net: NetSpec, nics: readonly NicSpec[], remote: readonly NicSpec[] = []): Promise<DhcpState> {
    this.dhcp.push({ net: net.id, local: nics.map((n) => n.id), remote: remote.map((n) => n.id) });
    return { pid: 1, started: false };
  }
  /** The security-group side of each firewall applied: the NICs' groups and filtering, the groups sent. */
  sg: Array<{ nics: unknown[]; groups: string[] }> = [];
  /** The groups of each whole firewall applied, as sent. */
  groupsApplied: SecurityGroupSpec[][] = [];
  /** Held until resolved: the next whole firewall waits for it (a slow `nft`). */
  firewallGate: Promise<void> | null = null;
  /** Tables as the Linux driver keeps them, to tell a change of members only (with the real pure function). */
  private tables: NftTable[] | null = null;
  async applyFirewall(
    nets: readonly NetSpec[],
    nics: readonly NicSpec[],
    groups: readonly SecurityGroupSpec[] = [],
  ): Promise<void> {
    const tables = firewallTables({ nets, nics, groups });
    this.firewall.push({ nets: nets.map((n) => n.id), nics: nics.map((n) => n.id) });
    this.sg.push({ nics: nics.map((n) => [n.id, n.securityGroups, n.filtering]), groups: groups.map((g) => g.id) });
    this.groupsApplied.push([...groups]);
    if (this.firewallGate !== null) await this.firewallGate;
    this.tables = tables;
  }
  /** Member sets refilled in place, as the scripts; `refuseMembers` makes the host refuse the next ones. */
  memberUpdates: string[] = [];
  refuseMembers = 0;
  async updateFirewallMembers(
    nets: readonly NetSpec[],
    nics: readonly NicSpec[],
    groups: readonly SecurityGroupSpec[] = [],
  ): Promise<boolean> {
    if (this.tables === null) return false;
    const tables = firewallTables({ nets, nics, groups });
    const script = memberSetUpdate(this.tables, tables);
    if (script === null) return false;
    this.tables = null;
    if (this.refuseMembers > 0) {
      this.refuseMembers--;
      throw new Error('Error: No such file or directory; did you mean set ‘sgm4_x’');
    }
    this.memberUpdates.push(script);
    this.tables = tables;
    return true;
  }
  async ensureTap(_nic: NicSpec, _net: NetSpec): Promise<string> {
    return 'tap';
  }
  async removeTap(_nicId: string): Promise<void> {}
  /** Rate limits put on taps, as `nic key` (no key: none); taps in `noTap` do not exist. */
  rates: string[] = [];
  noTap = new Set<string>();
  /** Every call, tap or not. */
  rateCalls = 0;
  async applyRateLimit(nicId: string, limit: RateLimit | null): Promise<boolean> {
    this.rateCalls++;
    if (this.noTap.has(nicId)) return false;
    this.rates.push(`${nicId} ${rateKey({ rate_limit: limit }) ?? '-'}`);
    return true;
  }
  nat: NatNic[][] = [];
  async applyNat(nics: readonly NatNic[]): Promise<void> {
    this.nat.push([...nics]);
  }
  cleared: string[] = [];
  async clearRateLimit(nicId: string): Promise<void> {
    this.cleared.push(nicId);
  }
}

describe('NetworkReconciler', () => {
  let dir: string;
  let host: RecordingHost;
  let rec: NetworkReconciler;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'floe-netrec-'));
    host = new RecordingHost(dir);
    rec = new NetworkReconciler({ host, stateDir: dir, retryBackoff: { initialMs: 10, maxMs: 20 } });
  });
  afterEach(async () => {
    await rec.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it('does nothing until the control plane sends networks', async () => {
    rec.setInstances([instance('inst_01A', 'nic_01A')]);
    await rec.whenIdle();
    expect(host.calls).toEqual([]);
  });

  it('builds networks with local leases pinned and NATs host gateways to the default route', async () => {
    rec.setInstances([instance('inst_01A', 'nic_01A')]);
    rec.setDesired([NET], { full: true });
    await rec.whenIdle();
    expect(host.calls).toContain(`ensureNetwork ${NET.id} uplink=up0`);
    expect(host.dhcp.at(-1)).toEqual({ net: NET.id, local: ['nic_01A'], remote: ['nic_01B'] });
    expect(host.firewall.at(-1)).toEqual({ nets: [NET.id], nics: ['nic_01A'] });
    expect(await readdir(join(dir, 'net'))).toEqual([NET.id]);

    // A deleted instance's NIC is no longer local.
    rec.updateInstance(instance('inst_01A', 'nic_01A', true));
    await rec.whenIdle();
    expect(host.dhcp.at(-1)?.local).toEqual([]);
    expect(host.firewall.at(-1)?.nics).toEqual([]);
  });

  it('puts the security groups of local NICs into the firewall, a NIC closed until its groups arrive', async () => {
    const plain = instance('inst_01A', 'nic_01A');
    const nic = { ...plain.nics![0]!, security_groups: ['sg_01W'], filtering: true };
    const vm = { ...plain, nics: [nic] };
    rec.setInstances([vm]);
    rec.setDesired([NET], { full: true });
    await rec.whenIdle();
    expect(host.sg.at(-1)).toEqual({ nics: [['nic_01A', [], true]], groups: [] });
    const web = {
      id: 'sg_01W',
      name: 'web',
      project: 'default',
      ingress_default: 'deny' as const,
      egress_default: 'allow' as const,
      rules: [
        {
          direction: 'ingress' as const,
          protocol: 'tcp' as const,
          port_min: 22,
          port_max: 22,
          remote_cidr: null,
          remote_group: null,
        },
      ],
      members: ['10.10.0.5'],
    };
    rec.follows.security_group([web], { full: true });
    await rec.whenIdle();
    expect(host.sg.at(-1)).toEqual({ nics: [['nic_01A', ['sg_01W'], true]], groups: ['sg_01W'] });
    // Filtering off on the NIC: anti-spoofing only.
    rec.updateInstance({ ...vm, nics: [{ ...nic, filtering: false }] });
    await rec.whenIdle();
    expect(host.sg.at(-1)?.nics).toEqual([['nic_01A', ['sg_01W'], false]]);
  });

  describe('security group changes', () => {
    /** web: TCP 22 from its own members; `port` adds a rule for that port. */
    const web = (members: string[], port?: number) => ({
      id: 'sg_01W',
      name: 'web',
      project: 'default',
      ingress_default: 'deny' as const,
      egress_default: 'allow' as const,
      rules: [22, ...(port === undefined ? [] : [port])].map((p) => ({
        direction: 'ingress' as const,
        protocol: 'tcp' as const,
        port_min: p,
        port_max: p,
        remote_cidr: null,
        remote_group: 'sg_01W',
      })),
      members,
    });
    const ports = (groups: SecurityGroupSpec[] | undefined) =>
      (groups ?? []).flatMap((g) => g.rules.map((r) => r.portMin));
    const passes = () => host.calls.filter((c) => c.startsWith('ensureNetwork')).length;
    const setUp = async () => {
      const plain = instance('inst_01A', 'nic_01A');
      const vm = { ...plain, nics: [{ ...plain.nics![0]!, security_groups: ['sg_01W'], filtering: true }] };
      rec.setInstances([vm]);
      rec.follows.security_group([web(['10.10.0.5'])], { full: true });
      rec.setDesired([NET], { full: true });
      await rec.whenIdle();
      expect(host.firewall).toHaveLength(1);
      return vm;
    };

    it('reapplies the firewall alone, without waiting for a pass over the networks that is under way', async () => {
      await setUp();
      // A pass stuck in building a bridge (a slow `ip`, dnsmasq starting).
      let release!: () => void;
      const stuck = new Promise<void>((r) => (release = r));
      const ensureNetwork = host.ensureNetwork.bind(host);
      host.ensureNetwork = async (net, nics) => {
        await stuck;
        return ensureNetwork(net, nics);
      };
      try {
        rec.resync();
        await new Promise((r) => setTimeout(r, 20));
        rec.follows.security_group([web(['10.10.0.5'], 80)], { full: true });
        const deadline = Date.now() + 2000;
        while (host.firewall.length < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
        expect(ports(host.groupsApplied.at(-1))).toEqual([22, 80]);
        expect(host.firewall.at(-1)).toEqual({ nets: [NET.id], nics: ['nic_01A'] });
        expect(passes()).toBe(1);
      } finally {
        release();
      }
      await rec.whenIdle();
      // The pass finds the firewall as it should be: not applied again.
      expect(passes()).toBe(2);
      expect(host.firewall).toHaveLength(2);
    });

    it('coalesces a burst of changes into one more application, with the last of them', async () => {
      await setUp();
      let release!: () => void;
      host.firewallGate = new Promise<void>((r) => (release = r));
      rec.follows.security_group([web(['10.10.0.5'], 1000)], { full: true });
      await new Promise((r) => setTimeout(r, 20));
      for (let p = 1001; p <= 1020; p++) rec.follows.security_group([web(['10.10.0.5'], p)], { full: true });
      host.firewallGate = null;
      release();
      await rec.whenIdle();
      expect(host.groupsApplied.slice(1).map(ports)).toEqual([
        [22, 1000],
        [22, 1020],
      ]);
      expect(passes()).toBe(1);
    });

    it('refills the member sets in place when only members changed, the whole ruleset otherwise', async () => {
      await setUp();
      rec.follows.security_group([web(['10.10.0.5', '10.10.0.6'])], { full: true });
      await rec.whenIdle();
      expect(host.firewall).toHaveLength(1);
      expect(host.memberUpdates).toEqual([
        'flush set bridge floe sgm4_sg_01W\nadd element bridge floe sgm4_sg_01W { 10.10.0.5, 10.10.0.6 }\n',
      ]);
      // A rule changed: the whole ruleset.
      rec.follows.security_group([web(['10.10.0.5', '10.10.0.6'], 80)], { full: true });
      await rec.whenIdle();
      expect(host.firewall).toHaveLength(2);
      expect(host.memberUpdates).toHaveLength(1);
      // The host refuses the update in place (its set was deleted by hand): the whole ruleset instead.
      host.refuseMembers = 1;
      rec.follows.security_group([web(['10.10.0.5'], 80)], { full: true });
      await rec.whenIdle();
      expect(host.firewall).toHaveLength(3);
      expect(host.memberUpdates).toHaveLength(1);
      expect(ports(host.groupsApplied.at(-1))).toEqual([22, 80]);
      // Members again, in place; the same groups sent again change nothing.
      rec.follows.security_group([web(['10.10.0.5', '10.10.0.7'], 80)], { full: true });
      rec.follows.security_group([web(['10.10.0.5', '10.10.0.7'], 80)], { full: true });
      await rec.whenIdle();
      expect(host.firewall).toHaveLength(3);
      expect(host.memberUpdates).toHaveLength(2);
      expect(passes()).toBe(1);
    });

    it('follows a NIC moved to another group on a running instance without waiting for the pass', async () => {
      const vm = await setUp();
      const db = { ...web(['10.10.0.5']), id: 'sg_01D', name: 'db' };
      rec.follows.security_group([web([]), db], { full: true });
      await rec.whenIdle();
      let release!: () => void;
      const stuck = new Promise<void>((r) => (release = r));
      host.ensureNetwork = async () => {
        await stuck;
        return 'br';
      };
      try {
        rec.updateInstance({ ...vm, nics: [{ ...vm.nics[0]!, security_groups: ['sg_01D'] }] });
        const deadline = Date.now() + 2000;
        while (host.sg.at(-1)?.nics[0]?.toString() !== 'nic_01A,sg_01D,true' && Date.now() < deadline)
          await new Promise((r) => setTimeout(r, 5));
        expect(host.sg.at(-1)?.nics).toEqual([['nic_01A', ['sg_01D'], true]]);
      } finally {
        release();
      }
      await rec.whenIdle();
    });
  });

  it('gives taps a network that arrives just after the instance instead of failing', async () => {
    const vm = instance('inst_01A', 'nic_01A');
    rec.setInstances([vm]);
    const taps = rec.ensureTaps(vm);
    setTimeout(() => rec.setDesired([NET], { full: true }), 50);
    expect(await taps).toEqual([{ id: 'nic_01A', tap: 'tap', mac: vm.nics![0]!.mac }]);
  });

  it('applies the same firewall again only after a resync interval', async () => {
    rec.setInstances([instance('inst_01A', 'nic_01A')]);
    rec.setDesired([NET], { full: true });
    await rec.whenIdle();
    expect(host.firewall).toHaveLength(1);
    // A change that leaves the ruleset as it is (an instance whose NIC has no lease here) does not run nft again.
    rec.updateInstance(instance('inst_01C', 'nic_01Z'));
    await rec.whenIdle();
    expect(host.firewall).toHaveLength(1);
    // One that changes it does.
    rec.updateInstance(instance('inst_01A', 'nic_01A', true));
    await rec.whenIdle();
    expect(host.firewall).toEqual([
      { nets: [NET.id], nics: ['nic_01A'] },
      { nets: [NET.id], nics: [] },
    ]);

    // With no resync interval left, even the same ruleset is applied again (drift repair).
    const quick = new NetworkReconciler({ host, stateDir: dir, resyncIntervalMs: 20 });
    try {
      quick.setDesired([NET], { full: true });
      await quick.whenIdle();
      await new Promise((r) => setTimeout(r, 50));
      quick.setDesired([NET], { full: true });
      await quick.whenIdle();
      expect(host.firewall.length).toBeGreaterThanOrEqual(4);
      expect(host.firewall.slice(2).every((f) => f.nets[0] === NET.id && f.nics.length === 0)).toBe(true);
    } finally {
      await quick.stop();
    }
  });

  it('removes networks that are gone, also those built before a restart', async () => {
    await mkdir(join(dir, 'net', 'net_01OLD'), { recursive: true });
    rec.setDesired([NET], { full: true });
    await rec.whenIdle();
    expect(host.calls).toContain('removeNetwork net_01OLD');
    expect(host.calls).not.toContain(`removeNetwork ${NET.id}`);
    rec.setDesired([], { full: true });
    await rec.whenIdle();
    expect(host.calls).toContain(`removeNetwork ${NET.id}`);
    expect(host.firewall.at(-1)).toEqual({ nets: [], nics: [] });
    expect(await readdir(join(dir, 'net'))).toEqual([]);
  });

  it('builds public networks first and NATs host gateways through the public bridge that took over the uplink', async () => {
    host.exec = async (argv: readonly string[]) => {
      host.calls.push(argv.join(' '));
      return {
        code: 0,
        stdout: argv.includes('route') ? '[{"dst":"default","dev":"eth1"}]' : '',
        stderr: '',
      };
    };
    rec.setDesired([NET, PUBLIC], { full: true });
    await rec.whenIdle();
    const ensured = host.calls.filter((c) => c.startsWith('ensureNetwork'));
    expect(ensured).toEqual([
      `ensureNetwork ${PUBLIC.id} uplink=-`,
      `ensureNetwork ${NET.id} uplink=${bridgeName(PUBLIC.id)}`,
    ]);
    expect(host.firewall.at(-1)?.nets).toEqual([PUBLIC.id, NET.id]);
    rec.setDesired([NET], { full: true });
    await rec.whenIdle();
    // With the public network gone, eth1 is the uplink again.
    expect(host.calls.filter((c) => c.startsWith('ensureNetwork')).at(-1)).toBe(`ensureNetwork ${NET.id} uplink=eth1`);
  });

  it('follows the default route from pass to pass, e.g. on the public bridge after a restart', async () => {
    let dev = bridgeName(PUBLIC.id);
    host.exec = async (argv: readonly string[]) => {
      host.calls.push(argv.join(' '));
      return {
        code: 0,
        stdout: argv.includes('route') ? `[{"dst":"default","dev":"${dev}"}]` : '',
        stderr: '',
      };
    };
    rec.setDesired([PUBLIC, NET], { full: true });
    await rec.whenIdle();
    expect(host.calls.filter((c) => c.startsWith('ensureNetwork')).at(-1)).toBe(
      `ensureNetwork ${NET.id} uplink=${bridgeName(PUBLIC.id)}`,
    );
    dev = 'eth1';
    rec.setDesired([NET], { full: true });
    await rec.whenIdle();
    expect(host.calls.filter((c) => c.startsWith('ensureNetwork')).at(-1)).toBe(`ensureNetwork ${NET.id} uplink=eth1`);
  });

  it('warns and carries on when a public network has no DHCP on this host', async () => {
    host.ensureDhcp = async () => ({ pid: null, started: false, skipped: 'the host has no address of 203.0.113.0/24' });
    const lines: string[] = [];
    await rec.stop();
    rec = new NetworkReconciler({
      host,
      stateDir: dir,
      logger: pino({ level: 'info' }, { write: (l: string) => void lines.push(l) }),
    });
    rec.setDesired([PUBLIC], { full: true });
    await rec.whenIdle();
    expect(lines.map((l) => JSON.parse(l) as { msg: string; reason?: string })).toContainEqual(
      expect.objectContaining({ msg: 'no DHCP on this network', reason: expect.stringContaining('203.0.113.0/24') }),
    );
    expect(host.firewall.at(-1)?.nets).toEqual([PUBLIC.id]);
    expect(host.calls).toContain(`ensureNetwork ${PUBLIC.id} uplink=-`);
  });

  it('looks again on its own every resync interval, plugging the local taps back into their bridge', async () => {
    await rec.stop();
    rec = new NetworkReconciler({ host, stateDir: dir, resyncIntervalMs: 50 });
    rec.setInstances([instance('inst_01A', 'nic_01A')]);
    rec.setDesired([NET], { full: true });
    await rec.whenIdle();
    const passes = () => host.calls.filter((c) => c.startsWith('ensureNetwork')).length;
    expect(passes()).toBe(1);
    expect(host.ports.at(-1)).toEqual({ net: NET.id, nics: ['nic_01A'] });
    const deadline = Date.now() + 3000;
    while (passes() < 3 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    expect(passes()).toBeGreaterThanOrEqual(3);
    // Stopped, it stays still.
    await rec.stop();
    const after = passes();
    await new Promise((r) => setTimeout(r, 200));
    expect(passes()).toBe(after);
  });

  it('retries a failed pass with backoff', async () => {
    host.failNext = 2;
    rec.setDesired([NET], { full: true });
    const deadline = Date.now() + 3000;
    while (!host.calls.some((c) => c.startsWith('ensureNetwork')) && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 10));
    expect(host.failNext).toBe(0);
    expect(host.calls.filter((c) => c.startsWith('ensureNetwork'))).toHaveLength(1);
  });
});

describe('NetworkReconciler rate limits', () => {
  let dir: string;
  let host: RecordingHost;
  let rec: NetworkReconciler;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'floe-netrec-'));
    host = new RecordingHost(dir);
    rec = new NetworkReconciler({ host, stateDir: dir, retryBackoff: { initialMs: 10, maxMs: 20 } });
  });
  afterEach(async () => {
    await rec.stop();
    await rm(dir, { recursive: true, force: true });
  });

  const limited = (limit: RateLimit | null) => {
    const vm = instance('inst_01A', 'nic_01A');
    vm.nics![0]!.rate_limit = limit;
    return vm;
  };

  it('puts a NIC’s limits on its tap as it is made, changes them on a running instance, and clears them with it', async () => {
    rec.setInstances([limited({ ingress_kbps: 10_000 })]);
    rec.setDesired([NET], { full: true });
    await rec.whenIdle();
    await rec.ensureTaps(limited({ ingress_kbps: 10_000 }));
    expect(host.rates).toEqual(['nic_01A ingress_kbps=10000', 'nic_01A ingress_kbps=10000']);
    // The same limits again: no commands until a resync interval has passed.
    rec.updateInstance(limited({ ingress_kbps: 10_000 }));
    await rec.whenIdle();
    expect(host.rates).toHaveLength(2);
    rec.updateInstance(limited({ ingress_kbps: 10_000, egress_pps: 500 }));
    await rec.whenIdle();
    rec.updateInstance(limited(null));
    await rec.whenIdle();
    expect(host.rates.slice(2)).toEqual(['nic_01A ingress_kbps=10000,egress_pps=500', 'nic_01A -']);
    // Without limits they stay off: nothing more on later passes.
    rec.resync();
    await rec.whenIdle();
    expect(host.rates).toHaveLength(4);
    await rec.removeTap('nic_01A');
    expect(host.cleared).toEqual(['nic_01A']);
  });

  it('does not look again for the missing tap of a NIC without limits (a stopped instance)', async () => {
    host.noTap.add('nic_01A');
    rec.setInstances([limited(null)]);
    rec.setDesired([NET], { full: true });
    await rec.whenIdle();
    expect(host.rateCalls).toBe(1);
    rec.resync();
    await rec.whenIdle();
    expect(host.rateCalls).toBe(1);
    // Its tap made: the limits go on with it, and on a change.
    host.noTap.clear();
    await rec.ensureTaps(limited(null));
    rec.updateInstance(limited({ ingress_kbps: 5_000 }));
    await rec.whenIdle();
    expect(host.rates).toEqual(['nic_01A -', 'nic_01A ingress_kbps=5000']);
  });

  it('tries again on each pass while the tap is not there', async () => {
    host.noTap.add('nic_01A');
    rec.setInstances([limited({ egress_kbps: 1_000 })]);
    rec.setDesired([NET], { full: true });
    await rec.whenIdle();
    expect(host.rates).toEqual([]);
    host.noTap.clear();
    rec.resync();
    await rec.whenIdle();
    expect(host.rates).toEqual(['nic_01A egress_kbps=1000']);
  });
});

describe('NetworkReconciler NAT', () => {
  let dir: string;
  let host: RecordingHost;
  let rec: NetworkReconciler;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'floe-netrec-'));
    host = new RecordingHost(dir);
    rec = new NetworkReconciler({ host, stateDir: dir, natUplink: 'up0', retryBackoff: { initialMs: 10, maxMs: 20 } });
  });
  afterEach(async () => {
    await rec.stop();
    await rm(dir, { recursive: true, force: true });
  });

  const withNat = (id: string, nicId: string, fip: string | null, forwards: DesiredForward[] = []) => {
    const vm = instance(id, nicId);
    vm.nics![0]!.floating_ipv4 = fip;
    vm.nics![0]!.forwards = forwards;
    return vm;
  };

  it('clears what an earlier run left, then translates local NICs through their network’s NAT interface as they change', async () => {
    rec.setInstances([instance('inst_01A', 'nic_01A')]);
    rec.setDesired([NET], { full: true });
    await rec.whenIdle();
    expect(host.nat).toEqual([[]]);
    rec.updateInstance(withNat('inst_01A', 'nic_01A', '198.51.100.50'));
    await rec.whenIdle();
    expect(host.nat.at(-1)).toEqual([
      { nicId: 'nic_01A', ipv4: '10.10.0.5', natInterface: 'up0', floatingIpv4: '198.51.100.50', forwards: [] },
    ]);
    // Moved to another instance in one change: both NICs in the same apply.
    rec.setInstances([
      withNat('inst_01A', 'nic_01A', null),
      withNat('inst_01B', 'nic_01B', '198.51.100.50', [
        { protocol: 'tcp', address: null, port: 2222, target_port: 22 },
      ]),
    ]);
    await rec.whenIdle();
    expect(host.nat.at(-1)!.map((n) => [n.nicId, n.floatingIpv4, n.forwards.length])).toEqual([
      ['nic_01B', '198.51.100.50', 1],
    ]);
    const applies = host.nat.length;
    rec.resync();
    await rec.whenIdle();
    expect(host.nat).toHaveLength(applies);
  });
});

describe('NetworkReconciler taps', () => {
  it('plugs taps into built networks only, in guest order, and removes them', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'floe-netrec-'));
    const taps: string[] = [];
    const removed: string[] = [];
    const host = new RecordingHost(dir);
    host.ensureTap = async (nic: NicSpec, net: NetSpec) => {
      taps.push(`${nic.id}@${net.id}:${nic.hostname}`);
      return `tap-${nic.id}`;
    };
    host.removeTap = async (id: string) => {
      removed.push(id);
    };
    const rec = new NetworkReconciler({ host, stateDir: dir });
    try {
      const vm = instance('inst_01A', 'nic_01A');
      vm.nics!.push({ ...vm.nics![0]!, id: 'nic_01Z', index: 1, network_id: 'net_01OTHER' });
      vm.nics!.reverse();
      await expect(rec.ensureTaps(vm)).rejects.toThrow(/not built on this host yet/);
      rec.setInstances([vm]);
      rec.setDesired([NET, { ...NET, id: 'net_01OTHER', vni: 4201, leases: [] }], { full: true });
      expect(await rec.ensureTaps(vm)).toEqual([
        { id: 'nic_01A', tap: 'tap-nic_01A', mac: '52:54:00:00:00:01' },
        { id: 'nic_01Z', tap: 'tap-nic_01Z', mac: '52:54:00:00:00:01' },
      ]);
      expect(taps).toEqual([`nic_01A@${NET.id}:web-1`, 'nic_01Z@net_01OTHER:inst_01A']);
      await rec.removeTaps(vm);
      expect(removed.sort()).toEqual(['nic_01A', 'nic_01Z']);
    } finally {
      await rec.stop();
      await rm(dir, { recursive: true, force: true });
    }
  });
});

/*
 * The reconciler over the real host driver, in a network namespace standing
 * in for the host and a second one for a guest (a veth in place of tap +
 * QEMU). Private test addresses only; every namespace and dnsmasq is removed.
 */
const netnsReason = await netnsUnavailable('network reconciler namespace tests');

describe.skipIf(netnsReason !== null)('NetworkReconciler on a real host (namespaces)', () => {
  const sfx = randomBytes(3).toString('hex');
  const hostNs = `floe-nr-${sfx}-h`;
  const vmNs = `floe-nr-${sfx}-v`;
  // Isolated network: no gateway, so the host's address on the bridge comes from host_ipv4 only.
  const net: DesiredNetwork = {
    ...NET,
    id: `net_nr${sfx}`,
    gateway: 'none',
    gateway4: null,
    gateway6: null,
    ipv6: null,
    host_ipv6: null,
    peers: [],
    dns: false,
    leases: [
      {
        nic_id: `nic_nr${sfx}1`,
        instance_id: `inst_nr${sfx}1`,
        mac: '52:54:00:77:00:01',
        ipv4: '10.10.0.5',
        ipv6: null,
        hostname: 'web-1',
      },
      {
        nic_id: `nic_nr${sfx}2`,
        instance_id: `inst_nr${sfx}2`,
        mac: '52:54:00:77:00:02',
        ipv4: '10.10.0.6',
        ipv6: null,
        hostname: 'web-2',
      },
    ],
  };
  const vm1: DesiredInstance = { ...instance(`inst_nr${sfx}1`, `nic_nr${sfx}1`) };
  vm1.nics = [{ ...vm1.nics![0]!, network_id: net.id, mac: '52:54:00:77:00:01' }];
  const vm2: DesiredInstance = { ...instance(`inst_nr${sfx}2`, `nic_nr${sfx}2`) };
  vm2.nics = [{ ...vm2.nics![0]!, network_id: net.id, mac: '52:54:00:77:00:02', ipv4: '10.10.0.6' }];
  let dir: string;
  let host: HostNetworkDriver;
  let rec: NetworkReconciler;
  const links = async () =>
    JSON.parse((await ipIn(hostNs, '-j', 'link', 'show')).stdout) as { ifname: string; master?: string }[];

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'floe-nr-'));
    for (const n of [hostNs, vmNs]) {
      await run('ip', ['netns', 'add', n]);
      await ipIn(n, 'link', 'set', 'lo', 'up');
    }
    // The underlay: a veth pair inside the host namespace, so nothing leaves it.
    await ipIn(hostNs, 'link', 'add', 'u0', 'type', 'veth', 'peer', 'name', 'u1');
    await ipIn(hostNs, 'addr', 'add', '192.0.2.1/24', 'dev', 'u0');
    await ipIn(hostNs, 'link', 'set', 'u0', 'up');
    await ipIn(hostNs, 'link', 'set', 'u1', 'up');
    host = new HostNetworkDriver({ stateDir: dir, underlay: '192.0.2.1', netns: hostNs });
    rec = new NetworkReconciler({ host, stateDir: dir, retryBackoff: { initialMs: 50, maxMs: 200 } });
  });
  afterAll(async () => {
    await rec?.stop();
    await host?.removeNetwork(net.id).catch(() => undefined);
    for (const n of [hostNs, vmNs]) await run('ip', ['netns', 'del', n], { allowFail: true });
    await rm(dir, { recursive: true, force: true });
    await rm(dnsmasqRunDir(dir), { recursive: true, force: true });
  });

  it('builds the network, serves the pinned lease in none mode, repairs drift and removes it', async () => {
    rec.setInstances([vm1, vm2]);
    rec.setDesired([net], { full: true });
    await rec.whenIdle();
    const br = bridgeName(net.id);
    expect((await links()).map((l) => l.ifname)).toContain(br);
    expect((await ipIn(hostNs, '-j', 'addr', 'show', 'dev', br)).stdout).toContain('"local":"10.10.0.1"');
    expect(await host.dhcpPid(net.id)).not.toBe(null);

    // A real tap for one NIC; a veth under the other NIC's tap name plays its guest.
    expect(await rec.ensureTaps(vm1)).toEqual([
      { id: vm1.nics![0]!.id, tap: tapName(vm1.nics![0]!.id), mac: '52:54:00:77:00:01' },
    ]);
    expect((await links()).find((l) => l.ifname === tapName(vm1.nics![0]!.id))?.master).toBe(br);
    await run('ip', [
      'link',
      'add',
      tapName(vm2.nics![0]!.id),
      'netns',
      hostNs,
      'type',
      'veth',
      'peer',
      'name',
      'eth0',
      'netns',
      vmNs,
    ]);
    await ipIn(vmNs, 'link', 'set', 'eth0', 'address', '52:54:00:77:00:02', 'up');
    await host.attachPort(tapName(vm2.nics![0]!.id), toNetSpec(net));
    const got = await run(
      'ip',
      [
        'netns',
        'exec',
        vmNs,
        'busybox',
        'udhcpc',
        '-i',
        'eth0',
        '-f',
        '-q',
        '-n',
        '-t',
        '5',
        '-T',
        '1',
        '-s',
        '/bin/true',
      ],
      { allowFail: true },
    );
    expect(got.stdout + got.stderr).toMatch(/lease of 10\.10\.0\.6 obtained/);

    // Drift: a bridge deleted by hand is back after the next pass.
    await ipIn(hostNs, 'link', 'del', br);
    rec.setDesired([net], { full: true });
    await rec.whenIdle();
    expect((await links()).map((l) => l.ifname)).toContain(br);
    expect(await host.dhcpPid(net.id)).not.toBe(null);

    await rec.removeTaps(vm1);
    expect((await links()).map((l) => l.ifname)).not.toContain(tapName(vm1.nics![0]!.id));
    rec.setDesired([], { full: true });
    await rec.whenIdle();
    expect((await links()).map((l) => l.ifname)).not.toContain(br);
    expect(await host.dhcpPid(net.id)).toBe(null);
    expect(await readdir(join(dir, 'net'))).toEqual([]);
  }, 30_000);
});

/*
 * A public network over a veth standing in for the host's physical interface
 * (its other end in a "lan" namespace with the router), next to a host-gateway
 * private network whose guest is NATed out through the public bridge.
 */
describe.skipIf(netnsReason !== null)('NetworkReconciler with a public network (namespaces)', () => {
  const sfx = randomBytes(3).toString('hex');
  const ns = { host: `floe-np-${sfx}-h`, lan: `floe-np-${sfx}-l`, vm: `floe-np-${sfx}-v` };
  const pub: DesiredNetwork = {
    id: `net_np${sfx}p`,
    name: 'wan',
    project: 'default',
    kind: 'public',
    vni: 4400,
    mtu: 1500,
    ipv4: '192.0.2.0/24',
    ipv6: null,
    gateway: '192.0.2.1',
    gateway4: '192.0.2.1',
    gateway6: null,
    host_ipv4: null,
    host_ipv6: null,
    dns: false,
    uplink: 'phys0',
    peers: [],
    leases: [],
  };
  const lan: DesiredNetwork = {
    ...NET,
    id: `net_np${sfx}l`,
    ipv6: null,
    gateway6: null,
    host_ipv6: null,
    peers: [],
    dns: false,
    leases: [
      {
        nic_id: `nic_np${sfx}1`,
        instance_id: `inst_np${sfx}1`,
        mac: '52:54:00:78:00:01',
        ipv4: '10.10.0.5',
        ipv6: null,
        hostname: 'web-1',
      },
    ],
  };
  const vm: DesiredInstance = instance(`inst_np${sfx}1`, `nic_np${sfx}1`);
  vm.nics = [{ ...vm.nics![0]!, network_id: lan.id, mac: '52:54:00:78:00:01' }];
  let dir: string;
  let host: HostNetworkDriver;
  let rec: NetworkReconciler;
  const defaultDev = async () =>
    (JSON.parse((await ipIn(ns.host, '-j', 'route', 'show', 'default')).stdout || '[]') as { dev?: string }[])[0]?.dev;
  const ping = async (from: string, to: string) =>
    (await run('ip', ['netns', 'exec', from, 'ping', '-c', '1', '-W', '1', to], { allowFail: true })).code === 0;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'floe-np-'));
    for (const n of Object.values(ns)) {
      await run('ip', ['netns', 'add', n]);
      await ipIn(n, 'link', 'set', 'lo', 'up');
    }
    await run('ip', [
      'link',
      'add',
      'phys0',
      'netns',
      ns.host,
      'type',
      'veth',
      'peer',
      'name',
      'eth0',
      'netns',
      ns.lan,
    ]);
    await ipIn(ns.lan, 'addr', 'add', '192.0.2.1/24', 'dev', 'eth0');
    await ipIn(ns.lan, 'link', 'set', 'eth0', 'up');
    await ipIn(ns.host, 'addr', 'add', '192.0.2.10/24', 'dev', 'phys0');
    await ipIn(ns.host, 'link', 'set', 'phys0', 'up');
    await ipIn(ns.host, 'route', 'add', 'default', 'via', '192.0.2.1');
    host = new HostNetworkDriver({ stateDir: dir, underlay: '192.0.2.10', netns: ns.host });
    rec = new NetworkReconciler({ host, stateDir: dir, retryBackoff: { initialMs: 50, maxMs: 200 } });
  });
  afterAll(async () => {
    await rec?.stop();
    for (const id of [pub.id, lan.id]) await host?.stopDhcp(id).catch(() => undefined);
    for (const n of Object.values(ns)) await run('ip', ['netns', 'del', n], { allowFail: true });
    await rm(dir, { recursive: true, force: true });
    await rm(dnsmasqRunDir(dir), { recursive: true, force: true });
  });

  it('takes over the interface, NATs a private network out through the public bridge, and gives the interface back', async () => {
    rec.setInstances([vm]);
    rec.setDesired([lan, pub], { full: true });
    await rec.whenIdle();
    const pubBr = bridgeName(pub.id);
    expect(await defaultDev()).toBe(pubBr);
    expect((await ipIn(ns.host, '-j', 'addr', 'show', 'dev', pubBr)).stdout).toContain('"local":"192.0.2.10"');
    // The host has its address in the public subnet: dnsmasq serves the (empty) pool there.
    expect(await host.dhcpPid(pub.id)).not.toBeNull();
    expect((await run('ip', ['netns', 'exec', ns.host, 'nft', 'list', 'table', 'inet', 'floe_nat'])).stdout).toContain(
      `oifname "${pubBr}" masquerade`,
    );

    await run('ip', [
      'link',
      'add',
      tapName(vm.nics![0]!.id),
      'netns',
      ns.host,
      'type',
      'veth',
      'peer',
      'name',
      'eth0',
      'netns',
      ns.vm,
    ]);
    await ipIn(ns.vm, 'link', 'set', 'eth0', 'address', '52:54:00:78:00:01', 'up');
    await host.attachPort(tapName(vm.nics![0]!.id), toNetSpec(lan));
    await ipIn(ns.vm, 'addr', 'add', '10.10.0.5/24', 'dev', 'eth0');
    await ipIn(ns.vm, 'route', 'add', 'default', 'via', '10.10.0.1');
    // The LAN has no route to 10.10.0.0/24: a reply can only come back through masquerade on the public bridge.
    expect(await ping(ns.vm, '192.0.2.1')).toBe(true);
    expect(await ping(ns.host, '192.0.2.1')).toBe(true);

    rec.setDesired([lan], { full: true });
    await rec.whenIdle();
    expect(await defaultDev()).toBe('phys0');
    expect((await ipIn(ns.host, '-j', 'addr', 'show', 'dev', 'phys0')).stdout).toContain('"local":"192.0.2.10"');
    expect((await run('ip', ['netns', 'exec', ns.host, 'nft', 'list', 'table', 'inet', 'floe_nat'])).stdout).toContain(
      'oifname "phys0" masquerade',
    );
    expect(await ping(ns.vm, '192.0.2.1')).toBe(true);
  }, 30_000);
});
