import { writeFile } from 'node:fs/promises';

/** The directory the e2e tests seed into their own slapd. */
export const BASE = 'dc=floe,dc=test';
export const PEOPLE = `ou=people,${BASE}`;
export const GROUPS = `ou=groups,${BASE}`;

/**
 * Write a FLOE_AUTH_CONFIG file: local passwords, then the directory at `url` as the LDAP
 * authenticator `corp` (users bound by DN, groups found by search), with `roles` as the mapping.
 */
export async function writeLdapAuthConfig(file: string, url: string, roles: unknown): Promise<void> {
  await writeFile(
    file,
    JSON.stringify({
      chain: [
        { kind: 'local' },
        {
          kind: 'ldap',
          name: 'corp',
          url,
          bind: { mode: 'template', dnTemplate: `uid={username},${PEOPLE}` },
          groups: { mode: 'search', baseDn: GROUPS, filter: '(&(objectClass=groupOfNames)(member={dn}))' },
        },
      ],
      roles,
    }),
  );
}
