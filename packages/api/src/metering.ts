import { Type, type Static } from 'typebox';
import { Nullable, Timestamp } from './common.js';

/** What is metered; `allocated` and `running` count 1 while they hold. See docs/metering.md. */
export const MeterDimension = Type.Union([
  Type.Literal('allocated'),
  Type.Literal('running'),
  Type.Literal('vcpus'),
  Type.Literal('memory_mib'),
  Type.Literal('disk_gib'),
  Type.Literal('public_ipv4'),
  Type.Literal('image_bytes'),
]);
export type MeterDimension = Static<typeof MeterDimension>;

/** Query of `GET /v1/projects/{id}/metering`: the window [from, to) and how to group the sums. */
export const MeteringQuery = Type.Object({
  from: Type.String({ format: 'date-time', description: 'start of the window (inclusive)' }),
  to: Type.String({ format: 'date-time', description: 'end of the window (exclusive)' }),
  group_by: Type.Optional(
    Type.String({
      pattern: '^(dimension|resource|day)(,(dimension|resource|day))*$',
      default: 'dimension',
      description:
        'comma-separated: `dimension` (always applied), `resource` (one row per resource), `day` (one row per UTC day)',
    }),
  ),
  format: Type.Optional(
    Type.Union([Type.Literal('json'), Type.Literal('csv')], { description: 'csv: the same rows as text/csv' }),
  ),
});
export type MeteringQuery = Static<typeof MeteringQuery>;

/** One sum: quantity × seconds held inside the window, for one group. */
export const MeteringRow = Type.Object({
  dimension: MeterDimension,
  resource_kind: Nullable(Type.String({ description: 'instance, nic, floating_ip or image (with group_by=resource)' })),
  resource_id: Nullable(Type.String({ description: 'with group_by=resource' })),
  day: Nullable(Type.String({ description: 'the UTC day, YYYY-MM-DD (with group_by=day)' })),
  quantity_seconds: Type.Number({
    description: 'sum of quantity × seconds: vCPU-seconds, MiB-seconds, GiB-seconds, byte-seconds, seconds',
  }),
});
export type MeteringRow = Static<typeof MeteringRow>;

/** Answer of `GET /v1/projects/{id}/metering`. */
export const MeteringReport = Type.Object({
  project: Type.String(),
  from: Timestamp,
  to: Timestamp,
  group_by: Type.Array(Type.String()),
  items: Type.Array(MeteringRow),
});
export type MeteringReport = Static<typeof MeteringReport>;

/** The columns of the CSV export, in order. */
const METERING_CSV_COLUMNS = ['day', 'dimension', 'resource_kind', 'resource_id', 'quantity_seconds'] as const;

/**
 * A report as CSV (the server's `format=csv` and `floe project metering --csv`): a header line, then one line per row (RFC 4180 quoting where needed).
 */
export function meteringCsv(report: MeteringReport): string {
  const cell = (v: string | number | null) => {
    const s = v === null ? '' : String(v);
    return /[",\r\n]/.test(s) ? `"${s.replaceAll('"', '""')}"` : s;
  };
  const lines = [METERING_CSV_COLUMNS.join(',')];
  for (const row of report.items) lines.push(METERING_CSV_COLUMNS.map((c) => cell(row[c])).join(','));
  return `${lines.join('\r\n')}\r\n`;
}
