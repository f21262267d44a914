import { nicPortId, type QemuNic } from './argv.js';

/** A NIC with its slot settled (records from before slots get their position). */
export type SlottedNic = QemuNic & { index: number };

/** The `/machine/peripheral` type of a NIC device and of a NIC slot's hot-plug port. */
export const NIC_DEVICE_TYPE = 'child<virtio-net-pci>';
export const NIC_PORT_TYPE = 'child<pcie-root-port>';

/** NICs as vm.json keeps them: each with its slot. Pure. */
export function slotted(nics: readonly QemuNic[]): SlottedNic[] {
  return nics.map((n, i) => ({ id: n.id, tap: n.tap, mac: n.mac, index: n.index ?? i }));
}

export function sameNic(a: SlottedNic, b: SlottedNic): boolean {
  return a.id === b.id && a.tap === b.tap && a.mac === b.mac && a.index === b.index;
}

/** What the hot-plug plan is made from. */
export interface NicPlanInput {
  /** The NICs vm.json records (one without `index` was started on the root bus). */
  recorded: readonly QemuNic[];
  /** QEMU's `/machine/peripheral`: device id → type (from `qom-list`). */
  devices: ReadonlyMap<string, string>;
  /** The wanted NICs, slotted, in slot order. */
  wanted: readonly SlottedNic[];
}

/** One NIC to hot-add. */
export interface NicPlug {
  nic: SlottedNic;
  /** False when the VM was started without a hot-plug port for the NIC's slot: it needs a restart. */
  port: boolean;
}

/** How to bring a running VM's NICs to the wanted ones. */
export interface NicPlan {
  /** The NICs the VM has now: the recorded NICs QEMU still has. */
  present: SlottedNic[];
  /** NIC device ids to hot-remove, in this order: recorded NICs not wanted as they are, then NIC devices nobody recorded. */
  unplug: string[];
  /** NICs to hot-add, in slot order. */
  plug: NicPlug[];
}

/**
 * Which NICs to unplug and plug in a running VM. A NIC is kept when a wanted
 * one has the same id, tap, MAC and slot; a NIC recorded without a slot sits
 * on the root bus, where its slot means nothing (and it cannot be unplugged),
 * so the same id, tap and MAC suffice. A NIC device QEMU has but the record
 * does not (left by an attempt that stopped halfway) goes too. Pure.
 */
export function planNics({ recorded, devices, wanted }: NicPlanInput): NicPlan {
  const isNic = (name: string) => devices.get(name) === NIC_DEVICE_TYPE;
  const recordedSlotted = slotted(recorded);
  const present = recordedSlotted.filter((n) => isNic(n.id));
  const unknown = [...devices.keys()].filter((name) => isNic(name) && !recordedSlotted.some((n) => n.id === name));
  const unslotted = new Set(recorded.filter((n) => n.index === undefined).map((n) => n.id));
  const keeps = (n: SlottedNic) =>
    wanted.some((w) => sameNic(w, n) || (unslotted.has(n.id) && w.id === n.id && w.tap === n.tap && w.mac === n.mac));
  const kept = present.filter(keeps);
  const unplug = [...present.filter((n) => !keeps(n)).map((n) => n.id), ...unknown];
  const plug = wanted
    .filter((w) => !kept.some((n) => n.id === w.id))
    .map((nic) => ({ nic, port: devices.get(nicPortId(nic.index)) === NIC_PORT_TYPE }));
  return { present, unplug, plug };
}

/**
 * What vm.json records after an attempt that left `present` in the VM:
 * everything wanted, plus the NICs that could not be unplugged yet (they keep
 * their slots, over a wanted NIC for the same slot), in slot order. Pure.
 */
export function nicsToRecord(wanted: readonly SlottedNic[], present: readonly SlottedNic[]): SlottedNic[] {
  const stuck = present.filter((n) => !wanted.some((w) => w.id === n.id));
  return [...wanted.filter((w) => !stuck.some((n) => n.index === w.index)), ...stuck].sort((a, b) => a.index - b.index);
}

/**
 * NICs whose taps may go: those unplugged and no longer wanted (in unplug
 * order), then those recorded for a start that never came and no longer
 * wanted. Pure.
 */
export function removedNics(
  recorded: readonly QemuNic[],
  wanted: readonly QemuNic[],
  unplugged: readonly string[],
): string[] {
  const wantedIds = new Set(wanted.map((n) => n.id));
  const removed = unplugged.filter((id) => !wantedIds.has(id));
  for (const n of recorded) if (!wantedIds.has(n.id) && !removed.includes(n.id)) removed.push(n.id);
  return removed;
}
