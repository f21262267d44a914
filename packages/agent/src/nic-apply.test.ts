import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import type { DesiredInstance } from '@floe/api';
import { desiredInstance } from '@floe/testkit';
import { applyNics, desiredNics, nicsForCreate, rateKey, sameNics, withSlots, type NicHost } from './nic-apply.js';
import type { VmNic } from './drivers/vm/types.js';

const log = pino({ level: 'silent' });

function withNics(ids: Array<[string, number]>): DesiredInstance {
  return {
    ...desiredInstance(),
    nics: ids.map(([id, index]) => ({
      id,
      index,
      mac: `52:54:00:00:00:0${index}`,
      network_id: 'net_01A',
      ipv4: null,
      ipv6: null,
    })),
  } as DesiredInstance;
}

function recordingHost(): NicHost & { calls: string[] } {
  const calls: string[] = [];
  return {
    calls,
    ensure: (vm) => {
      calls.push(`ensure ${(vm.nics ?? []).map((n) => n.id).join(',')}`);
      return Promise.resolve([...(vm.nics ?? [])].reverse().map((n) => ({ id: n.id, tap: `tap-${n.id}`, mac: n.mac })));
    },
    remove: (vm) => {
      calls.push(`remove ${vm.id}`);
      return Promise.resolve();
    },
    removeNic: (id) => {
      calls.push(`removeNic ${id}`);
      return Promise.resolve();
    },
  };
}

describe('NIC application', () => {
  it('records the desired NICs in slot order and compares them', () => {
    const vm = withNics([
      ['nic_b', 1],
      ['nic_a', 0],
    ]);
    const want = desiredNics(vm);
    expect(want.map((n) => n.id)).toEqual(['nic_a', 'nic_b']);
    expect(sameNics(want, desiredNics(vm))).toBe(true);
    expect(sameNics(undefined, want)).toBe(false);
    expect(sameNics(want.slice(0, 1), want)).toBe(false);
    expect(sameNics([{ ...want[0]!, mac: 'x' }, want[1]!], want)).toBe(false);
  });

  it('counts a change of rate limits as a change of NICs, whatever order the fields came in', () => {
    const vm = withNics([['nic_a', 0]]);
    const before = desiredNics(vm);
    vm.nics![0]!.rate_limit = { egress_pps: 100, ingress_kbps: 10_000 };
    const limited = desiredNics(vm);
    expect(limited[0]!.rate).toBe(rateKey({ rate_limit: { ingress_kbps: 10_000, egress_pps: 100 } }));
    expect(limited[0]!.rate).toBe('ingress_kbps=10000,egress_pps=100');
    expect(sameNics(before, limited)).toBe(false);
    vm.nics![0]!.rate_limit = {};
    expect(sameNics(before, desiredNics(vm))).toBe(true);
  });

  it("gives each tap its NIC's slot", () => {
    const vm = withNics([['nic_a', 2]]);
    expect(
      withSlots(vm, [
        { id: 'nic_a', tap: 't', mac: 'm' },
        { id: 'nic_x', tap: 'u', mac: 'n' },
      ]),
    ).toEqual([
      { id: 'nic_a', tap: 't', mac: 'm', index: 2 },
      { id: 'nic_x', tap: 'u', mac: 'n' },
    ]);
  });

  it('creates VMs with their taps, and without NICs when there are none or no host side', async () => {
    const host = recordingHost();
    const vm = withNics([['nic_a', 0]]);
    expect(await nicsForCreate(host, vm)).toEqual([
      { id: 'nic_a', tap: 'tap-nic_a', mac: '52:54:00:00:00:00', index: 0 },
    ]);
    expect(await nicsForCreate(undefined, vm)).toBeUndefined();
    expect(await nicsForCreate(host, withNics([]))).toBeUndefined();
    expect(host.calls).toEqual(['ensure nic_a']);
  });

  it('makes taps first, then tells the driver, then removes the taps of NICs the VM no longer has', async () => {
    const host = recordingHost();
    const set: Array<[string, VmNic[]]> = [];
    const driver = {
      setNics: (id: string, nics: VmNic[]) => {
        host.calls.push('setNics');
        set.push([id, nics]);
        return Promise.resolve({ added: ['nic_a'], removed: ['nic_gone'] });
      },
    };
    const vm = withNics([['nic_a', 0]]);
    const before = [
      { id: 'nic_a', index: 0, mac: '52:54:00:00:00:00' },
      { id: 'nic_old', index: 1, mac: 'x' },
    ];
    const applied = await applyNics(driver, host, vm, before, log);
    expect(applied).toEqual(desiredNics(vm));
    expect(host.calls).toEqual(['ensure nic_a', 'setNics', 'removeNic nic_gone', 'removeNic nic_old']);
    expect(set).toEqual([[vm.id, [{ id: 'nic_a', tap: 'tap-nic_a', mac: '52:54:00:00:00:00', index: 0 }]]]);
  });

  it('removes all NICs without making taps when none are wanted', async () => {
    const host = recordingHost();
    const driver = { setNics: () => Promise.resolve({ added: [], removed: ['nic_a'] }) };
    expect(await applyNics(driver, host, withNics([]), [{ id: 'nic_a', index: 0, mac: 'm' }], log)).toEqual([]);
    expect(host.calls).toEqual(['removeNic nic_a']);
  });
});
