import { describe, expect, it } from 'vitest';
import { restartsAfter, RestartTracker } from './restart-policy.js';

const crash = { type: 'crashed' as const, exitCode: 1, policy: 'always' as const };

describe('restartsAfter', () => {
  it('restarts always, on failure only after a non-zero or unknown exit code, and never for never', () => {
    expect(restartsAfter('always', 0)).toBe(true);
    expect(restartsAfter('always', 1)).toBe(true);
    expect(restartsAfter('on-failure', 0)).toBe(false);
    expect(restartsAfter('on-failure', 137)).toBe(true);
    expect(restartsAfter('on-failure', null)).toBe(true);
    expect(restartsAfter('never', 1)).toBe(false);
  });
});

describe('RestartTracker', () => {
  const tracker = () => new RestartTracker({ initialMs: 1000, maxMs: 8000, resetAfterMs: 60_000 }, () => 1);

  it('doubles the delay with every crash in a row, up to the maximum', () => {
    const t = tracker();
    const delays = [0, 1, 2, 3, 4, 5].map((i) => {
      const d = t.stopped('vm', crash, 1000 + i * 100);
      return d.restart ? d.delayMs : -1;
    });
    expect(delays).toEqual([1000, 2000, 4000, 8000, 8000, 8000]);
  });

  it('forgets the crashes after resetAfterMs without one', () => {
    const t = tracker();
    t.stopped('vm', crash, 0);
    t.stopped('vm', crash, 10);
    expect(t.stopped('vm', crash, 20)).toEqual({ restart: true, delayMs: 4000 });
    expect(t.stopped('vm', crash, 20 + 60_001)).toEqual({ restart: true, delayMs: 1000 });
  });

  it('makes the VM wait until its delay is over, and reports the restart once it started', () => {
    const t = tracker();
    expect(t.waitMs('vm', 0)).toBe(0);
    t.stopped('vm', { type: 'stopped', exitCode: null, policy: 'always' }, 5000);
    expect(t.waitMs('vm', 5000)).toBe(1000);
    expect(t.waitMs('vm', 5600)).toBe(400);
    expect(t.waitMs('vm', 7000)).toBe(0);
    expect(t.started('vm')).toBe('restarted after the VM stopped (exit code unknown, restart policy always)');
    expect(t.started('vm')).toBeNull();
    expect(t.waitMs('vm', 5000)).toBe(0);
  });

  it('keeps VMs apart', () => {
    const t = tracker();
    t.stopped('a', crash, 0);
    t.stopped('a', crash, 0);
    expect(t.stopped('b', crash, 0)).toEqual({ restart: true, delayMs: 1000 });
    expect(t.waitMs('a', 0)).toBe(2000);
  });

  it('decides no restart when the policy says so, and records nothing', () => {
    const t = tracker();
    expect(t.stopped('vm', { type: 'stopped', exitCode: 0, policy: 'on-failure' }, 0)).toEqual({ restart: false });
    expect(t.stopped('vm', { type: 'crashed', exitCode: 1, policy: 'never' }, 0)).toEqual({ restart: false });
    expect(t.waitMs('vm', 0)).toBe(0);
    expect(t.started('vm')).toBeNull();
  });

  it('cancel drops a pending restart but keeps the count; forget drops both', () => {
    const t = tracker();
    t.stopped('vm', crash, 0);
    t.cancel('vm');
    expect(t.waitMs('vm', 0)).toBe(0);
    expect(t.started('vm')).toBeNull();
    expect(t.stopped('vm', crash, 10)).toEqual({ restart: true, delayMs: 2000 });
    t.forget('vm');
    expect(t.stopped('vm', crash, 20)).toEqual({ restart: true, delayMs: 1000 });
  });
});
