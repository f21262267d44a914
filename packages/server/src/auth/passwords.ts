import { hash, parseOptions, verify } from '@node-rs/argon2';
import { PASSWORD_MAX_LENGTH } from './types.js';

/** argon2id cost parameters (memory in KiB). */
export interface Argon2Params {
  readonly memoryCost: number;
  readonly timeCost: number;
  readonly parallelism: number;
}

/** OWASP's first recommended argon2id setting: 19 MiB, 2 passes, 1 lane. */
export const DEFAULT_ARGON2_PARAMS: Argon2Params = Object.freeze({ memoryCost: 19_456, timeCost: 2, parallelism: 1 });

/** Hash a password with argon2id (a fresh random salt each time); the PHC string holds the parameters. */
export async function hashPassword(password: string, params: Argon2Params = DEFAULT_ARGON2_PARAMS): Promise<string> {
  if (password.length > PASSWORD_MAX_LENGTH)
    throw new RangeError(`passwords are at most ${PASSWORD_MAX_LENGTH} characters`);
  // The library's default algorithm is argon2id; `needsRehash` refuses anything else.
  return hash(password, { ...params });
}

/**
 * Whether `password` matches the argon2 PHC string `stored`. A malformed
 * stored hash or an over-long password is a mismatch, never an exception.
 */
export async function verifyPassword(stored: string, password: string): Promise<boolean> {
  if (password.length > PASSWORD_MAX_LENGTH || !stored.startsWith('$argon2')) return false;
  try {
    return await verify(stored, password);
  } catch {
    return false;
  }
}

/**
 * Whether a stored hash should be replaced on the next successful login: it
 * is not argon2id, or was made with other costs than `params`.
 */
export function needsRehash(stored: string, params: Argon2Params = DEFAULT_ARGON2_PARAMS): boolean {
  if (!stored.startsWith('$argon2id$')) return true;
  try {
    const o = parseOptions(stored);
    return o.memoryCost !== params.memoryCost || o.timeCost !== params.timeCost || o.parallelism !== params.parallelism;
  } catch {
    return true;
  }
}
