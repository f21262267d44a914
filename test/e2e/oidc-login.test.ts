import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { run } from '../../packages/cli/src/program.js';
import { OidcAuthenticator } from '../../packages/server/src/auth/oidc.js';
import { startTestOidcProvider, type TestOidcProvider } from '../../packages/server/src/auth/oidc-testing.js';
import { storeTargets } from '../../packages/server/src/db/testing.js';
import { completeLoginForTests } from '../../packages/server/src/services/oidc-logins-testing.js';
import { startTestControlPlane, type TestControlPlane } from '../../packages/server/src/testing.js';

/** `floe login URL --oidc NAME` end to end: the real CLI and client, a real control plane and a real OpenID provider. */
describe('floe login --oidc against a real provider', () => {
  let tp: TestOidcProvider;
  let cp: TestControlPlane;
  let dir: string;

  beforeAll(async () => {
    tp = await startTestOidcProvider([
      { sub: 'u-3001', username: 'grace', name: 'Grace', email: 'grace@example.org', groups: [] },
    ]);
    const sqlite = storeTargets().find((t) => t.name === 'sqlite')!;
    const corp = new OidcAuthenticator({
      name: 'corp',
      issuer: tp.issuer,
      clientId: 'floe-public',
      clientAuth: 'none',
      redirectUri: tp.redirectUri,
      timeoutMs: 2000,
    });
    cp = await startTestControlPlane(
      await sqlite.open(),
      { FLOE_LOG_LEVEL: 'silent' },
      undefined,
      '127.0.0.1',
      (s) => ({
        oidc: { authenticators: new Map([['corp', corp]]), completeLogin: completeLoginForTests(s) },
      }),
    );
    dir = await mkdtemp(path.join(os.tmpdir(), 'floe-oidc-e2e-'));
  }, 60_000);
  afterAll(async () => {
    await cp?.close();
    await tp?.stop();
    if (dir !== undefined) await rm(dir, { recursive: true, force: true });
  });

  it('prints the URL, waits for the browser, and saves a session token that works', async () => {
    const caFile = path.join(dir, 'ca.pem');
    await writeFile(caFile, cp.ca.certPem);
    const config = path.join(dir, 'config.json');
    const env = { FLOE_CONFIG: config, NO_COLOR: '1' };
    let out = '';
    let err = '';
    let browsed: Promise<void> | undefined;
    const stderr = {
      write(s: string) {
        err += s;
        // The person opens the printed URL; the provider sends the browser back to floe's callback.
        const url = /https?:\/\/\S+\/auth\?\S+/.exec(err)?.[0];
        const code = /enter this code: (\S+)/.exec(err)?.[1];
        if (url !== undefined && code !== undefined && browsed === undefined)
          browsed = tp.browse(url, 'grace').then(async (query) => {
            // The browser's return, carried to floe's callback (the test's browser does not trust floe's CA).
            const back = await cp.app.http.inject({ method: 'GET', url: `/v1/auth/oidc/callback?${query.toString()}` });
            expect(back.statusCode).toBe(200);
            // The person types the code the terminal shows into floe's page.
            const secret = /name="confirm" value="([^"]+)"/.exec(back.body)![1]!;
            const confirmed = await cp.app.http.inject({
              method: 'POST',
              url: '/v1/auth/oidc/confirm',
              headers: { 'content-type': 'application/x-www-form-urlencoded' },
              payload: new URLSearchParams({ confirm: secret, code }).toString(),
            });
            expect(confirmed.body).toContain('login complete');
          });
        return true;
      },
    };
    const code = await run(
      ['login', cp.url, '--oidc', 'corp', '--ca', caFile, '--context', 'sso', '--poll-ms', '100', '--timeout', '30'],
      { stdout: { write: (s: string) => ((out += s), true) }, stderr, env, stdinIsTTY: false },
    );
    await browsed;
    expect(code, err).toBe(0);
    expect(out).toContain('as grace');
    const saved = JSON.parse(await readFile(config, 'utf8')) as { contexts: Record<string, { token: string }> };
    const token = saved.contexts.sso!.token;
    expect(token).toMatch(/^floe_/);

    // The saved context is what later commands use.
    let me = '';
    const whoami = await run(['user', 'show', 'me', '-o', 'json'], {
      stdout: { write: (s: string) => ((me += s), true) },
      stderr: { write: () => true },
      env,
      stdinIsTTY: false,
    });
    expect(whoami).toBe(0);
    expect(JSON.parse(me)).toMatchObject({ name: 'grace', email: 'grace@example.org' });
  }, 60_000);
});
