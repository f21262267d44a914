import { rm } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Operation } from '@floe/api';
import { openStore } from '../../packages/server/src/db/index.js';
import { storeTargets } from '../../packages/server/src/db/testing.js';
import { injectJson, startTestControlPlane, type TestControlPlane } from '../../packages/server/src/testing.js';
import { clientFor, collectEvents, eventually, kill, prepareAgent, startAgent } from './helpers.js';

/**
 * Two control planes on one PostgreSQL database: a request on one reaches an
 * agent connected to the other (LISTEN/NOTIFY), and events and operations
 * stay in step on both.
 */
const pgTarget = storeTargets().find((t) => t.name === 'postgres')!;
describe.skipIf(pgTarget.skip)('two control planes sharing PostgreSQL', () => {
  let cp1: TestControlPlane;
  let cp2: TestControlPlane;
  let agent: ReturnType<typeof startAgent>;
  let agentDir: string;
  let hostId: string;

  beforeAll(async () => {
    const store1 = await pgTarget.open();
    cp1 = await startTestControlPlane(store1, { FLOE_HEARTBEAT_MS: '300' });
    const store2 = await openStore({ url: store1.options.url! });
    cp2 = await startTestControlPlane(store2, { FLOE_HEARTBEAT_MS: '300' }, { ca: cp1.ca, pki: cp1.pki });
    ({ hostId, dataDir: agentDir } = await prepareAgent(cp2, 'node-c'));
    agent = startAgent(cp2.url, agentDir);
    await eventually(
      async () => (await clientFor(cp1).hosts.get(hostId)).status.state === 'online',
      'host online (seen from the other control plane)',
    );
    await clientFor(cp1).images.create({ name: 'img' });
  }, 60_000);

  afterAll(async () => {
    if (agent) await kill(agent);
    await cp2?.close(); // first: the test database is dropped with the first store
    await cp1?.close();
    if (agentDir) await rm(agentDir, { recursive: true, force: true });
  });

  it('a create on one control plane runs on an agent connected to the other', async () => {
    const c1 = clientFor(cp1);
    const c2 = clientFor(cp2, cp1.adminToken);
    const stream = collectEvents(c1, { kind: ['instance', 'operation'] });
    await new Promise((r) => setTimeout(r, 300));
    const { operation, instance } = await c1.instances.create({ name: 'vm-x', image: 'img', machine_type: 'nano' });
    const done = await c1.operations.wait(operation.id, { timeoutMs: 15_000 });
    expect(done.status).toBe('succeeded');
    expect((await c2.instances.get('vm-x')).status.state).toBe('running');
    // The state changes were published by the control plane holding the agent link.
    await eventually(
      async () =>
        stream.events.some(
          (e) => e.type === 'instance.state' && e.resource_id === instance.id && e.data.state === 'running',
        ),
      'remote instance.state event',
    );
    await eventually(
      async () =>
        stream.events.some(
          (e) => e.resource_id === operation.id && (e.data.operation as Operation).status === 'succeeded',
        ),
      'remote operation event',
    );
    stream.stop();
  });

  it('a stop through the first control plane reaches the agent through the second', async () => {
    const c1 = clientFor(cp1);
    const op = await c1.instances.stop('vm-x', { wait: 10 });
    expect(op.status).toBe('succeeded');
    expect((await c1.instances.get('vm-x')).status.state).toBe('stopped');
  });

  it('a token revoked on one control plane is refused by the other at once, not after its cache', async () => {
    const created = await injectJson(cp1, 'POST', '/v1/tokens', { name: 'short-lived', admin: true });
    expect(created.status, JSON.stringify(created.body)).toBe(201);
    const secret = created.body.secret as string;
    // The second control plane has verified (and cached) the token.
    expect((await injectJson(cp2, 'GET', '/v1/hosts', undefined, secret)).status).toBe(200);
    expect((await injectJson(cp1, 'DELETE', `/v1/tokens/${created.body.token.id as string}`)).status).toBe(204);
    // Well inside the cache's 5 s: the revocation's event reached the other control plane.
    await eventually(
      async () => (await injectJson(cp2, 'GET', '/v1/hosts', undefined, secret)).status === 401,
      'revoked token refused by the other control plane',
      2_000,
    );
  });
});
