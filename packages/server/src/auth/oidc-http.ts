/** Largest answer read from an OpenID provider (discovery, keys, tokens). */
const MAX_ANSWER_BYTES = 256 * 1024;

/** The provider could not answer usefully: down, timed out, 5xx, or an answer floe does not accept. */
export class OidcUnavailable extends Error {
  override readonly name = 'OidcUnavailable';
}

/** The provider answered, and the login is refused (a bad code, state or token). */
export class OidcRejected extends Error {
  override readonly name = 'OidcRejected';
}

/** A compiled schema check (typebox's validator fits). */
export interface Check<T> {
  Check(value: unknown): value is T;
  Errors(value: unknown): readonly { readonly instancePath: string; readonly message: string }[];
}

/** What one request to the provider is allowed: a time limit, and the caller's abort. */
export interface FetchLimits {
  readonly timeoutMs: number;
  readonly signal?: AbortSignal | undefined;
}

/** An HTTP answer whose JSON body was read (bounded) but not yet checked. */
export interface JsonAnswer {
  readonly status: number;
  readonly body: unknown;
}

/**
 * One request to the provider: no redirects, a time limit on the whole
 * answer, a bounded body that must be JSON. Failures to get an answer throw
 * OidcUnavailable naming the kind of failure, never a URL's query, a header
 * or a body (they may carry a code or a secret).
 */
export async function fetchJson(url: string, init: RequestInit, limits: FetchLimits): Promise<JsonAnswer> {
  const timeout = AbortSignal.timeout(limits.timeoutMs);
  const signal = limits.signal ? AbortSignal.any([timeout, limits.signal]) : timeout;
  const what = describe(url);
  let res: Response;
  try {
    res = await fetch(url, {
      ...init,
      redirect: 'error',
      signal,
      headers: { accept: 'application/json', ...init.headers },
    });
  } catch (err) {
    if (timeout.aborted) throw new OidcUnavailable(`${what}: no answer within ${limits.timeoutMs} ms`);
    throw new OidcUnavailable(`${what}: ${causeOf(err)}`);
  }
  try {
    const text = await readLimited(res);
    let body: unknown = undefined;
    try {
      body = text === '' ? undefined : JSON.parse(text);
    } catch {
      if (res.status >= 200 && res.status < 300) throw new OidcUnavailable(`${what}: answer is not JSON`);
    }
    return { status: res.status, body };
  } catch (err) {
    if (err instanceof OidcUnavailable) throw err;
    if (timeout.aborted) throw new OidcUnavailable(`${what}: no answer within ${limits.timeoutMs} ms`);
    throw new OidcUnavailable(`${what}: ${causeOf(err)}`);
  }
}

/** Check a provider's answer against its schema; a refusal names the place, never the value. */
export function checked<T>(check: Check<T>, value: unknown, what: string): T {
  if (check.Check(value)) return value;
  const first = [...check.Errors(value)][0];
  throw new OidcUnavailable(`${what} refused at ${first?.instancePath || '/'}: ${first?.message ?? 'invalid'}`);
}

/** The origin and path of a URL: enough to name the endpoint, without a query that may hold a secret. */
function describe(url: string): string {
  try {
    const u = new URL(url);
    return `${u.origin}${u.pathname}`;
  } catch {
    return 'provider';
  }
}

function causeOf(err: unknown): string {
  const cause = (err as { cause?: { code?: unknown } } | undefined)?.cause;
  if (typeof cause?.code === 'string') return cause.code;
  return err instanceof Error ? err.name : 'error';
}

async function readLimited(res: Response): Promise<string> {
  if (res.body === null) return '';
  const chunks: Uint8Array[] = [];
  let size = 0;
  for await (const chunk of res.body as AsyncIterable<Uint8Array>) {
    size += chunk.length;
    if (size > MAX_ANSWER_BYTES) throw new OidcUnavailable(`answer larger than ${MAX_ANSWER_BYTES} bytes`);
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString('utf8');
}
