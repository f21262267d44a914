import { describe, expect, it } from 'vitest';
import type { ServiceContext } from './context.js';
import type { NewEvent } from './events.js';
import { PostCommit } from './post-commit.js';

/** A context whose bus and signals only write down what they are asked, in order. */
function recorder() {
  const log: string[] = [];
  const ctx = {
    bus: {
      publish: (...events: NewEvent[]) => {
        log.push(`publish ${events.map((e) => e.resource_id).join(',')}`);
        return Promise.resolve([]);
      },
    },
    signals: { send: (name: string, ...args: string[]) => log.push(`${name} ${args.join(' ')}`) },
  } as unknown as ServiceContext;
  return { ctx, log };
}

const event = (id: string): NewEvent => ({
  type: 'resource.updated',
  project: 'p',
  kind: 'instance',
  resource_id: id,
  data: {},
});

describe('PostCommit', () => {
  it('forgets, then publishes, then signals desired state, then networks to each host once', async () => {
    const { ctx, log } = recorder();
    const post = new PostCommit(ctx, {
      forgotten: (id) => log.push(`forget ${id}`),
      hostsOf: (ids) => {
        log.push(`hostsOf ${ids.join(',')}`);
        return Promise.resolve(['host_b', 'host_a']);
      },
    });
    await post.run({
      forget: ['ins_1', null],
      events: [event('ins_1'), event('op_1')],
      desired: [
        { instanceId: 'ins_1', hostId: 'host_a' },
        { instanceId: 'ins_2', hostId: null },
      ],
      networkHosts: ['host_a', null],
      networks: ['net_1'],
    });
    expect(log).toEqual([
      'forget ins_1',
      'publish ins_1,op_1',
      'desired instance host_a ins_1',
      'hostsOf net_1',
      'desired network host_a',
      'desired network host_b',
    ]);
  });

  it('does nothing it was not asked to', async () => {
    const { ctx, log } = recorder();
    await new PostCommit(ctx, { hostsOf: () => Promise.reject(new Error('not asked')) }).run({
      events: [],
      networks: [],
    });
    expect(log).toEqual([]);
  });
});
