/**
 * A query string value: arrays become repeated keys (`label=a&label=b`); undefined and null are left out.
 *
 * @example
 * const v: QueryValue = ['env=prod', 'tier'];
 */
export type QueryValue = string | number | boolean | readonly (string | number | boolean)[] | undefined | null;

/**
 * Query parameters of one request.
 *
 * @example
 * const q: Query = { project: 'shop', label: ['env=prod'], limit: 50 };
 */
export type Query = Record<string, QueryValue>;

/**
 * Builds `?a=1&label=x&label=y` from a query object ('' when nothing is set).
 *
 * @example
 * buildQuery({ label: ['env=prod', 'tier'], limit: 10, cursor: undefined }) // '?label=env%3Dprod&label=tier&limit=10'
 */
export function buildQuery(query: Query | undefined): string {
  if (query === undefined) return '';
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(query)) {
    if (value === undefined || value === null) continue;
    if (Array.isArray(value)) for (const v of value as readonly unknown[]) params.append(key, String(v));
    else params.append(key, String(value));
  }
  const s = params.toString();
  return s === '' ? '' : `?${s}`;
}

/**
 * Joins the API base URL (which may carry a path prefix) with a request path and query.
 *
 * @example
 * joinUrl('https://floe.example:8443/', '/v1/instances', { project: 'web' }) // 'https://floe.example:8443/v1/instances?project=web'
 */
export function joinUrl(base: string, path: string, query?: Query): string {
  const u = new URL(base);
  if (u.protocol !== 'http:' && u.protocol !== 'https:')
    throw new TypeError(`floe URL must be http or https, got ${u.protocol}`);
  const prefix = u.pathname.replace(/\/+$/, '');
  return `${u.origin}${prefix}${path.startsWith('/') ? path : `/${path}`}${buildQuery(query)}`;
}

/**
 * Encodes an id or name for use as one path segment.
 *
 * @example
 * `/v1/instances/${segment('web-1')}`
 */
export function segment(idOrName: string): string {
  if (idOrName === '' || idOrName === '.' || idOrName === '..')
    throw new TypeError(`invalid id or name: ${JSON.stringify(idOrName)}`);
  return encodeURIComponent(idOrName);
}
