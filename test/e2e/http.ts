import { Agent, request } from 'undici';

/** One answer of `call`. */
export interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: any; // the test reads what it asked for
}

/**
 * Plain HTTPS requests to a control plane with the status kept as it came (the client throws on
 * errors and retries by itself; the crash tests want neither), an optional Idempotency-Key, and a
 * connection error as status 0.
 */
export function httpCaller(url: string, ca: string, token: string) {
  const dispatcher = new Agent({ connect: { ca }, pipelining: 0 });
  const call = async (method: string, path: string, body?: unknown, key?: string): Promise<Answer> => {
    try {
      const res = await request(`${url}${path}`, {
        method: method as 'GET',
        dispatcher,
        headers: {
          authorization: `Bearer ${token}`,
          ...(body === undefined ? {} : { 'content-type': 'application/json' }),
          ...(key === undefined ? {} : { 'idempotency-key': key }),
        },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
        headersTimeout: 30_000,
        bodyTimeout: 30_000,
      });
      const text = await res.body.text();
      return { status: res.statusCode, headers: res.headers, body: text === '' ? null : JSON.parse(text) };
    } catch {
      return { status: 0, headers: {}, body: null };
    }
  };
  return { call, close: () => dispatcher.close() };
}
