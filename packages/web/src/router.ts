import { useSyncExternalStore } from 'react';
import { parseRoute, type Route } from './logic/route.js';

/*
 * Client-side routes on the History API: floed answers every page path with index.html, so each page has
 * a real URL that survives a reload.
 */

const listeners = new Set<() => void>();

/** Goes to another page of the app. */
export function navigate(path: string, replace = false): void {
  if (replace) history.replaceState(null, '', path);
  else history.pushState(null, '', path);
  listeners.forEach((l) => l());
  window.scrollTo(0, 0);
}

function subscribe(l: () => void): () => void {
  listeners.add(l);
  window.addEventListener('popstate', l);
  return () => {
    listeners.delete(l);
    window.removeEventListener('popstate', l);
  };
}

/** The current route; components re-render when it changes. */
export function useRoute(): Route {
  const path = useSyncExternalStore(subscribe, () => location.pathname + location.search);
  return parseRoute(path);
}
