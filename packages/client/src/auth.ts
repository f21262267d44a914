import type { LoginRequest, LoginResponse } from '@floe/api';
import { defined, type PostOptions } from './calls.js';
import type { Transport } from './transport.js';

/**
 * Password logins and logout: `client.auth`. A login needs no token; its answer holds a session
 * token for a new client.
 *
 * @example
 * const { token } = await new FloeClient({ url }).auth.login({ username: 'ada', password });
 * const client = new FloeClient({ url, token });
 * await client.auth.logout();
 */
export class AuthApi {
  constructor(private readonly t: Transport) {}

  /** Checks a username, password and (when the user has TOTP) code; `totp_required` asks for the code. */
  login(body: LoginRequest, options: PostOptions = {}): Promise<LoginResponse> {
    return this.t.request('POST', '/v1/auth/login', defined({ body, ...options }));
  }

  /** Revokes the client's session token (an API token is refused: revoke it with `tokens.delete`). */
  async logout(options: PostOptions = {}): Promise<void> {
    await this.t.request('POST', '/v1/auth/logout', defined({ ...options }));
  }
}
