import type { TObject, TSchema } from 'typebox';
import { Compile } from 'typebox/compile';

/** What a decoder made of one message: the checked value, or why it was refused. */
export type Decoded<T> =
  | { ok: true; value: T }
  | {
      ok: false;
      /** The message's `type` when it had a string one (for logs). */
      type: string | null;
      /** Where and how it failed, e.g. `/instance/state: must be equal to constant`. */
      error: string;
    };

interface Variant {
  kind: string | null;
  check: ReturnType<typeof Compile<TSchema>>;
}

// The string a literal property of a variant must equal, if it is one.
function literal(schema: TObject, key: string): string | null {
  const prop: { const?: unknown } | undefined = schema.properties[key];
  return typeof prop?.const === 'string' ? prop.const : null;
}

const MAX_ERRORS = 3;

/**
 * A decoder for JSON messages told apart by a literal `type` (and, among
 * variants of one type, a literal `kind`): the message is checked against its
 * own variant only, so errors name the field that is wrong rather than every
 * variant it is not. Validators are compiled once, on first use.
 */
export function messageDecoder<T>(variants: readonly TObject[]): (text: string) => Decoded<T> {
  let byType: Map<string, Variant[]> | null = null;
  const compile = (): Map<string, Variant[]> => {
    const map = new Map<string, Variant[]>();
    for (const schema of variants) {
      const type = literal(schema, 'type');
      if (type === null) throw new Error('every message schema needs a literal `type`');
      const list = map.get(type) ?? [];
      list.push({ kind: literal(schema, 'kind'), check: Compile(schema as TSchema) });
      map.set(type, list);
    }
    return map;
  };
  return (text) => {
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch {
      return { ok: false, type: null, error: 'not JSON' };
    }
    if (typeof value !== 'object' || value === null || Array.isArray(value))
      return { ok: false, type: null, error: 'not a JSON object' };
    const { type, kind } = value as { type?: unknown; kind?: unknown };
    if (typeof type !== 'string') return { ok: false, type: null, error: '/type: must be a string' };
    byType ??= compile();
    const candidates = byType.get(type);
    if (candidates === undefined)
      return { ok: false, type, error: `/type: unknown message type ${JSON.stringify(type)}` };
    const variant = candidates.find((v) => v.kind === null || v.kind === kind);
    if (variant === undefined) return { ok: false, type, error: `/kind: unknown kind ${JSON.stringify(kind)}` };
    if (variant.check.Check(value)) return { ok: true, value: value as T };
    // A union reports each of its members; the same line once is enough.
    const errors = new Set(
      variant.check.Errors(value).map((e) => `${e.instancePath === '' ? '/' : e.instancePath}: ${e.message}`),
    );
    return { ok: false, type, error: [...errors].slice(0, MAX_ERRORS).join('; ') || 'does not match its schema' };
  };
}
