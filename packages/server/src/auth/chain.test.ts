import { describe, expect, it } from 'vitest';
import { AuthChain } from './chain.js';
import type { AuthFailureReason, AuthResult, Authenticator } from './types.js';

/** A scripted authenticator that records whether it was asked. */
const scripted = (name: string, answer: 'ok' | AuthFailureReason | 'throw'): Authenticator & { asked: number } => ({
  kind: 'test',
  name,
  asked: 0,
  verifyPassword(): Promise<AuthResult> {
    this.asked++;
    if (answer === 'throw') return Promise.reject(new Error('secret-bearing message'));
    return Promise.resolve(
      answer === 'ok'
        ? { ok: true, authenticator: name, subject: 'alice', groups: [] }
        : { ok: false, authenticator: name, reason: answer },
    );
  },
});

const run = async (...answers: ('ok' | AuthFailureReason | 'throw')[]) => {
  const list = answers.map((a, i) => scripted(`a${i}`, a));
  const log: string[] = [];
  const result = await new AuthChain(list, (e) => log.push(`${e.authenticator}:${e.outcome}`)).verifyPassword(
    'alice',
    'pw',
  );
  return { result, asked: list.map((a) => a.asked), log };
};

describe('authentication chain', () => {
  it('takes the first success and asks no further', async () => {
    const { result, asked } = await run('unknown_user', 'ok', 'ok');
    expect(result).toMatchObject({ ok: true, authenticator: 'a1' });
    expect(asked).toEqual([1, 1, 0]);
  });

  it('stops at a definitive refusal: a wrong password or a deny', async () => {
    expect(await run('bad_credentials', 'ok')).toMatchObject({
      result: { ok: false, reason: 'bad_credentials', authenticator: 'a0' },
      asked: [1, 0],
    });
    expect(await run('unknown_user', 'denied', 'ok')).toMatchObject({
      result: { ok: false, reason: 'denied' },
      asked: [1, 1, 0],
    });
  });

  it('passes an unavailable backend by, but fails closed when nobody else answers', async () => {
    expect((await run('unavailable', 'ok')).result).toMatchObject({ ok: true, authenticator: 'a1' });
    expect((await run('unavailable', 'unknown_user')).result).toMatchObject({
      ok: false,
      reason: 'unavailable',
      authenticator: 'a0',
    });
    expect((await run('unknown_user', 'unknown_user')).result).toMatchObject({ ok: false, reason: 'unknown_user' });
    expect((await run('unavailable')).result).toMatchObject({ ok: false, reason: 'unavailable' });
  });

  it('counts a throwing authenticator as unavailable, without its message', async () => {
    const { result, log } = await run('throw', 'unknown_user');
    expect(result).toEqual({ ok: false, authenticator: 'a0', reason: 'unavailable', detail: 'Error' });
    expect(log).toEqual(['a0:unavailable', 'a1:unknown_user']);
  });

  it('needs at least one authenticator', () => {
    expect(() => new AuthChain([])).toThrow(/at least one/);
  });
});
