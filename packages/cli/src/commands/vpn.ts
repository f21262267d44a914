import { Option, type Command } from 'commander';
import QRCode from 'qrcode';
import type {
  VpnNetwork,
  VpnNetworkPatch,
  VpnNetworkStats,
  VpnPeer,
  VpnPeerCreate,
  VpnPool,
  VpnPoolCreate,
} from '@floe/api';
import { UsageError } from '../errors.js';
import { age, ago, bytes, renderDetails, renderTable } from '../output.js';
import { checkName, collect, intArg, labelPatch, parseLabels } from '../parse.js';
import { runtimeOf } from '../runtime.js';
import { confirmDeletion, examples, fetchPage, listOptions, type ListFlags } from './shared.js';

/** Table rows of VPN pools. */
function poolTable(items: VpnPool[], now: number): string {
  return renderTable(
    ['NAME', 'IPV6', 'PER NETWORK', 'IPV4', 'ENDPOINT', 'PORT', 'NETWORKS', 'AGE'],
    items.map((p) => [
      p.name,
      p.spec.ipv6,
      `/${p.spec.network_prefix}`,
      p.spec.ipv4 === null ? '-' : `${p.spec.ipv4} (/${p.spec.ipv4_prefix})`,
      p.spec.endpoint,
      String(p.spec.listen_port),
      `${p.status.networks}/${p.status.capacity}`,
      age(p.created_at, now),
    ]),
  );
}

/** Table rows of VPN networks. */
function networkTable(items: VpnNetwork[], now: number): string {
  return renderTable(
    ['NAME', 'IPV6', 'IPV4', 'ENDPOINT', 'PEERS', 'AGE'],
    items.map((n) => [n.name, n.ipv6, n.ipv4 ?? '-', n.endpoint, String(n.status.peers), age(n.created_at, now)]),
  );
}

/** Table rows of peers. */
function peerTable(items: VpnPeer[], now: number): string {
  return renderTable(
    ['NAME', 'IPV6', 'IPV4', 'SUBNETS', 'PUBLIC KEY', 'AGE'],
    items.map((p) => [
      p.name,
      p.ipv6,
      p.ipv4 ?? '-',
      p.subnets.length === 0 ? '-' : p.subnets.join(','),
      p.public_key,
      age(p.created_at, now),
    ]),
  );
}

/** Table rows of peer activity: the latest handshake's age and the transfer the gateways counted. */
function statsTable(stats: VpnNetworkStats, now: number): string {
  const table = renderTable(
    ['PEER', 'ENDPOINT', 'HANDSHAKE', 'RX', 'TX'],
    stats.peers.map((p) => [
      p.name,
      p.endpoint ?? '-',
      ago(p.latest_handshake, now),
      bytes(p.rx_bytes),
      bytes(p.tx_bytes),
    ]),
  );
  const { answered, total } = stats.gateways;
  return answered < total ? `${table}(${answered} of ${total} gateways answered)\n` : table;
}

/** The merge patch of `floe vpn update` (pure). */
function updatePatch(f: {
  network?: string[];
  disconnect?: boolean;
  label?: string[];
}): Pick<VpnNetworkPatch, 'spec' | 'labels'> {
  if (f.disconnect === true && f.network !== undefined)
    throw new UsageError('--disconnect and --network contradict each other');
  const patch: Pick<VpnNetworkPatch, 'spec' | 'labels'> = {};
  if (f.disconnect === true) patch.spec = { networks: [] };
  else if (f.network !== undefined) patch.spec = { networks: f.network };
  if (f.label !== undefined) patch.labels = labelPatch(f.label);
  if (patch.spec === undefined && patch.labels === undefined)
    throw new UsageError('say what to change: --network, --disconnect or --label');
  return patch;
}

/** A wg-quick file and its QR code for the terminal (phones scan it with the WireGuard app). */
async function configWithQr(config: string, qr: boolean): Promise<string> {
  if (!qr) return config;
  return `${config}\n${await QRCode.toString(config, { type: 'terminal', small: true })}`;
}

interface PoolFlags {
  ipv6: string;
  networkPrefix?: number;
  ipv4?: string;
  ipv4Prefix?: number;
  host: string[];
  port?: number;
  endpoint: string;
  label?: string[];
}

/** The body of `floe vpn pool create` (pure). */
function poolBody(name: string, f: PoolFlags): VpnPoolCreate {
  checkName(name, 'pool name');
  const body: VpnPoolCreate = { name, ipv6: f.ipv6, hosts: f.host, endpoint: f.endpoint };
  if (f.networkPrefix !== undefined) body.network_prefix = f.networkPrefix;
  if (f.ipv4 !== undefined) body.ipv4 = f.ipv4;
  if (f.ipv4Prefix !== undefined) body.ipv4_prefix = f.ipv4Prefix;
  if (f.port !== undefined) body.listen_port = f.port;
  if (f.label !== undefined) body.labels = parseLabels(f.label);
  return body;
}

/** `floe vpn pool ...` (operators). */
function registerPool(vpn: Command): void {
  const pool = vpn
    .command('pool')
    .description('VPN pools: prefixes carved into VPN networks, served by gateways (operators)');
  listOptions(pool.command('ls').description('list VPN pools')).action(async (opts: ListFlags, cmd: Command) => {
    const rt = runtimeOf(cmd);
    const page = await fetchPage(rt, rt.client(cmd).vpnPools, {}, opts);
    rt.print(cmd, page, () => poolTable(page.items, rt.now()));
  });
  const create = pool
    .command('create')
    .description('create a VPN pool (admin)')
    .argument('<name>', 'pool name (a DNS label)')
    .requiredOption('--ipv6 <cidr>', 'the IPv6 prefix carved into VPN networks, e.g. fd50::/40')
    .addOption(
      new Option('--network-prefix <n>', 'prefix length of each VPN network (default 64)').argParser(intArg(8, 120)),
    )
    .option('--ipv4 <cidr>', 'an IPv4 range carved into subnets too')
    .addOption(
      new Option('--ipv4-prefix <n>', 'IPv4 subnet size of each VPN network (default 24)').argParser(intArg(8, 30)),
    )
    .requiredOption('--host <host>', 'gateway host by name or id (repeatable)', collect)
    .addOption(
      new Option('--port <n>', 'listen port of the first VPN network (default 51820)').argParser(intArg(1, 65535)),
    )
    .requiredOption('--endpoint <name>', 'host name or address clients dial')
    .option('--label <key=value>', 'label (repeatable)', collect)
    .action(async (name: string, flags: PoolFlags, cmd: Command) => {
      const rt = runtimeOf(cmd);
      const p = await rt.client(cmd).vpnPools.create(poolBody(name, flags));
      rt.print(cmd, p, () => `VPN pool ${p.name} created (${p.id}, room for ${p.status.capacity} VPN networks)\n`);
    });
  examples(create, [
    'floe vpn pool create edge --ipv6 fd50::/40 --network-prefix 48 --ipv4 10.250.0.0/16 --host gw-1 --endpoint vpn.example.org',
  ]);
  pool
    .command('rm')
    .description('delete a VPN pool without VPN networks (admin)')
    .argument('<pool>', 'pool id or name')
    .option('-y, --yes', 'do not ask for confirmation')
    .action(async (id: string, opts: { yes?: boolean }, cmd: Command) => {
      const rt = runtimeOf(cmd);
      await confirmDeletion(rt, opts.yes, `VPN pool ${id}`, `delete VPN pool ${id}?`);
      await rt.client(cmd).vpnPools.delete(id);
      rt.print(cmd, { deleted: id }, () => `VPN pool ${id} deleted\n`);
    });
}

/** `floe vpn peer ...`. */
function registerPeer(vpn: Command): void {
  const peer = vpn.command('peer').description('peers of VPN networks: devices and sites');
  listOptions(
    peer.command('ls').description('list peers').option('--vpn <network>', 'only those of this VPN network'),
    {
      labels: false,
    },
  ).action(async (opts: ListFlags & { vpn?: string }, cmd: Command) => {
    const rt = runtimeOf(cmd);
    const page = await fetchPage(
      rt,
      rt.client(cmd).vpnPeers,
      { project: rt.project(cmd), ...(opts.vpn === undefined ? {} : { vpn_network: opts.vpn }) },
      opts,
    );
    rt.print(cmd, page, () => peerTable(page.items, rt.now()));
  });
  const add = peer
    .command('add')
    .description('add a peer: with your public key, or with a key pair floe makes and shows once')
    .argument('<vpn>', 'VPN network id or name')
    .argument('<name>', 'peer name (a DNS label)')
    .option('--public-key <key>', 'your WireGuard public key (`wg pubkey` prints it); without it floe generates a pair')
    .option('--subnet <cidr>', 'site-to-site: a network behind the peer (repeatable)', collect)
    .option('--no-qr', 'do not print the QR code')
    .option('--label <key=value>', 'label (repeatable)', collect)
    .action(
      async (
        vpnNetwork: string,
        name: string,
        f: { publicKey?: string; subnet?: string[]; qr: boolean; label?: string[] },
        cmd: Command,
      ) => {
        const rt = runtimeOf(cmd);
        checkName(name, 'peer name');
        const body: VpnPeerCreate = { name, vpn_network: vpnNetwork };
        const project = rt.project(cmd);
        if (project !== undefined) body.project = project;
        if (f.publicKey !== undefined) body.public_key = f.publicKey;
        if (f.subnet !== undefined) body.subnets = f.subnet;
        if (f.label !== undefined) body.labels = parseLabels(f.label);
        const created = await rt.client(cmd).vpnPeers.create(body);
        const text = await configWithQr(created.config, f.qr);
        // What is said about the file goes to stderr: stdout is the file itself (with --no-qr).
        rt.warn(
          `peer ${created.peer.name} added (${created.peer.ipv6}${created.peer.ipv4 === null ? '' : `, ${created.peer.ipv4}`}); ` +
            (created.private_key === null
              ? 'put your private key in the PrivateKey line'
              : 'its private key is in this file, shown this once: save it now'),
        );
        rt.print(cmd, created, () => text);
      },
    );
  examples(add, [
    'floe vpn peer add office laptop --no-qr > laptop.conf && wg-quick up ./laptop.conf',
    'floe vpn peer add office phone            # scan the QR code with the WireGuard app',
    'floe vpn peer add office site-b --public-key "$(wg pubkey < b.key)" --subnet 192.168.20.0/24',
  ]);
  peer
    .command('config')
    .description("print a peer's wg-quick file and QR code (floe keeps no private key: fill in the PrivateKey line)")
    .argument('<peer>', 'peer id or name')
    .option('--no-qr', 'do not print the QR code')
    .action(async (id: string, f: { qr: boolean }, cmd: Command) => {
      const rt = runtimeOf(cmd);
      const config = await rt.client(cmd).vpnPeers.config(id, { project: rt.project(cmd) });
      const text = await configWithQr(config, f.qr);
      rt.print(cmd, { config }, () => text);
    });
  peer
    .command('rm')
    .description('remove a peer (the gateways drop it at once; other peers keep their sessions)')
    .argument('<peer>', 'peer id or name')
    .option('-y, --yes', 'do not ask for confirmation')
    .action(async (id: string, opts: { yes?: boolean }, cmd: Command) => {
      const rt = runtimeOf(cmd);
      await confirmDeletion(rt, opts.yes, `peer ${id}`, `remove peer ${id}?`);
      await rt.client(cmd).vpnPeers.delete(id, { project: rt.project(cmd) });
      rt.print(cmd, { deleted: id }, () => `peer ${id} removed\n`);
    });
}

/** `floe vpn`: WireGuard access into private networks. */
export function registerVpn(program: Command): void {
  const vpn = program.command('vpn').description('WireGuard access into private networks: VPN networks, peers, pools');
  examples(vpn, [
    'floe vpn create office --pool edge --network lan',
    'floe vpn peer add office laptop',
    'floe vpn peer config laptop',
  ]);
  listOptions(vpn.command('ls').description('list VPN networks')).action(async (opts: ListFlags, cmd: Command) => {
    const rt = runtimeOf(cmd);
    const page = await fetchPage(rt, rt.client(cmd).vpnNetworks, { project: rt.project(cmd) }, opts);
    rt.print(cmd, page, () => networkTable(page.items, rt.now()));
  });
  vpn
    .command('show')
    .description('show one VPN network')
    .argument('<vpn>', 'VPN network id or name')
    .action(async (id: string, _o: unknown, cmd: Command) => {
      const rt = runtimeOf(cmd);
      const n = await rt.client(cmd).vpnNetworks.get(id, { project: rt.project(cmd) });
      rt.print(cmd, n, () => renderDetails(n));
    });
  vpn
    .command('create')
    .description('take the next free prefix of a pool for a VPN network')
    .argument('<name>', 'VPN network name (a DNS label)')
    .requiredOption('--pool <pool>', 'the VPN pool (see "floe vpn pool ls")')
    .option('--network <network>', 'a private network of the project its peers reach (repeatable)', collect)
    .option('--label <key=value>', 'label (repeatable)', collect)
    .action(async (name: string, f: { pool: string; network?: string[]; label?: string[] }, cmd: Command) => {
      const rt = runtimeOf(cmd);
      checkName(name, 'VPN network name');
      if (f.pool.trim() === '') throw new UsageError('--pool names a VPN pool; "floe vpn pool ls" lists them');
      const project = rt.project(cmd);
      const n = await rt.client(cmd).vpnNetworks.create({
        name,
        pool: f.pool,
        ...(project === undefined ? {} : { project }),
        ...(f.network === undefined ? {} : { networks: f.network }),
        ...(f.label === undefined ? {} : { labels: parseLabels(f.label) }),
      });
      rt.print(
        cmd,
        n,
        () =>
          `VPN network ${n.name} created (${n.id}, ${n.ipv6}${n.ipv4 === null ? '' : `, ${n.ipv4}`}, endpoint ${n.endpoint})\nadd peers with "floe vpn peer add ${n.name} NAME"\n`,
      );
    });
  const update = vpn
    .command('update')
    .description('change the private networks its peers reach (in place: peers keep their sessions) or its labels')
    .argument('<vpn>', 'VPN network id or name')
    .option('--network <network>', 'a private network of the project (repeatable; replaces the list)', collect)
    .option('--disconnect', 'connect no private network')
    .option('--label <key=value|key->', 'set or remove a label (repeatable)', collect)
    .action(async (id: string, f: { network?: string[]; disconnect?: boolean; label?: string[] }, cmd: Command) => {
      const rt = runtimeOf(cmd);
      const patch = updatePatch(f);
      const n = await rt.client(cmd).vpnNetworks.update(id, patch, { project: rt.project(cmd) });
      rt.print(
        cmd,
        n,
        () =>
          `VPN network ${n.name} updated (revision ${n.revision}, ${n.spec.networks.length} connected network${n.spec.networks.length === 1 ? '' : 's'})\n`,
      );
      // The peers' own files list what they route into the tunnel.
      if (patch.spec !== undefined)
        rt.warn(
          'peers route the connected networks by their AllowedIPs: "floe vpn peer config PEER" prints the new file',
        );
    });
  examples(update, ['floe vpn update office --network lan --network lab', 'floe vpn update office --label team=ops']);
  vpn
    .command('stats')
    .description("every peer's latest handshake and transfer, read from the gateways (RX: from the peer, TX: to it)")
    .argument('<vpn>', 'VPN network id or name')
    .action(async (id: string, _o: unknown, cmd: Command) => {
      const rt = runtimeOf(cmd);
      const stats = await rt.client(cmd).vpnNetworks.stats(id, { project: rt.project(cmd) });
      rt.print(cmd, stats, () => statsTable(stats, rt.now()));
    });
  vpn
    .command('rm')
    .description('delete a VPN network and its peers')
    .argument('<vpn>', 'VPN network id or name')
    .option('-y, --yes', 'do not ask for confirmation')
    .action(async (id: string, opts: { yes?: boolean }, cmd: Command) => {
      const rt = runtimeOf(cmd);
      await confirmDeletion(rt, opts.yes, `VPN network ${id}`, `delete VPN network ${id} and its peers?`);
      await rt.client(cmd).vpnNetworks.delete(id, { project: rt.project(cmd) });
      rt.print(cmd, { deleted: id }, () => `VPN network ${id} deleted\n`);
    });
  registerPeer(vpn);
  registerPool(vpn);
}
