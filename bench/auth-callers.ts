/**
 * The callers of the API benchmark's authenticated GET besides the admin token: a user's session
 * (from a real password login), a token scoped to the one instance and the read verb, and an opaque
 * bearer that an external checker decides (answers cached by floe). The checker is a plain HTTP
 * server in a worker thread of its own, so its work does not count as the control plane's.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Worker } from 'node:worker_threads';
import { FloeClient } from '@floe/client';

/** The opaque credential the checker allows; not a floe token, so floe asks the checker about it. */
export const CHECKER_BEARER = 'Bearer bench-opaque-credential';
const PASSWORD = 'bench user password';

/** The checker: allows CHECKER_BEARER as a member of `default`, counts the questions it got. */
const CHECKER_SOURCE = `
const http = require('node:http');
const { parentPort } = require('node:worker_threads');
let questions = 0;
const server = http.createServer((req, res) => {
  let body = '';
  req.on('data', (d) => (body += d));
  req.on('end', () => {
    questions++;
    const q = JSON.parse(body);
    const allow = q.authorization === ${JSON.stringify(CHECKER_BEARER)};
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify(allow
      ? { allow: true, user: { subject: 'bench-ext' }, roles: [{ role: 'member', project: 'default' }] }
      : { allow: false }));
  });
});
server.listen(0, '127.0.0.1', () => parentPort.postMessage({ port: server.address().port }));
parentPort.on('message', (m) => {
  if (m === 'count') parentPort.postMessage({ questions });
  if (m === 'close') server.close(() => process.exit(0));
});
`;

/** A running checker and the FLOE_AUTH_CONFIG file that puts it in the chain after local passwords. */
export interface BenchChecker {
  /** Environment for the control plane. */
  env: Record<string, string>;
  /** How many questions the checker has answered so far. */
  questions(): Promise<number>;
  close(): Promise<void>;
}

export async function startBenchChecker(): Promise<BenchChecker> {
  const worker = new Worker(CHECKER_SOURCE, { eval: true });
  const next = <T>() => new Promise<T>((resolve) => worker.once('message', resolve));
  const { port } = await next<{ port: number }>();
  const dir = await mkdtemp(path.join(os.tmpdir(), 'floe-bench-auth-'));
  const file = path.join(dir, 'auth.json');
  await writeFile(
    file,
    JSON.stringify({
      chain: [{ kind: 'local' }, { kind: 'checker', url: `http://127.0.0.1:${port}/check`, cacheTtlMs: 60_000 }],
    }),
  );
  return {
    env: { FLOE_AUTH_CONFIG: file },
    async questions() {
      worker.postMessage('count');
      return (await next<{ questions: number }>()).questions;
    },
    async close() {
      worker.postMessage('close');
      await new Promise((resolve) => worker.once('exit', resolve));
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** A session of a member of `default` (a real password login) and a token scoped to one instance and read. */
export async function benchCallers(
  url: string,
  ca: string,
  admin: FloeClient,
  instanceId: string,
): Promise<{ session: string; scoped: string }> {
  await admin.users.create({ name: 'bench-user', password: PASSWORD });
  await admin.members.add('default', { user: 'bench-user', role: 'member' });
  const anonymous = new FloeClient({ url, ca });
  const { token: session } = await anonymous.auth.login({ username: 'bench-user', password: PASSWORD });
  await anonymous.close();
  const scoped = await admin.tokens.create({
    name: 'bench-scoped',
    projects: ['default'],
    scope: { kinds: ['instance'], resources: [instanceId], verbs: ['read'] },
  });
  return { session, scoped: scoped.secret };
}
