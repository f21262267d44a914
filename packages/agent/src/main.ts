#!/usr/bin/env node
import { mkdir, readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { pino, type Level } from 'pino';
import { FloeError } from '@floe/api';
import { acquireInstanceLock, InstanceLockedError, type InstanceLock } from '@floe/process';
import type { VmDriver } from './drivers/vm/types.js';
import { FakeVmDriver } from './drivers/vm/fake.js';
import { Agent } from './agent.js';
import { QemuDriver } from './drivers/vm/qemu/index.js';
import { HostNetworkDriver } from './drivers/net/driver.js';
import { AGENT_VERSION, checkUnderlay, detectUnderlay, probeFacts, probeKvm } from './facts.js';
import { joinControlPlane } from './join.js';
import { parsePortRange, type PortRange } from './metadata/nft.js';
import { seedVendorData } from './metadata/vendor-data.js';
import { AgentState } from './state.js';

const HELP = `floe-agent ${AGENT_VERSION}: the floe host agent.

It dials the control plane over mutual TLS, receives the desired state of the
instances placed on this host and makes the host match it. Stopping the agent
never stops a VM.

Usage:
  floe-agent --server URL --join-token TOKEN --name NAME (--ca FILE | --insecure-join) [options]
      join the control plane once, then run
  floe-agent [options]
      run with the identity stored in the data directory

Options:
  --server URL          control plane base URL (https://host:port); stored at join
  --data DIR            data directory (default: $FLOE_DATA/agent, or ./data/agent)
  --join-token TOKEN    one-time join token (from: floe host join-token)
  --name NAME           this host's name in floe (a DNS label); used when joining
  --ca FILE             floe's CA certificate, to verify the control plane when joining
  --insecure-join       join without verifying the control plane, then pin the CA it returns
  --driver fake|qemu    VM driver (default: qemu); QEMU keeps VMs in DIR/vms
  --accel auto|kvm|tcg  how QEMU runs guests (default: $FLOE_ACCEL, or auto: KVM
                        when a probe guest really runs under it, else TCG)
  --network-driver host|none
                        build networks on this host (bridges, VXLAN, dnsmasq,
                        nftables) or ignore them (default: host with the qemu
                        driver as root, else none)
  --underlay ADDRESS    this host's IPv4 address for VXLAN between hosts
                        (default: $FLOE_UNDERLAY_IPV4, or the source address
                        toward the control plane)
  --resync SECONDS      look at every VM and network again this often, repairing
                        drift such as a bridge deleted by hand (default: 30)
  --stats-interval SECONDS
                        sample each running VM's counters this often for the
                        stats history, which keeps the last hour (default: 10)
  --metadata on|off     serve 169.254.169.254 to the VMs of this host's networks
                        (default: on, with the host network driver)
  --metadata-ports FIRST-LAST
                        the host ports of the VMs' metadata listeners, one per
                        NIC, reached only through the firewall's redirect
                        (default: 20000-20999)
  --log-level LEVEL     fatal, error, warn, info, debug or trace (default: info)
  -h, --help            show this help
  --version             show the version

One agent runs per data directory: a second one started on the same directory
exits at once (status 4), naming the pid of the one already running.

Exit status: 0 after SIGTERM/SIGINT, 1 on errors, 2 on bad usage, 3 when the
control plane revoked this host, 4 when another agent runs on the data directory.
`;

const LEVELS = new Set<string>(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']);

class UsageError extends Error {}

/** Another agent holds the data directory. */
class AlreadyRunningError extends Error {}

/** Exit status of an agent that found another one running on its data directory. */
const EXIT_ALREADY_RUNNING = 4;

/**
 * Hold the data directory for this process: two agents on one directory would take the link from
 * each other and the host would flap offline and online. The kernel lets go when the process dies.
 */
async function lockDataDir(dataDir: string): Promise<InstanceLock> {
  await mkdir(dataDir, { recursive: true, mode: 0o700 });
  try {
    return await acquireInstanceLock(dataDir, 'agent');
  } catch (err) {
    if (!(err instanceof InstanceLockedError)) throw err;
    const pid = err.holder.pid > 0 ? `pid ${err.holder.pid}` : 'pid unknown';
    throw new AlreadyRunningError(
      `another floe-agent (${pid}) is already running with the data directory ${resolve(dataDir)}; stop it first, or keep using it`,
    );
  }
}

const ACCELERATORS = new Set<string>(['auto', 'kvm', 'tcg']);

// The VM driver and, for QEMU, the accelerator it runs guests with (auto: KVM only when the probe saw it work).
async function openDriver(
  name: string,
  dataDir: string,
  accel: string,
): Promise<{ driver: VmDriver; accelerator?: 'kvm' | 'tcg' }> {
  if (!ACCELERATORS.has(accel)) throw new UsageError(`unknown accelerator "${accel}" (expected auto, kvm or tcg)`);
  switch (name) {
    case 'fake':
      return { driver: new FakeVmDriver({ stateDir: join(dataDir, 'fake'), simulateFirstBoot: true }) };
    case 'qemu': {
      const accelerator = accel === 'auto' ? ((await probeKvm()).usable ? 'kvm' : 'tcg') : (accel as 'kvm' | 'tcg');
      return { driver: new QemuDriver({ stateDir: join(dataDir, 'vms'), accelerator }), accelerator };
    }
    default:
      throw new UsageError(`unknown driver "${name}" (expected fake or qemu)`);
  }
}

async function main(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    strict: true,
    allowPositionals: false,
    options: {
      server: { type: 'string' },
      data: { type: 'string' },
      'join-token': { type: 'string' },
      name: { type: 'string' },
      ca: { type: 'string' },
      'insecure-join': { type: 'boolean', default: false },
      driver: { type: 'string', default: 'qemu' },
      accel: { type: 'string' },
      'network-driver': { type: 'string' },
      underlay: { type: 'string' },
      resync: { type: 'string' },
      'stats-interval': { type: 'string' },
      metadata: { type: 'string', default: 'on' },
      'metadata-ports': { type: 'string' },
      'log-level': { type: 'string', default: 'info' },
      help: { type: 'boolean', short: 'h', default: false },
      version: { type: 'boolean', default: false },
    },
  });
  if (values.help) {
    process.stdout.write(HELP);
    return 0;
  }
  if (values.version) {
    process.stdout.write(`${AGENT_VERSION}\n`);
    return 0;
  }
  const resyncS = values.resync === undefined ? 30 : Number(values.resync);
  if (!Number.isFinite(resyncS) || resyncS < 1 || resyncS > 3600)
    throw new UsageError(`--resync wants seconds from 1 to 3600, not "${values.resync}"`);
  const statsS = values['stats-interval'] === undefined ? 10 : Number(values['stats-interval']);
  if (!Number.isFinite(statsS) || statsS < 1 || statsS > 3600)
    throw new UsageError(`--stats-interval wants seconds from 1 to 3600, not "${values['stats-interval']}"`);
  const level = values['log-level'];
  if (!LEVELS.has(level)) throw new UsageError(`unknown log level "${level}"`);
  const log = pino({ level: level as Level, base: { service: 'floe-agent' } });
  const dataDir = values.data ?? join(process.env.FLOE_DATA ?? './data', 'agent');
  const lock = await lockDataDir(dataDir);
  const { driver, accelerator } = await openDriver(
    values.driver,
    dataDir,
    values.accel ?? process.env.FLOE_ACCEL ?? 'auto',
  );

  const state = new AgentState(dataDir);
  const identity = await state.readCredentials();
  const token = values['join-token'];
  if (token !== undefined) {
    if (identity !== null) {
      log.warn({ data: dataDir }, 'this agent has already joined; ignoring --join-token');
    } else {
      if (values.server === undefined || values.name === undefined) {
        throw new UsageError('joining needs --server URL and --name NAME');
      }
      const caPem = values.ca === undefined ? undefined : await readFile(values.ca, 'utf8');
      const joined = await joinControlPlane({
        server: values.server,
        token,
        name: values.name,
        dataDir,
        ...(caPem === undefined ? {} : { caPem }),
        insecure: values['insecure-join'],
      });
      log.info({ host_id: joined.hostId, host: joined.hostName, server: joined.server }, 'joined the control plane');
    }
  } else if (identity === null) {
    throw new UsageError(
      `not joined yet (no identity in ${dataDir}): run once with --server URL --join-token TOKEN --name NAME (--ca FILE | --insecure-join)`,
    );
  }

  const server = values.server ?? (await state.readConfig())?.server;
  const underlayFlag = values.underlay ?? process.env.FLOE_UNDERLAY_IPV4;
  const underlay =
    underlayFlag !== undefined
      ? checkUnderlay(underlayFlag)
      : server === undefined
        ? null
        : await detectUnderlay(server);
  let networkDriver =
    values['network-driver'] ?? (driver.name === 'qemu' && process.getuid?.() === 0 ? 'host' : 'none');
  if (values['network-driver'] === undefined && networkDriver === 'host' && underlay === null) {
    log.warn('no underlay address found (pass --underlay ADDRESS): networks are not built on this host');
    networkDriver = 'none';
  }
  if (networkDriver !== 'host' && networkDriver !== 'none')
    throw new UsageError(`unknown network driver "${networkDriver}" (expected host or none)`);
  let network: ConstructorParameters<typeof Agent>[0]['network'];
  if (networkDriver === 'host') {
    if (underlay === null)
      throw new UsageError('the host network driver needs an underlay address: pass --underlay ADDRESS');
    const stateDir = resolve(dataDir);
    network = {
      host: new HostNetworkDriver({ stateDir, underlay, logger: log.child({ component: 'host-network' }) }),
      stateDir,
    };
  }
  log.info({ network_driver: networkDriver, underlay }, 'networking');
  if (values.metadata !== 'on' && values.metadata !== 'off')
    throw new UsageError(`--metadata wants on or off, not "${values.metadata}"`);
  let metadataPorts: PortRange | undefined;
  if (values['metadata-ports'] !== undefined) {
    try {
      metadataPorts = parsePortRange(values['metadata-ports']);
    } catch (err) {
      throw new UsageError(`--metadata-ports: ${(err as Error).message}`);
    }
  }
  const metadata =
    values.metadata === 'off' ? (false as const) : metadataPorts === undefined ? {} : { ports: metadataPorts };
  // Seeded guests on this host's networks reach the metadata service: their vendor-data asks them to report first boot there too.
  if (metadata !== false && network !== undefined && driver instanceof QemuDriver)
    driver.useSeedVendorData(seedVendorData);

  const facts = () =>
    probeFacts({
      dataDir,
      driver: driver.name,
      ...(accelerator === undefined ? {} : { accelerator }),
      ...(underlay === null ? {} : { underlay }),
    });
  const agent = new Agent({
    dataDir,
    driver,
    facts,
    logger: log,
    reconciler: { resyncIntervalMs: resyncS * 1000 },
    statsHistory: { intervalMs: statsS * 1000 },
    ...(values.server === undefined ? {} : { server: values.server }),
    ...(network === undefined ? {} : { network }),
    metadata,
  });
  const onSignal = (signal: NodeJS.Signals) => {
    log.info({ signal }, 'stopping; VMs keep running');
    void agent.stop();
  };
  process.once('SIGTERM', onSignal);
  process.once('SIGINT', onSignal);
  await agent.start();
  const exit = await agent.done;
  await lock.release();
  if (exit.reason === 'revoked') {
    process.stderr.write(
      `floe-agent: the control plane revoked this host (${exit.message}); join again with a new token to come back\n`,
    );
    return 3;
  }
  return 0;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err: unknown) => {
    const usage = err instanceof UsageError || (err as { code?: string }).code?.startsWith('ERR_PARSE_ARGS');
    const message = err instanceof FloeError ? `${err.message} (${err.code})` : (err as Error).message;
    process.stderr.write(`floe-agent: ${message}\n${usage ? 'Try floe-agent --help.\n' : ''}`);
    process.exit(usage ? 2 : err instanceof AlreadyRunningError ? EXIT_ALREADY_RUNNING : 1);
  },
);
