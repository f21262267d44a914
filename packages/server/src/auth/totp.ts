import { createHash, randomBytes } from 'node:crypto';
import { generateSecret, generateURI, verify } from 'otplib';
import QRCode from 'qrcode';

/** TOTP as authenticator apps expect it: SHA-1, 6 digits, 30 s steps (RFC 6238 defaults). */
const PERIOD_S = 30;
/** Codes of the step before and after the current one are accepted too (clock drift). */
const WINDOW_STEPS = 1;
const RECOVERY_CODES = 10;

/** What an enrolment hands the user: the secret three ways, and recovery codes shown once. */
export interface TotpEnrolment {
  /** Base32 secret, for typing in by hand. */
  readonly secret: string;
  /** `otpauth://totp/...` for authenticator apps. */
  readonly uri: string;
  /** The URI as a QR code drawn with terminal characters (for the CLI). */
  readonly qrTerminal: string;
  /** The URI as a PNG QR code (for the web UI). */
  readonly qrPng: Buffer;
  /** Single-use codes for when the device is lost; only their hashes are stored. */
  readonly recoveryCodes: readonly string[];
  /** What to store: the secret and the recovery code hashes. */
  readonly record: TotpRecord;
}

/** A user's second factor as stored. */
export interface TotpRecord {
  readonly secret: string;
  /** SHA-256 (hex) of each unused recovery code, normalized. */
  readonly recoveryHashes: readonly string[];
}

/**
 * Where second factors live (the users table later; memory for now). The
 * claim methods are the replay guard and must be atomic in a real store.
 */
export interface TotpStore {
  get(subject: string): Promise<TotpRecord | null>;
  /** Record that a code of `step` was used; false when that step or a later one already was. */
  claimStep(subject: string, step: number): Promise<boolean>;
  /** Remove one recovery code hash; false when it was not there (unknown or used). */
  consumeRecovery(subject: string, hash: string): Promise<boolean>;
}

/** The last used step per user and the records, in memory: for tests and single-process use. */
export class MemoryTotpStore implements TotpStore {
  private readonly records = new Map<string, { record: TotpRecord; lastStep: number }>();

  /** Store an enrolment's record (replacing an earlier one, and its used steps). */
  put(subject: string, record: TotpRecord): void {
    this.records.set(subject, { record, lastStep: -1 });
  }

  get(subject: string): Promise<TotpRecord | null> {
    return Promise.resolve(this.records.get(subject)?.record ?? null);
  }

  claimStep(subject: string, step: number): Promise<boolean> {
    const r = this.records.get(subject);
    if (!r || step <= r.lastStep) return Promise.resolve(false);
    r.lastStep = step;
    return Promise.resolve(true);
  }

  consumeRecovery(subject: string, hash: string): Promise<boolean> {
    const r = this.records.get(subject);
    if (!r || !r.record.recoveryHashes.includes(hash)) return Promise.resolve(false);
    r.record = { ...r.record, recoveryHashes: r.record.recoveryHashes.filter((h) => h !== hash) };
    return Promise.resolve(true);
  }
}

const ALPHABET = 'abcdefghjkmnpqrstuvwxyz23456789';

/** A recovery code: 12 characters from an alphabet without look-alikes (about 59 bits), as `xxxx-xxxx-xxxx`. */
function recoveryCode(): string {
  const bytes = randomBytes(12);
  let s = '';
  // 31 symbols; the modulo bias over a byte is small and harmless for a random code.
  for (const b of bytes) s += ALPHABET[b % ALPHABET.length];
  return `${s.slice(0, 4)}-${s.slice(4, 8)}-${s.slice(8)}`;
}

/**
 * Hash of a recovery code as stored; spaces, dashes and case do not matter.
 * The codes are long and random, so a fast hash is enough.
 */
export function hashRecoveryCode(code: string): string {
  return createHash('sha256').update(code.toLowerCase().replace(/[\s-]/g, '')).digest('hex');
}

/** Start TOTP for a user: a new secret, its otpauth URI and QR codes, and fresh recovery codes. */
export async function enrolTotp(opts: { issuer: string; account: string }): Promise<TotpEnrolment> {
  const secret = generateSecret();
  const uri = generateURI({ issuer: opts.issuer, label: opts.account, secret, period: PERIOD_S });
  const recoveryCodes = Array.from({ length: RECOVERY_CODES }, recoveryCode);
  return {
    secret,
    uri,
    qrTerminal: await QRCode.toString(uri, { type: 'terminal', small: true }),
    qrPng: await QRCode.toBuffer(uri, { type: 'png', errorCorrectionLevel: 'M' }),
    recoveryCodes,
    record: { secret, recoveryHashes: recoveryCodes.map(hashRecoveryCode) },
  };
}

/** The outcome of a second-factor check. */
export type SecondFactorResult =
  | { readonly ok: true; readonly method: 'totp' | 'recovery' }
  | { readonly ok: false; readonly reason: 'not_enrolled' | 'bad_code' | 'replayed' };

/**
 * Check a second factor: a 6-digit TOTP code (current step ±1, each step
 * usable once per user) or an unused recovery code (then used up).
 */
export async function verifySecondFactor(
  store: TotpStore,
  subject: string,
  code: string,
  nowMs: number = Date.now(),
): Promise<SecondFactorResult> {
  const record = await store.get(subject);
  if (record === null) return { ok: false, reason: 'not_enrolled' };
  const trimmed = code.trim();
  if (/^\d{6}$/.test(trimmed)) {
    const nowS = Math.floor(nowMs / 1000);
    const result = await verify({
      secret: record.secret,
      token: trimmed,
      epoch: nowS,
      period: PERIOD_S,
      epochTolerance: WINDOW_STEPS * PERIOD_S,
    });
    if (!result.valid) return { ok: false, reason: 'bad_code' };
    return (await store.claimStep(subject, Math.floor(nowS / PERIOD_S) + result.delta))
      ? { ok: true, method: 'totp' }
      : { ok: false, reason: 'replayed' };
  }
  if (trimmed.length > 64) return { ok: false, reason: 'bad_code' };
  return (await store.consumeRecovery(subject, hashRecoveryCode(trimmed)))
    ? { ok: true, method: 'recovery' }
    : { ok: false, reason: 'bad_code' };
}
