import { afterAll, beforeAll, describe, expect, it } from 'vitest';

/** What the contract needs of an authenticator's answer (floe's AuthResult fits). */
export type ContractAuthResult =
  | { readonly ok: true; readonly subject: string; readonly groups: readonly string[] }
  | { readonly ok: false; readonly reason: string };

/** What the contract needs of an authenticator (floe's Authenticator fits). */
export interface ContractAuthenticator {
  readonly kind: string;
  verifyPassword(username: string, password: string): Promise<ContractAuthResult>;
}

/** What a setup hands the contract: an authenticator with one known user, and one whose backend is down. */
export interface AuthenticatorContractSetup {
  authenticator: ContractAuthenticator;
  /** A user the backend knows, with the right password. */
  user: { username: string; password: string; subject: string; groups?: readonly string[] };
  /** The same kind of authenticator over a backend that cannot answer (stopped, missing, timing out). */
  unavailable: () => Promise<ContractAuthenticator>;
  /**
   * Whether refusals of an unknown user and of a wrong password should take
   * about the same time (true where the authenticator hashes locally).
   */
  timing: boolean;
  cleanup: () => Promise<void>;
}

// Rounds of each refusal timed per attempt, and attempts before the timing case fails.
const TIMING_ROUNDS = 15;
const TIMING_ATTEMPTS = 3;

/**
 * The fastest of several interleaved runs of each: the minimum is the cost
 * of the work itself, least disturbed by other load on the machine, and
 * interleaving exposes both to the same conditions.
 */
async function fastest(a: () => Promise<unknown>, b: () => Promise<unknown>): Promise<[number, number]> {
  let minA = Infinity;
  let minB = Infinity;
  const time = async (run: () => Promise<unknown>): Promise<number> => {
    const t = process.hrtime.bigint();
    await run();
    return Number(process.hrtime.bigint() - t) / 1e6;
  };
  for (let i = 0; i < TIMING_ROUNDS; i++) {
    minA = Math.min(minA, await time(a));
    minB = Math.min(minB, await time(b));
  }
  return [minA, minB];
}

/**
 * The behaviour every password authenticator must show, as vitest cases:
 * the right password is accepted, a wrong one and an unknown user are
 * refused (in about the same time where it applies), and a backend that
 * cannot answer gives `unavailable`, never a success.
 *
 * @example
 * authenticatorContract('local', async () => ({ authenticator, user, unavailable, timing: true, cleanup }));
 */
export function authenticatorContract(name: string, setup: () => Promise<AuthenticatorContractSetup>): void {
  describe(`Authenticator contract: ${name}`, () => {
    let ctx: AuthenticatorContractSetup;

    beforeAll(async () => {
      ctx = await setup();
    });

    afterAll(async () => {
      await ctx?.cleanup();
    });

    it('accepts the right password', async () => {
      const r = await ctx.authenticator.verifyPassword(ctx.user.username, ctx.user.password);
      expect(r).toMatchObject({ ok: true, subject: ctx.user.subject });
      if (r.ok) {
        expect(Array.isArray(r.groups)).toBe(true);
        if (ctx.user.groups) expect([...r.groups].sort()).toEqual([...ctx.user.groups].sort());
      }
    });

    it('refuses a wrong password as bad_credentials', async () => {
      for (const wrong of [`${ctx.user.password}x`, '', ctx.user.password.toUpperCase() + '!', 'x'.repeat(2000)]) {
        expect(await ctx.authenticator.verifyPassword(ctx.user.username, wrong)).toMatchObject({
          ok: false,
          reason: 'bad_credentials',
        });
      }
    });

    it('refuses an unknown user as unknown_user', async () => {
      for (const who of ['nobody-here', `${ctx.user.username}x`, '', 'a\u0000b', '*', 'x'.repeat(300)]) {
        expect(await ctx.authenticator.verifyPassword(who, ctx.user.password)).toMatchObject({
          ok: false,
          reason: 'unknown_user',
        });
      }
    });

    it('takes about as long to refuse an unknown user as a wrong password', async (t) => {
      if (!ctx.timing) {
        t.skip();
        return;
      }
      const a = ctx.authenticator;
      await a.verifyPassword('warm-up', 'x');
      let last = '';
      for (let attempt = 0; attempt < TIMING_ATTEMPTS; attempt++) {
        const [unknown, wrong] = await fastest(
          () => a.verifyPassword('nobody-here', 'wrong password'),
          () => a.verifyPassword(ctx.user.username, 'wrong password'),
        );
        const ratio = unknown / wrong;
        if (ratio > 1 / 3 && ratio < 3) return;
        last = `unknown user ${unknown.toFixed(2)} ms, wrong password ${wrong.toFixed(2)} ms`;
      }
      expect.fail(`refusals differ by more than 3x in time: ${last}`);
    });

    it('answers unavailable, not ok, when the backend cannot answer', async () => {
      const down = await ctx.unavailable();
      const r = await down.verifyPassword(ctx.user.username, ctx.user.password);
      expect(r).toMatchObject({ ok: false, reason: 'unavailable' });
    });
  });
}
