/** Quota headroom shown by the create wizard before it submits. */

/** One line of `GET /v1/projects/:id/usage`. */
export interface UsageLine {
  dimension: string;
  limit: number | null;
  used_subtree: number;
  available: number | null;
}

/** What the new instance would take of each dimension. */
export interface Request {
  instances: number;
  vcpus: number;
  memory_mib: number;
  disk_gib: number;
  nics: number;
}

/** One dimension of the headroom: what is asked, what is left (null: unlimited), and whether it fits. */
export interface Headroom {
  dimension: string;
  asked: number;
  available: number | null;
  fits: boolean;
}

/**
 * What the request takes of each limited dimension and whether it fits under every limit.
 *
 * @example
 * headroom([{ dimension: 'vcpus', limit: 4, used_subtree: 3, available: 1 }], { instances: 1, vcpus: 2, memory_mib: 512, disk_gib: 1, nics: 1 })
 * // [{ dimension: 'vcpus', asked: 2, available: 1, fits: false }, ...]
 */
export function headroom(lines: readonly UsageLine[], req: Request): Headroom[] {
  const asked: Record<string, number> = { ...req };
  return lines
    .filter((l) => l.dimension in asked)
    .map((l) => {
      const n = asked[l.dimension]!;
      return {
        dimension: l.dimension,
        asked: n,
        available: l.available,
        fits: l.available === null || n <= l.available,
      };
    });
}

/** True when nothing in the headroom blocks the request. */
export function allFit(h: readonly Headroom[]): boolean {
  return h.every((x) => x.fits);
}

/**
 * The change of a project's limits from the editor's fields: a whole number per dimension, or null (no
 * limit of its own) for an empty field. Throws, naming the dimension, on anything else.
 *
 * @example
 * limitsChange({ instances: '5', vcpus: '' }) // { instances: 5, vcpus: null }
 */
export function limitsChange(fields: Readonly<Record<string, string>>): Record<string, number | null> {
  const change: Record<string, number | null> = {};
  for (const [dimension, text] of Object.entries(fields)) {
    const value = text.trim();
    if (value === '') change[dimension] = null;
    else if (/^\d+$/.test(value) && Number.isSafeInteger(Number(value))) change[dimension] = Number(value);
    else throw new Error(`${dimension}: a whole number (0 or more), or empty for no limit`);
  }
  return change;
}
