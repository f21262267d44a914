import { createHash, randomBytes } from 'node:crypto';
import {
  FloeError,
  type PageOf,
  type Token,
  type TokenCreate,
  type TokenCreated,
  type TokenScope,
  type TokenState,
} from '@floe/api';
import { nowIso, transaction, type Db } from '../db/index.js';
import type { TokensTable } from '../db/schema.js';
import { FIRST_OPERATOR } from '../db/migrations/0007_users.js';
import { isIdOf, newId } from '../ids.js';
import { decodeCursor, encodeCursor } from './pagination.js';
import { parseScope, principalOfToken } from './token-principal.js';
import { resolveScope } from './token-scope.js';
import { requireAdmin } from './authz.js';
import { checkOwned, ownedProjectIds, ownerProjectToken } from './token-owners.js';
import type { AuthNoter } from './audit-note.js';
import type { Principal, ServiceContext } from './context.js';

/** The prefix of every API token, so leaked tokens are easy to find with a scanner. */
const TOKEN_PREFIX = 'floe_';

/** sha256 of a secret, hex. Tokens are 256-bit random, so a fast hash is enough. */
export function hashSecret(secret: string): string {
  return createHash('sha256').update(secret, 'utf8').digest('hex');
}

/** A new random secret with floe's prefix. */
export function newSecret(prefix = TOKEN_PREFIX): string {
  return prefix + randomBytes(32).toString('base64url');
}

/** Active, or why the token is refused: revocation wins over expiry. */
function stateOf(row: TokensTable, now: string): TokenState {
  if (row.revoked_at !== null) return 'revoked';
  if (row.expires_at !== null && row.expires_at <= now) return 'expired';
  return 'active';
}

function tokenFromRow(row: TokensTable, projects: readonly string[], now: string, user: string | null): Token {
  const scope = parseScope(row.scope);
  return {
    id: row.id,
    name: row.name,
    admin: row.admin === 1,
    projects: [...projects],
    user,
    scope: scope === 'invalid' ? null : scope,
    state: stateOf(row, now),
    created_at: row.created_at,
    expires_at: row.expires_at,
    revoked_at: row.revoked_at,
    last_used_at: row.last_used_at,
  };
}

/** The names of the projects each token may use, read through the grants (which name projects by id). */
async function grantedProjects(db: Db, tokenIds: readonly string[]): Promise<Map<string, string[]>> {
  const out = new Map<string, string[]>(tokenIds.map((id) => [id, []]));
  if (tokenIds.length === 0) return out;
  const rows = await db
    .selectFrom('token_projects')
    .innerJoin('projects', 'projects.id', 'token_projects.project_id')
    .select(['token_projects.token_id', 'projects.name'])
    .where('token_projects.token_id', 'in', [...tokenIds])
    .orderBy('projects.name')
    .execute();
  for (const r of rows) out.get(r.token_id)?.push(r.name);
  return out;
}

/** The id of a user named by name or id, or `user_not_found`. */
async function userId(db: Db, ref: string): Promise<string> {
  const user = await db
    .selectFrom('users')
    .select('id')
    .where(isIdOf('user', ref) ? 'id' : 'name', '=', ref)
    .executeTakeFirst();
  if (!user) throw new FloeError('user_not_found', `user "${ref}" not found`, { kind: 'user', id: ref });
  return user.id;
}

/** The names of the users the tokens belong to, by user id. */
async function userNames(db: Db, rows: readonly TokensTable[]): Promise<Map<string, string>> {
  const ids = [...new Set(rows.flatMap((r) => (r.user_id === null ? [] : [r.user_id])))];
  if (ids.length === 0) return new Map();
  const users = await db.selectFrom('users').select(['id', 'name']).where('id', 'in', ids).execute();
  return new Map(users.map((u) => [u.id, u.name]));
}

/**
 * For a user's own token (a non-admin creating one): the user it is for, after checking it stays
 * within the user (admin tokens only for an operator's admin token, no other user). Null for admins,
 * whose body says whom the token is for. Tokens of nobody and tokens with a scope create no tokens.
 */
function selfService(principal: Principal, body: TokenCreate): string | null {
  if (principal.admin) return null;
  if (principal.user === undefined)
    throw new FloeError('forbidden', 'only admins and owners of the projects may create project tokens');
  if (body.admin === true) throw new FloeError('forbidden', 'only an operator’s admin token may create admin tokens');
  if (body.user !== undefined && body.user !== principal.user && body.user !== principal.userName)
    throw new FloeError('forbidden', 'a personal token may only create tokens for its own user');
  return principal.user;
}

/**
 * The tokens a principal may see: all for admins; for a personal token its user's own, and the project
 * tokens whose grants are all in projects the user owns (a project token with a grant elsewhere, or with
 * none left, stays hidden); `forbidden` for tokens of nobody.
 */
async function ownTokens(db: Db, principal: Principal, what: string) {
  const all = db.selectFrom('tokens').selectAll();
  if (principal.admin) return all;
  if (principal.user === undefined) requireAdmin(principal, what);
  const user = principal.user!;
  const owned = await ownedProjectIds(db, principal);
  if (owned.length === 0) return all.where('user_id', '=', user);
  return all.where((eb) => {
    const grants = () =>
      eb
        .selectFrom('token_projects')
        .select('token_projects.token_id')
        .whereRef('token_projects.token_id', '=', 'tokens.id');
    return eb.or([
      eb('user_id', '=', user),
      eb.and([
        eb('user_id', 'is', null),
        eb('admin', '=', 0),
        eb.exists(grants()),
        eb.not(eb.exists(grants().where('token_projects.project_id', 'not in', owned))),
      ]),
    ]);
  });
}

/** A new token's scope as stored (resources by id, in the token's one project), or null for none. */
async function scopeText(db: Db, scope: TokenScope | undefined, projectIds: readonly string[]): Promise<string | null> {
  let project: string | null = null;
  if (scope?.resources !== undefined && projectIds.length === 1) {
    const row = await db.selectFrom('projects').select('name').where('id', '=', projectIds[0]!).executeTakeFirst();
    project = row?.name ?? null;
  }
  const resolved = await resolveScope(db, scope, project);
  return resolved === null ? null : JSON.stringify(resolved);
}

interface CachedPrincipal {
  principal: Principal;
  expiresAt: number;
}

/** How long a verified token is trusted without asking the database again. */
const CACHE_MS = 5_000;

/** API tokens: creation, revocation and bearer authentication. */
export class TokenService {
  private readonly cache = new Map<string, CachedPrincipal>();
  private readonly lastUsedWritten = new Map<string, number>();
  /** Counts cache clears: a principal read before a clear is not cached after it. */
  private generation = 0;

  constructor(private readonly ctx: ServiceContext) {
    // Events reach every control plane: a project made or deleted anywhere drops the cached grants, and a
    // token revoked anywhere is forgotten here at once rather than when its cache entry runs out.
    ctx.bus.subscribe((e) => {
      // A user changed, disabled or deleted, or a membership changed: personal tokens are read again.
      if (e.kind === 'user') this.clear();
      // A sub-project made: members of its ancestors see it (and its creator owns it).
      if (e.kind === 'project' && e.type === 'resource.created') this.clear();
      if (e.type !== 'resource.deleted') return;
      if (e.kind === 'project') this.clear();
      if (e.kind === 'token') this.forget(e.resource_id);
    });
  }

  /**
   * The principal for a bearer token, or an `unauthenticated` error. Verified
   * tokens are cached for a few seconds so authenticated reads stay cheap.
   */
  async authenticate(secret: string | undefined, note?: AuthNoter): Promise<Principal> {
    if (!secret || !secret.startsWith(TOKEN_PREFIX) || secret.length > 200) {
      note?.({ failure: secret ? 'malformed' : 'missing' });
      throw new FloeError('unauthenticated', 'a valid bearer token is required (Authorization: Bearer floe_...)');
    }
    const hash = hashSecret(secret);
    const now = Date.now();
    const hit = this.cache.get(hash);
    if (hit && hit.expiresAt > now) return hit.principal;
    const generation = this.generation;
    const row = await this.ctx.store.db
      .selectFrom('tokens')
      .selectAll()
      .where('secret_hash', '=', hash)
      .executeTakeFirst();
    if (!row || row.revoked_at !== null || (row.expires_at !== null && row.expires_at <= nowIso())) {
      this.cache.delete(hash);
      note?.(
        row ? { failure: row.revoked_at !== null ? 'revoked' : 'expired', tokenId: row.id } : { failure: 'unknown' },
      );
      throw new FloeError('unauthenticated', 'the token is unknown, revoked or expired');
    }
    const principal = await principalOfToken(this.ctx.store.db, row);
    if (principal === null) {
      this.cache.delete(hash);
      throw new FloeError('unauthenticated', 'the token is unknown, revoked or expired');
    }
    if (this.cache.size > 10_000) this.cache.clear();
    // Never cached past the token's own expiry: an expired token is refused at once. Nor when the
    // rights it was read with changed meanwhile (a membership removed while the rows were read).
    const expiry = row.expires_at === null ? Infinity : Date.parse(row.expires_at);
    if (generation === this.generation)
      this.cache.set(hash, { principal, expiresAt: Math.min(now + CACHE_MS, expiry) });
    // last_used_at is informative: write it at most once a minute per token.
    if ((this.lastUsedWritten.get(row.id) ?? 0) < now - 60_000) {
      this.lastUsedWritten.set(row.id, now);
      const first = row.last_used_at === null;
      const set = this.ctx.store.db.updateTable('tokens').set({ last_used_at: nowIso() }).where('id', '=', row.id);
      const res = await (first ? set.where('last_used_at', 'is', null) : set).executeTakeFirst();
      if (first && Number(res.numUpdatedRows) > 0) note?.({ firstUse: row.id });
    }
    return principal;
  }

  /**
   * Create a token; the secret is returned once and stored only as a hash. Projects may be given by
   * name or id; `projectId` resolves each to the id the grant stores, in the same transaction as the
   * insert, so a grant never names a project by a name that could later belong to another.
   */
  async create(
    principal: Principal,
    body: TokenCreate,
    projectId: (ref: string, db: Db) => Promise<string>,
  ): Promise<TokenCreated> {
    if (principal.scope !== undefined)
      throw new FloeError('forbidden', 'a token with a scope may not create tokens; use an unscoped token');
    const ofOwner = ownerProjectToken(principal, body);
    const self = ofOwner ? null : selfService(principal, body);
    const refs = [...new Set(body.projects ?? [])];
    if (!body.admin && refs.length === 0 && body.user === undefined && self === null) {
      throw new FloeError('validation_failed', 'a non-admin token needs at least one project', { field: 'projects' });
    }
    const secret = newSecret();
    const row: TokensTable = {
      id: newId('token'),
      name: body.name,
      secret_hash: hashSecret(secret),
      admin: body.admin ? 1 : 0,
      created_at: nowIso(),
      expires_at: body.expires_in_days ? new Date(Date.now() + body.expires_in_days * 86_400_000).toISOString() : null,
      last_used_at: null,
      revoked_at: null,
      user_id: self,
      scope: null,
    };
    const projects = await transaction(this.ctx.store, async (trx) => {
      if (body.user !== undefined && self === null) row.user_id = await userId(trx, body.user);
      const ids: string[] = [];
      for (const ref of refs) ids.push(await projectId(ref, trx));
      const unique = [...new Set(ids)];
      if (ofOwner) await checkOwned(trx, principal, unique);
      row.scope = await scopeText(trx, body.scope, unique);
      await trx.insertInto('tokens').values(row).execute();
      if (unique.length > 0)
        await trx
          .insertInto('token_projects')
          .values(unique.map((project_id) => ({ token_id: row.id, project_id })))
          .execute();
      return (await grantedProjects(trx, [row.id])).get(row.id) ?? [];
    });
    await this.ctx.bus.publish({
      type: 'resource.created',
      project: null,
      kind: 'token',
      resource_id: row.id,
      data: { name: row.name, admin: row.admin === 1 },
    });
    return {
      token: tokenFromRow(row, projects, nowIso(), row.user_id === null ? null : await this.userName(row)),
      secret,
    };
  }

  /** One token by id, revoked or not (admins: any; users: their own). */
  async get(principal: Principal, id: string): Promise<Token> {
    const row = await (
      await ownTokens(this.ctx.store.db, principal, 'read tokens')
    )
      .where('id', '=', id)
      .executeTakeFirst();
    if (!row) throw new FloeError('token_not_found', `token "${id}" not found`, { kind: 'token', id });
    const projects = await grantedProjects(this.ctx.store.db, [row.id]);
    return tokenFromRow(row, projects.get(row.id) ?? [], nowIso(), await this.userName(row));
  }

  /** Tokens that are not revoked (admins: all; users: their own); expired ones say so in their `state`. */
  async list(principal: Principal, q: { limit?: number; cursor?: string; project?: string }): Promise<PageOf<Token>> {
    const limit = Math.min(q.limit ?? 100, 1000);
    let query = (await ownTokens(this.ctx.store.db, principal, 'list tokens'))
      .where('revoked_at', 'is', null)
      .orderBy('id', 'asc')
      .limit(limit + 1);
    if (q.cursor) query = query.where('id', '>', decodeCursor(q.cursor));
    // Tokens granted the project (by name): an unknown project lists nothing, as one the caller cannot see.
    const project = q.project;
    if (project !== undefined)
      query = query.where((eb) =>
        eb.exists(
          eb
            .selectFrom('token_projects')
            .innerJoin('projects', 'projects.id', 'token_projects.project_id')
            .select('token_projects.token_id')
            .whereRef('token_projects.token_id', '=', 'tokens.id')
            .where('projects.name', '=', project),
        ),
      );
    const rows = await query.execute();
    const page = rows.slice(0, limit);
    const projects = await grantedProjects(
      this.ctx.store.db,
      page.map((r) => r.id),
    );
    const now = nowIso();
    const users = await userNames(this.ctx.store.db, page);
    return {
      items: page.map((r) => tokenFromRow(r, projects.get(r.id) ?? [], now, users.get(r.user_id ?? '') ?? null)),
      next_cursor: rows.length > limit ? encodeCursor(page[page.length - 1]!.id) : null,
    };
  }

  private clear(): void {
    this.generation++;
    this.cache.clear();
  }

  private forget(tokenId: string): void {
    for (const [hash, hit] of this.cache) if (hit.principal.actor === tokenId) this.cache.delete(hash);
  }

  private async userName(row: TokensTable): Promise<string | null> {
    return (await userNames(this.ctx.store.db, [row])).get(row.user_id ?? '') ?? null;
  }

  /** Revoke a token at once (the cache forgets it too): admins any, users their own. */
  async revoke(principal: Principal, id: string): Promise<void> {
    const row = await (
      await ownTokens(this.ctx.store.db, principal, 'revoke tokens')
    )
      .where('id', '=', id)
      .where('revoked_at', 'is', null)
      .executeTakeFirst();
    if (!row) throw new FloeError('token_not_found', `token "${id}" not found`, { kind: 'token', id });
    await this.ctx.store.db.updateTable('tokens').set({ revoked_at: nowIso() }).where('id', '=', id).execute();
    this.cache.delete(row.secret_hash);
    await this.ctx.bus.publish({
      type: 'resource.deleted',
      project: null,
      kind: 'token',
      resource_id: id,
      data: { name: row.name },
    });
  }

  /** Create the first admin token when there is none yet; returns its secret, or null. */
  async bootstrapAdmin(): Promise<string | null> {
    const any = await this.ctx.store.db
      .selectFrom('tokens')
      .select('id')
      .where('admin', '=', 1)
      .where('revoked_at', 'is', null)
      .limit(1)
      .executeTakeFirst();
    if (any) return null;
    // Owned by the operator user the migration made, while it is one; a token of nobody otherwise, so
    // that a disabled or deleted `admin` user cannot lock the operator out.
    const owner = await this.ctx.store.db
      .selectFrom('users')
      .select('id')
      .where('name', '=', FIRST_OPERATOR)
      .where('operator', '=', 1)
      .where('disabled', '=', 0)
      .executeTakeFirst();
    const secret = newSecret();
    await this.ctx.store.db
      .insertInto('tokens')
      .values({
        id: newId('token'),
        name: 'admin',
        secret_hash: hashSecret(secret),
        admin: 1,
        created_at: nowIso(),
        expires_at: null,
        last_used_at: null,
        revoked_at: null,
        user_id: owner?.id ?? null,
        scope: null,
      })
      .execute();
    return secret;
  }
}
