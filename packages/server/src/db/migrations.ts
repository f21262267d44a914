import { Migrator, sql, type CreateTableBuilder, type Kysely, type Migration, type MigrationProvider } from 'kysely';
import type { Dialect } from './dialect.js';
import { tokenGrantIds } from './migrations/0005_token_grant_ids.js';
import { idempotencyLeases } from './migrations/0006_idempotency_leases.js';
import { users } from './migrations/0007_users.js';
import { auditLog } from './migrations/0008_audit.js';
import { tokenScopes } from './migrations/0009_token_scopes.js';
import { logins } from './migrations/0010_logins.js';
import { loginRequests } from './migrations/0011_login_requests.js';
import { quotas } from './migrations/0012_quotas.js';
import { metering } from './migrations/0013_metering.js';
import { instanceDisk } from './migrations/0014_instance_disk.js';
import { securityGroups } from './migrations/0015_security_groups.js';
import { natAndRateLimits } from './migrations/0016_nat_and_rate_limits.js';
import { vpn } from './migrations/0017_vpn.js';
import { imagePublic } from './migrations/0022_image_public.js';
import { eventActor } from './migrations/0023_event_actor.js';

/** Table where applied migrations are recorded. */
export const MIGRATION_TABLE = 'floe_migrations';
/** Table Kysely's Migrator uses as its lock row. */
const MIGRATION_LOCK_TABLE = 'floe_migrations_lock';

// Kysely's builders are typed per table; migrations describe history, not the current schema.
/* eslint-disable @typescript-eslint/no-explicit-any -- the schema of a past migration has no type of its own */
type AnyDb = Kysely<any>;
type AnyTable = CreateTableBuilder<any, any>;
/* eslint-enable @typescript-eslint/no-explicit-any */

/**
 * Text columns compare bytewise on both dialects: SQLite's default collation is binary, and on
 * PostgreSQL `COLLATE "C"` keeps ordering (keyset pagination by id or name) independent of the
 * database's locale, so a cursor means the same on either store.
 */
function textType(dialect: Dialect) {
  return dialect === 'postgres' ? sql`text collate "C"` : sql`text`;
}

// Columns every named resource has (ResourceRow).
function resourceColumns(t: AnyTable, text: ReturnType<typeof textType>): AnyTable {
  return t
    .addColumn('id', text, (c) => c.primaryKey().notNull())
    .addColumn('name', text, (c) => c.notNull())
    .addColumn('labels', text, (c) => c.notNull())
    .addColumn('metadata', text, (c) => c.notNull())
    .addColumn('revision', 'integer', (c) => c.notNull())
    .addColumn('created_at', text, (c) => c.notNull())
    .addColumn('updated_at', text, (c) => c.notNull());
}

function initial(dialect: Dialect): Migration {
  const text = textType(dialect);
  return {
    async up(db: AnyDb) {
      await resourceColumns(db.schema.createTable('projects'), text)
        .addColumn('description', text, (c) => c.notNull())
        .execute();
      await db.schema.createIndex('projects_name_key').unique().on('projects').column('name').execute();

      await db.schema
        .createTable('tokens')
        .addColumn('id', text, (c) => c.primaryKey().notNull())
        .addColumn('name', text, (c) => c.notNull())
        .addColumn('secret_hash', text, (c) => c.notNull())
        .addColumn('admin', 'integer', (c) => c.notNull())
        .addColumn('projects', text, (c) => c.notNull())
        .addColumn('created_at', text, (c) => c.notNull())
        .addColumn('expires_at', text)
        .addColumn('last_used_at', text)
        .addColumn('revoked_at', text)
        .execute();
      await db.schema.createIndex('tokens_secret_hash_key').unique().on('tokens').column('secret_hash').execute();

      await resourceColumns(db.schema.createTable('hosts'), text)
        .addColumn('spec', text, (c) => c.notNull())
        .addColumn('state', text, (c) => c.notNull())
        .addColumn('facts', text)
        .addColumn('connected_at', text)
        .addColumn('last_heartbeat_at', text)
        .addColumn('cert_serial', text)
        .addColumn('connected_to', text)
        .execute();
      await db.schema.createIndex('hosts_name_key').unique().on('hosts').column('name').execute();

      await db.schema
        .createTable('join_tokens')
        .addColumn('id', text, (c) => c.primaryKey().notNull())
        .addColumn('secret_hash', text, (c) => c.notNull())
        .addColumn('created_by', text, (c) => c.notNull())
        .addColumn('created_at', text, (c) => c.notNull())
        .addColumn('expires_at', text, (c) => c.notNull())
        .addColumn('used_at', text)
        .addColumn('host_id', text)
        .execute();
      await db.schema
        .createIndex('join_tokens_secret_hash_key')
        .unique()
        .on('join_tokens')
        .column('secret_hash')
        .execute();

      await resourceColumns(db.schema.createTable('images'), text)
        .addColumn('project', text, (c) => c.notNull())
        .addColumn('spec', text, (c) => c.notNull())
        .addColumn('status', text, (c) => c.notNull())
        .execute();
      await db.schema
        .createIndex('images_project_name_key')
        .unique()
        .on('images')
        .columns(['project', 'name'])
        .execute();
      await db.schema.createIndex('images_project_id_idx').on('images').columns(['project', 'id']).execute();

      await resourceColumns(db.schema.createTable('machine_types'), text)
        .addColumn('spec', text, (c) => c.notNull())
        .addColumn('builtin', 'integer', (c) => c.notNull())
        .execute();
      await db.schema.createIndex('machine_types_name_key').unique().on('machine_types').column('name').execute();

      await resourceColumns(db.schema.createTable('instances'), text)
        .addColumn('project', text, (c) => c.notNull())
        .addColumn('spec', text, (c) => c.notNull())
        .addColumn('status', text, (c) => c.notNull())
        .addColumn('host_id', text)
        .addColumn('image_id', text, (c) => c.notNull())
        .addColumn('state', text, (c) => c.notNull())
        .addColumn('vcpus', 'integer', (c) => c.notNull())
        .addColumn('memory_mib', 'integer', (c) => c.notNull())
        .addColumn('deleting', 'integer', (c) => c.notNull())
        .addColumn('generation', 'integer', (c) => c.notNull())
        .addColumn('restart_generation', 'integer', (c) => c.notNull())
        .addColumn('force_stop', 'integer', (c) => c.notNull())
        .execute();
      await db.schema
        .createIndex('instances_project_name_key')
        .unique()
        .on('instances')
        .columns(['project', 'name'])
        .execute();
      await db.schema.createIndex('instances_project_id_idx').on('instances').columns(['project', 'id']).execute();
      await db.schema.createIndex('instances_host_id_idx').on('instances').column('host_id').execute();
      await db.schema.createIndex('instances_image_id_idx').on('instances').column('image_id').execute();

      await db.schema
        .createTable('resource_labels')
        .addColumn('resource_id', text, (c) => c.notNull())
        .addColumn('key', text, (c) => c.notNull())
        .addColumn('value', text, (c) => c.notNull())
        .addPrimaryKeyConstraint('resource_labels_pkey', ['resource_id', 'key'])
        .execute();
      await db.schema
        .createIndex('resource_labels_key_value_idx')
        .on('resource_labels')
        .columns(['key', 'value', 'resource_id'])
        .execute();

      await db.schema
        .createTable('history')
        .addColumn('id', text, (c) => c.primaryKey().notNull())
        .addColumn('kind', text, (c) => c.notNull())
        .addColumn('resource_id', text, (c) => c.notNull())
        .addColumn('project', text)
        .addColumn('revision', 'integer', (c) => c.notNull())
        .addColumn('action', text, (c) => c.notNull())
        .addColumn('actor', text, (c) => c.notNull())
        .addColumn('time', text, (c) => c.notNull())
        .addColumn('before', text)
        .addColumn('after', text)
        .execute();
      await db.schema
        .createIndex('history_resource_id_revision_idx')
        .on('history')
        .columns(['resource_id', 'revision'])
        .execute();

      await db.schema
        .createTable('operations')
        .addColumn('id', text, (c) => c.primaryKey().notNull())
        .addColumn('project', text)
        .addColumn('kind', text, (c) => c.notNull())
        .addColumn('status', text, (c) => c.notNull())
        .addColumn('progress', 'integer', (c) => c.notNull())
        .addColumn('message', text, (c) => c.notNull())
        .addColumn('resources', text, (c) => c.notNull())
        .addColumn('error', text)
        .addColumn('created_by', text, (c) => c.notNull())
        .addColumn('created_at', text, (c) => c.notNull())
        .addColumn('updated_at', text, (c) => c.notNull())
        .addColumn('finished_at', text)
        .addColumn('target_id', text)
        .addColumn('target_generation', 'integer')
        .addColumn('target_state', text)
        .addColumn('undo', text)
        .execute();
      await db.schema
        .createIndex('operations_target_id_status_idx')
        .on('operations')
        .columns(['target_id', 'status'])
        .execute();
      await db.schema.createIndex('operations_project_id_idx').on('operations').columns(['project', 'id']).execute();

      // The one auto-increment column: SQLite's AUTOINCREMENT never reuses a seq, even after deletes.
      await db.schema
        .createTable('events')
        .addColumn('seq', dialect === 'postgres' ? 'bigserial' : 'integer', (c) =>
          dialect === 'postgres' ? c.primaryKey() : c.primaryKey().autoIncrement().notNull(),
        )
        .addColumn('id', text, (c) => c.notNull())
        .addColumn('time', text, (c) => c.notNull())
        .addColumn('type', text, (c) => c.notNull())
        .addColumn('project', text)
        .addColumn('kind', text, (c) => c.notNull())
        .addColumn('resource_id', text, (c) => c.notNull())
        .addColumn('data', text, (c) => c.notNull())
        .execute();
      await db.schema.createIndex('events_project_seq_idx').on('events').columns(['project', 'seq']).execute();

      await db.schema
        .createTable('idempotency_keys')
        .addColumn('token_id', text, (c) => c.notNull())
        .addColumn('key', text, (c) => c.notNull())
        .addColumn('method', text, (c) => c.notNull())
        .addColumn('path', text, (c) => c.notNull())
        .addColumn('body_hash', text, (c) => c.notNull())
        .addColumn('status_code', 'integer', (c) => c.notNull())
        .addColumn('response', text, (c) => c.notNull())
        .addColumn('created_at', text, (c) => c.notNull())
        .addPrimaryKeyConstraint('idempotency_keys_pkey', ['token_id', 'key'])
        .execute();
      await db.schema
        .createIndex('idempotency_keys_created_at_idx')
        .on('idempotency_keys')
        .column('created_at')
        .execute();
    },

    async down(db: AnyDb) {
      for (const table of INITIAL_TABLES.toReversed()) await db.schema.dropTable(table).execute();
    },
  };
}

const INITIAL_TABLES = [
  'projects',
  'tokens',
  'hosts',
  'join_tokens',
  'images',
  'machine_types',
  'instances',
  'resource_labels',
  'history',
  'operations',
  'events',
  'idempotency_keys',
] as const;

// Networks, NICs and the address table IPAM allocates from.
function networks(dialect: Dialect): Migration {
  const text = textType(dialect);
  return {
    async up(db: AnyDb) {
      await resourceColumns(db.schema.createTable('networks'), text)
        .addColumn('project', text, (c) => c.notNull())
        .addColumn('kind', text, (c) => c.notNull())
        .addColumn('spec', text, (c) => c.notNull())
        .addColumn('vni', 'integer', (c) => c.notNull())
        .execute();
      await db.schema
        .createIndex('networks_project_name_key')
        .unique()
        .on('networks')
        .columns(['project', 'name'])
        .execute();
      await db.schema.createIndex('networks_vni_key').unique().on('networks').column('vni').execute();

      await db.schema
        .createTable('nics')
        .addColumn('id', text, (c) => c.primaryKey().notNull())
        .addColumn('project', text, (c) => c.notNull())
        .addColumn('instance_id', text, (c) => c.notNull())
        .addColumn('network_id', text, (c) => c.notNull())
        .addColumn('idx', 'integer', (c) => c.notNull())
        .addColumn('mac', text, (c) => c.notNull())
        .addColumn('ipv4', text)
        .addColumn('ipv6', text)
        .addColumn('created_at', text, (c) => c.notNull())
        .execute();
      await db.schema
        .createIndex('nics_instance_idx_key')
        .unique()
        .on('nics')
        .columns(['instance_id', 'idx'])
        .execute();
      await db.schema.createIndex('nics_network_mac_key').unique().on('nics').columns(['network_id', 'mac']).execute();

      await db.schema
        .createTable('ip_addresses')
        .addColumn('network_id', text, (c) => c.notNull())
        .addColumn('address', text, (c) => c.notNull())
        .addColumn('family', 'integer', (c) => c.notNull())
        .addColumn('nic_id', text)
        .addColumn('created_at', text, (c) => c.notNull())
        .execute();
      await db.schema
        .createIndex('ip_addresses_network_address_key')
        .unique()
        .on('ip_addresses')
        .columns(['network_id', 'address'])
        .execute();
      await db.schema.createIndex('ip_addresses_nic_id_idx').on('ip_addresses').column('nic_id').execute();
    },
    async down(db: AnyDb) {
      for (const table of ['ip_addresses', 'nics', 'networks']) await db.schema.dropTable(table).execute();
    },
  };
}

/**
 * Image imports report bytes on their operation; every image gets the minimum disk its file needs:
 * `spec.min_disk_gib` is raised to its virtual size rounded up to GiB where the record knows that
 * size (files stored before virtual sizes were recorded are measured when the control plane starts).
 */
function imageImports(dialect: Dialect): Migration {
  return {
    async up(db: AnyDb) {
      await db.schema.alterTable('operations').addColumn('transfer', textType(dialect)).execute();
      const rows: Array<{ id: string; spec: string; status: string }> = await db
        .selectFrom('images')
        .select(['id', 'spec', 'status'])
        .execute();
      for (const row of rows) {
        const spec = JSON.parse(row.spec) as { min_disk_gib?: number };
        const status = JSON.parse(row.status) as { virtual_size_bytes?: number | null };
        const virtual = status.virtual_size_bytes;
        if (typeof virtual !== 'number' || virtual <= 0) continue;
        const needed = Math.max(1, Math.ceil(virtual / 1024 ** 3));
        if ((spec.min_disk_gib ?? 0) >= needed) continue;
        await db
          .updateTable('images')
          .set({ spec: JSON.stringify({ ...spec, min_disk_gib: needed }) })
          .where('id', '=', row.id)
          .execute();
      }
    },
    async down(db: AnyDb) {
      await db.schema.alterTable('operations').dropColumn('transfer').execute();
    },
  };
}

/**
 * What each host holds (instances, vCPUs, MiB), kept by triggers on `instances` in the same
 * transaction as every write to it: the scheduler reads one row per host instead of summing every
 * instance, and no writer can forget to update it (API, undo, direct inserts alike).
 */
function hostAllocations(dialect: Dialect): Migration {
  return {
    async up(db: AnyDb) {
      await db.schema
        .createTable('host_allocations')
        .addColumn('host_id', textType(dialect), (c) => c.primaryKey().notNull())
        .addColumn('instances', 'integer', (c) => c.notNull())
        .addColumn('vcpus', 'integer', (c) => c.notNull())
        .addColumn('memory_mib', 'integer', (c) => c.notNull())
        .execute();
      await sql`insert into host_allocations (host_id, instances, vcpus, memory_mib)
        select host_id, count(*), sum(vcpus), sum(memory_mib) from instances
        where host_id is not null group by host_id`.execute(db);
      if (dialect === 'sqlite') {
        const add = (row: 'new') => sql`insert into host_allocations (host_id, instances, vcpus, memory_mib)
          select ${sql.raw(row)}.host_id, 1, ${sql.raw(row)}.vcpus, ${sql.raw(row)}.memory_mib where ${sql.raw(row)}.host_id is not null
          on conflict (host_id) do update set instances = instances + 1, vcpus = vcpus + excluded.vcpus,
            memory_mib = memory_mib + excluded.memory_mib;`;
        const remove = sql`update host_allocations set instances = instances - 1, vcpus = vcpus - old.vcpus,
          memory_mib = memory_mib - old.memory_mib where host_id = old.host_id;`;
        await sql`create trigger host_allocations_insert after insert on instances begin ${add('new')} end`.execute(db);
        await sql`create trigger host_allocations_delete after delete on instances begin ${remove} end`.execute(db);
        await sql`create trigger host_allocations_update after update of host_id, vcpus, memory_mib on instances
          begin ${remove} ${add('new')} end`.execute(db);
      } else {
        await sql`create function floe_host_allocations() returns trigger language plpgsql as $$
          begin
            if tg_op in ('UPDATE', 'DELETE') and old.host_id is not null then
              update host_allocations set instances = instances - 1, vcpus = vcpus - old.vcpus,
                memory_mib = memory_mib - old.memory_mib where host_id = old.host_id;
            end if;
            if tg_op in ('UPDATE', 'INSERT') and new.host_id is not null then
              insert into host_allocations (host_id, instances, vcpus, memory_mib)
                values (new.host_id, 1, new.vcpus, new.memory_mib)
                on conflict (host_id) do update set instances = host_allocations.instances + 1,
                  vcpus = host_allocations.vcpus + excluded.vcpus,
                  memory_mib = host_allocations.memory_mib + excluded.memory_mib;
            end if;
            return null;
          end $$`.execute(db);
        await sql`create trigger host_allocations after insert or delete or update of host_id, vcpus, memory_mib
          on instances for each row execute function floe_host_allocations()`.execute(db);
      }
    },
    async down(db: AnyDb) {
      if (dialect === 'sqlite') {
        for (const t of ['insert', 'delete', 'update'])
          await sql`drop trigger host_allocations_${sql.raw(t)}`.execute(db);
      } else {
        await sql`drop trigger host_allocations on instances`.execute(db);
        await sql`drop function floe_host_allocations()`.execute(db);
      }
      await db.schema.dropTable('host_allocations').execute();
    },
  };
}

/** Every migration, by name; names sort in the order they apply. Never edit one that has shipped: add the next. */
function migrations(dialect: Dialect): Record<string, Migration> {
  return {
    '0001_initial': initial(dialect),
    '0002_networks': networks(dialect),
    '0003_image_imports': imageImports(dialect),
    '0004_host_allocations': hostAllocations(dialect),
    '0005_token_grant_ids': tokenGrantIds(dialect),
    '0006_idempotency_leases': idempotencyLeases(dialect),
    '0007_users': users(dialect),
    '0008_audit': auditLog(dialect),
    '0009_token_scopes': tokenScopes(dialect),
    '0010_logins': logins(dialect),
    '0011_login_requests': loginRequests(dialect),
    '0012_quotas': quotas(dialect),
    '0013_metering': metering(dialect),
    '0014_instance_disk': instanceDisk(dialect),
    '0015_security_groups': securityGroups(dialect),
    '0016_nat_and_rate_limits': natAndRateLimits(dialect),
    '0017_vpn': vpn(dialect),
    '0022_image_public': imagePublic(dialect),
    '0023_event_actor': eventActor(),
  };
}

/** The migrations as Kysely's Migrator wants them, in code so a built floed runs from any directory. */
function migrationProvider(dialect: Dialect): MigrationProvider {
  return { getMigrations: () => Promise.resolve(migrations(dialect)) };
}

/** Kysely's migrator over floe's migrations and tables (tests use it to stop at an older schema). */
export function migratorOf(db: AnyDb, dialect: Dialect): Migrator {
  return new Migrator({
    db,
    provider: migrationProvider(dialect),
    migrationTableName: MIGRATION_TABLE,
    migrationLockTableName: MIGRATION_LOCK_TABLE,
  });
}

/**
 * Applies pending migrations and returns the names it applied (none when up to date). Safe to run
 * from several control planes at once: PostgreSQL takes an advisory lock, SQLite the write lock.
 */
export async function migrate(db: AnyDb, dialect: Dialect): Promise<string[]> {
  const migrator = migratorOf(db, dialect);
  const { error, results } = await migrator.migrateToLatest();
  if (error !== undefined) {
    const failed = results?.find((r) => r.status === 'Error')?.migrationName;
    throw new Error(
      `database migration ${failed ?? ''} failed: ${error instanceof Error ? error.message : JSON.stringify(error)}`,
      {
        cause: error,
      },
    );
  }
  return (results ?? []).filter((r) => r.status === 'Success').map((r) => r.migrationName);
}
