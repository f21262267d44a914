import fastifyStatic from '@fastify/static';
import { FloeError } from '@floe/api';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

/*
 * The web UI: packages/web builds a single-page app into packages/web/dist, and floed serves it at `/`.
 * `/` and `/assets/*` are real routes; any other GET for an HTML page that no route answers (a client-side
 * route such as /instances/web) gets index.html, so reloading a page works. The API stays under /v1.
 */

/** Where the built web UI lives (packages/web/dist, from both src/ and dist/ of this package). */
const WEB_ROOT = fileURLToPath(new URL('../../../web/dist/', import.meta.url));

/** Paths that are never the web UI's, even for a browser asking for HTML. */
const NOT_WEB = /^\/(v1|docs|healthz|readyz)(\/|$|\?)/;

/** What the page may load: only floe's own origin (WebSockets included); styles inline for the terminal. */
const CSP =
  "default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data: blob:; style-src 'self' 'unsafe-inline'; " +
  "font-src 'self' data:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'";

/**
 * True when a request no route answered should get the web UI's index.html: a GET of an HTML page outside
 * the API's paths.
 *
 * @example
 * wantsWebPage('GET', '/instances/web', 'text/html,application/xhtml+xml') // true
 * wantsWebPage('GET', '/v1/nope', 'text/html') // false
 */
export function wantsWebPage(method: string, url: string, accept: string | undefined): boolean {
  return (method === 'GET' || method === 'HEAD') && !NOT_WEB.test(url) && (accept ?? '').includes('text/html');
}

/** Sends index.html with the headers every page of the app gets. */
function sendIndex(reply: FastifyReply): FastifyReply {
  return reply
    .header('cache-control', 'no-cache')
    .header('vary', 'accept-encoding')
    .header('content-security-policy', CSP)
    .header('x-content-type-options', 'nosniff')
    .header('referrer-policy', 'same-origin')
    .sendFile('index.html');
}

/**
 * Registers the web UI's routes; answers the SPA fallback for the not-found handler, or undefined when the
 * UI was not built (floed then serves the API alone).
 */
export async function installWeb(
  http: FastifyInstance,
  root = WEB_ROOT,
): Promise<((request: FastifyRequest, reply: FastifyReply) => FastifyReply) | undefined> {
  const built = existsSync(`${root}/index.html`);
  // Cache headers are set here per file, not by the plugin. The build writes .br and .gz copies of the
  // larger assets: a browser that accepts them gets those bytes, others the file itself.
  if (built) await http.register(fastifyStatic, { root, serve: false, cacheControl: false, preCompressed: true });
  else http.log.info({ root }, 'the web UI is not built (npm run build); serving the API only');
  const missing = () => {
    throw new FloeError('not_found', 'the web UI is not built: run npm run build');
  };
  http.get('/', { config: { public: true }, schema: { hide: true } }, (_req, reply) =>
    built ? sendIndex(reply) : missing(),
  );
  http.get<{ Params: { '*': string } }>(
    '/assets/*',
    { config: { public: true }, schema: { hide: true } },
    (req, reply) => {
      const file = req.params['*'];
      // Vite names assets by their content's hash: they never change under the same name.
      if (!built || !/^[A-Za-z0-9._-]{1,200}$/.test(file)) return missing();
      return reply
        .header('cache-control', 'public, max-age=31536000, immutable')
        .header('vary', 'accept-encoding')
        .sendFile(`assets/${file}`);
    },
  );
  return built ? (_req, reply) => sendIndex(reply) : undefined;
}
