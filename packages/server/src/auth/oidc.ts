import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { errors as joseErrors, jwtVerify, type JWTPayload, type JWTVerifyGetKey } from 'jose';
import { Type } from 'typebox';
import { Compile } from 'typebox/compile';
import { ProviderMetadata, type OidcDiscovery } from './oidc-discovery.js';
import { checked, fetchJson, OidcRejected, OidcUnavailable } from './oidc-http.js';
import type { AuthContext, AuthFailure, AuthResult, AuthSuccess, Authenticator } from './types.js';

/** How floe authenticates itself at the token endpoint; `none` for a public client (PKCE alone). */
export type OidcClientAuth = 'client_secret_basic' | 'client_secret_post' | 'none';

/** Which ID token claims hold what floe needs; the defaults are the standard ones. */
export interface OidcClaimNames {
  /** The login name shown and matched by operators (default `preferred_username`). */
  readonly username?: string;
  /** The groups, input of the role mapping (default `groups`). */
  readonly groups?: string;
  readonly email?: string;
  readonly displayName?: string;
}

/** Options of the OpenID Connect authenticator (the `oidc` entry of the auth configuration). */
export interface OidcOptions {
  readonly name?: string;
  /** The provider's issuer identifier, exactly as its discovery document and tokens state it. */
  readonly issuer: string;
  readonly clientId: string;
  readonly clientSecret?: string;
  /** Default: `client_secret_basic` with a secret, `none` without. */
  readonly clientAuth?: OidcClientAuth;
  /** Where the provider sends the browser back; must be registered at the provider. */
  readonly redirectUri: string;
  /** Scopes asked for besides `openid` (default `profile email`). */
  readonly scopes?: readonly string[];
  readonly claims?: OidcClaimNames;
  /** Time for each request to the provider (default 5000 ms). */
  readonly timeoutMs?: number;
  /** Clock difference tolerated on exp and iat (default 60 s). */
  readonly clockSkewSec?: number;
  /** How long the discovery document is used before it is fetched again (default 1 h). */
  readonly discoveryTtlMs?: number;
  /** Least time between fetches of the keys for an unknown key id (default 30 s). */
  readonly jwksCooldownMs?: number;
  /** Clock, for tests. */
  readonly now?: () => number;
}

/** A login begun: where to send the browser, and what the caller must keep (server side) until it comes back. */
export interface OidcLoginStart {
  readonly ok: true;
  readonly authorizationUrl: string;
  readonly pending: OidcPendingLogin;
}

/** What was made for one login and must come back with it; secret, kept by floe, never sent to the browser but in the URL. */
export interface OidcPendingLogin {
  readonly state: string;
  readonly nonce: string;
  readonly codeVerifier: string;
  readonly redirectUri: string;
}

/** The browser's return to the redirect URI: its query parameters, untrusted. */
export interface OidcCallback {
  readonly code?: string | undefined;
  readonly state?: string | undefined;
  readonly iss?: string | undefined;
  readonly error?: string | undefined;
}

/** A successful OpenID login: the shared answer, plus the username claim. */
export interface OidcSuccess extends AuthSuccess {
  readonly username?: string;
}

/** Signature algorithms accepted on ID tokens: asymmetric only (never `none` or a shared secret). */
const ALGORITHMS = [
  'RS256',
  'RS384',
  'RS512',
  'PS256',
  'PS384',
  'PS512',
  'ES256',
  'ES384',
  'ES512',
  'EdDSA',
  'Ed25519',
];

const Short = Type.String({ minLength: 1, maxLength: 65_536 });
const TokenAnswer = Type.Object({ id_token: Short, token_type: Type.String({ maxLength: 64 }) });
const checkTokenAnswer = Compile(TokenAnswer);
const ErrorAnswer = Type.Object({ error: Type.String({ pattern: '^[\\x20-\\x21\\x23-\\x5b\\x5d-\\x7e]{1,64}$' }) });
const checkErrorAnswer = Compile(ErrorAnswer);
const Text = Type.String({ maxLength: 1024 });
const checkText = Compile(Text);
const Groups = Type.Union([
  Type.Array(Type.String({ minLength: 1, maxLength: 1024 }), { maxItems: 1000 }),
  Type.String({ minLength: 1, maxLength: 1024 }),
]);
const checkGroups = Compile(Groups);
const Subject = Type.String({ minLength: 1, maxLength: 255 });
const checkSubject = Compile(Subject);

const random = (): string => randomBytes(32).toString('base64url');
const same = (a: string, b: string): boolean => {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
};

/**
 * OpenID Connect login (authorization code flow with S256 PKCE). The browser
 * is sent to the provider with `beginLogin()`; when it comes back,
 * `completeLogin()` exchanges the code, verifies the ID token (signature
 * against the provider's published keys, issuer, audience, authorized party,
 * expiry and issue time with a small clock skew, nonce) and maps its claims.
 * Everything the provider sends is checked; failures are answers, never
 * throws: `unavailable` when the provider cannot be reached or answers
 * nonsense, `bad_credentials` when the code, state or token is not right,
 * `denied` when the provider refused the user. It has no passwords: in a
 * password chain it answers `unknown_user`.
 */
export class OidcAuthenticator implements Authenticator {
  readonly kind = 'oidc';
  readonly name: string;
  private readonly metadata: ProviderMetadata;
  private readonly now: () => number;
  private readonly timeoutMs: number;
  private readonly clientAuth: OidcClientAuth;

  constructor(private readonly opts: OidcOptions) {
    this.name = opts.name ?? 'oidc';
    this.now = opts.now ?? Date.now;
    this.timeoutMs = opts.timeoutMs ?? 5000;
    this.clientAuth = opts.clientAuth ?? (opts.clientSecret === undefined ? 'none' : 'client_secret_basic');
    if (this.clientAuth !== 'none' && opts.clientSecret === undefined) {
      throw new Error(`${this.clientAuth} needs a client secret`);
    }
    this.metadata = new ProviderMetadata({
      issuer: opts.issuer,
      timeoutMs: this.timeoutMs,
      discoveryTtlMs: opts.discoveryTtlMs ?? 3_600_000,
      jwksCooldownMs: opts.jwksCooldownMs ?? 30_000,
      now: this.now,
    });
  }

  /** OpenID users log in through the browser; a password is never theirs to check. */
  verifyPassword(): Promise<AuthResult> {
    return Promise.resolve({
      ok: false,
      authenticator: this.name,
      reason: 'unknown_user',
      detail: 'oidc: logins go through the provider',
    });
  }

  /** Start a login: the provider's authorization URL, and the state, nonce and PKCE verifier to keep for it. */
  async beginLogin(ctx: AuthContext = {}): Promise<OidcLoginStart | AuthFailure> {
    let d: OidcDiscovery;
    try {
      d = await this.metadata.get({ signal: ctx.signal });
    } catch (err) {
      return this.failure(err);
    }
    const pending: OidcPendingLogin = {
      state: random(),
      nonce: random(),
      codeVerifier: random(),
      redirectUri: this.opts.redirectUri,
    };
    const url = new URL(d.authorization_endpoint);
    const scopes = ['openid', ...(this.opts.scopes ?? ['profile', 'email']).filter((s) => s !== 'openid')];
    url.searchParams.set('response_type', 'code');
    url.searchParams.set('client_id', this.opts.clientId);
    url.searchParams.set('redirect_uri', pending.redirectUri);
    url.searchParams.set('scope', scopes.join(' '));
    url.searchParams.set('state', pending.state);
    url.searchParams.set('nonce', pending.nonce);
    url.searchParams.set('code_challenge', createHash('sha256').update(pending.codeVerifier).digest('base64url'));
    url.searchParams.set('code_challenge_method', 'S256');
    return { ok: true, authorizationUrl: url.toString(), pending };
  }

  /** Finish a login with the browser's return and what `beginLogin()` made for it. */
  async completeLogin(
    callback: OidcCallback,
    pending: OidcPendingLogin,
    ctx: AuthContext = {},
  ): Promise<OidcSuccess | AuthFailure> {
    try {
      // The state first: a return that is not the answer to this login is refused before anything else is read.
      if (typeof callback.state !== 'string' || !same(callback.state, pending.state))
        throw new OidcRejected('state does not match the login');
      if (callback.error !== undefined) {
        const code = checkErrorAnswer.Check({ error: callback.error }) ? callback.error : 'error';
        return { ok: false, authenticator: this.name, reason: 'denied', detail: `oidc: provider answered ${code}` };
      }
      if (callback.iss !== undefined && callback.iss !== this.opts.issuer)
        throw new OidcRejected('the answer names another issuer');
      if (typeof callback.code !== 'string' || callback.code.length === 0 || callback.code.length > 4096)
        throw new OidcRejected('no authorization code');
      const d = await this.metadata.get({ signal: ctx.signal });
      const idToken = await this.exchange(d, callback.code, pending, ctx.signal);
      const claims = await this.verify(d, idToken, pending.nonce, ctx.signal);
      return this.success(claims);
    } catch (err) {
      return this.failure(err);
    }
  }

  private async exchange(d: OidcDiscovery, code: string, p: OidcPendingLogin, signal?: AbortSignal): Promise<string> {
    const form = new URLSearchParams({
      grant_type: 'authorization_code',
      code,
      redirect_uri: p.redirectUri,
      code_verifier: p.codeVerifier,
    });
    const headers: Record<string, string> = { 'content-type': 'application/x-www-form-urlencoded' };
    const secret = this.opts.clientSecret ?? '';
    if (this.clientAuth === 'client_secret_basic') {
      // RFC 6749 2.3.1: both parts form-encoded before Basic.
      const enc = (s: string): string => encodeURIComponent(s).replace(/%20/g, '+');
      headers.authorization = `Basic ${Buffer.from(`${enc(this.opts.clientId)}:${enc(secret)}`).toString('base64')}`;
    } else {
      form.set('client_id', this.opts.clientId);
      if (this.clientAuth === 'client_secret_post') form.set('client_secret', secret);
    }
    const answer = await fetchJson(
      d.token_endpoint,
      { method: 'POST', headers, body: form.toString() },
      { timeoutMs: this.timeoutMs, signal },
    );
    if (answer.status === 200) return checked(checkTokenAnswer, answer.body, 'token answer').id_token;
    const error = checkErrorAnswer.Check(answer.body) ? answer.body.error : undefined;
    // A code that is wrong, used or expired, or a verifier that does not match it: this login is refused.
    if (answer.status === 400 && error === 'invalid_grant')
      throw new OidcRejected('the provider refused the code (invalid_grant)');
    // Anything else (the client's credentials refused, a 5xx) is the provider or its configuration.
    throw new OidcUnavailable(`token endpoint: HTTP ${answer.status}${error !== undefined ? ` ${error}` : ''}`);
  }

  private async verify(d: OidcDiscovery, idToken: string, nonce: string, signal?: AbortSignal): Promise<JWTPayload> {
    const offered = d.id_token_signing_alg_values_supported;
    const algorithms = offered === undefined ? ALGORITHMS : ALGORITHMS.filter((a) => offered.includes(a));
    const getKey: JWTVerifyGetKey = async (header, token) =>
      (await this.metadata.keyFor(header.kid, { signal }))(header, token);
    const skew = this.opts.clockSkewSec ?? 60;
    const now = this.now();
    const { payload } = await jwtVerify(idToken, getKey, {
      issuer: this.opts.issuer,
      audience: this.opts.clientId,
      algorithms,
      clockTolerance: skew,
      currentDate: new Date(now),
      requiredClaims: ['iss', 'sub', 'aud', 'exp', 'iat'],
    });
    // Several audiences: the token must say it was issued to floe (OpenID Connect Core 3.1.3.7).
    const audiences = Array.isArray(payload.aud) ? payload.aud : [payload.aud];
    if (audiences.length > 1 && payload.azp === undefined)
      throw new OidcRejected('ID token: several audiences, no azp');
    if (payload.azp !== undefined && payload.azp !== this.opts.clientId)
      throw new OidcRejected('ID token: issued to another party (azp)');
    if (typeof payload.iat !== 'number' || payload.iat > now / 1000 + skew)
      throw new OidcRejected('ID token: issued in the future (iat)');
    if (typeof payload.nonce !== 'string' || !same(payload.nonce, nonce))
      throw new OidcRejected('ID token: nonce does not match the login');
    return payload;
  }

  private success(claims: JWTPayload): OidcSuccess {
    const names = this.opts.claims ?? {};
    const text = (claim: string): string | undefined => {
      const v = claims[claim];
      if (v === undefined || v === null) return undefined;
      return checked(checkText, v, `ID token claim ${claim}`);
    };
    const subject = checked(checkSubject, claims.sub, 'ID token claim sub');
    const groupsClaim = names.groups ?? 'groups';
    const rawGroups = claims[groupsClaim];
    const groups =
      rawGroups === undefined || rawGroups === null
        ? []
        : checked(checkGroups, rawGroups, `ID token claim ${groupsClaim}`);
    const username = text(names.username ?? 'preferred_username');
    const email = text(names.email ?? 'email');
    const displayName = text(names.displayName ?? 'name');
    return {
      ok: true,
      authenticator: this.name,
      subject,
      groups: typeof groups === 'string' ? [groups] : groups,
      ...(username !== undefined ? { username } : {}),
      ...(email !== undefined ? { email } : {}),
      ...(displayName !== undefined ? { displayName } : {}),
    };
  }

  /** The answer for a failure; its detail names what went wrong, never a code, token or secret. */
  private failure(err: unknown): AuthFailure {
    const fail = (reason: AuthFailure['reason'], why: string): AuthFailure => ({
      ok: false,
      authenticator: this.name,
      reason,
      detail: `oidc: ${why}`,
    });
    if (err instanceof OidcUnavailable) return fail('unavailable', err.message);
    if (err instanceof OidcRejected) return fail('bad_credentials', err.message);
    if (err instanceof joseErrors.JWTExpired) return fail('bad_credentials', 'ID token: expired (exp)');
    if (err instanceof joseErrors.JWTClaimValidationFailed)
      return fail('bad_credentials', `ID token: claim ${err.claim} refused (${err.reason})`);
    if (err instanceof joseErrors.JWSSignatureVerificationFailed)
      return fail('bad_credentials', 'ID token: signature does not verify');
    if (err instanceof joseErrors.JWKSNoMatchingKey)
      return fail('bad_credentials', 'ID token: signed with a key the provider does not publish');
    if (err instanceof joseErrors.JOSEError) return fail('bad_credentials', `ID token: refused (${err.code})`);
    return fail('unavailable', err instanceof Error ? err.name : 'error');
  }
}
