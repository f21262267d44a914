import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { ERROR_CODES } from '@floe/api';
import { buildApp } from './app.js';
import type { ControlPki } from './wiring.js';
import { loadConfig } from './config.js';
import { openStore } from './db/index.js';

/** Where the generated API documents live, relative to the repository root. */
export const DOC_FILES = { openapi: 'docs/api/openapi.json', errors: 'docs/api/errors.md' } as const;

/** Escape a table cell: pipes would split the cell, newlines would end the row. */
function cell(text: string): string {
  return text.replace(/\|/g, '\\|').replace(/\r?\n/g, ' ');
}

/** docs/api/errors.md: every stable error code with its HTTP status and meaning, generated from ERROR_CODES. */
export function renderErrorsMarkdown(): string {
  const rows = Object.entries(ERROR_CODES).map(
    ([code, { status, description }]) => `| \`${code}\` | ${status} | ${cell(description)} |`,
  );
  return [
    '# floe API errors',
    '',
    '<!-- Generated from ERROR_CODES in packages/api/src/errors.ts by `npm run openapi`; do not edit by hand. -->',
    '',
    'Every failed request answers with the HTTP status below and one JSON envelope,',
    '`{"error": {"code": "instance_not_found", "message": "...", "details": {...}}}`.',
    '`code` is stable and safe to match on in programs; `message` is for people and may change;',
    '`details` is optional and carries structured context, for example `details.field` naming',
    'the invalid field of a `validation_failed` error.',
    '',
    '| Code | HTTP status | Meaning |',
    '| --- | --- | --- |',
    ...rows,
    '',
  ].join('\n');
}

/** Keys of an operation object in the order HTTP methods are usually listed. */
const METHOD_ORDER = ['get', 'put', 'post', 'patch', 'delete', 'head', 'options', 'trace'];
/** Top-level keys of the document in the order readers expect them. */
const TOP_ORDER = ['openapi', 'info', 'security', 'tags', 'paths', 'components'];

function rank(order: readonly string[], key: string): number {
  const i = order.indexOf(key);
  return i === -1 ? order.length : i;
}

/** Deep copy with object keys sorted (arrays keep their order), so the document is byte-stable. */
function sortKeys(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(sortKeys);
  if (value === null || typeof value !== 'object') return value;
  const out: Record<string, unknown> = {};
  for (const key of Object.keys(value).sort()) {
    const v = (value as Record<string, unknown>)[key];
    if (v !== undefined) out[key] = sortKeys(v);
  }
  return out;
}

/** Sort the document: fixed top-level order, paths alphabetically, methods in the usual order, everything else by key. */
export function normalizeOpenapi(doc: Record<string, unknown>): Record<string, unknown> {
  const { servers: _servers, paths, ...rest } = doc;
  const sorted = sortKeys(rest) as Record<string, unknown>;
  const sortedPaths: Record<string, unknown> = {};
  for (const p of Object.keys(paths ?? {}).sort()) {
    const item = (paths as Record<string, Record<string, unknown>>)[p]!;
    const methods = Object.keys(item).sort((a, b) => rank(METHOD_ORDER, a) - rank(METHOD_ORDER, b) || (a < b ? -1 : 1));
    const out: Record<string, unknown> = {};
    for (const m of methods) out[m] = sortKeys(item[m]);
    sortedPaths[p] = out;
  }
  const full: Record<string, unknown> = { ...sorted, paths: sortedPaths };
  const result: Record<string, unknown> = {};
  for (const k of Object.keys(full).sort((a, b) => rank(TOP_ORDER, a) - rank(TOP_ORDER, b) || (a < b ? -1 : 1)))
    result[k] = full[k];
  return result;
}

/** A PKI that is never asked for anything: the app is built without TLS and never listens. */
const NO_PKI: ControlPki = {
  caPem: '',
  server: { certPem: '', keyPem: '' },
  signCsr: () => Promise.reject(new Error('no CA while generating documents')),
};

/**
 * The OpenAPI document the control plane serves at /v1/openapi.json, built
 * without listening (plain HTTP config, a throwaway SQLite store) and
 * normalized so docs/api/openapi.json is byte-stable.
 */
export async function openapiDocument(): Promise<Record<string, unknown>> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'floe-docs-'));
  try {
    const store = await openStore({ sqlitePath: path.join(dir, 'floe.db') });
    try {
      const config = loadConfig(
        { FLOE_DATA: dir, FLOE_TLS: 'off', FLOE_LISTEN: '127.0.0.1:0', FLOE_LOG_LEVEL: 'silent' },
        dir,
      );
      const app = await buildApp({ store, config, pki: NO_PKI, logger: false });
      try {
        return normalizeOpenapi(app.http.swagger() as unknown as Record<string, unknown>);
      } finally {
        await app.close();
      }
    } finally {
      await store.close();
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** The exact text of docs/api/openapi.json: pretty JSON and a trailing newline. */
export async function renderOpenapiJson(): Promise<string> {
  return `${JSON.stringify(await openapiDocument(), null, 2)}\n`;
}
