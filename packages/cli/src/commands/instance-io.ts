import { Option, type Command } from 'commander';
import type { InstanceStats } from '@floe/api';
import type { ConsoleEnd, ConsoleSession } from '@floe/client';
import { bytes, renderTable } from '../output.js';
import { intArg } from '../parse.js';
import { runtimeOf, type CliRuntime, type Writer } from '../runtime.js';
import { UsageError } from '../errors.js';
import { examples } from './shared.js';
import { historyTable, sinceArg } from './instance-stats.js';

/** The detach key of `floe vm console`: Ctrl-] (0x1d), as in telnet and virsh. */
const DETACH_BYTE = 0x1d;

/** Splits typed input at the detach key: the bytes before it, and whether it was pressed. */
export function splitAtDetach(input: Buffer): { send: Buffer; detach: boolean } {
  const at = input.indexOf(DETACH_BYTE);
  return at < 0 ? { send: input, detach: false } : { send: input.subarray(0, at), detach: true };
}

/** CPU time in nanoseconds as `850ms`, `12.34s`, `3m05s` or `2h07m`. */
export function cpuTime(ns: number | null | undefined): string {
  if (ns === null || ns === undefined) return '-';
  const ms = ns / 1e6;
  if (ms < 1000) return `${Math.round(ms)}ms`;
  const s = ms / 1000;
  if (s < 60) return `${s.toFixed(2)}s`;
  const totalS = Math.floor(s);
  if (totalS < 3600) return `${Math.floor(totalS / 60)}m${String(totalS % 60).padStart(2, '0')}s`;
  return `${Math.floor(totalS / 3600)}h${String(Math.floor((totalS % 3600) / 60)).padStart(2, '0')}m`;
}

/** The table of `floe vm stats`: one row of counters. */
export function statsTable(s: InstanceStats): string {
  const memory =
    s.memory_assigned_bytes === null
      ? bytes(s.memory_bytes)
      : `${bytes(s.memory_bytes)} / ${bytes(s.memory_assigned_bytes)}`;
  return renderTable(
    ['CPU TIME', 'MEMORY', 'DISK READ', 'DISK WRITE', 'NET RX', 'NET TX'],
    [
      [
        cpuTime(s.cpu_time_ns),
        memory,
        bytes(s.disk_read_bytes),
        bytes(s.disk_write_bytes),
        bytes(s.net_rx_bytes),
        bytes(s.net_tx_bytes),
      ],
    ],
  );
}

/** Writes raw bytes to a CLI writer (a real stream takes them as they are). */
function writeBytes(out: Writer, data: Buffer): void {
  (out as { write(chunk: string | Uint8Array): unknown }).write(data);
}

/** An AbortSignal that fires on the runtime's signal or, without one, on Ctrl-C. */
function interruptible(rt: CliRuntime): { signal: AbortSignal; dispose: () => void } {
  const ac = new AbortController();
  const stop = (): void => ac.abort();
  if (rt.signal !== undefined) rt.signal.addEventListener('abort', stop, { once: true });
  else process.once('SIGINT', stop);
  return {
    signal: ac.signal,
    dispose: () => {
      rt.signal?.removeEventListener('abort', stop);
      process.removeListener('SIGINT', stop);
    },
  };
}

/** Why an attached console ended. */
type ConsoleOutcome = { kind: 'detached' } | { kind: 'closed'; end: ConsoleEnd };

/**
 * Run an attached console against stdin/stdout until it ends: on a terminal in
 * raw mode with Ctrl-] to detach; otherwise piping stdin and ending after its
 * EOF once the output has been quiet for `lingerMs`.
 */
async function runConsole(
  rt: CliRuntime,
  session: ConsoleSession,
  name: string,
  lingerMs: number,
): Promise<ConsoleOutcome> {
  const stdin = process.stdin;
  const tty = rt.stdinIsTTY && stdin.isTTY === true;
  let lastOutput = Date.now();
  session.onData((d) => {
    lastOutput = Date.now();
    writeBytes(rt.out, d);
  });
  if (tty) rt.warn(`connected to ${name}; detach with Ctrl-]`);
  return new Promise<ConsoleOutcome>((resolve) => {
    let lingerTimer: NodeJS.Timeout | null = null;
    const finish = (outcome: ConsoleOutcome): void => {
      stdin.removeListener('data', onInput);
      stdin.removeListener('end', onEof);
      rt.signal?.removeEventListener('abort', onAbort);
      if (lingerTimer !== null) clearTimeout(lingerTimer);
      if (tty) stdin.setRawMode(false);
      stdin.pause();
      resolve(outcome);
    };
    const onInput = (chunk: Buffer | string): void => {
      const data = typeof chunk === 'string' ? Buffer.from(chunk, 'utf8') : chunk;
      if (!tty) {
        session.write(data);
        return;
      }
      const { send, detach } = splitAtDetach(data);
      if (send.length > 0) session.write(send);
      if (detach) {
        session.close();
        finish({ kind: 'detached' });
      }
    };
    const onEof = (): void => {
      // Piped input ended: show what the guest still answers, then leave.
      const started = Date.now();
      const check = (): void => {
        const quiet = Date.now() - lastOutput;
        if (quiet >= lingerMs || Date.now() - started >= 10 * lingerMs) {
          session.close();
          finish({ kind: 'detached' });
          return;
        }
        lingerTimer = setTimeout(check, lingerMs - quiet);
      };
      check();
    };
    const onAbort = (): void => {
      session.close();
      finish({ kind: 'detached' });
    };
    session.onClose((end) => finish({ kind: 'closed', end }));
    rt.signal?.addEventListener('abort', onAbort, { once: true });
    if (tty) stdin.setRawMode(true);
    stdin.on('data', onInput);
    stdin.on('end', onEof);
    stdin.resume();
  });
}

/** `floe vm console|logs|stats`: attached to the `instance` command. */
export function registerInstanceIo(instance: Command): void {
  const consoleCmd = instance
    .command('console')
    .description('attach to the serial console of a running instance (detach with Ctrl-])')
    .argument('<id>', 'instance id or name')
    .addOption(
      new Option(
        '--linger <ms>',
        'when stdin is not a terminal: after it ends, keep printing until the output was quiet this long',
      )
        .argParser(intArg(0, 600_000))
        .default(300),
    )
    .action(async (id: string, opts: { linger: number }, cmd: Command) => {
      const rt = runtimeOf(cmd);
      const session = await rt.client(cmd).instances.console(id, { project: rt.project(cmd) });
      const outcome = await runConsole(rt, session, id, opts.linger);
      const tty = rt.stdinIsTTY && process.stdin.isTTY === true;
      if (outcome.kind === 'detached') {
        if (tty) rt.warn('\r\ndetached');
        return;
      }
      if (outcome.end.error !== null) throw outcome.end.error;
      if (tty) rt.warn('\r\nconsole closed');
    });
  examples(consoleCmd, ['floe vm console web', "printf 'uname -a\\n' | floe vm console web --linger 1000"]);

  const logs = instance
    .command('logs')
    .description('print the console log of an instance (kept by its host across restarts); --follow keeps streaming')
    .argument('<id>', 'instance id or name')
    .option('-f, --follow', 'keep printing new output until Ctrl-C')
    .addOption(new Option('--tail <bytes>', 'only the last BYTES of the log').argParser(intArg(0, 64 * 1024 * 1024)))
    .action(async (id: string, opts: { follow?: boolean; tail?: number }, cmd: Command) => {
      const rt = runtimeOf(cmd);
      const stop = interruptible(rt);
      try {
        const stream = rt.client(cmd).instances.logs(id, {
          follow: opts.follow === true,
          signal: stop.signal,
          ...(opts.tail === undefined ? {} : { tailBytes: opts.tail }),
          ...(rt.project(cmd) === undefined ? {} : { project: rt.project(cmd)! }),
        });
        for await (const chunk of stream) writeBytes(rt.out, chunk);
      } finally {
        stop.dispose();
      }
    });
  examples(logs, ['floe vm logs web', 'floe vm logs web --tail 4096', 'floe vm logs web --follow']);

  const stats = instance
    .command('stats')
    .description(
      'show CPU time, memory, disk and network counters of a running instance; --history shows the last hour the host kept, as rates with sparklines',
    )
    .argument('<id>', 'instance id or name')
    .option('--history', 'the stats history: CPU %, memory, disk and network rates over the last hour')
    .addOption(
      new Option('--since <when>', 'with --history: only samples after this (15m, 1h, or an RFC 3339 time)').argParser(
        (v) => sinceArg(v),
      ),
    )
    .addOption(new Option('--width <chars>', 'with --history: sparkline width').argParser(intArg(8, 400)).default(40))
    .action(async (id: string, opts: { history?: boolean; since?: string; width: number }, cmd: Command) => {
      const rt = runtimeOf(cmd);
      if (opts.since !== undefined && opts.history !== true)
        throw new UsageError('--since goes with --history (floe vm stats NAME --history --since 15m)');
      if (opts.history === true) {
        const h = await rt.client(cmd).instances.statsHistory(id, {
          project: rt.project(cmd),
          ...(opts.since === undefined ? {} : { since: opts.since }),
        });
        rt.print(cmd, h, () => historyTable(h, opts.width));
        return;
      }
      const s = await rt.client(cmd).instances.stats(id, { project: rt.project(cmd) });
      rt.print(cmd, s, () => statsTable(s));
    });
  examples(stats, [
    'floe vm stats web',
    'floe vm stats web -o json | jq .cpu_time_ns',
    'floe vm stats web --history',
    'floe vm stats web --history --since 15m -o json | jq ".samples[].cpu_percent"',
  ]);
}
