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
