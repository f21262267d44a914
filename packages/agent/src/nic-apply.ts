import type { Logger } from 'pino';
import type { DesiredInstance, DesiredNic } from '@floe/api';
import type { AppliedNic } from './state.js';
import type { VmDriver, VmNic } from './drivers/vm/types.js';

/** A tap made for a NIC, as the host network side returns it. */
export interface NicTap {
  id: string;
  tap: string;
  mac: string;
}

/**
 * The host side of an instance's NICs (the network reconciler's taps): taps
 * are created before create/start (and before a NIC is hot-added) and removed
 * after destroy, or one by one after a NIC was hot-removed.
 */
export interface NicHost {
  ensure(vm: DesiredInstance): Promise<NicTap[]>;
  remove(vm: DesiredInstance): Promise<void>;
  removeNic(nicId: string): Promise<void>;
}

/** A NIC's rate limits as one string, the same for the same limits (fields in a fixed order); undefined: none. */
export function rateKey(nic: Pick<DesiredNic, 'rate_limit'>): string | undefined {
  const l = nic.rate_limit;
  if (l == null) return undefined;
  const parts = (['ingress_kbps', 'egress_kbps', 'ingress_pps', 'egress_pps'] as const)
    .filter((f) => l[f] !== undefined)
    .map((f) => `${f}=${l[f]}`);
  return parts.length === 0 ? undefined : parts.join(',');
}

/** The NICs of a desired instance as the reconciler records them once applied, in slot order. */
export function desiredNics(vm: DesiredInstance): AppliedNic[] {
  return (vm.nics ?? [])
    .map((n) => {
      const rate = rateKey(n);
      return { id: n.id, index: n.index, mac: n.mac, ...(rate === undefined ? {} : { rate }) };
    })
    .sort((a, b) => a.index - b.index);
}

/** Whether the NICs applied are the ones wanted (ids, slots, MACs and rate limits, in order). */
export function sameNics(a: AppliedNic[] | undefined, b: AppliedNic[]): boolean {
  return (
    a !== undefined &&
    a.length === b.length &&
    a.every((n, i) => n.id === b[i]!.id && n.index === b[i]!.index && n.mac === b[i]!.mac && n.rate === b[i]!.rate)
  );
}

/** The driver's view of the NICs: each tap with its NIC's slot. */
export function withSlots(vm: DesiredInstance, taps: NicTap[]): VmNic[] {
  const slots = new Map((vm.nics ?? []).map((n) => [n.id, n.index]));
  return taps.map((t) => {
    const index = slots.get(t.id);
    return index === undefined ? { id: t.id, tap: t.tap, mac: t.mac } : { id: t.id, tap: t.tap, mac: t.mac, index };
  });
}

/** The NICs a VM that does not exist yet is created with (undefined: none to give it). */
export async function nicsForCreate(host: NicHost | undefined, vm: DesiredInstance): Promise<VmNic[] | undefined> {
  return host !== undefined && (vm.nics ?? []).length > 0 ? withSlots(vm, await host.ensure(vm)) : undefined;
}

/**
 * Bring the VM's NICs in line with the desired ones: taps for all of them
 * first, then the driver (hot-plug into a running VM, or recorded for the next
 * start of a stopped one), then the taps of the NICs the VM no longer has.
 * Returns what is now applied. Throws (and the pass is retried) while the
 * guest has not released a removed NIC.
 */
export async function applyNics(
  driver: Pick<VmDriver, 'setNics'>,
  host: NicHost,
  desired: DesiredInstance,
  before: AppliedNic[] | undefined,
  log: Logger,
): Promise<AppliedNic[]> {
  const want = desiredNics(desired);
  const taps = want.length > 0 ? withSlots(desired, await host.ensure(desired)) : [];
  const { removed } = await driver.setNics(desired.id, taps);
  const wanted = new Set(want.map((n) => n.id));
  const gone = new Set([...removed, ...(before ?? []).map((n) => n.id)].filter((nicId) => !wanted.has(nicId)));
  for (const nicId of gone) await host.removeNic(nicId);
  if (removed.length > 0 || want.length !== (before ?? []).length) {
    log.info({ id: desired.id, nics: want.map((n) => n.id), removed: [...gone] }, 'NICs applied');
  }
  return want;
}
