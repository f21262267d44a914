/** Label filters of the instance list: `env=prod, tier` (every term must match). */

/** One term of a label filter: a key, optionally with the value it must have. */
export interface LabelTerm {
  key: string;
  value?: string;
}

/**
 * Parses a filter typed by the user; terms are separated by commas or spaces.
 *
 * @example
 * parseLabelFilter('env=prod, tier') // [{ key: 'env', value: 'prod' }, { key: 'tier' }]
 */
export function parseLabelFilter(text: string): LabelTerm[] {
  return text
    .split(/[,\s]+/)
    .map((t) => t.trim())
    .filter((t) => t !== '')
    .map((t) => {
      const eq = t.indexOf('=');
      return eq < 0 ? { key: t } : { key: t.slice(0, eq), value: t.slice(eq + 1) };
    })
    .filter((t) => t.key !== '');
}

/** The `?label=` values of the API for a filter. */
export function labelQuery(terms: readonly LabelTerm[]): string[] {
  return terms.map((t) => (t.value === undefined ? t.key : `${t.key}=${t.value}`));
}

/** True when `labels` satisfy every term. */
export function matchesLabels(labels: Readonly<Record<string, string>>, terms: readonly LabelTerm[]): boolean {
  return terms.every((t) => t.key in labels && (t.value === undefined || labels[t.key] === t.value));
}
