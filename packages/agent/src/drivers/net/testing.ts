import { setTimeout as sleep } from 'node:timers/promises';
import { FloeError } from '@floe/api';
import { run, which, type RunResult } from '../../host/exec.js';

/*
 * Helpers of the network tests that run in namespaces they make themselves
 * (root, iproute2, nftables, dnsmasq, busybox). Not used by the agent.
 */

const TOOLS = ['ip', 'bridge', 'nft', 'dnsmasq', 'ping', 'busybox'];

/**
 * Why network namespace tests cannot run here, or null when they can. Under CI
 * that is an error rather than a skip; elsewhere the reason is printed, so a
 * skipped suite never passes silently.
 *
 * @example
 * const reason = await netnsUnavailable('public network tests');
 * describe.skipIf(reason !== null)('...', () => { ... });
 */
export async function netnsUnavailable(what: string): Promise<string | null> {
  let reason: string | null = null;
  if (process.getuid?.() !== 0) reason = 'network namespace tests need root';
  for (const t of TOOLS) if (reason === null && (await which(t)) === null) reason = `${t} is not installed`;
  if (reason === null) {
    const probe = await run('ip', ['netns', 'list'], { allowFail: true }).catch(() => null);
    if (probe === null || probe.code !== 0) reason = '`ip netns` is not available';
  }
  if (reason !== null) {
    if (process.env.CI) throw new Error(`${what} cannot run under CI: ${reason}`);
    console.log(`skipping ${what}: ${reason}`);
  }
  return reason;
}

/** Run a command inside a namespace. */
export const inNs = (ns: string, ...args: string[]): Promise<RunResult> => run('ip', ['netns', 'exec', ns, ...args]);

/** Run `ip` on a namespace. */
export const ipIn = (ns: string, ...args: string[]): Promise<RunResult> => run('ip', ['-n', ns, ...args]);

/** One ping from a namespace, 1 s to answer; true when it came back. */
export async function ping(from: string, to: string, opts: { source?: string; v6?: boolean } = {}): Promise<boolean> {
  const args = [
    'netns',
    'exec',
    from,
    'ping',
    opts.v6 ? '-6' : '-4',
    '-c',
    '1',
    '-W',
    '1',
    ...(opts.source ? ['-I', opts.source] : []),
    to,
  ];
  return (await run('ip', args, { allowFail: true })).code === 0;
}

/** Poll `check` every 100 ms until it holds, or fail after `ms`. */
export async function waitFor(what: string, check: () => Promise<boolean>, ms = 8000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
}

/** The `field` of the validation error `fn` throws; fails when it throws nothing or something else. */
export function fieldOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (err) {
    if (!(err instanceof FloeError)) throw new Error(`expected a FloeError, got ${String(err)}`);
    return err.details?.field as string | undefined;
  }
  throw new Error('expected a validation error');
}

/** A counter of a network stack's `/proc/net/snmp` text, e.g. ('Icmp', 'InEchos'): the requests of pings received. */
export function snmpCounter(snmp: string, group: 'Icmp' | 'Udp', name: string): number {
  const rows = snmp.split('\n').filter((l) => l.startsWith(`${group}:`));
  const names = rows[0]?.split(/\s+/) ?? [];
  const values = rows[1]?.split(/\s+/) ?? [];
  const i = names.indexOf(name);
  const n = i < 0 ? NaN : Number(values[i]);
  if (!Number.isInteger(n)) throw new Error(`no ${group} ${name} in this /proc/net/snmp`);
  return n;
}

/** The echo requests a network stack has received, from the text of its `/proc/net/snmp` (Icmp InEchos). */
export function echoRequestsIn(snmp: string): number {
  return snmpCounter(snmp, 'Icmp', 'InEchos');
}
