import { FloeError, LABEL_KEY_PATTERN, LABEL_VALUE_PATTERN, type Labels } from '@floe/api';
import type { Db } from '../db/index.js';

/** A parsed `?label=` selector: `key=value` or just `key` (present with any value). */
export interface LabelSelector {
  key: string;
  value: string | null;
}

const keyRe = new RegExp(LABEL_KEY_PATTERN);
const valueRe = new RegExp(LABEL_VALUE_PATTERN);

/** Parse `?label=` values; a malformed one is an `invalid_label_selector` error. */
export function parseLabelSelectors(raw: string | string[] | undefined): LabelSelector[] {
  if (raw === undefined) return [];
  const items = Array.isArray(raw) ? raw : [raw];
  return items
    .flatMap((item) => item.split(','))
    .filter((s) => s !== '')
    .map((item) => {
      const eq = item.indexOf('=');
      const key = eq === -1 ? item : item.slice(0, eq);
      const value = eq === -1 ? null : item.slice(eq + 1);
      if (!keyRe.test(key) || (value !== null && !valueRe.test(value))) {
        throw new FloeError('invalid_label_selector', `label selector "${item}" must be key or key=value`, {
          field: 'label',
          value: item,
        });
      }
      return { key, value };
    });
}

/**
 * Replace the label rows of a resource; `created` says the resource was just inserted, so it has none
 * to delete. Keys are checked here because the body schema cannot check map keys.
 */
export async function writeLabels(db: Db, resourceId: string, labels: Labels, created = false): Promise<void> {
  for (const key of Object.keys(labels)) {
    if (!keyRe.test(key))
      throw new FloeError(
        'validation_failed',
        `label key "${key}" must be [prefix/]name of letters, digits, "-", "_" and "."`,
        { field: `labels.${key}` },
      );
  }
  if (!created) await db.deleteFrom('resource_labels').where('resource_id', '=', resourceId).execute();
  const rows = Object.entries(labels).map(([key, value]) => ({ resource_id: resourceId, key, value }));
  if (rows.length > 0) await db.insertInto('resource_labels').values(rows).execute();
}
