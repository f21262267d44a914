import { describe, expect, it } from 'vitest';
import type { QmpBlockStats } from './qmp.js';
import { seedReadState, watchSeedReads } from './seed-watch.js';

const disk = (device: string, reads: number): QmpBlockStats => ({
  device,
  stats: { rd_operations: reads, rd_bytes: reads * 512 } as QmpBlockStats['stats'],
});

/** A QMP connection that answers query-blockstats from a script of answers, then repeats the last. */
function fakeQmp(answers: Array<QmpBlockStats[] | Error>) {
  const closers: Array<() => void> = [];
  let calls = 0;
  return {
    get calls() {
      return calls;
    },
    close() {
      for (const c of closers) c();
    },
    execute: async () => {
      const a = answers[Math.min(calls++, answers.length - 1)]!;
      if (a instanceof Error) throw a;
      return a;
    },
    onClose(l: () => void) {
      closers.push(l);
      return () => {};
    },
  };
}

const until = async (check: () => boolean) => {
  for (let i = 0; i < 200 && !check(); i++) await new Promise((r) => setTimeout(r, 5));
};

describe('seed reads', () => {
  it('are told from the seed drive alone', () => {
    expect(seedReadState([disk('disk0', 40), disk('seed', 0)])).toBe(false);
    expect(seedReadState([disk('disk0', 40), disk('seed', 3)])).toBe(true);
    expect(seedReadState([disk('disk0', 40)])).toBeNull();
  });

  it('are reported once, when the drive goes from unread to read, through busy moments', async () => {
    const qmp = fakeQmp([[disk('seed', 0)], new Error('busy'), [disk('seed', 0)], [disk('seed', 2)]]);
    const seen: string[] = [];
    watchSeedReads(qmp as never, {
      intervalMs: 1,
      maxMs: 5000,
      requireUnreadFirst: true,
      onRead: (at) => seen.push(at),
    });
    await until(() => seen.length > 0);
    await new Promise((r) => setTimeout(r, 30));
    expect(seen).toHaveLength(1);
    expect(qmp.calls).toBe(4);
  });

  it('say nothing for an adopted VM whose seed was read before, or a VM without a seed, and stop looking', async () => {
    for (const [answers, requireUnreadFirst] of [
      [[[disk('seed', 5)]], true],
      [[[disk('disk0', 5)]], false],
    ] as Array<[QmpBlockStats[][], boolean]>) {
      const qmp = fakeQmp([...answers]);
      const seen: string[] = [];
      watchSeedReads(qmp as never, { intervalMs: 1, maxMs: 5000, requireUnreadFirst, onRead: (at) => seen.push(at) });
      await new Promise((r) => setTimeout(r, 30));
      expect(seen).toEqual([]);
      expect(qmp.calls).toBe(1);
    }
    const fresh = fakeQmp([[disk('seed', 5)]]);
    const seen: string[] = [];
    watchSeedReads(fresh as never, {
      intervalMs: 1,
      maxMs: 5000,
      requireUnreadFirst: false,
      onRead: (at) => seen.push(at),
    });
    await until(() => seen.length > 0);
    expect(seen).toHaveLength(1);
  });

  it('stop when the connection closes or the time is up', async () => {
    const qmp = fakeQmp([[disk('seed', 0)]]);
    watchSeedReads(qmp as never, { intervalMs: 2, maxMs: 60_000, requireUnreadFirst: false, onRead: () => {} });
    await until(() => qmp.calls >= 2);
    qmp.close();
    const after = qmp.calls;
    await new Promise((r) => setTimeout(r, 30));
    expect(qmp.calls).toBeLessThanOrEqual(after + 1);
    const timed = fakeQmp([[disk('seed', 0)]]);
    watchSeedReads(timed as never, { intervalMs: 1, maxMs: 20, requireUnreadFirst: false, onRead: () => {} });
    await new Promise((r) => setTimeout(r, 80));
    const n = timed.calls;
    await new Promise((r) => setTimeout(r, 30));
    expect(timed.calls).toBe(n);
  });
});
