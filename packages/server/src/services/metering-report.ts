import { FloeError, type MeterDimension, type MeteringQuery, type MeteringReport, type MeteringRow } from '@floe/api';
import { nowIso } from '../db/index.js';
import type { Principal, ServiceContext } from './context.js';
import type { ProjectService } from './projects.js';

/** A range as the report reads it. */
export interface RangeRow {
  resource_kind: string;
  resource_id: string;
  dimension: string;
  quantity: number;
  started_at: string;
  ended_at: string | null;
}

type Group = 'dimension' | 'resource' | 'day';
const DAY_MS = 86_400_000;

/** The groups of a `group_by` parameter (dimension is always one). */
export function groupsOf(groupBy: string | undefined): Group[] {
  const asked = new Set((groupBy ?? 'dimension').split(',') as Group[]);
  return (['dimension', 'resource', 'day'] as const).filter((g) => g === 'dimension' || asked.has(g));
}

/**
 * Sum quantity × seconds per group, clipping every range to [from, to) (pure). An open range counts
 * until `now` (never into the future). Rows sort by day, dimension, resource.
 */
export function sumRanges(
  ranges: readonly RangeRow[],
  from: number,
  to: number,
  now: number,
  groups: Group[],
): MeteringRow[] {
  const byResource = groups.includes('resource');
  const byDay = groups.includes('day');
  const sums = new Map<string, MeteringRow>();
  const add = (r: RangeRow, start: number, end: number) => {
    if (end <= start) return;
    const day = byDay ? new Date(start).toISOString().slice(0, 10) : null;
    const key = [day ?? '', r.dimension, byResource ? `${r.resource_kind}/${r.resource_id}` : ''].join('\u0000');
    const row = sums.get(key) ?? {
      dimension: r.dimension as MeterDimension,
      resource_kind: byResource ? r.resource_kind : null,
      resource_id: byResource ? r.resource_id : null,
      day,
      quantity_seconds: 0,
    };
    row.quantity_seconds += (r.quantity * (end - start)) / 1000;
    sums.set(key, row);
  };
  for (const r of ranges) {
    const start = Math.max(Date.parse(r.started_at), from);
    const end = Math.min(r.ended_at === null ? now : Date.parse(r.ended_at), to);
    if (!byDay) add(r, start, end);
    else
      for (let s = start; s < end; s = Math.floor(s / DAY_MS) * DAY_MS + DAY_MS)
        add(r, s, Math.min(end, Math.floor(s / DAY_MS) * DAY_MS + DAY_MS));
  }
  return [...sums.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([, row]) => row);
}

/** Reads what a project's resources held over a window. */
export class MeteringService {
  constructor(
    private readonly ctx: ServiceContext,
    private readonly projects: ProjectService,
  ) {}

  async report(principal: Principal, projectRef: string, query: MeteringQuery): Promise<MeteringReport> {
    const project = await this.projects.get(principal, projectRef);
    const from = Date.parse(query.from);
    const to = Date.parse(query.to);
    if (!(from < to)) throw new FloeError('validation_failed', '`from` must be before `to`', { field: 'to' });
    const fromIso = new Date(from).toISOString();
    const toIso = new Date(to).toISOString();
    const ranges = await this.ctx.store.db
      .selectFrom('meter_ranges')
      .select(['resource_kind', 'resource_id', 'dimension', 'quantity', 'started_at', 'ended_at'])
      .where('project', '=', project.name)
      .where('started_at', '<', toIso)
      .where((eb) => eb.or([eb('ended_at', 'is', null), eb('ended_at', '>', fromIso)]))
      .execute();
    const groups = groupsOf(query.group_by);
    const items = sumRanges(
      ranges.map((r) => ({ ...r, quantity: Number(r.quantity) })),
      from,
      to,
      Date.parse(nowIso()),
      groups,
    );
    return { project: project.name, from: fromIso, to: toIso, group_by: groups, items };
  }
}
