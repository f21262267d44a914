import type { LoginSession, OidcLoginStarted, OidcPollPending, OidcStart } from '@floe/api';
import { defined, type CallOptions } from './calls.js';
import { segment } from './query.js';
import type { Transport } from './transport.js';

/**
 * OpenID Connect logins for clients without a browser of their own (`client.oidc`): start a login,
 * send the person to `authorization_url`, and poll until the session is there. No token is needed.
 *
 * @example
 * const login = await client.oidc.start('corp-sso');
 * console.log(`open ${login.authorization_url}`);
 * let answer = await client.oidc.poll(login.login_id, login.poll_secret);
 * while ('status' in answer) answer = await client.oidc.poll(login.login_id, login.poll_secret);
 * console.log(answer.token);
 */
export class OidcApi {
  constructor(private readonly t: Transport) {}

  /** Starts a login with the OpenID authenticator `name`: the provider's URL, and the id and secret to poll with. */
  start(name: string, body: OidcStart = {}, options: CallOptions = {}): Promise<OidcLoginStarted> {
    return this.t.request('POST', `/v1/auth/oidc/${segment(name)}/start`, defined({ body, signal: options.signal }));
  }

  /**
   * How the login is going: `{status: 'pending'}` until the browser came back, then the session
   * (token, expiry, user) exactly once. Rejects with `login_expired`, `login_failed` or
   * `unauthenticated` (a wrong secret) when there is nothing to wait for.
   */
  poll(loginId: string, pollSecret: string, options: CallOptions = {}): Promise<OidcPollPending | LoginSession> {
    // 202 (pending) and 200 (the session) differ in their bodies: a pending answer has `status`.
    return this.t.request(
      'POST',
      '/v1/auth/oidc/poll',
      defined({ body: { login_id: loginId, poll_secret: pollSecret }, signal: options.signal }),
    );
  }
}
