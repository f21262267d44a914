import type { Command } from 'commander';
import type { Project } from '@floe/api';
import { age, labelList, renderDetails, renderTable } from '../output.js';
import { checkName, collect, labelPatch, parseLabels } from '../parse.js';
import { runtimeOf } from '../runtime.js';
import { examples, fetchPage, listOptions, type ListFlags } from './shared.js';
import { registerMember } from './user.js';
import { registerProjectQuota } from './project-quota.js';

/** Table rows of projects. */
function projectTable(items: Project[], now: number): string {
  return renderTable(
    ['NAME', 'DESCRIPTION', 'LABELS', 'AGE'],
    items.map((p) => [p.name, p.description, labelList(p.labels), age(p.created_at, now)]),
  );
}

/** `floe project ls|create|show|rm|label`. */
export function registerProject(program: Command): void {
  const project = program.command('project').description('manage projects (tenants that own instances, images, ...)');
  examples(project, [
    'floe project create shop --description "web shop" --label team=web',
    'floe project label shop env=prod old-',
    'floe project create shop-dev --parent shop',
    'floe project limits set shop-dev --vcpus 16 --memory-mib 32768',
    'floe project usage shop',
  ]);
  registerMember(project);
  registerProjectQuota(project);

  listOptions(project.command('ls').description('list projects')).action(async (opts: ListFlags, cmd: Command) => {
    const rt = runtimeOf(cmd);
    const page = await fetchPage(rt, rt.client(cmd).projects, {}, opts);
    rt.print(cmd, page, () => projectTable(page.items, rt.now()));
  });

  project
    .command('create')
    .description('create a project')
    .argument('<name>', 'project name (a DNS label)')
    .option('--description <text>', 'free text')
    .option('--parent <project>', 'make it a sub-project of this project (its owners may)')
    .option('--label <key=value>', 'label (repeatable)', collect)
    .action(async (name: string, opts: { description?: string; parent?: string; label?: string[] }, cmd: Command) => {
      const rt = runtimeOf(cmd);
      checkName(name, 'project name');
      const body = {
        name,
        ...(opts.description === undefined ? {} : { description: opts.description }),
        ...(opts.parent === undefined ? {} : { parent: opts.parent }),
        ...(opts.label === undefined ? {} : { labels: parseLabels(opts.label) }),
      };
      const p = await rt.client(cmd).projects.create(body);
      rt.print(cmd, p, () => `project ${p.name} created (${p.id})\n`);
    });

  project
    .command('show')
    .description('show one project')
    .argument('<id>', 'project id or name')
    .action(async (id: string, _opts: unknown, cmd: Command) => {
      const rt = runtimeOf(cmd);
      const p = await rt.client(cmd).projects.get(id);
      rt.print(cmd, p, () => renderDetails(p));
    });

  project
    .command('rm')
    .description('delete an empty project')
    .argument('<id>', 'project id or name')
    .action(async (id: string, _opts: unknown, cmd: Command) => {
      const rt = runtimeOf(cmd);
      await rt.client(cmd).projects.delete(id);
      rt.print(cmd, { deleted: id }, () => `project ${id} deleted\n`);
    });

  project
    .command('label')
    .description('set (key=value) or remove (key-) labels of a project')
    .argument('<id>', 'project id or name')
    .argument('<changes...>', 'key=value to set, key- to remove')
    .action(async (id: string, changes: string[], _opts: unknown, cmd: Command) => {
      const rt = runtimeOf(cmd);
      const patch = labelPatch(changes);
      const p = await rt.client(cmd).projects.update(id, { labels: patch });
      rt.print(cmd, p, () => `project ${p.name}: ${labelList(p.labels)}\n`);
      const kept = Object.keys(patch).filter(
        (k) => patch[k] === null && Object.prototype.hasOwnProperty.call(p.labels, k),
      );
      if (kept.length > 0) rt.warn(`warning: the server kept label(s) ${kept.join(', ')} instead of removing them`);
    });
}
