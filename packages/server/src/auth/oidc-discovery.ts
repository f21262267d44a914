import { createLocalJWKSet, type JWTVerifyGetKey } from 'jose';
import { Type, type Static } from 'typebox';
import { Compile } from 'typebox/compile';
import { checked, fetchJson, OidcUnavailable, type FetchLimits } from './oidc-http.js';

const Url = Type.String({ minLength: 1, maxLength: 2048 });
const Names = Type.Array(Type.String({ minLength: 1, maxLength: 256 }), { maxItems: 100 });

/** The parts of a provider's `/.well-known/openid-configuration` floe uses; anything else is ignored. */
const Discovery = Type.Object({
  issuer: Url,
  authorization_endpoint: Url,
  token_endpoint: Url,
  jwks_uri: Url,
  userinfo_endpoint: Type.Optional(Url),
  code_challenge_methods_supported: Type.Optional(Names),
  id_token_signing_alg_values_supported: Type.Optional(Names),
  token_endpoint_auth_methods_supported: Type.Optional(Names),
});
export type OidcDiscovery = Static<typeof Discovery>;
const checkDiscovery = Compile(Discovery);

const Jwks = Type.Object({
  keys: Type.Array(
    Type.Object({
      kty: Type.String({ minLength: 1, maxLength: 16 }),
      kid: Type.Optional(Type.String({ maxLength: 256 })),
    }),
    { maxItems: 100 },
  ),
});
const checkJwks = Compile(Jwks);

/**
 * Whether a URL the provider names may be used: https, or http to this
 * machine only (a provider for tests or behind a local proxy).
 */
function acceptableUrl(value: string): boolean {
  let u: URL;
  try {
    u = new URL(value);
  } catch {
    return false;
  }
  if (u.username !== '' || u.password !== '' || u.hash !== '') return false;
  if (u.protocol === 'https:') return true;
  return u.protocol === 'http:' && ['127.0.0.1', 'localhost', '[::1]'].includes(u.hostname);
}

/** How the discovery document and the keys are fetched and kept. */
export interface ProviderMetadataOptions {
  readonly issuer: string;
  readonly timeoutMs: number;
  /** How long a fetched discovery document is used. */
  readonly discoveryTtlMs: number;
  /** Least time between two fetches of the keys for a key id not seen (rotation), so a stream of bad tokens cannot make floe hammer the provider. */
  readonly jwksCooldownMs: number;
  readonly now: () => number;
}

/**
 * The provider's discovery document and signing keys, fetched on first use
 * and cached. A failed fetch is not cached (the next login tries again). The
 * keys are fetched again when a token names a key id not in the cached set,
 * at most once per cooldown: the provider rotated its keys.
 */
export class ProviderMetadata {
  private discovery: { value: OidcDiscovery; expires: number } | undefined;
  private discoveryPending: Promise<OidcDiscovery> | undefined;
  private keys: { getKey: JWTVerifyGetKey; kids: Set<string>; uri: string } | undefined;
  private keysPending: Promise<void> | undefined;
  private kidRefetchAt: number | undefined;

  constructor(private readonly opts: ProviderMetadataOptions) {}

  /** The discovery document, checked: its issuer is the configured one, its endpoints usable, S256 PKCE offered. */
  async get(limits: Pick<FetchLimits, 'signal'> = {}): Promise<OidcDiscovery> {
    const cached = this.discovery;
    if (cached !== undefined && cached.expires > this.opts.now()) return cached.value;
    this.discoveryPending ??= this.fetchDiscovery().finally(() => (this.discoveryPending = undefined));
    return untilAborted(this.discoveryPending, limits.signal);
  }

  private async fetchDiscovery(): Promise<OidcDiscovery> {
    const url = `${this.opts.issuer.replace(/\/$/, '')}/.well-known/openid-configuration`;
    const answer = await fetchJson(url, {}, { timeoutMs: this.opts.timeoutMs });
    if (answer.status !== 200) throw new OidcUnavailable(`discovery: HTTP ${answer.status}`);
    const d = checked(checkDiscovery, answer.body, 'discovery document');
    if (d.issuer !== this.opts.issuer) throw new OidcUnavailable('discovery: the document names another issuer');
    for (const key of ['authorization_endpoint', 'token_endpoint', 'jwks_uri'] as const) {
      if (!acceptableUrl(d[key])) throw new OidcUnavailable(`discovery: ${key} is not an https URL`);
    }
    const methods = d.code_challenge_methods_supported;
    if (methods !== undefined && !methods.includes('S256'))
      throw new OidcUnavailable('discovery: the provider does not offer S256 PKCE');
    this.discovery = { value: d, expires: this.opts.now() + this.opts.discoveryTtlMs };
    return d;
  }

  /**
   * A key lookup for jose's verifier. A token whose key id is not in the
   * cached set makes one fetch of the keys (if the cooldown allows) before
   * the lookup answers; without a match jose then refuses the token.
   */
  async keyFor(kid: string | undefined, limits: Pick<FetchLimits, 'signal'> = {}): Promise<JWTVerifyGetKey> {
    const d = await this.get(limits);
    const k = this.keys;
    const stale = k === undefined || k.uri !== d.jwks_uri;
    const unknownKid = kid !== undefined && k !== undefined && !k.kids.has(kid);
    // The cooldown runs from the last fetch a key id caused, not from the first fetch: a rotation right
    // after floe started is still seen at once.
    const mayRefetch =
      this.kidRefetchAt === undefined || this.opts.now() - this.kidRefetchAt >= this.opts.jwksCooldownMs;
    if (stale || (unknownKid && mayRefetch)) {
      if (!stale) this.kidRefetchAt = this.opts.now();
      this.keysPending ??= this.fetchKeys(d.jwks_uri).finally(() => (this.keysPending = undefined));
      await untilAborted(this.keysPending, limits.signal);
    }
    return this.keys!.getKey;
  }

  private async fetchKeys(uri: string): Promise<void> {
    const answer = await fetchJson(uri, {}, { timeoutMs: this.opts.timeoutMs });
    if (answer.status !== 200) throw new OidcUnavailable(`keys: HTTP ${answer.status}`);
    const set = checked(checkJwks, answer.body, 'key set');
    const kids = new Set(set.keys.flatMap((key) => (key.kid === undefined ? [] : [key.kid])));
    this.keys = { getKey: createLocalJWKSet(set), kids, uri };
  }
}

/**
 * The shared fetch's result, or an abort when this caller gave up: a fetch
 * several logins wait for runs to its own time limit, whoever leaves.
 */
async function untilAborted<T>(shared: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (signal === undefined) return shared;
  signal.throwIfAborted();
  let stop: () => void = () => {};
  const aborted = new Promise<never>((_, reject) => {
    stop = () => reject(new OidcUnavailable('the caller gave up'));
    signal.addEventListener('abort', stop, { once: true });
  });
  try {
    return await Promise.race([shared, aborted]);
  } finally {
    signal.removeEventListener('abort', stop);
  }
}
