import type { Command } from 'commander';
import cliProgress from 'cli-progress';
import type { Operation } from '@floe/api';
import { CliError } from './errors.js';
import { renderJson, stateColor } from './output.js';
import type { CliRuntime } from './runtime.js';

/** How `--wait` shows an operation's progress. */
export type ProgressMode = 'bar' | 'lines' | 'silent';

/** A bar on a terminal, plain lines otherwise, nothing with `-o json`. */
export function progressMode(rt: CliRuntime, cmd: Command): ProgressMode {
  if (rt.globals(cmd).output === 'json') return 'silent';
  return rt.out.isTTY === true ? 'bar' : 'lines';
}

/** One plain progress line: `instance.start running 40% booting`. */
function progressLine(op: Operation): string {
  return [op.kind, op.status, `${op.progress}%`, op.message].filter((s) => s !== '').join(' ');
}

/**
 * Follows an operation until it ends, showing its progress, and prints the
 * outcome (the final operation with `-o json`). Throws a CliError (exit 1)
 * with the operation's error code when it failed or was cancelled.
 */
export async function followOperation(rt: CliRuntime, cmd: Command, op: Operation): Promise<Operation> {
  const mode = progressMode(rt, cmd);
  const client = rt.client(cmd);
  let bar: cliProgress.SingleBar | undefined;
  let onUpdate: (o: Operation) => void = () => {};
  if (mode === 'bar') {
    bar = new cliProgress.SingleBar(
      {
        stream: rt.out as unknown as NodeJS.WritableStream,
        format: `${op.kind} [{bar}] {percentage}% {status} {message}`,
        hideCursor: true,
        clearOnComplete: true,
      },
      cliProgress.Presets.shades_classic,
    );
    bar.start(100, op.progress, { status: op.status, message: op.message });
    onUpdate = (o) => bar?.update(o.progress, { status: o.status, message: o.message });
  } else if (mode === 'lines') {
    rt.out.write(`${op.id} ${progressLine(op)}\n`);
    onUpdate = (o) => rt.out.write(`${o.id} ${progressLine(o)}\n`);
  }
  let final: Operation;
  try {
    final = await client.operations.wait(op, { onUpdate, pollSeconds: mode === 'silent' ? 30 : 2 });
  } finally {
    bar?.stop();
  }
  if (mode === 'silent') rt.out.write(renderJson(final));
  else if (mode === 'bar')
    rt.out.write(
      `${op.kind} ${stateColor(rt.colors, final.status)}${final.message === '' ? '' : `: ${final.message}`}\n`,
    );
  if (final.status === 'failed') {
    throw new CliError(
      `${final.kind} failed: ${final.error?.message ?? (final.message || 'no reason given')}`,
      final.error?.code ?? 'operation_failed',
    );
  }
  if (final.status === 'cancelled') throw new CliError(`${final.kind} was cancelled`, 'operation_cancelled');
  return final;
}
