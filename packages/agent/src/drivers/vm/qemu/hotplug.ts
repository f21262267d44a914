import { FloeError } from '@floe/api';
import { nicQmpArgs } from './argv.js';
import { nicsToRecord, sameNic, slotted, type NicPlan, type SlottedNic } from './hotplug-plan.js';
import { QmpError, type QmpClient } from './qmp.js';
import type { VmRecord, VmRuntimeDir } from './runtime.js';

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** QEMU's `/machine/peripheral` of a running VM: device id → type. */
export async function peripherals(qmp: QmpClient): Promise<Map<string, string>> {
  const list = await qmp.execute('qom-list', { path: '/machine/peripheral' }, { timeoutMs: 5000 });
  return new Map(list.map((d) => [d.name, d.type]));
}

/** Record `nics` in vm.json for the next start, unless it already says so. */
export async function recordNics(vm: VmRuntimeDir, record: VmRecord, nics: SlottedNic[]): Promise<void> {
  const before = slotted(record.nics ?? []);
  if (before.length === nics.length && before.every((n, i) => sameNic(n, nics[i]!))) return;
  const next: VmRecord = { ...record };
  delete next.nics;
  await vm.writeRecord(nics.length > 0 ? { ...next, nics } : next);
}

/** Where a plan is applied. */
export interface NicTarget {
  vm: VmRuntimeDir;
  record: VmRecord;
  qmp: QmpClient;
  /** How long the guest gets to release a NIC. */
  unplugTimeoutMs: number;
}

/**
 * Carry out a hot-plug plan on a running VM: unplug first (freeing slots),
 * then plug. vm.json is updated whatever happens, so a later call after a
 * partial failure picks up where this one stopped. Returns the NICs
 * unplugged and plugged.
 */
export async function applyNicPlan(
  target: NicTarget,
  plan: NicPlan,
  wanted: readonly SlottedNic[],
): Promise<{ unplugged: string[]; added: string[] }> {
  const { vm, record } = target;
  let present = [...plan.present];
  const unplugged: string[] = [];
  const added: string[] = [];
  try {
    for (const nicId of plan.unplug) {
      await unplugNic(target, nicId);
      present = present.filter((n) => n.id !== nicId);
      unplugged.push(nicId);
    }
    for (const { nic, port } of plan.plug) {
      if (!port) {
        throw new FloeError(
          'invalid_state',
          `VM ${record.name} was started without hot-plug slots for NICs; restart it to add NIC ${nic.id} (it is recorded for the next start)`,
          { id: vm.id, nic_id: nic.id, reason: 'restart_required' },
        );
      }
      await plugNic(target, nic);
      present.push(nic);
      added.push(nic.id);
    }
  } finally {
    // vm.json says what the next start plugs in: everything wanted, plus what could not be unplugged yet.
    await recordNics(vm, record, nicsToRecord(wanted, present));
  }
  return { unplugged, added };
}

async function plugNic({ vm, record, qmp }: NicTarget, nic: SlottedNic): Promise<void> {
  const args = nicQmpArgs(nic, 0);
  // A netdev left by an attempt that failed between netdev_add and device_add would block its id.
  await qmp.execute('netdev_del', { id: `nd-${nic.id}` }, { timeoutMs: 5000 }).catch(() => {});
  await qmp.execute('netdev_add', args.netdev, { timeoutMs: 10_000 });
  try {
    await qmp.execute('device_add', args.device, { timeoutMs: 10_000 });
  } catch (err) {
    await qmp.execute('netdev_del', { id: `nd-${nic.id}` }, { timeoutMs: 5000 }).catch(() => {});
    throw nicError(err, record.name, vm.id, nic.id, 'plug in');
  }
}

/**
 * Hot-remove one NIC: `device_del`, then the guest releases the device and
 * QEMU says DEVICE_DELETED, then `netdev_del`. Fails with `unplug_timeout`
 * when the guest holds on to it.
 */
async function unplugNic({ vm, record, qmp, unplugTimeoutMs }: NicTarget, nicId: string): Promise<void> {
  const present = async () => (await peripherals(qmp)).has(nicId);
  let deleted = false;
  const off = qmp.onEvent('DEVICE_DELETED', (e) => {
    if (e.data.device === nicId) deleted = true;
  });
  try {
    try {
      await qmp.execute('device_del', { id: nicId }, { timeoutMs: 10_000 });
    } catch (err) {
      // Already gone, or an unplug asked for before is still pending: both end the same way.
      if (!(await present())) deleted = true;
      else if (!(err instanceof QmpError) || !/progress|pending/i.test(err.desc))
        throw nicError(err, record.name, vm.id, nicId, 'unplug');
    }
    const deadline = Date.now() + unplugTimeoutMs;
    let lookedAt = Date.now();
    while (!deleted) {
      // The event may have been missed (it came during an earlier attempt): look at QEMU's devices now and then.
      const late = Date.now() >= deadline;
      if (late || Date.now() - lookedAt >= 1000) {
        lookedAt = Date.now();
        if (!(await present())) break;
        if (late) {
          throw new FloeError(
            'host_operation_failed',
            `the guest of VM ${record.name} did not release NIC ${nicId} within ${Math.round(unplugTimeoutMs / 1000)} s; will try again`,
            { id: vm.id, nic_id: nicId, reason: 'unplug_timeout' },
          );
        }
      }
      await sleep(100);
    }
  } finally {
    off();
  }
  await qmp.execute('netdev_del', { id: `nd-${nicId}` }, { timeoutMs: 5000 }).catch(() => {});
}

function nicError(err: unknown, name: string, id: string, nicId: string, what: string): unknown {
  if (!(err instanceof QmpError)) return err;
  return new FloeError('host_operation_failed', `QEMU could not ${what} NIC ${nicId} of VM ${name}: ${err.desc}`, {
    id,
    nic_id: nicId,
  });
}
