import { run, type RunOptions, type RunResult } from '../../host/exec.js';
import { checkIfName } from '../../host/validate.js';
import { toBatch, type Argv } from './link-commands.js';
import type { ObservedLink } from './types.js';

/** Runs one built command on the host (or inside the namespace the drivers were given). */
export type HostExec = (argv: Argv, options?: RunOptions) => Promise<RunResult>;

/** A HostExec that runs commands directly, or inside `netns` (`ip netns exec <ns> ...`) when given. */
export function hostExec(netns: string | undefined): HostExec {
  return (argv, options = {}) => {
    const [cmd, ...args] = argv;
    if (cmd === undefined) throw new Error('empty command');
    return netns === undefined ? run(cmd, args, options) : run('ip', ['netns', 'exec', netns, cmd, ...args], options);
  };
}

/** Run `ip` (or `bridge`) commands as one `-batch` process each: one process start instead of one per command. */
export async function runBatch(exec: HostExec, cmds: readonly Argv[]): Promise<void> {
  for (const tool of ['ip', 'bridge'] as const) {
    const mine = cmds.filter((c) => c[0] === tool);
    if (mine.length === 1) await exec(mine[0]!);
    else if (mine.length > 1) await exec([tool, '-batch', '-'], { input: toBatch(mine, tool) });
  }
}

/** What the host has, read back with the JSON modes of `ip` and `bridge`. */
export interface ObservedHost {
  links: Map<string, ObservedLink>;
  /** Interface → `address/prefix` list. */
  addrs: Map<string, string[]>;
  /** VXLAN device → destinations of its all-zero (flood) FDB entries. */
  floods: Map<string, string[]>;
}

interface IpLink {
  ifname: string;
  master?: string;
  mtu: number;
  flags?: string[];
  address?: string;
  linkinfo?: { info_kind?: string; info_data?: { id?: number; local?: string } };
  addr_info?: { local: string; prefixlen: number }[];
}

const ZERO_MAC = '00:00:00:00:00:00';

function toLink(l: IpLink): ObservedLink {
  return {
    name: l.ifname,
    kind: l.linkinfo?.info_kind ?? null,
    master: l.master ?? null,
    mtu: l.mtu,
    up: (l.flags ?? []).includes('UP'),
    address: l.address ?? '',
    vni: l.linkinfo?.info_data?.id ?? null,
    local: l.linkinfo?.info_data?.local ?? null,
  };
}

/**
 * Read one link (`ip -j -d link show dev`); undefined when there is none. One small answer to parse,
 * where `observeHost` reads every link of the host: what looking at one tap of many should cost.
 */
export async function observeLink(exec: HostExec, name: string): Promise<ObservedLink | undefined> {
  const out = await exec(['ip', '-j', '-d', 'link', 'show', 'dev', checkIfName('dev', name)], { allowFail: true });
  if (out.code !== 0) return undefined;
  const found = (JSON.parse(out.stdout || '[]') as IpLink[]).find((l) => l.ifname === name);
  return found === undefined ? undefined : toLink(found);
}

/**
 * Read links with their addresses (`ip -j -d addr`, one process) and the
 * flood entries of the VXLAN devices in `floodsOf` (`bridge -j fdb show dev`;
 * all of them when omitted).
 */
export async function observeHost(exec: HostExec, floodsOf?: readonly string[]): Promise<ObservedHost> {
  const out: ObservedHost = { links: new Map(), addrs: new Map(), floods: new Map() };
  const addrs = await exec(['ip', '-j', '-d', 'addr', 'show']);
  for (const l of JSON.parse(addrs.stdout || '[]') as IpLink[]) {
    out.links.set(l.ifname, toLink(l));
    out.addrs.set(
      l.ifname,
      (l.addr_info ?? []).map((i) => `${i.local}/${i.prefixlen}`),
    );
  }
  const devices = floodsOf === undefined ? [undefined] : floodsOf.filter((d) => out.links.get(d)?.kind === 'vxlan');
  for (const dev of devices) {
    const fdb = await exec(
      ['bridge', '-j', 'fdb', 'show', ...(dev === undefined ? [] : ['dev', checkIfName('dev', dev)])],
      {
        allowFail: dev !== undefined,
      },
    );
    if (fdb.code !== 0) continue;
    for (const e of JSON.parse(fdb.stdout || '[]') as { mac: string; ifname?: string; dev?: string; dst?: string }[]) {
      const name = e.ifname ?? e.dev ?? dev;
      if (e.mac !== ZERO_MAC || name === undefined || e.dst === undefined) continue;
      out.floods.set(name, [...(out.floods.get(name) ?? []), e.dst]);
    }
  }
  return out;
}
