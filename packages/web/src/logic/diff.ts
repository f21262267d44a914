/** Differences between two revisions of a resource, for the history tab. */

/** One changed leaf: its dotted path, and the value before and after (undefined: absent). */
export interface Change {
  path: string;
  before: unknown;
  after: unknown;
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/**
 * The leaves that differ between `before` and `after`, in path order (arrays compare as wholes).
 *
 * @example
 * diff({ spec: { vcpus: 1 } }, { spec: { vcpus: 2 } }) // [{ path: 'spec.vcpus', before: 1, after: 2 }]
 */
export function diff(before: unknown, after: unknown, prefix = ''): Change[] {
  if (isObject(before) && isObject(after)) {
    const keys = [...new Set([...Object.keys(before), ...Object.keys(after)])].sort();
    return keys.flatMap((k) => diff(before[k], after[k], prefix === '' ? k : `${prefix}.${k}`));
  }
  if (JSON.stringify(before) === JSON.stringify(after)) return [];
  if (isObject(before) && after === undefined) return diff(before, {}, prefix);
  if (before === undefined && isObject(after)) return diff({}, after, prefix);
  return [{ path: prefix, before, after }];
}
