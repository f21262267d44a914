import { Option, type Command } from 'commander';
import type { MachineType } from '@floe/api';
import { mib, renderDetails, renderTable } from '../output.js';
import { checkName, intArg } from '../parse.js';
import { runtimeOf } from '../runtime.js';
import { examples, fetchPage, listOptions, type ListFlags } from './shared.js';

/** Table rows of machine types. */
function typeTable(items: MachineType[]): string {
  return renderTable(
    ['NAME', 'VCPUS', 'MEMORY', 'DISK', 'BUILTIN'],
    items.map((t) => [
      t.name,
      t.spec.vcpus,
      mib(t.spec.memory_mib),
      `${t.spec.disk_gib} GiB`,
      t.builtin ? 'yes' : 'no',
    ]),
  );
}

/** `floe type ls|show|create|rm`: machine types (sizes). */
export function registerType(program: Command): void {
  const type = program.command('type').description('manage machine types: named sizes of vCPUs, memory and disk');

  listOptions(type.command('ls').description('list machine types')).action(async (opts: ListFlags, cmd: Command) => {
    const rt = runtimeOf(cmd);
    const page = await fetchPage(rt, rt.client(cmd).machineTypes, {}, opts);
    rt.print(cmd, page, () => typeTable(page.items));
  });

  type
    .command('show')
    .description('show one machine type')
    .argument('<id>', 'machine type id or name')
    .action(async (id: string, _opts: unknown, cmd: Command) => {
      const rt = runtimeOf(cmd);
      const t = await rt.client(cmd).machineTypes.get(id);
      rt.print(cmd, t, () => renderDetails(t));
    });

  const create = type
    .command('create')
    .description('create a machine type (admin)')
    .argument('<name>', 'machine type name')
    .addOption(new Option('--vcpus <n>', 'virtual CPUs').argParser(intArg(1, 256)).makeOptionMandatory())
    .addOption(
      new Option('--memory-mib <n>', 'memory in MiB').argParser(intArg(128, 4 * 1024 * 1024)).makeOptionMandatory(),
    )
    .addOption(new Option('--disk-gib <n>', 'default disk size in GiB').argParser(intArg(1, 65536)))
    .action(async (name: string, opts: { vcpus: number; memoryMib: number; diskGib?: number }, cmd: Command) => {
      const rt = runtimeOf(cmd);
      checkName(name, 'machine type name');
      const t = await rt.client(cmd).machineTypes.create({
        name,
        vcpus: opts.vcpus,
        memory_mib: opts.memoryMib,
        ...(opts.diskGib === undefined ? {} : { disk_gib: opts.diskGib }),
      });
      rt.print(
        cmd,
        t,
        () =>
          `machine type ${t.name} created (${t.spec.vcpus} vCPU, ${mib(t.spec.memory_mib)}, ${t.spec.disk_gib} GiB)\n`,
      );
    });
  examples(create, [
    'floe type create db-16g --vcpus 4 --memory-mib 16384 --disk-gib 100',
    'floe vm create db --image debian-12 --type db-16g',
  ]);

  type
    .command('rm')
    .description('delete a machine type (admin)')
    .argument('<id>', 'machine type id or name')
    .action(async (id: string, _opts: unknown, cmd: Command) => {
      const rt = runtimeOf(cmd);
      await rt.client(cmd).machineTypes.delete(id);
      rt.print(cmd, { deleted: id }, () => `machine type ${id} deleted\n`);
    });
}
