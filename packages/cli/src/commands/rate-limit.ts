import type { RateLimit } from '@floe/api';
import { UsageError } from '../errors.js';

/** kbit/s per unit of a bandwidth. */
const UNITS: Record<string, number> = { kbit: 1, k: 1, mbit: 1000, m: 1000, gbit: 1_000_000, g: 1_000_000 };

const KEYS: Record<string, keyof RateLimit> = {
  in: 'ingress_kbps',
  ingress: 'ingress_kbps',
  out: 'egress_kbps',
  egress: 'egress_kbps',
  'in-pps': 'ingress_pps',
  'ingress-pps': 'ingress_pps',
  'out-pps': 'egress_pps',
  'egress-pps': 'egress_pps',
};

const HELP = 'e.g. 10mbit (both ways), in=10mbit,out=2mbit,out-pps=5000, or none';

function bandwidth(spec: string, value: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*([a-z]+)$/i.exec(value.trim());
  const unit = m === null ? undefined : UNITS[m[2]!.toLowerCase()];
  if (m === null || unit === undefined)
    throw new UsageError(
      `--rate-limit ${spec}: ${JSON.stringify(value)} is not a bandwidth like 10mbit, 500kbit or 1gbit`,
    );
  const kbps = Math.round(Number(m[1]) * unit);
  if (kbps < 8) throw new UsageError(`--rate-limit ${spec}: the lowest bandwidth is 8kbit`);
  return kbps;
}

/**
 * A `--rate-limit` value: `10mbit` limits both directions, `in=10mbit,out=2mbit,in-pps=1000,out-pps=1000`
 * each on its own (in: to the instance, out: from it); `none` removes them (null).
 */
export function parseRateLimit(spec: string): RateLimit | null {
  if (spec.trim() === 'none') return null;
  const out: RateLimit = {};
  for (const part of spec.split(',').map((p) => p.trim())) {
    if (part === '') continue;
    const eq = part.indexOf('=');
    if (eq === -1) {
      out.ingress_kbps = out.egress_kbps = bandwidth(spec, part);
      continue;
    }
    const key = KEYS[part.slice(0, eq).toLowerCase()];
    const value = part.slice(eq + 1);
    if (key === undefined)
      throw new UsageError(`--rate-limit ${spec}: unknown limit ${JSON.stringify(part.slice(0, eq))} (${HELP})`);
    if (key.endsWith('_pps')) {
      if (!/^\d+$/.test(value) || Number(value) < 1)
        throw new UsageError(`--rate-limit ${spec}: ${part.slice(0, eq)} takes packets per second, a whole number`);
      out[key] = Number(value);
    } else out[key] = bandwidth(spec, value);
  }
  if (Object.keys(out).length === 0) throw new UsageError(`--rate-limit: give a limit (${HELP})`);
  return out;
}

function kbit(kbps: number): string {
  if (kbps % 1_000_000 === 0) return `${kbps / 1_000_000}gbit`;
  if (kbps % 1000 === 0) return `${kbps / 1000}mbit`;
  return `${kbps}kbit`;
}

/** Limits as `parseRateLimit` reads them back (`-` for none). */
export function formatRateLimit(limit: RateLimit | null | undefined): string {
  if (limit == null) return '-';
  const parts: string[] = [];
  if (limit.ingress_kbps !== undefined) parts.push(`in=${kbit(limit.ingress_kbps)}`);
  if (limit.egress_kbps !== undefined) parts.push(`out=${kbit(limit.egress_kbps)}`);
  if (limit.ingress_pps !== undefined) parts.push(`in-pps=${limit.ingress_pps}`);
  if (limit.egress_pps !== undefined) parts.push(`out-pps=${limit.egress_pps}`);
  return parts.length === 0 ? '-' : parts.join(',');
}
