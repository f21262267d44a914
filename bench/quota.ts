/**
 * The quota benchmark (`npm run bench:quota`): what checking limits costs a create. For SQLite and
 * PostgreSQL one control plane in this process gets two projects, `free` without limits and `capped`
 * with a limit on every dimension a create counts (high enough that nothing is refused), and
 * 1,000 POST /v1/instances each, 16 at a time, in rounds where the two take turns so both grow alike
 * and background load hits both alike. It prints the time per create of each and the median of the
 * rounds' ratios (target: limits on at most 10% slower). It never fails on times.
 */
import type { StoreTarget } from '../packages/server/src/db/testing.js';
import {
  injectJson,
  onlineTestHost,
  startTestControlPlane,
  type TestControlPlane,
} from '../packages/server/src/testing.js';
import { fmt, percentile, sorted, table } from './report.js';
import { benchEachStore } from './stores.js';

const PER_PROJECT = 1_000;
const ROUNDS = 10;
const CONCURRENCY = 16;
const WARMUP = 50;
const TARGET = 1.1;

const log = (line: string) => process.stdout.write(`${line}\n`);
/** The first 409 of the run, printed: a refusal means the limits or the host were too small. */
let firstRefusal: string | undefined;

interface Result {
  freeMs: number;
  cappedMs: number;
  medianRatio: number;
  refused: number;
}

/** `count` creates in `project`, CONCURRENCY at a time; the elapsed milliseconds and the refusals. */
async function burst(cp: TestControlPlane, project: string, from: number, count: number) {
  const started = performance.now();
  let next = from;
  let refused = 0;
  const lane = async () => {
    for (let i = next++; i < from + count; i = next++) {
      const res = await cp.app.http.inject({
        method: 'POST',
        url: '/v1/instances',
        headers: { authorization: `Bearer ${cp.adminToken}`, 'content-type': 'application/json' },
        payload: JSON.stringify({ name: `vm-${i}`, project, image: 'img', vcpus: 1, memory_mib: 128 }),
      });
      if (res.statusCode === 409) {
        refused++;
        firstRefusal ??= `${project}: ${res.body.slice(0, 300)}`;
      } else if (res.statusCode !== 202) throw new Error(`expected 202, got ${res.statusCode}: ${res.body}`);
    }
  };
  await Promise.all(Array.from({ length: CONCURRENCY }, lane));
  return { ms: performance.now() - started, refused };
}

async function benchStore(target: StoreTarget): Promise<Result> {
  // The host has no agent behind it: it must not be taken offline while the bench runs.
  const cp = await startTestControlPlane(await target.open(), {
    FLOE_LOG_LEVEL: 'silent',
    FLOE_HOST_OFFLINE_AFTER_MS: '3600000',
  });
  try {
    // One host with room for every create (no agent: the creates are answered, nothing boots).
    await onlineTestHost(cp.app, 'bench-host', { cpus: 1_000_000, memory_mib: 1_000_000_000 });
    const need = PER_PROJECT + WARMUP;
    for (const project of ['free', 'capped']) {
      const made = await injectJson(cp, 'POST', '/v1/projects', { name: project });
      if (made.status !== 201) throw new Error(`project ${project}: ${JSON.stringify(made.body)}`);
      await injectJson(cp, 'POST', '/v1/images', { name: 'img', project });
    }
    const limits = await injectJson(cp, 'PUT', '/v1/projects/capped/limits', {
      instances: need,
      vcpus: need,
      memory_mib: need * 128,
      disk_gib: need * 1000,
      nics: need,
    });
    if (limits.status !== 200) throw new Error(`limits: ${JSON.stringify(limits.body)}`);
    await burst(cp, 'free', 0, WARMUP);
    await burst(cp, 'capped', 0, WARMUP);
    let freeMs = 0;
    let cappedMs = 0;
    let refused = 0;
    const ratios: number[] = [];
    const per = PER_PROJECT / ROUNDS;
    for (let round = 0; round < ROUNDS; round++) {
      const from = WARMUP + round * per;
      const run = async (p: 'free' | 'capped') => burst(cp, p, from, per);
      // Alternate which goes first, so neither always runs right after the other's writes.
      let f: { ms: number; refused: number };
      let c: { ms: number; refused: number };
      if (round % 2 === 0) {
        f = await run('free');
        c = await run('capped');
      } else {
        c = await run('capped');
        f = await run('free');
      }
      freeMs += f.ms;
      cappedMs += c.ms;
      refused += f.refused + c.refused;
      ratios.push(c.ms / f.ms);
    }
    return { freeMs, cappedMs, medianRatio: percentile(sorted(ratios), 0.5), refused };
  } finally {
    await cp.close();
  }
}

const results = await benchEachStore(log, async (target) => {
  const r = await benchStore(target);
  log(
    `[${target.name}] without limits ${fmt(r.freeMs / PER_PROJECT, 2)} ms/create, with limits ${fmt(r.cappedMs / PER_PROJECT, 2)} ms/create; ` +
      `median round ratio ${r.medianRatio.toFixed(2)}x; refused ${r.refused}${firstRefusal ? ` (first: ${firstRefusal})` : ''}`,
  );
  firstRefusal = undefined;
  return r;
});
const { names, cell } = results;
log(
  table(
    ['metric', ...names, 'target', 'met?'],
    [
      [
        'create without limits (ms)',
        ...names.map((n) => cell(n, (r) => fmt(r.freeMs / PER_PROJECT, 2))),
        'baseline',
        '',
      ],
      ['create with limits (ms)', ...names.map((n) => cell(n, (r) => fmt(r.cappedMs / PER_PROJECT, 2))), '', ''],
      [
        'with / without (median of rounds)',
        ...names.map((n) => cell(n, (r) => `${r.medianRatio.toFixed(2)}x`)),
        `<= ${TARGET.toFixed(2)}x`,
        names.map((n) => `${n} ${cell(n, (r) => (r.medianRatio <= TARGET ? 'yes' : 'NO'))}`).join(', '),
      ],
    ],
  ),
);
