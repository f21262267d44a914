import type { RestartPolicy } from '@floe/api';
import { backoffDelay } from './backoff.js';

/** Delays before a crashed VM is started again. */
export interface RestartBackoff {
  /** First delay; default 1 s, doubling with every crash. */
  initialMs: number;
  /** Largest delay; default 5 min. */
  maxMs: number;
  /** Crashes are forgotten after this long without one; default 10 min. */
  resetAfterMs: number;
}

const DEFAULT_RESTART_BACKOFF: RestartBackoff = {
  initialMs: 1000,
  maxMs: 5 * 60_000,
  resetAfterMs: 10 * 60_000,
};

/** Whether a VM that stopped on its own with `exitCode` is started again under `policy`. */
export function restartsAfter(policy: RestartPolicy, exitCode: number | null): boolean {
  return policy === 'always' || (policy === 'on-failure' && exitCode !== 0);
}

/** What the restart policy decided about a VM that stopped on its own. */
type RestartDecision = { restart: false } | { restart: true; delayMs: number };

// One VM's crash history; lives as long as the process.
interface Crashes {
  count: number;
  lastAt: number;
  notBefore: number;
  message: string | null;
}

/**
 * The restart policy of the VMs of a host: a VM that stopped on its own is
 * started again (policy `always`, or `on-failure` with a non-zero exit code)
 * after a delay that doubles with every crash in a row, and is forgotten
 * after `resetAfterMs` without one. The instance reconciler asks how long to
 * wait before starting, and says when it started one.
 */
export class RestartTracker {
  private readonly backoff: RestartBackoff;
  private readonly vms = new Map<string, Crashes>();

  constructor(
    backoff: Partial<RestartBackoff> = {},
    private readonly random: () => number = Math.random,
  ) {
    this.backoff = { ...DEFAULT_RESTART_BACKOFF, ...backoff };
  }

  /** A VM stopped on its own at `now`: with a restart, it may start again after the returned delay. */
  stopped(
    id: string,
    event: { type: 'crashed' | 'stopped'; exitCode: number | null; policy: RestartPolicy },
    now = Date.now(),
  ): RestartDecision {
    if (!restartsAfter(event.policy, event.exitCode)) return { restart: false };
    const c = this.vms.get(id) ?? { count: 0, lastAt: 0, notBefore: 0, message: null };
    if (now - c.lastAt > this.backoff.resetAfterMs) c.count = 0;
    c.count++;
    c.lastAt = now;
    const delayMs = backoffDelay(c.count - 1, this.backoff.initialMs, this.backoff.maxMs, this.random);
    c.notBefore = now + delayMs;
    c.message = `restarted after the VM ${event.type} (exit code ${event.exitCode ?? 'unknown'}, restart policy ${event.policy})`;
    this.vms.set(id, c);
    return { restart: true, delayMs };
  }

  /** How long the VM must still wait before it is started again (0: now). */
  waitMs(id: string, now = Date.now()): number {
    return Math.max(0, (this.vms.get(id)?.notBefore ?? 0) - now);
  }

  /** The VM was started: the wait is over; returns the message of the restart to report, if it was one. */
  started(id: string): string | null {
    const c = this.vms.get(id);
    if (c === undefined) return null;
    const message = c.message;
    c.notBefore = 0;
    c.message = null;
    return message;
  }

  /** The VM is to stay stopped (or is deleted): no restart is pending any more; its crash count stays. */
  cancel(id: string): void {
    const c = this.vms.get(id);
    if (c === undefined) return;
    c.notBefore = 0;
    c.message = null;
  }

  /** The VM is gone from the desired state: forget it. */
  forget(id: string): void {
    this.vms.delete(id);
  }
}
