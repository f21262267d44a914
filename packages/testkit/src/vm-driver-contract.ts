import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { DesiredInstance } from '@floe/api';
import type { VmDriver } from '@floe/agent';
import { testId } from './factories.js';
import { distinctColours, RfbClient } from './rfb.js';
import { until } from './wait.js';

/** What a driver's contract run needs: the driver, optionally a way to open a second one over the same host state, and cleanup. */
export interface VmDriverContractSetup {
  driver: VmDriver;
  /** Open a new driver over the same state, as a restarted agent would. */
  reopen?: () => Promise<VmDriver>;
  /** Remove every trace of the test (VMs, files). */
  cleanup: () => Promise<void>;
  /**
   * Host taps the NIC cases may plug VMs into (made by the setup, removed by
   * its cleanup); at least two. Without them, the NIC cases are skipped.
   */
  taps?: string[];
}

// Real hypervisors boot slowly (TCG); every case gets room for a few boots.
const CASE_TIMEOUT_MS = 120_000;

/**
 * The behaviour every VmDriver must show, as vitest cases. The fake driver and
 * the QEMU driver both run it; it only uses the VmDriver interface.
 *
 * @example
 * vmDriverContract('fake', async () => ({ driver: new FakeVmDriver(), cleanup: async () => {} }), (id) => desiredInstance({ id }));
 */
export function vmDriverContract(
  name: string,
  setup: () => Promise<VmDriverContractSetup>,
  sample: (id: string) => DesiredInstance,
): void {
  describe(`VmDriver contract: ${name}`, () => {
    let ctx: VmDriverContractSetup;
    let driver: VmDriver;

    beforeEach(async () => {
      ctx = await setup();
      driver = ctx.driver;
    });

    afterEach(async () => {
      await ctx.cleanup();
    });

    const created = async (): Promise<string> => {
      const vm = sample(testId('inst'));
      await driver.create(vm);
      return vm.id;
    };

    it(
      'creates idempotently',
      async () => {
        const vm = sample(testId('inst'));
        await driver.create(vm);
        await driver.create(vm);
        const listed = (await driver.list()).filter((v) => v.id === vm.id);
        expect(listed).toHaveLength(1);
        expect(listed[0]!.state).toBe('stopped');
        expect((await driver.inspect(vm.id))?.state).toBe('stopped');
      },
      CASE_TIMEOUT_MS,
    );

    it(
      'starts a VM: running, with started_at',
      async () => {
        const id = await created();
        const before = Date.now();
        const info = await driver.start(id);
        expect(info.id).toBe(id);
        expect(info.state).toBe('running');
        expect(info.started_at).not.toBeNull();
        expect(Date.parse(info.started_at!)).toBeGreaterThanOrEqual(before - 1000);
        expect((await driver.inspect(id))?.state).toBe('running');
      },
      CASE_TIMEOUT_MS,
    );

    it(
      'starting a running VM changes nothing',
      async () => {
        const id = await created();
        const first = await driver.start(id);
        const second = await driver.start(id);
        expect(second.state).toBe('running');
        expect(second.started_at).toBe(first.started_at);
        expect(second.pid).toBe(first.pid);
      },
      CASE_TIMEOUT_MS,
    );

    it(
      'stops a VM gracefully',
      async () => {
        const id = await created();
        await driver.start(id);
        const info = await driver.stop(id, { timeoutMs: 30_000 });
        expect(info.state).toBe('stopped');
        expect((await driver.inspect(id))?.state).toBe('stopped');
        expect((await driver.stop(id)).state).toBe('stopped');
      },
      CASE_TIMEOUT_MS,
    );

    it(
      'force-stops a VM',
      async () => {
        const id = await created();
        await driver.start(id);
        const info = await driver.stop(id, { force: true });
        expect(info.state).toBe('stopped');
        expect((await driver.inspect(id))?.state).toBe('stopped');
      },
      CASE_TIMEOUT_MS,
    );

    it(
      'destroys a running VM completely',
      async () => {
        const id = await created();
        await driver.start(id);
        await driver.destroy(id);
        expect(await driver.inspect(id)).toBeNull();
        expect((await driver.list()).map((v) => v.id)).not.toContain(id);
        await driver.destroy(id);
      },
      CASE_TIMEOUT_MS,
    );

    it(
      'destroying an unknown id succeeds',
      async () => {
        await expect(driver.destroy(testId('inst'))).resolves.toBeUndefined();
        expect(await driver.inspect(testId('inst'))).toBeNull();
      },
      CASE_TIMEOUT_MS,
    );

    it(
      'lists the VMs it created, running or not',
      async () => {
        const a = await created();
        const b = await created();
        await driver.start(b);
        const listed = new Map((await driver.list()).map((v) => [v.id, v.state]));
        expect(listed.get(a)).toBe('stopped');
        expect(listed.get(b)).toBe('running');
      },
      CASE_TIMEOUT_MS,
    );

    const nicsFor = (taps: string[]) =>
      taps
        .slice(0, 2)
        .map((tap, i) => ({ id: testId('nic'), tap, mac: `52:54:00:00:00:${(0x10 + i).toString(16)}`, index: i * 3 }));

    it(
      'records NICs on a stopped VM idempotently and says which ones went',
      async (t) => {
        if (ctx.taps === undefined || ctx.taps.length < 2) {
          t.skip();
          return;
        }
        const id = await created();
        const [a, b] = nicsFor(ctx.taps) as [ReturnType<typeof nicsFor>[number], ReturnType<typeof nicsFor>[number]];
        expect(await driver.setNics(id, [a, b])).toEqual({ removed: [], added: [] });
        expect(await driver.setNics(id, [b, a])).toEqual({ removed: [], added: [] });
        expect(await driver.setNics(id, [b])).toEqual({ removed: [a.id], added: [] });
        expect(await driver.setNics(id, [b])).toEqual({ removed: [], added: [] });
        // The recorded NIC goes with the next start.
        expect((await driver.start(id)).state).toBe('running');
        expect(await driver.setNics(id, [b])).toEqual({ removed: [], added: [] });
        await expect(driver.setNics(testId('inst'), [a])).rejects.toMatchObject({ code: 'instance_not_found' });
        await expect(driver.setNics(id, [a, { ...b, index: a.index }])).rejects.toMatchObject({
          code: 'validation_failed',
        });
      },
      CASE_TIMEOUT_MS,
    );

    it(
      'hot-adds NICs to a running VM, once',
      async (t) => {
        if (ctx.taps === undefined || ctx.taps.length < 2) {
          t.skip();
          return;
        }
        const id = await created();
        const [a, b] = nicsFor(ctx.taps) as [ReturnType<typeof nicsFor>[number], ReturnType<typeof nicsFor>[number]];
        await driver.start(id);
        expect(await driver.setNics(id, [a])).toEqual({ removed: [], added: [a.id] });
        expect(await driver.setNics(id, [a, b])).toEqual({ removed: [], added: [b.id] });
        expect(await driver.setNics(id, [a, b])).toEqual({ removed: [], added: [] });
        expect((await driver.inspect(id))?.state).toBe('running');
        // A stopped VM starts again with both.
        await driver.stop(id, { force: true });
        expect((await driver.start(id)).state).toBe('running');
        expect(await driver.setNics(id, [b, a])).toEqual({ removed: [], added: [] });
      },
      CASE_TIMEOUT_MS,
    );

    it(
      'a reopened driver still sees the running VM running',
      async (t) => {
        if (ctx.reopen === undefined) {
          t.skip();
          return;
        }
        const id = await created();
        const started = await driver.start(id);
        await driver.close();
        const reopened = await ctx.reopen();
        try {
          const seen = (await reopened.list()).find((v) => v.id === id);
          expect(seen?.state).toBe('running');
          expect(seen?.started_at).toBe(started.started_at);
          expect((await reopened.inspect(id))?.state).toBe('running');
          await reopened.destroy(id);
          expect(await reopened.inspect(id)).toBeNull();
        } finally {
          await reopened.close();
        }
      },
      CASE_TIMEOUT_MS,
    );

    it(
      'serves a graphical console: RFB with no password, a non-blank frame, several sessions at once',
      async () => {
        const id = await created();
        await expect(driver.openVnc(id)).rejects.toMatchObject({ code: 'invalid_state' });
        await expect(driver.openVnc(testId('inst'))).rejects.toMatchObject({ code: 'instance_not_found' });
        await driver.start(id);
        const first = await driver.openVnc(id);
        const second = await driver.openVnc(id);
        try {
          const [a, b] = await Promise.all([RfbClient.connect(first), RfbClient.connect(second)]);
          expect(a.handshake.version).toBe('RFB 003.008');
          expect(a.handshake.securityTypes).toContain(1);
          expect(a.fb.width * a.fb.height).toBeGreaterThan(0);
          // The firmware (or the fake's picture) draws something before long: more than one colour.
          const fb = await until(
            'a non-blank frame',
            async () => {
              const frame = await a.frame();
              return distinctColours(frame) > 1 ? frame : null;
            },
            { timeoutMs: 60_000, intervalMs: 500 },
          );
          expect(fb.pixels.length).toBe(fb.width * fb.height * 4);
          expect((await b.frame()).width).toBe(fb.width);
          a.close();
          b.close();
        } finally {
          first.close();
          second.close();
        }
      },
      CASE_TIMEOUT_MS,
    );
  });
}
