import { checkSpec, VPN_IF_PREFIX } from './commands.js';
import type { VpnDriver, VpnInterfaceSpec, VpnPeerStats, WireguardMode } from './types.js';

/** A VPN driver in memory, for unit tests of what uses one; it passes the same contract suite. */
export class FakeVpnDriver implements VpnDriver {
  readonly mode: WireguardMode = 'kernel';
  /** Interfaces by name, as last ensured. */
  readonly interfaces = new Map<string, VpnInterfaceSpec>();
  /** Peers by interface, each with the time it was (re)created: peers left alone keep theirs. */
  readonly sessions = new Map<string, Map<string, number>>();
  /** The interfaces the filter covers. */
  filtered: string[] = [];
  private clock = 0;

  list(): Promise<string[]> {
    return Promise.resolve([...this.interfaces.keys()].sort());
  }

  // eslint-disable-next-line @typescript-eslint/require-await -- refusals come back as rejections, as the real driver's
  async ensure(raw: VpnInterfaceSpec): Promise<void> {
    const spec = checkSpec(raw);
    const before = this.interfaces.get(spec.name);
    const sessions = this.sessions.get(spec.name) ?? new Map<string, number>();
    for (const key of [...sessions.keys()]) if (!spec.peers.some((p) => p.publicKey === key)) sessions.delete(key);
    for (const p of spec.peers) {
      const old = before?.peers.find((o) => o.publicKey === p.publicKey);
      if (old === undefined || old.allowedIps.join(',') !== p.allowedIps.join(','))
        sessions.set(p.publicKey, ++this.clock);
    }
    this.interfaces.set(spec.name, spec);
    this.sessions.set(spec.name, sessions);
  }

  remove(name: string): Promise<void> {
    this.interfaces.delete(name);
    this.sessions.delete(name);
    return Promise.resolve();
  }

  applyFilter(specs: readonly VpnInterfaceSpec[]): Promise<void> {
    this.filtered = specs
      .map((s) => checkSpec(s).name)
      .filter((n) => n.startsWith(VPN_IF_PREFIX))
      .sort();
    return Promise.resolve();
  }

  stats(name: string): Promise<VpnPeerStats[] | null> {
    const spec = this.interfaces.get(name);
    if (spec === undefined) return Promise.resolve(null);
    return Promise.resolve(
      spec.peers.map((p) => ({
        publicKey: p.publicKey,
        endpoint: null,
        allowedIps: [...p.allowedIps],
        latestHandshake: 0,
        rxBytes: 0,
        txBytes: 0,
      })),
    );
  }
}
