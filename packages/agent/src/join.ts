import { request } from 'node:https';
import { FloeError, isErrorCode, NAME_PATTERN, type HostJoin } from '@floe/api';
import { createCsr, isSignedBy } from './pki.js';
import { AgentState } from './state.js';

/** Options of `joinControlPlane`. */
export interface JoinOptions {
  /** Base URL of the control plane (https). */
  server: string;
  /** One-time join token from `POST /v1/hosts/join-tokens`. */
  token: string;
  /** Name of this host in floe (a DNS label). */
  name: string;
  /** The agent's data directory. */
  dataDir: string;
  /** floe's CA certificate (PEM), to verify the control plane during the join. */
  caPem?: string;
  /** Trust the control plane's certificate blindly for the join (and pin the CA it returns). */
  insecure?: boolean;
  timeoutMs?: number;
}

/** The host this agent became. */
export interface JoinResult {
  hostId: string;
  hostName: string;
  server: string;
}

/** Check and normalize the control plane URL: https, no query, no trailing slash. */
export function normalizeServerUrl(server: string): string {
  let url: URL;
  try {
    url = new URL(server);
  } catch {
    throw new FloeError('validation_failed', `"${server}" is not a URL`, { field: 'server' });
  }
  if (url.protocol !== 'https:') {
    throw new FloeError('validation_failed', `the control plane URL must use https, not ${url.protocol}`, {
      field: 'server',
    });
  }
  if (url.username || url.password || url.search || url.hash) {
    throw new FloeError(
      'validation_failed',
      'the control plane URL must not carry credentials, a query or a fragment',
      { field: 'server' },
    );
  }
  return `${url.origin}${url.pathname.replace(/\/+$/, '')}`;
}

interface HttpAnswer {
  status: number;
  body: string;
}

const MAX_ANSWER_BYTES = 1024 * 1024;

function postJson(
  url: string,
  body: unknown,
  tls: { ca?: string; insecure: boolean },
  timeoutMs: number,
): Promise<HttpAnswer> {
  const payload = JSON.stringify(body);
  return new Promise((resolve, reject) => {
    const req = request(
      url,
      {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          'content-length': Buffer.byteLength(payload),
          accept: 'application/json',
        },
        ca: tls.ca === undefined ? undefined : [tls.ca],
        rejectUnauthorized: tls.ca !== undefined || !tls.insecure,
        timeout: timeoutMs,
        agent: false,
      },
      (res) => {
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (chunk: Buffer) => {
          size += chunk.length;
          if (size > MAX_ANSWER_BYTES) {
            req.destroy(new Error('the control plane answer is too large'));
            return;
          }
          chunks.push(chunk);
        });
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
        res.on('error', reject);
      },
    );
    req.on('timeout', () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
    req.on('error', reject);
    req.end(payload);
  });
}

function errorFromAnswer(answer: HttpAnswer): FloeError {
  try {
    const parsed = JSON.parse(answer.body) as { error?: { code?: unknown; message?: unknown; details?: unknown } };
    const code = typeof parsed.error?.code === 'string' ? parsed.error.code : '';
    const message = typeof parsed.error?.message === 'string' ? parsed.error.message : `HTTP ${answer.status}`;
    const details = parsed.error?.details as Record<string, unknown> | undefined;
    if (isErrorCode(code)) return new FloeError(code, message, details);
    return new FloeError('internal_error', `join failed (HTTP ${answer.status}, ${code || 'no code'}): ${message}`);
  } catch {
    return new FloeError('internal_error', `join failed with HTTP ${answer.status}`);
  }
}

/**
 * Trade a join token for a client certificate: make a key and CSR, POST
 * `{server}/v1/hosts/join`, and store key, certificate, CA and agent.json in
 * the data directory. The server is verified with `caPem`; without it the
 * caller must say `insecure` explicitly, and the returned CA is pinned from
 * then on.
 */
export async function joinControlPlane(opts: JoinOptions): Promise<JoinResult> {
  if (!new RegExp(NAME_PATTERN).test(opts.name)) {
    throw new FloeError('validation_failed', `host name "${opts.name}" is not a DNS label (a-z, 0-9, "-")`, {
      field: 'name',
    });
  }
  const server = normalizeServerUrl(opts.server);
  if (opts.caPem === undefined && !opts.insecure) {
    throw new FloeError(
      'validation_failed',
      "joining needs floe's CA certificate (--ca FILE) to verify the control plane, or --insecure-join to trust it this once",
      { field: 'ca' },
    );
  }
  const { csrPem, keyPem } = await createCsr(opts.name);
  const body: HostJoin = { token: opts.token, name: opts.name, csr: csrPem };
  let answer: HttpAnswer;
  try {
    answer = await postJson(
      `${server}/v1/hosts/join`,
      body,
      { ca: opts.caPem, insecure: opts.insecure ?? false },
      opts.timeoutMs ?? 30_000,
    );
  } catch (err) {
    throw new Error(`cannot join ${server}: ${(err as Error).message}`);
  }
  if (answer.status < 200 || answer.status >= 300) throw errorFromAnswer(answer);

  let joined: { host?: { id?: unknown; name?: unknown }; certificate?: unknown; ca?: unknown };
  try {
    joined = JSON.parse(answer.body) as typeof joined;
  } catch {
    throw new Error('the control plane answered the join with something that is not JSON');
  }
  const { certificate, ca, host } = joined;
  if (
    typeof certificate !== 'string' ||
    typeof ca !== 'string' ||
    typeof host?.id !== 'string' ||
    typeof host.name !== 'string'
  ) {
    throw new Error('the join answer lacks host, certificate or ca');
  }
  if (!(await isSignedBy(certificate, ca))) {
    throw new Error('the certificate from the join is not signed by the CA that came with it');
  }

  const state = new AgentState(opts.dataDir);
  await state.writeCredentials({ keyPem, certPem: certificate, caPem: ca });
  await state.writeConfig({ server, host_id: host.id, host_name: host.name });
  return { hostId: host.id, hostName: host.name, server };
}
