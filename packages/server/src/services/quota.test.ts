import type { ProjectUsage, QuotaUsageLine } from '@floe/api';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { storeTargets } from '../db/testing.js';
import { injectJson, onlineTestHost, startTestControlPlane, type TestControlPlane } from '../testing.js';

// Quotas on both dialects through the HTTP API: 1,000 creates racing for 100 vCPUs take exactly 100,
// in one project and across a parent and two children; a three-level tree rolls usage up and names the
// project whose limit blocks; resizes take their growth from the same limits.

const call = injectJson;

for (const target of storeTargets()) {
  describe.skipIf(target.skip)(`quotas on ${target.name}`, () => {
    let cp: TestControlPlane;

    const ok = async (method: 'POST' | 'PUT', url: string, body: unknown) => {
      const res = await call(cp, method, url, body);
      if (res.status >= 300) throw new Error(`${method} ${url}: ${res.status} ${JSON.stringify(res.body)}`);
      return res.body;
    };
    const line = async (project: string, d: string): Promise<QuotaUsageLine> => {
      const res = await call(cp, 'GET', `/v1/projects/${project}/usage`);
      expect(res.status).toBe(200);
      return (res.body as ProjectUsage).dimensions.find((l) => l.dimension === d)!;
    };
    /** `n` creates of 1 vCPU at once, spread over `projects`; the statuses and error codes answered. */
    const race = async (n: number, projects: readonly string[], prefix: string) => {
      const answers = await Promise.all(
        Array.from({ length: n }, (_, i) =>
          call(cp, 'POST', '/v1/instances', {
            name: `${prefix}-${i}`,
            project: projects[i % projects.length],
            image: 'img',
            vcpus: 1,
            memory_mib: 128,
          }),
        ),
      );
      const tally: Record<string, number> = {};
      for (const a of answers) {
        const key = a.status === 202 ? '202' : `${a.status} ${a.body?.error?.code ?? a.body?.code}`;
        tally[key] = (tally[key] ?? 0) + 1;
      }
      return { answers, tally };
    };

    beforeAll(async () => {
      cp = await startTestControlPlane(await target.open(), {
        FLOE_HOST_OFFLINE_AFTER_MS: '3600000',
        FLOE_LOG_LEVEL: 'silent',
      });
      await onlineTestHost(cp.app, 'q-node', { cpus: 100_000, memory_mib: 100_000_000 });
    });

    afterAll(async () => {
      await cp?.close();
    });

    it('1,000 concurrent creates against 100 vCPUs: exactly 100 succeed, 900 quota_exceeded, no 5xx', async () => {
      await ok('POST', '/v1/projects', { name: 'flat', limits: { vcpus: 100 } });
      await ok('POST', '/v1/images', { name: 'img', project: 'flat' });
      const { answers, tally } = await race(1000, ['flat'], 'vm');
      expect(tally).toEqual({ '202': 100, '409 quota_exceeded': 900 });
      const refused = answers.find((a) => a.status === 409)!.body.error;
      expect(refused.details).toMatchObject({
        dimension: 'vcpus',
        project: 'flat',
        limit: 100,
        used: 100,
        requested: 1,
      });
      expect(await line('flat', 'vcpus')).toMatchObject({ limit: 100, used: 100, used_subtree: 100, available: 0 });
      expect(await line('flat', 'instances')).toMatchObject({ limit: null, used: 100 });
    }, 60_000);

    it('a parent and two children racing for the parent limit: exactly 100 in the tree', async () => {
      await ok('POST', '/v1/projects', { name: 'race', limits: { vcpus: 100 } });
      await ok('POST', '/v1/projects', { name: 'race-a', parent: 'race' });
      await ok('POST', '/v1/projects', { name: 'race-b', parent: 'race' });
      for (const p of ['race', 'race-a', 'race-b']) await ok('POST', '/v1/images', { name: 'img', project: p });
      const { answers, tally } = await race(1000, ['race', 'race-a', 'race-b'], 'vm');
      expect(tally).toEqual({ '202': 100, '409 quota_exceeded': 900 });
      for (const a of answers.filter((x) => x.status === 409))
        expect(a.body.error.details).toMatchObject({ dimension: 'vcpus', project: 'race', limit: 100, used: 100 });
      const own = await Promise.all(['race', 'race-a', 'race-b'].map(async (p) => (await line(p, 'vcpus')).used));
      expect(own.reduce((a, b) => a + b, 0)).toBe(100);
      expect(await line('race', 'vcpus')).toMatchObject({ used_subtree: 100, available: 0 });
    }, 60_000);

    it('a three-level tree: limits carved from the parent, usage rolls up, refusals name the blocker', async () => {
      await ok('POST', '/v1/projects', { name: 'org', limits: { vcpus: 10, instances: 5 } });
      await ok('POST', '/v1/projects', { name: 'team', parent: 'org', limits: { vcpus: 6 } });
      await ok('POST', '/v1/projects', { name: 'dev', parent: 'team', limits: { vcpus: 4 } });
      for (const p of ['org', 'team', 'dev']) await ok('POST', '/v1/images', { name: 'img', project: p });
      const create = (project: string, name: string, vcpus: number) =>
        call(cp, 'POST', '/v1/instances', { name, project, image: 'img', vcpus, memory_mib: 128 });

      // The sum of children's limits may not pass the parent's.
      const greedy = await call(cp, 'POST', '/v1/projects', { name: 'greedy', parent: 'org', limits: { vcpus: 5 } });
      expect(greedy.status).toBe(409);
      expect(greedy.body.error).toMatchObject({
        code: 'quota_exceeded',
        details: { dimension: 'vcpus', project: 'org', limit: 10, used: 6, requested: 5 },
      });

      // Nothing used yet: what team gave dev is what blocks lowering team's limit.
      const stillDelegated = await call(cp, 'PUT', '/v1/projects/team/limits', { vcpus: 3 });
      expect(stillDelegated.status).toBe(409);
      expect(stillDelegated.body.error).toMatchObject({
        code: 'limit_below_allocation',
        details: { project: 'team', blocker: 'delegated', dimension: 'vcpus', limit: 3, amount: 4 },
      });

      expect((await create('dev', 'd1', 3)).status).toBe(202);
      // dev's own limit blocks first.
      const overDev = await create('dev', 'd2', 2);
      expect(overDev.status).toBe(409);
      expect(overDev.body.error.details).toMatchObject({ project: 'dev', dimension: 'vcpus', limit: 4, used: 3 });
      expect((await create('team', 't1', 3)).status).toBe(202);
      // dev fits its own limit (3 + 1 ≤ 4), but team holds 6 already.
      const overTeam = await create('dev', 'd3', 1);
      expect(overTeam.body.error.details).toMatchObject({ project: 'team', dimension: 'vcpus', limit: 6, used: 6 });
      expect((await create('org', 'o1', 4)).status).toBe(202);
      const overOrg = await create('org', 'o2', 1);
      expect(overOrg.body.error.details).toMatchObject({ project: 'org', dimension: 'vcpus', limit: 10, used: 10 });

      // Roll-up.
      expect(await line('org', 'vcpus')).toMatchObject({
        limit: 10,
        used: 4,
        used_subtree: 10,
        delegated: 6,
        available: 0,
      });
      expect(await line('team', 'vcpus')).toMatchObject({ limit: 6, used: 3, used_subtree: 6, delegated: 4 });
      expect(await line('dev', 'vcpus')).toMatchObject({ limit: 4, used: 3, used_subtree: 3, available: 0 });
      expect(await line('org', 'instances')).toMatchObject({ limit: 5, used_subtree: 3, available: 2 });
      const usage = (await call(cp, 'GET', '/v1/projects/org/usage')).body as ProjectUsage;
      expect(usage.subprojects.sort()).toEqual(['dev', 'team']);
      expect((await call(cp, 'GET', '/v1/projects/dev/usage')).body.parent).toBe('team');

      // Lowering limits: below what is used, below what is delegated.
      const belowUse = await call(cp, 'PUT', '/v1/projects/dev/limits', { vcpus: 2 });
      expect(belowUse.status).toBe(409);
      expect(belowUse.body.error).toMatchObject({
        code: 'limit_below_allocation',
        details: { project: 'dev', blocker: 'usage', dimension: 'vcpus', limit: 2, amount: 3 },
      });
      const belowDelegated = await call(cp, 'PUT', '/v1/projects/org/limits', { vcpus: 5 });
      expect(belowDelegated.body.error.details).toMatchObject({ project: 'org', blocker: 'usage' });
      // Raising a child past what its parent can give names the parent.
      const raise = await call(cp, 'PUT', '/v1/projects/dev/limits', { vcpus: 7 });
      expect(raise.body.error).toMatchObject({ code: 'quota_exceeded', details: { project: 'team', limit: 6 } });
      // Removing a limit is always allowed; a limit that fits is kept.
      expect((await call(cp, 'PUT', '/v1/projects/dev/limits', { vcpus: null, instances: 2 })).body).toEqual({
        project: 'dev',
        limits: { instances: 2 },
      });
      expect((await call(cp, 'GET', '/v1/projects/dev/limits')).body.limits).toEqual({ instances: 2 });
      // A parent with sub-projects is not deleted.
      expect((await call(cp, 'DELETE', '/v1/projects/team')).body.error.code).toBe('in_use');
    }, 60_000);

    it('a resize takes growth from every limit up the tree, gives back what shrinks, and races exactly', async () => {
      await ok('POST', '/v1/projects', { name: 'rs', limits: { vcpus: 16, memory_mib: 4096, disk_gib: 30 } });
      await ok('POST', '/v1/projects', { name: 'rs-kid', parent: 'rs', limits: { vcpus: 12 } });
      await ok('POST', '/v1/images', { name: 'img', project: 'rs-kid' });
      const vm = { image: 'img', project: 'rs-kid', vcpus: 1, memory_mib: 128, disk_gib: 1, start: false };
      for (let i = 0; i < 10; i++)
        expect((await call(cp, 'POST', '/v1/instances', { ...vm, name: `r${i}` })).status).toBe(202);
      // Ten resizes from 1 to 2 vCPUs at once against the child's 12: exactly two fit.
      const raced = await Promise.all(
        Array.from({ length: 10 }, (_, i) =>
          call(cp, 'POST', `/v1/instances/r${i}/resize?project=rs-kid`, { vcpus: 2 }),
        ),
      );
      const tally: Record<string, number> = {};
      for (const a of raced) {
        const key = a.status === 202 ? '202' : `${a.status} ${a.body.error.code}`;
        tally[key] = (tally[key] ?? 0) + 1;
      }
      expect(tally).toEqual({ '202': 2, '409 quota_exceeded': 8 });
      expect(await line('rs-kid', 'vcpus')).toMatchObject({ limit: 12, used: 12, available: 0 });
      const grown = raced.findIndex((a) => a.status === 202);
      const big = `/v1/instances/r${grown}/resize?project=rs-kid`;
      const overKid = await call(cp, 'POST', big, { vcpus: 3 });
      expect(overKid.body.error).toMatchObject({
        code: 'quota_exceeded',
        details: { dimension: 'vcpus', project: 'rs-kid', limit: 12, used: 12, requested: 1 },
      });
      // The child has no limit on disk or memory: its parent's blocks, and is named.
      const overParent = await call(cp, 'POST', big, { disk_gib: 22 });
      expect(overParent.body.error).toMatchObject({
        code: 'quota_exceeded',
        details: { dimension: 'disk_gib', project: 'rs', limit: 30, used: 10, requested: 21 },
      });
      expect((await call(cp, 'POST', big, { disk_gib: 21 })).status).toBe(202);
      expect(await line('rs', 'disk_gib')).toMatchObject({ limit: 30, used_subtree: 30, available: 0 });
      const shrink = await call(cp, 'POST', big, { disk_gib: 20 });
      expect(shrink.status).toBe(422);
      expect(shrink.body.error).toMatchObject({
        code: 'disk_shrink_refused',
        details: { field: 'disk_gib', current_gib: 21, requested_gib: 20 },
      });
      // Shrinking vCPUs and memory gives back at once; the freed vCPU goes to another instance.
      expect((await call(cp, 'POST', big, { vcpus: 1 })).status).toBe(202);
      expect(await line('rs-kid', 'vcpus')).toMatchObject({ used: 11, available: 1 });
      const other = raced.findIndex((a) => a.status === 409);
      expect((await call(cp, 'POST', `/v1/instances/r${other}/resize?project=rs-kid`, { vcpus: 2 })).status).toBe(202);
      const overMemory = await call(cp, 'POST', big, { memory_mib: 4096 });
      expect(overMemory.body.error.details).toMatchObject({ dimension: 'memory_mib', project: 'rs', limit: 4096 });
      // A running (or to-be-running) instance is not resized.
      expect((await call(cp, 'POST', `/v1/instances/r${other}/start?project=rs-kid`)).status).toBe(202);
      const running = await call(cp, 'POST', `/v1/instances/r${other}/resize?project=rs-kid`, { vcpus: 1 });
      expect(running.status).toBe(409);
      expect(running.body.error.code).toBe('invalid_state');
      const history = (await call(cp, 'GET', `/v1/instances/r${grown}/history?project=rs-kid`)).body.items as Array<{
        action: string;
        before: { spec: { disk_gib: number } } | null;
        after: { spec: { disk_gib: number } } | null;
      }>;
      const resizes = history.filter((h) => h.action === 'resize');
      expect(resizes.map((h) => [h.before?.spec.disk_gib, h.after?.spec.disk_gib])).toEqual([
        [1, 1],
        [1, 21],
        [21, 21],
      ]);
    }, 60_000);

    it('networks and NICs count too; a refused NIC leaves no address taken', async () => {
      await ok('POST', '/v1/projects', { name: 'netq', limits: { networks: 1, ipv4_private: 1 } });
      await ok('POST', '/v1/images', { name: 'img', project: 'netq' });
      await ok('POST', '/v1/networks', { name: 'lan', project: 'netq', ipv4: '10.93.0.0/24' });
      const second = await call(cp, 'POST', '/v1/networks', { name: 'lan2', project: 'netq', ipv4: '10.94.0.0/24' });
      expect(second.body.error).toMatchObject({ code: 'quota_exceeded', details: { dimension: 'networks', limit: 1 } });
      const vm = { image: 'img', project: 'netq', vcpus: 1, memory_mib: 128, networks: [{ network: 'lan' }] };
      expect((await call(cp, 'POST', '/v1/instances', { ...vm, name: 'n1' })).status).toBe(202);
      const over = await call(cp, 'POST', '/v1/instances', { ...vm, name: 'n2' });
      expect(over.body.error.details).toMatchObject({ dimension: 'ipv4_private', project: 'netq', used: 1 });
      const hot = await call(cp, 'POST', '/v1/instances/n1/nics?project=netq', { network: 'lan' });
      expect(hot.body.error.details).toMatchObject({ dimension: 'ipv4_private', used: 1, requested: 1 });
      expect(await line('netq', 'nics')).toMatchObject({ used: 1 });
      expect(await line('netq', 'ipv4_private')).toMatchObject({ used: 1, limit: 1 });
    }, 60_000);

    it('public IPv4 addresses count apart from private ones, at create and on a hot-added NIC', async () => {
      await ok('POST', '/v1/projects', { name: 'pubq', limits: { ipv4_public: 1 } });
      await ok('POST', '/v1/images', { name: 'img', project: 'pubq' });
      // Public networks are the operator's, found from every project.
      await ok('POST', '/v1/networks', { name: 'pubq-wan', kind: 'public', ipv4: '203.0.113.0/24' });
      await ok('POST', '/v1/networks', { name: 'lan', project: 'pubq', ipv4: '10.95.0.0/24' });
      const vm = { image: 'img', project: 'pubq', vcpus: 1, memory_mib: 128 };
      expect(
        (await call(cp, 'POST', '/v1/instances', { ...vm, name: 'p1', networks: [{ network: 'pubq-wan' }] })).status,
      ).toBe(202);
      // Private addresses are not held against the public limit.
      expect(
        (await call(cp, 'POST', '/v1/instances', { ...vm, name: 'p2', networks: [{ network: 'lan' }] })).status,
      ).toBe(202);
      const over = await call(cp, 'POST', '/v1/instances', { ...vm, name: 'p3', networks: [{ network: 'pubq-wan' }] });
      expect(over.body.error).toMatchObject({
        code: 'quota_exceeded',
        details: { dimension: 'ipv4_public', project: 'pubq', limit: 1, used: 1, requested: 1 },
      });
      const hot = await call(cp, 'POST', '/v1/instances/p2/nics?project=pubq', { network: 'pubq-wan' });
      expect(hot.body.error.details).toMatchObject({ dimension: 'ipv4_public', used: 1, requested: 1 });
      expect(await line('pubq', 'ipv4_public')).toMatchObject({ limit: 1, used: 1, available: 0 });
      expect(await line('pubq', 'ipv4_private')).toMatchObject({ used: 1 });
      expect(await line('pubq', 'nics')).toMatchObject({ used: 2 });
      // Deleting the holder gives the address back.
      expect((await call(cp, 'DELETE', '/v1/instances/p1?project=pubq')).status).toBe(202);
    }, 60_000);

    it("records a change of limits in the project's history, with the limits before and after", async () => {
      await ok('POST', '/v1/projects', { name: 'histq', limits: { vcpus: 4 } });
      await ok('PUT', '/v1/projects/histq/limits', { vcpus: 8, instances: 2 });
      const refused = await call(cp, 'PUT', '/v1/projects/histq/limits', { vcpus: -1 });
      expect(refused.status).toBe(400);
      await ok('PUT', '/v1/projects/histq/limits', { instances: null });
      const page = await call(cp, 'GET', '/v1/projects/histq/history');
      expect(page.status).toBe(200);
      const entries = page.body.items as Array<{
        action: string;
        revision: number;
        before: { limits?: unknown } | null;
        after: { limits?: unknown; revision?: number } | null;
      }>;
      expect(entries.map((e) => e.action)).toEqual(['create', 'set-limits', 'set-limits']);
      expect(entries.map((e) => e.revision)).toEqual([1, 2, 3]);
      expect(entries[1]!.before!.limits).toEqual({ vcpus: 4 });
      expect(entries[1]!.after!.limits).toEqual({ vcpus: 8, instances: 2 });
      expect(entries[2]!.after!.limits).toEqual({ vcpus: 8 });
      expect((await call(cp, 'GET', '/v1/projects/histq')).body.revision).toBe(3);
    }, 60_000);

    it('sub-projects made at once, and a parent lowered meanwhile, never delegate more than the parent has', async () => {
      await ok('POST', '/v1/projects', { name: 'carve', limits: { vcpus: 10 } });
      const made = await Promise.all(
        Array.from({ length: 20 }, (_, i) =>
          call(cp, 'POST', '/v1/projects', { name: `carve-${i}`, parent: 'carve', limits: { vcpus: 4 } }),
        ),
      );
      const tally: Record<string, number> = {};
      for (const a of made) {
        const key = `${a.status}${a.status === 201 ? '' : ` ${a.body.error.code}`}`;
        tally[key] = (tally[key] ?? 0) + 1;
      }
      expect(tally).toEqual({ '201': 2, '409 quota_exceeded': 18 });
      for (const a of made.filter((x) => x.status === 409))
        expect(a.body.error.details).toMatchObject({ dimension: 'vcpus', project: 'carve', limit: 10, used: 8 });
      expect(await line('carve', 'vcpus')).toMatchObject({ limit: 10, delegated: 8 });

      // The parent lowered to 4 while ten children of 3 are made: whichever commits first, what the
      // children were given ends within the parent's limit, and a lowering below it is refused.
      await ok('POST', '/v1/projects', { name: 'carve2', limits: { vcpus: 10 } });
      const [lowered, ...kids] = await Promise.all([
        call(cp, 'PUT', '/v1/projects/carve2/limits', { vcpus: 4 }),
        ...Array.from({ length: 10 }, (_, i) =>
          call(cp, 'POST', '/v1/projects', { name: `carve2-${i}`, parent: 'carve2', limits: { vcpus: 3 } }),
        ),
      ]);
      const given = kids.filter((k) => k.status === 201).length * 3;
      const limit = (await line('carve2', 'vcpus')).limit!;
      expect(given).toBeLessThanOrEqual(limit);
      expect(await line('carve2', 'vcpus')).toMatchObject({ delegated: given });
      // Lowered first (and later children refused), or refused for what the children already hold.
      if (lowered.status === 200) expect(limit).toBe(4);
      else expect([limit, lowered.body.error.code]).toEqual([10, 'limit_below_allocation']);
    }, 60_000);

    // A create reads the project tree, then waits for the chain's lock; a sub-project made and used while
    // it waits must be in its count. Another transaction holds the lock, adds a child with 2 vCPUs in use
    // (rows written directly: the child's own create would wait for the same lock), then lets go.
    it.skipIf(target.name !== 'postgres')(
      'a create waiting for the lock counts a sub-project made and used meanwhile',
      async () => {
        const gap = (await ok('POST', '/v1/projects', { name: 'gap', limits: { vcpus: 2 } })) as { id: string };
        await ok('POST', '/v1/images', { name: 'img', project: 'gap' });
        const image = await cp.store.db
          .selectFrom('images')
          .select('id')
          .where('project', '=', 'gap')
          .executeTakeFirstOrThrow();
        const host = await cp.store.db.selectFrom('hosts').select('id').executeTakeFirstOrThrow();
        let locked!: () => void;
        let release!: () => void;
        const holding = new Promise<void>((r) => (locked = r));
        const go = new Promise<void>((r) => (release = r));
        const holder = cp.store.db.transaction().execute(async (trx) => {
          await trx.selectFrom('projects').select('id').where('id', '=', gap.id).forUpdate().execute();
          locked();
          await go;
          const now = new Date().toISOString();
          const base = { labels: '{}', metadata: '{}', revision: 1, created_at: now, updated_at: now };
          await trx
            .insertInto('projects')
            .values({ ...base, id: 'prj_gapchild', name: 'gap-child', description: '', parent_id: gap.id })
            .execute();
          await trx
            .insertInto('instances')
            .values({
              ...base,
              id: 'inst_gapchild',
              name: 'early',
              project: 'gap-child',
              spec: '{}',
              status: '{}',
              host_id: host.id,
              image_id: image.id,
              state: 'stopped',
              vcpus: 2,
              memory_mib: 128,
              disk_gib: 1,
              deleting: 0,
              generation: 1,
              restart_generation: 0,
              force_stop: 0,
            })
            .execute();
        });
        await holding;
        const create = call(cp, 'POST', '/v1/instances', {
          name: 'late',
          project: 'gap',
          image: 'img',
          vcpus: 2,
          memory_mib: 128,
        });
        // The create has read the tree and waits for the lock.
        const waiting = async () =>
          Number(
            (
              await sql<{
                n: string;
              }>`select count(*) as n from pg_stat_activity where wait_event_type = 'Lock' and datname = current_database()`.execute(
                cp.store.db,
              )
            ).rows[0]!.n,
          ) > 0;
        for (let i = 0; i < 100 && !(await waiting()); i++) await new Promise((r) => setTimeout(r, 50));
        expect(await waiting()).toBe(true);
        release();
        await holder;
        const answer = await create;
        expect(answer.status, JSON.stringify(answer.body)).toBe(409);
        expect(answer.body.error.details).toMatchObject({ dimension: 'vcpus', project: 'gap', limit: 2, used: 2 });
      },
      30_000,
    );

    it('owners of a parent create sub-projects and set their limits; members see them read-only', async () => {
      await ok('POST', '/v1/projects', { name: 'deleg', limits: { vcpus: 8 } });
      const user = async (name: string, role: string) => {
        await ok('POST', '/v1/users', { name, password: 'quota password 1' });
        await ok('POST', '/v1/projects/deleg/members', { user: name, role });
        const login = await call(cp, 'POST', '/v1/auth/login', { username: name, password: 'quota password 1' }, '');
        expect(login.status, JSON.stringify(login.body)).toBe(200);
        return login.body.token as string;
      };
      const owner = await user('q-owner', 'owner');
      const member = await user('q-member', 'member');
      const child = await call(
        cp,
        'POST',
        '/v1/projects',
        { name: 'deleg-kid', parent: 'deleg', limits: { vcpus: 3 } },
        owner,
      );
      expect(child.status, JSON.stringify(child.body)).toBe(201);
      expect(child.body.parent).toBe('deleg');
      expect((await call(cp, 'POST', '/v1/projects', { name: 'top' }, owner)).status).toBe(403);
      expect((await call(cp, 'POST', '/v1/projects', { name: 'x', parent: 'deleg' }, member)).status).toBe(403);
      expect((await call(cp, 'PUT', '/v1/projects/deleg-kid/limits', { vcpus: 5 }, owner)).status).toBe(200);
      expect((await call(cp, 'PUT', '/v1/projects/deleg-kid/limits', { vcpus: 6 }, member)).status).toBe(403);
      // An owner of a sub-project may not raise its own limits: they are the parent's to give.
      expect((await call(cp, 'PUT', '/v1/projects/deleg/limits', { vcpus: 80 }, owner)).status).toBe(403);
      // The member sees the child and its usage, and may not create in it.
      expect((await call(cp, 'GET', '/v1/projects/deleg-kid/usage', undefined, member)).status).toBe(200);
      const names = (await call(cp, 'GET', '/v1/projects', undefined, member)).body.items.map(
        (p: { name: string }) => p.name,
      );
      expect(names.sort()).toEqual(['deleg', 'deleg-kid']);
      const write = await call(cp, 'POST', '/v1/images', { name: 'img', project: 'deleg-kid' }, member);
      expect(write.status).toBe(403);
    }, 60_000);
  });

  describe.skipIf(target.skip)(`operator default limits on ${target.name}`, () => {
    let cp: TestControlPlane;
    beforeAll(async () => {
      cp = await startTestControlPlane(await target.open(), {
        FLOE_DEFAULT_LIMITS: 'vcpus=4,instances=2',
        FLOE_HOST_OFFLINE_AFTER_MS: '3600000',
        FLOE_LOG_LEVEL: 'silent',
      });
      await onlineTestHost(cp.app, 'd-node');
    });
    afterAll(async () => {
      await cp?.close();
    });

    it('new top-level projects (the first-start default included) get them; sub-projects and given limits do not', async () => {
      const limitsOf = async (p: string) => (await call(cp, 'GET', `/v1/projects/${p}/limits`)).body.limits;
      expect(await limitsOf('default')).toEqual({ vcpus: 4, instances: 2 });
      expect((await call(cp, 'POST', '/v1/projects', { name: 'plain' })).status).toBe(201);
      expect(await limitsOf('plain')).toEqual({ vcpus: 4, instances: 2 });
      expect((await call(cp, 'POST', '/v1/projects', { name: 'given', limits: { vcpus: 16 } })).status).toBe(201);
      expect(await limitsOf('given')).toEqual({ vcpus: 16 });
      expect((await call(cp, 'POST', '/v1/projects', { name: 'plain-kid', parent: 'plain' })).status).toBe(201);
      expect(await limitsOf('plain-kid')).toEqual({});
      // The default limit is enforced like any other, on the sub-project's creates too.
      expect((await call(cp, 'POST', '/v1/images', { name: 'img', project: 'plain-kid' })).status).toBe(201);
      const vm = { image: 'img', project: 'plain-kid', memory_mib: 128 };
      expect((await call(cp, 'POST', '/v1/instances', { ...vm, name: 'a', vcpus: 3 })).status).toBe(202);
      const over = await call(cp, 'POST', '/v1/instances', { ...vm, name: 'b', vcpus: 2 });
      expect(over.status).toBe(409);
      expect(over.body.error.details).toMatchObject({ dimension: 'vcpus', project: 'plain', limit: 4, used: 3 });
    }, 60_000);
  });
}
