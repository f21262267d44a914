import { describe, expect, it } from 'vitest';
import { exitEvent } from './monitor.js';

describe('exitEvent', () => {
  it('reports what floe killed the VM for first', () => {
    expect(exitEvent('i', 'KVM failed', { guest: true, reason: 'guest-shutdown' })).toEqual({
      id: 'i',
      type: 'crashed',
      message: 'KVM failed',
      exit_code: null,
    });
  });

  it('reports a guest power-off as stopped and a panic as crashed', () => {
    expect(exitEvent('i', null, { guest: true, reason: 'guest-shutdown' })).toEqual({
      id: 'i',
      type: 'stopped',
      message: 'guest powered off',
      exit_code: 0,
    });
    expect(exitEvent('i', null, { guest: true, reason: 'guest-panic' })).toMatchObject({
      type: 'crashed',
      exit_code: null,
    });
    expect(exitEvent('i', null, { guest: false, reason: 'something-new' }).message).toBe(
      'VM shut down (something-new)',
    );
  });

  it('reports an exit without SHUTDOWN as a crash', () => {
    expect(exitEvent('i', null, null)).toMatchObject({ type: 'crashed', exit_code: null });
  });
});
