import { FloeError, type TotpEnrolment } from '@floe/api';
import { enrolTotp, verifySecondFactor } from '../auth/totp.js';
import { nowIso, transaction } from '../db/index.js';
import { requireAdmin } from './authz.js';
import type { Principal, ServiceContext } from './context.js';
import { DbTotpStore } from './login-stores.js';
import { findUser } from './users.js';

/**
 * TOTP as a user's second factor: a user enrols (pending), confirms with a code from the app (then
 * logins ask for a code), and turns it off with a current code; an operator resets a user who lost
 * the device and the recovery codes.
 */
export class UserTotpService {
  constructor(private readonly ctx: ServiceContext) {}

  /** Start (or restart) an enrolment: a new secret and recovery codes, pending until confirmed. */
  async enrol(principal: Principal): Promise<TotpEnrolment> {
    const user = await this.own(principal);
    const issuer = new URL(this.ctx.config.publicUrl).hostname || 'floe';
    const e = await enrolTotp({ issuer: `floe ${issuer}`, account: user.name });
    await transaction(this.ctx.store, async (trx) => {
      const current = await trx
        .selectFrom('user_totp')
        .select('confirmed_at')
        .where('user_id', '=', user.id)
        .executeTakeFirst();
      if (current !== undefined && current.confirmed_at !== null)
        throw new FloeError(
          'invalid_state',
          'TOTP is already on for this user; turn it off first (floe user totp disable, with a current code)',
        );
      await trx.deleteFrom('user_totp').where('user_id', '=', user.id).execute();
      await trx.deleteFrom('user_recovery_codes').where('user_id', '=', user.id).execute();
      await trx
        .insertInto('user_totp')
        .values({ user_id: user.id, secret: e.record.secret, confirmed_at: null, last_step: -1, created_at: nowIso() })
        .execute();
      await trx
        .insertInto('user_recovery_codes')
        .values(e.record.recoveryHashes.map((code_hash) => ({ user_id: user.id, code_hash })))
        .execute();
    });
    return {
      secret: e.secret,
      uri: e.uri,
      qr_terminal: e.qrTerminal,
      qr_png_base64: e.qrPng.toString('base64'),
      recovery_codes: [...e.recoveryCodes],
    };
  }

  /** Confirm a pending enrolment with a code from the app; from then on logins ask for a code. */
  async confirm(principal: Principal, code: string): Promise<void> {
    const user = await this.own(principal);
    const pending = new DbTotpStore(this.ctx.store.db, 'pending');
    if ((await pending.get(user.id)) === null)
      throw new FloeError('invalid_state', 'no TOTP enrolment is pending; start one with POST /v1/users/me/totp');
    const result = await verifySecondFactor(pending, user.id, code);
    if (!result.ok) throw new FloeError('validation_failed', 'the code does not match', { field: 'code' });
    await this.ctx.store.db
      .updateTable('user_totp')
      .set({ confirmed_at: nowIso() })
      .where('user_id', '=', user.id)
      .where('confirmed_at', 'is', null)
      .execute();
  }

  /** Turn TOTP off for the caller; needs a current code (or an unused recovery code). */
  async disable(principal: Principal, code: string): Promise<void> {
    const user = await this.own(principal);
    const store = new DbTotpStore(this.ctx.store.db);
    if ((await store.get(user.id)) === null) throw new FloeError('invalid_state', 'TOTP is not on for this user');
    const result = await verifySecondFactor(store, user.id, code);
    if (!result.ok) throw new FloeError('validation_failed', 'the code does not match', { field: 'code' });
    await this.remove(user.id);
  }

  /** Remove a user's TOTP (operators), for a user who lost the device and the recovery codes. */
  async reset(principal: Principal, ref: string): Promise<void> {
    requireAdmin(principal, "reset a user's TOTP");
    const user = await findUser(this.ctx.store.db, ref);
    await this.remove(user.id);
  }

  private async remove(userId: string): Promise<void> {
    await transaction(this.ctx.store, async (trx) => {
      await trx.deleteFrom('user_recovery_codes').where('user_id', '=', userId).execute();
      await trx.deleteFrom('user_totp').where('user_id', '=', userId).execute();
    });
  }

  private async own(principal: Principal) {
    if (principal.user === undefined)
      throw new FloeError('user_not_found', 'this token belongs to no user', { kind: 'user', id: 'me' });
    return findUser(this.ctx.store.db, principal.user);
  }
}
