import { mkdir, readFile, rm, rmdir, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { ownedPid } from '../../host/exec.js';
import { writeFileAtomic } from '../../host/files.js';
import type { DhcpDriver, DhcpState } from './areas.js';
import { checkNet } from './checked-spec.js';
import { dnsmasqFiles, dnsmasqPaths } from './dnsmasq.js';
import { observeHost, type HostExec } from './host-exec.js';
import { inSubnet } from './ip.js';
import type { NetSpec, NicSpec } from './types.js';

/** Write `text` to `file` (whole, by rename) unless it already holds it; true when it changed. */
async function writeIfChanged(file: string, text: string): Promise<boolean> {
  if ((await readFile(file, 'utf8').catch(() => null)) === text) return false;
  await writeFileAtomic(file, text, 0o644);
  return true;
}

/** Whether a process exists and is not a zombie (a zombie has closed its files and sockets). */
async function holdsResources(pid: number): Promise<boolean> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => null);
  if (stat === null) return false;
  // The state follows the command name in parentheses, which may itself hold spaces or parentheses.
  const state = stat.slice(stat.lastIndexOf(')') + 2)[0];
  return state !== 'Z' && state !== 'X';
}

/**
 * The DHCP/DNS area on Linux: one dnsmasq per network, its files under the
 * agent's state directory and under /run (see dnsmasqPaths). A dnsmasq
 * daemonizes, so it outlives the agent; a restarted agent adopts it.
 */
export class DnsmasqDriver implements DhcpDriver {
  constructor(
    private readonly exec: HostExec,
    /** The agent's state directory (absolute). */
    private readonly stateDir: string,
  ) {
    dnsmasqPaths(stateDir, 'net_x');
  }

  /**
   * Run the network's dnsmasq with the config for `nics` (this host's) and
   * `remoteNics` (names only). A dnsmasq already running from the pidfile with
   * the same config is adopted, not duplicated (an agent restart keeps it); new
   * leases or names only make it re-read its files (SIGHUP); a changed config
   * restarts it.
   */
  async ensureDhcp(net: NetSpec, nics: readonly NicSpec[], remoteNics: readonly NicSpec[] = []): Promise<DhcpState> {
    const paths = dnsmasqPaths(this.stateDir, net.id);
    const files = dnsmasqFiles(net, nics, paths, remoteNics);
    if (net.kind === 'public') {
      const c = checkNet(net);
      const have = (await observeHost(this.exec, [])).addrs.get(c.bridge) ?? [];
      if (!have.some((a) => c.v4 !== null && inSubnet(a.split('/')[0]!, c.v4.address, c.v4.prefix))) {
        await this.stopDhcp(net.id);
        return {
          pid: null,
          started: false,
          skipped: `the host has no address of ${c.v4?.cidr} on ${c.bridge}: no DHCP, guests need static network-config`,
        };
      }
    }
    await mkdir(paths.dir, { recursive: true, mode: 0o755 });
    await mkdir(paths.runDir, { recursive: true, mode: 0o755 });
    // Leases and names first, whole files renamed into place: dnsmasq never reads half of one.
    const changed = (
      await Promise.all([writeIfChanged(paths.hostsFile, files.hosts), writeIfChanged(paths.namesFile, files.names)])
    ).some(Boolean);
    const running = await this.dhcpPid(net.id);
    const old = await readFile(paths.conf, 'utf8').catch(() => null);
    if (running !== null && old === files.conf) {
      if (!changed) return { pid: running, started: false };
      process.kill(running, 'SIGHUP');
      return { pid: running, started: false, reloaded: true };
    }
    if (running !== null) await this.stopDhcp(net.id);
    await writeFile(paths.conf, files.conf, { mode: 0o644 });
    await this.exec(['dnsmasq', `--conf-file=${paths.conf}`]);
    return { pid: await this.dhcpPid(net.id), started: true };
  }

  /** The pid of the network's running dnsmasq, found by its pidfile and checked against its command line; null if none. */
  dhcpPid(netId: string): Promise<number | null> {
    const paths = dnsmasqPaths(this.stateDir, netId);
    // A recycled pid belongs to some other process: never adopt or signal it.
    return Promise.resolve(ownedPid(paths.pidFile, `--conf-file=${paths.conf}`));
  }

  /** Stop the network's dnsmasq (SIGTERM, then SIGKILL after 2 s), wait until it has let go of its sockets, and forget its pidfile. */
  async stopDhcp(netId: string): Promise<void> {
    const pid = await this.dhcpPid(netId);
    if (pid !== null) {
      process.kill(pid, 'SIGTERM');
      // An exiting dnsmasq loses its command line before it closes its sockets: wait for both, or a new one
      // started right after finds its addresses in use.
      const gone = async () => (await this.dhcpPid(netId)) === null && !(await holdsResources(pid));
      for (let i = 0; i < 40 && !(await gone()); i++) await sleep(50);
      if ((await this.dhcpPid(netId)) !== null) {
        process.kill(pid, 'SIGKILL');
        for (let i = 0; i < 20 && (await holdsResources(pid)); i++) await sleep(50);
      }
    }
    await rm(dnsmasqPaths(this.stateDir, netId).pidFile, { force: true });
  }

  /** Stop the network's dnsmasq and delete its files; the agent's directory under /run goes with its last network. */
  async removeDhcp(netId: string): Promise<void> {
    await this.stopDhcp(netId);
    const paths = dnsmasqPaths(this.stateDir, netId);
    // The network's state directory itself belongs to the network area (it marks the network as built here).
    for (const f of [paths.conf, paths.leaseFile, paths.logFile]) await rm(f, { force: true });
    await rm(paths.runDir, { recursive: true, force: true });
    await rmdir(dirname(paths.runDir)).catch(() => undefined);
  }
}
