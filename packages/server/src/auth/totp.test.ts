import { generate } from 'otplib';
import { describe, expect, it } from 'vitest';
import { enrolTotp, hashRecoveryCode, MemoryTotpStore, verifySecondFactor } from './totp.js';

// RFC 6238 appendix B: the SHA-1 secret "12345678901234567890" gives 94287082 at T=59 s (6 digits: 287082).
const RFC_SECRET = 'GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ';

const codeAt = (secret: string, ms: number): Promise<string> =>
  generate({ secret, epoch: Math.floor(ms / 1000), period: 30 });

const enrolled = (secret = RFC_SECRET, recovery: string[] = []): MemoryTotpStore => {
  const store = new MemoryTotpStore();
  store.put('alice', { secret, recoveryHashes: recovery.map(hashRecoveryCode) });
  return store;
};

describe('TOTP second factor', () => {
  it('accepts the RFC 6238 test vector', async () => {
    expect(await verifySecondFactor(enrolled(), 'alice', '287082', 59_000)).toEqual({ ok: true, method: 'totp' });
  });

  it('accepts the step before and after the current one, not two steps away', async () => {
    const now = 1_800_000_015_000;
    for (const offset of [-30_000, 0, 30_000]) {
      const code = await codeAt(RFC_SECRET, now + offset);
      expect(await verifySecondFactor(enrolled(), 'alice', code, now), `offset ${offset}`).toMatchObject({ ok: true });
    }
    for (const offset of [-60_000, 60_000, 300_000]) {
      const code = await codeAt(RFC_SECRET, now + offset);
      expect(await verifySecondFactor(enrolled(), 'alice', code, now), `offset ${offset}`).toEqual({
        ok: false,
        reason: 'bad_code',
      });
    }
  });

  it('refuses a code used before, and an older step after a newer one', async () => {
    const store = enrolled();
    const now = 1_800_000_015_000;
    const code = await codeAt(RFC_SECRET, now);
    expect(await verifySecondFactor(store, 'alice', code, now)).toMatchObject({ ok: true });
    expect(await verifySecondFactor(store, 'alice', code, now)).toEqual({ ok: false, reason: 'replayed' });
    expect(await verifySecondFactor(store, 'alice', code, now + 20_000)).toEqual({ ok: false, reason: 'replayed' });
    const next = await codeAt(RFC_SECRET, now + 30_000);
    expect(await verifySecondFactor(store, 'alice', next, now + 30_000)).toMatchObject({ ok: true });
    const previous = await codeAt(RFC_SECRET, now);
    expect(await verifySecondFactor(store, 'alice', previous, now + 30_000)).toEqual({
      ok: false,
      reason: 'replayed',
    });
  });

  it('refuses wrong and malformed codes, and users without TOTP', async () => {
    const store = enrolled();
    const now = 1_800_000_015_000;
    const code = await codeAt(RFC_SECRET, now);
    const wrong = String((Number(code) + 1) % 1_000_000).padStart(6, '0');
    for (const c of [wrong, '', '12345', '1234567', 'abcdef', 'x'.repeat(1000)]) {
      expect(await verifySecondFactor(store, 'alice', c, now)).toEqual({ ok: false, reason: 'bad_code' });
    }
    expect(await verifySecondFactor(store, 'bob', code, now)).toEqual({ ok: false, reason: 'not_enrolled' });
  });
});

describe('enrolment', () => {
  it('gives an otpauth URI, QR codes for terminal and PNG, and recovery codes stored only hashed', async () => {
    const e = await enrolTotp({ issuer: 'floe', account: 'alice@example.org' });
    const uri = new URL(e.uri);
    expect(uri.protocol).toBe('otpauth:');
    expect(uri.host).toBe('totp');
    expect(decodeURIComponent(uri.pathname)).toBe('/floe:alice@example.org');
    expect(uri.searchParams.get('secret')).toBe(e.secret);
    expect(uri.searchParams.get('issuer')).toBe('floe');
    expect(e.secret).toMatch(/^[A-Z2-7]{16,}$/);
    expect(e.qrTerminal.split('\n').length).toBeGreaterThan(10);
    expect(e.qrTerminal).toMatch(/[█▀▄]/);
    expect(e.qrPng.subarray(0, 8)).toEqual(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]));
    expect(e.qrPng.readUInt32BE(16)).toBeGreaterThan(50);
    expect(e.recoveryCodes).toHaveLength(10);
    expect(new Set(e.recoveryCodes).size).toBe(10);
    for (const c of e.recoveryCodes) expect(c).toMatch(/^[a-z2-9]{4}-[a-z2-9]{4}-[a-z2-9]{4}$/);
    const stored = JSON.stringify(e.record);
    for (const c of e.recoveryCodes) expect(stored).not.toContain(c);
    // A code made for the new secret works right away.
    const store = new MemoryTotpStore();
    store.put('alice', e.record);
    const now = Date.now();
    expect(await verifySecondFactor(store, 'alice', await codeAt(e.secret, now), now)).toEqual({
      ok: true,
      method: 'totp',
    });
  });

  it('takes each recovery code once, in any case and with or without dashes', async () => {
    const store = enrolled(RFC_SECRET, ['abcd-efgh-jkmn', 'pqrs-tuvw-xyz2']);
    expect(await verifySecondFactor(store, 'alice', 'ABCD EFGH JKMN')).toEqual({ ok: true, method: 'recovery' });
    expect(await verifySecondFactor(store, 'alice', 'abcd-efgh-jkmn')).toEqual({ ok: false, reason: 'bad_code' });
    expect(await verifySecondFactor(store, 'alice', 'pqrstuvwxyz2')).toEqual({ ok: true, method: 'recovery' });
    expect(await verifySecondFactor(store, 'alice', 'zzzz-zzzz-zzzz')).toEqual({ ok: false, reason: 'bad_code' });
  });
});
