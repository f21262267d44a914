import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import type { Selectable } from 'kysely';
import { openStore, type Dialect, type OpenStoreOptions, type Store } from './index.js';
import type { Database } from './schema.js';

/** A throwaway store for tests; `close()` also deletes its file or drops its database. */
export interface TestStore extends Store {
  /** How to open the same database again (a second control plane, a restart). */
  readonly options: OpenStoreOptions;
}

/** One database a store suite runs against; `skip` is the printed reason when it cannot run here. */
export interface StoreTarget {
  name: Dialect;
  open: (opts?: { migrate?: boolean }) => Promise<TestStore>;
  skip: string | null;
}

/** The PostgreSQL server tests create their databases on, unless FLOE_TEST_DATABASE_URL says otherwise. */
const DEFAULT_TEST_DATABASE_URL = 'postgres://postgres@127.0.0.1:5432/postgres';

let cached: StoreTarget[] | undefined;

/**
 * SQLite and PostgreSQL, so one suite covers both:
 *
 *   for (const t of storeTargets()) describe.skipIf(t.skip)(`... on ${t.name}`, () => { ... t.open() ... })
 *
 * PostgreSQL is skipped (reason printed once) when unreachable, except with CI set: then opening fails.
 */
export function storeTargets(): StoreTarget[] {
  if (cached === undefined) {
    cached = storeTargetsFor(process.env);
    for (const t of cached) if (t.skip !== null) console.warn(`[floe] store tests on ${t.name} skipped: ${t.skip}`);
  }
  return cached;
}

/** `storeTargets` for a given environment, probed afresh (no caching, no printing). */
export function storeTargetsFor(env: NodeJS.ProcessEnv): StoreTarget[] {
  const adminUrl = env.FLOE_TEST_DATABASE_URL || DEFAULT_TEST_DATABASE_URL;
  const unreachable = probePostgres(adminUrl);
  const ci = env.CI !== undefined && env.CI !== '' && env.CI !== 'false' && env.CI !== '0';
  const postgres: StoreTarget =
    unreachable === null
      ? { name: 'postgres', open: (opts) => openPostgresTestStore(adminUrl, opts), skip: null }
      : ci
        ? {
            name: 'postgres',
            open: () =>
              Promise.reject(
                new Error(`PostgreSQL at ${redact(adminUrl)} is unreachable and CI is set: ${unreachable}`),
              ),
            skip: null,
          }
        : {
            name: 'postgres',
            open: () => Promise.reject(new Error('skipped')),
            skip: `PostgreSQL at ${redact(adminUrl)} is unreachable (${unreachable}); set FLOE_TEST_DATABASE_URL`,
          };
  return [{ name: 'sqlite', open: openSqliteTestStore, skip: null }, postgres];
}

async function openSqliteTestStore(opts?: { migrate?: boolean }): Promise<TestStore> {
  const dir = await mkdtemp(join(tmpdir(), 'floe-store-'));
  const options: OpenStoreOptions = { sqlitePath: join(dir, 'floe.db') };
  try {
    const store = await openStore({ ...options, migrate: opts?.migrate ?? true });
    return {
      ...store,
      options,
      close: async () => {
        await store.close();
        await rm(dir, { recursive: true, force: true });
      },
    };
  } catch (err) {
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
}

async function openPostgresTestStore(adminUrl: string, opts?: { migrate?: boolean }): Promise<TestStore> {
  const name = `floe_test_${randomBytes(6).toString('hex')}`;
  await adminQuery(adminUrl, `create database ${name}`);
  const url = new URL(adminUrl);
  url.pathname = `/${name}`;
  const options: OpenStoreOptions = { url: url.toString() };
  const drop = () => adminQuery(adminUrl, `drop database if exists ${name} with (force)`);
  try {
    const store = await openStore({ ...options, migrate: opts?.migrate ?? true });
    return {
      ...store,
      options,
      close: async () => {
        try {
          await store.close();
        } finally {
          await drop();
        }
      },
    };
  } catch (err) {
    await drop();
    throw err;
  }
}

async function adminQuery(adminUrl: string, text: string): Promise<void> {
  const client = new pg.Client({ connectionString: adminUrl });
  await client.connect();
  try {
    await client.query(text);
  } finally {
    await client.end();
  }
}

// Test files decide what to run while they are collected, synchronously, so reachability is asked of
// a short-lived child process. Returns null when reachable, else the reason.
function probePostgres(adminUrl: string): string | null {
  const pgPath = createRequire(import.meta.url).resolve('pg');
  const script = [
    'const pg = require(process.argv[1]);',
    'const c = new pg.Client({ connectionString: process.argv[2], connectionTimeoutMillis: 3000 });',
    "c.connect().then(() => c.query('select 1')).then(() => c.end()).then(",
    '  () => process.exit(0),',
    '  (e) => { process.stderr.write(String((e && e.message) || e)); process.exit(1); });',
  ].join('\n');
  const res = spawnSync(process.execPath, ['-e', script, pgPath, adminUrl], { encoding: 'utf8', timeout: 10_000 });
  if (res.status === 0) return null;
  if (res.error !== undefined) return res.error.message;
  return res.stderr.trim() || `probe exited with ${res.status ?? res.signal}`;
}

function redact(url: string): string {
  try {
    const u = new URL(url);
    if (u.password !== '') u.password = '***';
    return u.toString();
  } catch {
    return '(unparseable url)';
  }
}

type ColumnKind<V> = [V] extends [number | null]
  ? null extends V
    ? 'integer null'
    : 'integer'
  : null extends V
    ? 'text null'
    : 'text';

/** Every column of every table with its storage kind, derived from schema.ts so the compiler keeps it complete. */
export type SchemaColumns = {
  [K in keyof Database]: { [C in keyof Selectable<Database[K]>]-?: ColumnKind<Selectable<Database[K]>[C]> };
};

const resourceColumns = {
  id: 'text',
  name: 'text',
  labels: 'text',
  metadata: 'text',
  revision: 'integer',
  created_at: 'text',
  updated_at: 'text',
} as const;

/** What a fully migrated database must contain, checked against the live tables by the store suite. */
export const SCHEMA_COLUMNS: SchemaColumns = {
  projects: { ...resourceColumns, description: 'text', parent_id: 'text null' },
  project_limits: { project_id: 'text', dimension: 'text', value: 'integer' },
  tokens: {
    id: 'text',
    name: 'text',
    secret_hash: 'text',
    admin: 'integer',
    created_at: 'text',
    expires_at: 'text null',
    last_used_at: 'text null',
    scope: 'text null',
    revoked_at: 'text null',
    user_id: 'text null',
    kind: 'text null',
  },
  token_projects: { token_id: 'text', project_id: 'text' },
  users: {
    id: 'text',
    name: 'text',
    display_name: 'text',
    email: 'text null',
    disabled: 'integer',
    password_hash: 'text null',
    operator: 'integer',
    created_at: 'text',
    updated_at: 'text',
    source: 'text null',
    external_subject: 'text null',
  },
  project_members: { project_id: 'text', user_id: 'text', role: 'text', created_at: 'text', via: 'text null' },
  user_totp: { user_id: 'text', secret: 'text', confirmed_at: 'text null', last_step: 'integer', created_at: 'text' },
  user_recovery_codes: { user_id: 'text', code_hash: 'text' },
  hosts: {
    ...resourceColumns,
    spec: 'text',
    state: 'text',
    facts: 'text null',
    connected_at: 'text null',
    last_heartbeat_at: 'text null',
    cert_serial: 'text null',
    connected_to: 'text null',
  },
  join_tokens: {
    id: 'text',
    secret_hash: 'text',
    created_by: 'text',
    created_at: 'text',
    expires_at: 'text',
    used_at: 'text null',
    host_id: 'text null',
  },
  images: { ...resourceColumns, project: 'text', spec: 'text', status: 'text', public: 'integer' },
  machine_types: { ...resourceColumns, spec: 'text', builtin: 'integer' },
  instances: {
    ...resourceColumns,
    project: 'text',
    spec: 'text',
    status: 'text',
    host_id: 'text null',
    image_id: 'text',
    state: 'text',
    vcpus: 'integer',
    memory_mib: 'integer',
    disk_gib: 'integer',
    deleting: 'integer',
    generation: 'integer',
    restart_generation: 'integer',
    force_stop: 'integer',
  },
  networks: { ...resourceColumns, project: 'text', kind: 'text', spec: 'text', vni: 'integer' },
  nics: {
    id: 'text',
    project: 'text',
    instance_id: 'text',
    network_id: 'text',
    idx: 'integer',
    mac: 'text',
    ipv4: 'text null',
    ipv6: 'text null',
    rate_limit: 'text null',
    created_at: 'text',
    security_groups: 'text',
    filtering: 'integer',
  },
  floating_ips: {
    ...resourceColumns,
    project: 'text',
    network_id: 'text',
    address: 'text',
    instance_id: 'text null',
    nic_id: 'text null',
  },
  port_forwards: {
    ...resourceColumns,
    project: 'text',
    protocol: 'text',
    listen: 'text',
    port: 'integer',
    instance_id: 'text',
    nic_id: 'text',
    target_port: 'integer',
  },
  ip_addresses: { network_id: 'text', address: 'text', family: 'integer', nic_id: 'text null', created_at: 'text' },
  resource_labels: { resource_id: 'text', key: 'text', value: 'text' },
  history: {
    id: 'text',
    kind: 'text',
    resource_id: 'text',
    project: 'text null',
    revision: 'integer',
    action: 'text',
    actor: 'text',
    time: 'text',
    before: 'text null',
    after: 'text null',
  },
  operations: {
    id: 'text',
    project: 'text null',
    kind: 'text',
    status: 'text',
    progress: 'integer',
    message: 'text',
    resources: 'text',
    error: 'text null',
    created_by: 'text',
    created_at: 'text',
    updated_at: 'text',
    finished_at: 'text null',
    target_id: 'text null',
    target_generation: 'integer null',
    target_state: 'text null',
    undo: 'text null',
    transfer: 'text null',
  },
  events: {
    seq: 'integer',
    id: 'text',
    time: 'text',
    type: 'text',
    project: 'text null',
    kind: 'text',
    resource_id: 'text',
    data: 'text',
    actor: 'text null',
  },
  host_allocations: { host_id: 'text', instances: 'integer', vcpus: 'integer', memory_mib: 'integer' },
  idempotency_keys: {
    token_id: 'text',
    key: 'text',
    method: 'text',
    path: 'text',
    body_hash: 'text',
    status_code: 'integer',
    response: 'text',
    created_at: 'text',
    owner: 'text null',
    lease_until: 'text null',
  },
  audit_log: {
    id: 'text',
    at: 'text',
    action: 'text',
    outcome: 'text',
    status: 'integer null',
    error_code: 'text null',
    reason: 'text null',
    token_id: 'text null',
    user_id: 'text null',
    user_name: 'text null',
    authenticator: 'text null',
    source_address: 'text null',
    method: 'text null',
    route: 'text null',
    resource_kind: 'text null',
    resource_id: 'text null',
    project: 'text null',
    request_id: 'text null',
  },
  login_requests: {
    id: 'text',
    authenticator: 'text',
    state_hash: 'text',
    code_verifier: 'text',
    nonce: 'text',
    redirect_uri: 'text',
    poll_hash: 'text',
    user_code_hash: 'text',
    confirm_hash: 'text null',
    confirm_attempts: 'integer',
    confirmed_at: 'text null',
    session_name: 'text null',
    created_at: 'text',
    expires_at: 'text',
    completed_at: 'text null',
    result: 'text null',
    error: 'text null',
    consumed_at: 'text null',
  },
  meter_ranges: {
    id: 'text',
    project: 'text',
    resource_kind: 'text',
    resource_id: 'text',
    dimension: 'text',
    quantity: 'integer',
    started_at: 'text',
    ended_at: 'text null',
  },
  security_groups: { ...resourceColumns, project: 'text', description: 'text', spec: 'text' },
  vpn_pools: { ...resourceColumns, spec: 'text' },
  vpn_networks: {
    ...resourceColumns,
    project: 'text',
    pool_id: 'text',
    slot: 'integer',
    spec: 'text',
    public_key: 'text',
    private_key: 'text',
  },
  vpn_peers: {
    ...resourceColumns,
    project: 'text',
    vpn_network_id: 'text',
    host_index: 'integer',
    public_key: 'text',
    subnets: 'text',
    endpoint: 'text null',
  },
};
