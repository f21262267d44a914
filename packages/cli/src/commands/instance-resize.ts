import { Option, type Command } from 'commander';
import type { InstanceResize } from '@floe/api';
import { UsageError } from '../errors.js';
import { intArg } from '../parse.js';
import { followOperation } from '../progress.js';
import { runtimeOf } from '../runtime.js';
import { examples } from './shared.js';

/** Options of `instance resize`. */
interface ResizeFlags {
  type?: string;
  vcpus?: number;
  memoryMib?: number;
  diskGib?: number;
  wait?: boolean;
}

/** The resize body from flags; at least one size. */
function resizeBody(flags: ResizeFlags): InstanceResize {
  const body: InstanceResize = {};
  if (flags.type !== undefined) body.machine_type = flags.type;
  if (flags.vcpus !== undefined) body.vcpus = flags.vcpus;
  if (flags.memoryMib !== undefined) body.memory_mib = flags.memoryMib;
  if (flags.diskGib !== undefined) body.disk_gib = flags.diskGib;
  if (Object.keys(body).length === 0) throw new UsageError('give --type, --vcpus, --memory-mib or --disk-gib');
  return body;
}

/** `floe instance resize`: a new size for a stopped instance, booted at its next start. */
export function registerInstanceResize(instance: Command): void {
  const resize = instance
    .command('resize')
    .description(
      'resize a stopped instance: vCPUs and memory up or down, the disk only up; the next start boots with the new size (the guest grows its root partition at boot)',
    )
    .argument('<id>', 'instance id or name')
    .option('--type <type>', "take the machine type's size (flags given with it win)")
    .addOption(new Option('--vcpus <n>', 'virtual CPUs').argParser(intArg(1, 256)))
    .addOption(new Option('--memory-mib <n>', 'memory in MiB').argParser(intArg(128, 4 * 1024 * 1024)))
    .addOption(
      new Option('--disk-gib <n>', 'disk size in GiB; smaller than now is refused (disk_shrink_refused)').argParser(
        intArg(1, 65536),
      ),
    )
    .option('--wait', 'wait until the host has recorded the new size')
    .action(async (id: string, flags: ResizeFlags, cmd: Command) => {
      const rt = runtimeOf(cmd);
      const body = resizeBody(flags);
      const op = await rt.client(cmd).instances.resize(id, body, { project: rt.project(cmd) });
      if (flags.wait === true) {
        await followOperation(rt, cmd, op);
        rt.say(cmd, `instance ${id} resized; start it to boot with the new size`);
        return;
      }
      rt.print(
        cmd,
        op,
        () =>
          `resize of ${id} requested: operation ${op.id} ${op.status} (follow it with "floe operation wait ${op.id}"); start it to boot with the new size\n`,
      );
    });
  examples(resize, [
    'floe instance resize web --vcpus 4 --memory-mib 8192 --wait',
    'floe instance resize db --disk-gib 100 --wait',
    'floe instance resize web --type large',
  ]);
}
