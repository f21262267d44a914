import type { Member, MemberAdd, ProjectRoleName, TotpEnrolment, User, UserCreate, UserPatch } from '@floe/api';
import { defined, ListApi, type CallOptions, type MergePatch, type PostOptions } from './calls.js';
import { segment } from './query.js';
import type { Transport } from './transport.js';

/**
 * Users (operators; `me` and `changePassword` for the token's own user): `client.users`.
 *
 * @example
 * await client.users.create({ name: 'ada', email: 'ada@example.org' });
 * await client.users.update('ada', { disabled: true });
 * const me = await client.users.me();
 */
export class UsersApi extends ListApi<User> {
  /** Fetches one user by id or name. */
  get(id: string, options: CallOptions = {}): Promise<User> {
    return this.t.request('GET', this.path(id), defined({ signal: options.signal }));
  }
  /** The user the client's token belongs to (`user_not_found` for a token of nobody). */
  me(options: CallOptions = {}): Promise<User> {
    return this.t.request('GET', `${this.base}/me`, defined({ signal: options.signal }));
  }
  /** Creates a user. */
  create(body: UserCreate, options: PostOptions = {}): Promise<User> {
    return this.t.request('POST', this.base, defined({ body, ...options }));
  }
  /** Changes display name, email, disabled or operator (JSON merge patch). */
  update(id: string, patch: MergePatch<UserPatch>, options: CallOptions = {}): Promise<User> {
    return this.t.request('PATCH', this.path(id), defined({ body: patch, signal: options.signal }));
  }
  /** Deletes a user with its memberships and tokens. */
  async delete(id: string, options: CallOptions = {}): Promise<void> {
    await this.t.request('DELETE', this.path(id), defined({ signal: options.signal }));
  }
  /** Changes the password of the token's own user; the old one must match. */
  async changePassword(oldPassword: string, newPassword: string, options: PostOptions = {}): Promise<void> {
    await this.t.request(
      'POST',
      `${this.base}/me/password`,
      defined({ body: { old_password: oldPassword, new_password: newPassword }, ...options }),
    );
  }
  /** Starts TOTP for the token's own user: secret, otpauth URI, QR codes and recovery codes (pending until confirmed). */
  totpEnrol(options: PostOptions = {}): Promise<TotpEnrolment> {
    return this.t.request('POST', `${this.base}/me/totp`, defined({ ...options }));
  }
  /** Confirms a pending TOTP enrolment with a code from the app. */
  async totpConfirm(code: string, options: PostOptions = {}): Promise<void> {
    await this.t.request('POST', `${this.base}/me/totp/confirm`, defined({ body: { code }, ...options }));
  }
  /** Turns TOTP off for the token's own user; needs a current code or an unused recovery code. */
  async totpDisable(code: string, options: CallOptions = {}): Promise<void> {
    await this.t.request('DELETE', `${this.base}/me/totp`, defined({ body: { code }, signal: options.signal }));
  }
  /** Removes another user's TOTP (operators). */
  async totpReset(id: string, options: CallOptions = {}): Promise<void> {
    await this.t.request('DELETE', `${this.path(id)}/totp`, defined({ signal: options.signal }));
  }
}

/**
 * The members of a project and their roles: `client.members`.
 *
 * @example
 * await client.members.add('shop', { user: 'ada', role: 'viewer' });
 * await client.members.update('shop', 'ada', 'member');
 */
export class MembersApi {
  constructor(private readonly t: Transport) {}

  private path(project: string, user?: string): string {
    const base = `/v1/projects/${segment(project)}/members`;
    return user === undefined ? base : `${base}/${segment(user)}`;
  }
  /** The members of a project. */
  async list(project: string, options: CallOptions = {}): Promise<Member[]> {
    const page = await this.t.request<{ items: Member[] }>(
      'GET',
      this.path(project),
      defined({ signal: options.signal }),
    );
    return page.items;
  }
  /** Adds a user (by name or id) with a role. */
  add(project: string, body: MemberAdd, options: PostOptions = {}): Promise<Member> {
    return this.t.request('POST', this.path(project), defined({ body, ...options }));
  }
  /** Changes a member's role. */
  update(project: string, user: string, role: ProjectRoleName, options: CallOptions = {}): Promise<Member> {
    return this.t.request('PATCH', this.path(project, user), defined({ body: { role }, signal: options.signal }));
  }
  /** Removes a member. */
  async remove(project: string, user: string, options: CallOptions = {}): Promise<void> {
    await this.t.request('DELETE', this.path(project, user), defined({ signal: options.signal }));
  }
}
