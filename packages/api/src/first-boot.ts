import type { ObservedInstance } from './agent-protocol.js';
import type { FirstBoot } from './resources.js';

/** Nothing known yet of a VM's first boot. */
export const NO_FIRST_BOOT: FirstBoot = Object.freeze({
  source: null,
  fetched_at: null,
  finished_at: null,
  result: null,
  detail: null,
});

function earliest(a: string | null, b: string | null | undefined): string | null {
  if (b === undefined || b === null) return a;
  return a === null || b < a ? b : a;
}

/**
 * Fold a new sighting of first boot into what is known. Whoever reports may
 * have forgotten (an agent after a restart), so nulls never erase what was
 * recorded; the first fetch is the one kept (with its source), and a report
 * of the end, with its result, replaces an earlier one.
 *
 * @example
 * mergeFirstBoot(NO_FIRST_BOOT, { source: 'metadata', fetched_at: '2026-01-01T10:00:00.000Z' })
 */
export function mergeFirstBoot(before: FirstBoot, seen: ObservedInstance['first_boot']): FirstBoot {
  if (seen === undefined) return before;
  const finished = seen.finished_at !== undefined && seen.finished_at !== null;
  return {
    source: before.fetched_at !== null ? before.source : (seen.source ?? before.source),
    fetched_at: earliest(before.fetched_at, seen.fetched_at),
    finished_at: finished ? seen.finished_at! : before.finished_at,
    result: finished ? (seen.result ?? null) : before.result,
    detail: finished ? (seen.detail ?? null) : before.detail,
  };
}
