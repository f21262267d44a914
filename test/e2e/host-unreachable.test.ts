import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Event, Instance } from '@floe/api';
import type { FloeClient } from '@floe/client';
import { run } from '../../packages/cli/src/program.js';
import { storeTargets } from '../../packages/server/src/db/testing.js';
import { startTestControlPlane, type TestControlPlane } from '../../packages/server/src/testing.js';
import { clientFor, collectEvents, eventually, kill, prepareAgent, startAgent } from './helpers.js';

/** Output a CLI run writes. */
class Buf {
  text = '';
  write(s: string | Uint8Array): boolean {
    this.text += typeof s === 'string' ? s : Buffer.from(s).toString('utf8');
    return true;
  }
}

/**
 * A host whose agent stops answering: its instances read `unknown` with the host and since when, operations
 * waiting on it say so (API, client and CLI), and when the agent is back the real state returns and the
 * waiting operation is carried out.
 */
for (const target of storeTargets()) {
  describe.skipIf(target.skip)(`an unreachable host on ${target.name}`, () => {
    let cp: TestControlPlane;
    let agentDir: string;
    let hostId: string;
    let agent: ReturnType<typeof startAgent>;
    let client: FloeClient;
    let tmp: string;
    let env: Record<string, string>;

    const floe = (out: Buf, err: Buf, ...argv: string[]) =>
      run(argv, { stdout: out, stderr: err, env, stdinIsTTY: false });

    beforeAll(async () => {
      cp = await startTestControlPlane(await target.open(), {
        FLOE_HEARTBEAT_MS: '300',
        FLOE_HOST_OFFLINE_AFTER_MS: '1500',
      });
      ({ hostId, dataDir: agentDir } = await prepareAgent(cp, 'node-u'));
      agent = startAgent(cp.url, agentDir);
      client = clientFor(cp);
      await eventually(async () => (await client.hosts.get(hostId)).status.state === 'online', 'host online');
      await client.images.create({ name: 'img' });
      for (const name of ['a2', 'b2']) {
        const { operation } = await client.instances.create({ name, image: 'img', machine_type: 'nano' });
        expect((await client.operations.wait(operation.id, { timeoutMs: 15_000 })).status).toBe('succeeded');
      }
      tmp = await mkdtemp(path.join(os.tmpdir(), 'floe-unreachable-'));
      await writeFile(path.join(tmp, 'ca.pem'), cp.ca.certPem);
      env = {
        FLOE_CONFIG: path.join(tmp, 'config.json'),
        FLOE_URL: cp.url,
        FLOE_TOKEN: cp.adminToken,
        FLOE_CA: path.join(tmp, 'ca.pem'),
        NO_COLOR: '1',
      };
    }, 60_000);

    afterAll(async () => {
      if (agent) await kill(agent);
      await cp?.close();
      if (agentDir) await rm(agentDir, { recursive: true, force: true });
      if (tmp) await rm(tmp, { recursive: true, force: true });
    });

    it('says the host is unreachable and since when, and what a stop waits for, until the host is back', async () => {
      const stream = collectEvents(client, { kind: ['instance'] });
      await new Promise((r) => setTimeout(r, 300)); // let the stream connect
      // A frozen agent: the stop of b2 reaches its socket but nothing answers, then heartbeats stop.
      agent.kill('SIGSTOP');
      const stopB = await client.instances.stop('b2');
      const frozenAt = Date.now();
      await eventually(
        async () => (await client.hosts.get(hostId)).status.state === 'offline',
        'host offline after missed heartbeats',
        10_000,
      );
      const a2 = await eventually(async () => {
        const i = await client.instances.get('a2');
        return i.status.state === 'unknown' ? i : undefined;
      }, 'a2 unknown');
      expect(a2.status.host).toBe(hostId);
      expect(a2.status.last_known_state).toBe('running');
      const since = Date.parse(a2.status.host_unreachable_since ?? '');
      expect(since).toBeGreaterThanOrEqual(frozenAt - 1000);
      expect(since).toBeLessThanOrEqual(Date.now());
      const listed = await client.instances.listAll();
      expect(listed.map((i) => [i.name, i.status.state]).sort()).toEqual([
        ['a2', 'unknown'],
        ['b2', 'unknown'],
      ]);
      // The operation that was already waiting now says for what.
      const waitingB = await client.operations.get(stopB.id);
      expect(['pending', 'running']).toContain(waitingB.status);
      expect(waitingB.message).toBe(`waiting for host node-u, unreachable since ${a2.status.host_unreachable_since}`);

      // The agent dies for good; a stop asked now says at once what it waits for.
      await kill(agent);
      const out = new Buf();
      const err = new Buf();
      const stopping = floe(out, err, 'vm', 'stop', 'a2', '--wait');
      await eventually(
        async () => out.text.includes('waiting for host node-u, unreachable since'),
        'CLI progress',
        10_000,
      );
      expect(out.text).toMatch(/instance\.stop pending 0% waiting for host node-u, unreachable since \S+Z/);

      const ls = new Buf();
      expect(await floe(ls, new Buf(), 'vm', 'ls')).toBe(0);
      expect(ls.text).toMatch(/a2\s+unknown \(host unreachable for \d+s\)\s+node-u/);
      const show = new Buf();
      expect(await floe(show, new Buf(), 'vm', 'show', 'a2')).toBe(0);
      expect(show.text).toMatch(/status\.state:\s+unknown/);
      expect(show.text).toContain(`status.host_unreachable_since:`);
      expect(show.text).toMatch(/status\.last_known_state:\s+running/);

      // The agent comes back: the waiting stops are carried out and the real state returns.
      agent = startAgent(cp.url, agentDir);
      expect(await stopping, err.text).toBe(0);
      expect(out.text).toContain('succeeded');
      expect((await client.operations.wait(stopB.id, { timeoutMs: 15_000 })).status).toBe('succeeded');
      const after = await client.instances.listAll();
      const byName = new Map<string, Instance>(after.map((i) => [i.name, i]));
      for (const name of ['a2', 'b2']) {
        const s = byName.get(name)!.status;
        expect(s.state).toBe('stopped');
        expect(s.host_unreachable_since).toBeUndefined();
        expect(s.last_known_state).toBeUndefined();
      }
      // The event stream told of both changes.
      stream.stop();
      const states = stream.events
        .filter((e: Event) => e.type === 'instance.state' && e.resource_id === a2.id)
        .map((e) => e.data.state);
      expect(states).toContain('unknown');
      expect(states[states.length - 1]).toBe('stopped');
    }, 60_000);

    it('a host that comes back with nothing to change gives the instances their state back', async () => {
      const operation = await client.instances.start('a2');
      expect((await client.operations.wait(operation.id, { timeoutMs: 15_000 })).status).toBe('succeeded');
      await kill(agent);
      await eventually(async () => (await client.instances.get('a2')).status.state === 'unknown', 'a2 unknown');
      agent = startAgent(cp.url, agentDir);
      await eventually(async () => (await client.hosts.get(hostId)).status.state === 'online', 'host online');
      await eventually(async () => {
        const all = await client.instances.listAll();
        return all.every((i) => i.status.host_unreachable_since === undefined) ? all : undefined;
      }, 'no instance unreachable');
      const all = await client.instances.listAll();
      expect(all.map((i) => [i.name, i.status.state]).sort()).toEqual([
        ['a2', 'running'],
        ['b2', 'stopped'],
      ]);
    }, 60_000);
  });
}
