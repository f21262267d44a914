import { createHmac, timingSafeEqual } from 'node:crypto';

/*
 * Browser sessions: the web UI logs in with POST /v1/auth/session and the session token then lives in an
 * HttpOnly, SameSite=Strict cookie that scripts never see. A cookie is sent by the browser on its own, so a
 * request it authenticates must prove it comes from floe's own pages: changes carry `X-CSRF-Token`, a value
 * derived from the session secret (readable by the page from a second cookie, unknowable to other sites),
 * and WebSockets must come from floe's own origin. Bearer tokens are unaffected: nothing sends them by itself.
 */

/** The HttpOnly cookie holding the session token. */
export const SESSION_COOKIE = 'floe_session';
/** The cookie scripts read the CSRF token from. */
const CSRF_COOKIE = 'floe_csrf';
/** The header that must carry the CSRF token on cookie-authenticated changes. */
const CSRF_HEADER = 'x-csrf-token';

/**
 * The cookies of a `Cookie` header, by name (the first of a repeated name wins; malformed pairs are skipped).
 *
 * @example
 * parseCookies('a=1; floe_session=floe_x') // { a: '1', floe_session: 'floe_x' }
 */
export function parseCookies(header: string | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  if (header === undefined) return out;
  for (const part of header.split(';')) {
    const eq = part.indexOf('=');
    if (eq <= 0) continue;
    const name = part.slice(0, eq).trim();
    let value = part.slice(eq + 1).trim();
    if (value.startsWith('"') && value.endsWith('"') && value.length >= 2) value = value.slice(1, -1);
    if (name !== '' && !(name in out)) out[name] = value;
  }
  return out;
}

/**
 * The CSRF token of a session: an HMAC of a fixed label keyed by the session secret.
 *
 * @example
 * csrfTokenFor('floe_abc') === csrfTokenFor('floe_abc') // true, and differs for every other secret
 */
export function csrfTokenFor(sessionSecret: string): string {
  return createHmac('sha256', sessionSecret).update('floe-csrf-v1').digest('base64url');
}

/** The `Set-Cookie` values that start a browser session lasting `maxAgeS` seconds. */
export function sessionCookies(secret: string, maxAgeS: number, secure: boolean): string[] {
  const tail = `Path=/; Max-Age=${Math.max(0, Math.floor(maxAgeS))}; SameSite=Strict${secure ? '; Secure' : ''}`;
  return [`${SESSION_COOKIE}=${secret}; ${tail}; HttpOnly`, `${CSRF_COOKIE}=${csrfTokenFor(secret)}; ${tail}`];
}

/** The `Set-Cookie` values that end a browser session. */
export function clearedCookies(secure: boolean): string[] {
  const tail = `Path=/; Max-Age=0; SameSite=Strict${secure ? '; Secure' : ''}`;
  return [`${SESSION_COOKIE}=; ${tail}; HttpOnly`, `${CSRF_COOKIE}=; ${tail}`];
}

/** Methods that change nothing and so need no CSRF token. */
const SAFE = new Set(['GET', 'HEAD', 'OPTIONS']);

/** What a cookie-authenticated request must show besides the cookie. */
export interface CookieRequest {
  method: string;
  sessionSecret: string;
  /** The `X-CSRF-Token` header (an array when repeated). */
  csrfHeader: string | string[] | undefined;
  /** True for a WebSocket upgrade. */
  websocket: boolean;
  /** The `Origin` header, when sent. */
  origin: string | undefined;
  /** The `Host` header the request came to. */
  host: string | undefined;
}

/**
 * Why a cookie-authenticated request is refused, or null when it may go on: a change without the session's
 * CSRF token, or a WebSocket whose `Origin` is another site (browsers send `Origin` on every WebSocket).
 *
 * @example
 * csrfRefusal({ method: 'POST', sessionSecret: s, csrfHeader: undefined, websocket: false, origin: undefined, host: 'h' }) // 'the X-CSRF-Token header is missing'
 */
export function csrfRefusal(r: CookieRequest): string | null {
  if (r.websocket) {
    if (r.origin === undefined) return null;
    let host: string;
    try {
      host = new URL(r.origin).host;
    } catch {
      return 'the Origin header is not a URL';
    }
    return host === r.host ? null : `a WebSocket from ${r.origin} may not use the session cookie`;
  }
  if (SAFE.has(r.method.toUpperCase())) return null;
  const got = r.csrfHeader;
  if (typeof got !== 'string' || got === '') return `the ${CSRF_HEADER} header is missing`;
  const want = Buffer.from(csrfTokenFor(r.sessionSecret));
  const given = Buffer.from(got);
  return given.length === want.length && timingSafeEqual(given, want) ? null : `the ${CSRF_HEADER} header is wrong`;
}

/** The parts of a request a browser session is read from. */
export interface SessionCarrier {
  method: string;
  headers: Record<string, string | string[] | undefined>;
}

/**
 * The session secret of a request authenticated by its cookie, or undefined when it has none; a
 * `csrf_failed` error when the cookie is there but the request may not use it.
 */
export function sessionFromCookie(request: SessionCarrier, refuse: (why: string) => Error): string | undefined {
  const cookie = request.headers.cookie;
  const secret = parseCookies(typeof cookie === 'string' ? cookie : undefined)[SESSION_COOKIE];
  if (secret === undefined || secret === '') return undefined;
  const one = (v: string | string[] | undefined) => (Array.isArray(v) ? v[0] : v);
  const why = csrfRefusal({
    method: request.method,
    sessionSecret: secret,
    csrfHeader: request.headers[CSRF_HEADER],
    websocket: String(one(request.headers.upgrade) ?? '').toLowerCase() === 'websocket',
    origin: one(request.headers.origin),
    host: one(request.headers.host),
  });
  if (why !== null) throw refuse(why);
  return secret;
}
