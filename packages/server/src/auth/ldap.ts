import { Client, InvalidCredentialsError, NoSuchObjectError, type Entry } from 'ldapts';
import { Type } from 'typebox';
import { Compile } from 'typebox/compile';
import { escapeDnValue, escapeFilterValue, fillTemplate } from './ldap-escape.js';
import { PASSWORD_MAX_LENGTH, plausibleUsername, type AuthResult, type Authenticator } from './types.js';

/** How the LDAP authenticator finds and checks a user. */
export type LdapBind =
  /** Bind straight as the user: `uid={username},ou=people,dc=example,dc=org`. */
  | { readonly mode: 'template'; readonly dnTemplate: string }
  /** Bind as a service account, find the user's DN with a filter like `(uid={username})`, then bind as that DN. */
  | {
      readonly mode: 'search';
      readonly serviceDn: string;
      readonly servicePassword: string;
      readonly baseDn: string;
      readonly filter: string;
      readonly scope?: 'sub' | 'one';
    };

/** Where the user's groups come from. */
export type LdapGroups =
  /** The user entry's `memberOf` (or another attribute): each value, a group DN, is a group. */
  | { readonly mode: 'memberOf'; readonly attribute?: string }
  /** A search for groups naming the user, e.g. `(member={dn})` or `(memberUid={username})`; `nameAttribute` (default `cn`) names each. */
  | { readonly mode: 'search'; readonly baseDn: string; readonly filter: string; readonly nameAttribute?: string };

/** Options of the LDAP authenticator (the `ldap` entry of the auth configuration). */
export interface LdapOptions {
  readonly name?: string;
  /** `ldap://host:389` or `ldaps://host:636`. */
  readonly url: string;
  /** Upgrade an ldap:// connection with StartTLS before any bind. */
  readonly startTls?: boolean;
  /** PEM of the CA that signed the server's certificate (default: the system's). */
  readonly caPem?: string;
  /** Time allowed for connecting and for each operation (default 5 s). */
  readonly timeoutMs?: number;
  readonly bind: LdapBind;
  /** Attributes holding the subject (default `uid`), display name (`cn`) and email (`mail`). */
  readonly attributes?: { readonly subject?: string; readonly displayName?: string; readonly email?: string };
  readonly groups?: LdapGroups;
}

// What an entry may look like after the library decoded it; anything else
// (binary values, thousands of values, huge strings) is a bad answer.
const Value = Type.String({ maxLength: 4096 });
const EntrySchema = Compile(
  Type.Object(
    { dn: Type.String({ minLength: 1, maxLength: 4096 }) },
    { additionalProperties: Type.Union([Value, Type.Array(Value, { maxItems: 5000 })]) },
  ),
);

class BadAnswer extends Error {
  override readonly name = 'BadAnswer';
}

function checkEntry(entry: Entry): Record<string, string | string[]> & { dn: string } {
  if (!EntrySchema.Check(entry)) throw new BadAnswer('an entry the schema refuses');
  return entry as Record<string, string | string[]> & { dn: string };
}

const values = (entry: Record<string, string | string[]>, attr: string): string[] => {
  // Attribute names are case-insensitive; servers answer in their own case.
  const key = Object.keys(entry).find((k) => k.toLowerCase() === attr.toLowerCase());
  const v = key === undefined ? undefined : entry[key];
  return v === undefined ? [] : Array.isArray(v) ? v : [v];
};

/**
 * Users and groups from an LDAP directory (OpenLDAP, 389, Active Directory):
 * bind as the user by DN template, or search-then-bind with a service
 * account; groups from `memberOf` or a group search. Usernames are escaped
 * for filters (RFC 4515) and DNs (RFC 4514); an empty password is refused
 * before any bind (LDAP would take it as an anonymous bind). A directory that
 * cannot be reached, times out or answers nonsense gives `unavailable`.
 */
export class LdapAuthenticator implements Authenticator {
  readonly kind = 'ldap';
  readonly name: string;

  constructor(private readonly opts: LdapOptions) {
    this.name = opts.name ?? 'ldap';
  }

  private async client(): Promise<Client> {
    const timeout = this.opts.timeoutMs ?? 5000;
    const tlsOptions = this.opts.caPem !== undefined ? { ca: this.opts.caPem } : undefined;
    const client = new Client({
      url: this.opts.url,
      timeout,
      connectTimeout: timeout,
      ...(tlsOptions ? { tlsOptions } : {}),
    });
    if (this.opts.startTls) await client.startTLS(tlsOptions ?? {});
    return client;
  }

  private fail(reason: 'unknown_user' | 'bad_credentials' | 'unavailable', detail?: string): AuthResult {
    return { ok: false, authenticator: this.name, reason, ...(detail !== undefined ? { detail } : {}) };
  }

  async verifyPassword(username: string, password: string): Promise<AuthResult> {
    if (!plausibleUsername(username)) return this.fail('unknown_user');
    const clients: Client[] = [];
    const open = async (): Promise<Client> => {
      const c = await this.client();
      clients.push(c);
      return c;
    };
    try {
      return this.opts.bind.mode === 'search'
        ? await this.searchThenBind(this.opts.bind, username, password, open)
        : await this.bindByTemplate(this.opts.bind, username, password, open);
    } catch (err) {
      return this.fail('unavailable', `ldap: ${err instanceof Error ? err.name : 'error'}`);
    } finally {
      await Promise.all(clients.map(async (c) => c.unbind().catch(() => undefined)));
    }
  }

  private async searchThenBind(
    bind: Extract<LdapBind, { mode: 'search' }>,
    username: string,
    password: string,
    open: () => Promise<Client>,
  ): Promise<AuthResult> {
    const service = await open();
    await service.bind(bind.serviceDn, bind.servicePassword);
    const filter = fillTemplate(bind.filter, { username }, escapeFilterValue);
    const { searchEntries } = await service.search(bind.baseDn, {
      scope: bind.scope ?? 'sub',
      filter,
      sizeLimit: 2,
      attributes: this.userAttributes(),
    });
    if (searchEntries.length === 0) return this.fail('unknown_user');
    if (searchEntries.length > 1) throw new BadAnswer('more than one entry matches the user filter');
    const entry = checkEntry(searchEntries[0]!);
    if (!(await this.userBinds(entry.dn, password, open))) return this.fail('bad_credentials');
    return this.success(entry, username, service);
  }

  private async bindByTemplate(
    bind: Extract<LdapBind, { mode: 'template' }>,
    username: string,
    password: string,
    open: () => Promise<Client>,
  ): Promise<AuthResult> {
    const dn = fillTemplate(bind.dnTemplate, { username }, escapeDnValue);
    const user = await open();
    if (!(await this.userBinds(dn, password, open, user))) {
      // A failed bind does not say whether the entry exists; look (anonymously).
      try {
        const look = await open();
        await look.search(dn, { scope: 'base', attributes: ['1.1'] });
        return this.fail('bad_credentials');
      } catch (err) {
        // Cannot tell (anonymous reads refused): a definitive refusal, the safe side.
        return this.fail(err instanceof NoSuchObjectError ? 'unknown_user' : 'bad_credentials');
      }
    }
    const { searchEntries } = await user.search(dn, { scope: 'base', attributes: this.userAttributes() });
    if (searchEntries.length !== 1) throw new BadAnswer('the user entry cannot be read after binding');
    return this.success(checkEntry(searchEntries[0]!), username, user);
  }

  /** Bind as `dn`; false for wrong credentials (and for an empty or over-long password, without asking). */
  private async userBinds(dn: string, password: string, open: () => Promise<Client>, use?: Client): Promise<boolean> {
    if (password === '' || password.length > PASSWORD_MAX_LENGTH) return false;
    const c = use ?? (await open());
    try {
      await c.bind(dn, password);
      return true;
    } catch (err) {
      if (err instanceof InvalidCredentialsError) return false;
      throw err;
    }
  }

  private userAttributes(): string[] {
    const a = this.opts.attributes ?? {};
    const g = this.opts.groups;
    return [
      a.subject ?? 'uid',
      a.displayName ?? 'cn',
      a.email ?? 'mail',
      ...(g?.mode === 'memberOf' ? [g.attribute ?? 'memberOf'] : []),
    ];
  }

  private async success(
    entry: Record<string, string | string[]> & { dn: string },
    username: string,
    client: Client,
  ): Promise<AuthResult> {
    const a = this.opts.attributes ?? {};
    const [subject] = values(entry, a.subject ?? 'uid');
    if (subject === undefined || !plausibleUsername(subject))
      throw new BadAnswer('the user entry has no usable subject');
    const [displayName] = values(entry, a.displayName ?? 'cn');
    const [email] = values(entry, a.email ?? 'mail');
    return {
      ok: true,
      authenticator: this.name,
      subject,
      groups: await this.groups(entry, username, client),
      ...(displayName !== undefined ? { displayName } : {}),
      ...(email !== undefined ? { email } : {}),
    };
  }

  private async groups(
    entry: Record<string, string | string[]> & { dn: string },
    username: string,
    client: Client,
  ): Promise<string[]> {
    const g = this.opts.groups;
    if (g === undefined) return [];
    if (g.mode === 'memberOf') return values(entry, g.attribute ?? 'memberOf');
    const name = g.nameAttribute ?? 'cn';
    const { searchEntries } = await client.search(g.baseDn, {
      scope: 'sub',
      filter: fillTemplate(g.filter, { username, dn: entry.dn }, escapeFilterValue),
      sizeLimit: 1000,
      attributes: [name],
    });
    return searchEntries.flatMap((e) => values(checkEntry(e), name).slice(0, 1));
  }
}
