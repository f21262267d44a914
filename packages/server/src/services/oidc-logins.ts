import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import {
  FloeError,
  type LoginSession,
  type OidcCallbackQuery,
  type OidcLoginStarted,
  type OidcPollPending,
  type Token,
  type User,
} from '@floe/api';
import { Type } from 'typebox';
import { Compile } from 'typebox/compile';
import type { OidcAuthenticator } from '../auth/oidc.js';
import type { AuthFailureReason, AuthSuccess } from '../auth/types.js';
import type { Store } from '../db/index.js';
import type { LoginRequestsTable } from '../db/schema.js';

/** Makes the session of a user an authenticator vouched for (the login service's `completeLogin`). */
export type CompleteLogin = (
  success: AuthSuccess,
  ctx: { remoteAddress?: string; sessionName?: string },
) => Promise<{ token: string; session: Token; user: User }>;

/** What OpenID logins over HTTP need: the configured OpenID authenticators by name, and how to make a session. */
export interface OidcLoginDeps {
  readonly authenticators: ReadonlyMap<string, OidcAuthenticator>;
  readonly completeLogin: CompleteLogin;
  /** How long the browser has to come back (default 10 minutes). */
  readonly ttlMs?: number;
  /** How long the client has to collect the session once the browser came back (default 2 minutes). */
  readonly collectMs?: number;
}

/** What the browser is told when it comes back, and what the audit log records of it. */
export interface CallbackOutcome {
  readonly status: number;
  readonly ok: boolean;
  readonly message: string;
  /** Why it failed, for the audit log: an authenticator's reason, or `unknown_state`, `replayed`, `expired`, `invalid`. */
  readonly reason: string | null;
  readonly authenticator: string | null;
  /** The provider's subject (or username) on success. */
  readonly user: string | null;
  /** The page's confirmation secret, while the login waits for its code. */
  readonly confirm?: string;
}

/** What a poll found: the client waits, gets its session once, or learns that the login ended otherwise. */
export type PollDecision =
  | { readonly kind: 'pending' }
  | { readonly kind: 'expired' }
  | { readonly kind: 'collected' }
  | { readonly kind: 'failed'; readonly message: string }
  | { readonly kind: 'ready'; readonly result: string };

/** Wrong codes a returning browser may type before the login ends. */
const CONFIRM_ATTEMPTS = 5;
/** Letters of user codes: consonants only, so no word can be spelled and none looks like a digit (RFC 8628 6.1). */
const CODE_LETTERS = 'BCDFGHJKLMNPQRSTVWXZ';
const DEFAULT_TTL_MS = 10 * 60_000;
const DEFAULT_COLLECT_MS = 2 * 60_000;
/** Rows are removed this long after they expired. */
const KEEP_EXPIRED_MS = 24 * 3600_000;

const sha256 = (s: string): string => createHash('sha256').update(s, 'utf8').digest('hex');
const random = (bytes: number): string => randomBytes(bytes).toString('base64url');
const iso = (ms: number): string => new Date(ms).toISOString();

/** A new user code, `XXXX-XXXX` (about 35 bits). */
function newUserCode(): string {
  const bytes = randomBytes(8);
  const letters = [...bytes].map((b) => CODE_LETTERS[b % CODE_LETTERS.length]!);
  return `${letters.slice(0, 4).join('')}-${letters.slice(4).join('')}`;
}

/** A code as typed: case, spaces and dashes do not matter. */
const codeHash = (typed: string): string => sha256(typed.toUpperCase().replace(/[^A-Z]/g, ''));

/** The name a stored result gives the user, for the audit log. */
function who(result: string): string | null {
  const r = JSON.parse(result) as { username?: unknown; subject?: unknown };
  return typeof r.username === 'string' ? r.username : typeof r.subject === 'string' ? r.subject : null;
}

/** Equal hex hashes, compared in constant time. */
function sameHash(a: string, b: string): boolean {
  const x = Buffer.from(a, 'hex');
  const y = Buffer.from(b, 'hex');
  return x.length === y.length && x.length > 0 && timingSafeEqual(x, y);
}

/**
 * What a poll of `row` finds at `now` (the poll secret already checked). Pure: the outcome was
 * collected already, the login ran out of time, it failed, it waits for the browser, or its result is
 * there to collect.
 */
function decidePoll(row: LoginRequestsTable, now: string): PollDecision {
  if (row.consumed_at !== null) return { kind: 'collected' };
  if (row.expires_at <= now) return { kind: 'expired' };
  if (row.error !== null) return { kind: 'failed', message: row.error };
  if (row.result === null || row.confirmed_at === null) return { kind: 'pending' };
  return { kind: 'ready', result: row.result };
}

/** The stored result is floe's own, but is read back through a schema like any other input. */
const StoredSuccess = Type.Object({
  ok: Type.Literal(true),
  authenticator: Type.String({ maxLength: 256 }),
  subject: Type.String({ minLength: 1, maxLength: 255 }),
  username: Type.Optional(Type.String({ maxLength: 1024 })),
  displayName: Type.Optional(Type.String({ maxLength: 1024 })),
  email: Type.Optional(Type.String({ maxLength: 1024 })),
  groups: Type.Array(Type.String({ maxLength: 1024 }), { maxItems: 1000 }),
});
const checkStored = Compile(StoredSuccess);

/** The provider's error code as shown: its own characters (RFC 6749 4.1.2.1), else just `error`. */
function providerError(code: string): string {
  return /^[\x20-\x21\x23-\x5b\x5d-\x7e]{1,64}$/.test(code) ? code : 'error';
}

/** HTTP status of the page for a failed login, by the authenticator's reason. */
function failureStatus(reason: AuthFailureReason): number {
  return reason === 'unavailable' ? 502 : 401;
}

/**
 * OpenID Connect logins for clients that cannot receive the browser's return themselves (the CLI):
 * the client starts a login and gets the provider's URL, a poll secret and a code to show; the
 * browser comes back to floe's callback, which verifies the provider's answer and keeps it; that
 * browser confirms with the code the terminal shows; the client polls with its secret and gets a
 * session once. Everything in between is in the database (login_requests), so each step may reach
 * another control plane. The state is spent by its first use, every login expires, and the session
 * token is made only when the client collects it: no token is ever at rest here.
 */
export class OidcLoginService {
  private readonly ttlMs: number;
  private readonly collectMs: number;

  constructor(
    private readonly store: Store,
    private readonly deps: OidcLoginDeps,
  ) {
    this.ttlMs = deps.ttlMs ?? DEFAULT_TTL_MS;
    this.collectMs = deps.collectMs ?? DEFAULT_COLLECT_MS;
  }

  private authenticator(name: string): OidcAuthenticator {
    const a = this.deps.authenticators.get(name);
    if (a === undefined)
      throw new FloeError('authenticator_not_found', `no OpenID login named "${name}" is configured`, {
        kind: 'authenticator',
        id: name,
      });
    return a;
  }

  /** Begin a login with the OpenID authenticator `name`. */
  async start(name: string, opts: { sessionName?: string | undefined } = {}): Promise<OidcLoginStarted> {
    const a = this.authenticator(name);
    const begun = await a.beginLogin();
    if (!begun.ok)
      throw new FloeError('authenticator_unavailable', `the identity provider of "${name}" cannot be reached`, {
        authenticator: name,
        detail: begun.detail ?? begun.reason,
      });
    const now = Date.now();
    const pollSecret = random(32);
    const userCode = newUserCode();
    const row: LoginRequestsTable = {
      id: `lgn_${random(16)}`,
      authenticator: name,
      state_hash: sha256(begun.pending.state),
      code_verifier: begun.pending.codeVerifier,
      nonce: begun.pending.nonce,
      redirect_uri: begun.pending.redirectUri,
      poll_hash: sha256(pollSecret),
      user_code_hash: codeHash(userCode),
      confirm_hash: null,
      confirm_attempts: 0,
      confirmed_at: null,
      session_name: opts.sessionName ?? null,
      created_at: iso(now),
      expires_at: iso(now + this.ttlMs),
      completed_at: null,
      result: null,
      error: null,
      consumed_at: null,
    };
    const db = this.store.db;
    // Old logins go as new ones come: the table holds about a day of them.
    await db
      .deleteFrom('login_requests')
      .where('expires_at', '<', iso(now - KEEP_EXPIRED_MS))
      .execute();
    await db.insertInto('login_requests').values(row).execute();
    return {
      login_id: row.id,
      authorization_url: begun.authorizationUrl,
      poll_secret: pollSecret,
      user_code: userCode,
      expires_at: row.expires_at,
    };
  }

  /** The browser's return from the provider (its query checked by the route's schema, or `invalid`). */
  async callback(query: OidcCallbackQuery | 'invalid'): Promise<CallbackOutcome> {
    const refuse = (status: number, reason: string, message: string, authenticator: string | null = null) => ({
      status,
      ok: false,
      message,
      reason,
      authenticator,
      user: null,
    });
    if (query === 'invalid') return refuse(400, 'invalid', 'The identity provider’s answer is not one floe accepts.');
    if (query.state === undefined)
      return refuse(400, 'unknown_state', 'This page was opened without a login: start the login again.');
    const db = this.store.db;
    const row = await db
      .selectFrom('login_requests')
      .selectAll()
      .where('state_hash', '=', sha256(query.state))
      .executeTakeFirst();
    if (row === undefined)
      return refuse(400, 'unknown_state', 'This login is unknown to floe (or was removed): start it again.');
    const now = Date.now();
    if (row.expires_at <= iso(now))
      return refuse(410, 'expired', 'This login took too long and has expired: start it again.', row.authenticator);
    // The state is spent here, once: a second return with it (a replay, a reload) finds it used.
    const claimed = await db
      .updateTable('login_requests')
      .set({ completed_at: iso(now) })
      .where('id', '=', row.id)
      .where('completed_at', 'is', null)
      .executeTakeFirst();
    if (Number(claimed.numUpdatedRows) !== 1)
      return refuse(
        400,
        'replayed',
        'This login already came back here once: if its code was not confirmed on that page, start the login again.',
        row.authenticator,
      );

    const fail = async (status: number, reason: string, message: string): Promise<CallbackOutcome> => {
      await db.updateTable('login_requests').set({ error: message }).where('id', '=', row.id).execute();
      return refuse(status, reason, message, row.authenticator);
    };
    if (query.error !== undefined)
      return fail(401, 'denied', `The identity provider refused the login (${providerError(query.error)}).`);
    const a = this.deps.authenticators.get(row.authenticator);
    if (a === undefined)
      return fail(502, 'unavailable', `The login method "${row.authenticator}" is no longer configured.`);
    const result = await a.completeLogin(
      {
        code: query.code,
        state: query.state,
        iss: query.iss,
      },
      { state: query.state, nonce: row.nonce, codeVerifier: row.code_verifier, redirectUri: row.redirect_uri },
    );
    if (!result.ok)
      return fail(
        failureStatus(result.reason),
        result.reason,
        `The login could not be completed: ${result.detail ?? result.reason}.`,
      );
    // Kept until this browser confirms with the code the terminal shows: only it got the secret for that.
    const confirm = random(32);
    await db
      .updateTable('login_requests')
      .set({
        result: JSON.stringify(result),
        confirm_hash: sha256(confirm),
        expires_at: iso(Date.now() + this.collectMs),
      })
      .where('id', '=', row.id)
      .execute();
    return {
      status: 200,
      ok: true,
      message: 'One more step: enter the code your terminal shows, to confirm that this login is yours.',
      reason: null,
      authenticator: row.authenticator,
      user: result.username ?? result.subject,
      confirm,
    };
  }

  /**
   * The returning browser confirms the login with the code the terminal shows. A wrong code may be
   * typed again a few times; then the login ends. Without the page's secret nothing can be confirmed,
   * so whoever started a login cannot confirm one that another person's browser completed.
   */
  async confirm(confirm: string, code: string): Promise<CallbackOutcome> {
    const db = this.store.db;
    const row = await db
      .selectFrom('login_requests')
      .selectAll()
      .where('confirm_hash', '=', sha256(confirm))
      .executeTakeFirst();
    const refuse = (status: number, reason: string, message: string, again?: string): CallbackOutcome => ({
      status,
      ok: false,
      message,
      reason,
      authenticator: row?.authenticator ?? null,
      user: null,
      ...(again !== undefined ? { confirm: again } : {}),
    });
    if (row === undefined || row.result === null || row.error !== null || row.consumed_at !== null)
      return refuse(400, 'unknown_state', 'There is no login waiting for this confirmation: start it again.');
    if (row.expires_at <= iso(Date.now()))
      return refuse(410, 'expired', 'This login took too long and has expired: start it again.');
    const done: CallbackOutcome = {
      status: 200,
      ok: true,
      message: 'Login complete: return to your terminal.',
      reason: null,
      authenticator: row.authenticator,
      user: who(row.result),
    };
    if (row.confirmed_at !== null) return done;
    if (!sameHash(row.user_code_hash, codeHash(code))) {
      const counted = await db
        .updateTable('login_requests')
        .set({ confirm_attempts: row.confirm_attempts + 1 })
        .where('id', '=', row.id)
        .where('confirm_attempts', '=', row.confirm_attempts)
        .executeTakeFirst();
      const left = CONFIRM_ATTEMPTS - row.confirm_attempts - 1;
      // A wrong code typed at the same moment elsewhere was counted instead of this one.
      if (Number(counted.numUpdatedRows) !== 1)
        return refuse(401, 'wrong_code', 'That is not the code your terminal shows.', confirm);
      if (left > 0)
        return refuse(401, 'wrong_code', `That is not the code your terminal shows: ${left} tries left.`, confirm);
      await db
        .updateTable('login_requests')
        .set({ error: 'The login was not confirmed: the code was typed wrong too often.' })
        .where('id', '=', row.id)
        .execute();
      return refuse(401, 'wrong_code', 'The code was typed wrong too often: the login has ended. Start it again.');
    }
    await db
      .updateTable('login_requests')
      .set({ confirmed_at: iso(Date.now()) })
      .where('id', '=', row.id)
      .where('confirmed_at', 'is', null)
      .execute();
    return done;
  }

  /**
   * The client asks how its login went: pending (202), its session exactly once, or an error:
   * `unauthenticated` for an unknown login or a wrong secret (alike), `login_expired` once it ran
   * out of time or was collected, `login_failed` when the provider or floe refused it.
   */
  async poll(
    loginId: string,
    pollSecret: string,
    ctx: { remoteAddress?: string },
  ): Promise<
    | { readonly pending: OidcPollPending }
    | { readonly session: LoginSession; readonly user: User; readonly authenticator: string }
  > {
    const db = this.store.db;
    const row = await db.selectFrom('login_requests').selectAll().where('id', '=', loginId).executeTakeFirst();
    if (row === undefined || !sameHash(row.poll_hash, sha256(pollSecret)))
      throw new FloeError('unauthenticated', 'no login with that id and poll secret');
    const now = iso(Date.now());
    const decision = decidePoll(row, now);
    const gone = (why: string) => new FloeError('login_expired', why, { login_id: row.id });
    switch (decision.kind) {
      case 'pending':
        return { pending: { status: 'pending', expires_at: row.expires_at } };
      case 'collected':
        throw gone('this login’s outcome was already collected: start a new login');
      case 'expired':
        throw gone('this login expired before it was completed: start a new login');
      case 'failed':
      case 'ready':
        break;
    }
    // Whatever it holds is given once: whoever spends the row first gets it.
    const spent = await db
      .updateTable('login_requests')
      .set({ consumed_at: now })
      .where('id', '=', row.id)
      .where('consumed_at', 'is', null)
      .executeTakeFirst();
    if (Number(spent.numUpdatedRows) !== 1) throw gone('this login’s outcome was already collected');
    if (decision.kind === 'failed')
      throw new FloeError('login_failed', decision.message, { authenticator: row.authenticator });
    const parsed: unknown = JSON.parse(decision.result);
    if (!checkStored.Check(parsed)) throw new FloeError('login_failed', 'the stored login result is not valid');
    const { token, session, user } = await this.deps.completeLogin(parsed, {
      ...(ctx.remoteAddress !== undefined ? { remoteAddress: ctx.remoteAddress } : {}),
      ...(row.session_name !== null ? { sessionName: row.session_name } : {}),
    });
    return { session: { token, expires_at: session.expires_at, user }, user, authenticator: row.authenticator };
  }
}
