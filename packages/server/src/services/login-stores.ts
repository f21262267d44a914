import type { LocalUserRecord, LocalUserStore } from '../auth/local.js';
import type { TotpRecord, TotpStore } from '../auth/totp.js';
import { nowIso, type Db } from '../db/index.js';

/**
 * The local authenticator's users: rows of the users table with a password hash that no other
 * authenticator created (`source` NULL). A disabled user is unknown here, so its refusal costs and
 * looks the same as that of a user who does not exist.
 */
export class DbLocalUserStore implements LocalUserStore {
  constructor(private readonly db: Db) {}

  async find(username: string): Promise<LocalUserRecord | null> {
    const row = await this.db
      .selectFrom('users')
      .select(['name', 'password_hash', 'display_name', 'email'])
      .where('name', '=', username)
      .where('source', 'is', null)
      .where('disabled', '=', 0)
      .where('password_hash', 'is not', null)
      .executeTakeFirst();
    if (row === undefined || row.password_hash === null) return null;
    return {
      subject: row.name,
      passwordHash: row.password_hash,
      ...(row.display_name !== '' ? { displayName: row.display_name } : {}),
      ...(row.email !== null ? { email: row.email } : {}),
    };
  }

  async updatePasswordHash(subject: string, passwordHash: string): Promise<void> {
    await this.db
      .updateTable('users')
      .set({ password_hash: passwordHash, updated_at: nowIso() })
      .where('name', '=', subject)
      .where('source', 'is', null)
      .execute();
  }
}

/**
 * Second factors in the database, keyed by user id. `state` picks the confirmed secret (logins,
 * disabling) or the pending one (confirming an enrolment). Claiming a step is one conditional UPDATE
 * and using a recovery code one DELETE, so two control planes cannot both accept the same code.
 */
export class DbTotpStore implements TotpStore {
  constructor(
    private readonly db: Db,
    private readonly state: 'confirmed' | 'pending' = 'confirmed',
  ) {}

  async get(userId: string): Promise<TotpRecord | null> {
    const row = await this.db
      .selectFrom('user_totp')
      .select('secret')
      .where('user_id', '=', userId)
      .where('confirmed_at', this.state === 'confirmed' ? 'is not' : 'is', null)
      .executeTakeFirst();
    if (row === undefined) return null;
    const codes = await this.db
      .selectFrom('user_recovery_codes')
      .select('code_hash')
      .where('user_id', '=', userId)
      .execute();
    return { secret: row.secret, recoveryHashes: codes.map((c) => c.code_hash) };
  }

  async claimStep(userId: string, step: number): Promise<boolean> {
    const res = await this.db
      .updateTable('user_totp')
      .set({ last_step: step })
      .where('user_id', '=', userId)
      .where('last_step', '<', step)
      .executeTakeFirst();
    return Number(res.numUpdatedRows) > 0;
  }

  async consumeRecovery(userId: string, hash: string): Promise<boolean> {
    // Pending enrolments have no usable recovery codes yet.
    if (this.state !== 'confirmed') return false;
    const res = await this.db
      .deleteFrom('user_recovery_codes')
      .where('user_id', '=', userId)
      .where('code_hash', '=', hash)
      .where((eb) =>
        eb.exists(
          eb
            .selectFrom('user_totp')
            .select('user_totp.user_id')
            .where('user_totp.user_id', '=', userId)
            .where('user_totp.confirmed_at', 'is not', null),
        ),
      )
      .executeTakeFirst();
    return Number(res.numDeletedRows) > 0;
  }
}
