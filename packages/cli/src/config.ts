import { chmodSync, existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { CliError, UsageError } from './errors.js';

/** Environment variables the CLI reads (a plain record, so tests can pass their own). */
export type Env = Record<string, string | undefined>;

/** One saved API endpoint with its credentials. */
export interface ContextConfig {
  url: string;
  token?: string;
  /** Path of a PEM file with floe's CA certificate. */
  ca_file?: string;
  /** floe's CA certificate inline, as PEM (used when there is no file). */
  ca?: string;
  /** Project used when `--project` is not given. */
  project?: string;
}

/** The config file: named contexts and the current one. */
export interface FloeConfig {
  current?: string;
  contexts: Record<string, ContextConfig>;
}

/** The context a command runs against, after flags and environment were applied. */
export interface ResolvedContext {
  /** Context name, or undefined when everything came from the environment. */
  name: string | undefined;
  url: string;
  token: string | undefined;
  /** CA PEM text, if any. */
  ca: string | undefined;
  /** Where the CA came from, if it was a file. */
  caFile: string | undefined;
  project: string | undefined;
}

/** Context names: short, printable, safe as JSON keys and in messages. */
const CONTEXT_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/;

/** Throws a usage error unless `name` is a valid context name. */
export function checkContextName(name: string): string {
  if (!CONTEXT_NAME.test(name))
    throw new UsageError(`invalid context name ${JSON.stringify(name)}: use letters, digits, ".", "_" and "-"`);
  return name;
}

/** Where the config file lives: `$FLOE_CONFIG`, else `$XDG_CONFIG_HOME/floe/config.json`, else `~/.config/floe/config.json`. */
export function configPath(env: Env = process.env): string {
  if (env.FLOE_CONFIG !== undefined && env.FLOE_CONFIG !== '') return resolve(env.FLOE_CONFIG);
  const base =
    env.XDG_CONFIG_HOME !== undefined && env.XDG_CONFIG_HOME !== ''
      ? env.XDG_CONFIG_HOME
      : join(env.HOME ?? homedir(), '.config');
  return join(base, 'floe', 'config.json');
}

/** Checks the parsed file's shape; throws `config_invalid` naming the problem. */
function parseConfig(text: string, path: string): FloeConfig {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new CliError(`${path} is not valid JSON: ${(err as Error).message}`, 'config_invalid');
  }
  const bad = (why: string): never => {
    throw new CliError(`${path}: ${why}`, 'config_invalid');
  };
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) bad('expected a JSON object');
  const obj = raw as { current?: unknown; contexts?: unknown };
  if (obj.current !== undefined && typeof obj.current !== 'string') bad('"current" must be a string');
  const contexts: Record<string, ContextConfig> = {};
  if (obj.contexts !== undefined) {
    if (typeof obj.contexts !== 'object' || obj.contexts === null || Array.isArray(obj.contexts))
      bad('"contexts" must be an object');
    for (const [name, c] of Object.entries(obj.contexts as Record<string, unknown>)) {
      const ctx = c as Record<string, unknown> | null;
      if (typeof ctx !== 'object' || ctx === null || typeof ctx.url !== 'string')
        bad(`context ${JSON.stringify(name)} needs a "url"`);
      for (const k of ['token', 'ca_file', 'ca', 'project'] as const) {
        if (ctx![k] !== undefined && typeof ctx![k] !== 'string')
          bad(`context ${JSON.stringify(name)}: "${k}" must be a string`);
      }
      contexts[name] = ctx as unknown as ContextConfig;
    }
  }
  return obj.current === undefined ? { contexts } : { current: obj.current as string, contexts };
}

/** Reads the config file; a missing file is an empty config. */
export function loadConfig(path: string): FloeConfig {
  if (!existsSync(path)) return { contexts: {} };
  return parseConfig(readFileSync(path, 'utf8'), path);
}

/** Writes the config file atomically with mode 0600 (it holds tokens), its directory 0700. */
export function writeConfig(path: string, config: FloeConfig): void {
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  const tmp = `${path}.${process.pid}.tmp`;
  writeFileSync(tmp, `${JSON.stringify(config, null, 2)}\n`, { mode: 0o600 });
  chmodSync(tmp, 0o600); // the umask or an existing file may have left wider bits
  renameSync(tmp, path);
}

/** Options of {@link saveContext}. */
export interface SaveContextOptions {
  /** Make this the current context (default true). */
  makeCurrent?: boolean;
  /** Config file to write (default: {@link configPath}). */
  path?: string;
  /** Environment used to find the default path. */
  env?: Env;
}

/**
 * Adds or replaces a named context in the config file and returns the file's path.
 * Used by `floe login` and `floe up`.
 */
export function saveContext(name: string, ctx: ContextConfig, options: SaveContextOptions = {}): string {
  checkContextName(name);
  const path = options.path ?? configPath(options.env);
  const config = loadConfig(path);
  const clean = Object.fromEntries(
    Object.entries(ctx).filter(([, v]) => v !== undefined && v !== ''),
  ) as unknown as ContextConfig;
  config.contexts[name] = clean;
  if (options.makeCurrent ?? true) config.current = name;
  writeConfig(path, config);
  return path;
}

/** Removes a context (and unsets it as current); false when it did not exist. */
export function removeContext(path: string, name: string): boolean {
  const config = loadConfig(path);
  if (!Object.prototype.hasOwnProperty.call(config.contexts, name)) return false;
  delete config.contexts[name];
  if (config.current === name) delete config.current;
  writeConfig(path, config);
  return true;
}

/** Reads a CA file, with a clear error when it is missing or not PEM. */
export function readCaFile(path: string): string {
  let pem: string;
  try {
    pem = readFileSync(path, 'utf8');
  } catch (err) {
    throw new CliError(
      `cannot read CA file ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`,
      'ca_unreadable',
    );
  }
  if (!pem.includes('-----BEGIN CERTIFICATE-----'))
    throw new CliError(`${path} is not a PEM certificate`, 'ca_invalid');
  return pem;
}

/**
 * Picks the context and applies overrides: flags beat the environment
 * (`FLOE_CONTEXT`, `FLOE_URL`, `FLOE_TOKEN`, `FLOE_CA`, `FLOE_PROJECT`), which
 * beats the config file. Throws `not_logged_in` when no URL is known.
 */
export function resolveContext(
  config: FloeConfig,
  flags: { context?: string; project?: string },
  env: Env,
): ResolvedContext {
  const name = flags.context ?? nonEmpty(env.FLOE_CONTEXT) ?? config.current;
  let saved: ContextConfig | undefined;
  if (name !== undefined) {
    saved = Object.prototype.hasOwnProperty.call(config.contexts, name) ? config.contexts[name] : undefined;
    const explicit = flags.context !== undefined || nonEmpty(env.FLOE_CONTEXT) !== undefined;
    if (saved === undefined && explicit)
      throw new CliError(`no context named ${JSON.stringify(name)} (see "floe context ls")`, 'context_not_found');
  }
  const url = nonEmpty(env.FLOE_URL) ?? saved?.url;
  if (url === undefined) {
    throw new CliError(
      'no floe server configured: run "floe login <url> --token <token>" or set FLOE_URL and FLOE_TOKEN',
      'not_logged_in',
    );
  }
  const caFile = nonEmpty(env.FLOE_CA) ?? saved?.ca_file;
  const ca = caFile !== undefined ? readCaFile(caFile) : saved?.ca;
  return {
    name: saved === undefined ? undefined : name,
    url,
    token: nonEmpty(env.FLOE_TOKEN) ?? saved?.token,
    ca,
    caFile,
    project: flags.project ?? nonEmpty(env.FLOE_PROJECT) ?? saved?.project,
  };
}

function nonEmpty(s: string | undefined): string | undefined {
  return s === undefined || s === '' ? undefined : s;
}
