import { readFileSync } from 'node:fs';
import path from 'node:path';
import { FloeError, USER_DATA_MAX_BYTES, type QuotaLimits } from '@floe/api';
import { parseAuthConfig, type AuthConfig } from './auth/config.js';
import { parseDefaultLimits } from './services/quota-rules.js';

/** Control plane settings, parsed once at start and frozen. */
export interface Config {
  /** Holds the SQLite database, the PKI and the local agent's files. */
  readonly dataDir: string;
  /** `postgres://...` to use PostgreSQL; null for SQLite in the data directory. */
  readonly databaseUrl: string | null;
  readonly host: string;
  readonly port: number;
  /** Serve HTTPS with floe's CA (default). Off only behind a TLS-terminating proxy; agents then cannot connect. */
  readonly tls: boolean;
  /** The URL agents and the CLI use to reach this control plane. */
  readonly publicUrl: string;
  /** Extra names and addresses for the server certificate. */
  readonly certNames: readonly string[];
  readonly heartbeatIntervalMs: number;
  /** A host without a heartbeat for this long is marked offline. */
  readonly hostOfflineAfterMs: number;
  /** vCPUs that may be allocated per host CPU. */
  readonly cpuOvercommit: number;
  /** Memory that may be allocated per MiB of host memory. */
  readonly memoryOvercommit: number;
  readonly scheduler: 'spread' | 'pack';
  /** Events older than this many days are deleted (streams resume only within it). */
  readonly eventRetentionDays: number;
  /** Audit records older than this many days are deleted; 0 keeps them forever (FLOE_AUDIT_RETENTION_DAYS). */
  readonly auditRetentionDays: number;
  /** Largest request body, in bytes. */
  readonly bodyLimit: number;
  /** Limits a new top-level project gets (FLOE_DEFAULT_LIMITS, `vcpus=100,memory_mib=204800`; default none). */
  readonly defaultLimits: QuotaLimits;
  /** Largest image file upload, in bytes (FLOE_IMAGE_MAX_UPLOAD_BYTES); JSON bodies stay under `bodyLimit`. */
  readonly imageMaxUploadBytes: number;
  /** Largest virtual disk size an uploaded image may describe, in bytes (FLOE_IMAGE_MAX_VIRTUAL_GIB). */
  readonly imageMaxVirtualBytes: number;
  /** Image imports from URLs: time until the server answers (FLOE_IMAGE_IMPORT_CONNECT_TIMEOUT_S). */
  readonly imageImportConnectTimeoutMs: number;
  /** Longest silence while an image downloads (FLOE_IMAGE_IMPORT_IDLE_TIMEOUT_S). */
  readonly imageImportIdleTimeoutMs: number;
  /** Longest whole download (FLOE_IMAGE_IMPORT_TIMEOUT_S). */
  readonly imageImportTimeoutMs: number;
  /** Non-admins may import from loopback, private and link-local addresses (FLOE_IMAGE_IMPORT_PRIVATE=allow). */
  readonly imageImportPrivate: boolean;
  readonly logLevel: string;
  /**
   * Instances kept in the in-process read cache of single-instance GETs (FLOE_READ_CACHE_ENTRIES);
   * 0 when FLOE_READ_CACHE=off. With PostgreSQL, another control plane's writes reach it after the
   * LISTEN/NOTIFY latency.
   */
  readonly readCacheEntries: number;
  /** Per-client-address limits on unauthenticated requests and failed authentications. */
  readonly rateLimits: RateLimits;
  /** The operator's default cloud-init vendor-data (FLOE_VENDOR_DATA_FILE, read at start); null for none. */
  readonly vendorData: string | null;
  /**
   * How long an Idempotency-Key reservation of a control plane that stopped renewing it (it died)
   * blocks a retry on PostgreSQL (FLOE_IDEMPOTENCY_LEASE_S); renewed every third of it while alive.
   */
  readonly idempotencyLeaseMs: number;
  /** The authenticator chain and the role mapping (FLOE_AUTH_CONFIG, a JSON file read at start; default: local passwords). */
  readonly auth: AuthConfig;
  /** Relative file names in the auth configuration resolve here (the configuration file's directory). */
  readonly authBaseDir: string;
  /** How long a login's session token lives (FLOE_SESSION_TTL_HOURS, default 12). */
  readonly sessionTtlMs: number;
  /** Failed logins before a username or an address is locked out for a while. */
  readonly loginLockout: LoginLockout;
}

/** Failed logins counted per username and per source address, in memory per control plane process. */
export interface LoginLockout {
  /** Failures of one username within `windowMs` before it is locked (FLOE_LOGIN_MAX_FAILURES_PER_USER, 5; 0 = off). */
  readonly perUsername: number;
  /** Failures from one address within `windowMs` before it is locked (FLOE_LOGIN_MAX_FAILURES_PER_ADDRESS, 20; 0 = off). */
  readonly perAddress: number;
  /** The counting window and the length of a lockout (FLOE_LOGIN_LOCKOUT_MINUTES, 15). */
  readonly windowMs: number;
}

/**
 * Requests allowed per client address and window (`windowMs`); 0 turns a limit off. Authenticated requests
 * with a valid token are never counted.
 */
export interface RateLimits {
  readonly windowMs: number;
  /** Unauthenticated endpoints: /healthz, the OpenAPI document, /docs (FLOE_RATE_LIMIT_PUBLIC). */
  readonly publicRequests: number;
  /** Host joins, `POST /v1/hosts/join` (FLOE_RATE_LIMIT_JOIN). */
  readonly joins: number;
  /**
   * Failed authentications (a missing, unknown, revoked or expired bearer token, or a missing agent
   * certificate); past it, every request from the address is refused until the window ends
   * (FLOE_RATE_LIMIT_AUTH_FAILURES).
   */
  readonly authFailures: number;
}

function num(env: NodeJS.ProcessEnv, key: string, fallback: number, min: number, max: number): number {
  const raw = env[key];
  if (raw === undefined || raw === '') return fallback;
  const value = Number(raw);
  if (!Number.isFinite(value) || value < min || value > max) {
    throw new FloeError('validation_failed', `${key} must be a number from ${min} to ${max}, got "${raw}"`, {
      field: key,
    });
  }
  return value;
}

/**
 * Read the configuration from environment variables (FLOE_*). Invalid values
 * fail here, at start, with the variable named.
 */
export function loadConfig(env: NodeJS.ProcessEnv = process.env, cwd = process.cwd()): Config {
  const dataDir = path.resolve(cwd, env.FLOE_DATA || 'data');
  const listen = env.FLOE_LISTEN || '127.0.0.1:7443';
  const match = /^(\[[0-9a-fA-F:]+\]|[^:]+):(\d{1,5})$/.exec(listen);
  if (!match) {
    throw new FloeError('validation_failed', `FLOE_LISTEN must be HOST:PORT, got "${listen}"`, {
      field: 'FLOE_LISTEN',
    });
  }
  const host = match[1]!.replace(/^\[|\]$/g, '');
  const port = Number(match[2]);
  if (port > 65535)
    throw new FloeError('validation_failed', `FLOE_LISTEN port out of range: ${port}`, { field: 'FLOE_LISTEN' });
  const tlsRaw = (env.FLOE_TLS || 'on').toLowerCase();
  if (!['on', 'off'].includes(tlsRaw)) {
    throw new FloeError('validation_failed', `FLOE_TLS must be "on" or "off", got "${env.FLOE_TLS}"`, {
      field: 'FLOE_TLS',
    });
  }
  const tls = tlsRaw === 'on';
  const dbUrl = env.FLOE_DATABASE_URL || null;
  if (dbUrl !== null && !/^postgres(ql)?:\/\//.test(dbUrl)) {
    throw new FloeError(
      'validation_failed',
      'FLOE_DATABASE_URL must be a postgres:// URL (leave it unset for SQLite)',
      { field: 'FLOE_DATABASE_URL' },
    );
  }
  const scheduler = env.FLOE_SCHEDULER || 'spread';
  if (scheduler !== 'spread' && scheduler !== 'pack') {
    throw new FloeError('validation_failed', `FLOE_SCHEDULER must be "spread" or "pack", got "${scheduler}"`, {
      field: 'FLOE_SCHEDULER',
    });
  }
  const readCacheRaw = (env.FLOE_READ_CACHE || 'on').toLowerCase();
  if (!['on', 'off'].includes(readCacheRaw)) {
    throw new FloeError('validation_failed', `FLOE_READ_CACHE must be "on" or "off", got "${env.FLOE_READ_CACHE}"`, {
      field: 'FLOE_READ_CACHE',
    });
  }
  const importPrivate = (env.FLOE_IMAGE_IMPORT_PRIVATE || 'deny').toLowerCase();
  if (!['allow', 'deny'].includes(importPrivate)) {
    throw new FloeError(
      'validation_failed',
      `FLOE_IMAGE_IMPORT_PRIVATE must be "allow" or "deny", got "${env.FLOE_IMAGE_IMPORT_PRIVATE}"`,
      { field: 'FLOE_IMAGE_IMPORT_PRIVATE' },
    );
  }
  const readCacheEntries = num(env, 'FLOE_READ_CACHE_ENTRIES', 10_000, 1, 10_000_000);
  const shownHost = host === '0.0.0.0' || host === '::' ? '127.0.0.1' : host;
  const publicUrl = (
    env.FLOE_PUBLIC_URL ||
    `${tls ? 'https' : 'http'}://${shownHost.includes(':') ? `[${shownHost}]` : shownHost}:${port}`
  ).replace(/\/+$/, '');
  const heartbeatIntervalMs = num(env, 'FLOE_HEARTBEAT_MS', 5000, 100, 600_000);
  const config: Config = {
    dataDir,
    databaseUrl: dbUrl,
    host,
    port,
    tls,
    publicUrl,
    certNames: (env.FLOE_CERT_NAMES || '')
      .split(',')
      .map((s) => s.trim())
      .filter(Boolean),
    heartbeatIntervalMs,
    hostOfflineAfterMs: num(env, 'FLOE_HOST_OFFLINE_AFTER_MS', heartbeatIntervalMs * 3, 200, 3_600_000),
    cpuOvercommit: num(env, 'FLOE_CPU_OVERCOMMIT', 4, 0.1, 64),
    memoryOvercommit: num(env, 'FLOE_MEMORY_OVERCOMMIT', 1, 0.1, 16),
    scheduler,
    defaultLimits: parseDefaultLimits(env.FLOE_DEFAULT_LIMITS ?? ''),
    eventRetentionDays: num(env, 'FLOE_EVENT_RETENTION_DAYS', 7, 1, 3650),
    auditRetentionDays: num(env, 'FLOE_AUDIT_RETENTION_DAYS', 90, 0, 36500),
    bodyLimit: num(env, 'FLOE_BODY_LIMIT', 1024 * 1024, 1024, 1024 * 1024 * 1024),
    imageMaxUploadBytes: num(env, 'FLOE_IMAGE_MAX_UPLOAD_BYTES', 64 * 1024 ** 3, 1024, Number.MAX_SAFE_INTEGER),
    imageMaxVirtualBytes: num(env, 'FLOE_IMAGE_MAX_VIRTUAL_GIB', 1024, 1, 1024 * 1024) * 1024 ** 3,
    imageImportConnectTimeoutMs: num(env, 'FLOE_IMAGE_IMPORT_CONNECT_TIMEOUT_S', 30, 0.1, 3600) * 1000,
    imageImportIdleTimeoutMs: num(env, 'FLOE_IMAGE_IMPORT_IDLE_TIMEOUT_S', 60, 0.1, 3600) * 1000,
    imageImportTimeoutMs: num(env, 'FLOE_IMAGE_IMPORT_TIMEOUT_S', 6 * 3600, 1, 7 * 86400) * 1000,
    imageImportPrivate: importPrivate === 'allow',
    logLevel: env.FLOE_LOG_LEVEL || 'info',
    readCacheEntries: readCacheRaw === 'on' ? readCacheEntries : 0,
    rateLimits: Object.freeze({
      windowMs: num(env, 'FLOE_RATE_LIMIT_WINDOW_S', 60, 1, 86400) * 1000,
      publicRequests: num(env, 'FLOE_RATE_LIMIT_PUBLIC', 300, 0, 1_000_000_000),
      joins: num(env, 'FLOE_RATE_LIMIT_JOIN', 10, 0, 1_000_000_000),
      authFailures: num(env, 'FLOE_RATE_LIMIT_AUTH_FAILURES', 30, 0, 1_000_000_000),
    }),
    vendorData: readVendorData(env.FLOE_VENDOR_DATA_FILE, cwd),
    idempotencyLeaseMs: num(env, 'FLOE_IDEMPOTENCY_LEASE_S', 15, 1, 3600) * 1000,
    ...readAuthConfig(env.FLOE_AUTH_CONFIG, cwd),
    sessionTtlMs: num(env, 'FLOE_SESSION_TTL_HOURS', 12, 0.01, 24 * 365) * 3_600_000,
    loginLockout: Object.freeze({
      perUsername: num(env, 'FLOE_LOGIN_MAX_FAILURES_PER_USER', 5, 0, 1_000_000),
      perAddress: num(env, 'FLOE_LOGIN_MAX_FAILURES_PER_ADDRESS', 20, 0, 1_000_000),
      windowMs: num(env, 'FLOE_LOGIN_LOCKOUT_MINUTES', 15, 0.01, 24 * 60) * 60_000,
    }),
  };
  return Object.freeze(config);
}

/**
 * The operator's default vendor-data: a `#cloud-config` document, a `#!`
 * script or a MIME multipart document of at most 64 KiB, checked at start so
 * a typo fails here and not at every first boot.
 */
function readVendorData(file: string | undefined, cwd: string): string | null {
  if (file === undefined || file === '') return null;
  let text: string;
  try {
    text = readFileSync(path.resolve(cwd, file), 'utf8');
  } catch (err) {
    throw new FloeError(
      'validation_failed',
      `FLOE_VENDOR_DATA_FILE cannot be read: ${(err as NodeJS.ErrnoException).code ?? String(err)}`,
      { field: 'FLOE_VENDOR_DATA_FILE' },
    );
  }
  if (Buffer.byteLength(text, 'utf8') > USER_DATA_MAX_BYTES) {
    throw new FloeError('validation_failed', `FLOE_VENDOR_DATA_FILE is larger than ${USER_DATA_MAX_BYTES} bytes`, {
      field: 'FLOE_VENDOR_DATA_FILE',
      limit: USER_DATA_MAX_BYTES,
    });
  }
  if (!/^(#cloud-config|#!|Content-Type: multipart\/)/i.test(text)) {
    throw new FloeError(
      'validation_failed',
      'FLOE_VENDOR_DATA_FILE must be a #cloud-config document, a #! script or MIME multipart',
      { field: 'FLOE_VENDOR_DATA_FILE' },
    );
  }
  return text;
}

/** Without FLOE_AUTH_CONFIG: local passwords only. */
const DEFAULT_AUTH: unknown = { chain: [{ kind: 'local' }] };

/**
 * The authentication configuration: the JSON file FLOE_AUTH_CONFIG names, checked once at start so a
 * mistake stops floed with the place named (`/etc/floe/auth.json/chain/1/url: ...`) instead of running
 * with another chain than the operator meant.
 */
function readAuthConfig(file: string | undefined, cwd: string): { auth: AuthConfig; authBaseDir: string } {
  if (file === undefined || file === '') return { auth: parseAuthConfig(DEFAULT_AUTH, 'default'), authBaseDir: cwd };
  const full = path.resolve(cwd, file);
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(full, 'utf8'));
  } catch (err) {
    const why =
      err instanceof SyntaxError
        ? `is not valid JSON (${err.message})`
        : `cannot be read: ${(err as NodeJS.ErrnoException).code ?? String(err)}`;
    throw new FloeError('validation_failed', `FLOE_AUTH_CONFIG ${full} ${why}`, { field: 'FLOE_AUTH_CONFIG' });
  }
  try {
    return { auth: parseAuthConfig(raw, full), authBaseDir: path.dirname(full) };
  } catch (err) {
    if (err instanceof FloeError) throw new FloeError(err.code, `FLOE_AUTH_CONFIG: ${err.message}`, err.details);
    throw err;
  }
}
