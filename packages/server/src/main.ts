#!/usr/bin/env node
import { parseArgs } from 'node:util';
import { FloeError } from '@floe/api';
import { loadConfig } from './config.js';
import { init, start } from './control.js';
import { VERSION } from './version.js';

const HELP = `floed ${VERSION}: the floe control plane

Usage:
  floed [run]          start the control plane (HTTPS API, agent links)
  floed init [--json]  prepare the data directory and print what was made
  floed --version

Environment:
  FLOE_DATA                    data directory (default ./data)
  FLOE_DATABASE_URL            postgres://... to use PostgreSQL (default: SQLite in FLOE_DATA)
  FLOE_LISTEN                  HOST:PORT to listen on (default 127.0.0.1:7443)
  FLOE_PUBLIC_URL              URL agents and clients use (default from FLOE_LISTEN)
  FLOE_CERT_NAMES              extra names/addresses for the server certificate, comma separated
  FLOE_TLS                     on (default) | off (only behind a TLS proxy; agents need TLS)
  FLOE_HEARTBEAT_MS            agent heartbeat interval (default 5000)
  FLOE_HOST_OFFLINE_AFTER_MS   host offline after this long without heartbeat (default 3x heartbeat)
  FLOE_CPU_OVERCOMMIT          vCPUs per host CPU (default 4)
  FLOE_MEMORY_OVERCOMMIT       memory overcommit ratio (default 1)
  FLOE_SCHEDULER               spread (default) | pack
  FLOE_EVENT_RETENTION_DAYS    keep events this many days (default 7)
  FLOE_AUDIT_RETENTION_DAYS    keep audit records this many days (default 90; 0 keeps them forever)
  FLOE_BODY_LIMIT              largest JSON request body in bytes (default 1 MiB)
  FLOE_READ_CACHE              on (default) | off: cache single-instance reads; other control
                               planes see a write within the LISTEN/NOTIFY latency
  FLOE_READ_CACHE_ENTRIES      size of that cache (default 10000)
  FLOE_IMAGE_MAX_UPLOAD_BYTES  largest image file upload or URL download in bytes (default 64 GiB)
  FLOE_IMAGE_MAX_VIRTUAL_GIB   largest virtual disk an uploaded image may describe (default 1024)
  FLOE_IMAGE_IMPORT_CONNECT_TIMEOUT_S  image URL imports: seconds until the server answers (default 30)
  FLOE_IMAGE_IMPORT_IDLE_TIMEOUT_S     longest silence during a download (default 60)
  FLOE_IMAGE_IMPORT_TIMEOUT_S          longest whole download (default 21600, 6 hours)
  FLOE_IMAGE_IMPORT_PRIVATE            deny (default) | allow: non-admin tokens may import from
                                       loopback, private and link-local addresses
  FLOE_VENDOR_DATA_FILE        cloud-init vendor-data every instance gets unless it brings its own
                               (#cloud-config, #! script or MIME multipart; at most 64 KiB)
  FLOE_IDEMPOTENCY_LEASE_S     a request with an Idempotency-Key whose control plane died can be
                               retried after this many seconds (PostgreSQL; default 15; at once
                               on SQLite, which has one control plane)
  FLOE_RATE_LIMIT_WINDOW_S     window of the limits below, per client address (default 60)
  FLOE_RATE_LIMIT_PUBLIC       requests to /healthz, /v1/openapi.json and /docs a window (default 300)
  FLOE_RATE_LIMIT_JOIN         host joins a window (default 10)
  FLOE_RATE_LIMIT_AUTH_FAILURES  failed authentications a window (default 30); past it every
                               request from the address is refused until the window ends
                               (0 turns any of these limits off)
  FLOE_LOG_LEVEL               info (default), debug, warn, ...
`;

async function main(): Promise<number> {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: { json: { type: 'boolean' }, help: { type: 'boolean', short: 'h' }, version: { type: 'boolean' } },
  });
  if (values.help) {
    process.stdout.write(HELP);
    return 0;
  }
  if (values.version) {
    process.stdout.write(`${VERSION}\n`);
    return 0;
  }
  const command = positionals[0] ?? 'run';
  const config = loadConfig();
  if (command === 'init') {
    const result = await init(config);
    if (values.json) process.stdout.write(`${JSON.stringify(result)}\n`);
    else {
      process.stdout.write(`data directory ready: ${config.dataDir} (${result.database})\n`);
      process.stdout.write(`local host: ${result.host.name} (${result.host.id})\n`);
      if (result.admin_token) process.stdout.write(`admin token (shown once, store it now): ${result.admin_token}\n`);
    }
    return 0;
  }
  if (command !== 'run') {
    process.stderr.write(`floed: unknown command "${command}"\n\n${HELP}`);
    return 2;
  }
  const app = await start(config);
  app.http.log.info({ url: config.publicUrl, database: app.store.dialect }, 'floe control plane listening');
  const stop = async (signal: string) => {
    app.http.log.info({ signal }, 'shutting down; VMs keep running');
    await app.close();
    process.exit(0);
  };
  process.once('SIGTERM', () => void stop('SIGTERM'));
  process.once('SIGINT', () => void stop('SIGINT'));
  return -1;
}

main().then(
  (code) => {
    if (code >= 0) process.exit(code);
  },
  (err) => {
    if (err instanceof FloeError) process.stderr.write(`floed: ${err.message} (${err.code})\n`);
    else process.stderr.write(`floed: ${(err as Error).stack ?? String(err)}\n`);
    process.exit(1);
  },
);
