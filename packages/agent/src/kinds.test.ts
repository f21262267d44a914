import { describe, expect, it } from 'vitest';
import type { DesiredInstance, DesiredNetwork } from '@floe/api';
import { desiredInstance } from '@floe/testkit';
import { ReconcilerRegistry, type DesiredUpdate, type KindReconciler } from './kinds.js';
import { WorkQueue } from './work-queue.js';

type Heard = Array<[string, string, number, boolean]>;

// A reconciler that records what it hears, in one shared log, and does its passes on a WorkQueue.
function fake<K extends string>(
  kind: K,
  heard: Heard,
  follows: Array<'instance' | 'network'> = [],
  pass: () => Promise<void> = () => Promise.resolve(),
): KindReconciler<K> & { queue: WorkQueue<string>; stopped: boolean } {
  const queue = new WorkQueue<string>({ handler: pass });
  const note =
    (k: string) =>
    (items: readonly unknown[], { full }: DesiredUpdate): void => {
      heard.push([kind, k, items.length, full]);
      queue.add('all');
    };
  const r = {
    kind,
    queue,
    stopped: false,
    setDesired: note(kind),
    follows: Object.fromEntries(follows.map((k) => [k, note(k)])),
    resync: () => queue.add('all'),
    whenIdle: () => queue.whenIdle(),
    isIdle: () => queue.size === 0,
    stop: async () => {
      r.stopped = true;
      heard.push([kind, 'stop', 0, false]);
      await queue.stop();
    },
  };
  return r;
}

const vm = desiredInstance();
const net = { id: 'net_01A' } as DesiredNetwork;

describe('ReconcilerRegistry', () => {
  it('gives each kind to its reconciler and its followers (followers first), without knowing the kinds', () => {
    const heard: Heard = [];
    const unknown: string[] = [];
    const reg = new ReconcilerRegistry((kind) => unknown.push(kind));
    reg.register(fake('network', heard, ['instance']));
    reg.register(fake('metadata', heard, ['instance', 'network']));
    reg.register(fake('instance', heard));
    expect(reg.kinds()).toEqual(['network', 'metadata', 'instance']);

    reg.apply({ instance: [vm, vm], network: [net] }, { full: true });
    expect(heard).toEqual([
      ['network', 'instance', 2, true],
      ['metadata', 'instance', 2, true],
      ['instance', 'instance', 2, true],
      ['metadata', 'network', 1, true],
      ['network', 'network', 1, true],
    ]);
    heard.length = 0;
    reg.setDesired('instance', [vm], { full: false });
    expect(heard).toEqual([
      ['network', 'instance', 1, false],
      ['metadata', 'instance', 1, false],
      ['instance', 'instance', 1, false],
    ]);
    expect(unknown).toEqual([]);
  });

  it('says so when nobody takes a kind, and refuses two reconcilers of one kind', () => {
    const heard: Heard = [];
    const unknown: string[] = [];
    const reg = new ReconcilerRegistry((kind) => unknown.push(kind));
    reg.register(fake('instance', heard));
    reg.apply({ network: [net] }, { full: true });
    expect(unknown).toEqual(['network']);
    expect(heard).toEqual([]);
    expect(() => reg.register(fake('instance', heard))).toThrow(/registered already/);
  });

  it('is idle once every reconciler is, also when one pass queues work for another', async () => {
    const heard: Heard = [];
    const reg = new ReconcilerRegistry();
    const done: string[] = [];
    const b = fake('network', heard, [], async () => {
      await new Promise((r) => setTimeout(r, 20));
      done.push('network');
    });
    const a = fake('instance', heard, [], async () => {
      await new Promise((r) => setTimeout(r, 5));
      done.push('instance');
      // Work for the other kind, queued only once this one is nearly done.
      b.queue.add('all');
    });
    reg.register(a);
    reg.register(b);
    reg.setDesired('instance', [vm], { full: true });
    await reg.whenIdle();
    expect(done).toEqual(['instance', 'network']);
    expect(reg.get('network')?.isIdle()).toBe(true);
  });

  it('resyncs all and stops all, the last registered first', async () => {
    const heard: Heard = [];
    const reg = new ReconcilerRegistry();
    const a = fake('network', heard);
    const b = fake('instance', heard);
    reg.register(a);
    reg.register(b);
    const resyncing = reg.resync();
    expect(a.queue.size + b.queue.size).toBe(2);
    await resyncing;
    await reg.whenIdle();
    await reg.stop();
    expect(heard.filter((h) => h[1] === 'stop').map((h) => h[0])).toEqual(['instance', 'network']);
    expect(a.stopped && b.stopped).toBe(true);
  });
});

// The types say which items a kind takes (checked by the compiler).
const typed: Array<(reg: ReconcilerRegistry) => void> = [
  (reg) => reg.setDesired('instance', [] as DesiredInstance[], { full: true }),
  // @ts-expect-error: networks are not instances
  (reg) => reg.setDesired('instance', [] as DesiredNetwork[], { full: true }),
];
void typed;
