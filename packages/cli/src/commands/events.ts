import { Option, type Command } from 'commander';
import { EVENT_TYPES, type Event } from '@floe/api';
import { oneLine } from '../output.js';
import { collect, intArg } from '../parse.js';
import { runtimeOf } from '../runtime.js';
import { examples } from './shared.js';

/** Fields worth showing in an event's one-line summary, in order. */
const SUMMARY_KEYS = ['state', 'status', 'progress', 'message', 'reason', 'line'];

/** One table line per event: `time type kind name/id summary by=actor` (no `by=` when nobody asked). */
function eventLine(ev: Event): string {
  const data = ev.data;
  const name = typeof data.name === 'string' ? `${data.name}/${ev.resource_id}` : ev.resource_id;
  const parts = SUMMARY_KEYS.filter((k) => data[k] !== undefined && data[k] !== null && data[k] !== '').map((k) =>
    k === 'progress'
      ? `${String(data[k])}%`
      : k === 'message' || k === 'line'
        ? String(data[k])
        : `${k}=${String(data[k])}`,
  );
  const summary =
    parts.length > 0
      ? parts.join(' ')
      : Object.keys(data).filter((k) => k !== 'name').length > 0
        ? JSON.stringify(data)
        : '';
  // A server from before events named their actor sends none.
  const by = typeof ev.actor === 'string' ? `by=${ev.actor}` : '';
  return [ev.time, ev.type, ev.kind, name, oneLine(summary, 120), by].filter((s) => s !== '').join(' ');
}

/** `floe events`: follows the event stream until Ctrl-C. */
export function registerEvents(program: Command): void {
  const events = program
    .command('events')
    .description('follow lifecycle, operation and log events as they happen (Ctrl-C to stop)')
    .option('--kind <kind>', 'only events about this resource kind, e.g. instance (repeatable)', collect)
    .option('--type <type>', `only events of this type (repeatable): ${EVENT_TYPES.join(', ')}`, collect)
    .option('--resource <id>', 'only events about this resource id')
    .addOption(
      new Option('--since <seq>', 'replay events after this sequence number first').argParser(
        intArg(0, Number.MAX_SAFE_INTEGER),
      ),
    )
    .action(async (opts: { kind?: string[]; type?: string[]; resource?: string; since?: number }, cmd: Command) => {
      const rt = runtimeOf(cmd);
      const json = rt.globals(cmd).output === 'json';
      const project = rt.project(cmd);
      const ac = new AbortController();
      const stop = (): void => ac.abort();
      rt.signal?.addEventListener('abort', stop, { once: true });
      if (rt.signal === undefined) process.once('SIGINT', stop);
      try {
        const stream = rt.client(cmd).events.stream(
          {
            ...(project === undefined ? {} : { project }),
            ...(opts.kind === undefined ? {} : { kind: opts.kind }),
            ...(opts.type === undefined ? {} : { type: opts.type }),
            ...(opts.resource === undefined ? {} : { resource: opts.resource }),
            ...(opts.since === undefined ? {} : { since: opts.since }),
          },
          { signal: ac.signal },
        );
        for await (const ev of stream) rt.out.write(json ? `${JSON.stringify(ev)}\n` : `${eventLine(ev)}\n`);
      } finally {
        rt.signal?.removeEventListener('abort', stop);
        process.removeListener('SIGINT', stop);
      }
    });
  examples(events, ['floe events --kind instance', 'floe events -o json --since 120 | jq .type']);
}
