import type { Command } from 'commander';
import {
  QUOTA_DIMENSIONS,
  type HistoryEntry,
  type ProjectUsage,
  type QuotaDimension,
  type QuotaLimitsChange,
} from '@floe/api';
import { UsageError } from '../errors.js';
import { age, renderTable } from '../output.js';
import { runtimeOf } from '../runtime.js';

/** `--vcpus` for vcpus, `--memory-mib` for memory_mib. */
const flagOf = (d: QuotaDimension) => `--${d.replace(/_/g, '-')}`;
const optionKey = (d: QuotaDimension) => d.replace(/_([a-z0-9])/g, (_m, c: string) => c.toUpperCase());

/** A bar of `width` cells filled as `used` is of `limit`. */
function bar(used: number, limit: number | null, width = 20): string {
  if (limit === null) return '';
  const filled = limit === 0 ? width : Math.min(width, Math.round((used / limit) * width));
  return `[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${limit === 0 ? 100 : Math.round((used / limit) * 100)}%`;
}

/** What a history entry changed of the limits: `vcpus 4->8, instances -->2` (empty when it changed none). */
function limitsChangeText(h: HistoryEntry): string {
  const of = (side: Record<string, unknown> | null) => (side?.limits ?? {}) as Record<string, number | undefined>;
  const before = of(h.before);
  const after = of(h.after);
  return QUOTA_DIMENSIONS.filter((d) => before[d] !== after[d])
    .map((d) => `${d} ${before[d] ?? '-'}->${after[d] ?? '-'}`)
    .join(', ');
}

/** The usage table: one row per dimension, the subtree's use against the project's own limit. */
function usageTable(u: ProjectUsage): string {
  const head = `project ${u.project}${u.parent === null ? '' : ` (in ${u.parent})`}${
    u.subprojects.length === 0 ? '' : `, sub-projects: ${u.subprojects.join(', ')}`
  }\n`;
  return (
    head +
    renderTable(
      ['DIMENSION', 'USED', 'SUBTREE', 'LIMIT', 'DELEGATED', 'AVAILABLE', 'USE'],
      u.dimensions.map((l) => [
        l.dimension,
        String(l.used),
        String(l.used_subtree),
        l.limit === null ? '-' : String(l.limit),
        String(l.delegated),
        l.available === null ? '-' : String(l.available),
        bar(l.used_subtree, l.limit),
      ]),
    )
  );
}

/** The change the flags ask for: a number sets a limit, `none` removes it. */
function limitsChange(opts: Record<string, string | undefined>): QuotaLimitsChange {
  const change: QuotaLimitsChange = {};
  for (const d of QUOTA_DIMENSIONS) {
    const raw = opts[optionKey(d)];
    if (raw === undefined) continue;
    if (raw === 'none') {
      change[d] = null;
      continue;
    }
    const n = Number(raw);
    if (!/^\d+$/.test(raw) || !Number.isSafeInteger(n))
      throw new UsageError(`${flagOf(d)} must be a whole number or "none", got "${raw}"`);
    change[d] = n;
  }
  if (Object.keys(change).length === 0)
    throw new UsageError(`give at least one limit: ${QUOTA_DIMENSIONS.map(flagOf).join(', ')}`);
  return change;
}

/** `floe project usage` and `floe project limits show|set`. */
export function registerProjectQuota(project: Command): void {
  project
    .command('usage')
    .description('what a project and its sub-projects allocate, against its limits')
    .argument('<id>', 'project id or name')
    .action(async (id: string, _opts: unknown, cmd: Command) => {
      const rt = runtimeOf(cmd);
      const u = await rt.client(cmd).projects.usage(id);
      rt.print(cmd, u, () => usageTable(u));
    });
  project
    .command('history')
    .description("a project's change history: creation, changes and limits (who, when, before and after)")
    .argument('<id>', 'project id or name')
    .action(async (id: string, _opts: unknown, cmd: Command) => {
      const rt = runtimeOf(cmd);
      const page = await rt.client(cmd).projects.history(id);
      rt.print(cmd, page, () =>
        renderTable(
          ['REVISION', 'ACTION', 'ACTOR', 'AGE', 'LIMITS'],
          page.items.map((h) => [h.revision, h.action, h.actor, age(h.time, rt.now()), limitsChangeText(h)]),
        ),
      );
    });
  const limits = project.command('limits').description("a project's limits");
  limits
    .command('show')
    .description("show a project's own limits")
    .argument('<id>', 'project id or name')
    .action(async (id: string, _opts: unknown, cmd: Command) => {
      const rt = runtimeOf(cmd);
      const l = await rt.client(cmd).projects.limits(id);
      rt.print(cmd, l, () =>
        renderTable(
          ['DIMENSION', 'LIMIT'],
          QUOTA_DIMENSIONS.map((d) => [d, l.limits[d] === undefined ? '-' : String(l.limits[d])]),
        ),
      );
    });
  const set = limits
    .command('set')
    .description('set limits (a number) or remove them (none); admins, or owners of the parent project')
    .argument('<id>', 'project id or name');
  for (const d of QUOTA_DIMENSIONS) set.option(`${flagOf(d)} <n>`, `limit of ${d} (or "none")`);
  set.action(async (id: string, opts: Record<string, string | undefined>, cmd: Command) => {
    const rt = runtimeOf(cmd);
    const l = await rt.client(cmd).projects.setLimits(id, limitsChange(opts));
    rt.print(
      cmd,
      l,
      () =>
        `project ${l.project}: ${
          Object.entries(l.limits)
            .map(([k, v]) => `${k}=${v}`)
            .join(' ') || 'no limits'
        }\n`,
    );
  });
}
