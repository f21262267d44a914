import { BrowserClient, FloeApiError } from '@floe/client/browser';
import { useCallback, useEffect, useRef, useState } from 'react';

/** Listeners told when the server says the session ended (a 401). */
const sessionEnded = new Set<() => void>();

/** The one client of the app: the page's origin, the session cookie, the CSRF token. */
export const client = new BrowserClient({ onUnauthenticated: () => sessionEnded.forEach((l) => l()) });

/** Calls `listener` whenever a request answers 401. */
export function onSessionEnded(listener: () => void): () => void {
  sessionEnded.add(listener);
  return () => sessionEnded.delete(listener);
}

/** A message for an error from the API (its code and message) or anything else. */
export function errorText(err: unknown): string {
  if (err instanceof FloeApiError) return `${err.message} (${err.code})`;
  return err instanceof Error ? err.message : String(err);
}

/** The state of a load: its data, its error, whether it runs, and how to run it again. */
export interface Loaded<T> {
  data: T | undefined;
  error: string | undefined;
  loading: boolean;
  reload: () => void;
  set: (data: T) => void;
}

/** Loads data when the component mounts and when `deps` change; the newest answer wins. */
export function useLoad<T>(load: (signal: AbortSignal) => Promise<T>, deps: readonly unknown[]): Loaded<T> {
  const [data, setData] = useState<T | undefined>(undefined);
  const [error, setError] = useState<string | undefined>(undefined);
  const [loading, setLoading] = useState(true);
  const [tick, setTick] = useState(0);
  const loadRef = useRef(load);
  loadRef.current = load;
  useEffect(() => {
    const ac = new AbortController();
    setLoading(true);
    loadRef.current(ac.signal).then(
      (d) => {
        if (ac.signal.aborted) return;
        setData(d);
        setError(undefined);
        setLoading(false);
      },
      (err: unknown) => {
        if (ac.signal.aborted) return;
        setError(errorText(err));
        setLoading(false);
      },
    );
    return () => ac.abort();
  }, [...deps, tick]);
  const reload = useCallback(() => setTick((t) => t + 1), []);
  return { data, error, loading, reload, set: setData };
}

/** Every item of a paged list (the API pages by cursor, at most 1000 a page). */
export async function listAll<T>(
  list: (query: { limit: number; cursor?: string }) => Promise<{ items: T[]; next_cursor: string | null }>,
): Promise<T[]> {
  const out: T[] = [];
  let cursor: string | undefined;
  for (;;) {
    const page = await list({ limit: 1000, ...(cursor === undefined ? {} : { cursor }) });
    out.push(...page.items);
    if (page.next_cursor === null || page.items.length === 0) return out;
    cursor = page.next_cursor;
  }
}
