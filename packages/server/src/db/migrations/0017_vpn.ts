import { sql, type CreateTableBuilder, type Kysely, type Migration } from 'kysely';
import type { Dialect } from '../dialect.js';

/**
 * WireGuard access: operators' VPN pools (a prefix carved into per-network prefixes, served by gateway
 * hosts), projects' VPN networks (slot `i` of a pool: its i-th prefix and listen port; the gateway's key
 * pair, the private key encrypted) and their peers (`host_index`: the peer's address in the network;
 * a public key belongs to one peer only).
 */
export function vpn(dialect: Dialect): Migration {
  const text = dialect === 'postgres' ? sql`text collate "C"` : sql`text`;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- a migration describes history, not the current schema
  const resource = (t: CreateTableBuilder<any, any>) =>
    t
      .addColumn('id', text, (c) => c.primaryKey().notNull())
      .addColumn('name', text, (c) => c.notNull())
      .addColumn('labels', text, (c) => c.notNull())
      .addColumn('metadata', text, (c) => c.notNull())
      .addColumn('revision', 'integer', (c) => c.notNull())
      .addColumn('created_at', text, (c) => c.notNull())
      .addColumn('updated_at', text, (c) => c.notNull());
  return {
    // eslint-disable-next-line @typescript-eslint/no-explicit-any -- as above
    async up(db: Kysely<any>) {
      await resource(db.schema.createTable('vpn_pools'))
        .addColumn('spec', text, (c) => c.notNull())
        .execute();
      await db.schema.createIndex('vpn_pools_name_key').unique().on('vpn_pools').column('name').execute();

      await resource(db.schema.createTable('vpn_networks'))
        .addColumn('project', text, (c) => c.notNull())
        .addColumn('pool_id', text, (c) => c.notNull())
        .addColumn('slot', 'integer', (c) => c.notNull())
        .addColumn('spec', text, (c) => c.notNull())
        .addColumn('public_key', text, (c) => c.notNull())
        .addColumn('private_key', text, (c) => c.notNull())
        .execute();
      await db.schema
        .createIndex('vpn_networks_project_name_key')
        .unique()
        .on('vpn_networks')
        .columns(['project', 'name'])
        .execute();
      await db.schema
        .createIndex('vpn_networks_pool_slot_key')
        .unique()
        .on('vpn_networks')
        .columns(['pool_id', 'slot'])
        .execute();

      await resource(db.schema.createTable('vpn_peers'))
        .addColumn('project', text, (c) => c.notNull())
        .addColumn('vpn_network_id', text, (c) => c.notNull())
        .addColumn('host_index', 'integer', (c) => c.notNull())
        .addColumn('public_key', text, (c) => c.notNull())
        .addColumn('subnets', text, (c) => c.notNull())
        .addColumn('endpoint', text)
        .execute();
      await db.schema
        .createIndex('vpn_peers_project_name_key')
        .unique()
        .on('vpn_peers')
        .columns(['project', 'name'])
        .execute();
      await db.schema
        .createIndex('vpn_peers_network_index_key')
        .unique()
        .on('vpn_peers')
        .columns(['vpn_network_id', 'host_index'])
        .execute();
      await db.schema.createIndex('vpn_peers_public_key_key').unique().on('vpn_peers').column('public_key').execute();
    },
    // eslint-disable-next-line @typescript-eslint/no-explicit-any -- as above
    async down(db: Kysely<any>) {
      for (const table of ['vpn_peers', 'vpn_networks', 'vpn_pools']) await db.schema.dropTable(table).execute();
    },
  };
}
