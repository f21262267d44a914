import https from 'node:https';
import type { Event } from '@floe/api';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openStore } from '../db/index.js';
import { storeTargets, type TestStore } from '../db/testing.js';
import { FakeAgent } from '../testing-agent.js';
import { injectJson, startTestControlPlane, type TestControlPlane } from '../testing.js';

// Events name who caused them (issue 12): the token of the request that published them, and nobody for
// what an agent reported. Stored, replayed with ?since=, streamed live, and heard by the other control
// planes of a shared database.

const PROJECT = 'act';

/** `/v1/events` as Server-Sent Events over HTTPS: the events so far, until `close`. */
function sse(cp: TestControlPlane, path: string, token: string) {
  const events: Event[] = [];
  let close = () => undefined as void;
  const opened = new Promise<void>((resolve, reject) => {
    const req = https.request(
      new URL(path, cp.url),
      {
        headers: { authorization: `Bearer ${token}`, accept: 'text/event-stream' },
        ca: cp.ca.certPem,
        agent: false,
      },
      (res) => {
        let buf = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => {
          buf += chunk;
          let end: number;
          while ((end = buf.indexOf('\n\n')) >= 0) {
            const block = buf.slice(0, end);
            buf = buf.slice(end + 2);
            // The opening comment says the stream is live.
            if (block.startsWith(':')) resolve();
            const data = block.split('\n').find((l) => l.startsWith('data: '));
            if (data !== undefined) events.push(JSON.parse(data.slice(6)) as Event);
          }
        });
        res.on('error', () => undefined);
      },
    );
    req.on('error', (err) => {
      if ((err as NodeJS.ErrnoException).code !== 'ECONNRESET') reject(err);
    });
    req.end();
    close = () => void req.destroy();
  });
  return { events, opened, close: () => close() };
}

async function until<T>(what: string, get: () => T | undefined | Promise<T | undefined>, ms = 10_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const got = await get();
    if (got !== undefined) return got;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

for (const t of storeTargets()) {
  describe.skipIf(t.skip)(`the actor of events on ${t.name}`, () => {
    let store: TestStore;
    let cp: TestControlPlane;
    let agent: FakeAgent;
    let adminActor = '';
    let userSecret = '';
    let userActor = '';
    let start = 0;
    const ok = async (method: 'POST' | 'PATCH', url: string, body: object, token?: string) => {
      const res = await injectJson(cp, method, url, body, token);
      expect(res.status, JSON.stringify(res.body)).toBeLessThan(300);
      return res.body;
    };
    const since = async (from: number, token = cp.adminToken): Promise<Event[]> => {
      const res = await injectJson(cp, 'GET', `/v1/events?since=${from}&project=${PROJECT}`, undefined, token);
      expect(res.status, JSON.stringify(res.body)).toBe(200);
      return res.body.items as Event[];
    };

    beforeAll(async () => {
      store = await t.open();
      cp = await startTestControlPlane(store, { FLOE_LOG_LEVEL: 'silent' });
      agent = await FakeAgent.connect(cp, 'actor-node', '192.0.2.40');
      adminActor = (await cp.app.services.tokens.authenticate(cp.adminToken)).actor;
      start = await cp.app.services.bus.lastSeq();
      await ok('POST', '/v1/projects', { name: PROJECT });
      await ok('POST', '/v1/images', { name: 'img', project: PROJECT });
      await ok('POST', '/v1/users', { name: 'ada' });
      await ok('POST', `/v1/projects/${PROJECT}/members`, { user: 'ada', role: 'member' });
      const token = await ok('POST', '/v1/tokens', { name: 'ada-cli', user: 'ada' });
      userSecret = token.secret;
      userActor = token.token.id;
    }, 60_000);
    afterAll(async () => {
      agent?.close();
      await cp?.close();
    });

    it('names the admin token on what it created, in a ?since= replay', async () => {
      expect(adminActor).toMatch(/^tok_/);
      const events = await since(start);
      const image = events.find((e) => e.kind === 'image' && e.type === 'resource.created');
      expect(image).toMatchObject({ data: { name: 'img' }, actor: adminActor });
      // Every answer has the field, whoever asks.
      for (const e of events) expect(e).toHaveProperty('actor');
    });

    it("names a user's token on an instance it created, live and replayed; the agent's reports name nobody", async () => {
      const stream = sse(cp, `/v1/events?project=${PROJECT}`, cp.adminToken);
      await stream.opened;
      try {
        const from = await cp.app.services.bus.lastSeq();
        const fromAgent = agent.messages.length;
        const created = await ok(
          'POST',
          '/v1/instances',
          { name: 'web', project: PROJECT, image: 'img', vcpus: 1, memory_mib: 128 },
          userSecret,
        );
        const id = created.instance.id as string;
        const opId = created.operation.id as string;
        expect(created.operation.created_by).toBe(userActor);
        expect(created.instance.status.host).toBe(agent.hostId);

        // The agent gets the instance and reports it running.
        const [desired] = await agent.desired('instance', fromAgent);
        expect(desired!.id).toBe(id);
        agent.send({
          type: 'status',
          instance: {
            id,
            state: 'running',
            observed_revision: desired!.revision,
            observed_generation: desired!.generation,
            observed_restart_generation: desired!.restart_generation,
            reason: null,
            accelerator: 'fake',
            started_at: new Date().toISOString(),
            stopped_at: null,
          },
        });
        const isRunning = (e: Event) =>
          e.type === 'instance.state' && e.resource_id === id && e.data.state === 'running';
        const live = await until('instance.state running on the stream', () =>
          stream.events.some(isRunning) ? stream.events : undefined,
        );

        const replayed = await since(from);
        const summary = (events: Event[]) =>
          events
            .filter((e) => e.resource_id === id || e.resource_id === opId)
            .map((e) => ({
              type: e.type,
              kind: e.kind,
              status: (e.data.operation as { status?: string } | undefined)?.status,
              state: e.data.state,
              actor: e.actor,
            }));
        const expected = [
          { type: 'resource.created', kind: 'instance', actor: userActor },
          { type: 'operation.created', kind: 'operation', status: 'pending', actor: userActor },
          // Sent to the host (the agent took it), then the agent's report: the control plane's doing.
          { type: 'operation.updated', kind: 'operation', status: 'running', actor: null },
          { type: 'instance.state', kind: 'instance', state: 'running', actor: null },
          { type: 'operation.updated', kind: 'operation', status: 'succeeded', actor: null },
        ].map((e) => ({ status: undefined, state: undefined, ...e }));
        await until('the operation to succeed on the stream', () =>
          summary(stream.events).length >= expected.length ? true : undefined,
        );
        expect(live.some(isRunning)).toBe(true);
        expect(summary(replayed.length >= expected.length ? replayed : await since(from))).toEqual(expected);
        expect(summary(stream.events)).toEqual(expected);
        // The user's own token sees the same names.
        expect(summary(await since(from, userSecret))).toEqual(expected);
      } finally {
        stream.close();
      }
    });

    it("names the user on a change the user makes, and the admin on the admin's", async () => {
      const from = await cp.app.services.bus.lastSeq();
      await ok('PATCH', `/v1/instances/web?project=${PROJECT}`, { labels: { tier: 'front' } }, userSecret);
      await ok('PATCH', `/v1/instances/web?project=${PROJECT}`, { labels: { tier: 'back' } });
      const updates = (await since(from)).filter((e) => e.type === 'resource.updated' && e.kind === 'instance');
      expect(updates.map((e) => e.actor)).toEqual([userActor, adminActor]);
    });

    it.skipIf(t.name !== 'postgres')('reaches the other control planes of the database with its actor', async () => {
      const other = await startTestControlPlane(
        await openStore(store.options),
        { FLOE_LOG_LEVEL: 'silent' },
        { ca: cp.ca, pki: cp.pki },
      );
      try {
        const heard: Event[] = [];
        const stop = other.app.services.bus.subscribe((e) => heard.push(e));
        try {
          const image = await ok('POST', '/v1/images', { name: 'img-2', project: PROJECT }, userSecret);
          const relayed = await until('the event on the other control plane', () =>
            heard.find((e) => e.resource_id === image.id),
          );
          expect(relayed).toMatchObject({ type: 'resource.created', kind: 'image', actor: userActor });
        } finally {
          stop();
        }
      } finally {
        await other.close();
      }
    });
  });
}
