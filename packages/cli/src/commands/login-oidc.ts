import type { Command } from 'commander';
import type { LoginSession } from '@floe/api';
import { FloeApiError, type FloeClient } from '@floe/client';
import { saveContext } from '../config.js';
import { CliError } from '../errors.js';
import type { CliRuntime } from '../runtime.js';

/** What `floe login URL --oidc NAME` needs besides the runtime. */
export interface OidcLoginRequest {
  readonly url: string;
  /** The OpenID authenticator's name on the server. */
  readonly authenticator: string;
  readonly context: string;
  readonly project: string | undefined;
  readonly ca: string | undefined;
  readonly caFile: string | undefined;
  /** Give up after this many seconds (the server's own expiry comes first when sooner). */
  readonly timeoutSeconds: number;
  /** Time between polls. */
  readonly pollMs: number;
}

const SPINNER = ['|', '/', '-', '\\'];
/** Poll failures that say nothing about the login: wait and ask again. */
const TRANSIENT = new Set(['rate_limited', 'store_unavailable', 'network_error']);

const sleep = (ms: number, signal: AbortSignal | undefined) =>
  new Promise<void>((resolve) => {
    const t = setTimeout(resolve, ms);
    signal?.addEventListener('abort', () => (clearTimeout(t), resolve()), { once: true });
  });

/** Polls until the session is there, the server says the login ended, or the time is up. */
async function waitForSession(
  rt: CliRuntime,
  client: FloeClient,
  started: { login_id: string; poll_secret: string; expires_at: string },
  req: OidcLoginRequest,
  progress: (elapsedS: number) => void,
): Promise<LoginSession> {
  const begun = rt.now();
  const deadline = Math.min(Date.parse(started.expires_at), begun + req.timeoutSeconds * 1000);
  for (;;) {
    const answer = await client.oidc.poll(started.login_id, started.poll_secret).catch((err: unknown) => {
      // A busy or briefly unreachable server is asked again; the login itself goes on meanwhile.
      if (err instanceof FloeApiError && TRANSIENT.has(err.code)) return undefined;
      throw err;
    });
    if (answer !== undefined && !('status' in answer)) return answer;
    if (rt.now() >= deadline || rt.signal?.aborted === true)
      throw new CliError(
        `the login was not completed in the browser within ${Math.round((rt.now() - begun) / 1000)} s; run floe login again`,
        'login_timeout',
      );
    progress(Math.round((rt.now() - begun) / 1000));
    await sleep(req.pollMs, rt.signal);
  }
}

/**
 * `floe login URL --oidc NAME`: starts an OpenID login on the server, prints the provider's URL for
 * the person to open in a browser (nothing is opened for them), polls until the browser came back
 * to floe, and saves the session token in a context, as `floe login --token` does.
 */
export async function loginWithOidc(rt: CliRuntime, cmd: Command, req: OidcLoginRequest): Promise<void> {
  const client = rt.connect({ url: req.url, ca: req.ca });
  const health = await client.health();
  const started = await client.oidc.start(req.authenticator, { session_name: 'floe-cli' });
  const json = rt.globals(cmd).output === 'json';
  // The URL goes to stderr, so `-o json` keeps stdout for the result alone.
  rt.warn(
    `Open this URL in a browser to log in with "${req.authenticator}":\n\n  ${started.authorization_url}\n\n` +
      `When floe's page asks for it, enter this code: ${started.user_code}\n`,
  );
  const tty = rt.err.isTTY === true && !json;
  if (!tty) rt.warn(`waiting for the login to be completed in the browser (until ${started.expires_at})...`);
  let frame = 0;
  const progress = (s: number) => {
    if (tty) rt.err.write(`\r${SPINNER[frame++ % SPINNER.length]} waiting for the browser login... ${s}s `);
  };
  let session: LoginSession;
  try {
    session = await waitForSession(rt, client, started, req, progress);
  } finally {
    if (tty) rt.err.write('\r\x1b[K');
  }
  const path = saveContext(
    req.context,
    { url: req.url, token: session.token, ca_file: req.caFile, project: req.project },
    { makeCurrent: true, path: rt.configPath },
  );
  rt.print(
    cmd,
    {
      context: req.context,
      url: req.url,
      version: health.version,
      user: session.user.name,
      expires_at: session.expires_at,
      project: req.project ?? null,
      config: path,
    },
    () =>
      `logged in to ${req.url} (floe ${health.version}) as ${session.user.name}` +
      `${session.expires_at === null ? '' : ` until ${session.expires_at}`}; context "${req.context}" saved in ${path} and made current\n`,
  );
}
