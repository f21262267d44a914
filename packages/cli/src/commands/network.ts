import { Option, type Command } from 'commander';
import type { Network, NetworkCreate, Nic, NicRequest, Operation, RateLimit } from '@floe/api';
import { UsageError } from '../errors.js';
import { age, renderDetails, renderTable, type Colors } from '../output.js';
import { checkName, collect, intArg, parseLabels } from '../parse.js';
import { followOperation } from '../progress.js';
import { runtimeOf, type CliRuntime } from '../runtime.js';
import { formatRateLimit, parseRateLimit } from './rate-limit.js';
import { confirmDeletion, examples, fetchPage, listOptions, type ListFlags } from './shared.js';

/** Table rows of networks. */
function networkTable(items: Network[], now: number, _c: Colors): string {
  return renderTable(
    ['NAME', 'KIND', 'IPV4', 'IPV6', 'GATEWAY', 'VNI', 'MTU', 'NICS', 'HOSTS', 'AGE'],
    items.map((n) => [
      n.name,
      n.spec.kind,
      n.spec.ipv4 ?? '-',
      n.spec.ipv6 ?? '-',
      n.spec.gateway,
      String(n.vni),
      String(n.spec.mtu),
      String(n.status.nics),
      String(n.status.hosts.length),
      age(n.created_at, now),
    ]),
  );
}

/** Table rows of NICs. */
function nicTable(items: Nic[]): string {
  return renderTable(
    ['SLOT', 'ID', 'NETWORK', 'MAC', 'IPV4', 'IPV6', 'RATE LIMIT'],
    items.map((n) => [
      String(n.index),
      n.id,
      n.network_name,
      n.mac,
      n.ipv4 ?? '-',
      n.ipv6 ?? '-',
      formatRateLimit(n.rate_limit),
    ]),
  );
}

/** Help of every `--rate-limit`. */
export const RATE_LIMIT_HELP =
  'bandwidth and packet rate limits: 10mbit (both ways), in=10mbit,out=2mbit,in-pps=1000,out-pps=1000 (in: to the instance), or none';

/**
 * One `--network` of `floe instance create`: `lan`, or `lan=10.10.0.7` for a
 * fixed IPv4 (an address with ":" is taken as IPv6; `lan=10.10.0.7,fd00::7` gives both).
 */
export function parseNetworkArg(arg: string): NicRequest {
  const eq = arg.indexOf('=');
  if (eq === -1) return arg;
  const network = arg.slice(0, eq);
  if (network === '') throw new UsageError(`--network ${arg}: the network name is missing`);
  const req: { network: string; ipv4?: string; ipv6?: string } = { network };
  for (const addr of arg.slice(eq + 1).split(',')) {
    if (addr === '') continue;
    if (addr.includes(':')) req.ipv6 = addr;
    else req.ipv4 = addr;
  }
  return req;
}

interface CreateFlags {
  ipv4?: string;
  ipv6?: string;
  gateway?: string;
  mtu?: number;
  dns?: boolean;
  dhcpv6?: boolean;
  reserve?: string[];
  label?: string[];
  public?: boolean;
  pool?: string;
  uplink?: string;
}

/** The body of `floe net create` (pure, for tests). */
function networkCreateBody(name: string, flags: CreateFlags, project: string | undefined): NetworkCreate {
  checkName(name, 'network name');
  const body: NetworkCreate = { name };
  if (project !== undefined) body.project = project;
  if (flags.public === true) body.kind = 'public';
  if (flags.ipv4 !== undefined) body.ipv4 = flags.ipv4 === 'none' ? null : flags.ipv4;
  if (flags.ipv6 !== undefined) body.ipv6 = flags.ipv6 === 'none' ? null : flags.ipv6;
  if (flags.gateway !== undefined) body.gateway = flags.gateway;
  if (flags.mtu !== undefined) body.mtu = flags.mtu;
  if (flags.dns === false) body.dns = false;
  if (flags.dhcpv6 === true) body.dhcpv6 = true;
  if (flags.reserve !== undefined) body.reserved = flags.reserve;
  if (flags.label !== undefined) body.labels = parseLabels(flags.label);
  if (flags.pool !== undefined) {
    const [start, end, ...rest] = flags.pool.split('-');
    if (start === undefined || end === undefined || rest.length > 0)
      throw new UsageError('--pool wants FIRST-LAST, e.g. 198.51.100.10-198.51.100.99');
    body.pool = { start, end };
  }
  if (flags.uplink !== undefined) body.uplink = flags.uplink;
  return body;
}

async function report(
  rt: CliRuntime,
  cmd: Command,
  op: Operation,
  wait: boolean | undefined,
  what: string,
): Promise<void> {
  if (wait === true) {
    await followOperation(rt, cmd, op);
    return;
  }
  rt.print(cmd, op, () => `${what}: operation ${op.id} ${op.status} (follow it with "floe operation wait ${op.id}")\n`);
}

/** `floe network` (alias `net`): private networks, public uplinks, and the NICs of instances. */
export function registerNetwork(program: Command): void {
  const net = program
    .command('network')
    .alias('net')
    .description('manage networks and the NICs that join instances to them');
  examples(net, [
    'floe net create lan --ipv4 10.10.0.0/24 --ipv6 auto --gateway host',
    'floe vm create web --image debian-12 --type small --network lan --network dmz=10.20.0.5',
    'floe net attach web lan --ipv4 10.10.0.7 --wait',
  ]);

  listOptions(net.command('ls').description('list networks')).action(async (opts: ListFlags, cmd: Command) => {
    const rt = runtimeOf(cmd);
    const page = await fetchPage(rt, rt.client(cmd).networks, { project: rt.project(cmd) }, opts);
    rt.print(cmd, page, () => networkTable(page.items, rt.now(), rt.colors));
  });

  net
    .command('show')
    .description('show one network')
    .argument('<id>', 'network id or name')
    .action(async (id: string, _opts: unknown, cmd: Command) => {
      const rt = runtimeOf(cmd);
      const n = await rt.client(cmd).networks.get(id, { project: rt.project(cmd) });
      rt.print(cmd, n, () => renderDetails(n));
    });

  const create = net
    .command('create')
    .description('create a network: a layer-2 segment on every host with members, joined by VXLAN')
    .argument('<name>', 'network name (a DNS label)')
    .option('--ipv4 <cidr>', 'IPv4 range, e.g. 10.10.0.0/24, or "none"')
    .option('--ipv6 <cidr>', 'IPv6 range, "auto" for a unique local /64, or "none"')
    .option(
      '--gateway <gw>',
      '"host" (route and NAT through the host), "none" (isolated) or the IPv4 address of a VM that routes',
    )
    .addOption(
      new Option('--mtu <n>', 'MTU (default 1450 for VXLAN, 1500 for public networks)').argParser(intArg(576, 9000)),
    )
    .option('--no-dns', 'do not answer DNS for instance names on the network')
    .option(
      '--dhcpv6',
      'hand out IPv6 addresses by stateful DHCPv6 instead of SLAAC (for requested addresses and guests without SLAAC)',
    )
    .option('--reserve <address>', 'address never handed out (repeatable)', collect)
    .option('--label <key=value>', 'label (repeatable)', collect)
    .option('--public', 'a public network bridged to a host uplink (admin)')
    .option('--pool <first-last>', 'public networks: the IPv4 range instances get addresses from')
    .option('--uplink <interface>', 'public networks: host interface the bridge takes over')
    .action(async (name: string, flags: CreateFlags, cmd: Command) => {
      const rt = runtimeOf(cmd);
      const n = await rt.client(cmd).networks.create(networkCreateBody(name, flags, rt.project(cmd)));
      rt.print(
        cmd,
        n,
        () =>
          `network ${n.name} created (${n.id}, vni ${n.vni}${n.spec.ipv4 ? `, ${n.spec.ipv4}` : ''}${n.spec.ipv6 ? `, ${n.spec.ipv6}` : ''})\n`,
      );
    });
  examples(create, [
    'floe net create lan --ipv4 10.10.0.0/24 --ipv6 auto --gateway host',
    'floe net create backend --ipv4 10.20.0.0/24 --gateway none --no-dns',
    'floe net create v6lan --ipv4 none --ipv6 fd00:60::/64 --dhcpv6',
    'floe net create behind-fw --ipv4 10.30.0.0/24 --gateway 10.30.0.254',
    'floe net create internet --public --ipv4 198.51.100.0/24 --gateway 198.51.100.1 --pool 198.51.100.10-198.51.100.99 --uplink eth0 --project default',
  ]);

  net
    .command('rm')
    .description('delete a network (refused while instances have NICs on it)')
    .argument('<id>', 'network id or name')
    .option('-y, --yes', 'do not ask for confirmation')
    .action(async (id: string, opts: { yes?: boolean }, cmd: Command) => {
      const rt = runtimeOf(cmd);
      await confirmDeletion(rt, opts.yes, `network ${id}`, `delete network ${id}?`);
      await rt.client(cmd).networks.delete(id, { project: rt.project(cmd) });
      rt.print(cmd, { deleted: id }, () => `network ${id} deleted\n`);
    });

  net
    .command('nics')
    .description('list the NICs of an instance')
    .argument('<instance>', 'instance id or name')
    .action(async (instance: string, _opts: unknown, cmd: Command) => {
      const rt = runtimeOf(cmd);
      const nics = await rt.client(cmd).instances.nics(instance, { project: rt.project(cmd) });
      rt.print(cmd, { items: nics }, () => nicTable(nics));
    });

  const attach = net
    .command('attach')
    .description('add a NIC on a network to an instance (hot-plugged when it runs)')
    .argument('<instance>', 'instance id or name')
    .argument('<network>', 'network id or name')
    .option('--ipv4 <address>', 'IPv4 address to take (default: the next free one)')
    .option('--ipv6 <address>', 'IPv6 address to take (default: SLAAC address of the MAC on a /64)')
    .option('--rate-limit <limits>', RATE_LIMIT_HELP, parseRateLimit)
    .option('--wait', 'wait until the host has plugged it in')
    .action(
      async (
        instance: string,
        network: string,
        opts: { ipv4?: string; ipv6?: string; rateLimit?: RateLimit | null; wait?: boolean },
        cmd: Command,
      ) => {
        const rt = runtimeOf(cmd);
        const body = {
          network,
          ...(opts.ipv4 === undefined ? {} : { ipv4: opts.ipv4 }),
          ...(opts.ipv6 === undefined ? {} : { ipv6: opts.ipv6 }),
          ...(opts.rateLimit == null ? {} : { rate_limit: opts.rateLimit }),
        };
        const { nic, operation } = await rt.client(cmd).instances.addNic(instance, body, { project: rt.project(cmd) });
        await report(
          rt,
          cmd,
          operation,
          opts.wait,
          `NIC ${nic.id} (${nic.mac}, ${nic.ipv4 ?? '-'}, ${nic.ipv6 ?? '-'}) added to ${instance}`,
        );
      },
    );
  examples(attach, [
    'floe net attach web lan',
    'floe net attach fw dmz --ipv4 10.20.0.254 --wait',
    'floe net attach web lan --rate-limit 10mbit',
  ]);

  const limit = net
    .command('limit')
    .description("change a NIC's bandwidth and packet rate limits; a running instance gets them at once")
    .argument('<instance>', 'instance id or name')
    .argument('<nic>', 'NIC id (see "floe net nics <instance>"), or the network of its only NIC there')
    .argument('<limits>', RATE_LIMIT_HELP)
    .option('--wait', 'wait until the host has applied them')
    .action(async (instance: string, nicRef: string, limits: string, opts: { wait?: boolean }, cmd: Command) => {
      const rt = runtimeOf(cmd);
      const rateLimit = parseRateLimit(limits);
      const client = rt.client(cmd);
      const project = rt.project(cmd);
      const nicId = nicRef.startsWith('nic_')
        ? nicRef
        : pickNic(await client.instances.nics(instance, { project }), instance, nicRef);
      const { nic, operation } = await client.instances.updateNic(
        instance,
        nicId,
        { rate_limit: rateLimit },
        { project },
      );
      await report(
        rt,
        cmd,
        operation,
        opts.wait,
        `NIC ${nic.id} of ${instance}: rate limit ${formatRateLimit(nic.rate_limit)}`,
      );
    });
  examples(limit, [
    'floe net limit web lan 10mbit --wait',
    'floe net limit web nic_01J9Z8K3W5 in=100mbit,out=10mbit,out-pps=20000',
    'floe net limit web lan none',
  ]);

  const detach = net
    .command('detach')
    .description('remove a NIC from an instance (hot-unplugged when it runs); its addresses are freed')
    .argument('<instance>', 'instance id or name')
    .argument('<nic>', 'NIC id (see "floe net nics <instance>"), or the network of its only NIC there')
    .option('--wait', 'wait until the host has unplugged it')
    .action(async (instance: string, nicRef: string, opts: { wait?: boolean }, cmd: Command) => {
      const rt = runtimeOf(cmd);
      const client = rt.client(cmd);
      const project = rt.project(cmd);
      const nic = nicRef.startsWith('nic_')
        ? nicRef
        : pickNic(await client.instances.nics(instance, { project }), instance, nicRef);
      const op = await client.instances.removeNic(instance, nic, { project });
      await report(rt, cmd, op, opts.wait, `NIC ${nic} removed from ${instance}`);
    });
  examples(detach, ['floe net detach web backend --wait', 'floe net detach web nic_01J9Z8K3W5 --wait']);
}

/** The id of an instance's only NIC on a network (by name or id); a usage error when it has none or several there. */
function pickNic(nics: readonly Nic[], instance: string, network: string): string {
  const on = nics.filter((n) => n.network_name === network || n.network === network);
  if (on.length === 1) return on[0]!.id;
  if (on.length === 0)
    throw new UsageError(`${instance} has no NIC on network ${network} (see "floe net nics ${instance}")`);
  throw new UsageError(
    `${instance} has ${on.length} NICs on network ${network}: name one by id (${on.map((n) => n.id).join(', ')})`,
  );
}
