import { sql, type Kysely, type Migration } from 'kysely';
import { newId } from '../../ids.js';
import type { Dialect } from '../dialect.js';

/** The `default` group every project gets: members reach each other, ssh and ICMP from anywhere, all out. */
const DEFAULT_SPEC = (id: string) =>
  JSON.stringify({
    ingress_default: 'deny',
    egress_default: 'allow',
    rules: [
      ['r1', 'any', null, id, 'members of the group reach each other'],
      ['r2', 'tcp', 22, null, 'ssh from anywhere'],
      ['r3', 'icmp', null, null, 'ICMP from anywhere'],
      ['r4', 'icmpv6', null, null, 'ICMPv6 from anywhere'],
    ].map(([rid, protocol, port, group, description]) => ({
      id: rid,
      direction: 'ingress',
      protocol,
      port_min: port,
      port_max: port,
      remote_cidr: null,
      remote_group: group,
      description,
    })),
  });

/**
 * Security groups: a table of groups (rules and default verdicts in `spec`), and on each NIC the ids
 * of its groups and whether it is filtered at all. Every project present gets its `default` group;
 * NICs made before keep an empty list, which means that group.
 */
export function securityGroups(dialect: Dialect): Migration {
  const text = dialect === 'postgres' ? sql`text collate "C"` : sql`text`;
  return {
    // eslint-disable-next-line @typescript-eslint/no-explicit-any -- a migration describes history, not the current schema
    async up(db: Kysely<any>) {
      await db.schema
        .createTable('security_groups')
        .addColumn('id', text, (c) => c.primaryKey().notNull())
        .addColumn('name', text, (c) => c.notNull())
        .addColumn('labels', text, (c) => c.notNull())
        .addColumn('metadata', text, (c) => c.notNull())
        .addColumn('revision', 'integer', (c) => c.notNull())
        .addColumn('created_at', text, (c) => c.notNull())
        .addColumn('updated_at', text, (c) => c.notNull())
        .addColumn('project', text, (c) => c.notNull())
        .addColumn('description', text, (c) => c.notNull())
        .addColumn('spec', text, (c) => c.notNull())
        .execute();
      await db.schema
        .createIndex('security_groups_project_name_key')
        .unique()
        .on('security_groups')
        .columns(['project', 'name'])
        .execute();
      await db.schema
        .alterTable('nics')
        .addColumn('security_groups', text, (c) => c.notNull().defaultTo('[]'))
        .execute();
      await db.schema
        .alterTable('nics')
        .addColumn('filtering', 'integer', (c) => c.notNull().defaultTo(1))
        .execute();
      const now = new Date().toISOString();
      const projects = (await db.selectFrom('projects').select('name').execute()) as Array<{ name: string }>;
      for (const p of projects) {
        const id = newId('security_group');
        await db
          .insertInto('security_groups')
          .values({
            id,
            name: 'default',
            labels: '{}',
            metadata: '{}',
            revision: 1,
            created_at: now,
            updated_at: now,
            project: p.name,
            description: 'the group of NICs that name none',
            spec: DEFAULT_SPEC(id),
          })
          .execute();
      }
    },
    // eslint-disable-next-line @typescript-eslint/no-explicit-any -- as above
    async down(db: Kysely<any>) {
      await db.schema.alterTable('nics').dropColumn('filtering').execute();
      await db.schema.alterTable('nics').dropColumn('security_groups').execute();
      await db.schema.dropTable('security_groups').execute();
    },
  };
}
