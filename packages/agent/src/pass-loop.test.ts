import { describe, expect, it } from 'vitest';
import { PassLoop } from './pass-loop.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('PassLoop', () => {
  it('runs one pass at a time, and any number of kicks during a pass make one more', async () => {
    let active = 0;
    let most = 0;
    let passes = 0;
    const loop = new PassLoop(async () => {
      active++;
      most = Math.max(most, active);
      passes++;
      await sleep(20);
      active--;
    });
    loop.kick();
    for (let i = 0; i < 5; i++) loop.kick();
    await loop.settled();
    expect(passes).toBe(2);
    expect(most).toBe(1);
  });

  it('retries a failed pass with backoff, says so, and stops retrying once a pass succeeds', async () => {
    const failures: number[] = [];
    let passes = 0;
    const loop = new PassLoop(
      async () => {
        passes++;
        if (passes < 3) throw new Error('not yet');
      },
      { retryBackoff: { initialMs: 5, maxMs: 10 }, onFailure: (_err, delay) => failures.push(delay) },
    );
    loop.kick();
    await sleep(100);
    await loop.settled();
    expect(passes).toBe(3);
    expect(failures).toHaveLength(2);
    expect(failures.every((d) => d >= 2 && d <= 10)).toBe(true);
    await loop.stop();
  });

  it('resyncs when idle, and does nothing after stop', async () => {
    let passes = 0;
    let resyncs = 0;
    const loop = new PassLoop(
      async () => {
        passes++;
      },
      {
        resyncIntervalMs: 10,
        onResync: () => {
          resyncs++;
        },
      },
    );
    loop.startResync();
    loop.startResync();
    await sleep(55);
    expect(passes).toBeGreaterThanOrEqual(2);
    expect(resyncs).toBe(passes);
    await loop.stop();
    const after = passes;
    loop.kick();
    await sleep(30);
    expect(passes).toBe(after);
  });
});
