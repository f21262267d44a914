/** Operations of the task panel and the ends of console connections. */

/** The parts of an operation the task panel orders by. */
export interface OpLike {
  id: string;
  created_at: string;
}

/** Keeps the newest operations first, at most `max`, one row per id. */
export function mergeOperation<T extends OpLike>(list: readonly T[], op: T, max = 50): T[] {
  return [op, ...list.filter((o) => o.id !== op.id)]
    .sort((a, b) => b.created_at.localeCompare(a.created_at))
    .slice(0, max);
}

/** Why a console WebSocket closed, from its close code (4000 + HTTP status) and reason (the error code). */
export function closeText(code: number, reason: string): string {
  if (code === 1000 || code === 1005) return 'Console closed.';
  if (code >= 4000 && code < 5000) return `Console refused: ${reason || 'error'} (HTTP ${code - 4000}).`;
  return `Console connection lost (${code}).`;
}
