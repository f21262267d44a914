import type { Command } from 'commander';
import { meteringCsv, type MeteringReport, type Project } from '@floe/api';
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
  registerMetering(project);
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

/** Units of quantity × seconds, per dimension, as the table shows them (in hours). */
const HOUR_UNITS: Record<string, string> = {
  allocated: 'hours',
  running: 'hours',
  vcpus: 'vCPU-hours',
  memory_mib: 'MiB-hours',
  disk_gib: 'GiB-hours',
  public_ipv4: 'address-hours',
  image_bytes: 'byte-hours',
};

/** Table rows of a metering report (quantity × hours). */
function meteringTable(report: MeteringReport): string {
  const byResource = report.group_by.includes('resource');
  const byDay = report.group_by.includes('day');
  const head = [...(byDay ? ['DAY'] : []), 'DIMENSION', ...(byResource ? ['RESOURCE'] : []), 'USAGE', 'UNIT'];
  const rows = report.items.map((r) => [
    ...(byDay ? [r.day ?? ''] : []),
    r.dimension,
    ...(byResource ? [`${r.resource_kind ?? ''}/${r.resource_id ?? ''}`] : []),
    (r.quantity_seconds / 3600).toFixed(3),
    HOUR_UNITS[r.dimension] ?? '',
  ]);
  return `${report.project}, ${report.from} to ${report.to}\n${renderTable(head, rows)}`;
}

/** `floe project metering`: what a project's resources held over a window. */
function registerMetering(project: Command): void {
  const metering = project
    .command('metering')
    .description('what the project held over a window: quantity × time per dimension (resource, day)')
    .argument('<id>', 'project id or name')
    .option('--from <time>', 'start of the window, ISO 8601 (default: the start of this UTC month)')
    .option('--to <time>', 'end of the window, exclusive (default: now)')
    .option('--group-by <groups>', 'dimension, resource, day (comma-separated)', 'dimension')
    .option('--csv', 'print CSV: day, dimension, resource_kind, resource_id, quantity_seconds')
    .action(async (id: string, opts: { from?: string; to?: string; groupBy: string; csv?: boolean }, cmd: Command) => {
      const rt = runtimeOf(cmd);
      const now = new Date(rt.now());
      const monthStart = new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), 1)).toISOString();
      const report = await rt.client(cmd).projects.metering(id, {
        from: opts.from ?? monthStart,
        to: opts.to ?? now.toISOString(),
        group_by: opts.groupBy,
      });
      if (opts.csv === true) rt.out.write(meteringCsv(report));
      else rt.print(cmd, report, () => meteringTable(report));
    });
  examples(metering, ['floe project metering shop --from 2026-12-01T00:00:00Z --group-by resource,day --csv']);
}
