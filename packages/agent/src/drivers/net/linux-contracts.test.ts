import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  dhcpDriverContract,
  firewallDriverContract,
  networkDriverContract,
  rateLimitDriverContract,
} from '@floe/testkit/net-contracts';
import { run } from '../../host/exec.js';
import { dnsmasqRunDir } from './dnsmasq.js';
import { HostNetworkDriver } from './driver.js';
import { tapName } from './names.js';
import { inNs, ipIn, netnsUnavailable, waitFor } from './testing.js';

/*
 * The contract suites of the three areas against the Linux drivers, each case
 * in a network namespace of its own (made and deleted here), with a dummy
 * NAT interface and a dummy "physical" interface holding an address.
 */

const reason = await netnsUnavailable('network contract tests');

// Under CI the Linux contracts must run: a machine without namespaces fails here instead of passing with
// the real drivers' cases skipped.
it.runIf(process.env.CI)('runs the Linux network, DHCP, firewall and rate-limit contracts under CI', () => {
  expect(reason).toBeNull();
});

interface Host {
  ns: string;
  state: string;
  driver: HostNetworkDriver;
  cleanup: () => Promise<void>;
}

async function host(): Promise<Host> {
  const ns = `floe-c-${randomBytes(4).toString('hex')}`;
  const state = await mkdtemp(join(tmpdir(), 'floe-contract-'));
  const cleanup = async () => {
    await run('ip', ['netns', 'del', ns], { allowFail: true });
    await rm(dnsmasqRunDir(state), { recursive: true, force: true });
    await rm(state, { recursive: true, force: true });
  };
  try {
    await run('ip', ['netns', 'add', ns]);
    await ipIn(ns, 'link', 'set', 'lo', 'up');
    // veth pairs whose peers stay in the namespace: no dummy module needed.
    for (const [dev, addr] of [
      ['ul0', '192.0.2.1/24'],
      ['eth0', '198.51.100.1/24'],
      ['phys0', '198.18.0.10/24'],
    ] as const) {
      await ipIn(ns, 'link', 'add', dev, 'type', 'veth', 'peer', 'name', `${dev}p`);
      await ipIn(ns, 'addr', 'add', addr, 'dev', dev);
      await ipIn(ns, 'link', 'set', dev, 'up');
      await ipIn(ns, 'link', 'set', `${dev}p`, 'up');
    }
  } catch (err) {
    await cleanup();
    throw err;
  }
  const driver = new HostNetworkDriver({ stateDir: state, underlay: '192.0.2.1', netns: ns });
  return {
    ns,
    state,
    driver,
    cleanup,
  };
}

describe.skipIf(reason !== null)('host network areas on Linux, in network namespaces', () => {
  networkDriverContract('Linux (iproute2)', async () => {
    const h = await host();
    const link = async (name: string) => {
      const o = await h.driver.observe([]);
      const l = o.links.get(name);
      return l === undefined ? null : { ...l, addrs: o.addrs.get(name) ?? [] };
    };
    return {
      driver: h.driver.network,
      underlay: '192.0.2.1',
      natInterface: 'eth0',
      physical: { name: 'phys0', addrs: ['198.18.0.10/24'] },
      probe: {
        link,
        floods: async (vx) => (await h.driver.observe([vx])).floods.get(vx) ?? [],
        sysctl: async (key) => (await inNs(h.ns, 'sysctl', '-n', key)).stdout.trim(),
        deleteLink: async (name) => void (await ipIn(h.ns, 'link', 'del', name)),
      },
      cleanup: h.cleanup,
    };
  });

  dhcpDriverContract('Linux (dnsmasq)', async () => {
    const h = await host();
    return {
      driver: h.driver.dhcp,
      prepare: async (net) => void (await h.driver.network.ensureNetwork(net)),
      kill: async (netId) => {
        const pid = await h.driver.dhcpPid(netId);
        if (pid === null) return;
        process.kill(pid, 'SIGKILL');
        // Gone, or a zombie: either way its sockets are closed.
        await waitFor('dnsmasq to die', async () => {
          const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => null);
          return stat === null || /^[ZX]/.test(stat.slice(stat.lastIndexOf(')') + 2));
        });
      },
      cleanup: h.cleanup,
    };
  });

  firewallDriverContract('Linux (nftables)', async () => {
    const h = await host();
    return {
      driver: h.driver.firewall,
      chains: async (table) => {
        const out = await run('ip', ['netns', 'exec', h.ns, 'nft', 'list', 'table', ...table.split(' ')], {
          allowFail: true,
        });
        return out.code !== 0 ? [] : [...out.stdout.matchAll(/^\s*chain (\S+) \{$/gm)].map((m) => m[1]!);
      },
      cleanup: h.cleanup,
    };
  });

  rateLimitDriverContract('Linux (tc, nftables)', async () => {
    const h = await host();
    return {
      driver: h.driver.rates,
      makeTap: async (nicId) => void (await ipIn(h.ns, 'tuntap', 'add', 'dev', tapName(nicId), 'mode', 'tap')),
      deleteTap: async (nicId) => void (await ipIn(h.ns, 'link', 'del', tapName(nicId))),
      hasLink: async (name) =>
        (await run('ip', ['-n', h.ns, 'link', 'show', 'dev', name], { allowFail: true })).code === 0,
      cleanup: h.cleanup,
    };
  });
});
