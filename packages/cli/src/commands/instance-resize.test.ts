import type { InstanceResize, Operation } from '@floe/api';
import { FloeApiError, type FloeClient } from '@floe/client';
import { describe, expect, it } from 'vitest';
import { runWithClient } from '../testing.js';

const OP = {
  id: 'op_1',
  kind: 'instance.resize',
  status: 'running',
  progress: 0,
  message: 'resize requested',
} as unknown as Operation;

function fake(refuse?: FloeApiError) {
  const sent: { id: string; body: InstanceResize; project?: string }[] = [];
  const client = {
    close: () => undefined,
    instances: {
      resize: (id: string, body: InstanceResize, opts: { project?: string }) => {
        if (refuse !== undefined) return Promise.reject(refuse);
        sent.push({ id, body, ...(opts.project === undefined ? {} : { project: opts.project }) });
        return Promise.resolve(OP);
      },
    },
  } as unknown as FloeClient;
  return { client, sent };
}

describe('floe vm resize', () => {
  it('sends the sizes given and says the next start boots with them', async () => {
    const { client, sent } = fake();
    const run = await runWithClient(
      ['vm', 'resize', 'web', '--vcpus', '4', '--memory-mib', '4096', '--disk-gib', '40', '--project', 'team'],
      client,
    );
    expect(run.code, run.err).toBe(0);
    expect(sent).toEqual([{ id: 'web', body: { vcpus: 4, memory_mib: 4096, disk_gib: 40 }, project: 'team' }]);
    expect(run.out).toContain('resize of web requested: operation op_1 running');
    expect(run.out).toContain('start it to boot with the new size');
    const typed = await runWithClient(['vm', 'resize', 'web', '--type', 'large', '--disk-gib', '20'], client);
    expect(typed.code, typed.err).toBe(0);
    expect(sent[1]!.body).toEqual({ machine_type: 'large', disk_gib: 20 });
  });

  it('refuses no size and bad numbers before asking the server', async () => {
    const { client, sent } = fake();
    const none = await runWithClient(['vm', 'resize', 'web'], client);
    expect(none.code).toBe(2);
    expect(none.err).toContain('give --type, --vcpus, --memory-mib or --disk-gib');
    const bad = await runWithClient(['vm', 'resize', 'web', '--vcpus', '0'], client);
    expect(bad.code).toBe(2);
    expect(sent).toEqual([]);
  });

  it("shows the server's refusal: a running instance, a smaller disk", async () => {
    const running = fake(
      new FloeApiError({
        status: 409,
        code: 'invalid_state',
        message: 'instance "web" must be stopped to be resized; stop it first (floe vm stop web), then start it again',
      }),
    );
    const r = await runWithClient(['vm', 'resize', 'web', '--vcpus', '2'], running.client);
    expect(r.code).not.toBe(0);
    expect(r.err).toContain('must be stopped to be resized; stop it first (floe vm stop web)');
    const shrink = fake(
      new FloeApiError({ status: 422, code: 'disk_shrink_refused', message: 'a disk can only grow, not shrink' }),
    );
    const s = await runWithClient(['vm', 'resize', 'web', '--disk-gib', '1'], shrink.client);
    expect(s.code).not.toBe(0);
    expect(s.err).toContain('a disk can only grow');
  });
});
