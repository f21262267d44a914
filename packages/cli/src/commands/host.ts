import { Option, type Command } from 'commander';
import type { Host } from '@floe/api';
import { ago, mib, renderDetails, renderTable, stateColor, type Colors } from '../output.js';
import { intArg } from '../parse.js';
import { runtimeOf } from '../runtime.js';
import { examples, fetchPage, listOptions, type ListFlags } from './shared.js';

/** Table rows of hosts. */
function hostTable(items: Host[], now: number, c: Colors): string {
  return renderTable(
    ['NAME', 'STATE', 'CPUS', 'MEMORY', 'ALLOCATED', 'INSTANCES', 'ACCEL', 'DRIVER', 'LAST SEEN'],
    items.map((h) => {
      const f = h.status.facts;
      const a = h.status.allocated;
      const cap = h.status.capacity;
      return [
        h.name,
        stateColor(c, h.status.state) + (h.spec.schedulable ? '' : ',drained'),
        f?.cpus,
        mib(f?.memory_mib),
        `${a.vcpus}/${cap.vcpus} vCPU, ${mib(a.memory_mib)}/${mib(cap.memory_mib)}`,
        a.instances,
        f?.accelerator,
        f?.vm_driver,
        ago(h.status.last_heartbeat_at, now),
      ];
    }),
  );
}

/** The command an operator runs on a new host to join it. */
function agentJoinLine(url: string, token: string, name: string, caFile: string): string {
  return `floe-agent --server ${url} --join-token ${token} --name ${name} --ca ${caFile}`;
}

/** `floe host ls|show|join-token|drain|undrain|rm` (admin). */
export function registerHost(program: Command): void {
  const host = program.command('host').description('manage hosts, the machines that run instances (admin)');
  examples(host, ['floe host join-token --expires-in-minutes 30 --name node-2', 'floe host drain node-2']);

  listOptions(host.command('ls').description('list hosts')).action(async (opts: ListFlags, cmd: Command) => {
    const rt = runtimeOf(cmd);
    const page = await fetchPage(rt, rt.client(cmd).hosts, {}, opts);
    rt.print(cmd, page, () => hostTable(page.items, rt.now(), rt.colors));
  });

  host
    .command('show')
    .description('show one host with its facts')
    .argument('<id>', 'host id or name')
    .action(async (id: string, _opts: unknown, cmd: Command) => {
      const rt = runtimeOf(cmd);
      const h = await rt.client(cmd).hosts.get(id);
      rt.print(cmd, h, () => renderDetails(h));
    });

  const join = host
    .command('join-token')
    .description('create a one-time token for a new host, and print the command to run there')
    .addOption(
      new Option('--expires-in-minutes <n>', 'how long the token stays valid (default 60)').argParser(
        intArg(1, 60 * 24 * 7),
      ),
    )
    .option('--name <host>', 'name of the new host, filled into the printed command')
    .action(async (opts: { expiresInMinutes?: number; name?: string }, cmd: Command) => {
      const rt = runtimeOf(cmd);
      const ctx = rt.context(cmd);
      const res = await rt
        .client(cmd)
        .hosts.joinToken(opts.expiresInMinutes === undefined ? {} : { expires_in_minutes: opts.expiresInMinutes });
      const line = agentJoinLine(ctx.url, res.token, opts.name ?? '<name>', ctx.caFile ?? '<ca.pem>');
      rt.print(cmd, { ...res, command: line }, () =>
        [
          `join token: ${res.token}`,
          `expires:    ${res.expires_at} (usable once)`,
          '',
          'Run on the new host:',
          `  ${line}`,
          ...(ctx.caFile === undefined
            ? ["(copy floe's CA certificate to the host and pass its path with --ca)"]
            : [`(copy ${ctx.caFile} to the same path on the host)`]),
          '',
        ].join('\n'),
      );
    });
  examples(join, ['floe host join-token --name node-2']);

  for (const [verb, schedulable, what] of [
    ['drain', false, 'stop placing new instances on a host'],
    ['undrain', true, 'let the scheduler place instances on a host again'],
  ] as const) {
    host
      .command(verb)
      .description(what)
      .argument('<id>', 'host id or name')
      .action(async (id: string, _opts: unknown, cmd: Command) => {
        const rt = runtimeOf(cmd);
        const h = await rt.client(cmd).hosts.update(id, { spec: { schedulable } });
        rt.print(
          cmd,
          h,
          () =>
            `host ${h.name} ${schedulable ? 'accepts new instances again' : 'drained: no new instances are placed there'}\n`,
        );
      });
  }

  host
    .command('rm')
    .description('remove a host record')
    .argument('<id>', 'host id or name')
    .action(async (id: string, _opts: unknown, cmd: Command) => {
      const rt = runtimeOf(cmd);
      await rt.client(cmd).hosts.delete(id);
      rt.print(cmd, { deleted: id }, () => `host ${id} removed\n`);
    });
}
