import { storeTargetsFor, type StoreTarget } from '../packages/server/src/db/testing.js';

/** What a store's run came to: its result, or why there is none. */
export type StoreOutcome<R> = R | 'skipped' | 'failed';

/** The outcomes of a benchmark on each store, with what its summary table needs. */
export interface StoreResults<R> {
  outcomes: Map<string, StoreOutcome<R>>;
  /** The stores that were asked for, in table order. */
  names: string[];
  /** A table cell of one store: `f` of its result, or what happened instead (— when it did not run). */
  cell(this: void, name: string, f: (r: R) => string): string;
}

/**
 * Run `bench` once per store (SQLite, then PostgreSQL from
 * `FLOE_TEST_DATABASE_URL`), limited to those named in `FLOE_BENCH_STORES`.
 * A store that cannot be had is `skipped`; one whose run threw is `failed`,
 * logged with its stack, and sets a non-zero exit code.
 */
export async function benchEachStore<R>(
  log: (line: string) => void,
  bench: (target: StoreTarget) => Promise<R>,
): Promise<StoreResults<R>> {
  const wanted = new Set((process.env.FLOE_BENCH_STORES ?? 'sqlite,postgres').split(',').map((s) => s.trim()));
  const results = new Map<string, StoreOutcome<R>>();
  for (const target of storeTargetsFor(process.env)) {
    if (!wanted.has(target.name)) continue;
    if (target.skip !== null) {
      log(`[${target.name}] skipped: ${target.skip}`);
      results.set(target.name, 'skipped');
      continue;
    }
    try {
      results.set(target.name, await bench(target));
    } catch (err) {
      log(`[${target.name}] failed: ${(err as Error).stack ?? String(err)}`);
      results.set(target.name, 'failed');
      process.exitCode = 1;
    }
    log('');
  }
  return {
    outcomes: results,
    names: ['sqlite', 'postgres'].filter((n) => results.has(n)),
    cell(name, f) {
      const r = results.get(name);
      if (r === undefined) return '—';
      if (r === 'skipped' || r === 'failed') return r as 'skipped' | 'failed';
      return f(r);
    },
  };
}
