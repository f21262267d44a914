import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sql, type Insertable, type Kysely } from 'kysely';
import {
  forUpdate,
  fromJson,
  isUniqueViolation,
  nowIso,
  openStore,
  toJson,
  transaction,
  TRANSACTION_RETRIES,
  type Store,
} from './index.js';
import { MIGRATION_TABLE, migrate } from './migrations.js';
import type { Database } from './schema.js';
import { SCHEMA_COLUMNS, storeTargets, storeTargetsFor, type TestStore } from './testing.js';

const T0 = '2025-01-02T03:04:05.678Z';

function resource(id: string, name: string) {
  return {
    id,
    name,
    labels: toJson({ env: 'prod' }),
    metadata: toJson({ note: 'ä 😀 "quoted"', nested: { a: [1, 2.5, null, true] } }),
    revision: 1,
    created_at: T0,
    updated_at: T0,
  };
}

function instance(id: string, name: string, project = 'alpha'): Insertable<Database['instances']> {
  return {
    ...resource(id, name),
    project,
    spec: toJson({ machine_type: 'small' }),
    status: toJson({ state: 'running' }),
    host_id: 'host_1',
    image_id: 'img_1',
    state: 'running',
    vcpus: 2,
    memory_mib: 2048,
    disk_gib: 20,
    deleting: 0,
    generation: 3,
    restart_generation: 1,
    force_stop: 1,
  };
}

function project(id: string, name: string): Insertable<Database['projects']> {
  return { ...resource(id, name), description: 'a project', parent_id: 'prj_parent' };
}

/** One full row per table, every nullable column set; the primary key columns name the row. */
const SAMPLES: { [K in keyof Database]: { pk: string[]; row: Record<string, unknown> } } = {
  projects: { pk: ['id'], row: project('prj_1', 'alpha') },
  users: {
    pk: ['id'],
    row: {
      id: 'usr_1',
      name: 'alice',
      display_name: 'Alice Ä',
      email: 'alice@example.org',
      disabled: 1,
      password_hash: '$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA',
      operator: 1,
      created_at: T0,
      updated_at: T0,
      source: 'corp-ldap',
      external_subject: 'alice',
    },
  },
  tokens: {
    pk: ['id'],
    row: {
      id: 'tok_1',
      name: 'ci',
      secret_hash: 'ab'.repeat(32),
      admin: 1,
      created_at: T0,
      expires_at: '2026-01-01T00:00:00.000Z',
      last_used_at: T0,
      revoked_at: T0,
      user_id: 'usr_1',
      scope: '{"kinds":["instance"],"resources":["inst_1"],"verbs":["power"]}',
      kind: 'session',
    },
  },
  project_limits: {
    pk: ['project_id', 'dimension'],
    row: { project_id: 'prj_1', dimension: 'vcpus', value: 8_000_000_000 },
  },
  token_projects: { pk: ['token_id', 'project_id'], row: { token_id: 'tok_1', project_id: 'prj_1' } },
  project_members: {
    pk: ['project_id', 'user_id'],
    row: { project_id: 'prj_1', user_id: 'usr_1', role: 'viewer', created_at: T0, via: 'mapping' },
  },
  user_totp: {
    pk: ['user_id'],
    row: { user_id: 'usr_1', secret: 'JBSWY3DPEHPK3PXP', confirmed_at: T0, last_step: 59_000_000, created_at: T0 },
  },
  user_recovery_codes: { pk: ['user_id', 'code_hash'], row: { user_id: 'usr_1', code_hash: 'ef'.repeat(32) } },
  hosts: {
    pk: ['id'],
    row: {
      ...resource('host_1', 'h1'),
      spec: toJson({ zone: 'a' }),
      state: 'online',
      facts: toJson({ cpus: 8 }),
      connected_at: T0,
      last_heartbeat_at: T0,
      cert_serial: '0a1b',
      connected_to: 'cp-1',
    },
  },
  join_tokens: {
    pk: ['id'],
    row: {
      id: 'jt_1',
      secret_hash: 'cd'.repeat(32),
      created_by: 'tok_1',
      created_at: T0,
      expires_at: T0,
      used_at: T0,
      host_id: 'host_1',
    },
  },
  images: {
    pk: ['id'],
    row: {
      ...resource('img_1', 'debian'),
      project: 'alpha',
      spec: toJson({ url: 'x' }),
      status: toJson({ ready: true }),
      public: 1,
    },
  },
  machine_types: { pk: ['id'], row: { ...resource('mt_1', 'small'), spec: toJson({ vcpus: 1 }), builtin: 1 } },
  instances: { pk: ['id'], row: instance('inst_1', 'web') },
  host_allocations: { pk: ['host_id'], row: { host_id: 'host_none', instances: 3, vcpus: 6, memory_mib: 3072 } },
  networks: {
    pk: ['id'],
    row: {
      ...resource('net_1', 'lan'),
      project: 'alpha',
      kind: 'private',
      spec: toJson({ ipv4: '10.0.0.0/24' }),
      vni: 4242,
    },
  },
  nics: {
    pk: ['id'],
    row: {
      id: 'nic_1',
      project: 'alpha',
      instance_id: 'inst_1',
      network_id: 'net_1',
      idx: 0,
      mac: '02:00:00:00:00:01',
      ipv4: '10.0.0.2',
      ipv6: null,
      rate_limit: toJson({ ingress_kbps: 10000 }),
      created_at: T0,
      security_groups: '["sg_1"]',
      filtering: 0,
    },
  },
  floating_ips: {
    pk: ['id'],
    row: {
      ...resource('fip_1', 'web'),
      project: 'alpha',
      network_id: 'net_1',
      address: '198.51.100.50',
      instance_id: 'inst_1',
      nic_id: 'nic_1',
    },
  },
  port_forwards: {
    pk: ['id'],
    row: {
      ...resource('pfw_1', 'ssh'),
      project: 'alpha',
      protocol: 'tcp',
      listen: 'fip_1',
      port: 2222,
      instance_id: 'inst_1',
      nic_id: 'nic_1',
      target_port: 22,
    },
  },
  ip_addresses: {
    pk: ['network_id', 'address'],
    row: { network_id: 'net_1', address: '10.0.0.2', family: 4, nic_id: null, created_at: T0 },
  },
  resource_labels: { pk: ['resource_id', 'key'], row: { resource_id: 'inst_1', key: 'env', value: 'prod' } },
  history: {
    pk: ['id'],
    row: {
      id: 'hist_1',
      kind: 'instance',
      resource_id: 'inst_1',
      project: 'alpha',
      revision: 2,
      action: 'update',
      actor: 'tok_1',
      time: T0,
      before: toJson({ a: 1 }),
      after: toJson({ a: 2 }),
    },
  },
  operations: {
    pk: ['id'],
    row: {
      id: 'op_1',
      project: 'alpha',
      kind: 'instance.create',
      status: 'pending',
      progress: 40,
      message: 'placing',
      resources: toJson([{ kind: 'instance', id: 'inst_1' }]),
      error: toJson({ code: 'internal_error', message: 'x' }),
      created_by: 'tok_1',
      created_at: T0,
      updated_at: T0,
      finished_at: T0,
      target_id: 'inst_1',
      target_generation: 3,
      target_state: 'running',
      undo: toJson({ delete: 'inst_1' }),
      transfer: toJson({ done_bytes: 10, total_bytes: 100 }),
    },
  },
  events: {
    pk: ['id'],
    row: {
      id: 'evt_1',
      time: T0,
      type: 'instance.created',
      project: 'alpha',
      kind: 'instance',
      resource_id: 'inst_1',
      data: toJson({ x: 1 }),
      actor: 'tok_1',
    },
  },
  idempotency_keys: {
    pk: ['token_id', 'key'],
    row: {
      token_id: 'tok_1',
      key: 'k-1',
      method: 'POST',
      path: '/v1/projects',
      body_hash: 'ef'.repeat(32),
      status_code: 201,
      response: toJson({ id: 'prj_1' }),
      created_at: T0,
      owner: 'a3c0e2f4-5b6d-4e8f-9a1b-2c3d4e5f6a7b',
      lease_until: T0,
    },
  },
  audit_log: {
    pk: ['id'],
    row: {
      id: 'aud_1',
      at: T0,
      action: 'instance.create',
      outcome: 'error',
      status: 409,
      error_code: 'name_conflict',
      reason: 'taken',
      token_id: 'tok_1',
      user_id: 'usr_1',
      user_name: 'ada',
      authenticator: 'token',
      source_address: '127.0.0.1',
      method: 'POST',
      route: '/v1/instances',
      resource_kind: 'instance',
      resource_id: 'inst_1',
      project: 'alpha',
      request_id: 'req-1',
    },
  },
  login_requests: {
    pk: ['id'],
    row: {
      id: 'lgn_AAAAAAAAAAAAAAAAAAAAAA',
      authenticator: 'corp',
      state_hash: 'ab'.repeat(32),
      code_verifier: 'v'.repeat(43),
      nonce: 'n'.repeat(43),
      redirect_uri: 'https://floe.example.org/v1/auth/oidc/callback',
      poll_hash: 'cd'.repeat(32),
      user_code_hash: 'ef'.repeat(32),
      confirm_hash: '12'.repeat(32),
      confirm_attempts: 2,
      confirmed_at: T0,
      session_name: 'cli',
      created_at: T0,
      expires_at: T0,
      completed_at: T0,
      result: toJson({ subject: 'u-1' }),
      error: 'oidc: provider answered access_denied',
      consumed_at: T0,
    },
  },
  meter_ranges: {
    pk: ['id'],
    row: {
      id: 'mtr_1',
      project: 'alpha',
      resource_kind: 'image',
      resource_id: 'img_1',
      dimension: 'image_bytes',
      quantity: 5 * 1024 ** 3,
      started_at: T0,
      ended_at: T0,
    },
  },
  security_groups: {
    pk: ['id'],
    row: {
      id: 'sg_1',
      name: 'web',
      labels: '{"tier":"front"}',
      metadata: '{}',
      revision: 2,
      created_at: T0,
      updated_at: T0,
      project: 'alpha',
      description: 'front ends',
      spec: '{"ingress_default":"deny","egress_default":"allow","rules":[]}',
    },
  },
  vpn_pools: {
    pk: ['id'],
    row: { ...resource('vpool_1', 'edge'), spec: '{"ipv6":"fd00:1::/40","network_prefix":48}' },
  },
  vpn_networks: {
    pk: ['id'],
    row: {
      ...resource('vnet_1', 'office'),
      project: 'alpha',
      pool_id: 'vpool_1',
      slot: 3,
      spec: '{"networks":["net_1"]}',
      public_key: 'x'.repeat(43) + '=',
      private_key: 'v1:sealed',
    },
  },
  vpn_peers: {
    pk: ['id'],
    row: {
      ...resource('vpeer_1', 'laptop'),
      project: 'alpha',
      vpn_network_id: 'vnet_1',
      host_index: 2,
      public_key: 'y'.repeat(43) + '=',
      subnets: '["10.1.0.0/24"]',
      endpoint: 'site-b.example.org:51820',
    },
  },
};

/** Non-primary-key indexes as `unique|index table(columns)`, plus composite primary keys as `primary ...`. */
const EXPECTED_INDEXES = [
  'unique projects(name)',
  'index projects(parent_id)',
  'primary project_limits(project_id,dimension)',
  'unique tokens(secret_hash)',
  'primary token_projects(token_id,project_id)',
  'index token_projects(project_id)',
  'unique users(name)',
  'primary project_members(project_id,user_id)',
  'index project_members(user_id)',
  'index tokens(user_id)',
  'unique users(source,external_subject)',
  'primary user_recovery_codes(user_id,code_hash)',
  'unique hosts(name)',
  'unique join_tokens(secret_hash)',
  'unique images(project,name)',
  'index images(project,id)',
  'index images(public)',
  'unique machine_types(name)',
  'unique instances(project,name)',
  'index instances(project,id)',
  'index instances(host_id)',
  'index instances(image_id)',
  'primary resource_labels(resource_id,key)',
  'index resource_labels(key,value,resource_id)',
  'index history(resource_id,revision)',
  'index operations(target_id,status)',
  'index operations(project,id)',
  'index events(project,seq)',
  'primary idempotency_keys(token_id,key)',
  'index idempotency_keys(created_at)',
  'unique networks(project,name)',
  'unique networks(vni)',
  'unique nics(instance_id,idx)',
  'unique nics(network_id,mac)',
  'unique floating_ips(project,name)',
  'index floating_ips(nic_id)',
  'unique port_forwards(project,name)',
  'unique port_forwards(listen,protocol,port)',
  'index port_forwards(nic_id)',
  'unique ip_addresses(network_id,address)',
  'index ip_addresses(nic_id)',
  'index audit_log(at)',
  'index audit_log(token_id,id)',
  'index audit_log(resource_id,id)',
  'unique login_requests(state_hash)',
  'unique login_requests(confirm_hash)',
  'index login_requests(expires_at)',
  'unique meter_ranges(resource_id,dimension)',
  'index meter_ranges(project,started_at)',
  'unique security_groups(project,name)',
  'unique vpn_pools(name)',
  'unique vpn_networks(project,name)',
  'unique vpn_networks(pool_id,slot)',
  'unique vpn_peers(project,name)',
  'unique vpn_peers(vpn_network_id,host_index)',
  'unique vpn_peers(public_key)',
].sort();

async function indexesOf(store: Store): Promise<string[]> {
  const tables = new Set(Object.keys(SCHEMA_COLUMNS));
  const out: string[] = [];
  if (store.dialect === 'sqlite') {
    for (const table of tables) {
      const list = await sql<{
        name: string;
        unique: number;
        origin: string;
      }>`select * from pragma_index_list(${table})`.execute(store.db);
      for (const ix of list.rows) {
        const cols = await sql<{ name: string }>`select name from pragma_index_info(${ix.name}) order by seqno`.execute(
          store.db,
        );
        const kind = ix.origin === 'pk' ? 'primary' : ix.unique ? 'unique' : 'index';
        out.push(`${kind} ${table}(${cols.rows.map((c) => c.name).join(',')})`);
      }
    }
  } else {
    const res = await sql<{ table: string; unique: boolean; primary: boolean; columns: string[] }>`
      select t.relname as table, ix.indisunique as unique, ix.indisprimary as primary,
        array(select a.attname::text from unnest(ix.indkey::int2[]) with ordinality k(attnum, ord)
              join pg_attribute a on a.attrelid = t.oid and a.attnum = k.attnum order by k.ord) as columns
      from pg_index ix
      join pg_class t on t.oid = ix.indrelid
      join pg_namespace n on n.oid = t.relnamespace
      where n.nspname = current_schema()`.execute(store.db);
    for (const ix of res.rows) {
      if (!tables.has(ix.table)) continue;
      const kind = ix.primary ? 'primary' : ix.unique ? 'unique' : 'index';
      out.push(`${kind} ${ix.table}(${ix.columns.join(',')})`);
    }
  }
  // Single-column primary keys differ by design (SQLite's integer primary key is the rowid, no index).
  return out.filter((s) => !(s.startsWith('primary ') && !s.includes(','))).sort();
}

function normalizeType(dataType: string): string {
  const t = dataType.toLowerCase();
  if (['integer', 'int4', 'int8', 'bigint', 'bigserial'].includes(t)) return 'integer';
  return t;
}

function caught(p: Promise<unknown>): Promise<unknown> {
  return p.then(
    () => {
      throw new Error('expected the statement to fail');
    },
    (err: unknown) => err,
  );
}

function randomKey(n: number): string {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-';
  return Array.from(randomBytes(n), (b) => alphabet[b % alphabet.length]).join('');
}

describe('store helpers', () => {
  it('round-trips JSON and maps NULL to null', () => {
    const value = { a: [1, 'two', { three: null }], b: 'ä' };
    expect(fromJson<typeof value>(toJson(value))).toEqual(value);
    expect(fromJson(null)).toBeNull();
    expect(() => toJson(undefined)).toThrow(TypeError);
  });

  it('formats times as ISO 8601 UTC with milliseconds', () => {
    expect(nowIso()).toMatch(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/);
    expect(Math.abs(Date.parse(nowIso()) - Date.now())).toBeLessThan(1000);
  });

  it('recognises unique violations by driver code only', () => {
    expect(isUniqueViolation({ code: 'SQLITE_CONSTRAINT_UNIQUE' })).toBe(true);
    expect(isUniqueViolation({ code: 'SQLITE_CONSTRAINT_PRIMARYKEY' })).toBe(true);
    expect(isUniqueViolation({ code: '23505' })).toBe(true);
    expect(isUniqueViolation({ code: 'SQLITE_CONSTRAINT_NOTNULL' })).toBe(false);
    expect(isUniqueViolation({ code: '23502' })).toBe(false);
    expect(isUniqueViolation(new Error('UNIQUE constraint failed'))).toBe(false);
    expect(isUniqueViolation(null)).toBe(false);
  });

  it('fails an unreachable PostgreSQL under CI and skips it otherwise', async () => {
    const unreachable = 'postgres://postgres@127.0.0.1:1/postgres';
    const local = storeTargetsFor({ FLOE_TEST_DATABASE_URL: unreachable }).find((t) => t.name === 'postgres');
    expect(local?.skip).toMatch(/unreachable/);
    const ci = storeTargetsFor({ FLOE_TEST_DATABASE_URL: unreachable, CI: 'true' }).find((t) => t.name === 'postgres');
    expect(ci?.skip).toBeNull();
    await expect(ci!.open()).rejects.toThrow(/unreachable and CI is set/);
  });
});

for (const t of storeTargets()) {
  describe.skipIf(t.skip)(`store on ${t.name}`, () => {
    let store: TestStore;
    let db: Kysely<Database>;
    // Rows of every table, without the typing per table name.
    let anyDb: Kysely<any>;

    beforeAll(async () => {
      store = await t.open();
      db = store.db;
      anyDb = store.db;
    });
    afterAll(async () => {
      await store?.close();
    });

    it('creates every column of schema.ts with its type and nullability', async () => {
      const tables = await db.introspection.getTables();
      const actual: Record<string, Record<string, string>> = {};
      for (const table of tables) {
        if (!(table.name in SCHEMA_COLUMNS)) continue;
        actual[table.name] = Object.fromEntries(
          table.columns.map((c) => [c.name, normalizeType(c.dataType) + (c.isNullable ? ' null' : '')]),
        );
      }
      expect(actual).toEqual(SCHEMA_COLUMNS);
    });

    it('creates the indexes the queries rely on', async () => {
      expect(await indexesOf(store)).toEqual(EXPECTED_INDEXES);
    });

    it('applies migrations once; opening again changes nothing and keeps the data', async () => {
      await db.insertInto('projects').values(project('prj_keep', 'keep')).execute();
      expect(await migrate(db, store.dialect)).toEqual([]);
      const again = await openStore(store.options);
      try {
        expect(again.dialect).toBe(t.name);
        const row = await again.db
          .selectFrom('projects')
          .select('name')
          .where('id', '=', 'prj_keep')
          .executeTakeFirst();
        expect(row?.name).toBe('keep');
        const applied = await sql<{ name: string }>`select name from ${sql.table(MIGRATION_TABLE)}`.execute(again.db);
        expect(applied.rows.map((r) => r.name)).toEqual([
          '0001_initial',
          '0002_networks',
          '0003_image_imports',
          '0004_host_allocations',
          '0005_token_grant_ids',
          '0006_idempotency_leases',
          '0007_users',
          '0008_audit',
          '0009_token_scopes',
          '0010_logins',
          '0011_login_requests',
          '0012_quotas',
          '0013_metering',
          '0014_instance_disk',
          '0015_security_groups',
          '0016_nat_and_rate_limits',
          '0017_vpn',
          '0022_image_public',
          '0023_event_actor',
        ]);
      } finally {
        await again.close();
      }
    });

    it('round-trips a row of every table: JSON text, 0/1 booleans, ISO times, NULLs', async () => {
      for (const [table, { pk, row }] of Object.entries(SAMPLES)) {
        const columns = SCHEMA_COLUMNS[table as keyof Database] as Record<string, string>;
        // The same row again with every nullable column NULL, under a different key.
        const nulled: Record<string, unknown> = { ...row };
        for (const [col, kind] of Object.entries(columns)) if (kind.endsWith(' null')) nulled[col] = null;
        for (const c of pk) nulled[c] = `${String(row[c])}_nulls`;
        if (table === 'projects' || table === 'hosts' || table === 'machine_types' || table === 'users')
          nulled.name = 'other';
        if (table === 'images' || table === 'instances' || table === 'security_groups') nulled.name = 'other';
        if (table === 'tokens' || table === 'join_tokens') nulled.secret_hash = '00'.repeat(32);
        if (table === 'login_requests') nulled.state_hash = '00'.repeat(32);
        if (table === 'networks') Object.assign(nulled, { name: 'other', vni: 4243 });
        if (table === 'nics') Object.assign(nulled, { idx: 1, mac: '02:00:00:00:00:02' });
        if (table === 'vpn_pools') nulled.name = 'other';
        if (table === 'vpn_networks') Object.assign(nulled, { name: 'other', slot: 4 });
        if (table === 'vpn_peers')
          Object.assign(nulled, { name: 'other', host_index: 3, public_key: `${'z'.repeat(43)}=` });
        if (table === 'floating_ips') nulled.name = 'other';
        if (table === 'port_forwards') Object.assign(nulled, { name: 'other', port: 2223 });

        for (const sample of [row, nulled]) {
          await anyDb.insertInto(table).values(sample).execute();
          let q = anyDb.selectFrom(table).selectAll();
          for (const c of pk) q = q.where(c, '=', sample[c]);
          const got = (await q.execute()) as Record<string, unknown>[];
          expect(got).toHaveLength(1);
          const { seq, ...rest } = got[0]!;
          expect(rest, table).toEqual(sample);
          if (table === 'events') expect(typeof seq).toBe('number');
        }
      }
      const tok = await db.selectFrom('tokens').selectAll().where('id', '=', 'tok_1').executeTakeFirstOrThrow();
      expect(tok.admin).toBe(1);
      const inst = await db.selectFrom('instances').selectAll().where('id', '=', 'inst_1').executeTakeFirstOrThrow();
      expect(fromJson(inst.metadata)).toEqual({ note: 'ä 😀 "quoted"', nested: { a: [1, 2.5, null, true] } });
      expect(inst.created_at).toBe(T0);
      expect(typeof inst.vcpus).toBe('number');
    });

    it('reports duplicate names as unique violations, and nothing else as one', async () => {
      await db.insertInto('projects').values(project('prj_u1', 'dup')).execute();
      const dupName = await caught(db.insertInto('projects').values(project('prj_u2', 'dup')).execute());
      expect(isUniqueViolation(dupName)).toBe(true);
      const dupId = await caught(db.insertInto('projects').values(project('prj_u1', 'dup2')).execute());
      expect(isUniqueViolation(dupId)).toBe(true);

      await db
        .insertInto('instances')
        .values(instance('inst_u1', 'db', 'p1'))
        .execute();
      await db
        .insertInto('instances')
        .values(instance('inst_u2', 'db', 'p2'))
        .execute();
      const dupInst = await caught(
        db
          .insertInto('instances')
          .values(instance('inst_u3', 'db', 'p1'))
          .execute(),
      );
      expect(isUniqueViolation(dupInst)).toBe(true);

      const notNull = await caught(
        anyDb
          .insertInto('projects')
          .values({ ...project('prj_u4', 'nn'), description: null })
          .execute(),
      );
      expect(isUniqueViolation(notNull)).toBe(false);

      // Token names are labels, not identities.
      const token = { ...(SAMPLES.tokens.row as Insertable<Database['tokens']>), name: 'shared' };
      await db
        .insertInto('tokens')
        .values({ ...token, id: 'tok_s1', secret_hash: 's1' })
        .execute();
      await db
        .insertInto('tokens')
        .values({ ...token, id: 'tok_s2', secret_hash: 's2' })
        .execute();
      const shared = await db.selectFrom('tokens').select('id').where('name', '=', 'shared').execute();
      expect(shared).toHaveLength(2);
    });

    it('numbers events with strictly increasing JS numbers', async () => {
      const event = (i: number) => ({
        id: `evt_seq_${i}`,
        time: nowIso(),
        type: 'test',
        project: i % 2 ? 'alpha' : null,
        kind: 'instance',
        resource_id: 'inst_1',
        data: toJson({ i }),
      });
      const seqs: number[] = [];
      for (let i = 0; i < 30; i++) {
        const { seq } = await db.insertInto('events').values(event(i)).returning('seq').executeTakeFirstOrThrow();
        expect(typeof seq).toBe('number');
        seqs.push(seq);
      }
      for (let i = 1; i < seqs.length; i++) expect(seqs[i]!).toBeGreaterThan(seqs[i - 1]!);

      // Deleting the newest must not hand its number out again.
      await db.deleteFrom('events').where('seq', '=', seqs.at(-1)!).execute();
      const next = await db.insertInto('events').values(event(99)).returning('seq').executeTakeFirstOrThrow();
      expect(next.seq).toBeGreaterThan(seqs.at(-1)!);

      const rows = await db
        .selectFrom('events')
        .select('seq')
        .where('id', 'like', 'evt_seq_%')
        .orderBy('seq')
        .execute();
      expect(rows.every((r) => typeof r.seq === 'number')).toBe(true);
      const { n, top } = await db
        .selectFrom('events')
        .select((eb) => [eb.fn.countAll().as('n'), eb.fn.max('seq').as('top')])
        .executeTakeFirstOrThrow();
      expect(typeof n).toBe('number');
      expect(typeof top).toBe('number');
      expect(top).toBe(next.seq);
    });

    it('rolls back everything when the transaction throws', async () => {
      await expect(
        transaction(store, async (trx) => {
          await trx.insertInto('projects').values(project('prj_rb', 'rolled-back')).execute();
          await trx.insertInto('instances').values(instance('inst_rb', 'rb')).execute();
          throw new Error('boom');
        }),
      ).rejects.toThrow('boom');
      expect(await db.selectFrom('projects').select('id').where('id', '=', 'prj_rb').execute()).toEqual([]);
      expect(await db.selectFrom('instances').select('id').where('id', '=', 'inst_rb').execute()).toEqual([]);
    });

    it('loses no update when 20 transactions read-modify-write one row at once', async () => {
      await db.insertInto('projects').values(project('prj_ctr', 'counter')).execute();
      await Promise.all(
        Array.from({ length: 20 }, () =>
          transaction(store, async (trx) => {
            const row = await forUpdate(
              trx.selectFrom('projects').select('revision').where('id', '=', 'prj_ctr'),
            ).executeTakeFirstOrThrow();
            await sleep(2); // let the others read in between, if they could
            await trx
              .updateTable('projects')
              .set({ revision: row.revision + 1, updated_at: nowIso() })
              .where('id', '=', 'prj_ctr')
              .execute();
          }),
        ),
      );
      const { revision } = await db
        .selectFrom('projects')
        .select('revision')
        .where('id', '=', 'prj_ctr')
        .executeTakeFirstOrThrow();
      expect(revision).toBe(21);
    });

    it('locks rows with FOR UPDATE on PostgreSQL and drops the clause on SQLite', () => {
      const compiled = forUpdate(db.selectFrom('projects').selectAll().where('id', '=', 'x')).compile().sql;
      if (t.name === 'postgres') expect(compiled).toMatch(/ for update$/);
      else expect(compiled).not.toMatch(/for update/i);
    });

    it('runs the transaction again after a serialization failure, and gives up after the retries', async () => {
      let attempts = 0;
      const result = await transaction(store, async (trx) => {
        attempts++;
        // A rolled-back attempt leaves nothing behind, or the next insert would collide.
        await trx.insertInto('projects').values(project('prj_retry', 'retry')).execute();
        if (attempts < 3)
          throw Object.assign(new Error('could not serialize access'), { code: attempts === 1 ? '40001' : '40P01' });
        return 'done';
      });
      expect(result).toBe('done');
      expect(attempts).toBe(3);

      attempts = 0;
      await expect(
        transaction(store, async () => {
          attempts++;
          throw Object.assign(new Error('still conflicting'), { code: '40001' });
        }),
      ).rejects.toThrow('still conflicting');
      expect(attempts).toBe(TRANSACTION_RETRIES + 1);

      attempts = 0;
      await expect(
        transaction(store, async () => {
          attempts++;
          throw Object.assign(new Error('unique'), { code: '23505' });
        }),
      ).rejects.toThrow('unique');
      expect(attempts).toBe(1);
    });

    it.skipIf(t.name !== 'postgres')('recovers from a real deadlock by retrying the victim', async () => {
      await db
        .insertInto('projects')
        .values([project('prj_dl_a', 'dl-a'), project('prj_dl_b', 'dl-b')])
        .execute();
      const barrier = () => {
        let open!: () => void;
        const opened = new Promise<void>((r) => (open = r));
        return { open, opened };
      };
      const aLocked = barrier();
      const bLocked = barrier();
      let attempts = 0;
      const bump = (first: string, second: string, mine: typeof aLocked, theirs: typeof aLocked) =>
        transaction(store, async (trx) => {
          attempts++;
          await forUpdate(trx.selectFrom('projects').select('id').where('id', '=', first)).execute();
          mine.open();
          await theirs.opened;
          await forUpdate(trx.selectFrom('projects').select('id').where('id', '=', second)).execute();
          await trx
            .updateTable('projects')
            .set((eb) => ({ revision: eb('revision', '+', 1) }))
            .where('id', 'in', [first, second])
            .execute();
        });
      await Promise.all([
        bump('prj_dl_a', 'prj_dl_b', aLocked, bLocked),
        bump('prj_dl_b', 'prj_dl_a', bLocked, aLocked),
      ]);
      expect(attempts).toBe(3);
      const rows = await db
        .selectFrom('projects')
        .select('revision')
        .where('id', 'in', ['prj_dl_a', 'prj_dl_b'])
        .execute();
      expect(rows.map((r) => r.revision)).toEqual([3, 3]);
    });

    it('filters resources through the label side table', async () => {
      const labelled: Array<[string, Record<string, string>]> = [
        ['inst_l1', { env: 'prod', tier: 'web' }],
        ['inst_l2', { env: 'prod', tier: 'db' }],
        ['inst_l3', { env: 'dev', tier: 'web' }],
        ['inst_l4', {}],
      ];
      for (const [id, labels] of labelled) {
        await transaction(store, async (trx) => {
          await trx
            .insertInto('instances')
            .values({ ...instance(id, id.replace('_', '-'), 'labels'), labels: toJson(labels) })
            .execute();
          const rows = Object.entries(labels).map(([key, value]) => ({ resource_id: id, key, value }));
          if (rows.length > 0) await trx.insertInto('resource_labels').values(rows).execute();
        });
      }
      const withLabel = (key: string, value: string) =>
        db.selectFrom('resource_labels').select('resource_id').where('key', '=', key).where('value', '=', value);
      const ids = async (...selectors: Array<[string, string]>) => {
        let q = db.selectFrom('instances').select('id').where('project', '=', 'labels');
        for (const [k, v] of selectors) q = q.where('id', 'in', withLabel(k, v));
        return (await q.orderBy('id').execute()).map((r) => r.id);
      };
      expect(await ids(['env', 'prod'])).toEqual(['inst_l1', 'inst_l2']);
      expect(await ids(['env', 'prod'], ['tier', 'web'])).toEqual(['inst_l1']);
      expect(await ids(['tier', 'web'])).toEqual(['inst_l1', 'inst_l3']);
      expect(await ids(['env', 'staging'])).toEqual([]);
      expect(await ids()).toEqual(['inst_l1', 'inst_l2', 'inst_l3', 'inst_l4']);
    });

    it('pages through 1000 rows by keyset in byte order', async () => {
      // Mixed case, digits, '_' and '-': locale collations would order these differently from bytes.
      const all = Array.from({ length: 1000 }, (_, i) => `k${randomKey(10)}${i}`);
      await transaction(store, async (trx) => {
        for (let i = 0; i < all.length; i += 200) {
          await trx
            .insertInto('instances')
            .values(all.slice(i, i + 200).map((id, j) => instance(id, `n-${i + j}`, 'paging')))
            .execute();
        }
      });
      const expected = [...all].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
      const seen: string[] = [];
      let cursor = '';
      let pages = 0;
      for (;;) {
        const page = await db
          .selectFrom('instances')
          .select('id')
          .where('project', '=', 'paging')
          .where('id', '>', cursor)
          .orderBy('id')
          .limit(37)
          .execute();
        if (page.length === 0) break;
        pages++;
        seen.push(...page.map((r) => r.id));
        cursor = page.at(-1)!.id;
      }
      expect(pages).toBe(Math.ceil(1000 / 37));
      expect(seen).toEqual(expected);
    });

    it('migrates a fresh database once even when two control planes open it together', async () => {
      const fresh = await t.open({ migrate: false });
      try {
        const before = await fresh.db.introspection.getTables();
        expect(before.map((x) => x.name)).not.toContain('projects');
        const open2 = async () => {
          if (t.name === 'postgres') return Promise.all([openStore(fresh.options), openStore(fresh.options)]);
          // Two SQLite handles in one process would block each other's event loop; processes take turns.
          return [await openStore(fresh.options), await openStore(fresh.options)];
        };
        const opened = await open2();
        for (const s of opened) await s.close();
        const applied = await sql<{ name: string }>`select name from ${sql.table(MIGRATION_TABLE)}`.execute(fresh.db);
        expect(applied.rows.map((r) => r.name)).toEqual([
          '0001_initial',
          '0002_networks',
          '0003_image_imports',
          '0004_host_allocations',
          '0005_token_grant_ids',
          '0006_idempotency_leases',
          '0007_users',
          '0008_audit',
          '0009_token_scopes',
          '0010_logins',
          '0011_login_requests',
          '0012_quotas',
          '0013_metering',
          '0014_instance_disk',
          '0015_security_groups',
          '0016_nat_and_rate_limits',
          '0017_vpn',
          '0022_image_public',
          '0023_event_actor',
        ]);
        expect(await migrate(fresh.db, fresh.dialect)).toEqual([]);
      } finally {
        await fresh.close();
      }
    });
  });
}
