import { createHash, timingSafeEqual } from 'node:crypto';
import { readFile, stat } from 'node:fs/promises';
import bcrypt from 'bcryptjs';
import { md5Crypt } from './apr1.js';
import { PASSWORD_MAX_LENGTH, plausibleUsername, type AuthResult, type Authenticator } from './types.js';

/** One usable line of an htpasswd file. */
export interface HtpasswdEntry {
  readonly username: string;
  readonly scheme: 'bcrypt' | 'apr1' | 'sha1';
  readonly hash: string;
}

/** A line that was skipped, by number and why (never its content: it may hold a password). */
export interface HtpasswdWarning {
  readonly line: number;
  readonly reason: string;
}

const BCRYPT = /^\$2[aby]\$(0[4-9]|[12]\d|3[01])\$[./A-Za-z0-9]{53}$/;
const APR1 = /^\$apr1\$[^$:]{1,8}\$[./A-Za-z0-9]{22}$/;
const SHA1 = /^\{SHA\}[A-Za-z0-9+/]{27}=$/;

/**
 * Parse an htpasswd file: `user:hash` per line, with bcrypt (`$2y$`, `$2a$`,
 * `$2b$`), MD5-crypt (`$apr1$`) or `{SHA}` hashes. Blank lines and `#`
 * comments are ignored; any other line that is not one of these (plain text,
 * DES crypt, garbage, a repeated user) is skipped and reported. Pure.
 */
export function parseHtpasswd(text: string): { entries: Map<string, HtpasswdEntry>; warnings: HtpasswdWarning[] } {
  const entries = new Map<string, HtpasswdEntry>();
  const warnings: HtpasswdWarning[] = [];
  text.split(/\r?\n/).forEach((raw, i) => {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) return;
    const colon = line.indexOf(':');
    const skip = (reason: string): void => void warnings.push({ line: i + 1, reason });
    if (colon <= 0) return skip('not user:hash');
    const username = line.slice(0, colon);
    const hash = line.slice(colon + 1);
    if (!plausibleUsername(username)) return skip('bad username');
    const scheme = BCRYPT.test(hash) ? 'bcrypt' : APR1.test(hash) ? 'apr1' : SHA1.test(hash) ? 'sha1' : null;
    if (scheme === null) return skip('unsupported or malformed hash (bcrypt, $apr1$ and {SHA} are read)');
    // Apache uses the first line for a user; a second one is most likely a mistake.
    if (entries.has(username)) return skip('user repeated; the first line counts');
    entries.set(username, { username, scheme, hash });
  });
  return { entries, warnings };
}

const sameText = (a: string, b: string): boolean => {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
};

/** Whether `password` matches one parsed htpasswd entry. */
export async function verifyHtpasswd(entry: HtpasswdEntry, password: string): Promise<boolean> {
  switch (entry.scheme) {
    case 'bcrypt':
      return bcrypt.compare(password, entry.hash);
    case 'apr1':
      return sameText(md5Crypt(password, entry.hash.split('$')[2]!), entry.hash);
    case 'sha1':
      return sameText(`{SHA}${createHash('sha1').update(password, 'utf8').digest('base64')}`, entry.hash);
  }
}

/** Options of the htpasswd authenticator. */
export interface HtpasswdOptions {
  /** The operator's name for this entry of the chain. */
  readonly name?: string;
  /** Told about each skipped line whenever the file is (re)read. */
  readonly warn?: (message: string) => void;
  /** Groups every user of this file gets (htpasswd files have none of their own). */
  readonly groups?: readonly string[];
}

/**
 * Users and passwords from an htpasswd file, re-read when its size, mtime or
 * inode changes (checked at each login, so an edit or an atomic replace counts
 * at once). A file that cannot be read makes the authenticator `unavailable`;
 * it never falls back to an older copy of a file that was removed.
 */
export class HtpasswdAuthenticator implements Authenticator {
  readonly kind = 'htpasswd';
  readonly name: string;
  private loaded: { key: string; entries: Map<string, HtpasswdEntry>; costliest?: HtpasswdEntry } | undefined;

  constructor(
    private readonly file: string,
    private readonly opts: HtpasswdOptions = {},
  ) {
    this.name = opts.name ?? 'htpasswd';
  }

  private async load(): Promise<NonNullable<HtpasswdAuthenticator['loaded']>> {
    const st = await stat(this.file);
    const key = `${st.ino}:${st.size}:${st.mtimeMs}`;
    if (this.loaded?.key !== key) {
      const { entries, warnings } = parseHtpasswd(await readFile(this.file, 'utf8'));
      for (const w of warnings) this.opts.warn?.(`htpasswd ${this.name}: line ${w.line} skipped: ${w.reason}`);
      const all = [...entries.values()];
      const costliest = all.find((e) => e.scheme === 'bcrypt') ?? all.find((e) => e.scheme === 'apr1') ?? all[0];
      this.loaded = { key, entries, ...(costliest ? { costliest } : {}) };
    }
    return this.loaded;
  }

  async verifyPassword(username: string, password: string): Promise<AuthResult> {
    let file: NonNullable<HtpasswdAuthenticator['loaded']>;
    try {
      file = await this.load();
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code ?? 'error';
      return { ok: false, authenticator: this.name, reason: 'unavailable', detail: `htpasswd file: ${code}` };
    }
    const entry = plausibleUsername(username) ? file.entries.get(username) : undefined;
    const tooLong = password.length > PASSWORD_MAX_LENGTH;
    if (entry === undefined) {
      // Spend what checking a real line costs, so the time does not tell who exists.
      if (file.costliest && !tooLong) await verifyHtpasswd(file.costliest, password);
      return { ok: false, authenticator: this.name, reason: 'unknown_user' };
    }
    if (tooLong || !(await verifyHtpasswd(entry, password))) {
      return { ok: false, authenticator: this.name, reason: 'bad_credentials' };
    }
    return { ok: true, authenticator: this.name, subject: username, groups: [...(this.opts.groups ?? [])] };
  }
}
