import type { CheckedNet } from './checked-spec.js';
import { observeLink, runBatch, type HostExec } from './host-exec.js';
import type { Argv } from './link-commands.js';
import { vpnPortName } from './names.js';
import { VPN_RULE_PRIORITY, vpnPortCommands, vpnTable, type ObservedVpnPort } from './vpn-port.js';

/*
 * The thin applier of a network's VPN router port (vpn-port.ts decides): read what the host has with
 * the JSON modes of `ip`, run the difference as one `ip -batch`.
 */

interface IpRoute {
  dst?: string;
  gateway?: string;
}
interface IpRule {
  priority?: number;
  src?: string;
  srclen?: number;
  table?: string | number;
}
interface IpNeigh {
  dst?: string;
  state?: string[];
}

async function json<T>(exec: HostExec, argv: Argv): Promise<T[]> {
  const out = await exec(argv, { allowFail: true });
  if (out.code !== 0) return [];
  try {
    const parsed = JSON.parse(out.stdout || '[]') as unknown;
    return Array.isArray(parsed) ? (parsed as T[]) : [];
  } catch {
    return [];
  }
}

/** The policy rules of a network's table (both families), as source prefixes. */
async function observeRules(exec: HostExec, table: number): Promise<string[]> {
  const out: string[] = [];
  for (const family of ['-4', '-6'] as const)
    for (const r of await json<IpRule>(exec, ['ip', '-j', family, 'rule', 'show', 'table', String(table)]))
      if (r.priority === VPN_RULE_PRIORITY && r.src !== undefined)
        out.push(`${r.src}/${r.srclen ?? (family === '-6' ? 128 : 32)}`);
  return out;
}

/** What the host has of the network's VPN port: the link, its addresses, neighbours, routes, table and rules. */
export async function observeVpnPort(exec: HostExec, c: CheckedNet): Promise<ObservedVpnPort> {
  const name = vpnPortName(c.net.id);
  const table = vpnTable(c.net.id);
  const rules = await observeRules(exec, table);
  const link = await observeLink(exec, name);
  if (link === undefined) return { addrs: [], neighbours: [], routes: [], tableRoutes: [], rules };
  const detail = await json<{ link?: string; addr_info?: { local: string; prefixlen: number; scope?: string }[] }>(
    exec,
    ['ip', '-j', 'addr', 'show', 'dev', name],
  );
  const addrs = (detail[0]?.addr_info ?? []).filter((a) => a.scope !== 'link').map((a) => `${a.local}/${a.prefixlen}`);
  const neighbours: string[] = [];
  const routes: string[] = [];
  const tableRoutes: string[] = [];
  for (const family of ['-4', '-6'] as const) {
    for (const n of await json<IpNeigh>(exec, ['ip', '-j', family, 'neigh', 'show', 'dev', name]))
      if (n.dst !== undefined && (n.state ?? []).includes('PERMANENT')) neighbours.push(n.dst);
    for (const r of await json<IpRoute>(exec, ['ip', '-j', family, 'route', 'show', 'dev', name, 'proto', 'static']))
      if (r.dst !== undefined && r.gateway !== undefined) routes.push(`${r.dst} via ${r.gateway}`);
    for (const r of await json<IpRoute>(exec, ['ip', '-j', family, 'route', 'show', 'table', String(table)]))
      if (r.dst !== undefined) tableRoutes.push(r.dst);
  }
  return {
    link: { kind: link.kind, address: link.address, up: link.up, lower: detail[0]?.link ?? null },
    addrs,
    neighbours,
    routes,
    tableRoutes,
    rules,
  };
}

/** Bring the network's VPN port to what its spec asks (or remove it); returns the commands run. */
export async function applyVpnPort(exec: HostExec, c: CheckedNet): Promise<Argv[]> {
  const cmds = vpnPortCommands(c, await observeVpnPort(exec, c));
  // Commands with a family option (`ip -6 rule`) cannot go into the batch: they run after it.
  await runBatch(
    exec,
    cmds.filter((a) => !a[1]?.startsWith('-')),
  );
  for (const a of cmds) if (a[1]?.startsWith('-')) await exec(a);
  return cmds;
}

/** Remove the policy rules of a network's VPN port (the port itself goes with the bridge). */
export async function removeVpnRules(exec: HostExec, netId: string): Promise<void> {
  const table = String(vpnTable(netId));
  for (const r of await observeRules(exec, vpnTable(netId)))
    await exec(
      [
        'ip',
        ...(r.includes(':') ? ['-6'] : []),
        'rule',
        'del',
        'from',
        r,
        'lookup',
        table,
        'pref',
        String(VPN_RULE_PRIORITY),
      ],
      { allowFail: true },
    );
}
