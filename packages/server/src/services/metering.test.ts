import { seededRandom } from '@floe/testkit';
import type { Instance, ObservedInstance } from '@floe/api';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openStore } from '../db/index.js';
import { storeTargets, type TestStore } from '../db/testing.js';
import { injectJson, onlineTestHost, startTestControlPlane, type TestControlPlane } from '../testing.js';

// A property test of metering: a fixed-seed random walk of creates, starts, stops, crashes (the agent
// reports the VM stopped, at a time of its own), resizes (refused unless stopped, and for a smaller
// disk), NIC attaches and detaches, deletes and control plane restarts on the same database. On
// PostgreSQL two control planes share the database and each step goes to either. After it, the ranges in the database equal those of a model kept
// here: per resource and dimension, the same quantities in the same order, the allocation of an
// instance one range from its creation to its deletion, running time exactly the agent's times,
// and no two ranges of one resource and dimension overlapping, nor a gap between them.

const SEED = 0x5eed13;
/** Steps of the walk: 2,000 on SQLite; PostgreSQL, some ten times slower per step, walks 1,000 of the same sequence. */
const STEPS_OF = (store: string) => Number(process.env.FLOE_METERING_STEPS ?? (store === 'postgres' ? 1000 : 2000));

/** A range as the model expects it: `started_at`/`ended_at` null where the test cannot know the time. */
interface ModelRange {
  quantity: number;
  started_at: string | null;
  ended: boolean;
  ended_at: string | null;
}

interface LiveInstance {
  instance: Instance;
  running: boolean;
  /** The spec says stopped (a stop was asked for, not a crash): only then may it be resized. */
  stopped: boolean;
  nics: string[];
}

function observed(instance: Instance, patch: Partial<ObservedInstance>): ObservedInstance {
  return {
    id: instance.id,
    state: 'running',
    observed_revision: instance.revision,
    observed_generation: 1,
    observed_restart_generation: 0,
    reason: null,
    accelerator: 'fake',
    started_at: null,
    stopped_at: null,
    ...patch,
  };
}

/** A time strictly later than `after` (ISO), so a report's time is never the instant a range opened. */
async function laterThan(after: string): Promise<string> {
  for (;;) {
    const now = new Date().toISOString();
    if (Date.parse(now) > Date.parse(after)) return now;
    await new Promise((r) => setTimeout(r, 1));
  }
}

for (const target of storeTargets()) {
  describe.skipIf(target.skip)(`metering on ${target.name}`, () => {
    let base: TestStore;
    /** The control plane of the current step: one of `cps`. */
    let cp: TestControlPlane;
    /** Control planes on the one database: two on PostgreSQL (as behind a load balancer), one on SQLite. */
    const cps: TestControlPlane[] = [];
    const PLANES = target.name === 'postgres' ? 2 : 1;
    let hostId: string;
    let adminToken: string;

    /** Start a control plane into `slot` (a new one, or the replacement of one that was closed). */
    async function start(slot: number): Promise<void> {
      const store = await openStore({ ...base.options, migrate: false });
      const other = cps.find((c) => c !== undefined);
      const shared = other === undefined ? undefined : { ca: other.ca, pki: other.pki };
      const next = await startTestControlPlane(
        store,
        { FLOE_HOST_OFFLINE_AFTER_MS: '3600000', FLOE_LOG_LEVEL: 'silent' },
        shared,
      );
      adminToken ||= next.adminToken;
      cps[slot] = { ...next, adminToken };
      cp = cps[slot];
      hostId = await onlineTestHost(cp.app, 'node-1');
    }

    beforeAll(async () => {
      base = await target.open();
      for (let slot = 0; slot < PLANES; slot++) await start(slot);
      cp = cps[0]!;
      expect((await injectJson(cp, 'POST', '/v1/images', { name: 'img' })).status).toBe(201);
      const pub = await injectJson(cp, 'POST', '/v1/networks', {
        name: 'pub',
        kind: 'public',
        ipv4: '198.51.100.0/24',
      });
      expect(pub.status, JSON.stringify(pub.body)).toBe(201);
      const priv = await injectJson(cp, 'POST', '/v1/networks', { name: 'priv', ipv4: '10.77.0.0/24' });
      expect(priv.status, JSON.stringify(priv.body)).toBe(201);
    });

    afterAll(async () => {
      for (const c of cps) await c?.close();
      await base?.close();
    });

    it(`random walks of ${STEPS_OF(target.name)} steps (seed ${SEED}) leave the ranges the model has`, async () => {
      const rand = seededRandom(SEED);
      const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)]!;
      const model = new Map<string, ModelRange[]>(); // `${resource_id}/${dimension}`
      const ranges = (id: string, dim: string) => {
        const key = `${id}/${dim}`;
        if (!model.has(key)) model.set(key, []);
        return model.get(key)!;
      };
      const openRange = (id: string, dim: string, quantity: number, at: string | null) =>
        ranges(id, dim).push({ quantity, started_at: at, ended: false, ended_at: null });
      const closeRange = (id: string, dim: string, at: string | null) => {
        const open = ranges(id, dim).find((r) => !r.ended);
        if (open) Object.assign(open, { ended: true, ended_at: at });
      };
      const live = new Map<string, LiveInstance>();
      const counts: Record<string, number> = {};
      let serial = 0;

      const served = new Array<number>(PLANES).fill(0);
      for (let step = 0; step < STEPS_OF(target.name); step++) {
        const slot = PLANES === 1 ? 0 : Math.floor(rand() * PLANES);
        cp = cps[slot]!;
        served[slot]!++;
        const ids = [...live.keys()];
        const action =
          rand() < 0.01
            ? 'restart'
            : ids.length === 0 || (ids.length < 6 && rand() < 0.2)
              ? 'create'
              : pick([
                  'start',
                  'stop',
                  'crash',
                  'attach',
                  'detach',
                  'delete',
                  'start',
                  'stop',
                  'crash',
                  'attach',
                  'resize',
                  'resize',
                ]);
        counts[action] = (counts[action] ?? 0) + 1;
        const ctx = `step ${step} ${action}`;
        if (action === 'restart') {
          await cp.app.close();
          await cp.store.close();
          await start(slot);
          continue;
        }
        if (action === 'create') {
          const networks = pick([[], ['priv'], ['pub'], ['pub', 'priv']]);
          const res = await injectJson(cp, 'POST', '/v1/instances', {
            name: `vm-${serial++}`,
            image: 'img',
            vcpus: pick([1, 2, 4]),
            memory_mib: pick([128, 256, 512]),
            ...(rand() < 0.5 ? { disk_gib: pick([1, 2, 5]) } : {}),
            networks: networks.map((network) => ({ network })),
          });
          expect(res.status, `${ctx}: ${JSON.stringify(res.body)}`).toBe(202);
          const instance = res.body.instance as Instance;
          for (const [dim, q] of [
            ['allocated', 1],
            ['vcpus', instance.spec.vcpus],
            ['memory_mib', instance.spec.memory_mib],
            ['disk_gib', instance.spec.disk_gib],
          ] as const)
            openRange(instance.id, dim, q, instance.created_at);
          const nics = (await injectJson(cp, 'GET', `/v1/instances/${instance.id}/nics`)).body.items as Array<{
            id: string;
            network_name: string;
            created_at: string;
          }>;
          for (const n of nics) if (n.network_name === 'pub') openRange(n.id, 'public_ipv4', 1, n.created_at);
          live.set(instance.id, { instance, running: false, stopped: false, nics: nics.map((n) => n.id) });
          continue;
        }
        const vm = live.get(pick(ids))!;
        const id = vm.instance.id;
        if (action === 'start') {
          const res = await injectJson(cp, 'POST', `/v1/instances/${id}/start`);
          expect([202, 409], ctx).toContain(res.status);
          const at = await laterThan(vm.instance.created_at);
          await cp.app.services.instances.applyObserved(
            hostId,
            observed(vm.instance, { state: 'running', started_at: at }),
          );
          if (!vm.running) openRange(id, 'running', 1, at);
          vm.running = true;
          vm.stopped = false;
        } else if (action === 'stop' || action === 'crash') {
          if (action === 'stop') {
            expect([202, 409], ctx).toContain((await injectJson(cp, 'POST', `/v1/instances/${id}/stop`)).status);
            vm.stopped = true;
          }
          // A crash is seen by the host at its own time; a stop's report may carry none (then: when it arrives).
          const started = ranges(id, 'running').at(-1)?.started_at ?? vm.instance.created_at;
          const at = action === 'crash' ? await laterThan(started) : null;
          await cp.app.services.instances.applyObserved(
            hostId,
            observed(vm.instance, {
              state: action === 'crash' ? 'error' : 'stopped',
              stopped_at: at,
              reason: 'crashed',
            }),
          );
          if (vm.running) closeRange(id, 'running', at);
          vm.running = false;
        } else if (action === 'resize') {
          const spec = vm.instance.spec;
          const shrink = rand() < 0.1 && spec.disk_gib > 1;
          const want = {
            vcpus: pick([1, 2, 4]),
            memory_mib: pick([128, 256, 512]),
            disk_gib: shrink ? spec.disk_gib - 1 : spec.disk_gib + pick([0, 0, 1, 3]),
          };
          const res = await injectJson(cp, 'POST', `/v1/instances/${id}/resize`, want);
          if (!vm.stopped) {
            expect(res.status, `${ctx}: ${JSON.stringify(res.body)}`).toBe(409);
            expect(res.body.error.code, ctx).toBe('invalid_state');
            continue;
          }
          if (shrink) {
            expect(res.status, `${ctx}: ${JSON.stringify(res.body)}`).toBe(422);
            expect(res.body.error.code, ctx).toBe('disk_shrink_refused');
            continue;
          }
          expect(res.status, `${ctx}: ${JSON.stringify(res.body)}`).toBe(202);
          const after = (await injectJson(cp, 'GET', `/v1/instances/${id}`)).body as Instance;
          expect(
            { vcpus: after.spec.vcpus, memory_mib: after.spec.memory_mib, disk_gib: after.spec.disk_gib },
            ctx,
          ).toEqual(want);
          for (const dim of ['vcpus', 'memory_mib', 'disk_gib'] as const) {
            if (after.spec[dim] === spec[dim]) continue;
            closeRange(id, dim, after.updated_at);
            openRange(id, dim, after.spec[dim], after.updated_at);
          }
          vm.instance = after;
        } else if (action === 'attach') {
          const network = pick(['pub', 'priv']);
          const res = await injectJson(cp, 'POST', `/v1/instances/${id}/nics`, { network });
          if (vm.nics.length >= 8) {
            expect(res.status, ctx).toBe(409);
            continue;
          }
          expect(res.status, `${ctx}: ${JSON.stringify(res.body)}`).toBeLessThan(300);
          const nic = (res.body.nic ?? res.body) as { id: string; created_at?: string };
          vm.nics.push(nic.id);
          if (network === 'pub') openRange(nic.id, 'public_ipv4', 1, nic.created_at ?? null);
        } else if (action === 'detach') {
          if (vm.nics.length === 0) continue;
          const nic = pick(vm.nics);
          const res = await injectJson(cp, 'DELETE', `/v1/instances/${id}/nics/${nic}`);
          expect(res.status, `${ctx}: ${JSON.stringify(res.body)}`).toBeLessThan(300);
          vm.nics = vm.nics.filter((n) => n !== nic);
          closeRange(nic, 'public_ipv4', null);
        } else if (action === 'delete') {
          const res = await injectJson(cp, 'DELETE', `/v1/instances/${id}`);
          expect(res.status, `${ctx}: ${JSON.stringify(res.body)}`).toBe(202);
          await cp.app.services.instances.applyObserved(
            hostId,
            observed(vm.instance, { state: 'deleted', observed_generation: 99 }),
          );
          for (const dim of ['allocated', 'vcpus', 'memory_mib', 'disk_gib', 'running']) closeRange(id, dim, null);
          for (const nic of vm.nics) closeRange(nic, 'public_ipv4', null);
          live.delete(id);
        }
      }

      // Every control plane served steps; every kind of step happened, restarts included.
      for (const n of served) expect(n).toBeGreaterThan(STEPS_OF(target.name) / (3 * PLANES));
      for (const a of ['create', 'start', 'stop', 'crash', 'resize', 'attach', 'detach', 'delete', 'restart'])
        expect(counts[a] ?? 0, a).toBeGreaterThan(2);

      const rows = await cp.store.db
        .selectFrom('meter_ranges')
        .selectAll()
        .orderBy('resource_id')
        .orderBy('dimension')
        .orderBy('started_at')
        .execute();
      const actual = new Map<string, typeof rows>();
      for (const r of rows) {
        const key = `${r.resource_id}/${r.dimension}`;
        actual.set(key, [...(actual.get(key) ?? []), r]);
      }
      const expectedKeys = [...model.entries()].filter(([, rs]) => rs.length > 0).map(([k]) => k);
      expect([...actual.keys()].sort()).toEqual(expectedKeys.sort());
      for (const [key, want] of model) {
        if (want.length === 0) continue;
        const got = actual.get(key)!;
        expect(
          got.map((r) => ({ quantity: Number(r.quantity), ended: r.ended_at !== null })),
          key,
        ).toEqual(want.map((r) => ({ quantity: r.quantity, ended: r.ended })));
        for (const [i, r] of want.entries()) {
          if (r.started_at !== null) expect(got[i]!.started_at, `${key} #${i} start`).toBe(r.started_at);
          if (r.ended_at !== null) expect(got[i]!.ended_at, `${key} #${i} end`).toBe(r.ended_at);
        }
        // No overlap: each range ends after it starts and no later than the next starts.
        for (const [i, r] of got.entries()) {
          if (r.ended_at !== null) expect(Date.parse(r.ended_at), key).toBeGreaterThan(Date.parse(r.started_at));
          const next = got[i + 1];
          if (next) expect(Date.parse(r.ended_at!), key).toBeLessThanOrEqual(Date.parse(next.started_at));
        }
      }
      // No gap: what an instance holds starts and ends with its allocation, for every dimension, and a
      // resize closes one range where it opens the next.
      let resized = 0;
      for (const [key, allocated] of actual) {
        if (!key.endsWith('/allocated')) continue;
        const id = key.slice(0, -'/allocated'.length);
        expect(allocated, id).toHaveLength(1);
        const alloc = allocated[0]!;
        expect(alloc.ended_at === null, id).toBe(live.has(id));
        for (const dim of ['vcpus', 'memory_mib', 'disk_gib']) {
          const rs = actual.get(`${id}/${dim}`)!;
          resized += rs.length - 1;
          expect(rs[0]!.started_at, `${id}/${dim}`).toBe(alloc.started_at);
          expect(rs.at(-1)!.ended_at, `${id}/${dim}`).toBe(alloc.ended_at);
          for (let i = 1; i < rs.length; i++) expect(rs[i]!.started_at, `${id}/${dim} #${i}`).toBe(rs[i - 1]!.ended_at);
        }
        for (const r of actual.get(`${id}/running`) ?? []) {
          expect(Date.parse(r.started_at)).toBeGreaterThanOrEqual(Date.parse(alloc.started_at));
          if (alloc.ended_at !== null) expect(r.ended_at).not.toBeNull();
        }
      }
      expect(resized, 'ranges a resize opened').toBeGreaterThan(2);
      // Open ranges: one per live resource and dimension, never more (restarts opened no duplicates).
      const open = rows.filter((r) => r.ended_at === null);
      expect(new Set(open.map((r) => `${r.resource_id}/${r.dimension}`)).size).toBe(open.length);
    }, 600_000);
  });
}
