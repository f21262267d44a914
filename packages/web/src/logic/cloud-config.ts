/** Checks of the user-data editor, before the request goes out. */

/** The outcome of a check: fine (with what kind of user-data it is), or the problem and where. */
export type UserDataCheck =
  { ok: true; kind: 'empty' | 'cloud-config' | 'script' | 'other' } | { ok: false; message: string; line?: number };

/** The parse function of a YAML library (loaded on demand: most pages never need it). */
export type YamlParse = (text: string) => unknown;

/** The largest user-data the API takes, in bytes. */
const USER_DATA_MAX_BYTES = 64 * 1024;

/**
 * Checks user-data: `#cloud-config` documents must be a YAML mapping; scripts (`#!`) and other cloud-init
 * formats (`#include`, MIME) are passed as they are.
 *
 * @example
 * checkUserData('#cloud-config\nruncmd: [ls', YAML.parse) // { ok: false, message: ..., line: 2 }
 */
export function checkUserData(text: string, parse: YamlParse): UserDataCheck {
  if (text.trim() === '') return { ok: true, kind: 'empty' };
  if (new TextEncoder().encode(text).length > USER_DATA_MAX_BYTES)
    return { ok: false, message: `user-data is larger than ${USER_DATA_MAX_BYTES / 1024} KiB` };
  const first = text.split('\n', 1)[0]!.trim();
  if (first.startsWith('#!')) return { ok: true, kind: 'script' };
  if (first !== '#cloud-config') {
    if (first.startsWith('#') || first.startsWith('Content-Type:')) return { ok: true, kind: 'other' };
    return { ok: false, message: 'user-data starts with #cloud-config (YAML) or #! (a script)', line: 1 };
  }
  let doc: unknown;
  try {
    doc = parse(text);
  } catch (err) {
    const e = err as { message?: string; linePos?: { line: number }[] };
    const line = e.linePos?.[0]?.line;
    return { ok: false, message: String(e.message ?? err).split('\n')[0]!, ...(line ? { line } : {}) };
  }
  if (doc === null || doc === undefined) return { ok: true, kind: 'cloud-config' };
  if (typeof doc !== 'object' || Array.isArray(doc))
    return { ok: false, message: 'a #cloud-config document is a mapping of keys (packages:, runcmd:, ...)' };
  const keys = doc as Record<string, unknown>;
  for (const k of ['runcmd', 'packages', 'write_files', 'users', 'ssh_authorized_keys', 'bootcmd'])
    if (k in keys && keys[k] !== null && !Array.isArray(keys[k])) return { ok: false, message: `${k} must be a list` };
  return { ok: true, kind: 'cloud-config' };
}
