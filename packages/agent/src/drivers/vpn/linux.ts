import { createPrivateKey, createPublicKey } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { which } from '../../host/exec.js';
import type { HostExec } from '../net/host-exec.js';
import {
  addressCommands,
  checkSpec,
  createCommand,
  dumpCommand,
  nftScript,
  parseDump,
  peerCommand,
  routeCommands,
  setKeyCommand,
  VPN_IF_PREFIX,
  wantedRoutes,
  type Argv,
} from './commands.js';
import type { VpnDriver, VpnInterfaceSpec, VpnPeerStats, WireguardMode } from './types.js';

/** How this host can run WireGuard: the kernel module when it is there, else wireguard-go, else not at all. */
export async function detectWireguard(): Promise<WireguardMode | null> {
  if (existsSync('/sys/module/wireguard')) return 'kernel';
  return (await which('wireguard-go')) !== null ? 'wireguard-go' : null;
}

/** The public half of a WireGuard private key (X25519, base64). */
export function publicKeyOf(privateKey: string): string {
  // PKCS#8 wrapping of a raw X25519 private key.
  const der = Buffer.concat([
    Buffer.from('302e020100300506032b656e04220420', 'hex'),
    Buffer.from(privateKey, 'base64'),
  ]);
  const jwk = createPublicKey(createPrivateKey({ key: der, format: 'der', type: 'pkcs8' })).export({ format: 'jwk' });
  return Buffer.from(jwk.x!, 'base64url').toString('base64');
}

/** Hand `fn` a file holding the key, in a directory only root may enter, and remove both after. */
async function withKeyFile<T>(key: string, fn: (file: string) => Promise<T>): Promise<T> {
  const dir = await mkdtemp(join(tmpdir(), 'floe-wg-'));
  try {
    const file = join(dir, 'key');
    await writeFile(file, `${key}\n`, { mode: 0o600 });
    return await fn(file);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

interface IpLink {
  ifname: string;
  flags?: string[];
  linkinfo?: { info_kind?: string };
  addr_info?: { local: string; prefixlen: number; scope?: string }[];
}

/**
 * The VPN area on Linux: `ip`, `wg` and `wireguard-go` for the interfaces, `nft` for the filter, all
 * through one HostExec (inside a network namespace in tests). Every method observes first and changes
 * only what differs.
 */
export class LinuxVpnDriver implements VpnDriver {
  constructor(
    readonly mode: WireguardMode,
    private readonly exec: HostExec,
  ) {}

  private readonly forwardingOn = new Set<string>();
  private lastFilter: string | null = null;

  private run(argv: Argv, input?: string, allowFail = false) {
    return this.exec(argv, { ...(input === undefined ? {} : { input }), ...(allowFail ? { allowFail } : {}) });
  }

  private async links(): Promise<IpLink[]> {
    const out = await this.run(['ip', '-j', '-d', 'address', 'show']);
    return (JSON.parse(out.stdout || '[]') as IpLink[]).filter(
      (l) =>
        l.ifname.startsWith(VPN_IF_PREFIX) &&
        (l.linkinfo?.info_kind === 'wireguard' || l.linkinfo?.info_kind === 'tun'),
    );
  }

  async list(): Promise<string[]> {
    return (await this.links()).map((l) => l.ifname).sort();
  }

  async ensure(raw: VpnInterfaceSpec): Promise<void> {
    const spec = checkSpec(raw);
    let link = (await this.links()).find((l) => l.ifname === spec.name);
    if (link === undefined) {
      await this.run(createCommand(this.mode, spec.name));
      link = { ifname: spec.name, addr_info: [] };
    }
    const observed = parseDump((await this.run(dumpCommand(spec.name))).stdout);
    // Set only when it differs: the peers' sessions survive an unchanged interface.
    if (observed.listenPort !== spec.listenPort || observed.publicKey !== publicKeyOf(spec.privateKey))
      await withKeyFile(spec.privateKey, (file) => this.run(setKeyCommand(spec.name, spec.listenPort, file)));
    const peers = peerCommand(spec.name, observed, spec);
    if (peers !== null) await this.run(peers);
    const have = (link.addr_info ?? []).filter((a) => a.scope !== 'link').map((a) => `${a.local}/${a.prefixlen}`);
    for (const c of addressCommands(spec.name, have, spec.addresses)) await this.run(c);
    if (!(link.flags ?? []).includes('UP')) await this.run(['ip', 'link', 'set', spec.name, 'up']);
    for (const c of routeCommands(spec.name, await this.routes(spec.name), wantedRoutes(spec))) await this.run(c);
    await this.forwarding(spec);
  }

  /** The floe routes of an interface (`proto static`), both families. */
  private async routes(name: string): Promise<string[]> {
    const out: string[] = [];
    for (const fam of ['-4', '-6'] as const) {
      const res = await this.run(['ip', fam, '-j', 'route', 'show', 'dev', name, 'proto', 'static']);
      for (const r of JSON.parse(res.stdout || '[]') as { dst: string }[])
        out.push(r.dst.includes('/') ? r.dst : `${r.dst}/${fam === '-4' ? 32 : 128}`);
    }
    return out;
  }

  /** A gateway routes between its interfaces and the networks' bridges. */
  private async forwarding(spec: VpnInterfaceSpec): Promise<void> {
    const keys: string[] = [];
    if (spec.addresses.some((a) => !a.includes(':'))) keys.push('net.ipv4.ip_forward=1');
    if (spec.addresses.some((a) => a.includes(':'))) keys.push('net.ipv6.conf.all.forwarding=1');
    const todo = keys.filter((k) => !this.forwardingOn.has(k));
    if (todo.length === 0) return;
    await this.run(['sysctl', '-q', '-w', ...todo]);
    for (const k of todo) this.forwardingOn.add(k);
  }

  async remove(name: string): Promise<void> {
    if (!(await this.list()).includes(name)) return;
    // A wireguard-go daemon ends with its device.
    await this.run(['ip', 'link', 'del', name]);
  }

  async applyFilter(specs: readonly VpnInterfaceSpec[]): Promise<void> {
    const script = nftScript(specs.map(checkSpec));
    // Unchanged since the last write: no nft process on the path of a peer change.
    if (
      script === this.lastFilter &&
      (await this.run(['nft', 'list', 'table', 'inet', 'floe_vpn'], undefined, true)).code === 0
    )
      return;
    await this.run(['nft', '-f', '-'], script);
    this.lastFilter = script;
  }

  async stats(name: string): Promise<VpnPeerStats[] | null> {
    if (!(await this.list()).includes(name)) return null;
    return [...parseDump((await this.run(dumpCommand(name))).stdout).peers];
  }
}
