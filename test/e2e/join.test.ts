import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { storeTargets } from '../../packages/server/src/db/testing.js';
import { startTestControlPlane, type TestControlPlane } from '../../packages/server/src/testing.js';
import { clientFor, eventually, kill, nodeArgs, ROOT, startAgent } from './helpers.js';

/** Run the agent to completion without blocking this process (the control plane runs in it). */
function runAgent(args: string[]): Promise<{ status: number | null; output: string }> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      nodeArgs('packages/agent/src/main.ts', args),
      { cwd: ROOT, timeout: 60_000 },
      (err, stdout, stderr) => {
        resolve({ status: err ? ((err as { code?: number }).code ?? 1) : 0, output: `${stdout}${stderr}` });
      },
    );
  });
}

/** A remote host joins with a one-time token: CSR in, certificate out, then mTLS. */
const target = storeTargets()[0]!; // SQLite: the join path does not differ by dialect
describe('a host joins with a one-time join token', () => {
  let cp: TestControlPlane;
  let dir: string;
  let agent: ReturnType<typeof startAgent> | undefined;

  beforeAll(async () => {
    cp = await startTestControlPlane(await target.open());
    dir = await mkdtemp(path.join(os.tmpdir(), 'floe-join-'));
    await writeFile(path.join(dir, 'ca.pem'), cp.ca.certPem);
  }, 60_000);

  afterAll(async () => {
    if (agent) await kill(agent);
    await cp?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('joins, keeps its certificate, comes online, and the token cannot be used again', async () => {
    const client = clientFor(cp);
    const { token } = await client.hosts.joinToken({ expires_in_minutes: 5 });
    const data = path.join(dir, 'node-b');
    agent = startAgent(cp.url, data, ['--join-token', token, '--name', 'node-b', '--ca', path.join(dir, 'ca.pem')]);
    const host = await eventually(
      async () => (await client.hosts.listAll()).find((h) => h.name === 'node-b' && h.status.state === 'online'),
      'joined host online',
      30_000,
    );
    expect(host.status.facts?.vm_driver).toBe('fake');
    expect((await stat(path.join(data, 'agent.key'))).mode & 0o777).toBe(0o600);
    expect((await stat(path.join(data, 'agent.crt'))).isFile()).toBe(true);

    // The same token again: refused, and no second host appears.
    const again = await runAgent([
      '--server',
      cp.url,
      '--data',
      path.join(dir, 'node-c'),
      '--driver',
      'fake',
      '--join-token',
      token,
      '--name',
      'node-c',
      '--ca',
      path.join(dir, 'ca.pem'),
    ]);
    expect(again.status).toBe(1);
    expect(again.output).toContain('join_token_invalid');
    expect((await client.hosts.listAll()).map((h) => h.name)).toEqual(['node-b']);

    // Restarted without the token, it reconnects with the certificate it kept.
    await kill(agent, 'SIGTERM');
    await eventually(async () => (await client.hosts.get('node-b')).status.state === 'offline', 'offline after stop');
    agent = startAgent(cp.url, data);
    await eventually(
      async () => (await client.hosts.get('node-b')).status.state === 'online',
      'online again with the kept certificate',
    );
  }, 90_000);

  it('refuses a join without a valid token', async () => {
    const r = await runAgent([
      '--server',
      cp.url,
      '--data',
      path.join(dir, 'node-d'),
      '--driver',
      'fake',
      '--join-token',
      'floejoin_not-a-real-token-at-all',
      '--name',
      'node-d',
      '--ca',
      path.join(dir, 'ca.pem'),
    ]);
    expect(r.status).toBe(1);
    expect(r.output).toContain('join_token_invalid');
    expect((await clientFor(cp).hosts.listAll()).map((h) => h.name)).toEqual(['node-b']);
  }, 60_000);
});
