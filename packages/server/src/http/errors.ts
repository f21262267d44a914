import { wantsWebPage } from './web.js';
import { FloeError, LABEL_KEY_PATTERN, LABEL_VALUE_PATTERN, NAME_PATTERN, type ErrorBody } from '@floe/api';
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { STORE_RETRY_AFTER_SECONDS } from '../db/unavailable.js';

/** Plain words for the patterns of the API schemas, instead of the regular expression. */
const PATTERN_WORDS: Record<string, string> = {
  [NAME_PATTERN]:
    'must be a DNS label: lower-case letters, digits and "-", 1 to 63 characters, starting and ending with a letter or digit',
  [LABEL_KEY_PATTERN]: 'must be a label key: [prefix/]name of letters, digits, "-", "_" and "."',
  [LABEL_VALUE_PATTERN]: 'must be a label value: up to 63 letters, digits, "-", "_" and "."',
};

/** Turn a Fastify validation error into the field it is about. */
function fieldOf(err: FastifyError): string {
  const first = err.validation?.[0];
  if (!first) return 'body';
  const missing = first.params as { missingProperty?: string; additionalProperty?: string } | undefined;
  const base = first.instancePath.replace(/^\//, '').replace(/\//g, '.');
  // A bad key of a map (labels) is named by ajv as `propertyName`.
  const leaf =
    missing?.missingProperty ?? missing?.additionalProperty ?? (first as { propertyName?: string }).propertyName;
  if (leaf) return base ? `${base}.${leaf}` : leaf;
  return base || (err.validationContext ?? 'body');
}

/** A request whose path fastify could not route: validation_failed on `path`. */
function pathError(message: string): { status: number; body: { error: ErrorBody }; internal: boolean } {
  const e = new FloeError('validation_failed', message, { field: 'path', location: 'params' });
  return { status: 400, body: { error: e.toBody() }, internal: false };
}

/**
 * A client error raised by fastify or a plugin that has no case above (the static files of /docs refuse a
 * `..` or a NUL in the path with 403 or 400): a code of the table by its status, and a message of ours, as
 * the library's own may name files of the server.
 */
function clientError(status: number): FloeError {
  switch (status) {
    case 401:
      return new FloeError('unauthenticated', 'a valid bearer token is required (Authorization: Bearer floe_...)');
    case 403:
    case 404:
    case 410:
      // A path a file server refuses to look up is, to the client, one that does not exist.
      return new FloeError('not_found', 'no such resource');
    case 413:
      return new FloeError('payload_too_large', 'the request body is too large');
    case 415:
      return new FloeError(
        'unsupported_media_type',
        'send JSON (application/json, or application/merge-patch+json for PATCH)',
      );
    case 429:
      return new FloeError('rate_limited', 'too many requests');
    default:
      return new FloeError('validation_failed', `the request is not valid (HTTP ${status})`, { field: 'request' });
  }
}

/** Map any error to the envelope and its status. The one place errors meet HTTP. */
function toEnvelope(err: unknown): { status: number; body: { error: ErrorBody }; internal: boolean } {
  if (err instanceof FloeError) return { status: err.status, body: { error: err.toBody() }, internal: false };
  const fe = err as FastifyError;
  if (fe.validation) {
    const field = fieldOf(fe);
    const first = fe.validation[0];
    const params = first?.params as { additionalProperty?: string } | undefined;
    const pattern = (first?.params as { pattern?: string } | undefined)?.pattern;
    const why = params?.additionalProperty
      ? 'is not a known field'
      : ((pattern !== undefined ? PATTERN_WORDS[pattern] : undefined) ?? first?.message ?? 'is invalid');
    const e = new FloeError('validation_failed', `${field} ${why}`, {
      field,
      location: fe.validationContext ?? 'body',
    });
    return { status: 400, body: { error: e.toBody() }, internal: false };
  }
  switch (fe.code) {
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return {
        status: 413,
        body: { error: new FloeError('payload_too_large', 'the request body is too large').toBody() },
        internal: false,
      };
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return {
        status: 415,
        body: {
          error: new FloeError(
            'unsupported_media_type',
            'send JSON (application/json, or application/merge-patch+json for PATCH)',
          ).toBody(),
        },
        internal: false,
      };
    case 'FST_ERR_BAD_URL':
      return pathError('the path is not valid (bad percent-encoding)');
    case 'FST_ERR_MAX_PARAM_LENGTH':
      return pathError('a path parameter is longer than 100 characters');
    case 'FST_ERR_CTP_INVALID_JSON_BODY':
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
      return {
        status: 400,
        body: { error: new FloeError('validation_failed', 'the body is not valid JSON', { field: 'body' }).toBody() },
        internal: false,
      };
    default:
      break;
  }
  if (fe.statusCode !== undefined && fe.statusCode >= 400 && fe.statusCode < 500 && err instanceof SyntaxError) {
    return {
      status: 400,
      body: { error: new FloeError('validation_failed', 'the body is not valid JSON', { field: 'body' }).toBody() },
      internal: false,
    };
  }
  const status = fe.statusCode ?? (err as { status?: unknown } | null)?.status;
  if (typeof status === 'number' && status >= 400 && status < 500) {
    const e = clientError(status);
    return { status: e.status, body: { error: e.toBody() }, internal: false };
  }
  return {
    status: 500,
    body: { error: new FloeError('internal_error', 'internal error; see the server log').toBody() },
    internal: true,
  };
}

/**
 * The answer to what fastify finds wrong before routing (a bad percent-encoding, an over-long path parameter):
 * the same envelope as every other error.
 */
export function frameworkErrors(err: FastifyError, _request: FastifyRequest, reply: FastifyReply): void {
  const { status, body } = toEnvelope(err);
  void reply.code(status).type('application/json').send(body);
}

/**
 * The answer to a request Node's HTTP parser refuses (a NUL or other bad byte in a header, a malformed request
 * line, headers too large): the error envelope in a minimal HTTP/1.1 response, then the connection closes.
 */
export function clientErrorResponse(code: string | undefined): string {
  const tooLarge = code === 'HPE_HEADER_OVERFLOW';
  const error = tooLarge
    ? new FloeError('headers_too_large', 'the request line and headers are too large')
    : new FloeError('validation_failed', 'the request is not valid HTTP', { field: 'request' });
  const body = JSON.stringify({ error: error.toBody() });
  const status = tooLarge ? '431 Request Header Fields Too Large' : '400 Bad Request';
  return `HTTP/1.1 ${status}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`;
}

/** The web UI's answer to a page no route has (its client-side routes), set once the UI is installed. */
export interface WebFallback {
  page?: (request: FastifyRequest, reply: FastifyReply) => FastifyReply;
}

/** Install the error and not-found handlers; GETs of HTML pages no route answers go to `web.page` when set. */
export function installErrorHandlers(app: FastifyInstance, web: WebFallback = {}): void {
  app.setErrorHandler((err, request, reply) => {
    const { status, body, internal } = toEnvelope(err);
    if (internal) request.log.error({ err }, 'request failed');
    if (body.error.code === 'store_unavailable') {
      request.log.warn({ reason: body.error.message }, 'request failed: the database is unavailable');
      void reply.header('retry-after', String(STORE_RETRY_AFTER_SECONDS));
    }
    return reply.code(status).type('application/json').send(body);
  });
  app.setNotFoundHandler((request, reply) => {
    if (web.page !== undefined && wantsWebPage(request.method, request.url, request.headers.accept))
      return web.page(request, reply);
    const e = new FloeError('not_found', `no route ${request.method} ${request.url.split('?')[0]}`);
    return reply.code(404).send({ error: e.toBody() });
  });
}
