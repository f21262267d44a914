import { sql, type Kysely, type Migration } from 'kysely';
import type { Dialect } from '../dialect.js';

/**
 * Rate limits per NIC (bandwidth and packet rates to and from the instance, as JSON; null: none), and
 * the two kinds that NAT public traffic to NICs: floating IPs (an address of a public network's pool,
 * held in `ip_addresses` under the floating IP's id, attached to at most one NIC) and port forwards
 * (a protocol and port of a floating IP, or of the host (`listen` = 'host'), to a port of a NIC),
 * unique per (listen, protocol, port).
 */
export function natAndRateLimits(dialect: Dialect): Migration {
  const text = dialect === 'postgres' ? sql`text collate "C"` : sql`text`;
  return {
    // eslint-disable-next-line @typescript-eslint/no-explicit-any -- a migration describes history, not the current schema
    async up(db: Kysely<any>) {
      await db.schema.alterTable('nics').addColumn('rate_limit', text).execute();

      const resource = (t: string) =>
        db.schema
          .createTable(t)
          .addColumn('id', text, (c) => c.primaryKey().notNull())
          .addColumn('name', text, (c) => c.notNull())
          .addColumn('project', text, (c) => c.notNull())
          .addColumn('labels', text, (c) => c.notNull())
          .addColumn('metadata', text, (c) => c.notNull())
          .addColumn('revision', 'integer', (c) => c.notNull())
          .addColumn('created_at', text, (c) => c.notNull())
          .addColumn('updated_at', text, (c) => c.notNull());
      await resource('floating_ips')
        .addColumn('network_id', text, (c) => c.notNull())
        .addColumn('address', text, (c) => c.notNull())
        .addColumn('instance_id', text)
        .addColumn('nic_id', text)
        .execute();
      await db.schema
        .createIndex('floating_ips_project_name_key')
        .unique()
        .on('floating_ips')
        .columns(['project', 'name'])
        .execute();
      await db.schema.createIndex('floating_ips_nic_idx').on('floating_ips').column('nic_id').execute();

      await resource('port_forwards')
        .addColumn('protocol', text, (c) => c.notNull())
        .addColumn('listen', text, (c) => c.notNull())
        .addColumn('port', 'integer', (c) => c.notNull())
        .addColumn('instance_id', text, (c) => c.notNull())
        .addColumn('nic_id', text, (c) => c.notNull())
        .addColumn('target_port', 'integer', (c) => c.notNull())
        .execute();
      await db.schema
        .createIndex('port_forwards_project_name_key')
        .unique()
        .on('port_forwards')
        .columns(['project', 'name'])
        .execute();
      await db.schema
        .createIndex('port_forwards_listen_key')
        .unique()
        .on('port_forwards')
        .columns(['listen', 'protocol', 'port'])
        .execute();
      await db.schema.createIndex('port_forwards_nic_idx').on('port_forwards').column('nic_id').execute();
    },
    // eslint-disable-next-line @typescript-eslint/no-explicit-any -- as above
    async down(db: Kysely<any>) {
      await db.schema.dropTable('port_forwards').execute();
      await db.schema.dropTable('floating_ips').execute();
      await db.schema.alterTable('nics').dropColumn('rate_limit').execute();
    },
  };
}
