import { sql, type Kysely, type Migration } from 'kysely';
import type { Dialect } from '../dialect.js';

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- the schema of a past migration has no type of its own
type AnyDb = Kysely<any>;

/**
 * A token's projects become rows of `token_projects` that name the project by id, with foreign keys
 * to both sides. A name in a JSON array outlived its project: a new project of the same name was
 * reachable with every token ever limited to the old one. Now deleting a project deletes its grants
 * (ON DELETE CASCADE), and revoking nothing is needed to keep old tokens out of a new project.
 *
 * Existing grants are converted by name; a name no project holds any more is dropped (such a grant
 * could only ever reach a project created later under that name).
 */
export function tokenGrantIds(dialect: Dialect): Migration {
  const text = dialect === 'postgres' ? sql`text collate "C"` : sql`text`;
  return {
    async up(db: AnyDb) {
      await db.schema
        .createTable('token_projects')
        .addColumn('token_id', text, (c) => c.notNull().references('tokens.id').onDelete('cascade'))
        .addColumn('project_id', text, (c) => c.notNull().references('projects.id').onDelete('cascade'))
        .addPrimaryKeyConstraint('token_projects_pkey', ['token_id', 'project_id'])
        .execute();
      await db.schema.createIndex('token_projects_project_id_idx').on('token_projects').column('project_id').execute();

      const projects: Array<{ id: string; name: string }> = await db
        .selectFrom('projects')
        .select(['id', 'name'])
        .execute();
      const idByName = new Map(projects.map((p) => [p.name, p.id]));
      const tokens: Array<{ id: string; projects: string }> = await db
        .selectFrom('tokens')
        .select(['id', 'projects'])
        .execute();
      for (const token of tokens) {
        const names = parseNames(token.projects);
        const ids = [...new Set(names.flatMap((n) => idByName.get(n) ?? []))];
        if (ids.length > 0)
          await db
            .insertInto('token_projects')
            .values(ids.map((project_id) => ({ token_id: token.id, project_id })))
            .execute();
      }
      await db.schema.alterTable('tokens').dropColumn('projects').execute();
    },

    async down(db: AnyDb) {
      await db.schema
        .alterTable('tokens')
        .addColumn('projects', text, (c) => c.notNull().defaultTo('[]'))
        .execute();
      const grants: Array<{ token_id: string; name: string }> = await db
        .selectFrom('token_projects')
        .innerJoin('projects', 'projects.id', 'token_projects.project_id')
        .select(['token_projects.token_id', 'projects.name'])
        .execute();
      const namesOf = new Map<string, string[]>();
      for (const g of grants) namesOf.set(g.token_id, [...(namesOf.get(g.token_id) ?? []), g.name]);
      for (const [id, names] of namesOf)
        await db
          .updateTable('tokens')
          .set({ projects: JSON.stringify(names.sort()) })
          .where('id', '=', id)
          .execute();
      await db.schema.dropTable('token_projects').execute();
    },
  };
}

/** The project names of a token row before this migration (a JSON array of strings). */
function parseNames(json: string): string[] {
  try {
    const value: unknown = JSON.parse(json);
    return Array.isArray(value) ? value.filter((v): v is string => typeof v === 'string') : [];
  } catch {
    return [];
  }
}
