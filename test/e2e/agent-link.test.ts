import { request } from 'node:https';
import { readFile, rm } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import type { Operation } from '@floe/api';
import { createCa, issueClientCert } from '../../packages/server/src/ca/index.js';
import { storeTargets } from '../../packages/server/src/db/testing.js';
import { startTestControlPlane, type TestControlPlane } from '../../packages/server/src/testing.js';
import { clientFor, collectEvents, eventually, kill, prepareAgent, startAgent } from './helpers.js';

/**
 * The control plane and a real floe-agent process (fake VM driver) over mutual
 * TLS on loopback: scheduling, operations, events, offline detection and
 * reconciliation after restarts.
 */
for (const target of storeTargets()) {
  describe.skipIf(target.skip)(`agent link on ${target.name}`, () => {
    let cp: TestControlPlane;
    let agentDir: string;
    let hostId: string;
    let agent: ReturnType<typeof startAgent>;

    beforeAll(async () => {
      cp = await startTestControlPlane(await target.open(), {
        FLOE_HEARTBEAT_MS: '300',
        FLOE_HOST_OFFLINE_AFTER_MS: '1500',
      });
      ({ hostId, dataDir: agentDir } = await prepareAgent(cp, 'node-a'));
      agent = startAgent(cp.url, agentDir);
      const client = clientFor(cp);
      await eventually(async () => (await client.hosts.get(hostId)).status.state === 'online', 'host online');
      await client.images.create({ name: 'img' });
    }, 60_000);

    afterAll(async () => {
      if (agent) await kill(agent);
      await cp?.close();
      if (agentDir) await rm(agentDir, { recursive: true, force: true });
    });

    it('reports host facts in the hello', async () => {
      const host = await clientFor(cp).hosts.get(hostId);
      expect(host.status.facts?.vm_driver).toBe('fake');
      expect(host.status.facts?.cpus).toBeGreaterThan(0);
      expect(host.status.capacity.vcpus).toBeGreaterThan(0);
      expect(host.status.last_heartbeat_at).not.toBeNull();
    });

    it('create → scheduled → running → operation succeeded, every step on the event stream', async () => {
      const client = clientFor(cp);
      const stream = collectEvents(client, { kind: ['instance', 'operation'] });
      await new Promise((r) => setTimeout(r, 300)); // let the stream connect
      const { instance, operation } = await client.instances.create({
        name: 'vm-1',
        image: 'img',
        machine_type: 'nano',
      });
      expect(operation.status).toBe('pending');
      expect(instance.status.state).toBe('scheduled');
      expect(instance.status.host).toBe(hostId);
      const done = await client.operations.wait(operation.id, { timeoutMs: 15_000 });
      expect(done.status).toBe('succeeded');
      expect(done.progress).toBe(100);
      const vm = await client.instances.get('vm-1');
      expect(vm.status.state).toBe('running');
      expect(vm.status.accelerator).toBe('fake');
      await eventually(
        async () =>
          stream.events.some(
            (e) => e.type === 'operation.updated' && (e.data.operation as Operation).status === 'succeeded',
          ),
        'succeeded event',
      );
      stream.stop();
      const mine = stream.events.filter((e) => e.resource_id === instance.id || e.resource_id === operation.id);
      const states = mine.filter((e) => e.type === 'instance.state').map((e) => e.data.state);
      const opStatuses = mine
        .filter((e) => e.type.startsWith('operation.'))
        .map((e) => (e.data.operation as Operation).status);
      expect(mine[0]!.type).toBe('resource.created');
      expect(states).toContain('running');
      expect(opStatuses[0]).toBe('pending');
      expect(opStatuses).toContain('running');
      expect(opStatuses[opStatuses.length - 1]).toBe('succeeded');
      const seqs = stream.events.map((e) => e.seq);
      expect([...seqs].sort((a, b) => a - b)).toEqual(seqs);
    });

    it('stop and start go through the agent', async () => {
      const client = clientFor(cp);
      const stop = await client.instances.stop('vm-1', { wait: 10 });
      expect(stop.status).toBe('succeeded');
      expect((await client.instances.get('vm-1')).status.state).toBe('stopped');
      const start = await client.instances.start('vm-1', { wait: 10 });
      expect(start.status).toBe('succeeded');
      expect((await client.instances.get('vm-1')).status.state).toBe('running');
    });

    it('refuses a client certificate from another CA', async () => {
      const other = await createCa({ commonName: 'someone else' });
      const cert = await issueClientCert(other, { commonName: hostId });
      const outcome = await new Promise<string>((resolve) => {
        const ws = new WebSocket(`${cp.url.replace('https', 'wss')}/v1/agent`, {
          ca: cp.ca.certPem,
          cert: cert.certPem,
          key: cert.keyPem,
        });
        ws.on('open', () => {
          ws.close();
          resolve('open');
        });
        ws.on('unexpected-response', (_req, res) => resolve(`http ${res.statusCode}`));
        ws.on('error', (err) => resolve(`error ${err.message}`));
      });
      expect(outcome).toBe('http 401');
      // Without any client certificate, too.
      const status = await new Promise<number>((resolve, reject) => {
        const req = request(
          `${cp.url}/v1/agent`,
          {
            ca: cp.ca.certPem,
            headers: {
              connection: 'Upgrade',
              upgrade: 'websocket',
              'sec-websocket-version': '13',
              'sec-websocket-key': 'dGhlIHNhbXBsZSBub25jZQ==',
            },
          },
          (res) => resolve(res.statusCode ?? 0),
        );
        req.on('error', reject);
        req.end();
      });
      expect(status).toBe(401);
    });

    it("refuses a certificate of floe's CA that is not the host's current one", async () => {
      const stale = await issueClientCert(cp.ca, { commonName: hostId });
      const code = await new Promise<number>((resolve) => {
        const ws = new WebSocket(`${cp.url.replace('https', 'wss')}/v1/agent`, {
          ca: cp.ca.certPem,
          cert: stale.certPem,
          key: stale.keyPem,
        });
        ws.on('close', (c) => resolve(c));
        ws.on('error', () => resolve(-1));
      });
      expect(code).toBe(4003);
      // The real agent is not disturbed.
      expect((await clientFor(cp).hosts.get(hostId)).status.state).toBe('online');
    });

    it('an idempotent POST repeated returns the same resource', async () => {
      const client = clientFor(cp);
      const key = 'create-vm-2';
      const a = await client.instances.create(
        { name: 'vm-2', image: 'img', machine_type: 'nano' },
        { idempotencyKey: key },
      );
      const b = await client.instances.create(
        { name: 'vm-2', image: 'img', machine_type: 'nano' },
        { idempotencyKey: key },
      );
      expect(b.instance.id).toBe(a.instance.id);
      expect(b.operation.id).toBe(a.operation.id);
      const all = await client.instances.listAll();
      expect(all.filter((i) => i.name === 'vm-2')).toHaveLength(1);
      await client.operations.wait(a.operation.id, { timeoutMs: 15_000 });
    });

    it('killing the agent marks the host offline; restarting it reconciles without duplicating', async () => {
      const client = clientFor(cp);
      const fakeState = async () =>
        JSON.parse(await readFile(path.join(agentDir, 'fake', 'fake-vms.json'), 'utf8')) as unknown;
      const before = await fakeState();
      const eventsBefore = (
        await client.request<{ items: Array<{ type: string; resource_id: string }> }>('GET', '/v1/events', {
          query: { since: 0 },
        })
      ).items.length;
      await kill(agent, 'SIGKILL');
      await eventually(
        async () => (await client.hosts.get(hostId)).status.state === 'offline',
        'host offline after kill',
      );
      // While the host is offline a stop stays pending and can be cancelled.
      const stop = await client.instances.stop('vm-2');
      expect(stop.status).toBe('pending');
      const cancelled = await client.operations.cancel(stop.id);
      expect(cancelled.status).toBe('cancelled');
      expect((await client.instances.get('vm-2')).spec.power_state).toBe('running');

      agent = startAgent(cp.url, agentDir);
      await eventually(
        async () => (await client.hosts.get(hostId)).status.state === 'online',
        'host online after restart',
      );
      // The snapshot matched what runs: nothing is created or started again.
      await new Promise((r) => setTimeout(r, 1000));
      expect(await fakeState()).toEqual(before);
      const vms = await client.instances.listAll();
      expect(vms.map((v) => [v.name, v.status.state]).sort()).toEqual([
        ['vm-1', 'running'],
        ['vm-2', 'running'],
      ]);
      const hosts = await client.hosts.listAll();
      expect(hosts).toHaveLength(1);
      void eventsBefore;
    });

    it('missed heartbeats mark the host offline; it comes back by itself', async () => {
      const client = clientFor(cp);
      agent.kill('SIGSTOP');
      try {
        await eventually(
          async () => (await client.hosts.get(hostId)).status.state === 'offline',
          'host offline after missed heartbeats',
          10_000,
        );
      } finally {
        agent.kill('SIGCONT');
      }
      await eventually(
        async () => (await client.hosts.get(hostId)).status.state === 'online',
        'host online after SIGCONT',
        20_000,
      );
    });

    it('delete removes the VM on the host and then the record', async () => {
      const client = clientFor(cp);
      const op = await client.instances.delete('vm-2', { wait: 10 });
      expect(op.status).toBe('succeeded');
      await expect(client.instances.get('vm-2')).rejects.toMatchObject({ code: 'instance_not_found' });
      const state = JSON.parse(await readFile(path.join(agentDir, 'fake', 'fake-vms.json'), 'utf8')) as unknown;
      expect(JSON.stringify(state)).not.toContain(op.resources[0]!.id);
    });
  });
}
