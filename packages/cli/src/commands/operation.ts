import { Option, type Command } from 'commander';
import type { Operation, OperationStatus } from '@floe/api';
import { age, oneLine, renderDetails, renderTable, stateColor, type Colors } from '../output.js';
import { followOperation } from '../progress.js';
import { runtimeOf } from '../runtime.js';
import { examples, fetchPage, listOptions, type ListFlags } from './shared.js';

/** Table rows of operations. */
function operationTable(items: Operation[], now: number, c: Colors): string {
  return renderTable(
    ['ID', 'KIND', 'STATUS', 'PROGRESS', 'RESOURCES', 'MESSAGE', 'AGE'],
    items.map((o) => [
      o.id,
      o.kind,
      stateColor(c, o.status),
      `${o.progress}%`,
      o.resources.map((r) => `${r.kind}/${r.name ?? r.id}`).join(','),
      oneLine(o.error === null ? o.message : `${o.error.code}: ${o.error.message}`, 60),
      age(o.created_at, now),
    ]),
  );
}

const STATUSES: OperationStatus[] = ['pending', 'running', 'succeeded', 'failed', 'cancelled'];

/** `floe operation` (alias `op`): follow and cancel host work. */
export function registerOperation(program: Command): void {
  const operation = program
    .command('operation')
    .alias('op')
    .description('follow and cancel operations (work done on hosts)');
  examples(operation, ['floe op ls --status running', 'floe op wait op_01JB8X0Q3E6M2T9K4V7W5YB1C3']);

  listOptions(operation.command('ls').description('list operations'), { labels: false })
    .addOption(new Option('--status <status>', 'only operations in this status').choices(STATUSES))
    .action(async (opts: ListFlags & { status?: OperationStatus }, cmd: Command) => {
      const rt = runtimeOf(cmd);
      const query = { project: rt.project(cmd), ...(opts.status === undefined ? {} : { status: opts.status }) };
      const page = await fetchPage(rt, rt.client(cmd).operations, query, opts);
      rt.print(cmd, page, () => operationTable(page.items, rt.now(), rt.colors));
    });

  operation
    .command('show')
    .description('show one operation')
    .argument('<id>', 'operation id')
    .action(async (id: string, _opts: unknown, cmd: Command) => {
      const rt = runtimeOf(cmd);
      const op = await rt.client(cmd).operations.get(id);
      rt.print(cmd, op, () => renderDetails(op));
    });

  operation
    .command('wait')
    .description('wait until an operation ends, showing its progress (exit 1 if it failed)')
    .argument('<id>', 'operation id')
    .action(async (id: string, _opts: unknown, cmd: Command) => {
      const rt = runtimeOf(cmd);
      const op = await rt.client(cmd).operations.get(id);
      await followOperation(rt, cmd, op);
    });

  operation
    .command('cancel')
    .description('cancel a pending operation, or a running image import')
    .argument('<id>', 'operation id')
    .action(async (id: string, _opts: unknown, cmd: Command) => {
      const rt = runtimeOf(cmd);
      const op = await rt.client(cmd).operations.cancel(id);
      rt.print(cmd, op, () => `operation ${op.id} ${stateColor(rt.colors, op.status)}\n`);
    });
}
