import { Option, type Command } from 'commander';
import type { Image } from '@floe/api';
import { age, bytes, renderDetails, renderTable, stateColor, type Colors } from '../output.js';
import { checkName, intArg } from '../parse.js';
import { runtimeOf } from '../runtime.js';
import { registerImageImport } from './image-import.js';
import { examples, fetchPage, listOptions, type ListFlags } from './shared.js';

/** Table rows of images. */
function imageTable(items: Image[], now: number, c: Colors): string {
  return renderTable(
    ['NAME', 'STATE', 'FORMAT', 'OS', 'MIN DISK', 'PUBLIC', 'SIZE', 'AGE'],
    items.map((i) => [
      i.name,
      stateColor(c, i.status.state),
      i.spec.format,
      i.spec.os,
      `${i.spec.min_disk_gib} GiB`,
      i.spec.public ? 'yes' : 'no',
      bytes(i.status.size_bytes),
      age(i.created_at, now),
    ]),
  );
}

/** `floe image ls|show|create|import|rm`. */
export function registerImage(program: Command): void {
  const image = program.command('image').description('manage disk images instances boot from');

  listOptions(image.command('ls').description('list images')).action(async (opts: ListFlags, cmd: Command) => {
    const rt = runtimeOf(cmd);
    const page = await fetchPage(rt, rt.client(cmd).images, { project: rt.project(cmd) }, opts);
    rt.print(cmd, page, () => imageTable(page.items, rt.now(), rt.colors));
  });

  image
    .command('show')
    .description('show one image')
    .argument('<id>', 'image id or name')
    .action(async (id: string, _opts: unknown, cmd: Command) => {
      const rt = runtimeOf(cmd);
      const i = await rt.client(cmd).images.get(id, { project: rt.project(cmd) });
      rt.print(cmd, i, () => renderDetails(i));
    });

  const create = image
    .command('create')
    .description('register an image record without a file (pending until "floe image import --name" fills it)')
    .argument('<name>', 'image name')
    .addOption(new Option('--format <format>', 'disk format').choices(['qcow2', 'raw']))
    .option('--os <os>', 'operating system, e.g. debian-12')
    .addOption(new Option('--min-disk-gib <n>', 'smallest disk the image fits on').argParser(intArg(1, 65536)))
    .option('--public', 'visible to every project')
    .action(
      async (
        name: string,
        opts: { format?: 'qcow2' | 'raw'; os?: string; minDiskGib?: number; public?: boolean },
        cmd: Command,
      ) => {
        const rt = runtimeOf(cmd);
        checkName(name, 'image name');
        const project = rt.project(cmd);
        const i = await rt.client(cmd).images.create({
          name,
          ...(project === undefined ? {} : { project }),
          ...(opts.format === undefined ? {} : { format: opts.format }),
          ...(opts.os === undefined ? {} : { os: opts.os }),
          ...(opts.minDiskGib === undefined ? {} : { min_disk_gib: opts.minDiskGib }),
          ...(opts.public === true ? { public: true } : {}),
        });
        rt.print(cmd, i, () => `image ${i.name} created (${i.id}, ${i.status.state})\n`);
      },
    );
  examples(create, ['floe image create debian-12 --format qcow2 --os debian-12 --min-disk-gib 2 --public']);
  registerImageImport(image);

  image
    .command('rm')
    .description('delete an image')
    .argument('<id>', 'image id or name')
    .action(async (id: string, _opts: unknown, cmd: Command) => {
      const rt = runtimeOf(cmd);
      await rt.client(cmd).images.delete(id, { project: rt.project(cmd) });
      rt.print(cmd, { deleted: id }, () => `image ${id} deleted\n`);
    });
}
