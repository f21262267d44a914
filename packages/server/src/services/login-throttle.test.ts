import { describe, expect, it } from 'vitest';
import { LoginThrottle, normalizeUsername } from './login-throttle.js';

const LIMITS = { perUsername: 3, perAddress: 5, windowMs: 60_000 };

describe('login throttle', () => {
  it('locks a username after its limit within the window, for one window, then lets it try again', () => {
    let now = 1_000_000;
    const t = new LoginThrottle(LIMITS, () => now);
    for (let i = 0; i < 2; i++) t.fail('Alice', `10.0.0.${i}`);
    expect(t.check('alice', '10.0.0.9')).toBeNull();
    t.fail('alice ', '10.0.0.3');
    expect(t.check('ALICE', '10.0.0.9')).toEqual({ key: 'username', retryAfterS: 60 });
    now += 30_000;
    expect(t.check('alice', undefined)).toEqual({ key: 'username', retryAfterS: 30 });
    now += 30_001;
    expect(t.check('alice', undefined)).toBeNull();
  });

  it('forgets failures older than the window', () => {
    let now = 0;
    const t = new LoginThrottle(LIMITS, () => now);
    t.fail('bob', undefined);
    t.fail('bob', undefined);
    now += 60_001;
    t.fail('bob', undefined);
    expect(t.check('bob', undefined)).toBeNull();
  });

  it('locks an address after its limit, whatever the usernames', () => {
    const t = new LoginThrottle(LIMITS);
    for (let i = 0; i < 5; i++) t.fail(`user${i}`, '10.1.1.1');
    expect(t.check('someone-else', '10.1.1.1')).toMatchObject({ key: 'address' });
    expect(t.check('someone-else', '10.1.1.2')).toBeNull();
  });

  it('a success forgets the username’s failures, not a running lockout', () => {
    const t = new LoginThrottle(LIMITS);
    t.fail('carol', undefined);
    t.fail('carol', undefined);
    t.succeed('carol');
    t.fail('carol', undefined);
    t.fail('carol', undefined);
    expect(t.check('carol', undefined)).toBeNull();
    t.fail('carol', undefined);
    t.succeed('carol');
    expect(t.check('carol', undefined)).not.toBeNull();
  });

  it('a limit of 0 turns counting off', () => {
    const t = new LoginThrottle({ perUsername: 0, perAddress: 0, windowMs: 60_000 });
    for (let i = 0; i < 50; i++) t.fail('dan', '10.0.0.1');
    expect(t.check('dan', '10.0.0.1')).toBeNull();
  });

  it('normalizes usernames: case, spaces around, compatibility forms', () => {
    expect(normalizeUsername(' Ｅve ')).toBe('eve');
  });
});
