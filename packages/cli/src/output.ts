import Table from 'cli-table3';
import pc from 'picocolors';
import { formatBytes } from '@floe/api';

/** Output formats of `--output`. */
export const OUTPUT_FORMATS = ['table', 'json'] as const;
/** One of {@link OUTPUT_FORMATS}. */
export type OutputFormat = (typeof OUTPUT_FORMATS)[number];

/** Color helpers; all identity functions when color is off. */
export type Colors = ReturnType<typeof pc.createColors>;

/** Colors for a stream: on for a TTY unless NO_COLOR is set, or forced with FORCE_COLOR. */
export function colorsFor(isTTY: boolean, env: Record<string, string | undefined>): Colors {
  const forced = env.FORCE_COLOR !== undefined && env.FORCE_COLOR !== '0';
  const enabled = forced || (isTTY && env.NO_COLOR === undefined && env.TERM !== 'dumb');
  return pc.createColors(enabled);
}

/** A value shown in a table cell. */
export type Cell = string | number | boolean | null | undefined;

/** Renders a borderless, left-aligned table (kubectl style) ending with a newline. */
export function renderTable(head: readonly string[], rows: readonly (readonly Cell[])[]): string {
  const t = new Table({
    head: [...head],
    chars: {
      top: '',
      'top-mid': '',
      'top-left': '',
      'top-right': '',
      bottom: '',
      'bottom-mid': '',
      'bottom-left': '',
      'bottom-right': '',
      left: '',
      'left-mid': '',
      mid: '',
      'mid-mid': '',
      right: '',
      'right-mid': '',
      middle: '',
    },
    style: { head: [], border: [], 'padding-left': 0, 'padding-right': 3, compact: true },
  });
  for (const row of rows) t.push(row.map((c) => (c === null || c === undefined || c === '' ? '-' : String(c))));
  // cli-table3 pads the last column too; trim so lines do not end in spaces.
  return `${t
    .toString()
    .split('\n')
    .map((l) => l.trimEnd())
    .join('\n')}\n`;
}

/** Renders `key: value` lines from nested data (`spec.vcpus: 2`), for `show`. */
export function renderDetails(value: unknown): string {
  const lines: [string, string][] = [];
  flatten(value, '', lines);
  const width = Math.max(0, ...lines.map(([k]) => k.length));
  return lines.map(([k, v]) => `${`${k}:`.padEnd(width + 2)}${v}`).join('\n') + '\n';
}

function flatten(value: unknown, prefix: string, out: [string, string][]): void {
  if (value !== null && typeof value === 'object' && !Array.isArray(value)) {
    const entries = Object.entries(value as Record<string, unknown>);
    if (entries.length === 0 && prefix !== '') out.push([prefix, '{}']);
    for (const [k, v] of entries) flatten(v, prefix === '' ? k : `${prefix}.${k}`, out);
    return;
  }
  if (Array.isArray(value)) {
    const simple = value.every((v) => v === null || typeof v !== 'object');
    if (simple)
      out.push([
        prefix,
        value.length === 0
          ? '[]'
          : (value as (string | number | boolean | null)[]).map((v) => oneLine(String(v))).join(', '),
      ]);
    else value.forEach((v, i) => flatten(v, `${prefix}[${i}]`, out));
    return;
  }
  out.push([
    prefix,
    value === null || value === undefined ? '-' : oneLine(typeof value === 'string' ? value : JSON.stringify(value)),
  ]);
}

/** Shortens multi-line text (user-data, keys) to one line for tables and details. */
export function oneLine(s: string, max = 100): string {
  const flat = s.replace(/\s*\n\s*/g, ' ⏎ ');
  return flat.length > max ? `${flat.slice(0, max - 1)}…` : flat;
}

/** Pretty JSON with a trailing newline. */
export function renderJson(value: unknown): string {
  return `${JSON.stringify(value, null, 2)}\n`;
}

/** Compact age of a timestamp: `42s`, `5m`, `3h`, `12d`, `2y`; `-` when unknown. */
export function age(iso: string | null | undefined, now: number): string {
  if (iso === null || iso === undefined) return '-';
  const t = Date.parse(iso);
  if (Number.isNaN(t)) return '-';
  const s = Math.max(0, Math.floor((now - t) / 1000));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m`;
  if (s < 86400) return `${Math.floor(s / 3600)}h`;
  if (s < 365 * 86400) return `${Math.floor(s / 86400)}d`;
  return `${Math.floor(s / (365 * 86400))}y`;
}

/** `age(...) ago`, or `never`. */
export function ago(iso: string | null | undefined, now: number): string {
  return iso === null || iso === undefined ? 'never' : `${age(iso, now)} ago`;
}

/** Memory in MiB as `512 MiB`, `2 GiB` or `1.5 GiB`. */
export function mib(n: number | null | undefined): string {
  if (n === null || n === undefined) return '-';
  if (n < 1024) return `${n} MiB`;
  const gib = n / 1024;
  return `${Number.isInteger(gib) ? gib : gib.toFixed(1)} GiB`;
}

/** Bytes as `12.3 MiB` etc.; `-` when unknown. */
export function bytes(n: number | null | undefined): string {
  return n === null || n === undefined ? '-' : formatBytes(n);
}

/** `k=v,k2=v2` for a label map. */
export function labelList(labels: Record<string, string> | undefined): string {
  const entries = Object.entries(labels ?? {});
  return entries.length === 0 ? '-' : entries.map(([k, v]) => (v === '' ? k : `${k}=${v}`)).join(',');
}

/** Colors a state word: green when healthy, yellow while changing, red when broken. */
export function stateColor(c: Colors, state: string): string {
  switch (state) {
    case 'running':
    case 'online':
    case 'ready':
    case 'succeeded':
      return c.green(state);
    case 'error':
    case 'failed':
    case 'offline':
      return c.red(state);
    case 'stopped':
    case 'cancelled':
      return c.dim(state);
    default:
      return c.yellow(state);
  }
}
