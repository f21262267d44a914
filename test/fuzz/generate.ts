/**
 * Requests for the API fuzz test, generated from the OpenAPI document with a seeded PRNG: mostly valid
 * requests with one part made hostile (a wrong type, a huge, deep, unicode or path-traversal value), and
 * requests broken as a whole (bad JSON, wrong content types, oversized bodies, unknown methods).
 */

/** A JSON schema as the OpenAPI document holds it (inline TypeBox schemas). */
interface Schema {
  type?: string | string[];
  const?: unknown;
  enum?: unknown[];
  anyOf?: Schema[];
  oneOf?: Schema[];
  properties?: Record<string, Schema>;
  required?: string[];
  additionalProperties?: boolean | Schema;
  items?: Schema;
  minimum?: number;
  maximum?: number;
  minLength?: number;
  maxLength?: number;
  minItems?: number;
  pattern?: string;
  format?: string;
  default?: unknown;
}

interface Parameter {
  in: 'path' | 'query' | 'header';
  name: string;
  required?: boolean;
  schema: Schema;
}

/** One operation of the document. */
export interface Route {
  method: string;
  /** OpenAPI path, e.g. /v1/instances/{id} */
  path: string;
  params: Parameter[];
  /** The JSON (or octet-stream) body schema, if the operation takes a body. */
  body: Schema | null;
  bodyType: string | null;
}

/** A request to send. */
export interface FuzzRequest {
  method: string;
  path: string;
  headers: Record<string, string>;
  body: Buffer | null;
  /** What was done to it, for the failure message. */
  what: string;
  /** The operation of the document it came from, `METHOD /path/{param}`. */
  route?: string;
}

/** mulberry32: a small seeded PRNG, the same sequence for the same seed. */
export class Rng {
  private state: number;
  constructor(seed: number) {
    this.state = seed >>> 0;
  }
  next(): number {
    this.state = (this.state + 0x6d2b79f5) >>> 0;
    let t = this.state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  int(n: number): number {
    return Math.floor(this.next() * n);
  }
  chance(p: number): boolean {
    return this.next() < p;
  }
  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)]!;
  }
}

/** Every operation of an OpenAPI document. */
export function routesOf(doc: { paths: Record<string, Record<string, unknown>> }): Route[] {
  const routes: Route[] = [];
  for (const [path, item] of Object.entries(doc.paths)) {
    for (const [method, raw] of Object.entries(item)) {
      const op = raw as { parameters?: Parameter[]; requestBody?: { content?: Record<string, { schema?: Schema }> } };
      const content = op.requestBody?.content ?? {};
      const bodyType = Object.keys(content)[0] ?? null;
      routes.push({
        method: method.toUpperCase(),
        path,
        params: op.parameters ?? [],
        body: bodyType === null ? null : (content[bodyType]?.schema ?? {}),
        bodyType,
      });
    }
  }
  return routes;
}

/** Deeply nested arrays, built without recursion. */
function deep(levels: number): unknown {
  let v: unknown = [];
  for (let i = 0; i < levels; i++) v = [v];
  return v;
}

/** Deeply nested objects. */
function deepObject(levels: number): unknown {
  let v: unknown = {};
  for (let i = 0; i < levels; i++) v = { a: v };
  return v;
}

/** Hostile strings: traversal, unicode, injections, control characters, lookalikes. */
const NASTY_STRINGS = [
  '',
  ' ',
  '../../../../etc/passwd',
  '..\\..\\..\\windows\\win.ini',
  '%2e%2e%2f%2e%2e%2fetc%2fpasswd',
  '..%00/',
  '....//....//etc/passwd',
  '/etc/passwd',
  'file:///etc/passwd',
  'http://169.254.169.254/latest/meta-data/',
  '\u0000',
  'a\u0000b',
  '\r\nX-Injected: 1',
  '\u202egnp.exe',
  '💥'.repeat(40),
  '\ud800',
  'ｄｅｆａｕｌｔ',
  'DEFAULT',
  'İ',
  'e\u0301',
  '\u200b',
  "'; DROP TABLE instances; --",
  '" OR 1=1 --',
  '$(reboot)',
  '`id`',
  '{{7*7}}',
  '${jndi:ldap://x}',
  '__proto__',
  'constructor',
  'prototype',
  '-1',
  'NaN',
  'Infinity',
  'null',
  'true',
  '0x10',
  '1e999',
  'default',
  'a'.repeat(64),
  'a'.repeat(101),
  'x'.repeat(5000),
  '%',
  '%zz',
  '%25',
  '%c0%ae%c0%ae',
  '%ff',
  '\\',
  '/',
  '.',
  '..',
  '*',
  'env=prod,',
  '=',
  'a=b=c',
];

/** Hostile values of any JSON type. */
function nastyValue(rng: Rng): unknown {
  switch (rng.int(14)) {
    case 0:
      return rng.pick(NASTY_STRINGS);
    case 1:
      return rng.pick([0, -1, 1.5, -0, 2 ** 31, 2 ** 53 + 2, -(2 ** 63), 1e308, -1e308, 5e-324, 3600, 3601, 65537]);
    case 2:
      return rng.pick([true, false, null]);
    case 3:
      return rng.pick([[], [null], [1, 'a', {}], {}, { '': '' }]);
    case 4:
      return 'A'.repeat(rng.pick([256, 70_000, 200_000]));
    case 5:
      return deep(rng.pick([40, 500, 3000]));
    case 6:
      return deepObject(rng.pick([33, 200, 2000]));
    case 7:
      return Array.from({ length: rng.pick([9, 100, 5000]) }, (_, i) => `n${i}`);
    case 8:
      return Object.fromEntries(Array.from({ length: rng.pick([65, 1000]) }, (_, i) => [`k${i}`, `v${i}`]));
    case 9:
      // Own "__proto__" keys, as JSON.parse makes them (an object literal would set the prototype instead).
      return JSON.parse('{"__proto__":{"admin":true},"constructor":{"prototype":{"admin":true}}}') as unknown;
    case 10:
      return { [rng.pick(NASTY_STRINGS)]: rng.pick(NASTY_STRINGS) };
    case 11:
      return rng.pick(NASTY_STRINGS).repeat(rng.pick([1, 3, 50]));
    case 12:
      return String.fromCharCode(...Array.from({ length: 30 }, () => rng.int(0x10000)));
    default:
      return rng.pick(['inst_01J00000000000000000000000', 'img_x', 'op_01J00000000000000000000000', 'net_', 'tok_']);
  }
}

/** Names that exist on the fuzzed server, so valid-looking requests reach real resources. */
const KNOWN_NAMES = ['default', 'fuzz', 'fz-net', 'fz-vm', 'small', 'fz-img'];

/** A plausible valid value for `schema`. */
function validValue(rng: Rng, schema: Schema, name: string, depth = 0): unknown {
  if (schema.const !== undefined) return schema.const;
  if (schema.enum) return rng.pick(schema.enum);
  const union = schema.anyOf ?? schema.oneOf;
  if (union && union.length > 0) return validValue(rng, rng.pick(union), name, depth);
  const type = Array.isArray(schema.type) ? rng.pick(schema.type) : schema.type;
  switch (type) {
    case 'object': {
      const out: Record<string, unknown> = {};
      for (const [key, sub] of Object.entries(schema.properties ?? {})) {
        if ((schema.required ?? []).includes(key) || (depth < 3 && rng.chance(0.4)))
          out[key] = validValue(rng, sub, key, depth + 1);
      }
      if (typeof schema.additionalProperties === 'object' && rng.chance(0.5)) {
        out[rng.pick(['env', 'tier', 'a.b/c'])] = validValue(rng, schema.additionalProperties, 'value', depth + 1);
      }
      return out;
    }
    case 'array': {
      const n = Math.max(schema.minItems ?? 0, rng.int(3));
      return Array.from({ length: n }, () => validValue(rng, schema.items ?? {}, name, depth + 1));
    }
    case 'integer':
    case 'number': {
      // Never a long ?wait: the fuzz must not sit on operations.
      const max = name === 'wait' ? 1 : Math.min(schema.maximum ?? 100, (schema.minimum ?? 0) + 100);
      const min = schema.minimum ?? 0;
      return min + rng.int(Math.max(1, max - min + 1));
    }
    case 'boolean':
      return rng.chance(0.5);
    case 'null':
      return null;
    case 'string': {
      if (schema.format === 'uri' || name === 'url') return 'http://127.0.0.1:9/fuzz.qcow2';
      if (schema.format === 'date-time') return new Date(0).toISOString();
      if (name === 'csr')
        return `-----BEGIN CERTIFICATE REQUEST-----\n${'A'.repeat(120)}\n-----END CERTIFICATE REQUEST-----`;
      if (name === 'cidr' || name === 'subnet' || name === 'ipv4_cidr') return rng.pick(['10.9.0.0/24', '10.9.0.0/33']);
      if (name === 'ipv4') return '10.9.0.5';
      const s = rng.chance(0.7) ? rng.pick(KNOWN_NAMES) : `fz-${rng.int(1000)}`;
      return s.length >= (schema.minLength ?? 0) ? s : s.padEnd(schema.minLength ?? 0, 'x');
    }
    default:
      return rng.chance(0.5) ? rng.pick(KNOWN_NAMES) : {};
  }
}

/** Replace one leaf or member of `value` with a hostile one (or add an unknown field). */
function mutate(rng: Rng, value: unknown): unknown {
  if (value === null || typeof value !== 'object' || rng.chance(0.15)) return nastyValue(rng);
  if (Array.isArray(value)) {
    if (value.length === 0 || rng.chance(0.3)) return [...value, nastyValue(rng)];
    const i = rng.int(value.length);
    return value.map((v, j) => (j === i ? mutate(rng, v) : v));
  }
  const obj = { ...(value as Record<string, unknown>) };
  const keys = Object.keys(obj);
  const roll = rng.int(10);
  if (roll === 0 || keys.length === 0)
    obj[rng.pick(['extra', '__proto__', 'admin', 'id', 'revision'])] = nastyValue(rng);
  else if (roll === 1) delete obj[rng.pick(keys)];
  else {
    const k = rng.pick(keys);
    obj[k] = mutate(rng, obj[k]);
  }
  return obj;
}

/** Percent-encode the UTF-8 bytes of `text` (a lone surrogate becomes U+FFFD), keeping unreserved characters. */
function enc(text: string): string {
  let out = '';
  for (const b of Buffer.from(text, 'utf8')) {
    const c = String.fromCharCode(b);
    out += /[A-Za-z0-9\-_.~]/.test(c) ? c : `%${b.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return out;
}

/** A path parameter value, encoded or (sometimes) raw so the path itself changes. */
function pathValue(rng: Rng, hostile: boolean): string {
  if (!hostile) return enc(rng.pick(KNOWN_NAMES));
  const v = String(nastyValue(rng));
  const raw = v.length > 300 ? v.slice(0, 300) : v;
  switch (rng.int(4)) {
    case 0:
      // Raw: slashes, dots and percent signs reach the router as they are (control characters encoded, as
      // Node refuses them in a request line).
      return [...raw].map((c) => (c <= ' ' || c >= '\u007f' || c === '#' || c === '?' ? enc(c) : c)).join('');
    case 1:
      return enc(enc(raw));
    default:
      return enc(raw);
  }
}

function queryString(rng: Rng, route: Route, hostile: boolean): string {
  const parts: string[] = [];
  const target = hostile ? rng.int(Math.max(1, route.params.filter((p) => p.in === 'query').length + 1)) : -1;
  let i = 0;
  for (const p of route.params) {
    if (p.in !== 'query') continue;
    const bad = i++ === target;
    if (!bad && !p.required && rng.chance(0.6)) continue;
    const value = bad ? nastyValue(rng) : validValue(rng, p.schema, p.name);
    const text = typeof value === 'string' ? value : JSON.stringify(value);
    parts.push(`${enc(p.name)}=${enc(text.slice(0, 20_000))}`);
    if (bad && rng.chance(0.2)) parts.push(`${enc(p.name)}=2`);
  }
  if (hostile && i === target) {
    parts.push(rng.pick(['unknown=1', '%zz=1', 'a=%zz', '=', '&&&', 'label=' + '%41'.repeat(3000)]));
  }
  return parts.length === 0 ? '' : `?${parts.join('&')}`;
}

/** Bodies that are not JSON, or barely. */
const BAD_JSON = [
  '{',
  '{"a":',
  'nul',
  '[1,2',
  '{"a":1}garbage',
  '{"a":1,}',
  "{'a':1}",
  '\u0000',
  '\ufeff{}',
  'NaN',
  '"just a string"',
  '42',
  'null',
  '[]',
  '{"__proto__":{"admin":true},"name":"x"}',
  '{"name":"a","name":"b"}',
  '['.repeat(100_000),
  '{"a":'.repeat(50_000),
  '"\\ud800"',
  '"\\u0000"',
];

const CONTENT_TYPES = [
  'text/plain',
  'application/xml',
  'multipart/form-data; boundary=x',
  'application/x-www-form-urlencoded',
  'application/json; charset=utf-16',
  'application/json;;',
  'APPLICATION/JSON',
  'application/merge-patch+json',
  'application/octet-stream',
  'application/json, text/plain',
  '*/*',
  'application/jsonx',
];

/**
 * The `n`th request: a route of `routes`, made hostile in one way. `token` is the valid admin token; a fifth
 * of the requests go without one and a tenth with a wrong one.
 */
export function generate(rng: Rng, routes: readonly Route[], token: string): FuzzRequest {
  const route = rng.pick(routes);
  const headers: Record<string, string> = {};
  const auth = rng.next();
  if (auth < 0.7) headers.authorization = `Bearer ${token}`;
  else if (auth < 0.8)
    headers.authorization = rng.pick(['Bearer floe_wrong', 'Bearer ', 'Basic YTpi', `Bearer ${token}x`]);

  // What to break: 0 path, 1 query, 2 body, 3 the body as a whole, 4 content type, 5 size, 6 method, 7 nothing.
  const mode = rng.int(8);
  const path = route.path.replace(/\{(\w+)\}/g, () => pathValue(rng, mode === 0 && rng.chance(0.8)));
  const query = queryString(rng, route, mode === 1);
  let method = route.method;
  if (mode === 6) method = rng.pick(['PUT', 'PATCH', 'DELETE', 'POST', 'OPTIONS', 'HEAD', 'GET', 'TRACE']);

  let body: Buffer | null = null;
  let what = `${method} ${route.path} mode ${mode}`;
  if (route.bodyType === 'application/octet-stream') {
    headers['content-type'] = mode === 4 ? rng.pick(CONTENT_TYPES) : 'application/octet-stream';
    body = Buffer.from(rng.pick(['', 'QFI\u00fb garbage', 'x'.repeat(1024), '\u0000'.repeat(512)]), 'latin1');
  } else if (route.body !== null || mode === 3 || mode === 4 || mode === 5) {
    const valid = route.body === null ? {} : validValue(rng, route.body, 'body');
    let text: string;
    if (mode === 3) {
      text = rng.pick(BAD_JSON);
      what += ' bad json';
    } else if (mode === 5) {
      // Over the default 1 MiB body limit.
      text = JSON.stringify({ ...(valid as object), pad: 'p'.repeat(1_100_000 + rng.int(500_000)) });
      what += ' oversized';
    } else {
      text = JSON.stringify(mode === 2 ? mutate(rng, valid) : valid);
    }
    headers['content-type'] =
      mode === 4 ? rng.pick(CONTENT_TYPES) : method === 'PATCH' ? 'application/merge-patch+json' : 'application/json';
    if (mode === 4 && rng.chance(0.2)) delete headers['content-type'];
    body = Buffer.from(text, 'utf8');
  }
  if (rng.chance(0.05)) headers.accept = rng.pick(['text/event-stream', 'application/json', '*/*', 'text/html', '']);
  if (rng.chance(0.05)) headers['idempotency-key'] = rng.pick(['k', 'x'.repeat(201), '\u00e9', 'same']);
  if (rng.chance(0.05)) headers['if-match'] = rng.pick(['"1"', '*', 'W/"x"', '"99999999999999"', 'garbage']);
  return { method, path: `${path}${query}`, headers, body, what, route: `${route.method} ${route.path}` };
}
