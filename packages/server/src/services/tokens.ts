import { createHash, randomBytes } from 'node:crypto';
import { FloeError, type PageOf, type Token, type TokenCreate, type TokenCreated } from '@floe/api';
import { fromJson, nowIso, toJson } from '../db/index.js';
import type { TokensTable } from '../db/schema.js';
import { newId } from '../ids.js';
import { decodeCursor, encodeCursor } from './pagination.js';
import { requireAdmin } from './authz.js';
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

function tokenFromRow(row: TokensTable): Token {
  return {
    id: row.id,
    name: row.name,
    admin: row.admin === 1,
    projects: fromJson<string[]>(row.projects) ?? [],
    created_at: row.created_at,
    expires_at: row.expires_at,
    last_used_at: row.last_used_at,
  };
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

  constructor(private readonly ctx: ServiceContext) {}

  /**
   * The principal for a bearer token, or an `unauthenticated` error. Verified
   * tokens are cached for a few seconds so authenticated reads stay cheap.
   */
  async authenticate(secret: string | undefined): Promise<Principal> {
    if (!secret || !secret.startsWith(TOKEN_PREFIX) || secret.length > 200) {
      throw new FloeError('unauthenticated', 'a valid bearer token is required (Authorization: Bearer floe_...)');
    }
    const hash = hashSecret(secret);
    const now = Date.now();
    const hit = this.cache.get(hash);
    if (hit && hit.expiresAt > now) return hit.principal;
    const row = await this.ctx.store.db
      .selectFrom('tokens')
      .selectAll()
      .where('secret_hash', '=', hash)
      .executeTakeFirst();
    if (!row || row.revoked_at !== null || (row.expires_at !== null && row.expires_at <= nowIso())) {
      this.cache.delete(hash);
      throw new FloeError('unauthenticated', 'the token is unknown, revoked or expired');
    }
    const principal: Principal = Object.freeze({
      actor: row.id,
      admin: row.admin === 1,
      projects: new Set(fromJson<string[]>(row.projects) ?? []),
    });
    if (this.cache.size > 10_000) this.cache.clear();
    // Never cached past the token's own expiry: an expired token is refused at once.
    const expiry = row.expires_at === null ? Infinity : Date.parse(row.expires_at);
    this.cache.set(hash, { principal, expiresAt: Math.min(now + CACHE_MS, expiry) });
    // last_used_at is informative: write it at most once a minute per token.
    if ((this.lastUsedWritten.get(row.id) ?? 0) < now - 60_000) {
      this.lastUsedWritten.set(row.id, now);
      await this.ctx.store.db.updateTable('tokens').set({ last_used_at: nowIso() }).where('id', '=', row.id).execute();
    }
    return principal;
  }

  /** Create a token; the secret is returned once and stored only as a hash. */
  async create(
    principal: Principal,
    body: TokenCreate,
    projectExists: (name: string) => Promise<void>,
  ): Promise<TokenCreated> {
    requireAdmin(principal, 'create tokens');
    const projects = [...new Set(body.projects ?? [])];
    for (const p of projects) await projectExists(p);
    if (!body.admin && projects.length === 0) {
      throw new FloeError('validation_failed', 'a non-admin token needs at least one project', { field: 'projects' });
    }
    const secret = newSecret();
    const row: TokensTable = {
      id: newId('token'),
      name: body.name,
      secret_hash: hashSecret(secret),
      admin: body.admin ? 1 : 0,
      projects: toJson(projects),
      created_at: nowIso(),
      expires_at: body.expires_in_days ? new Date(Date.now() + body.expires_in_days * 86_400_000).toISOString() : null,
      last_used_at: null,
      revoked_at: null,
    };
    await this.ctx.store.db.insertInto('tokens').values(row).execute();
    await this.ctx.bus.publish({
      type: 'resource.created',
      project: null,
      kind: 'token',
      resource_id: row.id,
      data: { name: row.name, admin: row.admin === 1 },
    });
    return { token: tokenFromRow(row), secret };
  }

  /** Tokens that are not revoked (admin). */
  async list(principal: Principal, q: { limit?: number; cursor?: string }): Promise<PageOf<Token>> {
    requireAdmin(principal, 'list tokens');
    const limit = Math.min(q.limit ?? 100, 1000);
    let query = this.ctx.store.db
      .selectFrom('tokens')
      .selectAll()
      .where('revoked_at', 'is', null)
      .orderBy('id', 'asc')
      .limit(limit + 1);
    if (q.cursor) query = query.where('id', '>', decodeCursor(q.cursor));
    const rows = await query.execute();
    const page = rows.slice(0, limit);
    return {
      items: page.map(tokenFromRow),
      next_cursor: rows.length > limit ? encodeCursor(page[page.length - 1]!.id) : null,
    };
  }

  /** Revoke a token at once (the cache forgets it too). */
  async revoke(principal: Principal, id: string): Promise<void> {
    requireAdmin(principal, 'revoke tokens');
    const row = await this.ctx.store.db
      .selectFrom('tokens')
      .selectAll()
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
    const secret = newSecret();
    await this.ctx.store.db
      .insertInto('tokens')
      .values({
        id: newId('token'),
        name: 'admin',
        secret_hash: hashSecret(secret),
        admin: 1,
        projects: '[]',
        created_at: nowIso(),
        expires_at: null,
        last_used_at: null,
        revoked_at: null,
      })
      .execute();
    return secret;
  }
}
