/** The app's own URLs: a path to a page and its parameters. */

/** A page of the app and what its URL says. */
export type Route =
  | { page: 'instances' }
  | { page: 'create' }
  | { page: 'instance'; id: string; tab: string }
  | { page: 'images' }
  | { page: 'networks' }
  | { page: 'security-groups' }
  | { page: 'floating-ips' }
  | { page: 'vpn' }
  | { page: 'projects' }
  | { page: 'project'; id: string }
  | { page: 'tokens' }
  | { page: 'hosts' }
  | { page: 'users' }
  | { page: 'audit' }
  | { page: 'account' }
  | { page: 'not-found'; path: string };

/** Tabs of the instance page. */
export const INSTANCE_TABS = ['overview', 'console', 'vnc', 'logs', 'graphs', 'nics', 'history', 'operations'] as const;

/**
 * The route of a location path.
 *
 * @example
 * parseRoute('/instances/web/console') // { page: 'instance', id: 'web', tab: 'console' }
 */
export function parseRoute(path: string): Route {
  const parts = path.split('?')[0]!.split('/').filter(Boolean).map(decodeURIComponent);
  const [a, b, c] = parts;
  if (a === undefined || (a === 'instances' && b === undefined)) return { page: 'instances' };
  if (a === 'new' && b === undefined) return { page: 'create' };
  if (a === 'instances' && b !== undefined && parts.length <= 3) {
    const tab = c ?? 'overview';
    if ((INSTANCE_TABS as readonly string[]).includes(tab)) return { page: 'instance', id: b, tab };
  }
  if (a === 'projects' && b !== undefined && parts.length === 2) return { page: 'project', id: b };
  const simple = [
    'images',
    'networks',
    'security-groups',
    'floating-ips',
    'vpn',
    'projects',
    'tokens',
    'hosts',
    'users',
    'audit',
    'account',
  ] as const;
  if (parts.length === 1 && (simple as readonly string[]).includes(a)) return { page: a as (typeof simple)[number] };
  return { page: 'not-found', path };
}

/** The path of a route (the inverse of {@link parseRoute}). */
export function routePath(r: Route): string {
  switch (r.page) {
    case 'instances':
      return '/instances';
    case 'create':
      return '/new';
    case 'instance':
      return `/instances/${encodeURIComponent(r.id)}${r.tab === 'overview' ? '' : `/${r.tab}`}`;
    case 'project':
      return `/projects/${encodeURIComponent(r.id)}`;
    case 'not-found':
      return r.path;
    default:
      return `/${r.page}`;
  }
}
