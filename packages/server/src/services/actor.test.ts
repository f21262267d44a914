import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { storeTargets, type TestStore } from '../db/testing.js';
import { runDetached, runForActor, type ActorScope } from './actor.js';
import { EventBus, type NewEvent } from './events.js';

const event = (id: string, extra: Partial<NewEvent> = {}): NewEvent => ({
  type: 'resource.updated',
  project: 'alpha',
  kind: 'instance',
  resource_id: id,
  data: {},
  ...extra,
});

const tick = (ms: number) => new Promise((r) => setTimeout(r, ms));

// The event bus names the actor of the request it is published for, and nobody once that request is answered.
for (const t of storeTargets()) {
  describe.skipIf(t.skip)(`the actor of published events on ${t.name}`, () => {
    let store: TestStore;
    let bus: EventBus;
    beforeAll(async () => {
      store = await t.open();
      bus = new EventBus(store);
    });
    afterAll(async () => {
      bus?.close();
      await store?.close();
    });

    it("names the request's actor, to subscribers and in the stored row", async () => {
      const heard: Array<[string, string | null]> = [];
      const stop = bus.subscribe((e) => heard.push([e.resource_id, e.actor]));
      const scope: ActorScope = { actor: 'tok_alice', ended: false };
      try {
        const [published] = await runForActor(scope, () => bus.publish(event('inst_a')));
        expect(published!.actor).toBe('tok_alice');
        // A publisher that knows better says so; null too.
        await runForActor(scope, () =>
          bus.publish(event('inst_b', { actor: 'tok_bob' }), event('inst_c', { actor: null })),
        );
        // Outside any request: nobody.
        await bus.publish(event('inst_d'));
      } finally {
        stop();
      }
      expect(heard).toEqual([
        ['inst_a', 'tok_alice'],
        ['inst_b', 'tok_bob'],
        ['inst_c', null],
        ['inst_d', null],
      ]);
      const rows = await store.db
        .selectFrom('events')
        .select(['resource_id', 'actor'])
        .where('resource_id', 'in', ['inst_a', 'inst_b', 'inst_c', 'inst_d'])
        .orderBy('seq')
        .execute();
      expect(rows.map((r) => [r.resource_id, r.actor])).toEqual(heard);
      const replayed = await bus.replay(0, { principal: { actor: 'x', admin: true, projects: new Set() } });
      expect(replayed.filter((e) => e.resource_id.startsWith('inst_')).map((e) => [e.resource_id, e.actor])).toEqual(
        heard,
      );
    });

    it('names nobody for what a request leaves running after its answer, or starts detached', async () => {
      const scope: ActorScope = { actor: 'tok_alice', ended: false };
      let answer = () => undefined as void;
      const answered = new Promise<void>((resolve) => (answer = resolve));
      let later: Promise<unknown> = Promise.resolve();
      let detached: Promise<unknown> = Promise.resolve();
      await runForActor(scope, async () => {
        // Work the request starts that goes on once it is answered (a timer, then a publish).
        later = answered.then(() => tick(10)).then(() => bus.publish(event('inst_late')));
        detached = runDetached(async () => bus.publish(event('inst_detached')));
        await bus.publish(event('inst_during'));
      });
      scope.ended = true;
      answer();
      await Promise.all([later, detached]);
      const rows = await store.db
        .selectFrom('events')
        .select(['resource_id', 'actor'])
        .where('resource_id', 'in', ['inst_during', 'inst_late', 'inst_detached'])
        .execute();
      expect(Object.fromEntries(rows.map((r) => [r.resource_id, r.actor]))).toEqual({
        inst_during: 'tok_alice',
        inst_late: null,
        inst_detached: null,
      });
    });
  });
}
