/**
 * Escaping of user input placed into LDAP filters and DNs, so a username
 * like `*)(uid=*` stays a literal value and never changes a query's meaning.
 */

/**
 * Escape a value for an LDAP search filter (RFC 4515 §3): `\`, `*`, `(`, `)`
 * and NUL become `\5c`, `\2a`, `\28`, `\29` and `\00`. Everything else,
 * including UTF-8, stays as it is, as the RFC allows.
 */
export function escapeFilterValue(value: string): string {
  // eslint-disable-next-line no-control-regex
  return value.replace(/[\\*()\u0000]/g, (c) => `\\${c.charCodeAt(0).toString(16).padStart(2, '0')}`);
}

/**
 * Escape a value for one attribute value of a DN (RFC 4514 §2.4): the
 * specials `" + , ; < > \ =` get a backslash, as do a leading `#` or space
 * and a trailing space; NUL becomes `\00`.
 */
export function escapeDnValue(value: string): string {
  // eslint-disable-next-line no-control-regex
  let out = value.replace(/[\\"+,;<>=\u0000]/g, (c) => (c === '\u0000' ? '\\00' : `\\${c}`));
  if (out.startsWith('#') || out.startsWith(' ')) out = `\\${out}`;
  if (out.endsWith(' ') && !out.endsWith('\\ ')) out = `${out.slice(0, -1)}\\ `;
  return out;
}

/** Put values into a template's `{name}` placeholders, each escaped by `escape`; unknown placeholders stay. */
export function fillTemplate(template: string, values: Record<string, string>, escape: (v: string) => string): string {
  return template.replace(/\{(\w+)\}/g, (whole, key: string) =>
    Object.hasOwn(values, key) ? escape(values[key]!) : whole,
  );
}
