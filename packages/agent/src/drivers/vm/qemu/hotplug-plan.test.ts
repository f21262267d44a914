import { describe, expect, it } from 'vitest';
import type { QemuNic } from './argv.js';
import { NIC_DEVICE_TYPE, NIC_PORT_TYPE, nicsToRecord, planNics, removedNics, slotted } from './hotplug-plan.js';

/** A NIC as records from before slots kept it: without `index`. */
function unslotted(n: QemuNic): QemuNic {
  return { id: n.id, tap: n.tap, mac: n.mac };
}

const nic = (n: number, extra: Partial<QemuNic> = {}): QemuNic & { index: number } => ({
  id: `nic_${n}`,
  tap: `fltp${n}`,
  mac: `52:54:00:00:00:0${n}`,
  index: n,
  ...extra,
});

/** QEMU's /machine/peripheral with the given NIC devices and a hot-plug port per slot 0..`ports`-1. */
function devices(nics: readonly string[], ports = 8): Map<string, string> {
  const map = new Map<string, string>();
  for (let i = 0; i < ports; i++) map.set(`nicport${i}`, NIC_PORT_TYPE);
  map.set('disk0', 'child<virtio-blk-pci>');
  for (const id of nics) map.set(id, NIC_DEVICE_TYPE);
  return map;
}

describe('planNics', () => {
  it('changes nothing when the VM has exactly the wanted NICs', () => {
    const plan = planNics({
      recorded: [nic(0), nic(1)],
      devices: devices(['nic_0', 'nic_1']),
      wanted: [nic(0), nic(1)],
    });
    expect(plan).toEqual({ present: [nic(0), nic(1)], unplug: [], plug: [] });
  });

  it('plugs new NICs and unplugs NICs no longer wanted', () => {
    const plan = planNics({
      recorded: [nic(0), nic(1)],
      devices: devices(['nic_0', 'nic_1']),
      wanted: [nic(0), nic(2)],
    });
    expect(plan).toEqual({ present: [nic(0), nic(1)], unplug: ['nic_1'], plug: [{ nic: nic(2), port: true }] });
  });

  it('replaces a NIC whose tap, MAC or slot changed', () => {
    const moved = nic(1, { index: 3 });
    const retapped = nic(0, { tap: 'fltpother' });
    const plan = planNics({
      recorded: [nic(0), nic(1)],
      devices: devices(['nic_0', 'nic_1']),
      wanted: [retapped, moved],
    });
    expect(plan.unplug).toEqual(['nic_0', 'nic_1']);
    expect(plan.plug).toEqual([
      { nic: retapped, port: true },
      { nic: moved, port: true },
    ]);
  });

  it('keeps a NIC recorded without a slot when its id, tap and MAC match (it sits on the root bus)', () => {
    const legacy = unslotted(nic(0));
    const plan = planNics({ recorded: [legacy], devices: devices(['nic_0'], 0), wanted: [nic(0, { index: 2 })] });
    expect(plan).toEqual({ present: [nic(0)], unplug: [], plug: [] });
  });

  it('unplugs NIC devices the record does not know (an attempt that stopped halfway) after the recorded ones', () => {
    const plan = planNics({
      recorded: [nic(0), nic(1)],
      devices: devices(['nic_0', 'nic_1', 'nic_7']),
      wanted: [nic(0)],
    });
    expect(plan.unplug).toEqual(['nic_1', 'nic_7']);
    expect(plan.plug).toEqual([]);
  });

  it('plugs again a recorded NIC QEMU no longer has', () => {
    const plan = planNics({ recorded: [nic(0), nic(1)], devices: devices(['nic_0']), wanted: [nic(0), nic(1)] });
    expect(plan).toEqual({ present: [nic(0)], unplug: [], plug: [{ nic: nic(1), port: true }] });
  });

  it('marks a NIC whose slot has no hot-plug port (a VM started before ports existed)', () => {
    const plan = planNics({ recorded: [nic(0)], devices: devices(['nic_0'], 1), wanted: [nic(0), nic(1)] });
    expect(plan.plug).toEqual([{ nic: nic(1), port: false }]);
  });
});

describe('nicsToRecord', () => {
  it('records the wanted NICs in slot order once the VM has them', () => {
    expect(nicsToRecord([nic(0), nic(2)], [nic(2), nic(0)])).toEqual([nic(0), nic(2)]);
  });

  it('keeps a NIC that could not be unplugged yet, in its slot, over a wanted NIC for the same slot', () => {
    const newcomer = nic(5, { index: 1 });
    expect(nicsToRecord([nic(0), newcomer], [nic(0), nic(1)])).toEqual([nic(0), nic(1)]);
  });
});

describe('removedNics', () => {
  it('lists the unplugged NICs no longer wanted, then recorded ones never started', () => {
    expect(removedNics([nic(0), nic(1), nic(2)], [nic(0), nic(1, { tap: 'x' })], ['nic_1', 'nic_3'])).toEqual([
      'nic_3',
      'nic_2',
    ]);
    expect(removedNics([nic(0), nic(1)], [], [])).toEqual(['nic_0', 'nic_1']);
  });
});

describe('slotted', () => {
  it('gives NICs recorded before slots their position', () => {
    const legacy = unslotted(nic(4));
    expect(slotted([nic(2), legacy])).toEqual([nic(2), { ...nic(4), index: 1 }]);
  });
});
