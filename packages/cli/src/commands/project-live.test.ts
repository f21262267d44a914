import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { storeTargets } from '../../../server/src/db/testing.js';
import { onlineTestHost, startTestControlPlane, type TestControlPlane } from '../../../server/src/testing.js';
import { run } from '../program.js';
import { OutputBuffer as Buf } from '../testing.js';

// floe project create --parent, limits set, usage and metering against a real control plane, on both
// stores: a three-level tree made from the CLI, a refusal naming the project whose limit blocks, the
// usage table with its bars, and the metering table and CSV of what the instances hold.

for (const t of storeTargets()) {
  describe.skipIf(t.skip !== null)(`floe project usage and metering on ${t.name}`, () => {
    let cp: TestControlPlane;
    let dir: string;
    let env: Record<string, string>;

    async function floe(argv: string[]) {
      const out = new Buf();
      const err = new Buf();
      const code = await run(argv, { stdout: out, stderr: err, env, stdinIsTTY: false });
      return { code, out: out.text, err: err.text };
    }
    const ok = async (argv: string[]) => {
      const r = await floe(argv);
      expect(r.code, `${argv.join(' ')}: ${r.err}`).toBe(0);
      return r.out;
    };

    beforeAll(async () => {
      cp = await startTestControlPlane(await t.open(), { FLOE_LOG_LEVEL: 'silent' });
      dir = await mkdtemp(join(tmpdir(), 'floe-cli-project-'));
      await writeFile(join(dir, 'ca.pem'), cp.ca.certPem);
      env = {
        FLOE_CONFIG: join(dir, 'config.json'),
        FLOE_URL: cp.url,
        FLOE_CA: join(dir, 'ca.pem'),
        FLOE_TOKEN: cp.adminToken,
        NO_COLOR: '1',
      };
      await onlineTestHost(cp.app, 'node-1');
    });
    afterAll(async () => {
      await cp?.close();
      if (dir) await rm(dir, { recursive: true, force: true });
    });

    it('builds a tree, refuses naming the blocker, and shows usage with bars and metering as a table and CSV', async () => {
      await ok(['project', 'create', 'org']);
      await ok(['project', 'limits', 'set', 'org', '--vcpus', '8', '--instances', '4']);
      await ok(['project', 'create', 'team', '--parent', 'org']);
      await ok(['project', 'limits', 'set', 'team', '--vcpus', '4']);
      await ok(['project', 'create', 'dev', '--parent', 'team']);
      await ok(['project', 'limits', 'set', 'dev', '--vcpus', '2']);
      for (const p of ['org', 'team', 'dev']) await ok(['image', 'create', 'img', '--project', p]);
      const vm = (name: string, project: string, vcpus: number) =>
        floe([
          'vm',
          'create',
          name,
          '--image',
          'img',
          '--vcpus',
          String(vcpus),
          '--memory-mib',
          '128',
          '--project',
          project,
        ]);

      expect((await vm('d1', 'dev', 2)).code).toBe(0);
      expect((await vm('t1', 'team', 1)).code).toBe(0);
      // dev is full: its own limit blocks.
      const overDev = await vm('d2', 'dev', 1);
      expect(overDev.code).toBe(1);
      expect(overDev.err).toContain('quota_exceeded');
      expect(overDev.err).toContain('project "dev" has a limit of 2 vcpus');
      // team has 1 left, org more: team blocks a create of 2 in team.
      const overTeam = await vm('t2', 'team', 2);
      expect(overTeam.err).toContain('project "team" has a limit of 4 vcpus and uses 3');
      // Delegating more than org has left is refused naming org.
      const greedy = await floe(['project', 'limits', 'set', 'team', '--vcpus', '9']);
      expect(greedy.code).toBe(1);
      expect(greedy.err).toContain('quota_exceeded');
      expect(greedy.err).toContain('project "org" has a limit of 8 vcpus');

      const usage = await ok(['project', 'usage', 'org']);
      expect(usage).toContain('project org, sub-projects: team, dev');
      expect(usage).toMatch(/vcpus\s+0\s+3\s+8\s+4\s+5\s+\[########\.{12}\] 38%/);
      expect(usage).toMatch(/instances\s+0\s+2\s+4\s+0\s+2\s+\[##########\.{10}\] 50%/);
      expect(usage).toMatch(/networks\s+0\s+0\s+-\s+0\s+-/);
      expect(await ok(['project', 'usage', 'dev'])).toMatch(/^project dev \(in team\)\n/);
      const json = JSON.parse(await ok(['project', 'usage', 'team', '-o', 'json'])) as {
        dimensions: { dimension: string; used_subtree: number; available: number | null }[];
      };
      expect(json.dimensions.find((d) => d.dimension === 'vcpus')).toMatchObject({ used_subtree: 3, available: 1 });

      await new Promise((r) => setTimeout(r, 20));
      const table = await ok(['project', 'metering', 'dev', '--group-by', 'resource']);
      expect(table).toMatch(/vcpus\s+instance\/inst_\S+\s+\d+\.\d{3}\s+vCPU-hours/);
      expect(table).toMatch(/memory_mib\s+instance\/inst_\S+\s+\d+\.\d{3}\s+MiB-hours/);
      const csv = (await ok(['project', 'metering', 'dev', '--csv'])).trimEnd().split('\r\n');
      expect(csv[0]).toBe('day,dimension,resource_kind,resource_id,quantity_seconds');
      // Per dimension: allocated, vcpus, memory and disk of d1 (created, not reported running).
      expect(
        csv
          .slice(1)
          .map((l) => l.split(',')[1])
          .sort(),
      ).toEqual(['allocated', 'disk_gib', 'memory_mib', 'vcpus']);
      for (const l of csv.slice(1)) expect(Number(l.split(',')[4])).toBeGreaterThan(0);
    }, 60_000);
  });
}
