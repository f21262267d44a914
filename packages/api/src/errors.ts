import { Type, type Static } from 'typebox';

/**
 * Every failure floe reports, with its HTTP status. This table is the one place
 * where domain errors meet HTTP; docs/api/errors.md is generated from it.
 */
export const ERROR_CODES = {
  validation_failed: { status: 400, description: 'A field is missing or invalid; `details.field` names it.' },
  invalid_cursor: { status: 400, description: 'The pagination cursor is malformed.' },
  invalid_label_selector: { status: 400, description: 'A `label` filter is not `key` or `key=value`.' },
  metadata_too_large: { status: 400, description: '`metadata` serializes to more than 64 KiB.' },
  unauthenticated: { status: 401, description: 'No bearer token, or the token is unknown, revoked or expired.' },
  invalid_credentials: {
    status: 401,
    description:
      'The username, password or second-factor code is wrong, or the user is unknown or disabled (one answer for all, so that users cannot be guessed).',
  },
  totp_required: {
    status: 401,
    description: 'The password was right and the user has TOTP: send the login again with `totp_code`.',
  },
  forbidden: {
    status: 403,
    description: 'The token is valid but may not do this (for example, an admin-only action).',
  },
  csrf_failed: {
    status: 403,
    description:
      'A request authenticated by the browser session cookie changes something but lacks the right `X-CSRF-Token` header, or a WebSocket comes from another origin.',
  },
  not_found: { status: 404, description: 'No such route.' },
  project_not_found: { status: 404, description: 'No project with that id or name is visible to this token.' },
  token_not_found: { status: 404, description: 'No API token with that id.' },
  user_not_found: { status: 404, description: 'No user with that id or name.' },
  member_not_found: { status: 404, description: 'The user is not a member of the project.' },
  host_not_found: { status: 404, description: 'No host with that id or name.' },
  image_not_found: { status: 404, description: 'No image with that id or name in the project.' },
  machine_type_not_found: { status: 404, description: 'No machine type with that id or name.' },
  instance_not_found: { status: 404, description: 'No instance with that id or name in the project.' },
  network_not_found: {
    status: 404,
    description: 'No network with that id or name in the project (public networks are found from every project).',
  },
  vpn_pool_not_found: { status: 404, description: 'No VPN pool with that id or name.' },
  vpn_network_not_found: { status: 404, description: 'No VPN network with that id or name in the project.' },
  vpn_peer_not_found: { status: 404, description: 'No VPN peer with that id or name in the project.' },
  vpn_pool_exhausted: {
    status: 409,
    description: 'Every prefix (or listen port) of the VPN pool is taken, or every peer address of the VPN network.',
  },
  vpn_prefix_overlap: {
    status: 409,
    description:
      "A prefix overlaps one already routed by the same gateways: another pool, a connected network, a VPN network or a peer's subnet; `details` names both.",
  },
  vpn_key_invalid: {
    status: 400,
    description: 'The WireGuard public key is not 32 bytes in base64 (44 characters ending in "=").',
  },
  vpn_key_conflict: { status: 409, description: 'Another VPN peer already has that public key.' },
  nic_not_found: { status: 404, description: 'No NIC with that id on the instance.' },
  security_group_not_found: {
    status: 404,
    description: 'No security group (or rule of one) with that id or name in the project.',
  },
  floating_ip_not_found: { status: 404, description: 'No floating IP with that id, name or address in the project.' },
  port_forward_not_found: { status: 404, description: 'No port forward with that id or name in the project.' },
  operation_not_found: { status: 404, description: 'No operation with that id visible to this token.' },
  name_conflict: { status: 409, description: 'A resource of that kind and name already exists in the project.' },
  revision_mismatch: { status: 412, description: '`If-Match` does not match the current revision (ETag).' },
  idempotency_key_in_progress: {
    status: 409,
    description: 'A request with this `Idempotency-Key` is still being processed; retry later.',
  },
  idempotency_key_reused: {
    status: 422,
    description: 'The `Idempotency-Key` was used before with a different request.',
  },
  invalid_state: { status: 409, description: 'The resource is in a state that does not allow this action.' },
  last_owner: {
    status: 409,
    description: 'The change would leave the project without an owner: make another member owner first.',
  },
  quota_exceeded: {
    status: 409,
    description:
      'The change would take more than a project limit allows: `details` names the `dimension`, the `project` of the tree whose limit blocks, its `limit`, its current use (`used`) and what was asked (`requested`).',
  },
  limit_below_allocation: {
    status: 409,
    description:
      'A limit may not go below what the project already uses or has given to its sub-projects: `details` names the `dimension`, the `blocker` (`usage`, `delegated` or `parent`), the `limit` asked and the amount in the way.',
  },
  in_use: { status: 409, description: 'The resource is still used by others (for example, a project with instances).' },
  operation_not_cancellable: {
    status: 409,
    description: 'Only pending operations (and running image imports) can be cancelled.',
  },
  network_full: {
    status: 409,
    description: 'The network has no free address left in its range (IPv4, or IPv6 when it is not a /64).',
  },
  address_in_use: {
    status: 409,
    description: 'The requested address is already given to another NIC, or reserved, on that network.',
  },
  port_in_use: {
    status: 409,
    description: 'Another port forward already listens on that address, protocol and port.',
  },
  too_many_nics: { status: 409, description: 'An instance has at most 8 NICs.' },
  no_host_capacity: { status: 409, description: 'No online host has enough free vCPUs and memory for the instance.' },
  join_token_invalid: { status: 401, description: 'The host join token is unknown, used or expired.' },
  invalid_csr: {
    status: 400,
    description: 'The certificate signing request cannot be parsed or its signature is wrong.',
  },
  client_certificate_required: {
    status: 401,
    description: "The agent endpoint needs a client certificate signed by floe's CA.",
  },
  payload_too_large: { status: 413, description: 'The request body is larger than the server accepts.' },
  headers_too_large: {
    status: 431,
    description: 'The request line and headers together are too large (a very long URL or query string counts).',
  },
  image_checksum_mismatch: {
    status: 400,
    description: 'The uploaded or downloaded image file does not have the expected checksum; nothing was kept.',
  },
  image_checksum_not_found: {
    status: 422,
    description: "The checksum file (`source.checksum_url`) has no sha256 or sha512 line for the image's file name.",
  },
  image_url_unsupported: {
    status: 400,
    description:
      'The image URL is not an absolute http:// or https:// URL (file:, ftp: and the like are refused), carries credentials, or redirects there or from https down to http.',
  },
  image_url_forbidden: {
    status: 403,
    description:
      'The image URL leads to a loopback, private or link-local address, which only admin tokens may import from (unless FLOE_IMAGE_IMPORT_PRIVATE=allow).',
  },
  image_download_failed: {
    status: 502,
    description:
      'The image (or checksum) URL could not be fetched: the server answered with an HTTP error such as 404, or the connection or TLS handshake failed; `details` say which.',
  },
  image_download_incomplete: {
    status: 502,
    description: 'The connection closed before the whole file arrived (fewer bytes than its Content-Length).',
  },
  image_download_timeout: {
    status: 504,
    description:
      'The image server did not connect, went silent, or the whole download took longer than allowed; `details.timeout` says which.',
  },
  image_download_too_many_redirects: {
    status: 502,
    description: 'The image URL redirected more often than allowed; `details.limit` says how often.',
  },
  image_download_too_large: {
    status: 413,
    description: 'The downloaded file is larger than this control plane takes (FLOE_IMAGE_MAX_UPLOAD_BYTES).',
  },
  image_download_not_an_image: {
    status: 422,
    description: 'The URL answered with a web page or other text instead of a disk image.',
  },
  disk_shrink_refused: {
    status: 422,
    description:
      'A resize asked for a smaller disk than the instance has; disks only grow (`details` give the current and the requested GiB).',
  },
  disk_too_small: {
    status: 422,
    description:
      'The requested disk is smaller than the image needs; `details` give the requested and the minimum GiB.',
  },
  image_format_unsupported: {
    status: 422,
    description: 'The uploaded image file is neither raw nor qcow2 (or is an encrypted qcow2).',
  },
  image_backing_file_forbidden: {
    status: 422,
    description:
      'The uploaded qcow2 names a backing file or an external data file; only self-contained images are accepted.',
  },
  image_too_large: {
    status: 422,
    description:
      'The virtual size of the uploaded image is over the limit of this control plane (FLOE_IMAGE_MAX_VIRTUAL_GIB).',
  },
  unsupported_media_type: { status: 415, description: 'The request body is not JSON (or merge-patch JSON for PATCH).' },
  rate_limited: {
    status: 429,
    description:
      'Too many unauthenticated requests, host joins or failed authentications from this address, or too many failed logins for this username or from this address; `Retry-After` says when to try again.',
  },
  authenticator_not_found: {
    status: 404,
    description: 'No login method (authenticator) of that name and kind is configured on this control plane.',
  },
  authenticator_unavailable: {
    status: 503,
    description:
      'The external checker or identity provider could not be asked (down, timed out, or answered nonsense); floe fails closed. Retry later.',
  },
  login_expired: {
    status: 410,
    description: 'The login was not finished in time, or its session was already collected: start a new login.',
  },
  login_failed: {
    status: 401,
    description: 'The identity provider refused the login, or floe could not complete it; `message` says why.',
  },
  internal_error: { status: 500, description: 'An unexpected error; the server log has the details.' },
  store_unavailable: {
    status: 503,
    description:
      "The control plane cannot reach its database (it is down, restarting or locked past the busy timeout). Retry after the `Retry-After` header's seconds, with the same `Idempotency-Key` for a POST; `GET /readyz` says when the control plane is ready again.",
  },
  auth_unavailable: {
    status: 503,
    description:
      'No authenticator could decide the login: a backend (LDAP, an htpasswd file, an external checker) did not answer. Retry later.',
  },
  host_operation_failed: {
    status: 502,
    description: 'The host could not carry out the operation; `message` says why.',
  },
  vnc_unavailable: {
    status: 409,
    description:
      'The VM has no graphical console: it was started before floe gave VMs one (or by a driver without one). Restart the instance to get it.',
  },
  host_offline: { status: 503, description: 'The host that runs the resource is not connected.' },
  stream_overflow: {
    status: 503,
    description:
      'A console or log stream was closed because its output came faster than the reader took it; reconnect to continue.',
  },
  operation_timeout: { status: 504, description: 'Waiting for the operation took longer than asked; it goes on.' },
  host_timeout: { status: 504, description: 'The host did not answer in time (console, logs or stats).' },
} as const satisfies Record<string, { status: number; description: string }>;

/** A stable error code. */
export type ErrorCode = keyof typeof ERROR_CODES;

/** The error body inside the envelope. */
export const ErrorBody = Type.Object({
  code: Type.String({ description: 'stable code, see docs/api/errors.md' }),
  message: Type.String(),
  details: Type.Optional(Type.Record(Type.String(), Type.Unknown())),
});
export type ErrorBody = Static<typeof ErrorBody>;

/** The one error envelope: `{"error": {"code", "message", "details"}}`. */
export const ErrorEnvelope = Type.Object({ error: ErrorBody });
export type ErrorEnvelope = Static<typeof ErrorEnvelope>;

/**
 * A failure with a stable code. Domain code throws these; the HTTP layer maps
 * the code to a status through ERROR_CODES.
 *
 * @example
 * throw new FloeError('instance_not_found', 'instance "web" not found', { kind: 'instance', id: 'web' })
 */
export class FloeError extends Error {
  override readonly name = 'FloeError';
  constructor(
    readonly code: ErrorCode,
    message: string,
    readonly details?: Record<string, unknown>,
  ) {
    super(message);
  }

  /** The HTTP status for this error's code. */
  get status(): number {
    return ERROR_CODES[this.code].status;
  }

  /** The body of the error envelope. */
  toBody(): ErrorBody {
    return this.details === undefined
      ? { code: this.code, message: this.message }
      : { code: this.code, message: this.message, details: this.details };
  }
}

/** True when `code` is one of floe's stable codes. */
export function isErrorCode(code: string): code is ErrorCode {
  return Object.prototype.hasOwnProperty.call(ERROR_CODES, code);
}
