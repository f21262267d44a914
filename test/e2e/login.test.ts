import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { createHmac } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { run } from '../../packages/cli/src/program.js';
import { OutputBuffer } from '../../packages/cli/src/testing.js';
import { storeTargets } from '../../packages/server/src/db/testing.js';
import { injectJson, startTestControlPlane, type TestControlPlane } from '../../packages/server/src/testing.js';

const PASSWORD = 'ada’s long password';

/** RFC 6238 (SHA-1, 6 digits, 30 s), as an authenticator app computes it, from a base32 secret. */
function totpAt(secret: string, ms: number): string {
  let bits = '';
  for (const c of secret.replace(/=+$/, ''))
    bits += 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567'.indexOf(c).toString(2).padStart(5, '0');
  const key = Buffer.from(bits.match(/.{8}/g)!.map((b) => parseInt(b, 2)));
  const counter = Buffer.alloc(8);
  counter.writeBigUInt64BE(BigInt(Math.floor(ms / 30_000)));
  const h = createHmac('sha1', key).update(counter).digest();
  const o = h[h.length - 1]! & 0xf;
  return String((h.readUInt32BE(o) & 0x7fffffff) % 1_000_000).padStart(6, '0');
}

// The CLI with the real client against a real control plane over HTTPS: password login, TOTP
// enrolment, a login that is asked for the code, and logout.
describe('floe login, floe user totp and floe logout against a control plane', () => {
  let cp: TestControlPlane;
  let dir: string;
  let caFile: string;
  const floe = async (
    argv: string[],
    opts: { env?: Record<string, string>; answers?: Record<string, string> } = {},
  ) => {
    const out = new OutputBuffer();
    const err = new OutputBuffer();
    const asked: string[] = [];
    const code = await run(argv, {
      stdout: out,
      stderr: err,
      env: { FLOE_CONFIG: path.join(dir, 'config.json'), ...opts.env },
      stdinIsTTY: false,
      ...(opts.answers === undefined
        ? {}
        : {
            prompt: (q: string) => {
              asked.push(q);
              return Promise.resolve(opts.answers![q] ?? '');
            },
          }),
    });
    return { code, out: out.text, err: err.text, asked };
  };
  const savedToken = async () =>
    (
      JSON.parse(await readFile(path.join(dir, 'config.json'), 'utf8')) as {
        contexts: Record<string, { token?: string }>;
      }
    ).contexts.lab?.token;

  beforeAll(async () => {
    cp = await startTestControlPlane(
      await storeTargets()
        .find((t) => t.name === 'sqlite')!
        .open(),
    );
    dir = await mkdtemp(path.join(os.tmpdir(), 'floe-e2e-login-'));
    caFile = path.join(dir, 'ca.pem');
    await writeFile(caFile, cp.ca.certPem);
    expect((await injectJson(cp, 'POST', '/v1/users', { name: 'ada', password: PASSWORD })).status).toBe(201);
  }, 60_000);
  afterAll(async () => {
    await cp?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('logs in with a password, turns TOTP on, is asked for the code next time, and logs out', async () => {
    const first = await floe(['login', cp.url, '--ca', caFile, '--context', 'lab', '--username', 'ada'], {
      env: { FLOE_PASSWORD: PASSWORD },
    });
    expect(first.err).toBe('');
    expect(first.code).toBe(0);
    expect(first.out).toContain('as ada');
    const session1 = (await savedToken())!;
    expect(session1).toMatch(/^floe_/);

    const enrol = await floe(['user', 'totp', 'enrol', '-o', 'json']);
    expect(enrol.code).toBe(0);
    const e = JSON.parse(enrol.out) as { secret: string; recovery_codes: string[] };
    const into = Date.now() % 30_000;
    if (into > 26_000) await new Promise((r) => setTimeout(r, 30_000 - into + 200));
    const now = Date.now();
    const codeAt = (ms: number) => Promise.resolve(totpAt(e.secret, ms));
    expect((await floe(['user', 'totp', 'confirm', await codeAt(now - 30_000)])).code).toBe(0);

    expect((await floe(['logout'])).code).toBe(0);
    expect(await savedToken()).toBeUndefined();
    expect((await injectJson(cp, 'GET', '/v1/users/me', undefined, session1)).status).toBe(401);

    const code = await codeAt(now);
    const second = await floe(['login', cp.url, '--ca', caFile, '--context', 'lab'], {
      answers: { Username: 'ada', Password: PASSWORD, 'TOTP code (or a recovery code)': code },
    });
    expect(second.err).toBe('');
    expect(second.code).toBe(0);
    expect(second.asked).toEqual(['Username', 'Password', 'TOTP code (or a recovery code)']);

    const wrong = await floe(
      ['login', cp.url, '--ca', caFile, '--context', 'other', '--username', 'ada', '--totp', '000000'],
      {
        env: { FLOE_PASSWORD: PASSWORD },
      },
    );
    expect(wrong.code).not.toBe(0);
    expect(wrong.err).toContain('invalid_credentials');

    expect((await floe(['user', 'totp', 'disable', e.recovery_codes[0]!])).code).toBe(0);
    const session2 = (await savedToken())!;
    expect((await floe(['logout'])).code).toBe(0);
    expect((await injectJson(cp, 'GET', '/v1/users/me', undefined, session2)).status).toBe(401);
  }, 60_000);
});
