import { readFileSync } from 'node:fs';
import path from 'node:path';
import { FloeError } from '@floe/api';
import { Type, type Static, type TSchema } from 'typebox';
import { Compile } from 'typebox/compile';
import { AuthChain, type AuthChainLog } from './chain.js';
import { ExternalChecker } from './checker.js';
import { HtpasswdAuthenticator } from './htpasswd.js';
import { LdapAuthenticator, type LdapBind } from './ldap.js';
import { LocalAuthenticator, type LocalUserStore } from './local.js';
import { OidcAuthenticator } from './oidc.js';
import { DEFAULT_ARGON2_PARAMS } from './passwords.js';
import type { RoleMapping } from './roles.js';
import type { Authenticator } from './types.js';

const Name = Type.String({ pattern: '^[a-z][a-z0-9-]{0,62}$' });
const Text = Type.String({ minLength: 1, maxLength: 4096 });
const Groups = Type.Array(Text, { maxItems: 1000 });
const Ms = (max: number) => Type.Integer({ minimum: 0, maximum: max });
const UserTemplate = Type.String({ minLength: 1, maxLength: 4096, pattern: '\\{username\\}' });
const strict = { additionalProperties: false } as const;

const LocalEntry = Type.Object(
  {
    kind: Type.Literal('local'),
    name: Type.Optional(Name),
    argon2: Type.Optional(
      Type.Object(
        {
          memoryCost: Type.Integer({ minimum: 8192, maximum: 4_194_304 }),
          timeCost: Type.Integer({ minimum: 1, maximum: 20 }),
          parallelism: Type.Integer({ minimum: 1, maximum: 16 }),
        },
        strict,
      ),
    ),
  },
  strict,
);

const HtpasswdEntry = Type.Object(
  { kind: Type.Literal('htpasswd'), name: Type.Optional(Name), file: Text, groups: Type.Optional(Groups) },
  strict,
);

const LdapEntry = Type.Object(
  {
    kind: Type.Literal('ldap'),
    name: Type.Optional(Name),
    url: Type.String({ pattern: '^ldaps?://[^\\s/]+/?$', maxLength: 1024 }),
    startTls: Type.Optional(Type.Boolean()),
    caFile: Type.Optional(Text),
    timeoutMs: Type.Optional(Ms(60_000)),
    bind: Type.Union([
      Type.Object({ mode: Type.Literal('template'), dnTemplate: UserTemplate }, strict),
      Type.Object(
        {
          mode: Type.Literal('search'),
          serviceDn: Text,
          servicePassword: Type.Optional(Text),
          servicePasswordFile: Type.Optional(Text),
          baseDn: Text,
          filter: UserTemplate,
          scope: Type.Optional(Type.Union([Type.Literal('sub'), Type.Literal('one')])),
        },
        strict,
      ),
    ]),
    attributes: Type.Optional(
      Type.Object(
        { subject: Type.Optional(Text), displayName: Type.Optional(Text), email: Type.Optional(Text) },
        strict,
      ),
    ),
    groups: Type.Optional(
      Type.Union([
        Type.Object({ mode: Type.Literal('memberOf'), attribute: Type.Optional(Text) }, strict),
        Type.Object(
          { mode: Type.Literal('search'), baseDn: Text, filter: Text, nameAttribute: Type.Optional(Text) },
          strict,
        ),
      ]),
    ),
  },
  strict,
);

const CheckerEntry = Type.Object(
  {
    kind: Type.Literal('checker'),
    name: Type.Optional(Name),
    url: Type.String({ pattern: '^https?://', maxLength: 2048 }),
    headers: Type.Optional(Type.Record(Type.String({ pattern: '^[A-Za-z0-9-]{1,64}$' }), Text)),
    timeoutMs: Type.Optional(Ms(60_000)),
    cacheTtlMs: Type.Optional(Ms(3_600_000)),
    negativeCacheTtlMs: Type.Optional(Ms(3_600_000)),
    cacheEntries: Type.Optional(Type.Integer({ minimum: 0, maximum: 1_000_000 })),
  },
  strict,
);

const HttpsUrl = Type.String({
  pattern: '^(https://[^\\s]+|http://(127\\.0\\.0\\.1|localhost|\\[::1\\])([:/][^\\s]*)?)$',
  maxLength: 2048,
});
const OidcEntry = Type.Object(
  {
    kind: Type.Literal('oidc'),
    name: Type.Optional(Name),
    issuer: HttpsUrl,
    clientId: Text,
    clientSecret: Type.Optional(Text),
    clientSecretFile: Type.Optional(Text),
    clientAuth: Type.Optional(
      Type.Union([Type.Literal('client_secret_basic'), Type.Literal('client_secret_post'), Type.Literal('none')]),
    ),
    redirectUri: HttpsUrl,
    scopes: Type.Optional(
      Type.Array(Type.String({ pattern: '^[\\x21\\x23-\\x5b\\x5d-\\x7e]{1,128}$' }), { maxItems: 32 }),
    ),
    claims: Type.Optional(
      Type.Object(
        {
          username: Type.Optional(Text),
          groups: Type.Optional(Text),
          email: Type.Optional(Text),
          displayName: Type.Optional(Text),
        },
        strict,
      ),
    ),
    timeoutMs: Type.Optional(Ms(60_000)),
    clockSkewSec: Type.Optional(Type.Integer({ minimum: 0, maximum: 300 })),
    discoveryTtlMs: Type.Optional(Ms(86_400_000)),
    jwksCooldownMs: Type.Optional(Ms(3_600_000)),
  },
  strict,
);

const ENTRY_SCHEMAS: Record<string, TSchema> = {
  local: LocalEntry,
  htpasswd: HtpasswdEntry,
  ldap: LdapEntry,
  checker: CheckerEntry,
  oidc: OidcEntry,
};
const entryChecks: Record<string, ReturnType<typeof Compile<TSchema>> | undefined> = Object.fromEntries(
  Object.entries(ENTRY_SCHEMAS).map(([k, s]) => [k, Compile(s)]),
);

const RolesSchema = Type.Object(
  {
    operators: Type.Optional(Groups),
    projects: Type.Optional(
      Type.Array(
        Type.Object(
          {
            project: Type.String({ minLength: 1, maxLength: 63 }),
            owner: Type.Optional(Groups),
            member: Type.Optional(Groups),
            viewer: Type.Optional(Groups),
          },
          strict,
        ),
        { maxItems: 10_000 },
      ),
    ),
  },
  strict,
);
const TopSchema = Type.Object(
  {
    chain: Type.Array(Type.Object({ kind: Type.String() }), { minItems: 1, maxItems: 32 }),
    roles: Type.Optional(RolesSchema),
  },
  strict,
);
const topCheck = Compile(TopSchema);

/** One configured authenticator. */
export type AuthEntryConfig =
  | Static<typeof LocalEntry>
  | Static<typeof HtpasswdEntry>
  | Static<typeof LdapEntry>
  | Static<typeof CheckerEntry>
  | Static<typeof OidcEntry>;

/** The operator's authentication configuration: the chain, in order, and the group → role mapping. */
export interface AuthConfig {
  readonly chain: readonly AuthEntryConfig[];
  readonly roles: RoleMapping;
}

const invalid = (source: string, at: string, message: string): FloeError =>
  new FloeError('validation_failed', `${source}${at}: ${message}`, { field: `${source}${at}` });

function firstError(
  check: ReturnType<typeof Compile<TSchema>>,
  value: unknown,
  source: string,
  base: string,
): FloeError {
  const e = [...check.Errors(value)][0];
  const at = `${base}${e?.instancePath ?? ''}`;
  // The message names the place and the rule, never the value: it may be a password.
  if (e?.keyword === 'required') {
    const missing = (e.params as { requiredProperties?: string[] }).requiredProperties?.[0] ?? '';
    return invalid(source, `${at}/${missing}`, 'is required');
  }
  if (e?.keyword === 'boolean' || e?.keyword === 'additionalProperties')
    return invalid(source, at, 'is not a known setting');
  return invalid(source, at, e?.message ?? 'is invalid');
}

/**
 * Check the authentication configuration (parsed JSON) once, at start. A bad
 * one fails with `validation_failed` naming the place (`auth.json/chain/1/url`),
 * so floed does not start with a chain other than the one the operator meant.
 */
export function parseAuthConfig(raw: unknown, source = 'auth'): AuthConfig {
  if (!topCheck.Check(raw)) throw firstError(topCheck, raw, source, '');
  const names = new Set<string>();
  const chain = raw.chain.map((entry, i) => {
    const check = entryChecks[entry.kind];
    if (check === undefined) {
      throw invalid(source, `/chain/${i}/kind`, `must be one of ${Object.keys(ENTRY_SCHEMAS).join(', ')}`);
    }
    if (!check.Check(entry)) throw firstError(check, entry, source, `/chain/${i}`);
    const e = entry as AuthEntryConfig;
    const name = e.name ?? e.kind;
    if (names.has(name))
      throw invalid(source, `/chain/${i}/name`, `"${name}" is used twice; give each entry its own name`);
    names.add(name);
    if (e.kind === 'ldap' && e.bind.mode === 'search') {
      if ((e.bind.servicePassword === undefined) === (e.bind.servicePasswordFile === undefined)) {
        throw invalid(source, `/chain/${i}/bind`, 'needs exactly one of servicePassword and servicePasswordFile');
      }
    }
    if (e.kind === 'oidc') {
      const secrets = (e.clientSecret !== undefined ? 1 : 0) + (e.clientSecretFile !== undefined ? 1 : 0);
      if (secrets > 1) throw invalid(source, `/chain/${i}`, 'needs at most one of clientSecret and clientSecretFile');
      if (e.clientAuth === 'none' && secrets > 0)
        throw invalid(source, `/chain/${i}/clientAuth`, 'is none, so no client secret is sent; remove the secret');
      if (e.clientAuth !== undefined && e.clientAuth !== 'none' && secrets === 0)
        throw invalid(source, `/chain/${i}/clientAuth`, `${e.clientAuth} needs clientSecret or clientSecretFile`);
    }
    return Object.freeze(e);
  });
  return Object.freeze({ chain: Object.freeze(chain), roles: Object.freeze(raw.roles ?? {}) });
}

/** What building the chain needs besides the configuration. */
export interface AuthChainDeps {
  /** Local users, required when the chain has a `local` entry. */
  readonly localStore?: LocalUserStore;
  /** Relative file names are resolved here (default: the working directory). */
  readonly baseDir?: string;
  readonly warn?: (message: string) => void;
  readonly log?: AuthChainLog;
}

function readSecretFile(file: string, what: string): string {
  try {
    return readFileSync(file, 'utf8').replace(/\r?\n$/, '');
  } catch (err) {
    throw new FloeError(
      'validation_failed',
      `${what} cannot be read: ${(err as NodeJS.ErrnoException).code ?? 'error'}`,
      {
        field: what,
      },
    );
  }
}

/** Make the authenticators of a checked configuration, in order, as one chain. */
export function buildAuthChain(config: AuthConfig, deps: AuthChainDeps = {}): AuthChain {
  const at = (file: string): string => path.resolve(deps.baseDir ?? process.cwd(), file);
  const build = (e: AuthEntryConfig, i: number): Authenticator => {
    const name = e.name ?? e.kind;
    switch (e.kind) {
      case 'local':
        if (deps.localStore === undefined)
          throw new FloeError('validation_failed', 'the local authenticator needs the user store', {
            field: `chain/${i}`,
          });
        return new LocalAuthenticator(deps.localStore, name, e.argon2 ?? DEFAULT_ARGON2_PARAMS);
      case 'htpasswd':
        return new HtpasswdAuthenticator(at(e.file), {
          name,
          ...(e.groups ? { groups: e.groups } : {}),
          ...(deps.warn ? { warn: deps.warn } : {}),
        });
      case 'ldap': {
        const bind: LdapBind =
          e.bind.mode === 'template'
            ? e.bind
            : {
                ...e.bind,
                servicePassword:
                  e.bind.servicePassword ??
                  readSecretFile(at(e.bind.servicePasswordFile!), `chain/${i}/bind/servicePasswordFile`),
              };
        return new LdapAuthenticator({
          ...e,
          name,
          bind,
          ...(e.caFile !== undefined ? { caPem: readSecretFile(at(e.caFile), `chain/${i}/caFile`) } : {}),
        });
      }
      case 'checker':
        return new ExternalChecker({ ...e, name });
      case 'oidc': {
        const { clientSecretFile, ...rest } = e;
        return new OidcAuthenticator({
          ...rest,
          name,
          ...(clientSecretFile !== undefined
            ? { clientSecret: readSecretFile(at(clientSecretFile), `chain/${i}/clientSecretFile`) }
            : {}),
        });
      }
    }
  };
  return new AuthChain(config.chain.map(build), deps.log);
}
