/** Keeps a list of instances current from the event stream. */

/** The fields of an instance the list shows. */
export interface LiveInstance {
  id: string;
  name: string;
  project: string;
  labels: Record<string, string>;
  status: { state: string; reason?: string | null; host?: string | null };
  spec: { vcpus: number; memory_mib: number; disk_gib: number; power_state?: string };
}

/** The parts of an event the list reads. */
export interface LiveEvent {
  seq: number;
  type: string;
  kind: string;
  resource_id: string;
  project: string | null;
  data: Record<string, unknown>;
}

/** What an event asks of the list. */
export type LiveAction =
  | { kind: 'none' }
  | { kind: 'state'; id: string; state: string; reason: string | null }
  | { kind: 'remove'; id: string }
  | { kind: 'refetch'; id: string };

/**
 * What an instance event means for the list: a new state, a removal, or a row to fetch again (created or
 * changed). Events of other kinds change nothing.
 *
 * @example
 * actionOf({ seq: 9, type: 'instance.state', kind: 'instance', resource_id: 'inst_1', project: 'p', data: { state: 'running' } })
 * // { kind: 'state', id: 'inst_1', state: 'running', reason: null }
 */
export function actionOf(e: LiveEvent): LiveAction {
  if (e.kind !== 'instance') return { kind: 'none' };
  if (e.type === 'resource.deleted') return { kind: 'remove', id: e.resource_id };
  if (e.type === 'instance.state') {
    const state = typeof e.data.state === 'string' ? e.data.state : 'unknown';
    if (state === 'deleted') return { kind: 'remove', id: e.resource_id };
    const reason = typeof e.data.reason === 'string' ? e.data.reason : null;
    return { kind: 'state', id: e.resource_id, state, reason };
  }
  if (e.type === 'resource.created' || e.type === 'resource.updated') return { kind: 'refetch', id: e.resource_id };
  return { kind: 'none' };
}

/** Applies an action to the list (a new array when something changed, else the same one). */
export function applyAction<T extends LiveInstance>(list: readonly T[], a: LiveAction): readonly T[] {
  if (a.kind === 'remove') return list.some((i) => i.id === a.id) ? list.filter((i) => i.id !== a.id) : list;
  if (a.kind === 'state') {
    const at = list.findIndex((i) => i.id === a.id);
    if (at < 0 || list[at]!.status.state === a.state) return list;
    const next = [...list];
    next[at] = { ...list[at]!, status: { ...list[at]!.status, state: a.state, reason: a.reason } };
    return next;
  }
  return list;
}

/** Puts a fetched instance into the list (replacing the row of the same id, or appended in name order). */
export function upsert<T extends LiveInstance>(list: readonly T[], item: T): readonly T[] {
  const at = list.findIndex((i) => i.id === item.id);
  if (at >= 0) {
    const next = [...list];
    next[at] = item;
    return next;
  }
  return [...list, item].sort((a, b) => a.name.localeCompare(b.name));
}

/** The states from which each bulk action makes sense. */
export function canDo(action: 'start' | 'stop' | 'delete', state: string): boolean {
  if (action === 'start') return state === 'stopped' || state === 'error';
  if (action === 'stop') return state === 'running' || state === 'starting';
  return state !== 'deleting';
}
