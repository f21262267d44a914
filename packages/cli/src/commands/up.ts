import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import type { Command } from 'commander';
import { FloeClient } from '@floe/client';
import { probeInstanceLock } from '@floe/process';
import { CliError } from '../errors.js';
import { saveContext } from '../config.js';
import { runtimeOf, type CliRuntime } from '../runtime.js';
import { examples } from './shared.js';

/** What `floed init --json` prints. */
interface InitResult {
  url: string;
  ca_file: string;
  admin_token: string | null;
  database: 'sqlite' | 'postgres';
  host: { id: string; name: string };
  agent_dir: string;
}

interface UpFlags {
  data?: string;
  listen?: string;
  detach?: boolean;
  driver: string;
  context: string;
}

const require = createRequire(import.meta.url);

/** The built entry point of a workspace package (`floed`, `floe-agent`). */
function entryOf(pkg: '@floe/server' | '@floe/agent'): string {
  let dir: string;
  try {
    dir = path.dirname(require.resolve(`${pkg}/package.json`));
  } catch {
    throw new CliError(
      `${pkg} is not installed next to the CLI; run floe up from a floe checkout (./floe up)`,
      'not_installed',
    );
  }
  const main = path.join(dir, 'dist', 'main.js');
  if (!existsSync(main))
    throw new CliError(`${main} is missing; build first (npm run build, or ./floe up)`, 'not_built');
  return main;
}

/** The full path of `cmd` on PATH, or null. */
function findOnPath(cmd: string, pathVar: string): string | null {
  for (const dir of pathVar.split(path.delimiter)) {
    if (dir && existsSync(path.join(dir, cmd))) return path.join(dir, cmd);
  }
  return null;
}

/** Files `up` keeps in the data directory. */
function runPaths(dataDir: string) {
  return {
    run: path.join(dataDir, 'run'),
    logs: path.join(dataDir, 'logs'),
    pid: (name: string) => path.join(dataDir, 'run', `${name}.pid`),
    log: (name: string) => path.join(dataDir, 'logs', `${name}.log`),
  };
}

/** The pid in a pid file when that process is alive, else null. */
function livePid(file: string): number | null {
  try {
    const pid = Number(readFileSync(file, 'utf8').trim());
    if (!Number.isInteger(pid) || pid <= 0) return null;
    process.kill(pid, 0);
    return pid;
  } catch {
    return null;
  }
}

/** The last lines of a log, for error messages. */
function tail(file: string, lines = 15): string {
  try {
    return readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '';
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Start a daemon with its output appended to a log file. */
function daemon(entry: string, args: string[], env: NodeJS.ProcessEnv, log: string, detach: boolean): ChildProcess {
  const fd = openSync(log, 'a');
  try {
    const child = spawn(process.execPath, [entry, ...args], { env, stdio: ['ignore', fd, fd], detached: detach });
    if (detach) child.unref();
    return child;
  } finally {
    closeSync(fd);
  }
}

/** Wait until `check` is true, or fail with `what` and the log's tail. */
async function waitFor(
  check: () => Promise<boolean>,
  child: ChildProcess,
  what: string,
  log: string,
  timeoutMs: number,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new CliError(
        `${what} exited (${child.exitCode ?? child.signalCode}); last lines of ${log}:\n${tail(log)}`,
        'start_failed',
      );
    }
    if (await check().catch(() => false)) return;
    await sleep(200);
  }
  throw new CliError(
    `${what} did not become ready within ${timeoutMs / 1000} s; see ${log}:\n${tail(log)}`,
    'start_failed',
  );
}

async function up(rt: CliRuntime, flags: UpFlags): Promise<void> {
  const dataDir = path.resolve(flags.data ?? rt.env.FLOE_DATA ?? 'data');
  const env: NodeJS.ProcessEnv = { ...process.env, ...rt.env, FLOE_DATA: dataDir };
  if (flags.listen) env.FLOE_LISTEN = flags.listen;
  if (!['auto', 'qemu', 'fake'].includes(flags.driver))
    throw new CliError(`unknown VM driver "${flags.driver}": use auto, qemu or fake`, 'usage', 2);
  const hasQemu = findOnPath('qemu-system-x86_64', env.PATH ?? '');
  if (flags.driver === 'qemu' && !hasQemu)
    throw new CliError(
      'the qemu driver needs qemu-system-x86_64; install qemu-system-x86 (./floe up does this as root) or use --driver fake',
      'qemu_missing',
    );
  const driver = flags.driver === 'auto' ? (hasQemu ? 'qemu' : 'fake') : flags.driver;
  const paths = runPaths(dataDir);
  const floed = entryOf('@floe/server');
  const agentMain = entryOf('@floe/agent');

  const running = livePid(paths.pid('floed'));
  if (running !== null) {
    rt.warn(`floe is already running (control plane pid ${running}); stop it with: floe down --data ${dataDir}`);
    return;
  }

  rt.warn(`preparing ${dataDir}`);
  const init = spawnSync(process.execPath, [floed, 'init', '--json'], { env, encoding: 'utf8' });
  if (init.status !== 0)
    throw new CliError(`floed init failed:\n${(init.stderr || init.stdout).trim()}`, 'init_failed');
  const result = JSON.parse(init.stdout.trim().split('\n').pop()!) as InitResult;
  const caPem = readFileSync(result.ca_file, 'utf8');

  let token: string | undefined;
  if (result.admin_token) {
    token = result.admin_token;
    const file = saveContext(flags.context, { url: result.url, token, ca_file: result.ca_file }, { env: rt.env });
    rt.out.write(
      `\nadmin token (shown once; saved for the CLI as context "${flags.context}" in ${file}):\n  ${token}\n\n`,
    );
  } else {
    try {
      const cfg = rt.loadConfig().contexts[flags.context];
      if (cfg?.url === result.url) token = cfg.token;
    } catch {
      // no usable config: the summary says how to log in
    }
  }

  mkdirSync(paths.run, { recursive: true, mode: 0o700 });
  mkdirSync(paths.logs, { recursive: true, mode: 0o700 });
  const detach = flags.detach === true;
  const serverStarted = Date.now();
  const server = daemon(floed, ['run'], env, paths.log('floed'), detach);
  writeFileSync(paths.pid('floed'), `${server.pid}\n`);
  const children: ChildProcess[] = [server];
  /** An agent already running on the agent directory (left by an earlier `up` whose control plane died). */
  let reused: number | null = null;
  const stopAll = async () => {
    for (const c of children.reverse()) if (c.exitCode === null && c.signalCode === null) c.kill('SIGTERM');
    // The lock, not the pid alone, says the process is still that agent.
    if (reused !== null && (await probeInstanceLock(result.agent_dir, 'agent').catch(() => null))?.pid === reused)
      process.kill(reused, 'SIGTERM');
    await sleep(300);
    rmSync(paths.pid('floed'), { force: true });
    rmSync(paths.pid('agent'), { force: true });
  };
  const client = new FloeClient({ url: result.url, ca: caPem, ...(token ? { token } : {}) });
  try {
    await waitFor(
      async () => (await client.health()).status === 'ok',
      server,
      'the control plane',
      paths.log('floed'),
      30_000,
    );
    // One agent per data directory: one still running (its control plane died under it) is kept, as a
    // second one would take the link from it again and again.
    const holder = await probeInstanceLock(result.agent_dir, 'agent');
    let agent: ChildProcess | null = null;
    if (holder !== null) {
      reused = holder.pid > 0 ? holder.pid : null;
      rt.warn(
        `the local agent is already running (pid ${holder.pid > 0 ? holder.pid : 'unknown'}); using it instead of starting another`,
      );
      if (reused !== null) writeFileSync(paths.pid('agent'), `${reused}\n`);
    } else {
      agent = daemon(
        agentMain,
        ['--server', result.url, '--data', result.agent_dir, '--driver', driver],
        env,
        paths.log('agent'),
        detach,
      );
      children.push(agent);
      writeFileSync(paths.pid('agent'), `${agent.pid}\n`);
    }
    let hostLine = `${result.host.name} (${result.host.id})`;
    if (token) {
      // A host record can still say "online" from before a crash: wait for a connection made since
      // this control plane started (by the new agent, or by the running one coming back to it).
      const agentStarted = new Date(serverStarted - 1000).toISOString();
      await waitFor(
        async () => {
          const h = await client.hosts.get(result.host.id);
          return h.status.state === 'online' && h.status.connected_at !== null && h.status.connected_at >= agentStarted;
        },
        agent ?? server,
        agent ? 'the local agent' : 'the control plane',
        paths.log(agent ? 'agent' : 'floed'),
        60_000,
      );
      const host = await client.hosts.get(result.host.id);
      const f = host.status.facts;
      if (f)
        hostLine += `: online, ${f.cpus} CPUs, ${Math.round(f.memory_mib / 1024)} GiB, accelerator ${f.accelerator} (${f.kvm.detail})`;
    } else {
      await sleep(1500);
      if (agent !== null && agent.exitCode !== null)
        throw new CliError(
          `the local agent exited; see ${paths.log('agent')}:\n${tail(paths.log('agent'))}`,
          'start_failed',
        );
    }
    const c = rt.colors;
    rt.out.write(
      [
        `${c.green('floe is up')}`,
        `  API       ${result.url}   (OpenAPI: ${result.url}/v1/openapi.json, docs: ${result.url}/docs)`,
        `  database  ${result.database}${result.database === 'sqlite' ? ` (${path.join(dataDir, 'floe.db')})` : ''}`,
        `  host      ${hostLine}`,
        driver === 'fake'
          ? `  ${c.yellow('VMs are simulated')}: the local agent runs the fake VM driver; it creates, starts and stops VMs but boots nothing.`
          : `  VMs       real, with QEMU (${hasQemu})`,
        token
          ? `  CLI       context "${flags.context}" is set up: try  floe vm ls  (or ./floe vm ls in this checkout)`
          : `  CLI       floe login ${result.url} --ca ${result.ca_file} --token <the admin token printed on the first start>`,
        `  curl      curl --cacert ${result.ca_file} -H "Authorization: Bearer $TOKEN" ${result.url}/v1/instances`,
        `  logs      ${paths.log('floed')}, ${paths.log('agent')}`,
        detach
          ? `running in the background; stop with: floe down --data ${dataDir} (VMs keep running)`
          : 'Press Ctrl-C to stop floe (VMs keep running).',
        '',
      ].join('\n'),
    );
  } catch (err) {
    await stopAll();
    throw err;
  } finally {
    await client.close();
  }
  if (detach) return;

  await new Promise<void>((resolve, reject) => {
    let stopping = false;
    const stop = () => {
      if (stopping) return;
      stopping = true;
      rt.warn('stopping floe (VMs keep running)');
      void stopAll().then(resolve);
    };
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
    for (const child of children) {
      child.once('exit', (code, signal) => {
        if (stopping) return;
        stopping = true;
        const name = child === server ? 'floed' : 'agent';
        void stopAll().then(() =>
          reject(
            new CliError(
              `${name} exited (${code ?? signal}); last lines of ${paths.log(name)}:\n${tail(paths.log(name))}`,
              'exited',
            ),
          ),
        );
      });
    }
  });
}

async function down(rt: CliRuntime, flags: { data?: string }): Promise<void> {
  const dataDir = path.resolve(flags.data ?? rt.env.FLOE_DATA ?? 'data');
  const paths = runPaths(dataDir);
  let stopped = 0;
  for (const name of ['agent', 'floed']) {
    const pid = livePid(paths.pid(name));
    if (pid !== null) {
      process.kill(pid, 'SIGTERM');
      for (let i = 0; i < 50 && livePid(paths.pid(name)) !== null; i++) await sleep(100);
      stopped++;
    }
    rmSync(paths.pid(name), { force: true });
  }
  rt.warn(stopped > 0 ? 'floe stopped (VMs keep running)' : `floe is not running from ${dataDir}`);
}

/** `floe up` and `floe down`: run floe on this machine. */
export function registerUp(program: Command): void {
  examples(
    program
      .command('up')
      .description(
        'start floe on this machine: the control plane and a local agent (the first run creates the data directory, the CA and an admin token)',
      )
      .option('--data <dir>', 'data directory (default: $FLOE_DATA or ./data)')
      .option('--listen <host:port>', 'address of the API (default: $FLOE_LISTEN or 127.0.0.1:7443)')
      .option(
        '--driver <name>',
        'VM driver of the local agent: qemu, fake (simulated VMs), or auto (qemu when installed)',
        'auto',
      )
      .option('--context <name>', 'CLI context to save the admin token in on first start', 'local')
      .option('-d, --detach', 'start in the background and return once everything is ready')
      .action(async (flags: UpFlags, cmd: Command) => up(runtimeOf(cmd), flags)),
    ['floe up', 'floe up --detach --data /var/lib/floe', 'FLOE_DATABASE_URL=postgres://floe@db/floe floe up'],
  );
  program
    .command('down')
    .description('stop a floe started with `floe up --detach` (VMs keep running)')
    .option('--data <dir>', 'data directory (default: $FLOE_DATA or ./data)')
    .action(async (flags: { data?: string }, cmd: Command) => down(runtimeOf(cmd), flags));
}
