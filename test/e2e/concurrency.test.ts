import https from 'node:https';
import { rm } from 'node:fs/promises';
import { ERROR_CODES, type ErrorCode, type HistoryEntry, type Instance, type Nic, type Operation } from '@floe/api';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { storeTargets } from '../../packages/server/src/db/testing.js';
import { startTestControlPlane, type TestControlPlane } from '../../packages/server/src/testing.js';
import { eventually, kill, prepareAgent, startAgent } from './helpers.js';

/**
 * Many clients changing one instance at once, over real HTTPS, with a real floe-agent process
 * (fake VM driver): deletes, stops and starts, PATCHes with and without If-Match, NIC attaches and
 * detaches. Whatever the race, every operation ends (succeeded, failed or cancelled with a reason),
 * exactly one request wins where only one can, nothing answers 5xx, and the instance ends as its
 * spec, its history and its operations say.
 */

/** How many requests race in one round. */
const SIZES = [2, 10, 50];
/** How long every operation of a round has to end. */
const SETTLE_MS = 20_000;

interface Res {
  status: number;
  body: any;
}

const OPS_OF = (responses: Res[]) =>
  responses.filter((r) => r.status === 200 || r.status === 202).map((r) => r.body as Operation);

for (const target of storeTargets()) {
  describe.skipIf(target.skip)(`concurrent changes of one instance on ${target.name}`, () => {
    let cp: TestControlPlane;
    let agentDir: string;
    let agent: ReturnType<typeof startAgent>;
    const agentOpts = new https.Agent({ keepAlive: true, maxSockets: 64 });
    const timings: string[] = [];

    /** One request over HTTPS; the answer's body decoded. */
    function call(method: string, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<Res> {
      const payload = body === undefined ? undefined : JSON.stringify(body);
      const h: Record<string, string> = { authorization: `Bearer ${cp.adminToken}`, ...headers };
      if (payload !== undefined)
        h['content-type'] = method === 'PATCH' ? 'application/merge-patch+json' : 'application/json';
      return new Promise((resolve, reject) => {
        const req = https.request(
          new URL(path, cp.url),
          { method, headers: h, ca: cp.ca.certPem, agent: agentOpts },
          (res) => {
            const chunks: Buffer[] = [];
            res.on('data', (c: Buffer) => chunks.push(c));
            res.on('end', () => {
              const text = Buffer.concat(chunks).toString('utf8');
              resolve({ status: res.statusCode ?? 0, body: text === '' ? null : JSON.parse(text) });
            });
            res.on('error', reject);
          },
        );
        req.on('error', reject);
        req.end(payload);
      });
    }

    /** Fire `n` requests at once; how long all took is noted under `what`. */
    async function race(what: string, n: number, one: (i: number) => Promise<Res>): Promise<Res[]> {
      const started = Date.now();
      const responses = await Promise.all(Array.from({ length: n }, (_, i) => one(i)));
      timings.push(`${target.name} ${what}: ${n} requests answered in ${Date.now() - started} ms`);
      return responses;
    }

    /** No answer is a 5xx; every error is the table's status for its code. */
    function expectSane(responses: Res[]): void {
      for (const r of responses) {
        expect(r.status, JSON.stringify(r.body)).toBeLessThan(500);
        if (r.status >= 400) {
          const code = r.body?.error?.code as ErrorCode;
          expect(ERROR_CODES[code]?.status, JSON.stringify(r.body)).toBe(r.status);
        }
      }
    }

    /** Every operation ends within SETTLE_MS; their final records, in the order given. */
    async function settled(ops: Operation[], what: string): Promise<Operation[]> {
      const started = Date.now();
      const ids = [...new Set(ops.map((o) => o.id))];
      const final = new Map<string, Operation>();
      while (final.size < ids.length && Date.now() - started < SETTLE_MS) {
        for (const id of ids) {
          if (final.has(id)) continue;
          const res = await call('GET', `/v1/operations/${id}`);
          expect(res.status).toBe(200);
          const op = res.body as Operation;
          if (op.status === 'succeeded' || op.status === 'failed' || op.status === 'cancelled') final.set(id, op);
        }
        if (final.size < ids.length) await new Promise((r) => setTimeout(r, 50));
      }
      const stuck = ids.filter((id) => !final.has(id));
      expect(stuck, `${what}: operations not ended after ${SETTLE_MS} ms`).toEqual([]);
      timings.push(`${target.name} ${what}: ${ids.length} operation(s) ended in ${Date.now() - started} ms`);
      for (const op of final.values()) {
        if (op.status === 'cancelled')
          expect(op.message, JSON.stringify(op)).toMatch(/superseded by|cancelled by|the instance was deleted/);
        if (op.status === 'failed') expect(op.error, JSON.stringify(op)).not.toBeNull();
      }
      return ops.map((o) => final.get(o.id)!);
    }

    async function instance(name: string): Promise<Instance> {
      const res = await call('GET', `/v1/instances/${name}`);
      expect(res.status, JSON.stringify(res.body)).toBe(200);
      return res.body as Instance;
    }

    async function history(name: string): Promise<HistoryEntry[]> {
      const res = await call('GET', `/v1/instances/${name}/history?limit=1000`);
      expect(res.status).toBe(200);
      return res.body.items as HistoryEntry[];
    }

    /** Every event of `type` about one resource, oldest first. */
    async function events(resource: string, type: string): Promise<Array<{ seq: number; data: any }>> {
      const all: Array<{ seq: number; data: any }> = [];
      let since = 0;
      for (;;) {
        const res = await call('GET', `/v1/events?resource=${resource}&type=${type}&since=${since}`);
        expect(res.status).toBe(200);
        all.push(...res.body.items);
        if (res.body.next_cursor === null) return all;
        since = Number(res.body.next_cursor);
      }
    }

    /** The history's revisions are distinct and increasing, and the last is the instance's. */
    async function expectHistoryConsistent(name: string): Promise<void> {
      const vm = await instance(name);
      const revisions = (await history(name)).map((h) => h.revision);
      expect(new Set(revisions).size, `revisions ${revisions.join(',')}`).toBe(revisions.length);
      expect([...revisions].sort((a, b) => a - b)).toEqual(revisions);
      expect(revisions[revisions.length - 1]).toBe(vm.revision);
    }

    /** A running instance, its create operation ended. */
    async function running(name: string): Promise<Instance> {
      const res = await call('POST', '/v1/instances', {
        name,
        image: 'img',
        machine_type: 'nano',
        networks: ['net'],
      });
      expect(res.status, JSON.stringify(res.body)).toBeLessThan(300);
      const [op] = await settled([res.body.operation as Operation], `create ${name}`);
      expect(op!.status).toBe('succeeded');
      return instance(name);
    }

    beforeAll(async () => {
      cp = await startTestControlPlane(await target.open(), {
        FLOE_HEARTBEAT_MS: '300',
        // Fifty requests at once on a small machine can delay a heartbeat; the host must stay online.
        FLOE_HOST_OFFLINE_AFTER_MS: '60000',
      });
      let hostId: string;
      ({ hostId, dataDir: agentDir } = await prepareAgent(cp, 'node-race'));
      agent = startAgent(cp.url, agentDir);
      await eventually(async () => (await call('GET', `/v1/hosts/${hostId}`)).body?.status?.state === 'online', 'host');
      expect((await call('POST', '/v1/images', { name: 'img' })).status).toBeLessThan(300);
      expect((await call('POST', '/v1/networks', { name: 'net', ipv4: '10.77.0.0/24' })).status).toBeLessThan(300);
    }, 60_000);

    // Each round's instance goes, so the host has room for the next.
    afterEach(async () => {
      const left = (await call('GET', '/v1/instances?limit=1000')).body.items as Instance[];
      const gone = await Promise.all(left.map((i) => call('DELETE', `/v1/instances/${i.id}?wait=15`)));
      for (const r of gone) expect(r.status, JSON.stringify(r.body)).toBe(200);
    });

    afterAll(async () => {
      agentOpts.destroy();
      if (agent) await kill(agent);
      await cp?.close();
      if (agentDir) await rm(agentDir, { recursive: true, force: true });
      console.log(timings.join('\n'));
    });

    for (const n of SIZES) {
      it(`${n} concurrent deletes share one outcome: the instance is gone and every delete succeeded`, async () => {
        const vm = await running(`del-${n}`);
        // As `floe vm rm --wait` does: each caller waits for its operation.
        const responses = await race(`${n} deletes`, n, () => call('DELETE', `/v1/instances/del-${n}?wait=15`));
        expectSane(responses);
        // A delete that comes once the instance is gone finds nothing; every other one ends with the instance.
        for (const r of responses)
          if (r.status !== 200) expect(r.body?.error?.code, JSON.stringify(r.body)).toBe('instance_not_found');
        const ops = await settled(OPS_OF(responses), `${n} deletes`);
        expect(ops.length).toBeGreaterThanOrEqual(1);
        for (const op of ops) expect(op.status, JSON.stringify(op)).toBe('succeeded');
        expect(new Set(ops.map((o) => o.id)).size).toBe(1);
        expect((await call('GET', `/v1/instances/del-${n}`)).status).toBe(404);
        expect(await events(vm.id, 'resource.deleted')).toHaveLength(1);
        expect((await events(vm.id, 'instance.state')).at(-1)?.data.state).toBe('deleted');
        const again = await call('DELETE', `/v1/instances/del-${n}`);
        expect(again.body?.error?.code).toBe('instance_not_found');
      });

      it(`${n} concurrent stops, then starts, then both mixed: no operation stuck, the instance ends as asked`, async () => {
        const name = `pow-${n}`;
        await running(name);
        for (const action of ['stop', 'start'] as const) {
          const responses = await race(`${n} ${action}s`, n, () => call('POST', `/v1/instances/${name}/${action}`));
          expectSane(responses);
          for (const r of responses) expect(r.status, JSON.stringify(r.body)).toBe(202);
          const ops = await settled(OPS_OF(responses), `${n} ${action}s`);
          expect(ops.filter((o) => o.status === 'succeeded').length).toBeGreaterThanOrEqual(1);
          expect(ops.filter((o) => o.status === 'failed')).toEqual([]);
          const want = action === 'stop' ? 'stopped' : 'running';
          await eventually(async () => (await instance(name)).status.state === want, `${name} ${want}`);
          expect((await instance(name)).spec.power_state).toBe(want);
        }
        const mixed = await race(`${n} stops and starts`, n, (i) =>
          call('POST', `/v1/instances/${name}/${i % 2 === 0 ? 'stop' : 'start'}`),
        );
        expectSane(mixed);
        const ops = await settled(OPS_OF(mixed), `${n} stops and starts`);
        expect(ops.filter((o) => o.status === 'failed')).toEqual([]);
        const vm = await eventually(async () => {
          const v = await instance(name);
          return v.status.state === v.spec.power_state ? v : undefined;
        }, `${name} as its spec says`);
        await eventually(
          async () => (await events(vm.id, 'instance.state')).at(-1)?.data.state === vm.status.state,
          'the last state event',
        );
        // The last operation asked for what the spec now says, and it is the one that succeeded.
        const winners = ops.filter((o) => o.status === 'succeeded');
        expect(winners.length).toBe(1);
        expect(winners[0]!.kind).toBe(vm.spec.power_state === 'stopped' ? 'instance.stop' : 'instance.start');
        await expectHistoryConsistent(name);
      });

      it(`${n} concurrent stops and deletes: the deletes share one operation, every stop ends or is refused`, async () => {
        const name = `stopdel-${n}`;
        const vm = await running(name);
        const responses = await race(`${n} stops and deletes`, n, (i) =>
          i % 2 === 0 ? call('POST', `/v1/instances/${name}/stop`) : call('DELETE', `/v1/instances/${name}`),
        );
        expectSane(responses);
        for (const r of responses.filter((x) => x.status >= 400))
          expect(['invalid_state', 'instance_not_found'], JSON.stringify(r.body)).toContain(r.body?.error?.code);
        const ops = await settled(OPS_OF(responses), `${n} stops and deletes`);
        const deletes = ops.filter((o) => o.kind === 'instance.delete');
        expect(deletes.length).toBeGreaterThanOrEqual(1);
        expect(new Set(deletes.map((o) => o.id)).size).toBe(1);
        expect(deletes[0]!.status).toBe('succeeded');
        for (const o of ops.filter((x) => x.kind === 'instance.stop')) expect(o.status).not.toBe('failed');
        expect((await call('GET', `/v1/instances/${name}`)).status).toBe(404);
        // Events are published just after the transaction that deleted the row commits.
        await eventually(async () => (await events(vm.id, 'resource.deleted')).length > 0, 'the deletion event');
        expect(await events(vm.id, 'resource.deleted')).toHaveLength(1);
      });

      it(`${n} concurrent PATCHes: with If-Match exactly one wins, without it every one gets its own revision`, async () => {
        const name = `patch-${n}`;
        const before = await running(name);
        const guarded = await race(`${n} If-Match PATCHes`, n, (i) =>
          call('PATCH', `/v1/instances/${name}`, { labels: { who: `c${i}` } }, { 'if-match': `"${before.revision}"` }),
        );
        expectSane(guarded);
        const wins = guarded.filter((r) => r.status === 200);
        expect(wins.length, guarded.map((r) => r.status).join(',')).toBe(1);
        for (const r of guarded.filter((x) => x.status !== 200))
          expect(['revision_mismatch']).toContain(r.body?.error?.code);
        const after = await instance(name);
        expect(after.revision).toBe(before.revision + 1);
        expect(after.labels.who).toBe((wins[0]!.body as Instance).labels.who);

        const free = await race(`${n} PATCHes`, n, (i) =>
          call('PATCH', `/v1/instances/${name}`, { metadata: { [`k${i}`]: i } }),
        );
        expectSane(free);
        for (const r of free) expect(r.status, JSON.stringify(r.body)).toBe(200);
        const revisions = free.map((r) => (r.body as Instance).revision);
        expect(new Set(revisions).size).toBe(n);
        const last = await instance(name);
        expect(last.revision).toBe(after.revision + n);
        // No lost update: every writer's key is there.
        for (let i = 0; i < n; i++) expect(last.metadata[`k${i}`]).toBe(i);
        await expectHistoryConsistent(name);
      });

      it(`${n} concurrent NIC attaches and detaches: one address, one NIC, one removal`, async () => {
        const name = `nic-${n}`;
        await running(name);
        const address = `10.77.0.${200 + SIZES.indexOf(n)}`;
        const same = await race(`${n} NIC attaches of one address`, n, () =>
          call('POST', `/v1/instances/${name}/nics`, { network: 'net', ipv4: address }),
        );
        expectSane(same);
        const added = same.filter((r) => r.status === 202 || r.status === 200);
        expect(added.length, same.map((r) => r.status).join(',')).toBe(1);
        for (const r of same.filter((x) => x.status >= 400)) expect(r.body?.error?.code).toBe('address_in_use');
        // Any address: as many as there are free slots, no slot or address twice.
        const any = await race(`${n} NIC attaches`, n, () =>
          call('POST', `/v1/instances/${name}/nics`, { network: 'net' }),
        );
        expectSane(any);
        for (const r of any.filter((x) => x.status >= 400)) expect(r.body?.error?.code).toBe('too_many_nics');
        const ops = await settled(
          [...added, ...any].filter((r) => r.status < 300).map((r) => r.body.operation as Operation),
          `${n} NIC attaches`,
        );
        expect(ops.filter((o) => o.status === 'failed')).toEqual([]);
        const nics = (await call('GET', `/v1/instances/${name}/nics`)).body.items as Nic[];
        expect(nics.length).toBeLessThanOrEqual(8);
        expect(nics.filter((x) => x.ipv4 === address).length).toBe(1);
        expect(new Set(nics.map((x) => x.index)).size).toBe(nics.length);
        expect(new Set(nics.map((x) => x.ipv4)).size).toBe(nics.length);
        expect(new Set(nics.map((x) => x.mac)).size).toBe(nics.length);
        expect(nics.length).toBe(Math.min(8, 2 + any.filter((r) => r.status < 300).length));

        const victim = nics.find((x) => x.ipv4 === address)!;
        const gone = await race(`${n} NIC detaches`, n, () =>
          call('DELETE', `/v1/instances/${name}/nics/${victim.id}`),
        );
        expectSane(gone);
        const removed = gone.filter((r) => r.status < 300);
        expect(removed.length, gone.map((r) => r.status).join(',')).toBe(1);
        for (const r of gone.filter((x) => x.status >= 400)) expect(r.body?.error?.code).toBe('nic_not_found');
        const [op] = await settled([removed[0]!.body as Operation], `${n} NIC detaches`);
        expect(op!.status).not.toBe('failed');
        const left = (await call('GET', `/v1/instances/${name}/nics`)).body.items as Nic[];
        expect(left.map((x) => x.id)).not.toContain(victim.id);
        expect(left.length).toBe(nics.length - 1);
        await expectHistoryConsistent(name);
      });
    }
  });
}
