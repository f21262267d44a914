import type { LoginLockout } from '../config.js';

/** Keys remembered at most (usernames and addresses together); past it, expired ones go first, then the oldest. */
const MAX_KEYS = 100_000;

interface Counter {
  /** Times of the failures within the window, oldest first (at most the limit). */
  failures: number[];
  /** Locked until this time (ms), or 0. */
  lockedUntil: number;
}

/** Why a login is refused before the authenticators are asked, and for how long. */
export interface Lockout {
  readonly key: 'username' | 'address';
  readonly retryAfterS: number;
}

/** The same username however it is typed: case and surrounding spaces do not give an attacker more tries. */
export function normalizeUsername(username: string): string {
  return username.trim().normalize('NFKC').toLowerCase();
}

/**
 * Failed logins counted per username and per source address. After `perUsername` (or `perAddress`)
 * failures within the window, that key is locked for a window: every attempt is refused without
 * asking the authenticators, for unknown and existing usernames alike. The counters live in this
 * process's memory: each control plane counts on its own, and a restart forgets them.
 */
export class LoginThrottle {
  private readonly counters = new Map<string, Counter>();

  constructor(
    private readonly limits: LoginLockout,
    private readonly now: () => number = Date.now,
  ) {}

  /** The lockout that refuses this attempt, or null when it may go on. */
  check(username: string, address: string | undefined): Lockout | null {
    const t = this.now();
    for (const [kind, key] of this.keys(username, address)) {
      const c = this.counters.get(key);
      if (c !== undefined && c.lockedUntil > t)
        return { key: kind, retryAfterS: Math.ceil((c.lockedUntil - t) / 1000) };
    }
    return null;
  }

  /** Count one failure for the username and the address. */
  fail(username: string, address: string | undefined): void {
    const t = this.now();
    for (const [kind, key] of this.keys(username, address)) {
      const limit = kind === 'username' ? this.limits.perUsername : this.limits.perAddress;
      if (limit === 0) continue;
      let c = this.counters.get(key);
      if (c === undefined) {
        this.makeRoom(t);
        c = { failures: [], lockedUntil: 0 };
        this.counters.set(key, c);
      }
      c.failures = c.failures.filter((f) => f > t - this.limits.windowMs);
      c.failures.push(t);
      if (c.failures.length > limit) c.failures.shift();
      if (c.failures.length >= limit) {
        c.lockedUntil = t + this.limits.windowMs;
        c.failures = [];
      }
    }
  }

  /** A successful login forgets the username's failures (not the address's). */
  succeed(username: string): void {
    const key = `u:${normalizeUsername(username)}`;
    const c = this.counters.get(key);
    if (c !== undefined && c.lockedUntil <= this.now()) this.counters.delete(key);
  }

  private keys(username: string, address: string | undefined): Array<['username' | 'address', string]> {
    const out: Array<['username' | 'address', string]> = [['username', `u:${normalizeUsername(username)}`]];
    if (address !== undefined) out.push(['address', `a:${address}`]);
    return out;
  }

  private makeRoom(t: number): void {
    if (this.counters.size < MAX_KEYS) return;
    for (const [key, c] of this.counters)
      if (c.lockedUntil <= t && c.failures.every((f) => f <= t - this.limits.windowMs)) this.counters.delete(key);
    while (this.counters.size >= MAX_KEYS) this.counters.delete(this.counters.keys().next().value!);
  }
}
