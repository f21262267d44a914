import { execFileSync } from 'node:child_process';
import { mkdtemp, rename, rm, unlink, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import bcrypt from 'bcryptjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { authenticatorContract } from '@floe/testkit/auth-contract';
import { md5Crypt } from './apr1.js';
import { HtpasswdAuthenticator, parseHtpasswd, verifyHtpasswd } from './htpasswd.js';

const openssl = (...args: string[]): string => execFileSync('openssl', args, { encoding: 'utf8' }).trim();
const sha = (pw: string): string =>
  `{SHA}${execFileSync('openssl', ['dgst', '-sha1', '-binary'], { input: pw }).toString('base64')}`;

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'floe-htpasswd-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('MD5-crypt', () => {
  // Golden vectors made by OpenSSL in this run, so they are independent of the code under test.
  const cases: [string, string][] = [
    ['secret', 'abcdefgh'],
    ['', 'salt'],
    ['p', 'x'],
    ['a much longer password than sixteen bytes, twice over', 'Zz9./aB'],
    ['pässwörd ✓', '12345678'],
  ];
  it.each(cases)('matches openssl passwd -apr1 for %j / salt %j', (pw, salt) => {
    expect(md5Crypt(pw, salt)).toBe(openssl('passwd', '-apr1', '-salt', salt, pw));
  });
  it('matches openssl passwd -1 (the $1$ variant) and cuts the salt at 8 characters', () => {
    expect(md5Crypt('secret', 'saltsalt')).toBe(openssl('passwd', '-apr1', '-salt', 'saltsalt', 'secret'));
    expect(md5Crypt('secret', 'abc', '$1$')).toBe(openssl('passwd', '-1', '-salt', 'abc', 'secret'));
    expect(md5Crypt('secret', 'abcdefghij')).toBe(md5Crypt('secret', 'abcdefgh'));
  });
});

describe('htpasswd parsing', () => {
  it('reads bcrypt ($2y$, $2a$, $2b$), apr1 and {SHA} lines and skips the rest with a line number', async () => {
    const b = bcrypt.hashSync('pw-b', 4);
    const text = [
      '# comment',
      '',
      `by:${b.replace(/^\$2b\$/, '$2y$')}`,
      `ba:${b.replace(/^\$2b\$/, '$2a$')}`,
      `bb:${b}`,
      `ap:${openssl('passwd', '-apr1', '-salt', 'q1w2e3r4', 'pw-a')}`,
      `sh:${sha('pw-s')}`,
      'plain:secretpassword',
      'des:abJnggxhB/yWI',
      'no-colon-line',
      ':$apr1$x$y',
      `sh:${sha('other')}`,
      'ctrl\u0001:{SHA}x',
      'trunc:$2y$10$short',
    ].join('\n');
    const { entries, warnings } = parseHtpasswd(text);
    expect([...entries.keys()]).toEqual(['by', 'ba', 'bb', 'ap', 'sh']);
    expect(warnings.map((w) => w.line)).toEqual([8, 9, 10, 11, 12, 13, 14]);
    expect(JSON.stringify(warnings)).not.toContain('secretpassword');
    for (const [user, pw] of [
      ['by', 'pw-b'],
      ['ba', 'pw-b'],
      ['bb', 'pw-b'],
      ['ap', 'pw-a'],
      ['sh', 'pw-s'],
    ] as const) {
      expect(await verifyHtpasswd(entries.get(user)!, pw)).toBe(true);
      expect(await verifyHtpasswd(entries.get(user)!, `${pw}.`)).toBe(false);
    }
  });
});

describe('htpasswd file', () => {
  it('re-reads the file when it changes or is replaced, and is unavailable when it is gone', async () => {
    const file = path.join(dir, 'reload');
    const warnings: string[] = [];
    await writeFile(file, `carol:${sha('one')}\n`);
    const auth = new HtpasswdAuthenticator(file, { warn: (m) => warnings.push(m) });
    expect((await auth.verifyPassword('carol', 'one')).ok).toBe(true);
    // Same size, later mtime: an in-place edit.
    await writeFile(file, `carol:${sha('two')}\n`);
    const later = new Date(Date.now() + 5000);
    const { utimes } = await import('node:fs/promises');
    await utimes(file, later, later);
    expect(await auth.verifyPassword('carol', 'one')).toMatchObject({ ok: false, reason: 'bad_credentials' });
    expect((await auth.verifyPassword('carol', 'two')).ok).toBe(true);
    // An atomic replace with a broken line: the rest still works, with a warning.
    await writeFile(`${file}.new`, `garbage line\ndave:${openssl('passwd', '-apr1', 'three')}\n`);
    await rename(`${file}.new`, file);
    expect((await auth.verifyPassword('dave', 'three')).ok).toBe(true);
    expect(await auth.verifyPassword('carol', 'two')).toMatchObject({ ok: false, reason: 'unknown_user' });
    expect(warnings).toEqual(['htpasswd htpasswd: line 1 skipped: not user:hash']);
    await unlink(file);
    expect(await auth.verifyPassword('dave', 'three')).toMatchObject({ ok: false, reason: 'unavailable' });
  });
});

authenticatorContract('htpasswd (bcrypt)', async () => {
  const file = path.join(dir, 'contract');
  await writeFile(
    file,
    [
      `erin:${bcrypt.hashSync('erin pw', 6).replace(/^\$2b\$/, '$2y$')}`,
      `frank:${openssl('passwd', '-apr1', 'frank pw')}`,
    ].join('\n'),
  );
  return {
    authenticator: new HtpasswdAuthenticator(file, { groups: ['staff'] }),
    user: { username: 'erin', password: 'erin pw', subject: 'erin', groups: ['staff'] },
    unavailable: async () => new HtpasswdAuthenticator(path.join(dir, 'missing')),
    timing: true,
    cleanup: async () => {},
  };
});
