/**
 * Namespaces for the networking benchmark: a "host" namespace with an
 * underlay, a "VM" namespace plugged into a bridge that leases an address
 * with busybox udhcpc, and the polling, link listing and cleanup around them.
 */
import { randomBytes } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { run } from '../packages/agent/src/host/exec.js';

export const UNDERLAY = '192.0.2.1';
/** How often the benchmark looks for dnsmasq and the tap while floe works. */
const POLL_MS = 5;
/** Longest wait for any one thing before a round counts as failed. */
export const TIMEOUT_MS = 30_000;
/** The host end of the "VM" veth, in the host namespace until it is plugged into the bridge. */
const VM_PORT = 'bvm0';

export const ip = (ns: string, ...args: string[]) => run('ip', ['-n', ns, ...args]);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A namespace standing in for a host: loopback up and an underlay veth carrying the VXLAN source address. */
export async function hostNamespace(): Promise<string> {
  const ns = `floe-b-${randomBytes(4).toString('hex')}`;
  await run('ip', ['netns', 'add', ns]);
  namespaces.add(ns);
  await ip(ns, 'link', 'set', 'lo', 'up');
  // A veth pair: dummy interfaces are not always built into the kernel.
  await ip(ns, 'link', 'add', 'ul', 'type', 'veth', 'peer', 'name', 'ul-peer');
  await ip(ns, 'addr', 'add', `${UNDERLAY}/24`, 'dev', 'ul');
  await ip(ns, 'link', 'set', 'ul', 'up');
  return ns;
}

/** Namespaces this run created and has not deleted yet: what Ctrl-C cleans up. */
export const namespaces = new Set<string>();

export async function deleteNamespace(ns: string): Promise<void> {
  await run('ip', ['netns', 'del', ns], { allowFail: true });
  namespaces.delete(ns);
}

/**
 * A "VM": a namespace whose eth0 (the NIC's MAC when known, the network MTU)
 * is a veth whose other end, `VM_PORT`, waits in `hostNs` to be plugged into
 * a bridge. A tap the fake VM driver never opens has no carrier, so this veth
 * is what carries the guest's DHCP exchange.
 */
export async function vmNamespace(hostNs: string, mac: string | null, mtu: number): Promise<string> {
  const ns = `floe-v-${randomBytes(4).toString('hex')}`;
  await run('ip', ['netns', 'add', ns]);
  namespaces.add(ns);
  await run('ip', ['link', 'add', VM_PORT, 'netns', hostNs, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns]);
  await ip(ns, 'link', 'set', 'lo', 'up');
  await ip(ns, 'link', 'set', 'eth0', ...(mac === null ? [] : ['address', mac]), 'mtu', String(mtu), 'up');
  return ns;
}

/** Plug the VM's veth into the bridge and ask for an address like a guest would (busybox udhcpc); the address leased. */
export async function plugAndLease(hostNs: string, vmNs: string, bridge: string): Promise<string> {
  await ip(hostNs, 'link', 'set', VM_PORT, 'master', bridge, 'up');
  const out = await run(
    'ip',
    [
      'netns',
      'exec',
      vmNs,
      'busybox',
      'udhcpc',
      '-i',
      'eth0',
      '-f',
      '-q',
      '-n',
      '-t',
      '5',
      '-T',
      '1',
      '-s',
      '/bin/true',
    ],
    { allowFail: true },
  );
  const m = /lease of (\d+\.\d+\.\d+\.\d+) obtained/.exec(out.stdout + out.stderr);
  if (!m) throw new Error(`udhcpc got no lease: ${(out.stdout + out.stderr).trim()}`);
  return m[1]!;
}

export async function until<T>(
  check: () => Promise<T | false | undefined | null>,
  what: string,
  timeoutMs = TIMEOUT_MS,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await check();
    if (v !== false && v !== undefined && v !== null) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(POLL_MS);
  }
}

/** Every interface of the namespace by name: its `master` and whether it is up (`ip -j link show`). */
export async function links(ns: string): Promise<Map<string, { master: string | null; up: boolean }>> {
  const out = await run('ip', ['-n', ns, '-j', 'link', 'show']);
  const list = JSON.parse(out.stdout || '[]') as { ifname: string; master?: string; flags?: string[] }[];
  return new Map(list.map((l) => [l.ifname, { master: l.master ?? null, up: (l.flags ?? []).includes('UP') }]));
}

/** Kill every dnsmasq started from a config under `dir` (by its pidfile, checked against its command line). */
export async function killDnsmasqUnder(dir: string): Promise<void> {
  const files = await readdir(dir, { recursive: true }).catch(() => [] as string[]);
  for (const f of files.filter((x) => path.basename(x) === 'dnsmasq.pid')) {
    const pidFile = path.join(dir, f);
    const pid = Number.parseInt(await readFile(pidFile, 'utf8').catch(() => ''), 10);
    const cmdline =
      Number.isInteger(pid) && pid > 1 ? await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '') : '';
    if (cmdline.split('\0').includes(`--conf-file=${path.join(path.dirname(pidFile), 'dnsmasq.conf')}`))
      process.kill(pid, 'SIGKILL');
  }
}
