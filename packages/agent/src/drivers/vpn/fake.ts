import { checkSpec, VPN_IF_PREFIX } from './commands.js';
import { publicKeyOf } from './linux.js';
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
  /** What each interface's peers have done, by interface and peer key (see `handshakes`). */
  private readonly counters = new Map<string, Map<string, { at: number; endpoint: string; rx: number; tx: number }>>();

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
    const counters = this.counters.get(spec.name);
    if (counters !== undefined)
      for (const key of [...counters.keys()]) if (!spec.peers.some((p) => p.publicKey === key)) counters.delete(key);
    this.handshakes();
  }

  /**
   * As WireGuard on one host: a peer with an endpoint on loopback whose port is another interface's
   * listen port, when the two are each other's peers, completes a handshake (initiation 148 bytes,
   * response 92) once; the answering side learns the dialer's address.
   */
  private handshakes(): void {
    const specs = [...this.interfaces.values()];
    for (const a of specs) {
      const keyA = publicKeyOf(a.privateKey);
      for (const p of a.peers) {
        const m = /^(?:127\.0\.0\.1|\[::1\]|localhost):([0-9]+)$/.exec(p.endpoint ?? '');
        const b = specs.find(
          (s) => m !== null && s.listenPort === Number(m[1]) && publicKeyOf(s.privateKey) === p.publicKey,
        );
        if (b === undefined || !b.peers.some((q) => q.publicKey === keyA)) continue;
        if (this.counters.get(a.name)?.has(p.publicKey) === true) continue;
        const at = Math.floor(Date.now() / 1000);
        this.count(a.name, p.publicKey, { at, endpoint: p.endpoint!, rx: 92, tx: 148 });
        this.count(b.name, keyA, { at, endpoint: `127.0.0.1:${a.listenPort}`, rx: 148, tx: 92 });
      }
    }
  }

  private count(name: string, key: string, c: { at: number; endpoint: string; rx: number; tx: number }): void {
    const map = this.counters.get(name) ?? new Map<string, { at: number; endpoint: string; rx: number; tx: number }>();
    map.set(key, c);
    this.counters.set(name, map);
  }

  remove(name: string): Promise<void> {
    this.interfaces.delete(name);
    this.sessions.delete(name);
    this.counters.delete(name);
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
    const counters = this.counters.get(name);
    return Promise.resolve(
      spec.peers.map((p) => {
        const c = counters?.get(p.publicKey);
        return {
          publicKey: p.publicKey,
          endpoint: c?.endpoint ?? p.endpoint ?? null,
          allowedIps: [...p.allowedIps],
          latestHandshake: c?.at ?? 0,
          rxBytes: c?.rx ?? 0,
          txBytes: c?.tx ?? 0,
        };
      }),
    );
  }
}
