import { randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { freePort, seededRandom } from '@floe/testkit';
import { openStore, type Store } from '../../packages/server/src/db/index.js';
import { storeTargets } from '../../packages/server/src/db/testing.js';
import { checkStore, unfinishedOperations, type Acknowledged, type Finding } from './crash-checks.js';
import { FloedProcess } from './floed.js';
import { eventually, kill, startAgent } from './helpers.js';
import { httpCaller, type Answer } from './http.js';

/**
 * Crash consistency: a real floed (fake VM driver on a real agent) is killed -9 at random moments
 * (fixed seed, printed; FLOE_CRASH_SEED repeats a run) during bursts of instance creates, deletes and
 * NIC changes on a private network, on SQLite and on PostgreSQL. After every restart each retry of an
 * unanswered request (same Idempotency-Key) must get a final answer, and the store must hold every
 * acknowledged write and nothing half made; at the end every operation must finish.
 */
const SEED = Number(process.env.FLOE_CRASH_SEED ?? Math.floor(Math.random() * 2 ** 31));
const ROUNDS = Number(process.env.FLOE_CRASH_ROUNDS ?? 4);
const WORKERS = 4;

/** A write whose answer was lost (connection cut, 5xx, or "in progress"): retried after the restart. */
interface Unanswered {
  method: 'POST' | 'DELETE';
  path: string;
  body?: unknown;
  key?: string;
  apply: (a: Answer) => void;
}

const finalAnswer = (a: Answer) =>
  a.status !== 0 && a.status < 500 && !(a.status === 409 && a.body?.error?.code === 'idempotency_key_in_progress');

for (const target of storeTargets()) {
  describe.skipIf(target.skip)(`crash consistency on ${target.name}`, () => {
    const cleanup: Array<() => Promise<unknown>> = [];
    afterAll(async () => {
      for (const f of cleanup.reverse()) await f().catch(() => undefined);
    });

    it(`keeps every acknowledged write through kill -9 of the control plane (seed ${SEED})`, async () => {
      const began = Date.now();
      const say = (line: string) => console.log(`[crash ${target.name} seed=${SEED}] ${line}`);
      const rand = seededRandom(SEED + (target.name === 'postgres' ? 1 : 0));
      const pick = <T>(xs: readonly T[]): T | undefined => xs[Math.floor(rand() * xs.length)];

      const dataDir = await mkdtemp(path.join(os.tmpdir(), 'floe-crash-'));
      cleanup.push(() => rm(dataDir, { recursive: true, force: true }));
      let store: Store;
      let databaseUrl: string | undefined;
      if (target.name === 'postgres') {
        const scratch = await target.open();
        cleanup.push(() => scratch.close());
        store = scratch;
        databaseUrl = scratch.options.url!;
      } else {
        store = undefined as unknown as Store; // opened after floed init made the file
      }
      const floed = new FloedProcess({
        dataDir,
        port: await freePort(),
        ...(databaseUrl ? { databaseUrl } : {}),
        // Room for every instance the bursts make on the one host.
        env: {
          FLOE_HEARTBEAT_MS: '500',
          FLOE_IDEMPOTENCY_LEASE_S: '2',
          FLOE_CPU_OVERCOMMIT: '64',
          FLOE_MEMORY_OVERCOMMIT: '16',
        },
      });
      cleanup.push(() => floed.crash());
      floed.init();
      if (target.name === 'sqlite') {
        store = await openStore({ sqlitePath: path.join(dataDir, 'floe.db') });
        cleanup.push(() => store.close());
      }
      await floed.start();
      const agent = startAgent(floed.url, floed.agentDir);
      cleanup.push(() => kill(agent));
      const http = httpCaller(floed.url, floed.ca, floed.adminToken);
      cleanup.push(() => http.close());
      expect((await http.call('POST', '/v1/images', { name: 'img' })).status).toBe(201);
      const net = await http.call('POST', '/v1/networks', { name: 'net', kind: 'private', ipv4: '10.77.0.0/22' });
      expect(net.status, JSON.stringify(net.body)).toBe(201);

      const ack: Acknowledged = {
        created: new Map(),
        deleted: new Set(),
        nicsAdded: new Map(),
        nicsRemoved: new Set(),
        nicRemovalTried: new Set(),
      };
      const live = () => [...ack.created.keys()].filter((id) => !ack.deleted.has(id));
      const nicsOf = (id: string) =>
        [...ack.nicsAdded].filter(([nic, inst]) => inst === id && !ack.nicsRemoved.has(nic)).map(([nic]) => nic);
      let seq = 0;
      let sent = 0;
      let acknowledged = 0;
      let retried = 0;
      let checkedTotal = 0;
      const allFindings: Finding[] = [];

      /** Send one write; a lost answer is kept for the retry after the restart. */
      const answers = new Map<string, number>();
      const tally = (a: Answer) => {
        const what = a.status === 0 ? 'cut' : `${a.status}${a.body?.error?.code ? ` ${a.body.error.code}` : ''}`;
        answers.set(what, (answers.get(what) ?? 0) + 1);
      };
      const write = async (u: Unanswered, unanswered: Unanswered[]) => {
        sent++;
        const a = await http.call(u.method, u.path, u.body, u.key);
        tally(a);
        if (finalAnswer(a)) u.apply(a);
        else unanswered.push(u);
      };
      const ok = (a: Answer) => a.status >= 200 && a.status < 300 && ++acknowledged > 0;

      const nextWrite = (): Unanswered | null => {
        const r = rand();
        const instances = live();
        if (r < 0.4 || instances.length === 0) {
          const name = `vm-${++seq}`;
          return {
            method: 'POST',
            path: '/v1/instances',
            body: { name, image: 'img', machine_type: 'nano', networks: ['net'] },
            key: randomUUID(),
            apply: (a) => {
              if (ok(a)) ack.created.set(a.body.instance.id as string, name);
              // Only a retry can meet its own name: the first attempt made the instance, the answer was lost.
              else if (a.body?.error?.code === 'name_conflict')
                allFindings.push(
                  `the retry of the create of ${name} (same Idempotency-Key) was refused: name_conflict`,
                );
            },
          };
        }
        const id = pick(instances)!;
        if (r < 0.6)
          return {
            method: 'DELETE',
            path: `/v1/instances/${id}`,
            apply: (a) => {
              if (ok(a) || a.body?.error?.code === 'instance_not_found') ack.deleted.add(id);
            },
          };
        if (r < 0.85)
          return {
            method: 'POST',
            path: `/v1/instances/${id}/nics`,
            body: { network: 'net' },
            key: randomUUID(),
            apply: (a) => {
              if (ok(a)) ack.nicsAdded.set(a.body.nic.id as string, id);
            },
          };
        const nic = pick(nicsOf(id));
        if (nic === undefined) return null;
        ack.nicRemovalTried.add(id);
        return {
          method: 'DELETE',
          path: `/v1/instances/${id}/nics/${nic}`,
          apply: (a) => {
            if (ok(a) || a.body?.error?.code === 'nic_not_found') ack.nicsRemoved.add(nic);
          },
        };
      };

      // Online through a connection to the running control plane (the row can still say online from before the kill).
      let startedAt = new Date(0).toISOString();
      const hostOnline = () =>
        eventually(
          async () => {
            const host = (await http.call('GET', `/v1/hosts/${floed.hostId}`)).body;
            return host?.status?.state === 'online' && host.status.connected_at >= startedAt;
          },
          'local host online',
          60_000,
        );
      for (let round = 1; round <= ROUNDS; round++) {
        // Creates need the host: wait until the agent is back on the restarted control plane.
        await hostOnline();
        const unanswered: Unanswered[] = [];
        const killAfter = 300 + Math.floor(rand() * 2000);
        let stop = false;
        const burstSent = sent;
        const workers = Array.from({ length: WORKERS }, async () => {
          while (!stop) {
            const w = nextWrite();
            if (w) await write(w, unanswered);
          }
        });
        await new Promise((r) => setTimeout(r, killAfter));
        await floed.crash();
        stop = true;
        await Promise.all(workers);
        const inFlight = unanswered.length;
        startedAt = new Date().toISOString();
        await floed.start();
        // Every unanswered write again, with its Idempotency-Key, until it gets a final answer.
        for (const u of unanswered) {
          const a = await eventually(
            async () => {
              const r = await http.call(u.method, u.path, u.body, u.key);
              return finalAnswer(r) ? r : undefined;
            },
            `a final answer to ${u.method} ${u.path}`,
            30_000,
          );
          expect(a.status, `${u.method} ${u.path}: ${JSON.stringify(a.body)}`).toBeLessThan(500);
          tally(a);
          retried++;
          u.apply(a);
        }
        const { checked, findings } = await checkStore(store, ack);
        checkedTotal += checked;
        allFindings.push(...findings.map((f) => `round ${round}: ${f}`));
        say(
          `round ${round}: killed after ${killAfter} ms, ${sent - burstSent} writes sent, ${inFlight} unanswered and retried, ` +
            `${checked} checks, ${findings.length} findings; ${live().length} instances live`,
        );
      }

      // Every operation finishes once the agent is back on the last control plane.
      let open: Awaited<ReturnType<typeof unfinishedOperations>> = [];
      try {
        await eventually(async () => (open = await unfinishedOperations(store)).length === 0, 'operations', 90_000);
      } catch {
        allFindings.push(`operations never finished: ${JSON.stringify(open.slice(0, 5))} (${open.length})`);
      }
      const final = await checkStore(store, ack);
      checkedTotal += final.checked;
      allFindings.push(...final.findings.map((f) => `final: ${f}`));
      const gone = await store.db
        .selectFrom('instances')
        .select('id')
        .where('id', 'in', [...ack.deleted, 'none'])
        .execute();
      checkedTotal += ack.deleted.size;
      if (gone.length > 0) allFindings.push(`final: ${gone.length} acknowledged deletes are still there`);
      say(
        `${ROUNDS} rounds, ${ROUNDS} kills, ${sent} writes sent, ${acknowledged} acknowledged, ${retried} retried, ` +
          `${checkedTotal} checks, ${allFindings.length} findings, ${Math.round((Date.now() - began) / 1000)} s`,
      );
      say(`answers: ${[...answers].map(([k, n]) => `${k} ×${n}`).join(', ')}`);
      expect(allFindings).toEqual([]);
    }, 300_000);
  });
}
