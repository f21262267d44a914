import { createHash } from 'node:crypto';
import { Type, type Static } from 'typebox';
import { Compile } from 'typebox/compile';
import { TtlCache } from './ttl-cache.js';
import { plausibleUsername, type AuthFailure, type AuthResult, type Authenticator } from './types.js';

/** What floe asks an external checker about: one request, or a password login. */
export interface CheckRequest {
  /** The caller's `Authorization` header, passed on as it came (never logged, never cached in clear). */
  readonly authorization: string;
  readonly method?: string;
  readonly path?: string;
  readonly project?: string;
  readonly resource?: string;
}

/** Options of the external checker (the `checker` entry of the auth configuration). */
export interface CheckerOptions {
  readonly name?: string;
  /** Where floe POSTs each question (http:// or https://). */
  readonly url: string;
  /** Extra headers for the checker, e.g. a shared secret it expects from floe. */
  readonly headers?: Readonly<Record<string, string>>;
  /** Time for the whole answer (default 2 s). */
  readonly timeoutMs?: number;
  /** How long an "allow" is reused for the same header and request (default 10 s; 0: never). */
  readonly cacheTtlMs?: number;
  /** How long a "deny" is reused (default 2 s; 0: never). */
  readonly negativeCacheTtlMs?: number;
  /** Most answers kept (default 1000). */
  readonly cacheEntries?: number;
  /** Clock, for tests. */
  readonly now?: () => number;
}

/** Largest answer read from a checker. */
const MAX_ANSWER_BYTES = 64 * 1024;

const Name = Type.String({ minLength: 1, maxLength: 256 });
/** What a checker must answer (HTTP 200, JSON); anything else is no answer at all. */
const CheckerAnswer = Type.Object({
  allow: Type.Boolean(),
  user: Type.Optional(
    Type.Object({
      subject: Name,
      displayName: Type.Optional(Type.String({ maxLength: 256 })),
      email: Type.Optional(Type.String({ maxLength: 320 })),
      groups: Type.Optional(Type.Array(Type.String({ minLength: 1, maxLength: 1024 }), { maxItems: 1000 })),
    }),
  ),
  roles: Type.Optional(
    Type.Array(
      Type.Union([
        Type.Object({ role: Type.Literal('operator') }, { additionalProperties: false }),
        Type.Object(
          { role: Type.Union([Type.Literal('owner'), Type.Literal('member'), Type.Literal('viewer')]), project: Name },
          { additionalProperties: false },
        ),
      ]),
      { maxItems: 1000 },
    ),
  ),
  /** On a deny: whether the user is unknown to the checker or the credentials are wrong. */
  reason: Type.Optional(Type.Union([Type.Literal('unknown_user'), Type.Literal('bad_credentials')])),
});
const checkAnswer = Compile(CheckerAnswer);
type CheckerAnswer = Static<typeof CheckerAnswer>;

class NoAnswer extends Error {
  override readonly name = 'NoAnswer';
}

/**
 * "Authentication is not our problem": floe POSTs the opaque `Authorization`
 * header with the request's method, path, project and resource to the
 * operator's checker and takes its decision (allow or deny, the user, roles).
 * Answers are cached briefly (allow and deny apart, bounded, keyed by a hash
 * of the header and the request). A timeout, a non-200 status, a redirect, a
 * body that is not JSON or that the schema refuses all mean `unavailable`:
 * the checker fails closed and that failure is never cached.
 */
export class ExternalChecker implements Authenticator {
  readonly kind = 'checker';
  readonly name: string;
  private readonly cache: TtlCache<AuthResult>;
  /** Questions on their way to the checker, by cache key. */
  private readonly inFlight = new Map<string, Promise<AuthResult>>();

  constructor(private readonly opts: CheckerOptions) {
    this.name = opts.name ?? 'checker';
    this.cache = new TtlCache(opts.cacheEntries ?? 1000, opts.now);
  }

  /** Ask about one request carrying `authorization`. */
  async check(req: CheckRequest): Promise<AuthResult> {
    return this.ask({ purpose: 'request', ...req });
  }

  /** A password login, passed to the checker as a `Basic` header with purpose `login`. */
  async verifyPassword(username: string, password: string): Promise<AuthResult> {
    // A Basic user-id cannot hold a colon (RFC 7617).
    if (!plausibleUsername(username) || username.includes(':')) {
      return { ok: false, authenticator: this.name, reason: 'unknown_user' };
    }
    const authorization = `Basic ${Buffer.from(`${username}:${password}`, 'utf8').toString('base64')}`;
    return this.ask({ purpose: 'login', authorization });
  }

  private async ask(question: CheckRequest & { purpose: 'login' | 'request' }): Promise<AuthResult> {
    const key = createHash('sha256').update(JSON.stringify(question)).digest('base64');
    const cached = this.cache.get(key);
    if (cached !== undefined) return cached;
    // Requests that arrive together with the same question share one answer: a burst of a client's
    // parallel requests asks the checker once, not once per request.
    const pending = this.inFlight.get(key);
    if (pending !== undefined) return pending;
    const asked = this.askChecker(key, question).finally(() => this.inFlight.delete(key));
    this.inFlight.set(key, asked);
    return asked;
  }

  private async askChecker(
    key: string,
    question: CheckRequest & { purpose: 'login' | 'request' },
  ): Promise<AuthResult> {
    let answer: CheckerAnswer;
    try {
      answer = await this.post(question);
    } catch (err) {
      const why = err instanceof NoAnswer ? err.message : err instanceof Error ? err.name : 'error';
      return { ok: false, authenticator: this.name, reason: 'unavailable', detail: `checker: ${why}` };
    }
    const result = this.decide(answer);
    this.cache.set(key, result, result.ok ? (this.opts.cacheTtlMs ?? 10_000) : (this.opts.negativeCacheTtlMs ?? 2000));
    return result;
  }

  private decide(a: CheckerAnswer): AuthResult {
    if (!a.allow || a.user === undefined) {
      const reason: AuthFailure['reason'] = a.allow ? 'denied' : (a.reason ?? 'denied');
      return { ok: false, authenticator: this.name, reason };
    }
    return {
      ok: true,
      authenticator: this.name,
      subject: a.user.subject,
      groups: a.user.groups ?? [],
      roles: a.roles ?? [],
      ...(a.user.displayName !== undefined ? { displayName: a.user.displayName } : {}),
      ...(a.user.email !== undefined ? { email: a.user.email } : {}),
    };
  }

  private async post(question: object): Promise<CheckerAnswer> {
    const res = await fetch(this.opts.url, {
      method: 'POST',
      headers: { ...this.opts.headers, 'content-type': 'application/json', accept: 'application/json' },
      body: JSON.stringify(question),
      redirect: 'error',
      signal: AbortSignal.timeout(this.opts.timeoutMs ?? 2000),
    });
    if (res.status !== 200) {
      await res.body?.cancel();
      throw new NoAnswer(`HTTP ${res.status}`);
    }
    const text = await readLimited(res, MAX_ANSWER_BYTES);
    let body: unknown;
    try {
      body = JSON.parse(text);
    } catch {
      throw new NoAnswer('answer is not JSON');
    }
    if (!checkAnswer.Check(body)) {
      const first = [...checkAnswer.Errors(body)][0];
      throw new NoAnswer(`answer refused at ${first?.instancePath || '/'}: ${first?.message ?? 'invalid'}`);
    }
    // An "allow" must say who is allowed.
    if (body.allow && body.user === undefined) throw new NoAnswer('allow without a user');
    return body;
  }
}

async function readLimited(res: Response, limit: number): Promise<string> {
  if (res.body === null) return '';
  const chunks: Uint8Array[] = [];
  let size = 0;
  for await (const chunk of res.body as AsyncIterable<Uint8Array>) {
    size += chunk.length;
    if (size > limit) throw new NoAnswer(`answer larger than ${limit} bytes`);
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString('utf8');
}
