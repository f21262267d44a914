import { afterEach, describe, expect, it } from 'vitest';
import { WorkQueue, type WorkQueueOptions } from './work-queue.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

// A handler whose runs can be held open and made to fail, recording what ran.
function recorder() {
  const runs: string[] = [];
  const gates = new Map<string, () => void>();
  const fail = new Map<string, number>();
  let active = 0;
  const perKey = new Map<string, number>();
  let most = 0;
  let mostPerKey = 0;
  const hold = new Set<string>();
  const handler = async (key: string): Promise<void> => {
    runs.push(key);
    active++;
    perKey.set(key, (perKey.get(key) ?? 0) + 1);
    most = Math.max(most, active);
    mostPerKey = Math.max(mostPerKey, perKey.get(key)!);
    try {
      if (hold.has(key)) await new Promise<void>((resolve) => gates.set(key, resolve));
      else await sleep(1);
      const left = fail.get(key) ?? 0;
      if (left > 0) {
        fail.set(key, left - 1);
        throw new Error(`${key} failed`);
      }
    } finally {
      active--;
      perKey.set(key, perKey.get(key)! - 1);
    }
  };
  const release = (key: string) => {
    hold.delete(key);
    gates.get(key)?.();
    gates.delete(key);
  };
  const started = async (key: string, count = 1) => {
    while (runs.filter((k) => k === key).length < count) await sleep(1);
  };
  return {
    runs,
    fail,
    hold,
    release,
    started,
    handler,
    get most() {
      return most;
    },
    get mostPerKey() {
      return mostPerKey;
    },
  };
}

const queues: Array<WorkQueue<string>> = [];
function queue(opts: WorkQueueOptions<string>): WorkQueue<string> {
  const q = new WorkQueue(opts);
  queues.push(q);
  return q;
}
afterEach(async () => {
  for (const q of queues.splice(0)) await q.stop();
});

describe('WorkQueue', () => {
  it('runs a key added many times before it starts once, and keys in the order they were added', async () => {
    const r = recorder();
    const q = queue({ handler: r.handler });
    q.add('b');
    q.add('a');
    q.add('b');
    q.add('c');
    q.add('a');
    await q.whenIdle();
    expect(r.runs).toEqual(['b', 'a', 'c']);
  });

  it('runs a key added while it runs once more afterwards (however often it was added), never twice at once', async () => {
    const r = recorder();
    const q = queue({ handler: r.handler });
    r.hold.add('a');
    q.add('a');
    await r.started('a');
    q.add('a');
    q.add('a');
    q.add('a');
    expect(q.isRunning('a')).toBe(true);
    r.release('a');
    await q.whenIdle();
    expect(r.runs).toEqual(['a', 'a']);
    expect(r.mostPerKey).toBe(1);
    expect(q.isRunning('a')).toBe(false);
  });

  it('runs different keys at the same time, up to the concurrency', async () => {
    const r = recorder();
    const q = queue({ handler: r.handler, concurrency: 2 });
    for (const k of ['a', 'b', 'c', 'd', 'e']) q.add(k);
    await q.whenIdle();
    expect(r.runs).toEqual(['a', 'b', 'c', 'd', 'e']);
    expect(r.most).toBe(2);

    const unlimited = recorder();
    const u = queue({ handler: unlimited.handler });
    for (const k of ['a', 'b', 'c', 'd', 'e']) u.add(k);
    await u.whenIdle();
    expect(unlimited.most).toBe(5);
  });

  it('retries a failing key with exponential backoff until it succeeds, reporting each failure', async () => {
    const r = recorder();
    const errors: Array<{ key: string; message: string; retryInMs: number; failures: number }> = [];
    const q = queue({
      handler: r.handler,
      retryBackoff: { initialMs: 10, maxMs: 40 },
      random: () => 1,
      onError: (key, err, retryInMs, failures) =>
        errors.push({ key, message: (err as Error).message, retryInMs, failures }),
    });
    r.fail.set('a', 4);
    q.add('a');
    q.add('b');
    await q.whenIdle();
    // The retry waits on a timer: idle does not wait for it.
    expect(r.runs).toEqual(['a', 'b']);
    expect(q.failures('a')).toBe(1);
    while (r.runs.filter((k) => k === 'a').length < 5) await sleep(2);
    await q.whenIdle();
    expect(errors.map((e) => [e.key, e.message, e.retryInMs, e.failures])).toEqual([
      ['a', 'a failed', 10, 1],
      ['a', 'a failed', 20, 2],
      ['a', 'a failed', 40, 3],
      ['a', 'a failed', 40, 4],
    ]);
    expect(q.failures('a')).toBe(0);
    await sleep(60);
    expect(r.runs.filter((k) => k === 'a')).toHaveLength(5);
  });

  it('keeps the failures of other keys apart', async () => {
    const r = recorder();
    const q = queue({ handler: r.handler, retryBackoff: { initialMs: 1000, maxMs: 1000 } });
    r.fail.set('a', 1);
    q.add('a');
    q.add('b');
    await q.whenIdle();
    expect(q.failures('a')).toBe(1);
    expect(q.failures('b')).toBe(0);
  });

  it('cuts a retry delay short when the key is added again, but not for an add that keeps delays', async () => {
    const r = recorder();
    const q = queue({ handler: r.handler, retryBackoff: { initialMs: 10_000, maxMs: 10_000 } });
    r.fail.set('a', 1);
    q.add('a');
    await q.whenIdle();
    expect(r.runs).toEqual(['a']);
    q.add('a', { keepDelay: true });
    await q.whenIdle();
    expect(r.runs).toEqual(['a']);
    q.add('a');
    await q.whenIdle();
    expect(r.runs).toEqual(['a', 'a']);
    expect(q.failures('a')).toBe(0);
  });

  it('runs a key that failed again at once when it was added while failing, and waits when the add kept delays', async () => {
    const r = recorder();
    const errors: number[] = [];
    const q = queue({
      handler: r.handler,
      retryBackoff: { initialMs: 10_000, maxMs: 10_000 },
      onError: (_key, _err, retryInMs) => errors.push(retryInMs),
    });
    r.fail.set('a', 2);
    r.hold.add('a');
    q.add('a');
    await r.started('a');
    q.add('a');
    r.release('a');
    await q.whenIdle();
    // The second run failed too, and nobody added the key while it ran: it waits for its retry.
    expect(r.runs).toEqual(['a', 'a']);
    expect(errors[0]).toBe(0);
    expect(errors[1]).toBeGreaterThanOrEqual(5_000);

    const s = recorder();
    const p = queue({ handler: s.handler, retryBackoff: { initialMs: 10_000, maxMs: 10_000 } });
    s.fail.set('a', 1);
    s.hold.add('a');
    p.add('a');
    await s.started('a');
    p.add('a', { keepDelay: true });
    s.release('a');
    await p.whenIdle();
    expect(s.runs).toEqual(['a']);
  });

  it('reruns a key added with keepDelay while it ran once it succeeded', async () => {
    const r = recorder();
    const q = queue({ handler: r.handler });
    r.hold.add('a');
    q.add('a');
    await r.started('a');
    q.add('a', { keepDelay: true });
    r.release('a');
    await q.whenIdle();
    expect(r.runs).toEqual(['a', 'a']);
  });

  it('runs a key after a delay, the earliest of two delays winning, and an add runs it at once', async () => {
    const r = recorder();
    const q = queue({ handler: r.handler });
    q.addAfter('a', 60);
    q.addAfter('a', 20);
    q.addAfter('a', 40);
    await q.whenIdle();
    expect(r.runs).toEqual([]);
    await sleep(35);
    await q.whenIdle();
    expect(r.runs).toEqual(['a']);
    await sleep(50);
    expect(r.runs).toEqual(['a']);

    q.addAfter('b', 10_000);
    q.add('b');
    await q.whenIdle();
    expect(r.runs).toEqual(['a', 'b']);
  });

  it('whenIdle waits for queued and running keys, and resolves at once when there are none', async () => {
    const r = recorder();
    const q = queue({ handler: r.handler });
    await q.whenIdle();
    r.hold.add('a');
    q.add('a');
    q.add('b');
    expect(q.size).toBe(2);
    let idle = false;
    const waiting = q.whenIdle().then(() => (idle = true));
    await r.started('b');
    await sleep(10);
    expect(idle).toBe(false);
    r.release('a');
    await waiting;
    expect(idle).toBe(true);
    expect(q.size).toBe(0);
  });

  it('after stop, runs nothing more: queued, delayed and retried keys are dropped; stop waits for the running one', async () => {
    const r = recorder();
    const q = queue({ handler: r.handler, retryBackoff: { initialMs: 10, maxMs: 10 } });
    r.fail.set('b', 5);
    q.add('b');
    await q.whenIdle();
    r.hold.add('a');
    q.add('a');
    await r.started('a');
    q.add('a');
    q.addAfter('c', 10);
    let stopped = false;
    const stopping = q.stop().then(() => (stopped = true));
    await sleep(5);
    expect(stopped).toBe(false);
    r.release('a');
    await stopping;
    q.add('d');
    await sleep(40);
    expect(r.runs).toEqual(['b', 'a']);
  });

  it('stop gives up waiting after its timeout', async () => {
    const r = recorder();
    const q = queue({ handler: r.handler });
    r.hold.add('a');
    q.add('a');
    await r.started('a');
    const t0 = Date.now();
    await q.stop(20);
    expect(Date.now() - t0).toBeLessThan(5_000);
    expect(q.isRunning('a')).toBe(true);
    r.release('a');
  });
});
