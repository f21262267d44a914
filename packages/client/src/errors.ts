import type { ErrorCode } from '@floe/api';

/**
 * Codes the client reports itself, on top of the server's stable codes:
 * `network_error` (no answer: refused, reset, timed out, TLS failure),
 * `invalid_response` (an answer that is not floe's JSON) and
 * `operation_timeout` (operations.wait gave up before the operation ended).
 *
 * @example
 * if (err.code === ('network_error' satisfies ClientErrorCode)) console.log('server unreachable');
 */
export type ClientErrorCode = 'network_error' | 'invalid_response' | 'operation_timeout';

/**
 * A failed API call: the server's error envelope, or a client-side failure.
 * `status` is the HTTP status, or 0 when no answer arrived.
 *
 * @example
 * try {
 *   await client.instances.get('web');
 * } catch (err) {
 *   if (err instanceof FloeApiError && err.code === 'instance_not_found') console.log('no such VM');
 *   else throw err;
 * }
 */
export class FloeApiError extends Error {
  override readonly name = 'FloeApiError';
  /** HTTP status, or 0 when the server did not answer. */
  readonly status: number;
  /** A stable code from the server (see `ERROR_CODES`) or a {@link ClientErrorCode}. */
  readonly code: ErrorCode | ClientErrorCode | (string & {});
  /** Extra facts about the failure, such as `details.field` for validation errors. */
  readonly details: Record<string, unknown>;
  /** The server's request id, when it sent one; quote it in bug reports. */
  readonly requestId: string | undefined;

  constructor(
    init: { status: number; code: string; message: string; details?: Record<string, unknown>; requestId?: string },
    options?: { cause?: unknown },
  ) {
    super(init.message, options);
    this.status = init.status;
    this.code = init.code;
    this.details = init.details ?? {};
    this.requestId = init.requestId;
  }
}

/**
 * True when `err` is a {@link FloeApiError}, optionally with the given code.
 *
 * @example
 * if (isFloeApiError(err, 'name_conflict')) console.log('already exists');
 */
export function isFloeApiError(err: unknown, code?: string): err is FloeApiError {
  return err instanceof FloeApiError && (code === undefined || err.code === code);
}

/**
 * Wraps a transport failure (refused, reset, timeout, TLS) as a `network_error`.
 *
 * @example
 * networkError(Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' }), 'GET', url).details // { cause: 'ECONNREFUSED' }
 */
export function networkError(err: unknown, method: string, url: string): FloeApiError {
  const e = err as { code?: unknown; message?: unknown } | null;
  const cause = typeof e?.code === 'string' ? e.code : undefined;
  const why = typeof e?.message === 'string' && e.message !== '' ? e.message : String(err);
  return new FloeApiError(
    {
      status: 0,
      code: 'network_error',
      message: `${method} ${url}: ${why}`,
      details: cause === undefined ? {} : { cause },
    },
    { cause: err },
  );
}

/**
 * Builds the error for a non-2xx answer from its body text: the floe envelope, or `invalid_response`.
 *
 * @example
 * errorFromResponse(404, {}, '{"error":{"code":"instance_not_found","message":"no"}}').code // 'instance_not_found'
 */
export function errorFromResponse(status: number, headers: Record<string, string>, text: string): FloeApiError {
  const requestId = headers['x-request-id'] ?? headers['request-id'];
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    parsed = undefined;
  }
  const body = (parsed as { error?: { code?: unknown; message?: unknown; details?: unknown } } | undefined)?.error;
  if (body !== undefined && typeof body.code === 'string') {
    return new FloeApiError({
      status,
      code: body.code,
      message: typeof body.message === 'string' ? body.message : body.code,
      details:
        typeof body.details === 'object' && body.details !== null ? (body.details as Record<string, unknown>) : {},
      ...(requestId === undefined ? {} : { requestId }),
    });
  }
  const excerpt = text.trim().slice(0, 200);
  return new FloeApiError({
    status,
    code: 'invalid_response',
    message: `HTTP ${status} without a floe error body${excerpt === '' ? '' : `: ${excerpt}`}`,
    ...(requestId === undefined ? {} : { requestId }),
  });
}
