import { existsSync, readFileSync, statSync } from 'node:fs';
import { InvalidArgumentError } from 'commander';
import { LABEL_KEY_PATTERN, LABEL_VALUE_PATTERN, NAME_PATTERN, USER_DATA_MAX_BYTES } from '@floe/api';
import { UsageError } from './errors.js';

const labelKey = new RegExp(LABEL_KEY_PATTERN);
const labelValue = new RegExp(LABEL_VALUE_PATTERN);
const name = new RegExp(NAME_PATTERN);

/** Option parser for repeatable flags: `--x a --x b,c` gives `['a', 'b', 'c']`. */
export function collect(value: string, previous: string[] = []): string[] {
  return [
    ...previous,
    ...value
      .split(',')
      .map((v) => v.trim())
      .filter((v) => v !== ''),
  ];
}

/** Option parser for integers in a range; commander turns the throw into a usage error. */
export function intArg(min: number, max: number): (value: string) => number {
  return (value: string) => {
    if (!/^\d+$/.test(value.trim()))
      throw new InvalidArgumentError(`expected a whole number, got ${JSON.stringify(value)}`);
    const n = Number(value);
    if (n < min || n > max) throw new InvalidArgumentError(`must be between ${min} and ${max}`);
    return n;
  };
}

/** Checks a resource name (a DNS label) before it is sent. */
export function checkName(value: string, what = 'name'): string {
  if (!name.test(value))
    throw new UsageError(
      `invalid ${what} ${JSON.stringify(value)}: use a-z, 0-9 and "-", 1-63 characters, starting and ending with a letter or digit`,
    );
  return value;
}

/** Splits and checks `key=value` (an empty value is allowed: `key=`). */
function parseLabel(arg: string): [string, string] {
  const eq = arg.indexOf('=');
  if (eq <= 0) throw new UsageError(`invalid label ${JSON.stringify(arg)}: expected key=value`);
  const key = arg.slice(0, eq);
  const value = arg.slice(eq + 1);
  if (!labelKey.test(key)) throw new UsageError(`invalid label key ${JSON.stringify(key)}`);
  if (!labelValue.test(value)) throw new UsageError(`invalid label value ${JSON.stringify(value)} for ${key}`);
  return [key, value];
}

/** `['env=prod', 'tier=web']` → `{ env: 'prod', tier: 'web' }`. */
export function parseLabels(args: readonly string[]): Record<string, string> {
  return Object.fromEntries(args.map(parseLabel));
}

/** `k=v` sets a label and `k-` removes it: the merge patch of `floe <noun> label`. */
export function labelPatch(args: readonly string[]): Record<string, string | null> {
  if (args.length === 0) throw new UsageError('give at least one key=value or key-');
  const patch: Record<string, string | null> = {};
  for (const arg of args) {
    if (arg.endsWith('-') && !arg.includes('=')) {
      const key = arg.slice(0, -1);
      if (!labelKey.test(key)) throw new UsageError(`invalid label key ${JSON.stringify(key)}`);
      patch[key] = null;
    } else {
      const [k, v] = parseLabel(arg);
      patch[k] = v;
    }
  }
  return patch;
}

/** Checks list selectors: `key` or `key=value`. */
export function parseSelectors(args: readonly string[]): string[] {
  for (const arg of args) {
    const key = arg.includes('=') ? arg.slice(0, arg.indexOf('=')) : arg;
    if (!labelKey.test(key))
      throw new UsageError(`invalid label selector ${JSON.stringify(arg)}: expected key or key=value`);
    if (arg.includes('=')) parseLabel(arg);
  }
  return [...args];
}

/** Reads a user-data file, refusing files larger than the API accepts. */
export function readUserData(path: string, what = 'user-data'): string {
  let size: number;
  try {
    size = statSync(path).size;
  } catch {
    throw new UsageError(`cannot read ${what} file ${path}`);
  }
  if (size > USER_DATA_MAX_BYTES)
    throw new UsageError(`${what} file ${path} is ${size} bytes; at most ${USER_DATA_MAX_BYTES} are allowed`);
  return readFileSync(path, 'utf8');
}

const KEY_PREFIX = /^(ssh-(rsa|ed25519|dss)|ecdsa-sha2-|sk-(ssh-ed25519|ecdsa-sha2-))/;

/** An `--ssh-key` argument: a public key itself, or a file holding one or more keys. */
export function readSshKeys(arg: string): string[] {
  const value = arg.trim();
  if (KEY_PREFIX.test(value)) return [value];
  if (!existsSync(value))
    throw new UsageError(`--ssh-key ${JSON.stringify(arg)} is neither a public key nor a readable file`);
  const keys = readFileSync(value, 'utf8')
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('#'));
  if (keys.length === 0 || !keys.every((k) => KEY_PREFIX.test(k)))
    throw new UsageError(`${value} does not hold OpenSSH public keys`);
  return keys;
}
