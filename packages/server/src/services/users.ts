import { FloeError, type PageOf, type PasswordChange, type User, type UserCreate, type UserPatch } from '@floe/api';
import { hashPassword, verifyPassword } from '../auth/passwords.js';
import { isUniqueViolation, nowIso, type Db } from '../db/index.js';
import type { UsersTable } from '../db/schema.js';
import { isIdOf, newId } from '../ids.js';
import { requireAdmin } from './authz.js';
import type { Principal, ServiceContext } from './context.js';
import { decodeCursor, encodeCursor } from './pagination.js';

/** The ids among `ids` of users whose TOTP is on (confirmed). */
async function totpOn(db: Db, ids: readonly string[]): Promise<Set<string>> {
  if (ids.length === 0) return new Set();
  const rows = await db
    .selectFrom('user_totp')
    .select('user_id')
    .where('user_id', 'in', [...ids])
    .where('confirmed_at', 'is not', null)
    .execute();
  return new Set(rows.map((r) => r.user_id));
}

function userFromRow(row: UsersTable, totp: boolean): User {
  return {
    id: row.id,
    name: row.name,
    display_name: row.display_name,
    email: row.email,
    disabled: row.disabled === 1,
    operator: row.operator === 1,
    has_password: row.password_hash !== null,
    source: row.source ?? null,
    totp,
    created_at: row.created_at,
    updated_at: row.updated_at,
  };
}

/** A user row by id or name, or `user_not_found`. */
export async function findUser(db: Db, ref: string): Promise<UsersTable> {
  const row = await db
    .selectFrom('users')
    .selectAll()
    .where(isIdOf('user', ref) ? 'id' : 'name', '=', ref)
    .executeTakeFirst();
  if (!row) throw new FloeError('user_not_found', `user "${ref}" not found`, { kind: 'user', id: ref });
  return row;
}

/**
 * People. Operators create, change and delete users; a user reads itself and changes its own password.
 * Every change is an event of kind `user`, which makes every control plane read its tokens' rights again.
 */
export class UserService {
  /**
   * @param externalAuthenticators the names of the chain's authenticators other than local ones: a user
   *   created for one of them is found by its first login there.
   */
  constructor(
    private readonly ctx: ServiceContext,
    private readonly externalAuthenticators: ReadonlySet<string> = new Set(),
  ) {}

  async create(principal: Principal, body: UserCreate): Promise<User> {
    requireAdmin(principal, 'create users');
    const source = this.sourceOf(body);
    const now = nowIso();
    const row: UsersTable = {
      id: newId('user'),
      name: body.name,
      display_name: body.display_name ?? '',
      email: body.email ?? null,
      disabled: 0,
      password_hash: body.password === undefined ? null : await hashPassword(body.password),
      operator: body.operator ? 1 : 0,
      created_at: now,
      updated_at: now,
      source: source?.authenticator ?? null,
      external_subject: source?.subject ?? null,
    };
    try {
      await this.ctx.store.db.insertInto('users').values(row).execute();
    } catch (err) {
      if (isUniqueViolation(err)) {
        const taken = await this.ctx.store.db
          .selectFrom('users')
          .select('name')
          .where('name', '=', body.name)
          .executeTakeFirst();
        if (taken === undefined && source !== undefined)
          throw new FloeError(
            'name_conflict',
            `the ${source.authenticator} user "${source.subject}" already has a floe user`,
            { field: 'subject', kind: 'user', name: body.name },
          );
        throw new FloeError('name_conflict', `user "${body.name}" already exists`, {
          field: 'name',
          kind: 'user',
          name: body.name,
        });
      }
      throw err;
    }
    await this.changed('resource.created', row);
    return userFromRow(row, false);
  }

  /** Where a new user logs in, when not with a local password: checked against the configured chain. */
  private sourceOf(body: UserCreate): { authenticator: string; subject: string } | undefined {
    if (body.authenticator === undefined) {
      if (body.subject !== undefined)
        throw new FloeError('validation_failed', 'subject goes with authenticator', { field: 'subject' });
      return undefined;
    }
    if (!this.externalAuthenticators.has(body.authenticator)) {
      const known = [...this.externalAuthenticators];
      throw new FloeError(
        'validation_failed',
        `"${body.authenticator}" is not an authenticator of the chain other than a local one` +
          (known.length === 0 ? ' (the chain has none)' : ` (the chain has: ${known.join(', ')})`),
        { field: 'authenticator' },
      );
    }
    if (body.password !== undefined)
      throw new FloeError(
        'validation_failed',
        `a user of ${body.authenticator} logs in with the password it has there; give no password`,
        { field: 'password' },
      );
    return { authenticator: body.authenticator, subject: body.subject ?? body.name };
  }

  /** Users by id (operators). */
  async list(principal: Principal, q: { limit?: number; cursor?: string }): Promise<PageOf<User>> {
    requireAdmin(principal, 'list users');
    const limit = Math.min(q.limit ?? 100, 1000);
    let query = this.ctx.store.db
      .selectFrom('users')
      .selectAll()
      .orderBy('id', 'asc')
      .limit(limit + 1);
    if (q.cursor) query = query.where('id', '>', decodeCursor(q.cursor));
    const rows = await query.execute();
    const page = rows.slice(0, limit);
    const totp = await totpOn(
      this.ctx.store.db,
      page.map((r) => r.id),
    );
    return {
      items: page.map((r) => userFromRow(r, totp.has(r.id))),
      next_cursor: rows.length > limit ? encodeCursor(page[page.length - 1]!.id) : null,
    };
  }

  /** One user (operators). */
  async get(principal: Principal, ref: string): Promise<User> {
    requireAdmin(principal, 'read users');
    return this.shown(await findUser(this.ctx.store.db, ref));
  }

  /** The user the caller's token belongs to; a token of nobody has none. */
  async me(principal: Principal): Promise<User> {
    return this.shown(await this.own(principal));
  }

  async update(principal: Principal, ref: string, patch: UserPatch): Promise<User> {
    requireAdmin(principal, 'change users');
    const before = await findUser(this.ctx.store.db, ref);
    if (principal.user === before.id && (patch.disabled === true || patch.operator === false))
      throw new FloeError('forbidden', 'an operator may not disable itself or take its own operator role away');
    const after: UsersTable = {
      ...before,
      display_name: patch.display_name ?? before.display_name,
      email: patch.email === undefined ? before.email : patch.email,
      disabled: patch.disabled === undefined ? before.disabled : patch.disabled ? 1 : 0,
      operator: patch.operator === undefined ? before.operator : patch.operator ? 1 : 0,
      updated_at: nowIso(),
    };
    await this.ctx.store.db
      .updateTable('users')
      .set({
        display_name: after.display_name,
        email: after.email,
        disabled: after.disabled,
        operator: after.operator,
        updated_at: after.updated_at,
      })
      .where('id', '=', before.id)
      .execute();
    await this.changed('resource.updated', after);
    return this.shown(after);
  }

  /** Delete a user, its memberships and its tokens. */
  async delete(principal: Principal, ref: string): Promise<void> {
    requireAdmin(principal, 'delete users');
    const row = await findUser(this.ctx.store.db, ref);
    // Its own token would go with it: another operator may delete it.
    if (principal.user === row.id) throw new FloeError('forbidden', 'an operator may not delete itself');
    await this.ctx.store.db.deleteFrom('users').where('id', '=', row.id).execute();
    await this.changed('resource.deleted', row);
  }

  /** Change the caller's own password; the old one must match. */
  async changePassword(principal: Principal, body: PasswordChange): Promise<void> {
    const row = await this.own(principal);
    if (row.password_hash === null || !(await verifyPassword(row.password_hash, body.old_password)))
      throw new FloeError('forbidden', 'the old password does not match');
    await this.ctx.store.db
      .updateTable('users')
      .set({ password_hash: await hashPassword(body.new_password), updated_at: nowIso() })
      .where('id', '=', row.id)
      .execute();
    await this.changed('user.password_changed', row);
  }

  private async shown(row: UsersTable): Promise<User> {
    return userFromRow(row, (await totpOn(this.ctx.store.db, [row.id])).has(row.id));
  }

  private async own(principal: Principal): Promise<UsersTable> {
    if (principal.user === undefined)
      throw new FloeError('user_not_found', 'this token belongs to no user', { kind: 'user', id: 'me' });
    return findUser(this.ctx.store.db, principal.user);
  }

  private async changed(type: string, row: UsersTable): Promise<void> {
    await this.ctx.bus.publish({ type, project: null, kind: 'user', resource_id: row.id, data: { name: row.name } });
  }
}
